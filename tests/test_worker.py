"""The agent worker service (`cubicle agent serve`) over real HTTP and WebSockets: runs are
carried out on the real desktop, the real anthropic SDK talks to the scripted Messages API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from cubicle.agent.loop import STOPPED_TEXT, TAKEN_OVER_TEXT
from cubicle.agent.policy import Policy
from cubicle.agent.runs import RunStore
from cubicle.agent.service import create_worker_app
from fake_anthropic import FakeAnthropic, message, text, tool_results, tool_use
from support import Serving, free_port, wait_until

API_KEY = "sk-ant-test-" + "w" * 24
WORKER_TOKEN = "worker-token-" + os.urandom(8).hex()
MODEL = "claude-haiku-4-5"
HOLD_RM = "[[hold]]\ntool = \"bash\"\ncommand = 'rm\\s+-rf'\nreason = \"recursive delete\"\n"


@dataclass
class Worker:
    url: str
    token: str
    runs_dir: Path
    api: FakeAnthropic
    desktop: Any
    seen: list[str] = field(default_factory=list)  # every response body, to look for secrets

    def request(self, method: str, path: str, token: str | None = None, headers: dict | None = None, **options) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        response = httpx.request(method, self.url + path, headers=headers, timeout=60, **options)
        self.seen.append(response.text)
        return response

    def start(self, task: str = "Do the task.", **fields) -> dict:
        body = {"task": task, "model": MODEL, "desktop": self.desktop.url, "desktop_token": self.desktop.token, **fields}
        response = self.request("POST", "/runs", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def run(self, run_id: str, events: bool = True) -> dict:
        response = self.request("GET", f"/runs/{run_id}" + ("" if events else "?events=false"))
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, run_id: str, predicate, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.run(run_id)
            if predicate(shown):
                return shown
            assert time.monotonic() < deadline, f"run {run_id} never got there: {shown['status']}, {[e['type'] for e in shown['events']]}"
            time.sleep(0.05)

    def wait_until_ended(self, run_id: str, timeout: float = 60.0) -> dict:
        return self.wait_for(run_id, lambda shown: not shown["active"], timeout)

    def socket(self, run_id: str, **options):
        return connect(self.url.replace("http://", "ws://") + f"/runs/{run_id}/events", open_timeout=10, **options)


def gated(gate: threading.Event, reply: dict):
    """A turn that answers only once the test opens the gate (the model "thinks" till then)."""
    def turn(request):
        assert gate.wait(30), "the test never opened the gate"
        return reply
    return turn


@pytest.fixture
def worker(desktop, tmp_path):
    """start(turns, policy=None) -> a Worker serving runs against the scripted model."""
    started: list[tuple[Serving, FakeAnthropic]] = []

    def start(turns, policy: str | None = None, runs_dir: Path | None = None) -> Worker:
        api = FakeAnthropic(turns)
        runs = runs_dir or tmp_path / "runs"
        app = create_worker_app(
            WORKER_TOKEN, RunStore(runs),
            anthropic_factory=lambda: anthropic.Anthropic(api_key=API_KEY, base_url=api.url, max_retries=0),
            policy=Policy.from_text(policy) if policy else None, default_desktop=desktop.url,
        )
        serving = Serving(app)
        started.append((serving, api))
        return Worker(f"http://127.0.0.1:{serving.port}", WORKER_TOKEN, runs, api, desktop)

    yield start
    for serving, api in started:
        serving.stop()
        api.close()


def assert_no_secrets(worker: Worker, *secrets: str) -> None:
    for body in worker.seen:
        for secret in secrets:
            assert secret not in body
    for path in worker.runs_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret[:12]}... found in {path}"


def disk_run(runs_dir: Path, status: str, task: str = "from an earlier worker"):
    run = RunStore(runs_dir).create_run(task, MODEL, "computer_20250124", "http://127.0.0.1:9", status=status)
    run.append("run_started", task=task)
    if status not in ("running", "paused"):
        run.append("run_finished", status=status, reason="done")
    run.close()
    return run


# -- running tasks ------------------------------------------------------------------------------


def test_a_run_clicks_and_types_on_the_real_desktop(worker, recorder):
    x, y = recorder.at(120, 90)
    w = worker([
        lambda r: message(text("Clicking the canvas."), tool_use("computer", {"action": "left_click", "coordinate": [x, y]})),
        lambda r: message(tool_use("computer", {"action": "type", "text": "hi worker"})),
        lambda r: message(text("Typed it.")),
    ])
    created = w.start("Click the canvas and type a greeting.")
    assert created["status"] == "running" and created["active"] is True
    assert created["model"] == MODEL and created["desktop"] == w.desktop.url
    assert "desktop_token" not in created

    shown = w.wait_until_ended(created["id"])
    assert w.api.failure is None, w.api.failure
    assert shown["status"] == "finished" and shown["stop_reason"] == "the model ended its turn"
    assert shown["totals"]["steps"] == 3 and shown["pending"] == []
    kinds = [e["type"] for e in shown["events"]]
    assert kinds == ["run_started", "request", "response", "action", "result", "request", "response", "action",
                     "result", "request", "response", "run_finished"]
    assert [e["seq"] for e in shown["events"]] == list(range(len(kinds)))

    # It really happened on the desktop.
    recorder.wait_for(lambda r: r["type"] == "key_press" and r["char"] == "r" and r["keysym"] == "r")
    assert [(p["x_root"], p["y_root"]) for p in recorder.records("press")] == [(x, y)]
    assert "".join(r["char"] for r in recorder.records("key_press")) == "hi worker"

    listed = w.request("GET", "/runs").json()["runs"]
    assert [run["id"] for run in listed] == [created["id"]] and listed[0]["status"] == "finished"
    assert "events" not in w.run(created["id"], events=False)
    assert API_KEY in json.dumps(w.api.headers[0])  # the key went to the model API, and nowhere else:
    assert_no_secrets(w, API_KEY, w.desktop.token)


def test_events_stream_live_over_a_websocket_until_the_run_ends(worker):
    gate = threading.Event()
    w = worker([gated(gate, message(tool_use("computer", {"action": "cursor_position"}))), lambda r: message(text("done"))])
    run_id = w.start()["id"]
    received = []
    with w.socket(run_id, subprotocols=["cubicle.events", f"bearer.{w.token}"]) as socket:
        assert socket.subprotocol == "cubicle.events"
        received.append(json.loads(socket.recv(timeout=10)))
        assert received[0]["type"] == "run_started"
        gate.set()  # now the run goes on while we watch
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(socket.recv(timeout=30)))
    assert closed.value.rcvd.code == 1000
    on_disk = w.run(run_id)["events"]
    stored = [e for e in received if e["type"] != "thinking"]  # "thinking" is live only, never stored
    assert stored == on_disk
    assert [e["type"] for e in stored] == ["run_started", "request", "response", "action", "result", "request",
                                           "response", "run_finished"]
    assert {"type": "thinking", "step": 2} in received

    # A late viewer gets the whole run, then the socket closes normally.
    with w.socket(run_id, additional_headers={"Authorization": f"Bearer {w.token}"}) as late:
        replay = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                replay.append(json.loads(late.recv(timeout=10)))
        assert replay == on_disk and closed.value.rcvd.code == 1000


def test_pause_holds_the_run_at_its_next_step_until_resumed(worker):
    gate = threading.Event()
    w = worker([gated(gate, message(tool_use("computer", {"action": "cursor_position"}))), lambda r: message(text("done"))])
    run_id = w.start()["id"]
    wait_until(lambda: len(w.api.requests) == 1, what="the first model request")
    paused = w.request("POST", f"/runs/{run_id}/pause")
    assert paused.status_code == 202 and paused.json()["pause_requested"] is True
    gate.set()
    w.wait_for(run_id, lambda shown: shown["status"] == "paused")
    time.sleep(1.0)
    assert len(w.api.requests) == 1  # nothing reaches the model while paused
    assert w.run(run_id)["status"] == "paused"
    resumed = w.request("POST", f"/runs/{run_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["pause_requested"] is False
    shown = w.wait_until_ended(run_id)
    assert shown["status"] == "finished" and len(w.api.requests) == 2
    kinds = [e["type"] for e in shown["events"]]
    assert kinds[kinds.index("result"):] == ["result", "paused", "resumed", "request", "response", "run_finished"]


def test_stop_mid_run_answers_the_pending_tool_use_and_ends_the_run(worker):
    gate = threading.Event()
    move = tool_use("computer", {"action": "mouse_move", "coordinate": [300, 200]})
    w = worker([gated(gate, message(move))])
    run_id = w.start()["id"]
    wait_until(lambda: len(w.api.requests) == 1, what="the first model request")
    stopping = w.request("POST", f"/runs/{run_id}/stop")
    assert stopping.status_code == 202 and stopping.json()["stop_requested"] is True
    gate.set()
    shown = w.wait_until_ended(run_id)
    assert shown["status"] == "stopped" and shown["stop_reason"] == "stopped by a human"
    assert not any(e["type"] == "action" for e in shown["events"])  # the move never ran
    (answer,) = [e for e in shown["events"] if e["type"] == "result"]
    assert answer["tool_use_id"] == move["id"] and answer["is_error"] is True and answer["text"] == STOPPED_TEXT
    for verb, body in (("stop", None), ("pause", None), ("resume", None), ("message", {"text": "hello?"})):
        refused = w.request("POST", f"/runs/{run_id}/{verb}", json=body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "run_not_active"
        assert f"Run {run_id} is stopped" in refused.json()["error"]["message"]


def test_a_message_reaches_the_model_at_the_next_step(worker):
    gate = threading.Event()
    w = worker([gated(gate, message(tool_use("computer", {"action": "cursor_position"}))), lambda r: message(text("ok"))])
    run_id = w.start()["id"]
    wait_until(lambda: len(w.api.requests) == 1, what="the first model request")
    sent = w.request("POST", f"/runs/{run_id}/message", json={"text": "Please use the terminal instead."})
    assert sent.status_code == 202 and sent.json() == {"id": run_id, "queued": True}
    gate.set()
    shown = w.wait_until_ended(run_id)
    assert shown["status"] == "finished"
    last_user = w.api.requests[1]["messages"][-1]["content"]
    said_to_model = [block["text"] for block in last_user if block["type"] == "text"]
    assert said_to_model == ["Message from the human watching: Please use the terminal instead."]
    assert tool_results(w.api.requests[1])  # beside the tool's result, in the same user turn
    (said,) = [e for e in shown["events"] if e["type"] == "message"]
    assert said["text"] == "Please use the terminal instead." and said["actor"] == "human"


def test_a_held_command_waits_for_a_human_who_denies_it(worker, tmp_path):
    victim = tmp_path / "keep-me"
    victim.mkdir()
    (victim / "file").write_text("precious")
    delete = tool_use("bash", {"command": f"rm -rf {victim}"})
    w = worker([lambda r: message(delete), lambda r: message(text("Understood, leaving it."))], policy=HOLD_RM)
    run_id = w.start("Clean up.")["id"]
    shown = w.wait_for(run_id, lambda s: s["pending"])
    (pending,) = shown["pending"]
    assert pending["approval_id"] == delete["id"] and pending["tool"] == "bash"
    assert pending["reason"] == "recursive delete" and pending["input"] == {"command": f"rm -rf {victim}"}
    assert shown["status"] == "running" and shown["events"][-1]["type"] == "approval_requested"
    time.sleep(0.5)
    assert len(w.api.requests) == 1 and victim.exists()  # nothing moves while it waits

    unknown = w.request("POST", f"/runs/{run_id}/approvals/toolu_nope", json={"approve": True})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "approval_not_found"
    assert delete["id"] in unknown.json()["error"]["message"]
    not_bool = w.request("POST", f"/runs/{run_id}/approvals/{delete['id']}", json={"approve": "yes"})
    assert not_bool.status_code == 422
    denied = w.request("POST", f"/runs/{run_id}/approvals/{delete['id']}", json={"approve": False, "note": "not on my watch"})
    assert denied.status_code == 200 and denied.json()["approved"] is False

    shown = w.wait_until_ended(run_id)
    assert shown["status"] == "finished" and shown["pending"] == []
    (result,) = tool_results(w.api.requests[1])
    assert result["is_error"] is True
    assert result["content"] == [{"type": "text", "text": "A human denied this action (recursive delete): not on my watch"}]
    assert (victim / "file").read_text() == "precious"
    again = w.request("POST", f"/runs/{run_id}/approvals/{delete['id']}", json={"approve": True})
    assert again.status_code == 404


def test_one_run_per_desktop_and_the_next_one_after_it(worker):
    gate = threading.Event()
    w = worker([gated(gate, message(tool_use("computer", {"action": "cursor_position"}))),
                lambda r: message(text("first done")), lambda r: message(text("second done"))])
    first = w.start("First.")["id"]
    for url in (w.desktop.url, w.desktop.url + "/"):
        busy = w.request("POST", "/runs", json={"task": "Second.", "model": MODEL, "desktop": url,
                                                "desktop_token": w.desktop.token})
        assert busy.status_code == 409
        assert busy.json() == {"error": {"code": "desktop_busy",
                                         "message": f"Desktop {w.desktop.url} is busy with run {first}; stop it or wait."}}
    gate.set()
    assert w.wait_until_ended(first)["status"] == "finished"
    second = w.start("Second.")["id"]  # the desktop URL is the worker's default here
    assert w.wait_until_ended(second)["status"] == "finished"
    assert [run["id"] for run in w.request("GET", "/runs").json()["runs"]] == [second, first]


# -- refusals -----------------------------------------------------------------------------------


def test_bad_requests_are_refused_at_once_with_clear_errors(worker):
    w = worker([])

    def start(**fields):
        body = {"task": "Anything.", "model": MODEL, "desktop": w.desktop.url, "desktop_token": w.desktop.token, **fields}
        return w.request("POST", "/runs", json={k: v for k, v in body.items() if v is not None})

    def error(response, status, code):
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"} and response.json()["error"]["code"] == code
        return response.json()["error"]["message"]

    assert "Cannot tell the family and version of model 'gpt-4o'" in error(start(model="gpt-4o"), 422, "unknown_model")
    closed = f"http://127.0.0.1:{free_port()}"
    message_ = error(start(desktop=closed), 502, "desktop_unreachable")
    assert message_.startswith(f"Cannot reach the desktop at {closed}")
    wrong = "wrong-desktop-token-" + "x" * 16
    assert "refused the token (401)" in error(start(desktop_token=wrong), 502, "desktop_unauthorized")
    assert "http:// or https:// URL" in error(start(desktop="ftp://example"), 422, "invalid_request")
    assert error(start(task=""), 422, "invalid_request").startswith("task: ")
    assert error(start(task="   "), 422, "invalid_request") == "task: must not be empty"
    assert error(start(max_steps=0), 422, "invalid_request").startswith("max_steps: ")
    assert "tool_version: " in error(start(tool_version="computer_1999"), 422, "invalid_request")
    # JSON types are taken as they are: "5" is not a number, true is not one either.
    assert error(start(max_steps="5"), 422, "invalid_request").startswith("max_steps: ")
    assert error(start(max_tokens=True), 422, "invalid_request").startswith("max_tokens: ")
    assert "'event': unknown query parameter" in error(w.request("GET", "/runs?event=false"), 422, "invalid_request")
    assert error(start(colour="blue"), 422, "invalid_request") == "colour: unknown field"
    assert error(w.request("POST", "/runs", json={"model": MODEL}), 422, "invalid_request") == "task: this field is required"
    assert error(w.request("POST", "/runs", content=b"{not json", headers={"content-type": "application/json"}),
                 400, "malformed_body")
    assert error(w.request("POST", "/runs", content=b"task=x", headers={"content-type": "text/plain"}), 415,
                 "unsupported_media_type")
    assert error(w.request("POST", "/runs", content=b"x" * (1024 * 1024 + 1), headers={"content-type": "application/json"}),
                 413, "body_too_large")
    for method, path in (("GET", "/runs/20990101-000000-abcdef"), ("GET", "/runs/.secret"),
                         ("POST", "/runs/20990101-000000-abcdef/pause")):
        assert error(w.request(method, path), 404, "run_not_found")
    assert error(w.request("GET", "/nothing-here"), 404, "not_found")
    with w.socket("20990101-000000-abcdef", subprotocols=[f"bearer.{w.token}"]) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd.code == 4404
    assert RunStore(w.runs_dir).list() == []  # nothing was started
    assert_no_secrets(w, wrong, w.desktop.token, API_KEY)


def test_take_over_and_hand_back_over_the_api(worker):
    gate = threading.Event()
    w = worker([gated(gate, message(tool_use("computer", {"action": "cursor_position"}))), lambda r: message(text("ok"))])
    run_id = w.start()["id"]
    wait_until(lambda: len(w.api.requests) == 1, what="the first model request")
    assert w.request("POST", f"/runs/{run_id}/handback").status_code == 409  # nobody has it
    taken = w.request("POST", f"/runs/{run_id}/takeover")
    assert taken.status_code == 200 and taken.json()["taken_over"] is True and taken.json()["pause_requested"] is True
    again = w.request("POST", f"/runs/{run_id}/takeover")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_taken_over"
    gate.set()
    w.wait_for(run_id, lambda shown: shown["status"] == "paused")
    resumed = w.request("POST", f"/runs/{run_id}/resume")
    assert resumed.status_code == 409 and "hand it back" in resumed.json()["error"]["message"]
    assert len(w.api.requests) == 1

    handed = w.request("POST", f"/runs/{run_id}/handback")
    assert handed.status_code == 200 and handed.json()["human_actions"] == [] and handed.json()["taken_over"] is False
    assert w.request("POST", f"/runs/{run_id}/handback").status_code == 409
    shown = w.wait_until_ended(run_id)
    assert shown["status"] == "finished"
    told = w.api.requests[1]["messages"][-1]["content"]
    assert [b["type"] for b in told] == ["tool_result", "text", "image"]
    assert told[0]["content"][0]["text"] == TAKEN_OVER_TEXT  # the cursor_position never ran
    assert "has now handed it back to you. They did not act on the desktop." in told[1]["text"]
    kinds = [e["type"] for e in shown["events"]]
    assert kinds[kinds.index("taken_over"):] == ["taken_over", "response", "result", "paused", "resumed", "handed_back",
                                                 "request", "response", "run_finished"]


def test_run_images_and_replays_need_the_token_or_the_consoles_cookie(worker):
    w = worker([lambda r: message(tool_use("computer", {"action": "mouse_move", "coordinate": [5, 5]})),
                lambda r: message(text("done"))])
    run_id = w.start()["id"]
    shown = w.wait_until_ended(run_id)
    image = next(e["image"] for e in shown["events"] if e["type"] == "result" and e.get("image"))
    with httpx.Client(base_url=w.url) as browser:
        assert browser.get(f"/runs/{run_id}/{image}").status_code == 401
        assert browser.get(f"/runs/{run_id}/replay").status_code == 401
        assert browser.post("/session").status_code == 401
        opened = browser.post("/session", headers={"Authorization": f"Bearer {w.token}"})
        assert opened.status_code == 204
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/runs" in cookie and w.token not in cookie
        fetched = browser.get(f"/runs/{run_id}/{image}")
        assert fetched.status_code == 200 and fetched.content == (w.runs_dir / run_id / image).read_bytes()
        replay = browser.get(f"/runs/{run_id}/replay")
        assert replay.status_code == 200 and image in replay.text and "mouse_move" in replay.text
        # The cookie opens nothing else, and no file outside the run's images.
        assert browser.get("/runs").status_code == 401
        assert browser.get(f"/runs/{run_id}").status_code == 401
        for name in ("..%2Frun.json", "..%2F..%2F" + run_id + "%2Frun.json", ".hidden", "missing.png"):
            assert browser.get(f"/runs/{run_id}/images/{name}").status_code in (401, 404), name
        assert browser.get(f"/runs/{run_id}/images/missing.png").status_code == 404
        browser.cookies.clear()
        forged = {"cubicle_console": "0" * 64}
        browser.cookies.update(forged)  # on the client: httpx deprecates per-request cookies
        assert browser.get(f"/runs/{run_id}/{image}").status_code == 401


def test_the_live_view_is_for_active_runs_and_needs_the_token(worker):
    w = worker([lambda r: message(text("done"))])
    run_id = w.start()["id"]
    w.wait_until_ended(run_id)
    ws = w.url.replace("http://", "ws://") + f"/runs/{run_id}/vnc"
    with connect(ws, open_timeout=10) as socket:
        socket.send(json.dumps({"token": "wrong-token"}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd.code == 4401
    with connect(ws, open_timeout=10) as socket:
        socket.send(json.dumps({"token": w.token}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd.code == 4409 and "has ended" in closed.value.rcvd.reason


def test_the_token_is_required_everywhere_but_health(worker):
    w = worker([])
    run = disk_run(w.runs_dir, "finished")
    routes = [("GET", "/runs"), ("POST", "/runs"), ("GET", f"/runs/{run.id}"), ("POST", f"/runs/{run.id}/pause"),
              ("POST", f"/runs/{run.id}/resume"), ("POST", f"/runs/{run.id}/stop"), ("POST", f"/runs/{run.id}/message"),
              ("POST", f"/runs/{run.id}/approvals/toolu_1"), ("GET", "/openapi.json")]
    for method, path in routes:
        for headers, query in (({}, ""), ({"Authorization": "Bearer wrong-token"}, ""), ({"Authorization": w.token}, ""),
                               ({}, f"?token={w.token}"), ({}, f"?access_token={w.token}")):
            response = httpx.request(method, w.url + path + query, headers=headers, json={"task": "x"})
            assert response.status_code == 401, (method, path, headers, query)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(w.url + "/health").json() == {"status": "ok"}

    events = f"/runs/{run.id}/events"
    ws = w.url.replace("http://", "ws://")
    for options in ({"additional_headers": {"Authorization": "Bearer wrong-token"}},
                    {"subprotocols": ["cubicle.events", "bearer.wrong-token"]}):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws + events, open_timeout=10, **options)
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"
    for query, first in (("", json.dumps({"token": "wrong-token"})), (f"?token={w.token}", "{}"),
                         (f"?token={w.token}", "hello")):
        with connect(ws + events + query, open_timeout=10) as socket:
            socket.send(first)
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd.code == 4401

    # The three ways in: a header, a subprotocol, the first message.
    for options, first in (({"additional_headers": {"Authorization": f"Bearer {w.token}"}}, None),
                           ({"subprotocols": [f"bearer.{w.token}"]}, None),
                           ({}, json.dumps({"token": w.token}))):
        with connect(ws + events, open_timeout=10, **options) as socket:
            if first:
                socket.send(first)
            got = [json.loads(socket.recv(timeout=10))["type"] for _ in range(2)]
            assert got == ["run_started", "run_finished"]
            if "subprotocols" in options:
                assert socket.subprotocol == f"bearer.{w.token}"


def test_runs_left_running_by_an_earlier_worker_show_as_interrupted(worker, tmp_path):
    runs_dir = tmp_path / "old-runs"
    running, paused, finished = (disk_run(runs_dir, status) for status in ("running", "paused", "finished"))
    before = {run.id: (run.folder / "run.json").read_bytes() for run in (running, paused, finished)}
    time.sleep(0.01)
    w = worker([], runs_dir=runs_dir)
    listed = {run["id"]: run for run in w.request("GET", "/runs").json()["runs"]}
    assert listed[running.id]["status"] == "interrupted" and listed[running.id]["recorded_status"] == "running"
    assert listed[paused.id]["status"] == "interrupted" and listed[paused.id]["recorded_status"] == "paused"
    assert listed[finished.id]["status"] == "finished" and "recorded_status" not in listed[finished.id]
    assert w.run(running.id)["status"] == "interrupted"
    refused = w.request("POST", f"/runs/{running.id}/resume")
    assert refused.status_code == 409 and f"Run {running.id} is interrupted" in refused.json()["error"]["message"]
    with w.socket(running.id, subprotocols=[f"bearer.{w.token}"]) as socket:  # what there is, then the end
        assert json.loads(socket.recv(timeout=10))["type"] == "run_started"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd.code == 1000
    assert {run_id: (runs_dir / run_id / "run.json").read_bytes() for run_id in before} == before  # reported, not rewritten


# -- the commands -------------------------------------------------------------------------------


class Process:
    """A command's output collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bytes | None = None):
        self.lines: list[str] = []
        self.process = subprocess.Popen(args, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if stdin is not None:
            self.process.stdin.write(stdin)
            self.process.stdin.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with self.process.stdout:  # closed at the end of the output
            for line in self.process.stdout:
                self.lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.process.terminate()
        status = self.process.wait(30)
        self.reader.join(30)
        return status


def listening(url: str) -> bool:
    try:
        return httpx.get(url + "/health").status_code == 200
    except httpx.ConnectError:
        return False


def command_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "ANTHROPIC_API_KEY")}
    return env | values


