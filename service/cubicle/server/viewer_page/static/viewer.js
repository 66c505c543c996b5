// The desktop's live view: noVNC over ws(s)://<same host>/vnc. The token comes from the URL
// fragment, is kept in sessionStorage and leaves the address bar; it goes to the bridge as
// the first WebSocket message, so it is in no URL. View-only unless asked otherwise.

import RFB from "/view/novnc/core/rfb.js";

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
