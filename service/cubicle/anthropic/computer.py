"""Claude's computer toolset (computer_toolset_20260801) served by a cubicle desktop, as the
`anthropic` SDK's own driver class: any SDK user hands `CubicleComputer(url, token, confirm=...)`
to `client.beta.messages.tool_runner(...)` and Claude operates the desktop.

The SDK parses and checks each member's input, asks `confirm`, renders results and applies
the toolset's batch rule; it knows no screen. This driver adds what only the desktop can do:

- Screenshots come at the largest size the toolset models take as they are (long edge
  <= 2576 px, <= 4784 visual tokens), so the API never rescales them. The size of the last
  screenshot is the model's coordinate space, and every action says so to the desktop
  (`coordinate_space`), which maps each point back exactly, at any scale.
- A screenshot after an action that changed the screen waits until the screen is still
  (the desktop's settle), so the model never sees a half-drawn window.
- Zoom captures its region at full resolution and enlarges it into the screenshot's size.
- A member the desktop refuses (a click outside the screen, an unknown key) is the SDK's
  is_error result with the desktop's own wording, and the desktop is left untouched: it
  checks every action before it runs anything.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from anthropic.tools import ToolError
from anthropic.tools.computer import (
    BetaAbstractComputerToolset20260801,
    BetaAsyncAbstractComputerToolset20260801,
    BetaComputerCursorPositionResult,
    BetaComputerMemberResult,
    BetaScreenshotResult,
    BetaToolsetCallContext,
)

from cubicle import imaging
from cubicle.actions import ActionResponse, ActionResult
from cubicle.client import AsyncDesktopClient, CubicleError, DesktopClient, Screenshot

__all__ = ["AsyncCubicleComputer", "CubicleComputer"]

# Members that only look: the screen is as still after them as before.
_LOOKING = frozenset({"screenshot", "zoom", "cursor_position"})
DEFAULT_TIMEOUT_S = 330.0  # a member may keep the desktop busy up to 300 s (hold_key, wait)


class _Space:
    """The model's coordinate space (the last screenshot's size) and whether the screen may
    have changed since that screenshot. Shared by the sync and async drivers."""

    def __init__(self, image_size: tuple[int, int] | None, image_format: str):
        self.size = image_size
        self.limits = image_size  # the largest screenshot asked for; from the screen when not given
        self.format = image_format
        self.dirty = True  # the first screenshot waits for a still screen too

    def set_screen(self, screen: tuple[int, int]) -> tuple[int, int]:
        self.limits = self.limits or imaging.model_image_size(*screen, large=True)
        return self.limits

    def action(self, name: str, input: Any) -> dict[str, Any]:
        """The desktop action for a member call: the same names and fields."""
        fields = input.model_dump(exclude_none=True) if hasattr(input, "model_dump") else dict(input)
        return {**fields, "action": name}

    def took(self, shot: Screenshot) -> BetaScreenshotResult:
        self.size = (shot.width, shot.height)
        self.dirty = False
        return BetaScreenshotResult(data=base64.b64encode(shot.data).decode("ascii"), media_type=shot.media_type)

    def result(self, name: str, response: ActionResponse) -> BetaComputerMemberResult:
        if name not in _LOOKING:
            self.dirty = True
        outcome: ActionResult = response.results[0]
        if name == "cursor_position" and outcome.cursor is not None:
            return BetaComputerCursorPositionResult(x=outcome.cursor.x, y=outcome.cursor.y)
        if name == "zoom" and outcome.image is not None:
            return BetaScreenshotResult(data=outcome.image.data, media_type=outcome.image.media_type)  # type: ignore[arg-type]
        return None


def _refusal(error: Exception) -> ToolError:
    """What the model reads when the desktop refused or could not be reached."""
    if isinstance(error, CubicleError):
        response = error.response
        failed = next((r for r in response.results if r.status == "error" and r.error), None) if response else None
        return ToolError(failed.error.message if failed and failed.error else error.message)
    return ToolError(f"The desktop could not be reached ({type(error).__name__}: {error}); wait a moment and try again.")


class CubicleComputer(BetaAbstractComputerToolset20260801):
    """The computer toolset on a cubicle desktop, for the SDK's synchronous tool runner.

    `desktop` is the desktop's URL (with its `token`), or a DesktopClient to use as it is.
    `image_size` fixes the screenshots' size (default: the largest the toolset models take
    unscaled); `image_format` is png, jpeg or webp. `confirm` is the SDK's approval hook,
    required because the toolset types and presses keys."""

    def __init__(self, desktop: str | DesktopClient, token: str | None = None, *, confirm: Any = None,
                 configs: Any = None, tool_configs: Any = None, image_size: tuple[int, int] | None = None,
                 image_format: str = "png", timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(configs=configs, confirm=confirm, tool_configs=tool_configs)
        self._owns_client = not isinstance(desktop, DesktopClient)
        self.client = DesktopClient(desktop, token, timeout=timeout) if isinstance(desktop, str) else desktop
        self.space = _Space(image_size, image_format)

    def execute(self, context: BetaToolsetCallContext, name: Any, input: Any) -> BetaComputerMemberResult:
        try:
            if name == "screenshot":
                return self.space.took(self._screenshot())
            if self.space.size is None:
                self.space.took(self._screenshot())  # the coordinate space is a screenshot's size
            response = self.client.act(self.space.action(name, input), coordinate_space=self.space.size)
        except (CubicleError, httpx.HTTPError) as error:
            raise _refusal(error) from None
        return self.space.result(name, response)

    def screenshot_now(self) -> Screenshot:
        """A screenshot outside any member call, in the model's coordinate space (settled if
        the screen may have changed): for a driver that shows the model the screen after a
        batch of members, or when a run starts."""
        shot = self._screenshot()
        self.space.took(shot)
        return shot

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The model's coordinate space: the size of the last screenshot."""
        return self.space.size

    def _screenshot(self) -> Screenshot:
        if self.space.limits is None:
            screen = self.client.screen()
            self.space.set_screen((screen.width, screen.height))
        width, height = self.space.limits or (0, 0)
        return self.client.screenshot(format=self.space.format, max_width=width, max_height=height,
                                      settle=self.space.dirty)

    def close(self) -> None:
        super().close()
        if self._owns_client:
            self.client.close()


