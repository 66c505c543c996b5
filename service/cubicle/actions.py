"""The action vocabulary: typed models shared by the server, the client and the agent.

Names and fields are those of Anthropic's computer tool, so a model's tool input can be sent
as it is. Limits that hold whatever the screen are checked here; what depends on the screen
(bounds, key names) is checked by the server before anything reaches the desktop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TYPE_CHARS = 20_000
MAX_DURATION_S = 300.0
MAX_SCROLL_AMOUNT = 100
MAX_KEY_REPEAT = 100
MAX_BATCH = 100
MAX_DRAG_POINTS = 1000

# -- what the schema says of rules checked in code -------------------------------------------
# A JSON Schema `pattern` here is only stated, never enforced by pydantic: the check in code
# keeps its own message (the wording is what a model reads). Whitespace is what Python's
# str.strip() removes, which is not the \s of a schema's regular expression.

WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\x00]*$"
NOT_BLANK_NO_NUL = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"
ABSOLUTE_PATH = r"^/[^\x00]*$"
TYPABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"  # x11.check_typable's characters
SchemaRewrite = Callable[[dict[str, Any]], None]


def as_plain_array(minimum: int | None = None) -> SchemaRewrite:
    """A tuple of integers as the plain array it is (`items`, not `prefixItems`, which some
    clients' generators and validators mishandle), with the bound every screen shares."""

    def rewrite(schema: dict[str, Any]) -> None:
        schema.pop("prefixItems", None)
        schema["items"] = {"type": "integer"} if minimum is None else {"type": "integer", "minimum": minimum}

    return rewrite


Coordinate = Annotated[tuple[int, int], Field(
    description="[x, y] from the top-left corner, inside the display (or coordinate_space): 0 <= x < width, "
    "0 <= y < height; others are refused with 422 coordinates_out_of_bounds",
    json_schema_extra=as_plain_array(minimum=0),
)]


class _Strict(BaseModel):
    # Unknown fields are refused: a misspelt 'coordinates' must not silently click elsewhere.
    model_config = ConfigDict(extra="forbid")


class _Modifiers(_Strict):
    text: str | None = Field(None, max_length=100, description=(
        "modifier combo held during the action, e.g. 'shift' or 'ctrl+shift': key names the keyboard knows; "
        "others are refused with 422 unknown_key or invalid_text"))
    key: str | None = Field(None, max_length=100, description="same as text (the reference demo's field name)")

    @property
    def modifiers(self) -> str | None:
        return self.text if self.text is not None else self.key


class Click(_Modifiers):
    action: Literal["left_click", "right_click", "middle_click", "double_click", "triple_click"]
    coordinate: Coordinate | None = Field(None, description="where to click; the current position if omitted")


class MouseMove(_Strict):
    action: Literal["mouse_move"]
    coordinate: Coordinate


class Drag(_Modifiers):
    action: Literal["left_click_drag"]
    start_coordinate: Coordinate | None = Field(None, description="where the drag starts; the current position if omitted")
    coordinate: Coordinate = Field(description="where the drag ends")
    path: list[Coordinate] | None = Field(
        None, max_length=MAX_DRAG_POINTS, description="points passed through between start and end, in order"
    )


class MouseButton(_Strict):
    action: Literal["left_mouse_down", "left_mouse_up"]
    coordinate: Coordinate | None = None


class Scroll(_Modifiers):
    action: Literal["scroll"]
    scroll_direction: Literal["up", "down", "left", "right"]
    scroll_amount: int = Field(3, ge=1, le=MAX_SCROLL_AMOUNT, description="wheel clicks")
    coordinate: Coordinate | None = None


KEY_NAMES = ("key names the keyboard knows (X keysym names such as Return, ctrl, F5, a); "
             "others are refused with 422 unknown_key")


class Key(_Strict):
    action: Literal["key"]
    text: str = Field(min_length=1, max_length=200,
                      description=f"xdotool combo(s), e.g. 'ctrl+s' or 'Return', separated by spaces: {KEY_NAMES}")
    repeat: int = Field(1, ge=1, le=MAX_KEY_REPEAT)


class HoldKey(_Strict):
    action: Literal["hold_key"]
    text: str = Field(min_length=1, max_length=200, description=f"one combo, e.g. 'shift' or 'ctrl+alt': {KEY_NAMES}")
    duration: float = Field(gt=0, le=MAX_DURATION_S, description="seconds")


class Type(_Strict):
    action: Literal["type"]
    text: str = Field(min_length=1, max_length=MAX_TYPE_CHARS, json_schema_extra={"pattern": TYPABLE},
                      description="the text, typed character by character; control characters other than tab and "
                      "line ends cannot be typed (422 invalid_text)")


class Wait(_Strict):
    action: Literal["wait"]
    duration: float = Field(1.0, ge=0, le=MAX_DURATION_S, description="seconds")


class CursorPosition(_Strict):
    action: Literal["cursor_position"]


class Screenshot(_Strict):
    action: Literal["screenshot"]


class Zoom(_Strict):
    action: Literal["zoom"]
    region: tuple[int, int, int, int] = Field(
        description="[x0, y0, x1, y1], corners of the area to enlarge: 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height "
        "of the display (or coordinate_space), so never of zero size; others are refused with 422 invalid_region",
        json_schema_extra=as_plain_array(minimum=0),
    )


Action = Annotated[
    Click | MouseMove | Drag | MouseButton | Scroll | Key | HoldKey | Type | Wait | CursorPosition | Screenshot | Zoom,
    Field(discriminator="action"),
]
ACTION_NAMES = sorted(
    name
    for model in (Click, MouseMove, Drag, MouseButton, Scroll, Key, HoldKey, Type, Wait, CursorPosition, Screenshot, Zoom)
    for name in get_args(model.model_fields["action"].annotation)
)


class Size(_Strict):
    width: int = Field(ge=1, le=16384)
    height: int = Field(ge=1, le=16384)


class ImageOptions(_Strict):
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: int = Field(80, ge=1, le=100, description="for jpeg and webp")
    max_width: int | None = Field(None, ge=16, le=16384)
    max_height: int | None = Field(None, ge=16, le=16384)
    scale: float | None = Field(None, gt=0, le=1, description="shrink factor; max_width/max_height win if both are given")
    cursor: bool = Field(False, description="draw the mouse pointer into the image")


class SettleOptions(_Strict):
    quiet_ms: int = Field(150, ge=10, le=5000, description="how long the screen must stay unchanged")
    timeout_ms: int = Field(3000, ge=0, le=60000, description="give up waiting after this long")


class ActionRequest(_Strict):
    """A batch. The body may also be one action object or a bare list of actions."""

    actions: list[Action] = Field(min_length=1, max_length=MAX_BATCH, description=(
        "run in order, stopping at the first failure; together the waits, held keys and drags of a batch may keep "
        f"the desktop busy for at most {MAX_DURATION_S:g} s (else 422 batch_too_long)"))
    coordinate_space: Size | None = Field(
        None,
        description="the size of the (scaled) screenshot the coordinates refer to; screen pixels if omitted",
    )
    screenshot: bool | ImageOptions = Field(False, description="end with a settled screenshot")
    settle: SettleOptions = Field(default_factory=SettleOptions)

    @model_validator(mode="before")
    @classmethod
    def _accept_shorthands(cls, data: Any) -> Any:
        return cls.as_full_body(data)

    @staticmethod
    def as_full_body(data: Any) -> Any:
        """One action object, or a bare list of actions, as the batch it stands for."""
        if isinstance(data, list):
            return {"actions": data}
        if isinstance(data, dict) and "action" in data:
            return {"actions": [data]}
        return data


# -- responses ----------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str


class ImageData(BaseModel):
    media_type: str
    width: int
    height: int
    screen_width: int
    screen_height: int
    scale_x: float = Field(description="image pixels per screen pixel, horizontally")
    scale_y: float
    region: Annotated[tuple[int, int, int, int], Field(json_schema_extra=as_plain_array())] | None = Field(
        None, description="[x0, y0, x1, y1] of a zoom, in screen pixels")
    settle_ms: float | None = None
    settled: bool | None = None
    data: str = Field(description="base64")


class Point(BaseModel):
    x: int
    y: int


class ActionResult(BaseModel):
    index: int
    action: str
    status: Literal["ok", "error", "not_executed"]
    error: ErrorBody | None = None
    duration_ms: float = 0.0
    cursor: Point | None = None
    image: ImageData | None = None


class ActionResponse(BaseModel):
    results: list[ActionResult]
    screenshot: ImageData | None = None
    error: ErrorBody | None = None


class ScreenInfo(BaseModel):
    width: int
    height: int
    display: str


class Window(BaseModel):
    id: int
    title: str
    wm_class: str
    wm_instance: str
    pid: int | None
    x: int
    y: int
    width: int
    height: int
    focused: bool
    minimized: bool


def _launch_command(schema: dict[str, Any]) -> None:
    """Both shapes of a command name a program: a string with a word in it, or a list whose
    first item is not empty; no NUL anywhere."""
    for shape in schema.get("anyOf", []):
        if shape.get("type") == "string":
            shape["pattern"] = NOT_BLANK_NO_NUL
        elif shape.get("type") == "array":
            shape["items"] = {"type": "string", "pattern": NO_NUL}
            shape["prefixItems"] = [{"type": "string", "minLength": 1, "pattern": NO_NUL}]
            shape["minItems"] = 1


class LaunchRequest(_Strict):
    command: str | list[str] = Field(
        json_schema_extra=_launch_command,
        description="program and arguments; a string is split like a shell would (no shell runs), so its quotes must "
        "pair up and its first word must not be empty (else 422 invalid_command); a program that cannot be started "
        "is refused with 422 launch_failed",
    )
    wait_for_window: bool = True
    timeout: float = Field(20.0, gt=0, le=120, description="seconds to wait for the new window")


class LaunchResponse(BaseModel):
    pid: int
    window: Window | None = None


class WindowActionResponse(BaseModel):
    id: int
    done: bool = Field(description="activate: the window is now focused; close: the window is gone")


class ClipboardText(_Strict):
    text: str = Field(max_length=1_000_000)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    x: bool
    window_manager: bool
    vnc: bool
    runner: bool = Field(description="the desktop user's runner (shell, files, programs) answers")


# -- shell and files ----------------------------------------------------------------------
# Bodies and answers of /shell/* and /files: the desktop-side half of a model's bash and
# text-editor tools. They run as the desktop user, with the desktop's DISPLAY.

MAX_SHELL_COMMAND_CHARS = 100_000
MAX_SHELL_TIMEOUT_S = 600.0
# The whole request body is capped at 2 MiB (server.security.MAX_BODY_BYTES); this leaves
# room for JSON escapes and the other fields. Non-ASCII text takes more than a byte per
# character, so its real ceiling is lower: the body limit answers 413 first.
MAX_WRITE_CHARS = 2_000_000


class ShellCommand(_Strict):
    command: str = Field(
        max_length=MAX_SHELL_COMMAND_CHARS, json_schema_extra={"pattern": NOT_BLANK_NO_NUL},
        description="bash commands, run in the persistent shell (cd, variables and functions persist); stdin is /dev/null; "
        "not blank, and without NUL characters",
    )
    timeout: float = Field(
        30.0, gt=0, le=MAX_SHELL_TIMEOUT_S,
        description="seconds; on timeout the command and the shell are killed and the next command gets a fresh shell",
    )


class ShellResult(BaseModel):
    output: str = Field(description="stdout and stderr merged, as printed; notes from the server in [brackets] at the end")
    exit_code: int | None = Field(description="the command's exit status; null if it did not finish")
    timed_out: bool
    truncated: bool = Field(description="the middle of a long output was cut (its size is said where it was cut)")


class ShellRestarted(BaseModel):
    restarted: bool = True


class DirectoryEntry(BaseModel):
    name: str
    type: Literal["file", "directory", "other"] = Field(description="symlinks are followed; 'other': device, pipe, socket, broken link")
    size: int | None = Field(None, description="bytes, for files")


class FileInfo(BaseModel):
    """A file with its text, or a directory with its entries."""

    path: str = Field(description="the normalised absolute path")
    type: Literal["file", "directory"]
    size: int | None = Field(None, description="file: bytes")
    content: str | None = Field(None, description="file: its text (UTF-8)")
    entries: list[DirectoryEntry] | None = Field(None, description="directory: sorted by name, hidden entries last")
    total: int | None = Field(None, description="directory: number of entries, including those not listed")
    truncated: bool | None = Field(None, description="directory: more entries than the 1000 listed")


class WriteFile(_Strict):
    path: str = Field(max_length=4096, json_schema_extra={"pattern": ABSOLUTE_PATH, "minLength": 1},
                      description="absolute path (starting with '/', without NUL characters)")
    content: str = Field(max_length=MAX_WRITE_CHARS, description="the whole new text; the request body must stay under 2 MiB")
    create_dirs: bool = Field(False, description="create missing parent folders")


class FileWritten(BaseModel):
    path: str
    size: int = Field(description="bytes written")
