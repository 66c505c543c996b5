"""Running what OSWorld's client asks for, as the desktop user: a command and what it printed
(/execute), a Python or bash script (/run_python, /run_bash_script), a program left running
(/setup/launch, through cubicle.x11's Launcher, which reaps it).

As OSWorld's own server does, with three differences that keep this server well: a command that
outlives its timeout is killed with its whole process group rather than left running, output
that is not UTF-8 is decoded with replacement characters rather than failing the request, and
no command blocks the event loop (several may run at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import signal
from dataclasses import dataclass
from typing import Any

EXECUTE_TIMEOUT_S = 120.0  # OSWorld's, for /execute and /setup/execute
PYTHON_TIMEOUT_S = 30.0  # OSWorld's, for /run_python
BASH_TIMEOUT_S = 100.0  # OSWorld's default for /run_bash_script
MAX_TIMEOUT_S = 3600.0


class BadCommand(ValueError):
    """The request's command is not one: the message says what is wrong."""


class CommandTimedOut(Exception):
    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(f"The command did not finish within {timeout_s:g} s and was killed (with its child processes).")


@dataclass(frozen=True)
class Finished:
    stdout: str
    stderr: str
    returncode: int


def parse_command(body: Any) -> list[str]:
    """OSWorld's {command, shell}: a list of arguments, or a string (split like a shell would
    when shell is false; run by /bin/sh when true). Arguments starting with ~/ are expanded.
    Returns the argv to run."""
    if not isinstance(body, dict):
        raise BadCommand("The body must be a JSON object: {\"command\": [\"ls\", \"-l\"], \"shell\": false}.")
    shell = body.get("shell", False)
    if not isinstance(shell, bool):
        raise BadCommand(f"shell must be true or false, not {shell!r}.")
    command = body.get("command")
    if isinstance(command, str):
        if not command.strip():
            raise BadCommand("command is empty.")
        if shell:
            return ["/bin/sh", "-c", command]
        try:
            argv = shlex.split(command)
        except ValueError as error:
            raise BadCommand(f"command cannot be split into arguments: {error}.") from None
    elif isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        argv = list(command)
        if shell:  # as subprocess does: the first item is the script, the rest its $0, $1 ...
            return ["/bin/sh", "-c", *argv]
    else:
        raise BadCommand("command must be a non-empty string or a non-empty list of strings.")
    if not argv or not argv[0]:
        raise BadCommand("command is empty.")
    if any("\0" in part for part in argv):
        raise BadCommand("an argument holds a NUL character.")
    return [os.path.expanduser(part) if part.startswith("~/") else part for part in argv]


def parse_timeout(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_S:
        raise BadCommand(f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, not {value!r}.")
    return float(value)


async def run(argv: list[str], timeout_s: float, cwd: str | None = None, merge_stderr: bool = False) -> Finished:
    """Run to the end and collect what it printed. FileNotFoundError and PermissionError
    (the program, or cwd) are raised as they are; CommandTimedOut after timeout_s."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            cwd=cwd or os.path.expanduser("~"),
            start_new_session=True,  # its own process group: a timeout kills everything it started
        )
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{argv[0]!r} was not found on the desktop's PATH") from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"{argv[0]!r} may not be run by the desktop user") from None
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError) as stopped:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if isinstance(stopped, asyncio.CancelledError):
            raise  # the client went away: nothing is left running for it
        raise CommandTimedOut(timeout_s) from None
    return Finished(_text(stdout), _text(stderr), process.returncode if process.returncode is not None else -1)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")
