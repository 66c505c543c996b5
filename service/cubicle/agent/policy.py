"""A safety policy: rules, read from a TOML file, that hold a model's actions for a human's approval.

A policy file is a list of ``[[hold]]`` tables. Each one names a tool and, optionally, the
actions it covers and regular expressions that must all match (``re.search``) for the rule to
apply. An action is held when any rule applies to it. A ``[urls]`` table (``allow``, ``deny``)
says which addresses the browser may load at all. See ``EXAMPLE_POLICY`` for a commented
file. Every pattern is compiled when the file is loaded, so a mistake in the file is reported
at start-up, naming the rule and the field, and never half-way through a run.

The policy only decides; holding the action and asking the human is the caller's job.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

COMPUTER = "computer"
BROWSER = "browser"
BASH = "bash"
EDITOR = "str_replace_based_edit_tool"
ANY_TOOL = "*"
TOOLS = (COMPUTER, BROWSER, BASH, EDITOR, ANY_TOOL)

# Every action of the computer tool versions and of the toolset's members.
COMPUTER_ACTIONS = frozenset({
    "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click", "middle_click",
    "double_click", "triple_click", "left_mouse_down", "left_mouse_up", "scroll", "hold_key",
    "wait", "screenshot", "cursor_position", "zoom",
})
EDITOR_COMMANDS = frozenset({"view", "create", "str_replace", "insert", "undo_edit"})
# The browser toolset's members.
BROWSER_ACTIONS = frozenset({
    "navigate", "list_tabs", "new_tab", "switch_tab", "close_tab", "read_page", "get_page_text", "read_console",
    "read_network", "find", "form_input", "file_upload", "scroll_to", "screenshot", "zoom", "left_click",
    "right_click", "middle_click", "double_click", "triple_click", "hover", "left_click_drag", "left_mouse_down",
    "left_mouse_up", "mouse_move", "scroll", "type", "key", "hold_key", "wait", "javascript_exec",
})

# Which input field a pattern reads, and for which tool: a pattern never applies to another
# tool's input (the editor's "command" is a command name, not a shell command).
_PATTERN_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "command": ((BASH,), ("command",)),
    # Modifiers held during a click may also come as "key" (the desktop accepts both); the
    # browser's typed text, keys and scripts are its "text" too.
    "text": ((COMPUTER, BROWSER), ("text", "key")),
    "path": ((EDITOR,), ("path",)),
    "url": ((BROWSER,), ("url",)),
}
_KEYS = ("tool", "actions", "command", "text", "path", "url", "window_title", "reason")
_TOOL_WORDS = {COMPUTER: "computer", BROWSER: "browser", BASH: "bash", EDITOR: "text editor", ANY_TOOL: "any tool"}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True)
class Hold:
    """Why an action waits for approval. ``rule_index`` is the rule's position in the file,
    counted from 0 (error messages and the default reasons count from 1)."""

    rule_index: int
    reason: str
    tool: str
    name: str | None


@dataclass(frozen=True)
class Rule:
    tool: str
    actions: frozenset[str] | None
    patterns: tuple[tuple[str, re.Pattern[str]], ...]  # (field, pattern), not window_title
    window_title: re.Pattern[str] | None
    reason: str

    def matches(self, tool: str, name: str | None, tool_input: Mapping[str, Any], window_title: str | None) -> bool:
        if self.tool != ANY_TOOL and self.tool != tool:
            return False
        if self.actions is not None and name not in self.actions:
            return False
        for field, pattern in self.patterns:
            value = _field_value(field, tool, tool_input)
            if value is None or not pattern.search(value):
                return False
        if self.window_title is not None:
            if window_title is None or not self.window_title.search(window_title):
                return False
        return True


def _field_value(field: str, tool: str, tool_input: Mapping[str, Any]) -> str | None:
    owners, keys = _PATTERN_FIELDS[field]
    if tool not in owners:
        return None
    for key in keys:
        value = tool_input.get(key)
        if isinstance(value, str):
            return value
    return None


def _action_name(tool: str, name: str | None, tool_input: Mapping[str, Any]) -> str | None:
    """The action (computer) or command (editor): ``name`` when given, else the input's field."""
    if name is not None:
        return name
    key = {COMPUTER: "action", EDITOR: "command"}.get(tool)  # the browser's members are always named
    value = tool_input.get(key) if key else None
    return value if isinstance(value, str) else None


