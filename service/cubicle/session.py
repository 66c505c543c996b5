"""`cubicle desktop`: the whole desktop (Xvfb, openbox, tint2, x11vnc, the runner and the
server) in the foreground.

`desktop/supervisord.conf` is the one description of the desktop, shared with the container
image. This module only fills in the environment that file expects, refuses to start on a
display or port that is already taken, and makes sure that everything the desktop started,
including apps whose parents are gone, has stopped when it returns.

The desktop has two halves (`--only`): the session (the X server, the window manager, the
panel, VNC and the runner, which runs commands and programs as the desktop user) and the API
server, which holds the token. On a host both run here, as one user. The image runs each in
a container of its own, as a user of its own, sharing one network namespace: the session's
programs then cannot read the token, the server's memory or its logs.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SIZE = (1280, 800)

# Settings of the caller's own desktop session that would otherwise reach the apps: GLib
# apps would hand their windows to an instance already running on the caller's D-Bus, and
# programs would keep their settings outside the desktop's HOME.
_FOREIGN_SESSION_VARIABLES = (
    "DBUS_SESSION_BUS_ADDRESS",
    "SESSION_MANAGER",
    "XAUTHORITY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP",
    "DESKTOP_SESSION",
    "LC_ALL",  # would override LANG
)

_REQUIRED_PROGRAMS = ("Xvfb", "openbox", "tint2", "x11vnc")
_STOP_GRACE_SECONDS = 5.0
_UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class DesktopRefused(Exception):
    """The desktop cannot start here; the message says why in one line."""


def find_desktop_dir() -> Path:
    """The folder holding supervisord.conf: $CUBICLE_DESKTOP_DIR, the copy packaged in the
    wheel, or the source checkout's `desktop/`."""
    override = os.environ.get("CUBICLE_DESKTOP_DIR")
    package_dir = Path(__file__).resolve().parent
    if override:
        candidates = [Path(override)]
    else:
        candidates = [package_dir / "_desktop", package_dir.parent.parent / "desktop"]
    for candidate in candidates:
        if (candidate / "supervisord.conf").is_file():
            return candidate.resolve()
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise DesktopRefused(f"no desktop folder with supervisord.conf found (tried {tried})")


def default_size() -> tuple[int, int]:
    try:
        return int(os.environ["WIDTH"]), int(os.environ["HEIGHT"])
    except (KeyError, ValueError):
        return DEFAULT_SIZE


def runner_socket(display: int, state_dir: Path, only: str | None) -> str:
    """A file only this user can open on a host; in the image, where the halves are two
    containers of one network namespace, a name in its abstract socket namespace."""
    return f"@cubicle-runner-{display}" if only else str(state_dir / "runner.sock")


def desktop_environment(
    display: int,
    size: tuple[int, int],
    port: int,
    host: str,
    vnc_port: int,
    state_dir: str,
    only: str | None = None,
    cdp_port: int = 9222,
    osworld: tuple[str, int] | None = None,
) -> dict[str, str]:
    """The complete environment to run `supervisord -c <desktop>/supervisord.conf` with.

    HOME is `<state_dir>/home` (created here), so every desktop starts with fresh app profiles and nothing of the caller's own settings."""
    state = Path(state_dir).resolve()
    home = state / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if name not in _FOREIGN_SESSION_VARIABLES}
    width, height = size
    env.update(
        DISPLAY=f":{display}",
        WIDTH=str(width),
        HEIGHT=str(height),
        CUBICLE_PORT=str(port),
        CUBICLE_HOST=host,
        VNC_PORT=str(vnc_port),
        CDP_PORT=str(cdp_port),
        CUBICLE_STATE_DIR=str(state),
        CUBICLE_DESKTOP_DIR=str(find_desktop_dir()),
        CUBICLE_PYTHON=sys.executable,
        CUBICLE_RUNNER_SOCKET=runner_socket(display, state, only),
        CUBICLE_START_SESSION="false" if only == "server" else "true",
        CUBICLE_START_SERVER="false" if only == "session" else "true",
        # OSWorld's protocol (cubicle.server.osworld): off unless asked for, and a session's program.
        CUBICLE_START_OSWORLD="true" if osworld and only != "server" else "false",
        CUBICLE_OSWORLD_HOST=osworld[0] if osworld else "127.0.0.1",
        CUBICLE_OSWORLD_PORT=str(osworld[1] if osworld else 5000),
        LANG="C.UTF-8",
        HOME=str(home),
    )
    return env


