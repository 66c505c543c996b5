"""Who gets in: every HTTP and WebSocket route of the desktop and of the worker, enumerated
from the apps themselves (so a route added later is covered without touching this file),
refuses a missing token, a wrong one and one in the query string; tokens are compared in
constant time; CORS is closed; x11vnc and the API listen on localhost only; every desktop
process runs as one user; and after a full scripted agent run (whose bash step even reads the
desktop's token file) no secret is in any run file or desktop log.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
import signal
import socket
from pathlib import Path

import anthropic
import httpx
import pytest
from fastapi.routing import APIWebSocketRoute
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from cubicle.agent.runs import RunStore
from cubicle.agent.service import create_worker_app
from cubicle.server.app import create_app
from fake_anthropic import FakeAnthropic, message, text, tool_use
from support import Serving, free_port, wait_until

API_KEY = "sk-ant-access-" + secrets.token_hex(16)
WORKER_TOKEN = "access-worker-token-" + secrets.token_hex(12)
MODEL = "claude-haiku-4-5"
EVIL = "http://evil.example"

# The only routes served without a token, and why they may be: pages and their script files
# that hold no data (what they show is fetched with the token), and the health probe.
DESKTOP_PUBLIC = {"/health", "/docs", "/view", "/docs/static", "/view/novnc", "/view/static"}
WORKER_PUBLIC = {"/health", "/", "/console", "/console/novnc"}


# -- enumerating routes -------------------------------------------------------------------------


def desktop_app(display: str, vnc_port: int = 9):
    return create_app("enumeration-token-" + "e" * 20, display, vnc_port=vnc_port)  # connects to X only when used


def worker_app(tmp: Path):
    return create_worker_app(WORKER_TOKEN, RunStore(tmp), default_desktop="http://127.0.0.1:9")


def flat_routes(routes, prefix: str = ""):
    """(path, route) of every route, routers included (FastAPI includes them lazily, as
    one entry of app.routes each). A kind of route this does not know fails the test."""
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            yield from flat_routes(router.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))
        elif isinstance(route, (Mount, Route, WebSocketRoute, APIWebSocketRoute)):
            yield prefix + route.path, route
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")


def http_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route; a mount counts as a file inside it."""
    found = []
    for path, route in flat_routes(app.routes):
        if isinstance(route, Mount):
            found.append(("GET", path + "/x.js"))
        elif isinstance(route, Route):
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def websocket_routes(app) -> list[str]:
    return [path for path, route in flat_routes(app.routes) if isinstance(route, (APIWebSocketRoute, WebSocketRoute))]


def concrete(path: str, run_id: str = "1") -> str:
    path = path.replace("{run_id}", run_id)
    return re.sub(r"\{[^}]+\}", "1", path)


def public_part(path: str, public: set[str]) -> bool:
    return path in public or any(path.startswith(prefix + "/") for prefix in public if prefix != "/")


# -- ways of not having the token ---------------------------------------------------------------


def without_the_token(token: str) -> dict[str, dict]:
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    return {
        "no token": {},
        "wrong token": {"headers": {"Authorization": f"Bearer {wrong}"}},
        "token missing its last character": {"headers": {"Authorization": f"Bearer {token[:-1]}"}},
        "token with a character added": {"headers": {"Authorization": f"Bearer {token}x"}},
        "empty bearer": {"headers": {"Authorization": "Bearer"}},
        "token without the Bearer scheme": {"headers": {"Authorization": token}},
        "token as Basic credentials": {"headers": {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()}},
        "token in the query string": {"params": {"token": token, "access_token": token}},
        "token in a cookie": {"headers": {"Cookie": f"token={token}; access_token={token}; cubicle_console={token}"}},
        "token in another header": {"headers": {"X-Api-Key": token, "X-Token": token}},
    }


def assert_refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text[:200]}"
    assert response.json()["error"]["code"] == "unauthorized", what
    assert response.headers.get("www-authenticate") == "Bearer", what


