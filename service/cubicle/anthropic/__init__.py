"""Claude's own toolsets on a cubicle desktop, as the `anthropic` SDK's driver classes.

    from cubicle.anthropic import CubicleComputer
    client.beta.messages.tool_runner(model="claude-sonnet-5", max_tokens=4096, messages=[...],
                                     tools=[CubicleComputer(url, token, confirm=ask_a_human)])

`CubicleComputer` / `AsyncCubicleComputer` serve the computer toolset (computer_toolset_20260801)
over the desktop's API. Needs the `agent` extra (the anthropic package).
"""

from .computer import AsyncCubicleComputer, CubicleComputer

__all__ = ["AsyncCubicleComputer", "CubicleComputer"]
