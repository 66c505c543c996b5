"""The MCP tools: the computer toolset's members and the desktop's other routes, each a small
class with its arguments, its annotations and its call; `ToolTable` lists them and dispatches
by name.

Every tool calls the desktop's HTTP API (`AsyncDesktopClient`), so its checks, its wording
and its batch rule are the API's: one call is one request, and a member is one batch, which
the desktop runs whole before any other (batches of several sessions never interleave).
Arguments are read by the API's own models (an argument schema is its model's, less the
`action` a member's name says) and refused in the API's words before anything is sent; what
depends on the screen (bounds, key names, typable text) the desktop refuses before it runs
anything. Either way the call is an MCP tool error (`isError`) and the desktop is untouched.

Coordinates are pixels of the session's last screenshot (`space.SessionSpace`): every member
says that size to the desktop, and window geometry is given in it too.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import httpx
import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cubicle import accessibility as t
from cubicle import actions as a
from cubicle import imaging
from cubicle.client import AsyncDesktopClient, CubicleError
from cubicle.web.checks import coerced_fields
from cubicle.web.errors import describe_problems

from .space import SessionSpace

# Members that only look: the screen is as still after them as before.
_LOOKING = frozenset({"zoom", "cursor_position"})
_BATCH_PREFIX = "actions[0]."  # where the API places a field of a one-action batch


class Refused(Exception):
    """A call refused before anything reached the desktop, or by the desktop; `message` is
    what the model reads."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def checked(model: type[BaseModel], arguments: dict[str, Any]) -> Any:
    """The arguments as `model` reads them, or Refused in the API's words (the API also takes
    JSON types as they are: no "5" for 5, no true for 1)."""
    try:
        value = model.model_validate(arguments)
    except ValidationError as error:
        raise Refused(describe_problems(error.errors())) from None
    coerced = coerced_fields(arguments, value)
    if coerced:
        where, instead = coerced[0]
        raise Refused(f"{where}: {instead}.")
    return value


def refusal_of(error: Exception) -> str:
    """What the model reads when the desktop refused a call or could not be reached."""
    if isinstance(error, CubicleError):
        response = error.response
        failed = next((r for r in response.results if r.status == "error" and r.error), None) if response else None
        message = failed.error.message if failed and failed.error else error.message
        return message.removeprefix(_BATCH_PREFIX)
    return f"The desktop could not be reached ({type(error).__name__}: {error}); wait a moment and try again."


def _schema(model: type[BaseModel], drop: tuple[str, ...] = (), inputs: bool = True) -> dict[str, Any]:
    """A model's JSON Schema as a tool's: the fields less `drop`, and (of inputs) an optional
    field as its one type: leaving it out is how it is left unset, and some clients mishandle
    anyOf with null."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    properties = schema.get("properties", {})
    for name in drop:
        properties.pop(name, None)
    for name, prop in properties.items():
        prop.pop("title", None)
        shapes = prop.get("anyOf")
        if inputs and prop.get("default", 0) is None and shapes and len(shapes) == 2 and {"type": "null"} in shapes:
            (shape,) = [s for s in shapes if s != {"type": "null"}]
            del prop["anyOf"], prop["default"]
            properties[name] = {**shape, **prop}
    required = [name for name in schema.get("required", []) if name not in drop]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def _hints(read_only: bool = False, destructive: bool = False, idempotent: bool = False,
           open_world: bool = False) -> types.ToolAnnotations:
    # destructive and idempotent mean something only for a tool that changes its world.
    if read_only:
        return types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=open_world)
    return types.ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent,
                                 open_world_hint=open_world)


LOOKS = _hints(read_only=True)
MOVES = _hints(idempotent=True)  # the pointer moves (hover may show things), nothing else changes
OPERATES = _hints(destructive=True)  # input an app acts on: a click or a key may delete or send


def _text(text: str, structured: Any = None, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured, is_error=error)


def _image(data: str, media_type: str, text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.ImageContent(data=data, mime_type=media_type), types.TextContent(text=text)])


@dataclass
class Call:
    """One tool call: the desktop it goes to and the calling session's space."""

    desktop: AsyncDesktopClient
    space: SessionSpace

    async def screen(self) -> tuple[int, int]:
        if self.space.screen is None:
            info = await self.desktop.screen()
            self.space.screen = (info.width, info.height)
        return self.space.screen

    async def coordinate_space(self) -> tuple[int, int]:
        await self.screen()
        return self.space.current