def test_cubicle_agent_serve_with_a_policy_file(desktop, tmp_path):
    victim = tmp_path / "to-delete"
    victim.mkdir()
    delete = tool_use("bash", {"command": f"rm -rf {victim}"})
    api = FakeAnthropic([lambda r: message(delete), lambda r: message(text("Deleted."))])
    policy = tmp_path / "policy.toml"
    policy.write_text(HOLD_RM)
    port, runs_dir = free_port(), tmp_path / "runs"
    env = command_env(ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=api.url, CUBICLE_DESKTOP_URL=desktop.url,
                      CUBICLE_MODEL=MODEL)
    worker = Process([sys.executable, "-m", "cubicle", "agent", "serve", "--port", str(port), "--runs-dir", str(runs_dir),
                      "--policy", str(policy)], env)
    try:
        wait_until(lambda: "generated one for this run: " in worker.output, 30, "the generated token")
        token = worker.output.split("generated one for this run: ")[1].split()[0]
        w = Worker(f"http://127.0.0.1:{port}", token, runs_dir, api, desktop)
        wait_until(lambda: listening(w.url), 30, "the worker to listen")
        assert w.request("GET", "/runs", token="not-it").status_code == 401
        created = w.request("POST", "/runs", json={"task": "Delete the folder.", "desktop_token": desktop.token})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        assert created.json()["model"] == MODEL and created.json()["desktop"] == desktop.url  # from the environment
        (pending,) = w.wait_for(run_id, lambda s: s["pending"])["pending"]
        assert pending["approval_id"] == delete["id"]
        assert w.request("POST", f"/runs/{run_id}/approvals/{delete['id']}", json={"approve": True}).status_code == 200
        shown = w.wait_until_ended(run_id)
        assert shown["status"] == "finished" and not victim.exists()
        assert [e["approved"] for e in shown["events"] if e["type"] == "approval_decided"] == [True]
    finally:
        assert worker.stop() in (0, -15)
        api.close()
    assert worker.output.count(token) == 1  # printed once, at start
    assert API_KEY not in worker.output and desktop.token not in worker.output
    assert_no_secrets(w, API_KEY, desktop.token)


