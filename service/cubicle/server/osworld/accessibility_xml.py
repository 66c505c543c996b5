"""cubicle's accessibility tree (cubicle.accessibility, read from AT-SPI by cubicle.server.atspi)
as the XML that OSWorld's GET /accessibility answers, which its agents' linearisers and its
check_accessibility_tree metric read with these exact namespace URIs and tag names.

The shape: a root `desktop-frame`, one element per app below it; an element's tag is its AT-SPI
role with spaces as dashes ("push-button", "table-cell"), its text content its text, and its
attributes

    name                          the accessible name
    st:<state>="true"             one per state (st:showing, st:focused, st:multi_line ...)
    attr:<key>                    the toolkit's attributes (Firefox's tag and class ...)
    attr:description              the description, where there is one
    cp:screencoord, cp:size       "(x, y)" and "(w, h)", for nodes that are visible and showing
    val:value, val:min, val:max, val:step
    act:<action>_desc, act:<action>_kb
    image="true", selection="true"  the node implements AT-SPI's Image / Selection

Where cubicle's tree differs from what OSWorld's server reads: a node's text is cut at
cubicle.accessibility.MAX_TEXT_CHARS, and a node whose text equals its name is given its name
as text (cubicle's tree leaves such text out). Characters XML cannot carry are dropped.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from cubicle.accessibility import AccessibilityTree, AccessibleNode

NAMESPACES = {
    "st": "https://accessibility.ubuntu.example.org/ns/state",
    "attr": "https://accessibility.ubuntu.example.org/ns/attributes",
    "cp": "https://accessibility.ubuntu.example.org/ns/component",
    "doc": "https://accessibility.ubuntu.example.org/ns/document",
    "docattr": "https://accessibility.ubuntu.example.org/ns/document/attributes",
    "txt": "https://accessibility.ubuntu.example.org/ns/text",
    "val": "https://accessibility.ubuntu.example.org/ns/value",
    "act": "https://accessibility.ubuntu.example.org/ns/action",
}
ROOT = "desktop-frame"

# What XML 1.0 cannot hold at all, and AT-SPI's object-replacement and replacement characters,
# which OSWorld's server removes from text too.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffc\ufffd\ufffe\uffff\ud800-\udfff]")
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _name(text: str, fallback: str) -> str:
    """A valid XML name (the local part of a tag or attribute): OSWorld only turns spaces into
    dashes, which suffices for AT-SPI's role names; anything else is dashed too."""
    cleaned = _NOT_NAME.sub("-", text.strip())
    if not cleaned:
        return fallback
    return cleaned if cleaned[0].isalpha() or cleaned[0] == "_" else "n" + cleaned


def _number(value: float) -> str:
    return str(float(value))


def _attributes(node: AccessibleNode) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = [("name", node.name)]
    states = set(node.states)
    found += [(f"st:{_name(state, 'unknown')}", "true") for state in node.states]
    for key, value in (node.attributes or {}).items():
        if key:
            found.append((f"attr:{_name(key, 'unknown')}", value))
    if node.description and not (node.attributes and "description" in node.attributes):
        found.append(("attr:description", node.description))
    if node.box is not None and {"visible", "showing"} <= states:
        found.append(("cp:screencoord", f"({node.box.x}, {node.box.y})"))
        found.append(("cp:size", f"({node.box.width}, {node.box.height})"))
    interfaces = set(node.interfaces or ())
    if "Image" in interfaces:
        found.append(("image", "true"))
    if "Selection" in interfaces:
        found.append(("selection", "true"))
    if node.value is not None:
        for key, number in (("value", node.value.current), ("min", node.value.minimum),
                            ("max", node.value.maximum), ("step", node.value.step)):
            if number is not None:
                found.append((f"val:{key}", _number(number)))
    for action in node.actions or ():
        action_name = _name(action.name.replace(" ", "-"), "action")
        found.append((f"act:{action_name}_desc", action.description or ""))
        found.append((f"act:{action_name}_kb", action.keybinding or ""))
    unique: dict[str, str] = {}
    for key, value in found:
        unique.setdefault(key, value)  # an attribute appears once in XML: the first one wins
    return list(unique.items())


def _text(node: AccessibleNode) -> str:
    if node.text is not None:
        return node.text
    if "Text" in (node.interfaces or ()):
        return node.name  # cubicle's tree leaves out a text that equals the name
    return ""


def _write(node: AccessibleNode, out: list[str]) -> None:
    tag = _name(node.role.replace(" ", "-"), "unknown")
    attributes = "".join(f" {key}={quoteattr(_clean(value))}" for key, value in _attributes(node))
    text = escape(_clean(_text(node)))
    if not text and not node.children:
        out.append(f"<{tag}{attributes}/>")
        return
    out.append(f"<{tag}{attributes}>{text}")
    for child in node.children:
        _write(child, out)
    out.append(f"</{tag}>")


def to_osworld_xml(tree: AccessibilityTree | None, note: str | None = None) -> str:
    """The XML string of GET /accessibility's {"AT": ...}. With no tree (no accessibility
    bus), an empty desktop-frame; `note` says why, as a comment, which parsers skip."""
    declarations = "".join(f" xmlns:{prefix}={quoteattr(uri)}" for prefix, uri in NAMESPACES.items())
    out = [f"<{ROOT}{declarations}>"]
    if note:
        out.append(f"<!-- {escape(_clean(note)).replace('--', '- -')} -->")
    for app in tree.apps if tree is not None else ():
        _write(app, out)
    out.append(f"</{ROOT}>")
    return "".join(out)
