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
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

NOVNC_DIR = Path("/usr/share/novnc")
VIEW_PATH = "/view"
NOVNC_URL = "/view/novnc"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cubicle desktop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<style>
  html, body { margin: 0; height: 100%; background: #282828; color: #eee; font: 14px system-ui, sans-serif; }
  body { display: flex; flex-direction: column; }
  #bar { display: flex; align-items: center; gap: 12px; padding: 4px 10px; background: #1b1b1b; flex: none; }
  #status { flex: 1; }
  #status[data-state="connected"] { color: #9fdf9f; }
  #status[data-state="refused"], #status[data-state="error"], #status[data-state="no-token"] { color: #ff9a9a; }
  body[data-mode="interactive"] #bar { background: #5a2a00; }
  button { font: inherit; padding: 2px 10px; }
  #screen { flex: 1; min-height: 0; position: relative; }
</style></head>
<body data-mode="view-only">
<div id="bar"><span id="status" data-state="starting">starting</span>
<button id="toggle" type="button" disabled>Take over</button></div>
<div id="screen"></div>
<script type="module">
import RFB from "__NOVNC__/core/rfb.js";

const TOKEN_KEY = "cubicle-token";
const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");
const toggle = document.getElementById("toggle");

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
const token = sessionStorage.getItem(TOKEN_KEY) || "";
let interactive = fragment.get("interactive") === "1";
let socket = null, rfb = null, connected = false, retryMs = 500;

function setStatus(state, text) { statusLine.dataset.state = state; statusLine.textContent = text; }

function connectedText() {
  return interactive ? "connected: interactive, your mouse and keyboard reach the desktop"
                     : "connected: view only";
}

// The address bar keeps the mode, never the token.
function showMode() {
  history.replaceState(null, "", location.pathname + location.search + (interactive ? "#interactive=1" : ""));
  document.body.dataset.mode = interactive ? "interactive" : "view-only";
  toggle.textContent = interactive ? "Back to view only" : "Take over";
  if (connected) setStatus("connected", connectedText());
}

function connect() {
  setStatus("connecting", "connecting...");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/vnc");
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.addEventListener("open", () => {
    // The token goes first, before any RFB byte; noVNC then takes over the open socket.
    ws.send(JSON.stringify({ token, interactive }));
    rfb = new RFB(screen, ws);
    rfb.scaleViewport = true;
    rfb.viewOnly = !interactive;
    rfb.addEventListener("connect", () => {
      connected = true; retryMs = 500; toggle.disabled = false;
      setStatus("connected", connectedText());
    });
  });
  ws.addEventListener("close", (event) => closed(ws, event));
}

function closed(ws, event) {
  if (ws !== socket) return;
  socket = null; rfb = null; connected = false; toggle.disabled = true;
  if (event.code === 4401) {
    sessionStorage.removeItem(TOKEN_KEY);
    setStatus("refused", "The token was refused. Open this page as /view#token=YOUR_TOKEN.");
    return;
  }
  if (event.code === 1008) {
    setStatus("error", "The server refused this viewer: " + event.reason);
    return;
  }
  const wait = retryMs;
  retryMs = Math.min(retryMs * 2, 5000);
  setStatus("reconnecting", "disconnected, reconnecting in " + (wait / 1000).toFixed(1) + " s");
  setTimeout(connect, wait);
}

toggle.addEventListener("click", () => {
  interactive = !interactive;
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ interactive }));
  if (rfb) { rfb.viewOnly = !interactive; if (interactive) rfb.focus(); }
  showMode();
});

showMode();
if (token) connect();
else setStatus("no-token", "No token. Open this page as /view#token=YOUR_TOKEN.");
</script></body></html>"""

_MISSING = """<!doctype html><html><head><meta charset="utf-8"><title>cubicle desktop</title></head>
<body style="font:16px sans-serif;padding:1em"><p>The viewer needs noVNC, which is not installed
on this desktop (Debian package <code>novnc</code>, files in __DIR__).</p></body></html>"""


def install_viewer(app: FastAPI, novnc_dir: Path = NOVNC_DIR) -> None:
    # check_dir=False: without noVNC the rest of the API still runs; /view then says what is missing.
    app.mount(NOVNC_URL, StaticFiles(directory=novnc_dir, check_dir=False), name="novnc")
    page = _PAGE.replace("__NOVNC__", NOVNC_URL)
    # No framing: a page that frames the viewer could trick a click on Take over.
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": "frame-ancestors 'none'",
               "Referrer-Policy": "no-referrer"}

    @app.get(VIEW_PATH, include_in_schema=False)
    async def view() -> HTMLResponse:
        if not (novnc_dir / "core" / "rfb.js").is_file():
            return HTMLResponse(_MISSING.replace("__DIR__", str(novnc_dir)), status_code=503, headers=headers)
        return HTMLResponse(page, headers=headers)