def display_in_use(display: int) -> str | None:
    """Why display :N is taken, or None when it is free. Stale files left by a killed
    server do not count: Xvfb replaces them itself."""
    lock = Path(f"/tmp/.X{display}-lock")
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _process_alive(pid):
        return f"{lock} belongs to running process {pid}"
    answering = x_server_socket(display)
    return f"an X server answers on {answering}" if answering else None


def x_server_socket(display: int) -> str | None:
    """The socket on which an X server for display :N accepts connections, or None."""
    socket_path = f"/tmp/.X11-unix/X{display}"
    # Linux X servers also listen on the abstract twin of the path, which is the one that
    # counts when /tmp is not shared (another container in the same network namespace).
    for address, label in ((socket_path, socket_path), ("\0" + socket_path, "@" + socket_path)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(address)
            except OSError:
                continue
            return label
    return None


def port_in_use(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on, or None when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot resolve {host!r}: {error.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # uvicorn and x11vnc set SO_REUSEADDR too, so a port in TIME_WAIT is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            return f"{host}:{port} is taken ({error.strerror})"
    return None


def run_desktop(args) -> int:
    """Runs the desktop until Ctrl-C or SIGTERM; returns the exit code for the shell."""
    display: int = args.display
    size = args.size or default_size()
    only: str | None = getattr(args, "only", None)
    osworld = (args.osworld_host, args.osworld_port) if getattr(args, "osworld", False) and only != "server" else None
    try:
        _check_free(display, args.host, args.port, args.vnc_port, only, osworld)
        desktop_dir = find_desktop_dir()
    except DesktopRefused as refusal:
        print(f"cubicle desktop: {refusal}", file=sys.stderr)
        return 2
    if args.state_dir:
        state_dir = Path(args.state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
    else:
        state_dir = Path(tempfile.mkdtemp(prefix=f"cubicle-{display}-")).resolve()
    control_socket = state_dir / "supervisord.sock"
    if len(str(control_socket)) > _UNIX_SOCKET_PATH_MAX:
        print(f"cubicle desktop: state folder path too long for a unix socket: {state_dir}", file=sys.stderr)
        return 2
    env = desktop_environment(display, size, args.port, args.host, args.vnc_port, str(state_dir), only,
                              cdp_port=getattr(args, "cdp_port", 9222), osworld=osworld)
    # Made here, not by the server, so it is shown on this terminal and never lands in a log.
    # The server gets it through a file only it reads: in the environment it would reach
    # openbox, the panel and every app started from them (`env` in a terminal would show it).
    # The session alone holds no token at all.
    given = env.pop("CUBICLE_TOKEN", "").strip()
    generated_token = None
    if only != "session":
        generated_token = None if given else secrets.token_urlsafe(32)
        token_file = state_dir / "token"
        token_file.touch(mode=0o600)
        token_file.chmod(0o600)
        token_file.write_text(given or generated_token or "")
        env["CUBICLE_TOKEN_FILE"] = str(token_file)

    _become_subreaper()
    supervisord = subprocess.Popen(
        # --silent: the logs are in the state folder; the terminal gets the one line below.
        [sys.executable, "-m", "supervisor.supervisord", "-n", "--silent", "-c", str(desktop_dir / "supervisord.conf")],
        env=env,
        stdin=subprocess.DEVNULL,
        # Its own session, so a Ctrl-C in the terminal reaches only us and we stop it once, in order.
        start_new_session=True,
        preexec_fn=_stop_when_parent_dies,
    )
    stop_requested = False
    returncode = 0

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)
    try:
        _wake(supervisord, control_socket, timeout=5.0)
        x_answers = _wait_for_x(display, supervisord, timeout=10.0)
        if supervisord.poll() is None:
            url_host = f"[{args.host}]" if ":" in args.host else args.host
            parts = [f"display :{display} ({size[0]}x{size[1]}{'' if x_answers else ', not answering yet'})"]
            if only != "session":
                parts.append(f"server http://{url_host}:{args.port}")
            if only != "server":
                parts.append(f"VNC 127.0.0.1:{args.vnc_port}")
            if osworld:
                parts.append(f"OSWorld http://{osworld[0]}:{osworld[1]} (no credentials: runs any code it is sent)")
            print(f"cubicle desktop{f' ({only})' if only else ''}: {', '.join(parts)}, state and logs in {state_dir}",
                  flush=True)
            if generated_token:
                print(f"cubicle desktop: no CUBICLE_TOKEN set, this run's token is {generated_token}", flush=True)
        while True:
            try:
                returncode = supervisord.wait(timeout=0.05 if stop_requested else 0.5)
                break
            except subprocess.TimeoutExpired:
                _reap_orphans(keep=supervisord.pid)
                if stop_requested:
                    _poke(control_socket)
    finally:
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)
            supervisord.wait()
        _stop_leftovers()
    if returncode != 0 and not stop_requested:
        print(f"cubicle desktop: supervisord exited with code {returncode}; see {state_dir}/supervisord.log", file=sys.stderr)
        return returncode
    return 0


def _check_free(display: int, host: str, port: int, vnc_port: int, only: str | None = None,
                osworld: tuple[str, int] | None = None) -> None:
    """What this half needs is free: the session's display and VNC port, the server's port.
    (The server alone shares the session's display by design.)"""
    if only != "server":
        missing = [program for program in _REQUIRED_PROGRAMS if shutil.which(program) is None]
        if missing:
            raise DesktopRefused(f"{', '.join(missing)} not installed (the Debian packages are listed in desktop/packages.txt)")
        reason = display_in_use(display)
        if reason:
            raise DesktopRefused(f"display :{display} is already in use: {reason}")
    if port == vnc_port:
        raise DesktopRefused(f"the server port and the VNC port are both {port}")
    ports = [("server", host, port)] if only != "session" else []
    ports += [("VNC", "127.0.0.1", vnc_port)] if only != "server" else []
    if osworld:
        if osworld[1] in (port, vnc_port):
            raise DesktopRefused(f"the OSWorld port {osworld[1]} is also the server's or VNC's port")
        ports.append(("OSWorld", *osworld))
    for what, where, number in ports:
        reason = port_in_use(where, number)
        if reason:
            raise DesktopRefused(f"{what} port: {reason}")


def _wake(supervisord: subprocess.Popen, control_socket: Path, timeout: float) -> None:
    """Makes supervisord start its programs now rather than after its first idle second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and supervisord.poll() is None:
        if _poke(control_socket):
            return
        time.sleep(0.01)  # not listening yet (or a stale file from an earlier run)


def _poke(control_socket: Path) -> bool:
    """supervisord acts on its programs (start, notice an exit, stop the next group) once per
    turn of its event loop, which idles up to a second; a connection to its control socket
    ends the wait. This makes start-up and shut-down each a second or two shorter."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(control_socket))
        except OSError:
            return False
    return True


def _wait_for_x(display: int, supervisord: subprocess.Popen, timeout: float) -> bool:
    """True once the X server answers; False if supervisord died first or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisord.poll() is not None:
            return False
        if x_server_socket(display):
            return True
        time.sleep(0.02)
    return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _stop_when_parent_dies() -> None:
    """Runs in the supervisord child: if we are killed outright (SIGKILL), supervisord still
    gets a SIGTERM and takes the desktop down with it instead of running on unowned."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _become_subreaper() -> None:
    """Apps whose parent exits (started from the panel, or by a server that was restarted)
    are handed to us instead of to init, so that we can stop them at the end."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: leftovers then go to init, as usual


def _reap_orphans(keep: int) -> None:
    """Collects adopted children that have exited, leaving supervisord's status to Popen."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in (0, keep):
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


def _descendants() -> list[int]:
    """Our living descendants, by /proc: adopted processes are not known to subprocess, and
    a child may be waiting on its own children (oosplash on soffice.bin) before it exits."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may itself contain spaces or parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def _stop_leftovers() -> None:
    """Stops whatever still runs under us once supervisord is gone: apps usually end with
    their X server, but not all of them, and not their helper processes."""
    if not os.path.isdir("/proc"):
        return
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    asked: set[int] = set()
    while True:
        _reap_all()
        leftovers = _descendants()
        if not leftovers:
            return
        overdue = time.monotonic() > deadline
        for pid in leftovers:
            if pid in asked and not overdue:
                continue
            try:
                os.kill(pid, signal.SIGKILL if overdue else signal.SIGTERM)
            except ProcessLookupError:
                pass
            asked.add(pid)
        time.sleep(0.05)


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
