"""Starting desktop programs and reading/writing the clipboard: plain processes, no X protocol."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

from .errors import LaunchFailed, X11Error


class Launcher:
    """Starts programs on the display and reaps them when they exit (no zombies)."""

    def __init__(self, display_name: str, log_path: str | None = None):
        self._display_name = display_name
        self._log_path = log_path

    def launch(self, argv: list[str], cwd: str | None = None) -> int:
        if shutil.which(argv[0]) is None:
            raise LaunchFailed(f"Program {argv[0]!r} was not found on the desktop's PATH.")
        env = dict(os.environ, DISPLAY=self._display_name)
        output = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
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
            if output is not subprocess.DEVNULL:
                output.close()
        # A waiting thread per app reaps it the moment it exits; it costs a few KB while the
        # app runs and nothing else depends on it.
        threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
        return child.pid


SET_WAIT_S = 2.0  # at most, for the clipboard to hold what was just put there


class Clipboard:
    """The CLIPBOARD selection as UTF-8 text, through xclip: owning a selection means
    answering other clients' requests for as long as it is held, which xclip's background
    process does for us."""

    def __init__(self, display_name: str):
        self._env = dict(os.environ, DISPLAY=display_name)

    def get(self) -> str:
        result = subprocess.run(
            ["xclip", "-selection", "clipboard", "-o", "-t", "UTF8_STRING"],
            env=self._env, capture_output=True, timeout=5,
        )
        if result.returncode != 0:
            return ""  # nobody owns the clipboard, or the owner offers no text
        return result.stdout.decode("utf-8", "replace")

    def set(self, text: str) -> None:
        result = subprocess.run(
            ["xclip", "-selection", "clipboard", "-i"],
            env=self._env, input=text.encode("utf-8"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5,
        )
        if result.returncode != 0:
            raise X11Error("xclip could not take the clipboard")
        # xclip forks and returns before its background half owns the selection: until then
        # a paste would still get the old text. Return once the clipboard holds the new one.
        deadline = time.monotonic() + SET_WAIT_S
        while self.get() != text and time.monotonic() < deadline:
            time.sleep(0.01)
