"""The accessibility tree, read from AT-SPI over D-Bus (with dbus-fast: no GObject, no libatspi).

Where it comes from: the desktop session runs an accessibility bus (a dbus-daemon with
at-spi2-core's configuration; see desktop/supervisord.conf) whose address every program on
the desktop finds in AT_SPI_BUS_ADDRESS. GTK 3 apps, Firefox, Chromium and LibreOffice (its
GTK 3 plugin) publish their widgets there, and at-spi2-core's registry daemon lists them. The
bus lets in its own user only, so this runs as the desktop user: in the runner.

Fast: a node costs a few method calls (its properties, role, states and interfaces; then its
box, actions, value, text and children), and an app answers them one after another. So the
walk is breadth-first, one level of every app at a time, with many calls of a level in flight
at once: the time is the apps' own work rather than round trips. dbus-fast's compiled
marshalling costs a few microseconds a message (a pure-Python one a hundred: most of a walk).

Bounded: an app that has calls waiting and answers none of them for app_timeout is given up
for the rest of the request and listed as unreadable, with whatever was read of it. The whole
walk stops at the deadline with what it has; max_depth, max_nodes and a cap on the children of
one node bound its size. Each app has a few dozen calls in flight at most, so that its silence
means the app, not a queue of our own making. Tables that manage their descendants
(LibreOffice Calc's sheet has 2^31 cells) are read for their visible cells only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from cubicle import accessibility as t

BUS_ADDRESS_VARIABLE = "AT_SPI_BUS_ADDRESS"

Ref = tuple[str, str]  # (bus name, object path) of an accessible object

_ATSPI = "org.a11y.atspi."
_ACCESSIBLE = _ATSPI + "Accessible"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_REGISTRY: Ref = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
_NULL_PATH = "/org/a11y/atspi/null"
_BUS_DAEMON: Ref = ("org.freedesktop.DBus", "/org/freedesktop/DBus")
_SCREEN = 0  # ATSPI_COORD_TYPE_SCREEN
_CONNECT_TIMEOUT_S = 2.0
# Calls in flight: to one app, and in all. An app answers one call after another anyway; and
# what we send must stay well inside the socket's buffer (dbus-fast gives up on a full one).
_APP_WINDOW = 32
_BUS_WINDOW = 256
_NODES_AT_ONCE = 400  # per app: a level is read in such slices
_WATCH_TICK_S = 0.02
# Errors that mean the app itself has left the bus, not that one object refused a call.
_GONE = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply",
         "org.freedesktop.DBus.Error.NameHasNoOwner", "org.freedesktop.DBus.Error.Disconnected"}
_VALUE_PROPERTIES = ("CurrentValue", "MinimumValue", "MaximumValue", "MinimumIncrement")
_UNBOUNDED = 1e300  # a Value's minimum or maximum beyond this is a toolkit's "none" (DBL_MAX)

# AtspiStateType, in bit order (at-spi2-core's atspi-constants.h).
STATE_NAMES = (
    "invalid", "active", "armed", "busy", "checked", "collapsed", "defunct", "editable", "enabled", "expandable",
    "expanded", "focusable", "focused", "has_tooltip", "horizontal", "iconified", "modal", "multi_line",
    "multiselectable", "opaque", "pressed", "resizable", "selectable", "selected", "sensitive", "showing",
    "single_line", "stale", "transient", "vertical", "visible", "manages_descendants", "indeterminate", "required",
    "truncated", "animated", "invalid_entry", "supports_autocompletion", "selectable_text", "is_default", "visited",
    "checkable", "has_popup", "read_only",
)
_SHOWING = STATE_NAMES.index("showing")
_INTERACTIVE_STATES = {"focusable", "editable", "selectable", "checkable"}
_WINDOW_ROLES = {"frame", "dialog", "window", "alert", "file chooser", "color chooser", "font chooser"}


class AccessibilityUnavailable(Exception):
    """No accessibility bus, or its registry does not answer: the message says which."""


class WindowNotAccessible(Exception):
    """The window's app publishes no tree, or none of its windows is that one."""


