"""The companions of the computer tool: `bash` (bash_20250124) and
`str_replace_based_edit_tool` (text_editor_20250728), both carried out inside the desktop
through its shell and file routes, as the desktop user."""

from __future__ import annotations

from typing import Any

from cubicle.client import CubicleError, DesktopClient

from .tools import ToolOutcome

SNIPPET_LINES = 4  # context shown around an edit


class BashTool:
    name = "bash"

    def __init__(self, client: DesktopClient, timeout: float = 120.0):
        self.client = client
        self.timeout = timeout

    def definition(self) -> dict[str, Any]:
        return {"type": "bash_20250124", "name": self.name}

    def run(self, tool_input: dict[str, Any]) -> ToolOutcome:
        try:
            if tool_input.get("restart"):
                self.client.restart_shell()
                return ToolOutcome("The bash session was restarted.")
            command = tool_input.get("command")
            if not isinstance(command, str) or not command.strip():
                return ToolOutcome("Give a command to run, or restart: true.", is_error=True)
            result = self.client.shell(command, timeout=self.timeout)
        except CubicleError as error:
            return ToolOutcome(error.message, is_error=True)
        if result.timed_out:
            return ToolOutcome(
                (result.output + "\n" if result.output else "")
                + f"The command timed out after {self.timeout:g} s; the shell was restarted "
                "(state such as the working directory was lost).",
                is_error=True,
            )
        text = result.output
        if result.exit_code not in (0, None):
            text += f"\n[exit code {result.exit_code}]"
        return ToolOutcome(text or "(no output)")


def _numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{number:6}\t{line}" for number, line in enumerate(lines, first))


class EditorTool:
    name = "str_replace_based_edit_tool"

    def __init__(self, client: DesktopClient):
        self.client = client

    def definition(self) -> dict[str, Any]:
        return {"type": "text_editor_20250728", "name": self.name}

    def run(self, tool_input: dict[str, Any]) -> ToolOutcome:
        command: Any = tool_input.get("command")  # any JSON value: an unknown one finds no handler
        path = tool_input.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            return ToolOutcome(f"The path {path!r} is not an absolute path; it must start with '/'.", is_error=True)
        handler = {"view": self._view, "create": self._create, "str_replace": self._str_replace, "insert": self._insert}.get(command)
        if handler is None:
            return ToolOutcome(f"Unknown command {command!r}; use view, create, str_replace or insert.", is_error=True)
        try:
            return handler(path, tool_input)
        except CubicleError as error:
            return ToolOutcome(error.message, is_error=True)

    def _read_text(self, path: str) -> str:
        info = self.client.read_file(path)
        if info.type != "file":
            raise CubicleError(422, "is_directory", f"{path} is a directory; this command needs a file.")
        assert info.content is not None  # a file comes with its text
        return info.content

    def _view(self, path: str, tool_input: dict[str, Any]) -> ToolOutcome:
        info = self.client.read_file(path)
        if info.type == "directory":
            assert info.entries is not None  # a directory comes with its entries
            lines = [path]
            for entry in info.entries:
                if entry.name.startswith("."):
                    continue
                child = f"{path.rstrip('/')}/{entry.name}"
                lines.append(child + ("/" if entry.type == "directory" else ""))
                if entry.type == "directory":  # two levels deep, as the reference tool shows
                    try:
                        sub = self.client.read_file(child)
                        assert sub.entries is not None  # a directory comes with its entries
                        lines += [f"{child}/{e.name}" for e in sub.entries if not e.name.startswith(".")]
                    except CubicleError:
                        pass  # unreadable subfolder: list it, not its content
            return ToolOutcome("\n".join(lines))
        assert info.content is not None  # a file comes with its text
        lines = info.content.split("\n")
        view_range = tool_input.get("view_range")
        if view_range is None:
            return ToolOutcome(_numbered(lines, 1))
        if not (isinstance(view_range, list) and len(view_range) == 2 and all(isinstance(v, int) for v in view_range)):
            return ToolOutcome("view_range must be two integers [start, end] (end -1 for the end of the file).", is_error=True)
        start, end = view_range
        end = len(lines) if end == -1 else end
        if not (1 <= start <= len(lines)) or end < start or end > len(lines):
            return ToolOutcome(
                f"Invalid view_range {view_range}: the file has {len(lines)} lines; use 1 <= start <= end <= "
                f"{len(lines)}, or end = -1.", is_error=True,
            )
        return ToolOutcome(_numbered(lines[start - 1:end], start))

    def _create(self, path: str, tool_input: dict[str, Any]) -> ToolOutcome:
        text = tool_input.get("file_text")
        if not isinstance(text, str):
            return ToolOutcome("create needs file_text.", is_error=True)
        try:
            self.client.read_file(path)
            return ToolOutcome(f"File already exists at {path}; create does not overwrite. Use str_replace to edit it.", is_error=True)
        except CubicleError as error:
            if error.status != 404:
                raise
        self.client.write_file(path, text)
        return ToolOutcome(f"File created successfully at: {path}")

    def _str_replace(self, path: str, tool_input: dict[str, Any]) -> ToolOutcome:
        old, new = tool_input.get("old_str"), tool_input.get("new_str") or ""
        if not isinstance(old, str) or old == "":
            return ToolOutcome("str_replace needs a non-empty old_str.", is_error=True)
        content = self._read_text(path)
        count = content.count(old)
        if count == 0:
            return ToolOutcome(f"No replacement was performed: old_str did not appear verbatim in {path}.", is_error=True)
        if count > 1:
            lines = [content[:i].count("\n") + 1 for i in _find_all(content, old)]
            return ToolOutcome(
                f"No replacement was performed: old_str occurs {count} times in {path} (lines {lines}). "
                "Include more context so it is unique.", is_error=True,
            )
        edited = content.replace(old, new, 1)
        self.client.write_file(path, edited)
        first_line = content[: content.index(old)].count("\n")
        return ToolOutcome(f"The file {path} has been edited.\n" + self._snippet(edited, first_line, new.count("\n")))

    def _insert(self, path: str, tool_input: dict[str, Any]) -> ToolOutcome:
        line, text = tool_input.get("insert_line"), tool_input.get("insert_text", tool_input.get("new_str"))
        if not isinstance(line, int) or not isinstance(text, str):
            return ToolOutcome("insert needs insert_line (an integer) and insert_text.", is_error=True)
        lines = self._read_text(path).split("\n")
        if not 0 <= line <= len(lines):
            return ToolOutcome(f"Invalid insert_line {line}: it must be between 0 and {len(lines)}.", is_error=True)
        edited = "\n".join(lines[:line] + text.split("\n") + lines[line:])
        self.client.write_file(path, edited)
        return ToolOutcome(f"The file {path} has been edited.\n" + self._snippet(edited, line, text.count("\n")))

    @staticmethod
    def _snippet(content: str, first_line: int, changed_lines: int) -> str:
        lines = content.split("\n")
        start = max(0, first_line - SNIPPET_LINES)
        end = min(len(lines), first_line + changed_lines + SNIPPET_LINES + 1)
        return _numbered(lines[start:end], start + 1)


def _find_all(text: str, part: str) -> list[int]:
    found, index = [], text.find(part)
    while index != -1:
        found.append(index)
        index = text.find(part, index + 1)
    return found
