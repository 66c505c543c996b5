"""/docs: Swagger UI served from local files (the desktop may have no internet).

The page itself is public and holds nothing; it reads the token from the URL fragment
(/docs#token=...), which browsers never send to a server, and adds it to every request it
makes, /openapi.json included.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(fastapi_offline.__file__).parent / "static"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cubicle desktop API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) { sessionStorage.setItem("cubicle-token", fromFragment); history.replaceState(null, "", location.pathname); }
const token = sessionStorage.getItem("cubicle-token") || "";
if (!token) document.body.insertAdjacentHTML("afterbegin",
  "<p style='font:16px sans-serif;padding:1em'>Open this page as <code>/docs#token=YOUR_TOKEN</code>.</p>");
SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#ui",
  requestInterceptor: (request) => { request.headers["Authorization"] = "Bearer " + token; return request; },
});
</script></body></html>"""


def install_docs(app: FastAPI) -> None:
    app.mount("/docs/static", StaticFiles(directory=STATIC), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE)
