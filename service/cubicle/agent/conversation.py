"""The message history sent to the model: prompt-cache breakpoints and screenshot pruning.

The stored history is append-only between prunes, so every request's prefix (system, tools,
earlier messages) is byte-for-byte the previous request's. Cache markers are added to a copy
at request time: they move to the newest turns, and the API ignores them when matching a
cached prefix. Old screenshots are removed in batches (not one per turn): each prune changes
the prefix once, then caching works again for many turns.
"""

from __future__ import annotations

import copy
from typing import Any

PLACEHOLDER = "[An older screenshot was removed here to keep the conversation small.]"
_CACHE = {"type": "ephemeral"}


class Conversation:
    def __init__(self, system: str, tools: list[dict[str, Any]], keep_images: int = 3, prune_batch: int = 15):
        self.system = system
        self.tools = tools
        self.messages: list[dict[str, Any]] = []
        self.keep_images = keep_images
        # Up to keep + batch images travel before a prune: 18 stays under the API's 20-image
        # threshold above which each image side is limited to 2000 px.
        self.prune_batch = prune_batch

    # -- building -----------------------------------------------------------------------

    def add_user(self, content: list[dict[str, Any]]) -> None:
        self.messages.append({"role": "user", "content": content})

    def add_assistant(self, content: list[dict[str, Any]]) -> None:
        self.messages.append({"role": "assistant", "content": content})

    def pending_tool_uses(self) -> list[dict[str, Any]]:
        """tool_use blocks of the last assistant turn that have no result yet."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            return []
        return [block for block in self.messages[-1]["content"] if block.get("type") == "tool_use"]

    # -- pruning ------------------------------------------------------------------------

    def _image_slots(self) -> list[tuple[list, int]]:
        """(container list, index) of every image, oldest first, in tool results and user text."""
        slots = []
        for message in self.messages:
            if message["role"] != "user" or not isinstance(message["content"], list):
                continue
            for block in message["content"]:
                if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                    slots += [(block["content"], i) for i, b in enumerate(block["content"]) if b.get("type") == "image"]
                elif block.get("type") == "image":
                    slots.append((message["content"], message["content"].index(block)))
        return slots

    def prune(self) -> int:
        """Replace all but the newest `keep_images` screenshots once there are `prune_batch`
        more than that. Returns how many were removed (0 almost always)."""
        slots = self._image_slots()
        if len(slots) <= self.keep_images + self.prune_batch:
            return 0
        removed = slots[: len(slots) - self.keep_images]
        for container, index in removed:
            container[index] = {"type": "text", "text": PLACEHOLDER}
        return len(removed)

    # -- requests -----------------------------------------------------------------------

    def request(self) -> dict[str, Any]:
        """system, tools and messages for messages.create, with cache breakpoints: one after
        system+tools, one on each of the three newest user turns."""
        messages = copy.deepcopy(self.messages)
        marked = 0
        for message in reversed(messages):
            if marked == 3:
                break
            if message["role"] == "user" and isinstance(message["content"], list) and message["content"]:
                message["content"][-1]["cache_control"] = dict(_CACHE)
                marked += 1
        system = [{"type": "text", "text": self.system, "cache_control": dict(_CACHE)}]
        return {"system": system, "tools": copy.deepcopy(self.tools), "messages": messages}

    def image_count(self) -> int:
        return len(self._image_slots())