class Tool:
    """A tool: `arguments` reads its input (and is its schema), `output` its structured answer."""

    name: str
    title: str
    description: str
    arguments: type[BaseModel]
    hints: types.ToolAnnotations
    output: type[BaseModel] | None = None
    _drop: tuple[str, ...] = ()

    def definition(self) -> types.Tool:
        hints = self.hints.model_copy(update={"title": self.title})
        return types.Tool(name=self.name, title=self.title, description=self.description,
                          input_schema=_schema(self.arguments, self._drop),
                          output_schema=_schema(self.output, inputs=False) if self.output else None, annotations=hints)

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        raise NotImplementedError


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(_Arguments):
    pass


# -- the computer toolset's members: one desktop action each --------------------------------

_POINT = "Coordinates are pixels of your last screenshot (before any, of the screen at the default screenshot size)."


class Member(Tool):
    """One action of the desktop's vocabulary, named and shaped as the toolset's member."""

    _drop = ("action",)

    def __init__(self, name: str, model: type[BaseModel], title: str, description: str, hints: types.ToolAnnotations):
        self.name, self.arguments, self.title, self.description, self.hints = name, model, title, description, hints

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        if "action" in arguments:
            raise Refused("action: unknown field (the tool's name is the action)")
        action = checked(self.arguments, {**arguments, "action": self.name})
        space = await call.coordinate_space()
        if self.name not in _LOOKING:
            call.space.dirty = True
        response = await call.desktop.act(action, coordinate_space=space)
        return self.answer(response.results[0], space)

    def answer(self, result: a.ActionResult, space: tuple[int, int]) -> types.CallToolResult:
        return _text(f"{self.name}: done.")


class CursorPosition(Member):
    output = a.Point

    def answer(self, result: a.ActionResult, space: tuple[int, int]) -> types.CallToolResult:
        assert result.cursor is not None
        x, y = result.cursor.x, result.cursor.y
        return _text(f"The pointer is at ({x}, {y}) of your {space[0]}x{space[1]} screenshot.", {"x": x, "y": y})


class Zoom(Member):
    def answer(self, result: a.ActionResult, space: tuple[int, int]) -> types.CallToolResult:
        image = result.image
        assert image is not None and image.region is not None
        x0, y0, x1, y1 = image.region
        return _image(image.data, image.media_type, (
            f"Zoom: {x1 - x0}x{y1 - y0} screen pixels at their full resolution, shown at {image.width}x{image.height}. "
            f"Coordinates of later calls still refer to your {space[0]}x{space[1]} screenshot, not to this image."))


