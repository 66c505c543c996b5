"""Claude's own toolsets on a cubicle desktop, as the `anthropic` SDK's driver classes.

    from cubicle.anthropic import CubicleBrowser, CubicleComputer
    client.beta.messages.tool_runner(model="claude-sonnet-5", max_tokens=4096, messages=[...],
                                     tools=[CubicleComputer(url, token, confirm=ask_a_human),
                                            CubicleBrowser(url, token, confirm=ask_a_human)])

`CubicleComputer` / `AsyncCubicleComputer` serve the computer toolset (computer_toolset_20260801)
over the desktop's API; `CubicleBrowser` / `AsyncCubicleBrowser` the browser toolset
(browser_toolset_20260801) on the desktop's Chromium, with `URLRules` and `DesktopFilePolicy`
for what it may reach. Needs the `agent` extra (the anthropic package); the browser also
needs the playwright package (no browser download).
"""

from .browser import AsyncCubicleBrowser, CubicleBrowser
from .browser_policy import DesktopFilePolicy, URLRules
from .computer import AsyncCubicleComputer, CubicleComputer

__all__ = ["AsyncCubicleBrowser", "AsyncCubicleComputer", "CubicleBrowser", "CubicleComputer", "DesktopFilePolicy",
           "URLRules"]
