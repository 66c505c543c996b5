"""The tools a run offers the model, behind one interface, and the table that dispatches each
tool_use block to its tool (the shape of the reference demo's tools/base.py and collection.py).

Plain tools (the beta computer tool, bash, the text editor) are `Tool`s: a definition for
the request and `run(input) -> ToolOutcome`. Toolsets (computer_toolset_20260801) are the
SDK's own driver classes (cubicle.anthropic), reached by a block's `toolset_name`: the SDK
parses each member's input, asks `confirm` and renders the result, which comes back here as a
ToolOutcome like any other, for the run log and the conversation.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from anthropic.lib.tools import BetaRunnableToolset
from anthropic.types.beta import BetaToolUseBlock

# What a tool call is answered when an earlier one in the same turn failed: the toolsets'
# own wording (the browser's is shorter), which the plain tools share.
HALT_TEXTS = {"computer": "Not executed: an earlier computer action in this turn failed.",
              "browser": "Not executed: an earlier action in this turn failed."}


def halt_text(block: dict[str, Any]) -> str:
    return HALT_TEXTS.get(block.get("toolset_name") or "computer", HALT_TEXTS["computer"])


@dataclass
class ToolOutcome:
    """One tool_result: what the model gets back, and what the run log keeps."""

    text: str = ""
    is_error: bool = False
    image: bytes | None = None
    media_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.text:
            blocks.append({"type": "text", "text": self.text})
        if self.image is not None and not self.is_error:  # an error result carries text only
            blocks.append({"type": "image", "source": {
                "type": "base64", "media_type": self.media_type, "data": base64.b64encode(self.image).decode("ascii"),
            }})
        return blocks or [{"type": "text", "text": "ok"}]


class Tool(Protocol):
    name: str

    def definition(self) -> dict[str, Any]: ...

    def run(self, tool_input: dict[str, Any]) -> ToolOutcome: ...


def outcome_of(result: Any) -> ToolOutcome:
    """A toolset's rendered tool_result as an outcome: its texts, and its first image."""
    content = result.get("content")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    texts = [block["text"] for block in blocks if block.get("type") == "text" and block.get("text")]
    outcome = ToolOutcome("\n".join(texts), bool(result.get("is_error")))
    image = next((block for block in blocks if block.get("type") == "image"), None)
    if image is not None:
        outcome.image = base64.b64decode(image["source"]["data"])
        outcome.media_type = image["source"]["media_type"]
    return outcome


class ToolCollection:
    """The run's tools by name and toolsets by family, in the order the request lists them."""

    def __init__(self, entries: Sequence[Tool | BetaRunnableToolset]):
        self.entries = list(entries)
        self.tools = {entry.name: entry for entry in entries if not isinstance(entry, BetaRunnableToolset)}
        self.toolsets = {entry.toolset_name: entry for entry in entries if isinstance(entry, BetaRunnableToolset)}

    def definitions(self) -> list[dict[str, Any]]:
        # A toolset's definition is a TypedDict: a plain dict at run time.
        return [cast(dict[str, Any], entry.to_dict()) if isinstance(entry, BetaRunnableToolset) else entry.definition()
                for entry in self.entries]

    def run(self, block: dict[str, Any]) -> ToolOutcome:
        family = block.get("toolset_name")
        if family:
            toolset = self.toolsets.get(family)
            if toolset is None:
                return ToolOutcome(f"Unknown toolset {family!r}: this run offers {', '.join(self.toolsets) or 'none'}.", True)
            return outcome_of(toolset.tool_result(BetaToolUseBlock.model_validate(block)))
        tool = self.tools.get(block.get("name") or "")
        if tool is None:
            return ToolOutcome(f"Unknown tool {block.get('name')!r}.", is_error=True)
        return tool.run(block.get("input") or {})