class _Abandoned(Exception):
    """The app is given up on (it did not answer, or it left): stop reading it."""


class _DeadlineReached(Exception):
    pass


async def bus_address() -> str:
    """AT_SPI_BUS_ADDRESS (what the desktop's session sets), else what the session bus's
    org.a11y.Bus says (a desktop that at-spi-bus-launcher runs, outside cubicle's session)."""
    given = os.environ.get(BUS_ADDRESS_VARIABLE, "").strip()
    if given:
        return given
    session = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "").strip()
    if session:
        with contextlib.suppress(Exception):  # any failure means: no bus found this way
            bus = await asyncio.wait_for(MessageBus(bus_address=session).connect(), _CONNECT_TIMEOUT_S)
            try:
                reply = await asyncio.wait_for(bus.call(Message(
                    destination="org.a11y.Bus", path="/org/a11y/bus", interface="org.a11y.Bus", member="GetAddress")),
                    _CONNECT_TIMEOUT_S)
            finally:
                bus.disconnect()
            if reply.message_type == MessageType.METHOD_RETURN and reply.body and reply.body[0]:
                return str(reply.body[0])
    raise AccessibilityUnavailable(
        "The desktop has no accessibility bus: AT_SPI_BUS_ADDRESS is not set (the desktop session started by "
        "`cubicle desktop` sets it and runs the bus).")


def wait_for_bus(timeout: float) -> bool:
    """True once the bus of AT_SPI_BUS_ADDRESS takes connections (False when none is set, or
    after `timeout` s): the runner waits for it, so that every app it starts finds it."""
    address = os.environ.get(BUS_ADDRESS_VARIABLE, "")
    options = dict(part.split("=", 1) for part in address.partition(":")[2].split(",") if "=" in part)
    if not address.startswith("unix:") or not ("path" in options or "abstract" in options):
        return False
    where = options["path"] if "path" in options else "\0" + options["abstract"]
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(where)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.02)


async def read_tree(request: t.TreeRequest) -> t.AccessibilityTree:
    started = time.monotonic()
    address = await bus_address()
    try:
        bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), _CONNECT_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - refused, missing socket, failed auth, timeout: all the same to a caller
        raise AccessibilityUnavailable(
            f"The accessibility bus at {address} does not let us in ({type(error).__name__}: {error}); it is restarted "
            "with the session: retry in a few seconds.") from None
    walk = _Walk(bus, request, started)
    try:
        return await walk.run()
    finally:
        walk.close()


@dataclass(eq=False)
class _App:
    """An app on the bus, and how its calls are going: given up on (reason) once it has had
    calls waiting and answered none for app_timeout."""

    bus: str
    ref: Ref
    pid: int | None = None
    name: str = ""
    reason: str | None = None
    waiting: int = 0  # calls sent and not answered
    last_answer: float = 0.0
    queue: deque[_Ask] = field(default_factory=deque)  # not sent yet
    sent: set[_Ask] = field(default_factory=set)


@dataclass(eq=False)
class _Ask:
    """Calls that one step of reading a node needs, answered together."""

    calls: list[tuple[Ref, str, str, str, list[Any]]]
    future: asyncio.Future[list[Message]]
    answers: list[Message | None]
    left: int


@dataclass
class _Pending:
    ref: Ref
    node: t.AccessibleNode
    parent: t.AccessibleNode | None
    depth: int
    visible: bool = False  # read: it has the state showing


