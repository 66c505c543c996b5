"""The MCP face of a desktop: Claude Code, Claude Desktop and any MCP client operate it.

    tools.py   the tools: the computer toolset's members (one desktop batch each), windows,
               launch, clipboard, shell and files, on the desktop's HTTP API (AsyncDesktopClient)
    space.py   what a session remembers: the size of its last screenshot, its coordinate space
    server.py  the SDK's low-level Server over the tool table
    http.py    /mcp on the desktop's server (streamable HTTP, behind its token middleware)
    stdio.py   `cubicle mcp --desktop URL`, for clients that launch a command

Needs the `mcp` package (the official SDK), a dependency of cubicle itself.
"""
