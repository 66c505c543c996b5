"""The terminal of OSWorld's GET /terminal: xterm titled "Terminal", its shell inside tmux.

OSWorld reads the focused GNOME Terminal tab's text through AT-SPI; xterm publishes none. So
`cubicle osworld-terminal` opens xterm on a tmux session of its own, on one tmux server per
desktop (its socket in the state folder), and the text of the focused terminal is tmux's copy of
that pane: all of its history, wrapped lines joined. Which pane is the focused terminal's: the
tmux client whose parent process is the focused window's (_NET_WM_PID, xterm).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

TITLE = "Terminal"
_TMUX_TIMEOUT_S = 5.0


def tmux_socket() -> str:
    """One tmux server per desktop: in its state folder (or, without one, tmux's default folder
    under a name of this display's)."""
    state = os.environ.get("CUBICLE_STATE_DIR")
    if state:
        return str(Path(state) / "osworld-tmux.sock")
    display = os.environ.get("DISPLAY", ":0").replace(":", "").replace(".", "-")
    return str(Path(f"/tmp/tmux-{os.getuid()}") / f"cubicle-osworld-{display}")


def terminal_argv() -> list[str]:
    """xterm titled Terminal, running a new tmux session (the user's shell) on the desktop's server."""
    for program in ("xterm", "tmux"):
        if shutil.which(program) is None:
            raise FileNotFoundError(f"{program} is not installed on the desktop; the OSWorld terminal needs xterm and tmux.")
    # -S at the shell level too: a shell inside reaches the same server with plain `tmux`.
    return ["xterm", "-T", TITLE, "-e", "tmux", "-S", tmux_socket(), "new-session"]


def open_terminal() -> None:
    """`cubicle osworld-terminal`: replace this process with the terminal."""
    argv = terminal_argv()
    os.execvp(argv[0], argv)


async def _tmux(*args: str) -> str | None:
    """tmux's output, or None when there is no server (no terminal opened yet) or it failed."""
    try:
        process = await asyncio.create_subprocess_exec(
            "tmux", "-S", tmux_socket(), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), _TMUX_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return stdout.decode("utf-8", "replace") if process.returncode == 0 else None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


async def focused_terminal_text(focused_pid: int | None) -> str | None:
    """The text of the terminal in the focused window (trailing blank space removed), or None
    when the focused window is no terminal of ours."""
    if focused_pid is None:
        return None
    clients = await _tmux("list-clients", "-F", "#{client_pid} #{session_name}")
    for line in (clients or "").splitlines():
        pid, _, session = line.partition(" ")
        if pid.isdigit() and _parent(int(pid)) == focused_pid:
            text = await _tmux("capture-pane", "-p", "-J", "-S", "-", "-t", f"={session}:")
            return None if text is None else text.rstrip()
    return None