def test_a_bad_policy_file_stops_the_worker_at_start(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[hold]]\ntool = "bash"\ncommand = "("\n')
    result = subprocess.run([sys.executable, "-m", "cubicle", "agent", "serve", "--port", str(free_port()), "--policy", str(bad)],
                            env=command_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bad.toml: rule 1: command is not a valid regular expression" in result.stderr


def test_cubicle_agent_run_asks_the_terminal_about_held_actions(desktop, tmp_path):
    victim = tmp_path / "keep"
    victim.mkdir()
    answers = {}

    def check(request):
        answers["result"] = tool_results(request)[0]
        return message(text("Leaving it."))

    api = FakeAnthropic([lambda r: message(tool_use("bash", {"command": f"rm -rf {victim}"})), check])
    policy = tmp_path / "policy.toml"
    policy.write_text(HOLD_RM)
    env = command_env(ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=api.url, CUBICLE_TOKEN=desktop.token)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cubicle", "agent", "run", "Delete the folder.", "--desktop", desktop.url, "--model", MODEL,
             "--runs-dir", str(tmp_path / "runs"), "--policy", str(policy)],
            env=env, input="no, keep it\n", capture_output=True, text=True, timeout=120,
        )
    finally:
        api.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "held for approval (recursive delete)" in result.stdout and f"rm -rf {victim}" in result.stdout
    assert answers["result"]["is_error"] is True
    assert answers["result"]["content"][0]["text"] == "A human denied this action (recursive delete): no, keep it"
    assert victim.exists()


def test_the_worker_imports_nothing_that_needs_x():
    # Shared and pure: cubicle.server.security (plain ASGI middleware), .openapi (the error
    # shape in the schema), and the key names
    # (cubicle.x11.keys, on python-xlib's keysym tables) that record a human's keys. Nothing
    # that opens or speaks an X connection.
    pure = ("cubicle.server", "cubicle.server.security", "cubicle.server.openapi", "cubicle.x11", "cubicle.x11.keys",
            "cubicle.x11.errors",
            "Xlib", "Xlib.X", "Xlib.XK")
    code = ("import sys, cubicle.agent.service, cubicle.cli; cubicle.cli.build_parser(); "
            "print([m for m in sys.modules if m.startswith(('cubicle.x11', 'cubicle.server', 'Xlib'))"
            f" and m not in {pure!r} and not m.startswith('Xlib.keysymdef')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=command_env(DISPLAY=""))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
