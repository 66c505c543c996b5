"""A persistent bash session on the desktop: commands run in turn in one long-lived shell,
so `cd`, variables and functions carry over from one command to the next.

Each command is read into a variable through a quoted here-document and run with `eval`, its
stdin from /dev/null, followed by a sentinel line that carries `$?`. The here-document means
any text is safe to send (quotes, a trailing comment, even a syntax error, which `eval`
reports like bash would); the sentinel, unique per command, marks where its output ends.
Output is read continuously, also between commands, so a chatty program left running in the
background never blocks on a full pipe; whatever it prints shows up in the next answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import secrets
import signal
from dataclasses import dataclass

DEFAULT_OUTPUT_LIMIT = 100_000  # characters
_READ_SIZE = 65536
# Variables of the server that commands have no business seeing.
_HIDDEN_VARIABLES = ("CUBICLE_TOKEN",)
# UTF-8 continuation bytes: removing them from a byte string leaves one byte per character.
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)  # loaded here: the child after fork only calls it
except OSError:
    _libc = None


def _die_with_server() -> None:
    """Runs in the bash child before exec: if the server is killed outright, bash goes too."""
    PR_SET_PDEATHSIG = 1
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class ShellOutput:
    output: str
    exit_code: int | None  # None when the command did not finish (timed out, shell killed)
    timed_out: bool
    truncated: bool


class _BoundedOutput:
    """Bytes of one command's output, kept within bounds however much is printed: the first
    and the last bytes are kept, the middle is only counted."""

    def __init__(self, limit_chars: int):
        self.limit = limit_chars
        # A character is at most 4 bytes, so this holds limit/2 characters at each end.
        self._side_bytes = 2 * limit_chars
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped_bytes = 0
        self._dropped_chars = 0

    def add(self, data: bytes) -> None:
        room = self._side_bytes - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._side_bytes
        if excess > 0:
            self._dropped_chars += len(bytes(self._tail[:excess]).translate(None, _CONTINUATION_BYTES))
            self._dropped_bytes += excess
            del self._tail[:excess]

    def text(self) -> tuple[str, bool]:
        """(text, truncated): all of it, or its head and tail around a note of what was cut."""
        half = self.limit // 2
        if not self._dropped_bytes:
            full = bytes(self._head + self._tail).decode("utf-8", errors="replace")
            if len(full) <= self.limit:
                return full, False
            head, tail = full[:half], full[len(full) - (self.limit - half):]
            cut = len(full) - len(head) - len(tail)
        else:
            whole_head = bytes(self._head).decode("utf-8", errors="replace")
            # The cut may have split a character: its stray continuation bytes go with the cut.
            start = 0
            while start < min(3, len(self._tail)) and 0x80 <= self._tail[start] < 0xC0:
                start += 1
            whole_tail = bytes(self._tail[start:]).decode("utf-8", errors="replace")
            head, tail = whole_head[:half], whole_tail[len(whole_tail) - (self.limit - half):]
            cut = len(whole_head) - len(head) + len(whole_tail) - len(tail) + self._dropped_chars
        note = (
            f"\n[... {cut:,} characters of output cut here; redirect the output to a file and "
            "look at parts of it (head, tail, grep) to see them ...]\n"
        )
        return head + note + tail, True


class _Bash:
    """One bash process and the task that drains its merged stdout and stderr."""

    def __init__(self, process: asyncio.subprocess.Process, limit_chars: int):
        self.process = process
        self.limit = limit_chars
        self.output = _BoundedOutput(limit_chars)
        self.exit_code: int | None = None
        self.finished = asyncio.Event()  # the sentinel arrived, or the output ended
        self.ended = asyncio.Event()  # end of output: the shell is gone
        self.stop_reason: str | None = None  # set when the server killed it
        self._sentinel: re.Pattern[bytes] | None = None
        self._pending = b""  # last bytes held back: a sentinel may be split across reads
        self._reader = asyncio.get_running_loop().create_task(self._drain())

    @classmethod
    async def start(cls, env: dict[str, str], cwd: str, limit_chars: int) -> _Bash:
        process = await asyncio.create_subprocess_exec(
            "bash", "--noprofile", "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
            preexec_fn=_die_with_server,
        )
        return cls(process, limit_chars)

    @property
    def alive(self) -> bool:
        return self.stop_reason is None and not self.ended.is_set() and self.process.returncode is None

    def expect(self, token: str) -> None:
        self._sentinel = re.compile(rb"\n__cubicle_" + token.encode() + rb"_(\d+)__\n")
        self.exit_code = None
        self.finished.clear()

    async def _drain(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                data = await stream.read(_READ_SIZE)
            except (OSError, ValueError):
                data = b""
            if not data:
                break
            self._pending += data
            if self._sentinel is not None:
                match = self._sentinel.search(self._pending)
                if match:
                    self.output.add(self._pending[: match.start()])
                    self._pending = self._pending[match.end():]
                    self._sentinel = None
                    self.exit_code = int(match.group(1))
                    self.finished.set()
                    continue
            keep = 64  # longer than any sentinel line
            if len(self._pending) > keep:
                self.output.add(self._pending[:-keep])
                self._pending = self._pending[-keep:]
        self.flush()
        self.ended.set()
        self.finished.set()

    def flush(self) -> None:
        self.output.add(self._pending)
        self._pending = b""

    def take_output(self) -> tuple[str, bool]:
        """The output collected so far, leaving an empty buffer for the next command."""
        text = self.output.text()
        self.output = _BoundedOutput(self.limit)
        return text

    def kill(self, reason: str) -> None:
        """Kill the shell and everything it started (its whole process group)."""
        if self.stop_reason is not None:
            return  # killed once already: its group id may since belong to someone else
        self.stop_reason = reason
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def wait_gone(self, grace: float = 1.0) -> None:
        """After kill: collect the last output and reap the process. A program that left the
        process group may still hold the pipe open, so the wait for end of output is capped."""
        try:
            await asyncio.wait_for(self.ended.wait(), grace)
        except TimeoutError:
            self._reader.cancel()
            self.flush()
            self.ended.set()
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            pass
        if self.process.stdin is not None:
            self.process.stdin.close()


def _script(command: str, token: str) -> bytes:
    end = f"__cubicle_end_{token}"
    # `read -d ''` reads the whole here-document (it stops at end of input, returning 1).
    # `set -x` chosen by a command is kept for the next ones, but switched off around this
    # wrapper so that only the commands themselves are traced.
    return (
        f"IFS= read -r -d '' __cubicle_command <<'{end}'\n"
        f"{command}\n"
        f"{end}\n"
        'case ${__cubicle_flags-} in *x*) __cubicle_command="set -x; $__cubicle_command";; esac\n'
        '{ eval "$__cubicle_command"\n'
        "} </dev/null\n"
        "{ __cubicle_status=$? __cubicle_flags=$-; set +x; } 2>/dev/null\n"
        f"printf '\\n__cubicle_%s_%s__\\n' {token} \"$__cubicle_status\"\n"
    ).encode("utf-8", errors="replace")  # lone surrogates (possible in JSON) become '?'


class ShellSession:
    """The desktop's one shell. Commands run one at a time; a command that times out takes
    the shell with it, and the next command starts a fresh one."""

    def __init__(self, display: str, output_limit: int = DEFAULT_OUTPUT_LIMIT, cwd: str | None = None):
        self.display = display
        self.output_limit = output_limit
        self.cwd = cwd
        self._bash: _Bash | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in _HIDDEN_VARIABLES}
        env.update(DISPLAY=self.display, LANG="C.UTF-8")
        env.pop("LC_ALL", None)  # would override LANG
        return env

    def _start_folder(self) -> str:
        folder = self.cwd or os.path.expanduser("~")
        return folder if os.path.isdir(folder) and os.access(folder, os.X_OK) else "/"

    async def _fresh(self) -> _Bash:
        self._bash = await _Bash.start(self.environment(), self._start_folder(), self.output_limit)
        return self._bash

    async def run(self, command: str, timeout: float) -> ShellOutput:
        async with self._lock:
            if self._closed:
                raise RuntimeError("the shell session is closed")
            bash = self._bash if self._bash is not None and self._bash.alive else await self._fresh()
            token = secrets.token_hex(12)
            bash.expect(token)
            try:
                await asyncio.wait_for(self._send_and_wait(bash, _script(command, token)), timeout)
            except TimeoutError:
                bash.kill("timeout")
                await bash.wait_gone()
                text, truncated = bash.take_output()
                note = (
                    f"[The command did not finish within {timeout:g} s (the timeout). It was killed, and the "
                    "shell with it, including programs started from it in the background. The next command "
                    "runs in a fresh shell: the working folder, variables and functions are reset. Run long "
                    "tasks in the background with output to a file (cmd > out.log 2>&1 &), or give a longer timeout.]"
                )
                return ShellOutput(_with_note(text, note), None, True, truncated)
            if bash.exit_code is not None:
                text, truncated = bash.take_output()
                return ShellOutput(text, bash.exit_code, False, truncated)
            # The shell is gone before the command ended: it exited, or it was restarted.
            restarted = bash.stop_reason == "restart"
            bash.kill("exited")  # what it left running in the background goes with it
            await bash.wait_gone()
            text, truncated = bash.take_output()
            if restarted:
                note = "[The shell was restarted while this command was running; the command was killed.]"
                return ShellOutput(_with_note(text, note), None, False, truncated)
            code = bash.process.returncode
            note = (
                f"[The shell exited (exit status {code}), stopping what it had started in the background. The next "
                "command runs in a fresh shell: the working folder, variables and functions are reset.]"
            )
            return ShellOutput(_with_note(text, note), code if code is not None and code >= 0 else None, False, truncated)

    async def _send_and_wait(self, bash: _Bash, script: bytes) -> None:
        stdin = bash.process.stdin
        assert stdin is not None
        try:
            stdin.write(script)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the shell is gone; its end of output tells the rest
        # The shell exiting ends the wait too: programs it left in the background may hold
        # its output open, so the end of output could come much later. (Process.wait() also
        # waits for the pipes to close; returncode is set as soon as the shell is reaped.)
        while bash.process.returncode is None:
            try:
                await asyncio.wait_for(bash.finished.wait(), 0.25)
                return
            except TimeoutError:
                pass

    async def restart(self) -> None:
        """Kill the shell (and what runs in it) now, even mid-command, and start a fresh one."""
        if self._bash is not None:
            self._bash.kill("restart")
        async with self._lock:
            if self._bash is not None:
                await self._bash.wait_gone()
            if not self._closed:
                await self._fresh()

    def close(self) -> None:
        """At server shutdown: no shell outlives the server."""
        self._closed = True
        if self._bash is not None:
            self._bash.kill("server stopped")


def _with_note(text: str, note: str) -> str:
    if not text:
        return note
    return text + ("" if text.endswith("\n") else "\n") + note