def _members() -> list[Tool]:
    clicks = [
        ("left_click", "Left click", "Click the left button"),
        ("right_click", "Right click", "Click the right button"),
        ("middle_click", "Middle click", "Click the middle button"),
        ("double_click", "Double click", "Double-click the left button"),
        ("triple_click", "Triple click", "Triple-click the left button (selects a line or paragraph)"),
    ]
    tools: list[Tool] = [
        Zoom("zoom", a.Zoom, "Zoom", "See a region closer: [x0, y0, x1, y1] of your last screenshot, captured at the "
             "screen's full resolution and enlarged to the screenshot's size. Later coordinates still refer to the "
             "whole screenshot.", LOOKS),
    ]
    tools += [Member(name, a.Click, title, f"{what} at coordinate, or where the pointer is if omitted; text names "
                     f"modifiers held meanwhile (e.g. 'shift', 'ctrl+shift'). {_POINT}", OPERATES)
              for name, title, what in clicks]
    tools += [
        Member("left_click_drag", a.Drag, "Drag", "Press the left button at start_coordinate (or where the pointer "
               "is), move through path to coordinate, release. " + _POINT, OPERATES),
        Member("mouse_move", a.MouseMove, "Move the pointer", "Move the pointer to coordinate. " + _POINT, MOVES),
        Member("left_mouse_down", a.MouseButton, "Press the left button",
               "Press the left button (at coordinate if given) and keep it down. " + _POINT, OPERATES),
        Member("left_mouse_up", a.MouseButton, "Release the left button",
               "Release the left button (at coordinate if given). " + _POINT, OPERATES),
        Member("scroll", a.Scroll, "Scroll", "Turn the wheel scroll_amount clicks toward scroll_direction, at coordinate "
               "or where the pointer is; text names modifiers held meanwhile. " + _POINT, OPERATES),
        Member("type", a.Type, "Type text", "Type text into the focused window, character by character, exactly "
               "(any Unicode; a line end is Return).", OPERATES),
        Member("key", a.Key, "Press keys", "Press a key combo such as 'ctrl+s' or 'Return' (several separated by "
               "spaces), repeat times.", OPERATES),
        Member("hold_key", a.HoldKey, "Hold a key", "Hold one key combo down for duration seconds.", OPERATES),
        Member("wait", a.Wait, "Wait", "Wait duration seconds (for a program to start or a page to load).", LOOKS),
        CursorPosition("cursor_position", a.CursorPosition, "Pointer position",
                       "Where the pointer is, in pixels of your last screenshot.", LOOKS),
    ]
    return tools


# -- screenshot ---------------------------------------------------------------------------


class ScreenshotArguments(_Arguments):
    max_width: int | None = Field(None, ge=16, le=16384, description=(
        "shrink the screenshot to at most this width (default: the largest size a model takes as it is)"))
    max_height: int | None = Field(None, ge=16, le=16384, description="shrink the screenshot to at most this height")


class Screenshot(Tool):
    name, title, arguments, hints = "screenshot", "Screenshot", ScreenshotArguments, LOOKS
    description = (
        "See the screen, as an image sized for a model: by default the largest Claude takes as it is (long edge <= "
        "2576 px, <= 4784 visual tokens), or within max_width x max_height. Coordinates in your later calls are "
        "pixels of this screenshot, mapped back to the screen exactly. After your own actions it waits until the "
        "screen is still.")

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        options = checked(ScreenshotArguments, arguments)
        screen = await call.screen()
        limits = (options.max_width, options.max_height) if options.max_width or options.max_height \
            else call.space.default_size()
        if call.space.sessionless and imaging.scaled_size(*screen, *limits) != call.space.default_size():
            raise Refused("This request belongs to no MCP session, so no other screenshot size can be kept for your "
                          "next call's coordinates: leave out max_width and max_height, or connect with a session.")
        shot = await call.desktop.screenshot(max_width=limits[0], max_height=limits[1], settle=call.space.dirty)
        call.space.size, call.space.dirty = (shot.width, shot.height), False
        return _image(base64.b64encode(shot.data).decode("ascii"), shot.media_type, (
            f"Screenshot {shot.width}x{shot.height} of the {shot.screen_width}x{shot.screen_height} screen. "
            f"Coordinates in your later calls are pixels of this screenshot."))


# -- windows and programs -------------------------------------------------------------------


def _in_space(window: a.Window, space: tuple[int, int], screen: tuple[int, int]) -> dict[str, Any]:
    """A window with its geometry in the session's space (its edges rounded outward)."""
    fields = window.model_dump()
    if space != screen:
        sx, sy = space[0] / screen[0], space[1] / screen[1]
        left, top = math.floor(window.x * sx), math.floor(window.y * sy)
        right, bottom = math.ceil((window.x + window.width) * sx), math.ceil((window.y + window.height) * sy)
        fields.update(x=left, y=top, width=right - left, height=bottom - top)
    return fields


class WindowList(BaseModel):
    windows: list[a.Window]