class _Walk:
    def __init__(self, bus: MessageBus, request: t.TreeRequest, started: float):
        self.bus = bus
        self.request = request
        self.started = started
        self.deadline = started + request.timeout_ms / 1000
        self.app_timeout = request.app_timeout_ms / 1000
        self.budget = request.max_nodes
        self.limits: set[str] = set()
        self.apps: list[_App] = []
        self.replies: dict[int, Callable[[Message], None]] = {}
        self.in_flight = 0
        self.blocked: set[_App] = set()
        bus.add_message_handler(self._on_message)
        self.watchdog = asyncio.get_running_loop().create_task(self._watch())

    def close(self) -> None:
        self.watchdog.cancel()
        self.bus.disconnect()

    # -- calls ---------------------------------------------------------------------------
    # Calls go out in batches (an ask: what one node needs at one step) without a timer each:
    # the watchdog gives up on an app that has calls waiting and has answered none for
    # app_timeout, and ends every ask at the deadline.

    def _on_message(self, message: Message) -> bool | None:
        if message.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
            take = self.replies.pop(message.reply_serial, None)
            if take is not None:
                take(message)
                return True
        return None

    async def ask(self, app: _App, calls: list[tuple[Ref, str, str, str, list[Any]]]) -> list[Any]:
        """The bodies of the answers to these calls (None where the object refused one)."""
        if app.reason:
            raise _Abandoned
        if time.monotonic() >= self.deadline:
            raise _DeadlineReached
        if len(calls) > _APP_WINDOW:
            bodies: list[Any] = []
            for first in range(0, len(calls), _APP_WINDOW):
                bodies += await self.ask(app, calls[first:first + _APP_WINDOW])
            return bodies
        if not calls:
            return []
        ask = _Ask(calls, asyncio.get_running_loop().create_future(), [None] * len(calls), len(calls))
        app.queue.append(ask)
        self._pump(app)
        try:
            replies = await ask.future
        finally:
            app.sent.discard(ask)
        bodies = []
        for reply in replies:
            if reply.message_type == MessageType.ERROR:
                if reply.error_name in _GONE:
                    self._give_up(app, f"left the accessibility bus ({str(reply.error_name).rsplit('.', 1)[-1]})",
                                  _Abandoned)
                    raise _Abandoned
                bodies.append(None)
            else:
                bodies.append(reply.body)
        return bodies

    def _pump(self, app: _App) -> None:
        """Sends the app's waiting asks while both windows have room."""
        while app.queue and not app.reason:
            size = len(app.queue[0].calls)
            if (app.waiting and app.waiting + size > _APP_WINDOW) or (self.in_flight and self.in_flight + size > _BUS_WINDOW):
                if not app.waiting:
                    self.blocked.add(app)  # only the others' calls hold it back: woken by their answers
                return
            ask = app.queue.popleft()
            if ask.future.done():
                continue
            if not app.waiting:
                app.last_answer = time.monotonic()
            app.waiting += size
            self.in_flight += size
            app.sent.add(ask)
            for index, ((destination, path), interface, member, signature, body) in enumerate(ask.calls):
                serial = self.bus.next_serial()
                self.replies[serial] = partial(self._answered, app, ask, index)
                self.bus.send(Message(destination=destination, path=path, interface=interface, member=member,
                                      signature=signature, body=body, serial=serial)).add_done_callback(_ignore_outcome)
        self.blocked.discard(app)

    def _answered(self, app: _App, ask: _Ask, index: int, message: Message) -> None:
        if app.reason:
            return  # a late answer of an app given up on: its calls were let go of then
        ask.answers[index] = message
        ask.left -= 1
        app.waiting -= 1
        self.in_flight -= 1
        app.last_answer = time.monotonic()
        if not ask.left and not ask.future.done():
            ask.future.set_result(ask.answers)  # type: ignore[arg-type]
        if app.queue:
            self._pump(app)
        for other in list(self.blocked):
            self._pump(other)

    async def ask_one(self, app: _App, ref: Ref, interface: str, member: str, signature: str = "",
                      body: list[Any] | None = None) -> Any:
        return (await self.ask(app, [(ref, interface, member, signature, body or [])]))[0]

    def _give_up(self, app: _App, reason: str | None, error: type[Exception]) -> None:
        """Ends the app's asks, sent and waiting, with `error`; a reason also gives the app up."""
        if reason and not app.reason:
            app.reason = reason
            self.in_flight -= app.waiting  # never to be answered: room for the others
            app.waiting = 0
            for other in list(self.blocked):
                self._pump(other)
        for ask in [*app.sent, *app.queue]:
            if not ask.future.done():
                ask.future.set_exception(error())
        app.queue.clear()
        self.blocked.discard(app)

    async def _watch(self) -> None:
        while True:
            now = time.monotonic()
            for app in self.apps:
                if now >= self.deadline:
                    self._give_up(app, None, _DeadlineReached)
                elif app.waiting and not app.reason and now - app.last_answer > self.app_timeout:
                    self._give_up(app, f"did not answer within {self.request.app_timeout_ms} ms", _Abandoned)
            await asyncio.sleep(max(0.001, min(_WATCH_TICK_S, self.deadline - now)) if now < self.deadline
                                else _WATCH_TICK_S)

    # -- the walk ------------------------------------------------------------------------

    async def run(self) -> t.AccessibilityTree:
        registry = _App(bus=_REGISTRY[0], ref=_REGISTRY, name="the AT-SPI registry")
        daemon = _App(bus=_BUS_DAEMON[0], ref=_BUS_DAEMON, name="the bus")
        self.apps = [registry, daemon]
        try:
            listed = await self.ask_one(registry, _REGISTRY, _ACCESSIBLE, "GetChildren")
        except (_Abandoned, _DeadlineReached):
            listed = None
        if listed is None:
            raise AccessibilityUnavailable(
                f"The accessibility registry (at-spi2-registryd) does not answer ({registry.reason or 'no answer'}); it "
                "is started on demand by the accessibility bus: retry in a few seconds.")
        apps = [_App(bus=bus, ref=(bus, path)) for bus, path in listed[0] if path != _NULL_PATH]
        try:
            pids = await self.ask(daemon, [(_BUS_DAEMON, "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                                            [app.bus]) for app in apps])
        except (_Abandoned, _DeadlineReached):
            pids = [None] * len(apps)
        for app, pid in zip(apps, pids):
            app.pid = int(pid[0]) if pid else None
        target = self.request.window
        if target is not None:
            apps = [app for app in apps if app.pid == target.pid]
            if not apps:
                raise WindowNotAccessible(
                    f"No app of process {target.pid} is on the accessibility bus: its toolkit publishes no tree (xterm, "
                    "Tk and plain X programs do not), or it was started without the desktop's environment.")
        self.apps += apps
        walked = await asyncio.gather(*(self._walk_app(app) for app in apps))
        nodes = [node for node in walked if node is not None]
        unreadable = [t.UnreadableApp(name=app.name or _process_name(app.pid) or app.bus, pid=app.pid,
                                      reason=app.reason, partial=node is not None)
                      for app, node in zip(apps, walked) if app.reason]
        if target is not None and (nodes or not unreadable):
            # A window's app that did not answer is said so (unreadable), not taken for a window without a tree.
            nodes = self._only_window(nodes, target)
        counted = sum(_count(node) for node in nodes)
        if self.request.interactive_only:
            nodes = [_interactive(node) for node in nodes]
        return t.AccessibilityTree(
            scope="window" if target else "desktop", apps=nodes, unreadable=unreadable, nodes=counted,
            truncated=bool(self.limits), truncated_by=sorted(self.limits),  # type: ignore[arg-type]
            elapsed_ms=round((time.monotonic() - self.started) * 1000, 1),
        )

    async def _walk_app(self, app: _App) -> t.AccessibleNode | None:
        """The app's tree, read level by level; None if not even its own node could be read.
        For one window, only the top-level node that is that window is read further."""
        root = _Pending(app.ref, t.AccessibleNode(role="application", pid=app.pid), None, 0)
        self.budget -= 1
        level = [root]
        while level:
            results: list[list[_Pending] | None] = []
            try:
                for first in range(0, len(level), _NODES_AT_ONCE):
                    results += await asyncio.gather(*(self._read_node(app, pending)
                                                      for pending in level[first:first + _NODES_AT_ONCE]))
            except _DeadlineReached:  # only the app's own node lets this through
                return None
            if level[0] is root and results[0] is None:
                return None
            following: list[_Pending] = []
            for pending, children in zip(level, results):
                parent = pending.parent
                if parent is not None:
                    if children is None or (self.request.visible_only and not pending.visible):
                        parent.children_omitted = (parent.children_omitted or 0) + 1
                        continue
                    parent.children.append(pending.node)
                following.extend(children or [])
            target = self.request.window
            if target is not None and level[0].depth == 1:
                chosen = max(root.node.children, key=lambda window: _window_match(window, target), default=None)
                if chosen is None or _window_match(chosen, target) <= 0:
                    root.node.children = []
                    self.budget += len(following)
                    following = []
                else:
                    root.node.children = [chosen]
                    kept = [pending for pending in following if pending.parent is chosen]
                    self.budget += len(following) - len(kept)
                    following = kept
                root.node.children_omitted = None
            level = following
        return root.node

    async def _read_node(self, app: _App, pending: _Pending) -> list[_Pending] | None:
        """Fills pending.node; returns its children to read next, or None when it could not be read."""
        is_root = pending.parent is None
        try:
            return await self._read(app, pending)
        except _Abandoned:
            return None
        except _DeadlineReached:
            self.limits.add("deadline")
            if is_root:
                raise
            return None

    async def _read(self, app: _App, pending: _Pending) -> list[_Pending]:
        """Three steps: what the node is (properties, role, states, interfaces), then what those
        say it has (box, actions, value, text length, children), then its text."""
        ref, node = pending.ref, pending.node
        first = await self.ask(app, [
            (ref, _PROPERTIES, "GetAll", "s", [_ACCESSIBLE]),
            (ref, _ACCESSIBLE, "GetRoleName", "", []),
            (ref, _ACCESSIBLE, "GetState", "", []),
            (ref, _ACCESSIBLE, "GetInterfaces", "", []),
        ])
        properties = {key: variant.value for key, variant in first[0][0].items()} if first[0] else {}
        if first[1]:
            node.role = str(first[1][0]) or node.role
        node.name = str(properties.get("Name") or "")
        if pending.parent is None:
            app.name = app.name or node.name
        node.description = str(properties.get("Description") or "") or None
        bits = _state_bits(first[2][0] if first[2] else [])
        node.states = [STATE_NAMES[bit] if bit < len(STATE_NAMES) else f"state_{bit}" for bit in bits]
        pending.visible = _SHOWING in bits
        interfaces = {name[len(_ATSPI):] for name in (first[3][0] if first[3] else []) if name.startswith(_ATSPI)}
        if self.request.details:
            node.interfaces = sorted(interfaces - {"Accessible"})
            attributes = properties.get("Attributes")
            node.attributes = {str(k): str(v) for k, v in attributes.items()} if attributes else None
        child_count = int(properties.get("ChildCount") or 0)
        if self.request.visible_only and not pending.visible and pending.depth > 0:
            return []  # left out by the caller: nothing more to ask of it
        wanted = self._children_wanted(pending, child_count)
        huge_table = child_count > t.MAX_CHILDREN and "Table" in interfaces

        second: dict[str, tuple[Ref, str, str, str, list[Any]]] = {}
        if "Component" in interfaces and pending.visible:
            second["box"] = (ref, _ATSPI + "Component", "GetExtents", "u", [_SCREEN])
        if "Action" in interfaces:
            second["actions"] = (ref, _ATSPI + "Action", "GetActions", "", [])
        if "Value" in interfaces and node.role != "table cell":  # a cell's value is its text (and 0 when empty)
            # One Get each: atk-bridge's GetAll aborts the whole app (libdbus) when a toolkit leaves one
            # of these unset, as Chromium does; a single Get answers that with an error instead.
            for name in _VALUE_PROPERTIES:
                second[name] = (ref, _PROPERTIES, "Get", "ss", [_ATSPI + "Value", name])
        if "Text" in interfaces:
            second["characters"] = (ref, _PROPERTIES, "Get", "ss", [_ATSPI + "Text", "CharacterCount"])
        if wanted and child_count <= t.MAX_CHILDREN:
            second["children"] = (ref, _ACCESSIBLE, "GetChildren", "", [])
        elif wanted and not huge_table:
            for index in range(wanted):
                second[f"child {index}"] = (ref, _ACCESSIBLE, "GetChildAtIndex", "i", [index])
        answers = dict(zip(second, await self.ask(app, list(second.values()))))

        if answers.get("box"):
            x, y, width, height = answers["box"][0]
            if width > 0 and height > 0:
                node.box = t.Box(x=x, y=y, width=width, height=height)
        if answers.get("actions"):
            node.actions = [t.Action(name=name, description=description or None, keybinding=keys or None)
                            for name, description, keys in answers["actions"][0] if name] or None
        if answers.get("CurrentValue"):
            node.value = _value({name: answers[name][0].value for name in _VALUE_PROPERTIES if answers.get(name)})
        characters = int(answers["characters"][0].value) if answers.get("characters") else 0
        if characters > 0:
            text = await self.ask_one(app, ref, _ATSPI + "Text", "GetText", "ii", [0, min(characters, t.MAX_TEXT_CHARS)])
            content = str(text[0]).replace("\ufffc", "") if text else ""  # U+FFFC: a child object's place in the text
            if content.strip() and content != node.name:
                node.text = content
                node.text_truncated = True if characters > t.MAX_TEXT_CHARS else None

        if wanted and huge_table:
            refs = await self._visible_cells(app, ref, node.box, wanted) if node.box else []
        elif "children" in answers:
            refs = [tuple(child) for child in answers["children"][0]] if answers["children"] else []
        else:
            refs = [tuple(answer[0]) for key, answer in answers.items() if key.startswith("child ") and answer]
        refs = [(bus, path) for bus, path in refs if path != _NULL_PATH][:t.MAX_CHILDREN]
        omitted = max(0, child_count - len(refs))
        taken = refs[:max(0, self.budget)]
        if len(taken) < len(refs):
            self.limits.add("max_nodes")
        self.budget -= len(taken)
        node.children_omitted = omitted + len(refs) - len(taken) or None
        return [_Pending(child, t.AccessibleNode(role="unknown"), node, pending.depth + 1)  # type: ignore[arg-type]
                for child in taken]

    def _children_wanted(self, pending: _Pending, child_count: int) -> int:
        """How many of a node's children to ask for (0: none), noting the limit that cut them."""
        if child_count <= 0:
            return 0
        if self.request.visible_only and not pending.visible and pending.depth > 0:  # apps never "show"
            return 0
        if pending.depth >= self.request.max_depth:
            self.limits.add("max_depth")
            return 0
        if self.budget <= 0:
            self.limits.add("max_nodes")
            return 0
        if child_count > t.MAX_CHILDREN:
            self.limits.add("max_children")
        return min(child_count, t.MAX_CHILDREN)

    async def _visible_cells(self, app: _App, ref: Ref, box: t.Box, wanted: int) -> list[Ref]:
        """The cells a huge table shows: from the cell at its top-left corner to the one at its
        bottom-right, row by row."""
        component, table = _ATSPI + "Component", _ATSPI + "Table"
        corners = await self.ask(app, [
            (ref, component, "GetAccessibleAtPoint", "iiu", [box.x + 1, box.y + 1, _SCREEN]),
            (ref, component, "GetAccessibleAtPoint", "iiu", [box.x + box.width - 2, box.y + box.height - 2, _SCREEN]),
        ])
        if not all(corners) or any(corner[0][1] == _NULL_PATH for corner in corners):
            return []
        indices = await self.ask(app, [(tuple(corner[0]), _ACCESSIBLE, "GetIndexInParent", "", [])  # type: ignore[misc]
                                       for corner in corners])
        if not all(indices):
            return []
        places = await self.ask(app, [(ref, table, method, "i", [index[0]])
                                      for index in indices for method in ("GetRowAtIndex", "GetColumnAtIndex")])
        if not all(places):
            return []
        (row0,), (column0,), (row1,), (column1,) = places
        cells = [(row, column) for row in range(row0, row1 + 1) for column in range(column0, column1 + 1)][:wanted]
        found = await self.ask(app, [(ref, table, "GetAccessibleAt", "ii", list(cell)) for cell in cells])
        return [tuple(answer[0]) for answer in found if answer]  # type: ignore[misc]

    def _only_window(self, apps: list[t.AccessibleNode], target: t.WindowTarget) -> list[t.AccessibleNode]:
        """The app node that holds the target window (each app kept its best match alone)."""
        matched = [(_window_match(app.children[0], target), app) for app in apps if app.children]
        if not matched:
            raise WindowNotAccessible(
                f"The app of process {target.pid} publishes no window titled {target.title!r} at that place on the "
                "accessibility bus (a window still opening, or one drawn by another toolkit).")
        return [max(matched, key=lambda pair: pair[0])[1]]


def _window_match(window: t.AccessibleNode, target: t.WindowTarget) -> float:
    """How surely an app's top-level node is the X window: the same title counts most, then how
    much the boxes overlap (a window manager's frame and the app's own idea of it differ)."""
    if window.role not in _WINDOW_ROLES and window.name != target.title:
        return 0.0
    overlap = _overlap(window.box, target.box) if window.box else 0.0
    title = 1.0 if window.name == target.title else 0.0
    if not title and overlap < 0.5:
        return 0.0
    return title * 2 + overlap


def _overlap(a: t.Box, b: t.Box) -> float:
    width = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    height = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if width <= 0 or height <= 0:
        return 0.0
    shared = width * height
    return shared / (a.width * a.height + b.width * b.height - shared)


def _ignore_outcome(sent: asyncio.Future[Any]) -> None:
    """A send's own future: a failed write shows as the app's silence (or the bus's loss)."""
    if not sent.cancelled():
        sent.exception()


def _state_bits(words: list[int]) -> list[int]:
    return [index * 32 + bit for index, word in enumerate(words) for bit in range(32) if word >> bit & 1]


def _value(values: dict[str, Any]) -> t.Value | None:
    if "CurrentValue" not in values:
        return None

    def bounded(key: str) -> float | None:
        number = values.get(key)
        return float(number) if number is not None and abs(number) < _UNBOUNDED else None

    step = values.get("MinimumIncrement")
    return t.Value(current=float(values["CurrentValue"]), minimum=bounded("MinimumValue"),
                   maximum=bounded("MaximumValue"), step=float(step) if step else None)


def _process_name(pid: int | None) -> str | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip() or None
    except OSError:
        return None


def _count(node: t.AccessibleNode) -> int:
    return 1 + sum(_count(child) for child in node.children)


def is_interactive(node: t.AccessibleNode) -> bool:
    return bool(node.actions) or bool(_INTERACTIVE_STATES.intersection(node.states))


def _interactive(node: t.AccessibleNode) -> t.AccessibleNode:
    """The app node with only the nodes one can act on (and the windows that hold them), each
    under its nearest kept ancestor."""

    def kept(children: list[t.AccessibleNode]) -> list[t.AccessibleNode]:
        result: list[t.AccessibleNode] = []
        for child in children:
            below = kept(child.children)
            if is_interactive(child) or child.role in _WINDOW_ROLES:
                child.children = below
                result.append(child)
            else:
                result.extend(below)
        return result

    node.children = kept(node.children)
    return node