def refused_everywhere(url: str, token: str, routes: list[tuple[str, str]], run_id: str = "1") -> int:
    checked = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path in routes:
            for how, options in without_the_token(token).items():
                # `{}` as the body: were the token not checked, this would be a 422, not a 401.
                body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                response = http.request(method, concrete(path, run_id), **options, **body)
                assert_refused(response, f"{method} {path} with {how}")
                checked += 1
    return checked


# -- the desktop ---------------------------------------------------------------------------------


def test_every_desktop_http_route_refuses_requests_without_the_token(desktop):
    app = desktop_app(desktop.display)
    routes = http_routes(app)
    public = [(m, p) for m, p in routes if public_part(p, DESKTOP_PUBLIC)]
    guarded = [(m, p) for m, p in routes if not public_part(p, DESKTOP_PUBLIC)]
    # The live server is this app: its schema lists the same guarded routes.
    schema = httpx.get(desktop.url + "/openapi.json", headers={"Authorization": f"Bearer {desktop.token}"}, timeout=30).json()
    listed = {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}
    assert listed - {("GET", "/health")} <= set(guarded)
    assert {("POST", "/actions"), ("POST", "/shell/run"), ("PUT", "/files"), ("GET", "/openapi.json")} <= set(guarded)
    assert {p for _, p in public} <= {p for p in DESKTOP_PUBLIC} | {p + "/x.js" for p in DESKTOP_PUBLIC}
    assert refused_everywhere(desktop.url, desktop.token, guarded) == len(guarded) * len(without_the_token(desktop.token))
    # And the public ones give nothing away: no token, no screen, no schema.
    with httpx.Client(base_url=desktop.url, timeout=30) as http:
        for method, path in public:
            response = http.request(method, path)
            assert desktop.token not in response.text
            assert response.headers.get("content-type", "").split(";")[0] not in ("image/png", "image/jpeg", "image/webp")


def websocket_refusal(url: str, first_message: str | None = None, **options) -> str:
    """How a WebSocket was refused: 'http 401' at the handshake, or 'close 4401' before any
    data. Anything else (a message, another close code) fails the test."""
    try:
        with connect(url, open_timeout=10, close_timeout=5, **options) as ws:
            if first_message is not None:
                ws.send(first_message)
            try:
                data = ws.recv(timeout=15)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None, f"{url}: closed without a code"
                return f"close {closed.rcvd.code}"
            raise AssertionError(f"{url}: got data without the token: {str(data)[:100]!r}")
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


def websocket_attempts(token: str) -> dict[str, tuple[str | None, dict]]:
    """A way in without the right token -> (first message, connect options)."""
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    no_token = json.dumps({"interactive": True, "hello": "no token here"})
    return {
        "no token": (no_token, {}),
        "wrong header": (no_token, {"additional_headers": {"Authorization": f"Bearer {wrong}"}}),
        "wrong first message": (json.dumps({"token": wrong, "interactive": True}), {}),
        "token as a number": (json.dumps({"token": 12345678}), {}),
        "first message not JSON": ("token=" + token, {}),
        "wrong subprotocol": (no_token, {"subprotocols": ["cubicle.events", f"bearer.{wrong}"]}),
        "token in the query string": (no_token, {"query": f"?token={token}&access_token={token}"}),
        "token in a cookie": (no_token, {"additional_headers": {"Cookie": f"token={token}; cubicle_console={token}"}}),
    }


def assert_websockets_refused(base: str, token: str, paths: list[str], run_id: str) -> int:
    checked = 0
    for path in paths:
        for how, (first, options) in websocket_attempts(token).items():
            query = options.pop("query", "")
            outcome = websocket_refusal(base + concrete(path, run_id) + query, first, **options)
            assert outcome in ("http 401", "http 403", "close 4401"), f"WS {path} with {how}: {outcome}"
            checked += 1
    return checked


def test_the_desktop_websockets_refuse_without_the_token(desktop):
    paths = websocket_routes(desktop_app(desktop.display))
    assert "/vnc" in paths
    ws = desktop.url.replace("http://", "ws://")
    assert assert_websockets_refused(ws, desktop.token, paths, "1") == len(paths) * len(websocket_attempts(desktop.token))


# -- the worker ----------------------------------------------------------------------------------