class ListWindows(Tool):
    name, title, arguments, hints, output = "list_windows", "List windows", NoArguments, LOOKS, WindowList
    description = ("The desktop's windows, bottom to top: id, title, class, pid, geometry in pixels of your last "
                   "screenshot, focused, minimized.")

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        checked(NoArguments, arguments)
        space, screen = await call.coordinate_space(), await call.screen()
        windows = [_in_space(window, space, screen) for window in await call.desktop.windows()]
        lines = [f"{w['id']}: {w['title']!r} ({w['wm_class']}) at ({w['x']}, {w['y']}) {w['width']}x{w['height']}"
                 + (" focused" if w["focused"] else "") + (" minimized" if w["minimized"] else "") for w in windows]
        return _text("\n".join(lines) or "No windows.", {"windows": windows})


class WindowArguments(_Arguments):
    window_id: int = Field(ge=0, description="a window's id, as list_windows gives it")


class WindowAction(Tool):
    arguments, output = WindowArguments, a.WindowActionResponse

    def __init__(self, name: str, title: str, description: str, hints: types.ToolAnnotations, done: str):
        self.name, self.title, self.description, self.hints, self._done = name, title, description, hints, done

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        window_id = checked(WindowArguments, arguments).window_id
        call.space.dirty = True
        answer = await (call.desktop.activate if self.name == "activate_window" else call.desktop.close_window)(window_id)
        said = self._done if answer.done else f"not yet {self._done}"
        return _text(f"Window {window_id}: {said}.", answer.model_dump())


class Launch(Tool):
    name, title, arguments, output = "launch", "Launch a program", a.LaunchRequest, a.LaunchResponse
    hints = _hints(idempotent=False)  # starts another program every time; changes nothing that was there
    description = ("Start a program as the desktop user (no shell runs: a string is split like a shell would) and "
                   "wait for its window, whose geometry is given in pixels of your last screenshot.")

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        request = checked(a.LaunchRequest, arguments)
        call.space.dirty = True
        launched = await call.desktop.launch(request.command, request.wait_for_window, request.timeout)
        window = _in_space(launched.window, await call.coordinate_space(), await call.screen()) if launched.window else None
        text = f"Started, pid {launched.pid}" + (f"; its window: {window['id']} {window['title']!r}." if window else
                                                ("; no window yet." if request.wait_for_window else "."))
        return _text(text, {"pid": launched.pid, "window": window})


# -- clipboard, shell and files ------------------------------------------------------------


class GetClipboard(Tool):
    name, title, arguments, hints, output = "get_clipboard", "Read the clipboard", NoArguments, LOOKS, a.ClipboardText
    description = "The text on the desktop's clipboard."

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        checked(NoArguments, arguments)
        text = await call.desktop.get_clipboard()
        return _text(text, {"text": text})


class SetClipboard(Tool):
    name, title, arguments = "set_clipboard", "Set the clipboard", a.ClipboardText
    hints = _hints(destructive=True, idempotent=True)  # replaces what was there
    description = "Put text on the desktop's clipboard (replacing what was there), to paste with ctrl+v."

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        body = checked(a.ClipboardText, arguments)
        await call.desktop.set_clipboard(body.text)
        return _text(f"The clipboard holds {len(body.text)} characters.")


class Shell(Tool):
    name, title, arguments, output = "shell", "Run shell commands", a.ShellCommand, a.ShellResult
    hints = _hints(destructive=True, open_world=True)  # anything the desktop user may do, network included
    description = ("Run bash commands as the desktop user, in a persistent shell (cd and variables persist), with the "
                   "desktop's DISPLAY. Answers the output and the exit code.")

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        body = checked(a.ShellCommand, arguments)
        call.space.dirty = True
        result = await call.desktop.shell(body.command, body.timeout)
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        output = result.output if not result.output or result.output.endswith("\n") else result.output + "\n"
        return _text(f"{output}[{status}]", result.model_dump())


class PathArguments(_Arguments):
    path: str = Field(max_length=4096, json_schema_extra={"pattern": a.ABSOLUTE_PATH, "minLength": 1},
                      description="absolute path of a file or directory (starting with '/', without NUL characters)")


