"""What an MCP session remembers between its calls: the coordinate space it works in.

A model reads coordinates off the last screenshot it was shown, so that screenshot's size is
the space its next click is in. Each session keeps its own (two clients may ask for different
sizes), and every action it sends says so to the desktop (`coordinate_space`), which maps each
point back to the screen exactly. Before the first screenshot the space is the size a
screenshot would have: the screen at the default model size.

A request that belongs to no session (the 2026-07-28 protocol's single exchanges) gets a
fresh space, always the default one; the screenshot tool refuses such a request another size,
which nothing could remember for its next call.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cubicle import imaging

# Sessions are also capped by the transport; this is the bound of what is remembered, oldest
# use forgotten first.
MAX_REMEMBERED = 1024


@dataclass
class SessionSpace:
    screen: tuple[int, int] | None = None  # the screen's size, asked once
    size: tuple[int, int] | None = None  # the last screenshot's size
    dirty: bool = True  # the screen may have changed since that screenshot: the next one settles
    sessionless: bool = False

    def default_size(self) -> tuple[int, int]:
        assert self.screen is not None
        return imaging.model_image_size(*self.screen, large=True)

    @property
    def current(self) -> tuple[int, int]:
        """The size later coordinates are read in."""
        return self.size or self.default_size()


class SessionSpaces:
    """The spaces of the sessions of one MCP server, by session key."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self._limit = limit
        self._spaces: OrderedDict[str, SessionSpace] = OrderedDict()

    def get(self, key: str | None) -> SessionSpace:
        if key is None:
            return SessionSpace(sessionless=True)
        space = self._spaces.pop(key, None) or SessionSpace()
        self._spaces[key] = space
        while len(self._spaces) > self._limit:
            self._spaces.popitem(last=False)
        return space

    def forget(self, key: str) -> None:
        self._spaces.pop(key, None)

    def __len__(self) -> int:
        return len(self._spaces)
