"""The console: the worker's web page (GET /) to start tasks, watch runs live and steer them.

Plain HTML, CSS and an ES module (console_page/), no build step. Like the desktop's /view
and /docs, the page is public and holds nothing: it takes the worker's token from the URL
fragment (/#token=...), which browsers never send, keeps it in sessionStorage and then uses
the same API as any client. The live desktop is noVNC (Debian's `novnc` package) over the
worker's WS /runs/{id}/vnc, so the browser never needs a desktop's token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).resolve().parent / "console_page"
NOVNC_DIR = Path("/usr/share/novnc")


def install_console(app: FastAPI, novnc_dir: Path = NOVNC_DIR) -> None:
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    # Scripts only from the worker itself, no framing (a page that frames the console could
    # trick a click on Take over), and connections only back to the worker.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"}

    @app.get("/", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    # The more specific mount first. check_dir=False: without noVNC the console still works,
    # and says that the live view needs it.
    app.mount("/console/novnc", StaticFiles(directory=novnc_dir, check_dir=False), name="console-novnc")
    app.mount("/console", StaticFiles(directory=PAGE_DIR), name="console")
