"""/view: watch the desktop live in a browser, and take it over, with noVNC.

noVNC comes from the Debian package `novnc` (1.3.0 on bookworm), whose files are served
read-only under /view/novnc/; our page uses its ES module API (core/rfb.js). Like /docs, the
page is public and holds nothing: it reads the token from the URL fragment
(/view#token=...&interactive=1), which browsers never send to a server, keeps it in
sessionStorage and takes it out of the address bar. It then opens ws(s)://<same host>/vnc and
sends the token as the first WebSocket message (see vnc_bridge), so the token appears in no
URL. View-only unless `interactive=1` or the "Take over" button says otherwise; the bridge
enforces view-only too. The page scales the screen to the window, shows the connection's
state and reconnects by itself after a drop, waiting 0.5 s, then 1, 2, 4 and at most 5 s.

The page is files in viewer_page/: index.html, and its script and style in static/, served
at /view/static/ and public like the page. Its Content-Security-Policy comes in two parts: the
header forbids framing (only a header can), and a <meta> tag in index.html allows scripts,
styles and connections from this server only, no inline script; the browser enforces both.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

NOVNC_DIR = Path("/usr/share/novnc")
VIEW_PATH = "/view"
NOVNC_URL = "/view/novnc"
STATIC_URL = "/view/static"
PAGE_DIR = Path(__file__).resolve().parent / "viewer_page"


def install_viewer(app: FastAPI, novnc_dir: Path = NOVNC_DIR) -> None:
    # check_dir=False: without noVNC the rest of the API still runs; /view then says what is missing.
    app.mount(NOVNC_URL, StaticFiles(directory=novnc_dir, check_dir=False), name="novnc")
    # Only the script and the style: the HTML files stay out of the mount, so the page exists
    # only at /view, where its headers forbid framing it.
    app.mount(STATIC_URL, StaticFiles(directory=PAGE_DIR / "static"), name="viewer-static")
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    missing = (PAGE_DIR / "missing.html").read_text(encoding="utf-8").replace("__DIR__", html.escape(str(novnc_dir)))
    # No framing: a page that frames the viewer could trick a click on Take over.
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": "frame-ancestors 'none'",
               "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}

    @app.get(VIEW_PATH, include_in_schema=False)
    async def view() -> HTMLResponse:
        if not (novnc_dir / "core" / "rfb.js").is_file():
            return HTMLResponse(missing, status_code=503, headers=headers)
        return HTMLResponse(page, headers=headers)
