// The cubicle console: start tasks, watch runs live, pause/resume/stop, take over and hand
// back, approve held actions. It uses the worker's public API with the token it keeps in
// sessionStorage; the live desktop is noVNC over the worker's WS /runs/{id}/vnc.

const TOKEN_KEY = "cubicle-worker-token";
const $ = (id) => document.getElementById(id);
let token = "";
let current = null;         // the run shown: its latest description from the API
let events = null;          // its event socket
let view = null;            // its live desktop: { socket, rfb }
let viewRetry = 500;
let RFB = null;             // noVNC, loaded on first use
let refreshing = null;      // the timer that keeps the list of runs fresh

// -- the token ---------------------------------------------------------------------------

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(method, path, body) {
  const options = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function login(candidate) {
  token = candidate;
  try {
    await api("POST", "/session");   // the cookie that lets <img> load run images
  } catch (error) {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("login").hidden = false;
    $("app").hidden = true;
    $("login-error").textContent = error.status === 401 ? "That token was refused." : "The worker did not answer: " + error.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("connection").textContent = "connected to " + location.host;
  await Promise.all([refreshRuns(), refreshDesktops()]);
  if (!refreshing) refreshing = setInterval(() => { refreshRuns(); refreshDesktops(); }, 3000);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("run");
  if (wanted) openRun(wanted);
}

// -- the list of runs and starting one --------------------------------------------------------

function statusOf(run) {
  return run.taken_over ? "taken over" : run.status;
}

function badge(run) {
  const span = document.createElement("span");
  const status = statusOf(run);
  span.className = "status " + status.replace(" ", "-");
  span.textContent = status;
  return span;
}

async function refreshRuns() {
  let runs;
  try {
    runs = (await api("GET", "/runs")).runs;
  } catch (error) {
    $("connection").textContent = "worker unreachable: " + error.message;
    return;
  }
  $("connection").textContent = "connected to " + location.host;
  const list = $("runs");
  list.replaceChildren(...runs.map((run) => {
    const item = document.createElement("li");
    item.dataset.id = run.id;
    if (current && current.id === run.id) item.classList.add("selected");
    const task = document.createElement("span");
    task.className = "task";
    task.textContent = run.task;
    task.title = run.task;
    const meta = document.createElement("span");
    meta.className = "meta";
    const totals = run.totals || {};
    meta.append(badge(run), ` ${totals.steps || 0} steps · $${(totals.cost_usd || 0).toFixed(3)} · ${when(run.created_at)}`);
    item.append(task, meta);
    item.addEventListener("click", () => openRun(run.id));
    return item;
  }));
}

// -- the fleet's desktops ------------------------------------------------------------------

let watching = null;  // { id, socket, rfb } of the desktop shown live

async function refreshDesktops() {
  let desktops;
  try {
    desktops = (await api("GET", "/desktops")).desktops;
  } catch (error) {
    $("fleet").hidden = true;  // no fleet behind this worker
    $("new-desktop-label").hidden = true;
    return;
  }
  $("fleet").hidden = false;
  $("new-desktop-label").hidden = false;
  $("desktops").replaceChildren(...desktops.map((desktop) => {
    const item = document.createElement("li");
    item.dataset.id = desktop.id;
    if (watching && watching.id === desktop.id) item.classList.add("selected");
    const name = document.createElement("span");
    name.className = "task";
    const labels = Object.entries(desktop.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    name.textContent = `${desktop.id}${labels ? " · " + labels : ""}`;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${desktop.status} · ${desktop.width}x${desktop.height} · until ${when(desktop.expires_at)}`;
    item.append(name, meta);
    item.addEventListener("click", () => watchDesktop(desktop));
    return item;
  }));
}

async function watchDesktop(desktop) {
  closeRun();
  stopWatching();
  if (!RFB) {
    try {
      RFB = (await import("/console/novnc/core/rfb.js")).default;
    } catch (error) {
      $("desktop-state").textContent = "The live view needs noVNC (Debian package novnc) on the worker.";
    }
  }
  $("empty").hidden = true;
  $("run").hidden = true;
  $("desktop-view").hidden = false;
  $("desktop-title").textContent = `Desktop ${desktop.id}`;
  $("desktop-facts").textContent = `${desktop.status} · ${desktop.width}x${desktop.height} · ${desktop.backend}`;
  for (const item of $("desktops").children) item.classList.toggle("selected", item.dataset.id === desktop.id);
  if (!RFB) return;
  const socket = new WebSocket(wsUrl(`/desktops/${encodeURIComponent(desktop.id)}/vnc`));
  socket.binaryType = "arraybuffer";
  watching = { id: desktop.id, socket, rfb: null };
  $("desktop-state").textContent = "connecting...";
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ token }));
    const rfb = new RFB($("desktop-screen"), socket);
    rfb.scaleViewport = true;
    rfb.viewOnly = true;
    watching.rfb = rfb;
    rfb.addEventListener("connect", () => { $("desktop-state").textContent = "Live, view only."; });
  });
  socket.addEventListener("close", (close) => {
    if (!watching || watching.socket !== socket) return;
    $("desktop-state").textContent = `disconnected${close.reason ? " (" + close.reason + ")" : ""}`;
  });
}

function stopWatching() {
  if (!watching) return;
  const old = watching;
  watching = null;
  if (old.rfb) old.rfb.disconnect();
  else old.socket.close();
  $("desktop-screen").replaceChildren();
  $("desktop-view").hidden = true;
}

$("new-run").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { task: $("task").value };
  if ($("new-desktop").checked) body.desktop = "new";
  for (const [field, id] of [["desktop", "desktop"], ["desktop_token", "desktop-token"], ["model", "model"]]) {
    if ($(id).value.trim()) body[field] = $(id).value.trim();
  }
  if ($("max-steps").value) body.max_steps = Number($("max-steps").value);
  $("start").disabled = true;
  $("start-error").textContent = "";
  try {
    const run = await api("POST", "/runs", body);
    $("task").value = "";
    await refreshRuns();
    openRun(run.id);
  } catch (error) {
    $("start-error").textContent = error.message;
  } finally {
    $("start").disabled = false;
  }
});

// -- one run -------------------------------------------------------------------------------

async function openRun(id) {
  closeRun();
  stopWatching();
  history.replaceState(null, "", location.pathname + "#run=" + encodeURIComponent(id));
  for (const item of $("runs").children) item.classList.toggle("selected", item.dataset.id === id);
  $("empty").hidden = true;
  $("run").hidden = false;
  $("log").replaceChildren();
  $("run-error").textContent = "";
  try {
    current = await api("GET", `/runs/${encodeURIComponent(id)}?events=false`);
  } catch (error) {
    $("run-error").textContent = error.message;
    return;
  }
  showRun();
  followEvents(id);
}

function closeRun() {
  if (events) { events.onclose = null; events.close(); events = null; }
  closeView();
  current = null;
}

async function refreshRun() {
  if (!current) return;
  const id = current.id;
  try {
    const run = await api("GET", `/runs/${encodeURIComponent(id)}?events=false`);
    if (current && current.id === id) { current = run; showRun(); }
  } catch (error) {
    $("run-error").textContent = error.message;
  }
}

let refreshPending = false;
function refreshSoon() {
  if (refreshPending) return;
  refreshPending = true;
  setTimeout(() => { refreshPending = false; refreshRun(); refreshRuns(); }, 150);
}

function showRun() {
  const run = current;
  const totals = run.totals || {};
  $("run-task").textContent = run.task;
  const facts = $("run-facts");
  facts.replaceChildren(badge(run), ` ${run.model} · ${totals.steps || 0} steps · ` +
    `${(totals.input_tokens || 0) + (totals.cache_read_tokens || 0) + (totals.cache_creation_tokens || 0)} in / ` +
    `${totals.output_tokens || 0} out tokens · $${(totals.cost_usd || 0).toFixed(4)} · run ${run.id}` +
    (run.stop_reason ? ` · ${run.stop_reason}` : ""));
  const live = run.active && (run.status === "running" || run.status === "paused");
  $("pause").hidden = !live || run.pause_requested;
  $("resume").hidden = !live || !run.pause_requested || run.taken_over;
  $("stop").hidden = !live;
  $("takeover").hidden = !live || run.taken_over;
  $("handback").hidden = !live || !run.taken_over;
  $("message-form").hidden = !live;
  $("replay").href = `/runs/${encodeURIComponent(run.id)}/replay`;
  document.body.classList.toggle("taken-over", !!run.taken_over);
  showApprovals(run.pending || []);
  if (live) {
    $("last-shot").hidden = true;
    $("screen").hidden = false;
    if (!view) openView(run.id);
    else setViewMode();
  } else {
    closeView();
    $("screen").hidden = true;
    $("screen-state").textContent = "The run has ended; this is its last screenshot.";
    showLastShot();
  }
}

function showLastShot() {
  const shots = [...$("log").querySelectorAll("img.thumb")];
  const img = $("last-shot");
  if (shots.length) { img.src = shots[shots.length - 1].src; img.hidden = false; }
  else img.hidden = true;
}

function showApprovals(pending) {
  const box = $("approvals");
  box.replaceChildren(...pending.map((held) => {
    const div = document.createElement("div");
    div.className = "approval";
    const what = document.createElement("div");
    what.textContent = `Held for approval (${held.reason}): ${held.tool} ${held.name || ""} ${summary(held.input || {})}`;
    const note = document.createElement("input");
    note.placeholder = "note for the agent (optional)";
    const approve = document.createElement("button");
    approve.textContent = "Approve";
    const deny = document.createElement("button");
    deny.textContent = "Deny";
    for (const [button, yes] of [[approve, true], [deny, false]]) {
      button.addEventListener("click", () => control(
        `/approvals/${encodeURIComponent(held.approval_id)}`, { approve: yes, note: note.value }));
    }
    div.append(what, note, " ", approve, " ", deny);
    return div;
  }));
}

async function control(suffix, body) {
  if (!current) return;
  $("run-error").textContent = "";
  try {
    await api("POST", `/runs/${encodeURIComponent(current.id)}${suffix}`, body);
  } catch (error) {
    $("run-error").textContent = error.message;
  }
  await refreshRun();
}

$("pause").addEventListener("click", () => control("/pause"));
$("resume").addEventListener("click", () => control("/resume"));
$("stop").addEventListener("click", () => control("/stop"));
$("takeover").addEventListener("click", () => control("/takeover"));
$("handback").addEventListener("click", () => control("/handback"));
$("message-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  await control("/message", { text });
  $("message").value = "";
});

// -- the step log, live ------------------------------------------------------------------------

function followEvents(id) {
  const socket = new WebSocket(wsUrl(`/runs/${encodeURIComponent(id)}/events`));
  events = socket;
  socket.addEventListener("open", () => socket.send(JSON.stringify({ token })));
  socket.addEventListener("message", (message) => {
    if (events !== socket) return;
    const event = JSON.parse(message.data);
    addEvent(event);
    if (!["request", "result", "thinking"].includes(event.type)) refreshSoon();
  });
  socket.onclose = (close) => {
    if (events !== socket) return;
    events = null;
    if (close.code !== 1000) $("run-error").textContent = "The event stream closed: " + (close.reason || close.code);
    refreshSoon();
  };
}

function addEvent(event) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  for (const item of render(event)) log.append(item);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function entry(className, ...parts) {
  const item = document.createElement("li");
  item.className = className;
  item.append(...parts);
  return item;
}

function who(actor) {
  const span = document.createElement("span");
  span.className = "who " + actor;
  span.textContent = actor;
  return span;
}

function facts(text) {
  const div = document.createElement("div");
  div.className = "facts";
  div.textContent = text;
  return div;
}

function thumb(path) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.loading = "lazy";
  img.alt = "screenshot";
  img.src = `/runs/${encodeURIComponent(current.id)}/${path}`;
  img.addEventListener("click", () => window.open(img.src, "_blank", "noopener"));
  return img;
}

function render(event) {
  const items = [];
  switch (event.type) {
    case "run_started":
      items.push(entry("control", `Started with ${event.model} (${event.tool_version}) on ${event.desktop}`));
      break;
    case "thinking":
      items.push(entry("control thinking", `step ${event.step}: the model is thinking…`));
      break;
    case "response": {
      for (const old of $("log").querySelectorAll("li.thinking")) old.remove();
      for (const block of event.content || []) {
        if (block.type === "text" && block.text.trim()) items.push(entry("model-text", who("model"), block.text));
      }
      const usage = event.usage || {};
      const tokens = (usage.input_tokens || 0) + (usage.cache_read_tokens || 0) + (usage.cache_creation_tokens || 0);
      items.push(entry("control", facts(`step ${event.step}: ${tokens} in / ${usage.output_tokens || 0} out tokens` +
        ` · $${(event.cost_usd || 0).toFixed(4)} · model ${ms(event.duration_ms)}`)));
      break;
    }
    case "action": {
      const actor = event.actor || "model";
      const label = event.tool === "computer" ? (event.name || "") : `${event.tool}${event.name ? " " + event.name : ""}`;
      const item = entry(`action ${actor}`, who(actor), `${label} ${summary(event.input || {}, event.tool)}`);
      item.dataset.toolUseId = event.tool_use_id || "";
      items.push(item);
      break;
    }
    case "result": {
      const action = [...$("log").querySelectorAll("li.action")].find((li) => li.dataset.toolUseId === event.tool_use_id);
      const parts = [];
      if (event.text) parts.push(facts((event.is_error ? "error: " : "") + clip(event.text, 400)));
      if (event.duration_ms !== undefined && event.actor !== "human") parts.push(facts(`took ${ms(event.duration_ms)}`));
      if (event.image) parts.push(thumb(event.image));
      if (action) {
        action.append(...parts);
        if (event.is_error) action.classList.add("error");
      } else if (parts.length) {
        items.push(entry(event.is_error ? "error" : "control", ...parts));
      }
      break;
    }
    case "paused": items.push(entry("control", "Paused")); break;
    case "resumed": items.push(entry("control", "Resumed")); break;
    case "taken_over": items.push(entry("control", "A human took over the desktop")); break;
    case "handed_back": {
      const parts = [`Handed back to the model after ${(event.actions || []).length} human action(s)`];
      if (event.image) parts.push(thumb(event.image));
      items.push(entry("control", ...parts));
      break;
    }
    case "message": items.push(entry("action human", who("human"), "said: " + event.text)); break;
    case "approval_requested":
      items.push(entry("control", `Waiting for approval: ${event.tool} ${event.name || ""} (${event.reason})`));
      break;
    case "approval_decided":
      items.push(entry("control", `${event.approved ? "Approved" : "Denied"}${event.note ? ": " + event.note : ""}`));
      break;
    case "retry": items.push(entry("error", `Model API: ${event.error}; retrying in ${event.wait_s} s`)); break;
    case "run_finished":
      for (const old of $("log").querySelectorAll("li.thinking")) old.remove();
      items.push(entry("control", `Run ${event.status}: ${event.reason || ""}`));
      break;
    default: break;
  }
  return items;
}

function summary(input, tool) {
  if (tool === "bash") return input.command !== undefined ? "$ " + clip(input.command, 200) : (input.restart ? "(restart)" : "");
  const parts = [];
  if (input.start_coordinate) parts.push(`from (${input.start_coordinate.join(", ")})`);
  if (input.coordinate) parts.push(`${input.start_coordinate ? "to" : "at"} (${input.coordinate.join(", ")})`);
  if (input.scroll_direction) parts.push(`${input.scroll_direction} ${input.scroll_amount || ""}`.trim());
  if (input.text !== undefined) parts.push(JSON.stringify(clip(input.text, 200)));
  if (input.duration !== undefined) parts.push(`${input.duration} s`);
  if (input.path) parts.push(input.path);
  return parts.join(" ");
}

// -- the live desktop ----------------------------------------------------------------------

async function openView(id) {
  if (!RFB) {
    try {
      RFB = (await import("/console/novnc/core/rfb.js")).default;
    } catch (error) {
      $("screen-state").textContent = "The live view needs noVNC (Debian package novnc) on the worker.";
      return;
    }
  }
  if (!current || current.id !== id || view) return;
  $("screen-state").textContent = "connecting to the desktop...";
  const socket = new WebSocket(wsUrl(`/runs/${encodeURIComponent(id)}/vnc`));
  socket.binaryType = "arraybuffer";
  view = { socket, rfb: null };
  socket.addEventListener("open", () => {
    // The token first; noVNC then takes over the open socket.
    socket.send(JSON.stringify({ token }));
    const rfb = new RFB($("screen"), socket);
    rfb.scaleViewport = true;
    view.rfb = rfb;
    setViewMode();
    rfb.addEventListener("connect", () => { viewRetry = 500; setViewMode(); });
  });
  socket.addEventListener("close", (close) => {
    if (!view || view.socket !== socket) return;
    view = null;
    $("screen").replaceChildren();
    if (!current || current.id !== id) return;
    if (close.code === 4409 || close.code === 4404) { refreshSoon(); return; }
    const wait = viewRetry;
    viewRetry = Math.min(viewRetry * 2, 5000);
    $("screen-state").textContent = `desktop disconnected${close.reason ? " (" + close.reason + ")" : ""}, reconnecting in ${(wait / 1000).toFixed(1)} s`;
    setTimeout(() => { if (current && current.id === id && !view) refreshRun(); }, wait);
  });
}

function setViewMode() {
  if (!view || !view.rfb || !current) return;
  const interactive = !!current.taken_over;
  view.rfb.viewOnly = !interactive;
  $("screen-state").textContent = interactive
    ? "You have control: your mouse and keyboard reach the desktop and are recorded. Hand back when done."
    : "Live, view only.";
  if (interactive) view.rfb.focus();
}

function closeView() {
  if (!view) return;
  const old = view;
  view = null;
  if (old.rfb) old.rfb.disconnect();
  else old.socket.close();
  $("screen").replaceChildren();
}

// -- small things --------------------------------------------------------------------------

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function clip(text, limit) {
  text = String(text);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function ms(value) {
  if (value === undefined || value === null) return "";
  return value >= 1000 ? (value / 1000).toFixed(1) + " s" : Math.round(value) + " ms";
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  login($("login-token").value.trim());
});

const saved = takeTokenFromFragment();
if (saved) login(saved);
else $("login").hidden = false;