class Policy:
    """The rules of a policy file. ``Policy.empty()`` holds nothing."""

    def __init__(self, rules: Iterable[Rule] = (), allow_urls: Iterable[str] = (), deny_urls: Iterable[str] = ()):
        self.rules: tuple[Rule, ...] = tuple(rules)
        # Which addresses the browser may load (see cubicle.anthropic.URLRules for the entries).
        self.allow_urls: tuple[str, ...] = tuple(allow_urls)
        self.deny_urls: tuple[str, ...] = tuple(deny_urls)

    @classmethod
    def empty(cls) -> Policy:
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise PolicyError(f"{os.fspath(path)}: cannot read the policy file: {error.strerror or error}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise PolicyError(f"{os.fspath(path)}: the policy file is not UTF-8 text: {error}") from None
        return cls.from_text(text, source=os.fspath(path))

    @classmethod
    def from_text(cls, text: str, source: str | None = None) -> Policy:
        """Parse a policy; ``source`` (a file name) prefixes error messages."""
        try:
            rules, allow, deny = _parse(text)
            return cls(rules, allow, deny)
        except PolicyError as error:
            if source is None:
                raise
            raise PolicyError(f"{source}: {error}") from None

    def always_holds(self, tool: str, name: str) -> bool:
        """Whether every call of this action waits for a human (a rule covering it with no
        pattern that could let some calls through)."""
        return any(rule.tool in (tool, ANY_TOOL) and (rule.actions is None or name in rule.actions)
                   and not rule.patterns and rule.window_title is None for rule in self.rules)

    @property
    def has_url_rules(self) -> bool:
        return bool(self.allow_urls or self.deny_urls)

    @property
    def needs_window_title(self) -> bool:
        """Whether any rule looks at the focused window's title, so it is worth asking for."""
        return any(rule.window_title is not None for rule in self.rules)

    def check(
        self, tool: str, name: str | None, tool_input: Mapping[str, Any] | None, window_title: str | None = None
    ) -> Hold | None:
        """The first rule that holds this action, or None to let it run.

        ``tool`` is the tool's name ("computer" for the toolset's members too); ``name`` the
        action (computer: ``left_click``, ``type``...) or the editor's command, taken from the
        input's ``action``/``command`` when None. ``window_title`` is the focused window's
        title when the action is about to run; a rule with a ``window_title`` pattern never
        matches when it is None, so pass it whenever ``needs_window_title`` is true.
        """
        tool_input = tool_input or {}
        name = _action_name(tool, name, tool_input)
        for index, rule in enumerate(self.rules):
            if rule.matches(tool, name, tool_input, window_title):
                return Hold(rule_index=index, reason=rule.reason, tool=tool, name=name)
        return None

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"Policy({len(self.rules)} rules)"


# -- parsing ------------------------------------------------------------------------------


def _parse(text: str) -> tuple[list[Rule], list[str], list[str]]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"not valid TOML: {error}") from None
    for key in document:
        if key not in ("hold", "urls"):
            raise PolicyError(f"unknown top-level key {key!r}: a policy holds [[hold]] rules and one [urls] table")
    tables = document.get("hold", [])
    if not isinstance(tables, list):
        raise PolicyError("'hold' must be a list of rules: write each rule as [[hold]], not [hold]")
    allow, deny = _parse_urls(document.get("urls", {}))
    return [_parse_rule(number, table) for number, table in enumerate(tables, 1)], allow, deny


def _parse_urls(table: Any) -> tuple[list[str], list[str]]:
    if not isinstance(table, dict):
        raise PolicyError("'urls' must be a table: write [urls] with allow = [...] and deny = [...]")
    for key in table:
        if key not in ("allow", "deny"):
            raise PolicyError(f"urls: unknown key {key!r}; it takes allow and deny")
    lists = []
    for key in ("allow", "deny"):
        entries = table.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
            raise PolicyError(f'urls: {key} must be a list of hosts or URL prefixes, e.g. ["example.com", "https://docs.example.com/"]')
        lists.append(list(entries))
    return lists[0], lists[1]


def _parse_rule(number: int, table: Any) -> Rule:
    where = f"rule {number}"
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: must be a table of fields, written [[hold]]")
    for key in table:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(_KEYS)}"
            raise PolicyError(f"{where}: unknown key {key!r}{hint}")
    if "tool" not in table:
        raise PolicyError(f"{where}: tool is required (one of {', '.join(map(repr, TOOLS))})")
    tool = table["tool"]
    if not isinstance(tool, str):
        raise PolicyError(f"{where}: tool must be a string, not {_type_name(tool)}")
    if tool not in TOOLS:
        raise PolicyError(f"{where}: unknown tool {tool!r}; use one of {', '.join(map(repr, TOOLS))}")

    actions = _parse_actions(where, tool, table.get("actions"))
    patterns = []
    for field, (owners, _) in _PATTERN_FIELDS.items():
        if field not in table:
            continue
        if tool not in (*owners, ANY_TOOL):
            which = " or ".join(map(repr, owners))
            raise PolicyError(f"{where}: {field} applies only to the {which} tool, not to {tool!r}")
        patterns.append((field, _compile(where, field, table[field])))
    window_title = _compile(where, "window_title", table["window_title"]) if "window_title" in table else None

    reason = table.get("reason")
    if reason is None:
        reason = _describe(number, tool, actions, table)
    elif not isinstance(reason, str):
        raise PolicyError(f"{where}: reason must be a string, not {_type_name(reason)}")
    elif not reason.strip():
        raise PolicyError(f"{where}: reason must not be empty (leave it out for a description of the rule)")
    return Rule(tool, actions, tuple(patterns), window_title, reason)


