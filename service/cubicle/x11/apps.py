"""Starting desktop programs and reading/writing the clipboard: plain processes, no X protocol."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

from .errors import DisplayUnavailable, LaunchFailed, X11Error


class Launcher:
    """Starts programs on the display and reaps them when they exit (no zombies)."""

    def __init__(self, display_name: str, log_path: str | None = None):
        self._display_name = display_name
        self._log_path = log_path

    def launch(self, argv: list[str], cwd: str | None = None) -> int:
        if shutil.which(argv[0]) is None:
            raise LaunchFailed(f"Program {argv[0]!r} was not found on the desktop's PATH.")
        env = dict(os.environ, DISPLAY=self._display_name)
        # Not a with-block: the file is closed in the finally below, once Popen has its own copy.
        output = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            child = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd or os.path.expanduser("~"),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C aimed at the server must not hit the apps
            )
        except OSError as error:
            raise LaunchFailed(f"Could not start {argv[0]!r}: {error.strerror}.") from None
        finally:
            if not isinstance(output, int):  # a file, not subprocess.DEVNULL
                output.close()
        # A waiting thread per app reaps it the moment it exits; it costs a few KB while the
        # app runs and nothing else depends on it.
        threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
        return child.pid


SET_WAIT_S = 2.0  # at most, for the clipboard to hold what was just put there
XCLIP_TIMEOUT_S = 5.0  # a clipboard owner that does not answer by then will not


class Clipboard:
    """The CLIPBOARD selection as UTF-8 text, through xclip: owning a selection means
    answering other clients' requests for as long as it is held, which xclip's background
    process does for us."""

    def __init__(self, display_name: str):
        self._display_name = display_name
        self._env = dict(os.environ, DISPLAY=display_name)

    def _xclip(self, *args: str, text: str | None = None) -> tuple[int, bytes]:
        """Run xclip; (exit status, what it printed). Its errors go to a file, not a pipe:
        `xclip -i` leaves a background process holding them open, and a pipe would not end."""
        with tempfile.TemporaryFile() as errors:
            try:
                result = subprocess.run(
                    ["xclip", "-selection", "clipboard", *args], env=self._env, check=False,
                    input=None if text is None else text.encode("utf-8"),
                    stdout=subprocess.PIPE if text is None else subprocess.DEVNULL, stderr=errors,
                    timeout=XCLIP_TIMEOUT_S,
                )
            except FileNotFoundError:
                raise X11Error("The clipboard is not available: xclip is not installed on the desktop.") from None
            except subprocess.TimeoutExpired:
                raise X11Error(
                    f"The clipboard did not answer within {XCLIP_TIMEOUT_S:g} s: the program that holds "
                    "it, or the X server, may be hung. Copy something anew, or retry."
                ) from None
            if result.returncode != 0:
                errors.seek(0)
                if b"can't open display" in errors.read().lower():
                    raise DisplayUnavailable(
                        f"The X display {self._display_name} is not reachable; it may be starting or "
                        "restarting. Retry in a few seconds."
                    )
            return result.returncode, result.stdout or b""

    def get(self) -> str:
        status, output = self._xclip("-o", "-t", "UTF8_STRING")
        if status != 0:
            return ""  # nobody owns the clipboard, or the owner offers no text
        return output.decode("utf-8", "replace")

    def set(self, text: str) -> None:
        status, _ = self._xclip("-i", text=text)
        if status != 0:
            raise X11Error("xclip could not take the clipboard")
        # xclip forks and returns before its background half owns the selection: until then
        # a paste would still get the old text. Return once the clipboard holds the new one.
        deadline = time.monotonic() + SET_WAIT_S
        while self.get() != text and time.monotonic() < deadline:
            time.sleep(0.01)