@pytest.fixture
def scripted_run(desktop, recorder, tmp_path):
    """A worker that has carried out a whole scripted run on the desktop: a click, typing, a
    bash step that reads the desktop's token file and the environment, the editor viewing
    that file, and a model that then repeats the token in its text."""
    x, y = recorder.at(60, 60)
    token_file = Path(desktop.state_dir) / "token"
    api = FakeAnthropic([
        lambda r: message(text("Clicking."), tool_use("computer", {"action": "left_click", "coordinate": [x, y]})),
        lambda r: message(tool_use("computer", {"action": "type", "text": "secret-free text"})),
        lambda r: message(tool_use("bash", {"command": 'cat "$CUBICLE_TOKEN_FILE"; echo; env | sort; echo "key=$ANTHROPIC_API_KEY"'})),
        lambda r: message(tool_use("str_replace_based_edit_tool", {"command": "view", "path": str(token_file)})),
        lambda r: message(text(f"I found the token {desktop.token} and the key {API_KEY} and {WORKER_TOKEN}; done.")),
    ])
    runs = tmp_path / "runs"
    app = create_worker_app(
        WORKER_TOKEN, RunStore(runs),
        anthropic_factory=lambda: anthropic.Anthropic(api_key=API_KEY, base_url=api.url, max_retries=0),
        default_desktop=desktop.url,
    )
    serving = Serving(app)
    url = f"http://127.0.0.1:{serving.port}"
    headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    seen: list[str] = []
    try:
        created = httpx.post(url + "/runs", headers=headers, timeout=60, json={
            "task": "Click, type, and look around.", "model": MODEL, "desktop": desktop.url, "desktop_token": desktop.token})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def ended():
            shown = httpx.get(url + f"/runs/{run_id}", headers=headers, timeout=60)
            seen.append(shown.text)
            return not shown.json()["active"]

        wait_until(ended, 60, "the scripted run to end")
        shown = httpx.get(url + f"/runs/{run_id}", headers=headers, timeout=60).json()
        assert api.failure is None, api.failure
        assert shown["status"] == "finished", shown["status"]
        assert [e["type"] for e in shown["events"]].count("result") == 4
        replay = httpx.get(url + f"/runs/{run_id}/replay", headers=headers, timeout=60)  # written into the run folder
        assert replay.status_code == 200
        seen.append(replay.text)
        yield url, run_id, runs, app, seen, api
    finally:
        serving.stop()
        api.close()


def test_every_worker_route_refuses_requests_without_the_token(scripted_run):
    url, run_id, _, app, _, _ = scripted_run
    routes = http_routes(app)
    public = [(m, p) for m, p in routes if public_part(p, WORKER_PUBLIC)]
    guarded = [(m, p) for m, p in routes if not public_part(p, WORKER_PUBLIC)]
    assert {("POST", "/runs"), ("GET", "/runs/{run_id}"), ("GET", "/openapi.json")} <= set(guarded)
    assert {p for _, p in public} <= WORKER_PUBLIC | {p + "/x.js" for p in WORKER_PUBLIC}
    # A real run id: what refuses is the token check, not a missing run.
    refused_everywhere(url, WORKER_TOKEN, guarded, run_id)
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path in public:
            assert WORKER_TOKEN not in http.request(method, path).text


def test_the_console_cookie_opens_images_and_replays_only(scripted_run):
    url, run_id, runs, app, _, _ = scripted_run
    with httpx.Client(base_url=url, timeout=30) as http:
        session = http.post("/session", headers={"Authorization": f"Bearer {WORKER_TOKEN}"})
        assert session.status_code == 204
        cookie = session.cookies.get("cubicle_console")
        assert cookie and WORKER_TOKEN not in cookie
    image = min((runs / run_id / "images").iterdir()).name
    with httpx.Client(base_url=url, timeout=30, headers={"Cookie": f"cubicle_console={cookie}"}) as http:
        assert http.get(f"/runs/{run_id}/images/{image}").status_code == 200  # what the cookie is for
        for method, path in http_routes(app):
            if public_part(path, WORKER_PUBLIC) or (method == "GET" and re.fullmatch(r"/runs/\{run_id\}/(images/\{name\}|replay)", path)):
                continue
            assert_refused(http.request(method, concrete(path, run_id), json={} if method == "POST" else None),
                           f"{method} {path} with the console cookie")
    with httpx.Client(base_url=url, timeout=30, headers={"Cookie": f"cubicle_console={cookie[:-1]}0"}) as http:
        assert_refused(http.get(f"/runs/{run_id}/images/{image}"), "an image with a wrong cookie")
        assert_refused(http.get(f"/runs/{run_id}/replay"), "the replay with a wrong cookie")