class ReadFile(Tool):
    name, title, arguments, hints, output = "read_file", "Read a file", PathArguments, LOOKS, a.FileInfo
    description = "A text file's content, or a directory's entries, read as the desktop user."

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        info = await call.desktop.read_file(checked(PathArguments, arguments).path)
        if info.type == "file":
            text = info.content or ""
        else:
            text = "\n".join(f"{e.name}{'/' if e.type == 'directory' else ''}" for e in info.entries or []) or "(empty)"
            if info.truncated:
                text += f"\n[{info.total} entries; the first {len(info.entries or [])} listed]"
        return _text(text, info.model_dump(exclude_none=True))


class WriteFile(Tool):
    name, title, arguments, output = "write_file", "Write a file", a.WriteFile, a.FileWritten
    hints = _hints(destructive=True, idempotent=True)  # replaces the file's text; again: the same file
    description = "Create or replace a text file as the desktop user (atomically; an existing file keeps its mode)."

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        body = checked(a.WriteFile, arguments)
        written = await call.desktop.write_file(body.path, body.content, body.create_dirs)
        return _text(f"Wrote {written.size} bytes to {written.path}.", written.model_dump())


# -- the accessibility tree ---------------------------------------------------------------


class TreeArguments(_Arguments):
    window_id: int | None = Field(None, ge=0, description="only this window and its app (an id from list_windows)")
    focused: bool = Field(False, description="only the focused window and its app")
    max_depth: int = Field(t.MAX_DEPTH, ge=0, le=t.MAX_DEPTH, description="levels below each app")
    max_nodes: int = Field(1_000, ge=1, le=t.MAX_NODES, description="nodes in all; the rest are counted, not read")
    interactive_only: bool = Field(False, description="only nodes one can act on (and what leads to them)")
    visible_only: bool = Field(True, description="only what is on the screen")


class AccessibilityTree(Tool):
    name, title, arguments, hints, output = ("accessibility_tree", "Read the accessibility tree", TreeArguments,
                                             LOOKS, t.AccessibilityTree)
    description = ("The apps' widgets as their accessibility tree (role, name, states, value, text, actions, box): "
                   "what a screen reader sees. Boxes are in pixels of your last screenshot; a box's centre is where a "
                   "click hits the widget. Apps that do not answer in time are listed as unreadable, never waited for.")

    async def __call__(self, call: Call, arguments: dict[str, Any]) -> types.CallToolResult:
        body = checked(TreeArguments, arguments)
        if body.window_id is not None and body.focused:
            raise Refused("window_id and focused name two scopes: give one of them.")
        tree = await call.desktop.accessibility(window=body.window_id, focused=body.focused, max_depth=body.max_depth,
                                                max_nodes=body.max_nodes, interactive_only=body.interactive_only,
                                                visible_only=body.visible_only,
                                                coordinate_space=await call.coordinate_space())
        shown = tree.model_dump(mode="json")
        return _text(json.dumps(shown, ensure_ascii=False, separators=(",", ":")), shown)


# -- the table ------------------------------------------------------------------------------


class ToolTable:
    """Every tool, by name."""

    def __init__(self) -> None:
        tools: list[Tool] = [Screenshot(), *_members(), ListWindows(),
                             WindowAction("activate_window", "Activate a window", "Raise a window and give it the "
                                          "keyboard focus.", MOVES, "focused"),
                             WindowAction("close_window", "Close a window", "Ask a window to close, as its close "
                                          "button does (the program may ask to save first).",
                                          _hints(destructive=True, idempotent=True), "closed"),
                             Launch(), AccessibilityTree(), GetClipboard(), SetClipboard(), Shell(), ReadFile(), WriteFile()]
        self.tools = {tool.name: tool for tool in tools}
        self.definitions = [tool.definition() for tool in tools]

    async def call(self, name: str, arguments: dict[str, Any], desktop: AsyncDesktopClient,
                   space: SessionSpace) -> types.CallToolResult:
        """The tool's answer; a refusal is an isError answer. `name` must be one of `tools`."""
        try:
            return await self.tools[name](Call(desktop, space), arguments)
        except Refused as refused:
            return _text(refused.message, error=True)
        except (CubicleError, httpx.HTTPError) as error:
            return _text(refusal_of(error), error=True)