class AsyncCubicleComputer(BetaAsyncAbstractComputerToolset20260801):
    """The same for the SDK's async tool runner (an AsyncAnthropic client)."""

    def __init__(self, desktop: str | AsyncDesktopClient, token: str | None = None, *, confirm: Any = None,
                 configs: Any = None, tool_configs: Any = None, image_size: tuple[int, int] | None = None,
                 image_format: str = "png", timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(configs=configs, confirm=confirm, tool_configs=tool_configs)
        self._owns_client = not isinstance(desktop, AsyncDesktopClient)
        self.client = AsyncDesktopClient(desktop, token, timeout=timeout) if isinstance(desktop, str) else desktop
        self.space = _Space(image_size, image_format)

    async def execute(self, context: BetaToolsetCallContext, name: Any, input: Any) -> BetaComputerMemberResult:
        try:
            if name == "screenshot":
                return self.space.took(await self._screenshot())
            if self.space.size is None:
                self.space.took(await self._screenshot())
            response = await self.client.act(self.space.action(name, input), coordinate_space=self.space.size)
        except (CubicleError, httpx.HTTPError) as error:
            raise _refusal(error) from None
        return self.space.result(name, response)

    async def _screenshot(self) -> Screenshot:
        if self.space.limits is None:
            screen = await self.client.screen()
            self.space.set_screen((screen.width, screen.height))
        width, height = self.space.limits or (0, 0)
        return await self.client.screenshot(format=self.space.format, max_width=width, max_height=height,
                                            settle=self.space.dirty)

    async def close(self) -> None:
        await super().close()
        if self._owns_client:
            await self.client.close()