def test_the_worker_websockets_refuse_without_the_token(scripted_run):
    url, run_id, _, app, _, _ = scripted_run
    paths = websocket_routes(app)
    assert "/runs/{run_id}/events" in paths
    ws = url.replace("http://", "ws://")
    assert assert_websockets_refused(ws, WORKER_TOKEN, paths, run_id) == len(paths) * len(websocket_attempts(WORKER_TOKEN))
    # The right token does get in (so the refusals above are about the token): the whole run.
    received = []
    authorized = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    with connect(ws + f"/runs/{run_id}/events", additional_headers=authorized, open_timeout=10) as events, \
            pytest.raises(ConnectionClosed) as closed:
        while True:
            received.append(json.loads(events.recv(timeout=10))["type"])
    assert received[0] == "run_started" and received[-1] == "run_finished" and closed.value.rcvd.code == 1000


def test_no_secret_reaches_a_run_file_or_a_desktop_log(scripted_run, desktop):
    _, _, runs, _, seen, _ = scripted_run
    secrets_ = {"desktop token": desktop.token, "worker token": WORKER_TOKEN, "Anthropic key": API_KEY}
    files = [path for path in runs.rglob("*") if path.is_file()]
    assert any(path.name == "events.jsonl" for path in files) and any(path.suffix == ".html" for path in files)
    state = Path(desktop.state_dir)
    token_file = state / "token"
    # Its logs and output: everything in the state folder but the token file and the desktop
    # user's home (which holds what the apps and other tests wrote, not logs).
    logs = [path for path in state.rglob("*") if path.is_file() and path != token_file and "home" not in path.relative_to(state).parts[:1]]
    assert any(path.name == "server.log" for path in logs) and any(path.name == "supervisord.log" for path in logs)
    # The bash step really read the token: the run holds its redacted trace.
    events = "\n".join(path.read_text() for path in files if path.name == "events.jsonl")
    assert "[redacted]" in events and "CUBICLE_TOKEN_FILE" in events
    for path in files + logs:
        data = path.read_bytes()
        for name, value in secrets_.items():
            assert value.encode() not in data, f"the {name} is in {path}"
    for body in seen:
        for name, value in secrets_.items():
            assert value not in body, f"the {name} was in an answer of the worker"
    # The token file itself is the desktop user's alone.
    assert token_file.read_text().strip() == desktop.token
    assert token_file.stat().st_mode & 0o077 == 0


# -- constant-time comparison ---------------------------------------------------------------------


class Spy:
    """Stands in for hmac.compare_digest and answers what the test says: if the routes' access
    follows the spy rather than the truth, the decision is made by compare_digest alone."""

    def __init__(self, answer: bool):
        self.answer = answer
        self.calls: list[tuple] = []

    def __call__(self, a, b):
        self.calls.append((a, b))
        return self.answer


@pytest.fixture
def compare_digest(monkeypatch):
    def install(answer: bool) -> Spy:
        spy = Spy(answer)
        monkeypatch.setattr(hmac, "compare_digest", spy)
        monkeypatch.setattr(secrets, "compare_digest", spy)
        return spy
    return install


