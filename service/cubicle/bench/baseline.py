"""The baseline: what Anthropic's reference computer-use demo runs for each thing it does.

`scrot` to a file and ImageMagick `convert` for every screenshot, one `xdotool` process per
action, typing in 50-character `xdotool type --delay 12` chunks, and a fixed 2 s wait between
an action and its screenshot. The benches run these on the same display as cubicle, in the
same run, so that both sides meet the same machine.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

SETTLE_S = 2.0  # the demo sleeps this long after an action before its screenshot
TYPING_CHUNK = 50  # the demo types in pieces of this many characters, one process each
TYPING_DELAY_MS = 12
# Clicks go to the empty desktop background, alternating between two points: `xdotool
# mousemove --sync` waits (15 s) for the pointer to move, so it must never be already there.
CLICK_SPOTS = ((600, 380), (660, 420))


class Spots:
    """Hands out the click points in turn, whichever side clicks next."""

    def __init__(self) -> None:
        self._count = 0

    def next(self) -> tuple[int, int]:
        self._count += 1
        return CLICK_SPOTS[self._count % len(CLICK_SPOTS)]


def compiled_program(name: str) -> str:
    """The first `name` on PATH that is a compiled program rather than a script standing in
    front of it: a wrapper would add an interpreter's start-up to every baseline call."""
    fallback = None
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as file:
                if file.read(4) == b"\x7fELF":
                    return str(candidate)
            fallback = fallback or str(candidate)
    if fallback is None:
        raise RuntimeError(f"{name} is not installed; the baseline needs scrot, ImageMagick's convert and xdotool")
    return fallback


class Baseline:
    """The demo's commands against one display; screenshots pass through files in `workdir`."""

    def __init__(self, display: str, workdir: Path):
        self.env = {**os.environ, "DISPLAY": display}
        self.workdir = workdir
        self.scrot = compiled_program("scrot")
        self.convert = compiled_program("convert")
        self.xdotool = compiled_program("xdotool")

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, env=self.env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def screenshot(self, jpeg: bool = False) -> bytes:
        """scrot, then convert, then read the result; fresh file names each time, as the demo."""
        shot = self.workdir / f"screenshot_{uuid.uuid4().hex}.png"
        out = shot.with_name(shot.stem + (".out.jpg" if jpeg else ".out.png"))
        self._run(self.scrot, "-p", str(shot))
        if jpeg:
            self._run(self.convert, str(shot), "-quality", "80", str(out))
        else:
            self._run(self.convert, str(shot), str(out))
        data = out.read_bytes()
        shot.unlink()
        out.unlink()
        return data

    def click(self, x: int, y: int, button: int = 1) -> None:
        self._run(self.xdotool, "mousemove", "--sync", str(x), str(y), "click", str(button))

    def type(self, text: str) -> None:
        for start in range(0, len(text), TYPING_CHUNK):
            self._run(self.xdotool, "type", "--delay", str(TYPING_DELAY_MS), "--", text[start:start + TYPING_CHUNK])

    def step(self, x: int, y: int, button: int = 1) -> None:
        """One step of the demo's agent: a click, its fixed wait, then a screenshot."""
        self.click(x, y, button=button)
        time.sleep(SETTLE_S)
        self.screenshot()
