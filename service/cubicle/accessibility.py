"""The accessibility tree's vocabulary: what GET /accessibility answers, and what the server
asks the desktop user's runner for. Typed models shared by the server, the runner and the
client; no D-Bus here (that is cubicle.server.atspi).

A node is what an app publishes through AT-SPI for one widget: its role ("push button",
"table cell"), its name, its states, its box on the screen, its actions, its value and text,
and its children. Fields that a node does not have are left out of the JSON, so that a tree
of thousands of nodes stays small enough for a model to read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from .actions import Size

MAX_DEPTH = 100
MAX_NODES = 50_000
DEFAULT_MAX_NODES = 5_000
MAX_CHILDREN = 1_000  # read of one node at most; the rest are counted in children_omitted
MAX_TEXT_CHARS = 2_000  # of one node's text; longer text is cut (text_truncated)
MAX_TIMEOUT_MS = 60_000
MAX_APP_TIMEOUT_MS = 30_000

Limit = Literal["max_depth", "max_nodes", "max_children", "deadline"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Box(BaseModel):
    """A rectangle: the top-left corner and the size."""

    x: int
    y: int
    width: int
    height: int


class Action(BaseModel):
    name: str = Field(description="what the toolkit calls it: click, press, activate, toggle, expand or collapse ...")
    description: str | None = None
    keybinding: str | None = Field(None, description="the shortcut, as the toolkit writes it (e.g. <Control>s)")


class Value(BaseModel):
    """A number the widget shows and may let one change: a slider, a spin button, a scroll bar."""

    current: float
    minimum: float | None = Field(None, description="left out when unbounded")
    maximum: float | None = Field(None, description="left out when unbounded")
    step: float | None = Field(None, description="the smallest change; left out when 0 (any)")


class AccessibleNode(BaseModel):
    role: str = Field(description="AT-SPI's role name: application, frame, push button, menu item, text, table cell ...")
    name: str = Field("", description="the label a person would read (a button's caption, a window's title, a cell's "
                      "address in LibreOffice Calc)")
    description: str | None = Field(None, description="a longer explanation (often the tooltip), when there is one")
    states: list[str] = Field(default_factory=list, description=(
        "AT-SPI's state names: enabled, sensitive, focusable, focused, showing, visible, checked, selected, editable, "
        "expanded ... ('showing': it is on the screen)"))
    box: Box | None = Field(None, description=(
        "where it is on the screen, for nodes that are showing; in screen pixels, or in coordinate_space when one was "
        "given. Its centre is where a click hits it"))
    actions: list[Action] | None = Field(None, description="what it can do when asked (AT-SPI's Action interface)")
    value: Value | None = None
    text: str | None = Field(None, description=(
        f"its text (an entry's content, a cell's, a paragraph's), when it differs from the name; at most "
        f"{MAX_TEXT_CHARS} characters"))
    text_truncated: bool | None = Field(None, description="text was longer and was cut")
    pid: int | None = Field(None, description="applications only: the process id")
    attributes: dict[str, str] | None = Field(None, description="details=true: the toolkit's attributes (a web page's tag, "
                                              "class, level ...)")
    interfaces: list[str] | None = Field(None, description="details=true: the AT-SPI interfaces it implements (Action, "
                                         "Component, Text, Value, Table, Image, Selection ...)")
    children: list[AccessibleNode] = Field(default_factory=list)
    children_omitted: int | None = Field(None, description=(
        "children it has that were not read (max_depth, max_nodes, the per-node cap of "
        f"{MAX_CHILDREN}, the deadline, or visible_only)"))

    @model_serializer(mode="wrap")
    def _without_empty_fields(self, serialize):  # no return annotation: the schema stays the fields'
        """A leaf's `"children": []`, an empty name or state list, and every absent field are
        left out: thousands of nodes are read by models, whose context they would fill."""
        return {key: value for key, value in serialize(self).items() if key == "role" or value not in (None, "", [], {})}


class UnreadableApp(BaseModel):
    name: str = Field(description="the app's name (its process's, when the app itself did not say)")
    pid: int | None = None
    reason: str = Field(description="why: it did not answer in time, it stopped answering, it is gone ...")
    partial: bool = Field(False, description="part of its tree was read and is in apps")


class AccessibilityTree(BaseModel):
    scope: Literal["desktop", "window", "focused"] = Field(description=(
        "desktop: every app on the accessibility bus; window / focused: the app of that window, with that window alone"))
    window: int | None = Field(None, description="window / focused: the X window id (as GET /windows lists it)")
    apps: list[AccessibleNode] = Field(description="one node (role application) per app that could be read")
    unreadable: list[UnreadableApp] = Field(default_factory=list, description=(
        "apps that did not answer (in time): they are left out of apps, or are there in part (partial)"))
    nodes: int = Field(description="nodes in the answer (before interactive_only left some out)")
    truncated: bool = Field(description="some nodes were not read: see truncated_by, and children_omitted on the nodes")
    truncated_by: list[Limit] = Field(default_factory=list)
    elapsed_ms: float
    coordinate_space: Size | None = Field(None, description="the space the boxes are in; screen pixels if absent")


# -- what the server asks the runner for ----------------------------------------------------


class WindowTarget(_Strict):
    """An X window, as the server sees it, for the runner to find among the apps' windows."""

    pid: int = Field(ge=1)
    title: str = Field(max_length=10_000)
    box: Box = Field(description="the window's area in screen pixels")


class TreeRequest(_Strict):
    window: WindowTarget | None = Field(None, description="only this window (and its app); else the whole desktop")
    max_depth: int = Field(MAX_DEPTH, ge=0, le=MAX_DEPTH)
    max_nodes: int = Field(DEFAULT_MAX_NODES, ge=1, le=MAX_NODES)
    timeout_ms: int = Field(5_000, ge=100, le=MAX_TIMEOUT_MS)
    app_timeout_ms: int = Field(1_000, ge=50, le=MAX_APP_TIMEOUT_MS)
    visible_only: bool = False
    interactive_only: bool = False
    details: bool = False