def _parse_actions(where: str, tool: str, actions: Any) -> frozenset[str] | None:
    if actions is None:
        return None
    if tool == BASH:
        raise PolicyError(f"{where}: actions does not apply to the 'bash' tool (it has no actions; use command)")
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise PolicyError(f"{where}: actions must be a list of strings, e.g. [\"type\", \"key\"]")
    if not actions:
        raise PolicyError(f"{where}: actions must not be empty (leave it out to cover every action)")
    known = {COMPUTER: COMPUTER_ACTIONS, BROWSER: BROWSER_ACTIONS, EDITOR: EDITOR_COMMANDS}.get(
        tool, COMPUTER_ACTIONS | BROWSER_ACTIONS | EDITOR_COMMANDS)
    for action in actions:
        if action not in known:
            close = difflib.get_close_matches(action, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
            raise PolicyError(f"{where}: unknown action {action!r} for {tool!r}{hint}")
    return frozenset(actions)


def _compile(where: str, field: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise PolicyError(f"{where}: {field} must be a string (a regular expression), not {_type_name(pattern)}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise PolicyError(f"{where}: {field} is not a valid regular expression: {error}") from None


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _describe(number: int, tool: str, actions: frozenset[str] | None, table: Mapping[str, Any]) -> str:
    """A reason for a rule that gives none, e.g. "rule 3: text editor create or str_replace
    with path matching '^/etc/'"."""
    subject = _TOOL_WORDS[tool]
    if actions is not None:
        subject += " " + " or ".join(sorted(actions))
    conditions = [f"{field.replace('_', ' ')} matching {table[field]!r}"
                  for field in ("command", "text", "path", "url", "window_title") if field in table]
    if conditions:
        subject += " with " + " and ".join(conditions)
    return f"rule {number}: {subject}"


EXAMPLE_POLICY = r"""# A policy holds a model's actions for a human's approval before they run.
# Each [[hold]] table is one rule:
#   tool          required: "computer", "browser", "bash", "str_replace_based_edit_tool" or "*"
#                 (any tool)
#   actions       optional: the computer actions (left_click, type, key...), the browser's
#                 members (navigate, form_input, javascript_exec...) or the editor commands
#                 (view, create, str_replace, insert) the rule covers; all if left out
#   command       optional regular expression on a bash command
#   text          optional regular expression on a computer or browser action's text (typed
#                 text, key combos, a script)
#   path          optional regular expression on the editor's path
#   url           optional regular expression on the browser's navigate url
#   window_title  optional regular expression on the focused window's title (a rule with it
#                 never matches when the title is not known)
#   reason        optional: what the human is shown; a description of the rule if left out
# A rule applies when all of its conditions match (Python's re.search: anywhere in the
# string unless anchored); an action is held when any rule applies.
# Write patterns as 'literal strings' so that backslashes stay as they are.
# Patterns catch the usual forms of a command, not every way of writing it: a policy is a
# second pair of eyes, not a sandbox.

# Any bash command that deletes recursively, uses sudo or pipes a download into a shell
[[hold]]
tool = "bash"
command = '(^|[;&|]\s*)(sudo|rm\s+(-[a-zA-Z]*[rR]|--recursive))|curl[^|]*\|\s*(ba)?sh'
reason = "destructive or privileged shell command"

# Typing into a window whose title mentions a bank or a payment ((?i): any letter case)
[[hold]]
tool = "computer"
actions = ["type", "key"]
window_title = '(?i)bank|payment|checkout'
reason = "typing into a payment page"

# Any edit (or view) of a system configuration file
[[hold]]
tool = "str_replace_based_edit_tool"
path = '^/etc/'

# Any script the browser would run in a page
[[hold]]
tool = "browser"
actions = ["javascript_exec"]
reason = "running a script in a web page"

# Where the browser may go at all: hosts ("example.com", "*.example.com", "127.0.0.1:8000") or
# URL prefixes ("https://docs.example.com/guide/"). A deny entry always wins; with an allow
# list, nothing else loads. Checked on every navigation, link, redirect and request, not only
# when the model navigates.
[urls]
allow = []
deny = ["*.internal", "169.254.169.254"]
"""
