"""The API's contract: the token guards every route but /health, errors are clear JSON, and
a refused request changes nothing on the desktop."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from support import changed_outside_the_clock

ROUTES = [
    ("GET", "/screen"), ("GET", "/screenshot"), ("POST", "/actions"), ("GET", "/cursor"),
    ("GET", "/windows"), ("POST", "/windows/1/activate"), ("POST", "/windows/1/close"),
    ("POST", "/apps/launch"), ("GET", "/clipboard"), ("PUT", "/clipboard"), ("GET", "/openapi.json"),
    ("POST", "/shell/run"), ("POST", "/shell/restart"), ("GET", "/files"), ("PUT", "/files"), ("PUT", "/token"), ("GET", "/apps"),
    ("GET", "/accessibility"), ("POST", "/recording/start"), ("POST", "/recording/stop"), ("GET", "/recording"),
    ("GET", "/recording/0123456789abcdef"), ("DELETE", "/recording/0123456789abcdef"),
]


@pytest.fixture
def http(desktop):
    with httpx.Client(base_url=desktop.url, timeout=30) as client:
        yield client


def auth(desktop):
    return {"Authorization": f"Bearer {desktop.token}"}


def test_every_route_in_the_schema_is_covered_here(http, desktop):
    schema = http.get("/openapi.json", headers=auth(desktop)).json()
    listed = {(method.upper(), path.replace("{window_id}", "1").replace("{recording_id}", "0123456789abcdef"))
              for path, ops in schema["paths"].items() for method in ops}
    assert listed - {("GET", "/health")} <= set(ROUTES)


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("how", ["none", "wrong", "query", "not-bearer"])
def test_routes_refuse_without_the_right_token(http, desktop, method, path, how):
    headers, params = {}, {}
    if how == "wrong":
        headers = {"Authorization": "Bearer " + desktop.token[:-1] + "x"}
    elif how == "query":
        params = {"token": desktop.token, "access_token": desktop.token}
    elif how == "not-bearer":
        headers = {"Authorization": desktop.token}
    response = http.request(method, path, headers=headers, params=params, json={"action": "left_click"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_health_needs_no_token_and_reports_each_part(http):
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "x": True, "window_manager": True, "vnc": True, "runner": True}


def test_docs_page_is_served_but_the_schema_is_not_without_token(http):
    page = http.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert http.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    assert http.get("/openapi.json").status_code == 401


BAD = [
    ({"action": "left_click", "coordinate": [1300, 900]}, 422, "coordinates_out_of_bounds",
     "Coordinates (1300, 900) are outside display bounds (1280x800)."),
    ({"action": "left_click", "coordinate": [-1, 5]}, 422, "coordinates_out_of_bounds", "outside display bounds"),
    ({"actions": [{"action": "left_click", "coordinate": [1100, 700]}], "coordinate_space": {"width": 1024, "height": 640}},
     422, "coordinates_out_of_bounds", "Coordinates (1100, 700) are outside display bounds (1024x640)."),
    ({"action": "left_click", "coordinate": [10.5, 3]}, 422, "invalid_request", "actions[0].coordinate[0]"),
    ({"action": "left_click", "coordinates": [10, 3]}, 422, "invalid_request", "actions[0].coordinates: unknown field"),
    ({"action": "key", "text": "ctrl+Retrun"}, 422, "unknown_key", "Did you mean 'Return'"),
    ({"action": "key", "text": ""}, 422, "invalid_request", "actions[0].text"),
    ({"action": "type", "text": ""}, 422, "invalid_request", "actions[0].text"),
    ({"action": "type", "text": "x" * 20_001}, 422, "invalid_request", "at most 20000 characters"),
    ({"action": "type", "text": "ring\x07"}, 422, "invalid_text", "U+0007"),
    ({"action": "zoom", "region": [100, 100, 50, 50]}, 422, "invalid_region", "0 <= x0 < x1 <= 1280"),
    ({"action": "zoom", "region": [0, 0, 1281, 10]}, 422, "invalid_region", "0 <= x0 < x1 <= 1280"),
    ({"action": "wait", "duration": 301}, 422, "invalid_request", "less than or equal to 300"),
    ({"action": "hold_key", "text": "shift", "duration": 0}, 422, "invalid_request", "greater than 0"),
    ({"action": "scroll", "scroll_direction": "sideways"}, 422, "invalid_request", "scroll_direction"),
    ({"action": "scroll", "scroll_direction": "up", "scroll_amount": 0}, 422, "invalid_request", "scroll_amount"),
    ({"action": "fly"}, 422, "invalid_request", "does not match any of the expected tags"),
    ({"action": "mouse_move"}, 422, "invalid_request", "actions[0].coordinate: this field is required"),
    ([], 422, "invalid_request", "at least 1 item"),
]


@pytest.mark.parametrize("body,status,code,message", BAD)
def test_bad_actions_get_a_clear_error(http, desktop, body, status, code, message):
    response = http.post("/actions", json=body, headers=auth(desktop))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]


def test_malformed_and_oversized_bodies(http, desktop):
    bad_json = http.post("/actions", content=b"{not json", headers={**auth(desktop), "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "malformed_body"
    form = http.post("/actions", content=b"action=left_click", headers={**auth(desktop), "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["error"]["message"]
    huge = http.post("/actions", json={"action": "type", "text": "x" * 3_000_000}, headers=auth(desktop))
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"


def test_query_parameters_are_checked(http, desktop):
    for params, fragment in [({"format": "gif"}, "format"), ({"quality": 0}, "quality"), ({"region": "1,2,3"}, "x0,y0,x1,y1"),
                             ({"region": "10,10,5,5"}, "0 <= x0 < x1"), ({"max_width": 5}, "max_width")]:
        response = http.get("/screenshot", params=params, headers=auth(desktop))
        assert response.status_code == 422, params
        assert fragment in response.json()["error"]["message"]
    assert http.post("/windows/abc/activate", headers=auth(desktop)).status_code == 422
    assert http.get("/nowhere", headers=auth(desktop)).json()["error"]["code"] == "not_found"


def test_a_refused_batch_runs_nothing(http, desktop, client, recorder):
    before = Image.open(io.BytesIO(client.screenshot(settle=True).data)).convert("RGB")
    x, y = recorder.at(100, 100)
    batch = [
        {"action": "left_click", "coordinate": [x, y]},
        {"action": "type", "text": "should not appear"},
        {"action": "key", "text": "ctrl+nosuchkey"},
    ]
    response = http.post("/actions", json=batch, headers=auth(desktop))
    assert response.status_code == 422
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["not_executed", "not_executed", "error"]
    assert body["error"]["message"].startswith("actions[2] (key): Unknown key name 'nosuchkey'")
    time.sleep(0.5)
    assert recorder.records() == []
    after = Image.open(io.BytesIO(client.screenshot().data)).convert("RGB")
    assert changed_outside_the_clock(before, after) is None


def test_batch_runs_in_order_and_reports_each_action(client, recorder):
    x, y = recorder.at(10, 10)
    response = client.act(
        {"action": "left_click", "coordinate": [x, y]},
        {"action": "type", "text": "ab"},
        {"action": "wait", "duration": 0.1},
        {"action": "cursor_position"},
    )
    assert [(r.index, r.action, r.status) for r in response.results] == [
        (0, "left_click", "ok"), (1, "type", "ok"), (2, "wait", "ok"), (3, "cursor_position", "ok")]
    assert response.results[2].duration_ms >= 100
    recorder.wait_for(lambda r: r["type"] == "key_release" and r["keysym"] == "b")
    kinds = [r["type"] for r in recorder.records() if r["type"] in ("press", "key_press")]
    assert kinds == ["press", "key_press", "key_press"]


def test_concurrent_batches_do_not_interleave(desktop, recorder):
    import threading

    results = []

    def send(letter):
        with httpx.Client(base_url=desktop.url, headers=auth(desktop), timeout=30) as http:
            results.append(http.post("/actions", json={"action": "type", "text": letter * 30}).status_code)

    threads = [threading.Thread(target=send, args=(letter,)) for letter in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 4
    recorder.wait_for(lambda r: len([k for k in recorder.records("key_press")]) >= 120)
    typed = "".join(k["char"] for k in recorder.records("key_press"))
    # Four runs of 30 identical letters, each run whole.
    runs = [typed[i:i + 30] for i in range(0, 120, 30)]
    assert sorted(run[0] for run in runs) == list("abcd")
    assert all(len(set(run)) == 1 for run in runs), typed


def test_clipboard_round_trip(client):
    text = "clipboard ✓ 中文 😀\nsecond line"
    client.set_clipboard(text)
    assert client.get_clipboard() == text


def test_an_oversized_streamed_body_is_a_413_too(http, desktop):
    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for _ in range(40):
            yield b"x" * 100_000

    response = http.post("/actions", content=chunks(), headers={**auth(desktop), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