def test_tokens_are_compared_with_compare_digest_alone(desktop, compare_digest, tmp_path):
    token = "the-right-token-" + "r" * 20
    desktop_client = TestClient(create_app(token, desktop.display, vnc_port=free_port()))
    worker_client = TestClient(create_worker_app(token, RunStore(tmp_path)))
    for client, path in ((desktop_client, "/openapi.json"), (worker_client, "/runs")):
        yes = compare_digest(True)
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 200
        assert any(token.encode() in call and b"wrong" in call for call in yes.calls), yes.calls
        no = compare_digest(False)
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert no.calls
    # The viewer's WebSocket too: a wrong token let in reaches for x11vnc (1013, none listens
    # on that port); the right one refused is a 4401.
    for answer, given, code in ((True, "wrong", 1013), (False, token, 4401)):
        spy = compare_digest(answer)
        with desktop_client.websocket_connect("/vnc") as ws:
            ws.send_text(json.dumps({"token": given}))
            closed = ws.receive()
        assert closed["type"] == "websocket.close" and closed["code"] == code, closed
        assert spy.calls


# -- CORS ----------------------------------------------------------------------------------------


def assert_cors_closed(url: str, token: str, routes: list[tuple[str, str]], run_id: str = "1") -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path in routes:
            preflight = http.options(concrete(path, run_id), headers={
                "Origin": EVIL, "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type"})
            real = http.request(method if method == "GET" else "GET", concrete(path, run_id),
                                headers={"Origin": EVIL, "Authorization": f"Bearer {token}"})
            for response in (preflight, real):
                allowed = {k.lower() for k in response.headers if k.lower().startswith("access-control-")}
                assert not allowed, f"{method} {path}: {allowed}"


def test_cors_is_closed(desktop, scripted_run):
    assert_cors_closed(desktop.url, desktop.token, [r for r in http_routes(desktop_app(desktop.display)) if r[0] == "GET"])
    url, run_id, _, app, _, _ = scripted_run
    assert_cors_closed(url, WORKER_TOKEN, [r for r in http_routes(app) if r[0] == "GET"], run_id)


# -- listening sockets and users ------------------------------------------------------------------


def listeners(port: int) -> list[str]:
    """The local addresses of TCP sockets listening on this port (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
                found.append(socket.inet_ntop(family, raw))
    return found


def test_vnc_and_the_api_listen_on_localhost_only(desktop):
    for port in (desktop.vnc_port, int(desktop.url.rsplit(":", 1)[1])):
        addresses = listeners(port)
        assert addresses, f"nothing listens on {port}"
        assert set(addresses) <= {"127.0.0.1", "::1"}, (port, addresses)
    # Xvfb runs with -nolisten tcp: no X port at all.
    assert listeners(6000 + int(desktop.display.lstrip(":"))) == []


def process_table() -> dict[int, dict]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        table[int(entry)] = {
            "name": fields["Name"].strip(), "ppid": int(fields["PPid"]),
            "uids": tuple(int(v) for v in fields["Uid"].split()), "gids": tuple(int(v) for v in fields["Gid"].split()),
        }
    return table


def descendants(table: dict[int, dict], root: int) -> dict[int, dict]:
    found, frontier = {}, {root}
    while frontier:
        frontier = {pid for pid, info in table.items() if info["ppid"] in frontier and pid not in found}
        found.update({pid: table[pid] for pid in frontier})
    return found


def test_the_server_and_the_apps_run_as_the_desktop_user(desktop, client):
    launched = client.launch(["sleep", "120"], wait_for_window=False)
    try:
        shell_uid = client.shell("id -u && id -g", timeout=10).output.split()
        table = process_table()
        desktop_processes = descendants(table, desktop.process.pid)
        names = {info["name"] for info in desktop_processes.values()}
        assert {"Xvfb", "openbox", "tint2", "x11vnc", "bash", "sleep"} <= names, names
        server = int(desktop.supervisorctl("pid", "server").strip())
        assert server in desktop_processes and launched.pid in desktop_processes
        user = table[server]["uids"][0], table[server]["gids"][0]
        assert user == (os.getuid(), os.getgid())  # the user who started the desktop
        assert shell_uid == [str(user[0]), str(user[1])]
        for pid, info in desktop_processes.items():
            # Real, effective, saved and file-system ids: no process of the desktop is anyone else.
            assert set(info["uids"]) == {user[0]} and set(info["gids"]) == {user[1]}, (pid, info)
    finally:
        os.kill(launched.pid, signal.SIGTERM)
