"""/view in a real browser (Debian's chromium, driven by playwright): the page shows the live
desktop, keeps input away from it unless asked, refuses bad tokens, keeps the token out of
URLs and logs, and comes back by itself when x11vnc restarts."""

from __future__ import annotations

import base64
import json
import time
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support import VIEWPORT

RED = (255, 0, 0)


def status(page) -> tuple[str, str]:
    return tuple(page.eval_on_selector("#status", "e => [e.dataset.state, e.textContent]"))


def wait_for_status(page, state: str, timeout: float = 15.0) -> str:
    page.wait_for_function("s => document.querySelector('#status').dataset.state === s", arg=state,
                           timeout=timeout * 1000)
    return status(page)[1]


def open_viewer(page, desktop, fragment: str) -> None:
    page.goto(f"{desktop.url}/view#{fragment}")
    wait_for_status(page, "connected")


def canvas_frame(page) -> Image.Image:
    """The canvas at the desktop's own resolution: what x11vnc sent."""
    url = page.evaluate("document.querySelector('#screen canvas').toDataURL('image/png')")
    return Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def canvas_box(page) -> dict:
    """Where the canvas is drawn in the page (CSS pixels) and the framebuffer's size."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('#screen canvas');
        const r = canvas.getBoundingClientRect();
        return {left: r.left, top: r.top, width: r.width, height: r.height, fb_width: canvas.width, fb_height: canvas.height};
    }""")


def page_point(box: dict, x: int, y: int) -> tuple[float, float]:
    """The page position over the centre of desktop pixel (x, y) in the scaled canvas."""
    return (box["left"] + (x + 0.5) * box["width"] / box["fb_width"],
            box["top"] + (y + 0.5) * box["height"] / box["fb_height"])


def differing_fraction(a: Image.Image, b: Image.Image, threshold: int = 48) -> float:
    difference = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > threshold else 0)
    return difference.histogram()[255] / (a.width * a.height)


def near(colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(c - e) <= tolerance for c, e in zip(colour, expected))


def wait_until_canvas_shows_desktop(page, client, recorder, tmp_path: Path, timeout: float = 10.0) -> Image.Image:
    """Poll until the canvas matches a screenshot from the API, the recorder's red corner
    square included; on timeout keep both images for a look and fail."""
    deadline = time.monotonic() + timeout
    x0, y0 = recorder.origin
    while True:
        shot = Image.open(BytesIO(client.screenshot().data)).convert("RGB")
        try:
            frame = canvas_frame(page)
        except Exception:  # between two connections there is no canvas for a moment
            frame = None
        if frame is not None and frame.size == shot.size:
            square_ok = all(near(frame.getpixel((x0 + dx, y0 + dy)), RED) for dx in (3, 20, 36) for dy in (3, 20, 36))
            fraction = differing_fraction(frame, shot)
            if square_ok and fraction < 0.005:
                return frame
        if time.monotonic() > deadline:
            shot.save(tmp_path / "api.png")
            if frame is not None:
                frame.save(tmp_path / "canvas.png")
            raise AssertionError(f"the canvas did not show the desktop within {timeout}s (images in {tmp_path})")
        time.sleep(0.2)


def test_viewer_shows_the_desktop_scaled_to_the_window(desktop, client, recorder, page, tmp_path):
    open_viewer(page, desktop, f"token={desktop.token}")
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    box = canvas_box(page)
    assert (box["fb_width"], box["fb_height"]) == (1280, 800)
    # Scaled to fit the window, aspect kept.
    assert box["width"] <= VIEWPORT["width"] and box["height"] <= VIEWPORT["height"]
    assert max(box["width"], box["height"]) >= 0.9 * min(VIEWPORT["width"], VIEWPORT["height"])
    assert abs(box["width"] / box["height"] - 1280 / 800) < 0.01
    # What a person sees: the red square where the scaled desktop has it.
    seen = Image.open(BytesIO(page.screenshot())).convert("RGB")
    x, y = page_point(box, recorder.origin[0] + 20, recorder.origin[1] + 20)
    assert near(seen.getpixel((int(x), int(y))), RED)
    x, y = page_point(box, recorder.origin[0] + 60, recorder.origin[1] + 60)
    assert not near(seen.getpixel((int(x), int(y))), RED)


def test_view_only_keeps_clicks_away_and_take_over_lets_them_through(desktop, client, recorder, page, tmp_path):
    open_viewer(page, desktop, f"token={desktop.token}")
    assert "view only" in status(page)[1]
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    target = recorder.at(300, 200)
    page.mouse.click(*page_point(canvas_box(page), *target))
    time.sleep(1.0)
    assert recorder.records("press") == []

    page.click("#toggle")
    assert "interactive" in wait_for_status(page, "connected")
    assert page.url.endswith("/view#interactive=1")
    page.mouse.click(*page_point(canvas_box(page), *target))
    press = recorder.wait_for(lambda r: r["type"] == "press")
    assert abs(press["x_root"] - target[0]) <= 1 and abs(press["y_root"] - target[1]) <= 1

    page.click("#toggle")  # back to view only
    assert page.url.endswith("/view")
    count = len(recorder.records("press"))
    page.mouse.click(*page_point(canvas_box(page), *recorder.at(100, 100)))
    time.sleep(1.0)
    assert len(recorder.records("press")) == count


@pytest.mark.parametrize("x, y", [(300, 200), (41, 37), (777, 461)])
def test_interactive_click_lands_on_the_desktop_pixel(desktop, client, recorder, page, tmp_path, x, y):
    open_viewer(page, desktop, f"token={desktop.token}&interactive=1")
    assert "interactive" in status(page)[1]
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    target = recorder.at(x, y)
    page.mouse.click(*page_point(canvas_box(page), *target))
    press = recorder.wait_for(lambda r: r["type"] == "press")
    release = recorder.wait_for(lambda r: r["type"] == "release")
    assert press["button"] == 1 and release["button"] == 1
    assert abs(press["x_root"] - target[0]) <= 1 and abs(press["y_root"] - target[1]) <= 1, (press, target)


def test_interactive_keys_reach_the_desktop(desktop, client, recorder, page, tmp_path):
    open_viewer(page, desktop, f"token={desktop.token}&interactive=1")
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    page.mouse.click(*page_point(canvas_box(page), *recorder.at(200, 200)))  # focuses the canvas
    recorder.wait_for(lambda r: r["type"] == "release")
    page.keyboard.press("q")
    assert recorder.wait_for(lambda r: r["type"] == "key_press")["keysym"] == "q"


def test_no_token_and_a_wrong_token_are_refused_by_the_page(desktop, browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        served = page.goto(f"{desktop.url}/view")
        assert served.headers["content-security-policy"] == "frame-ancestors 'none'"  # no framing it to trick a click
        assert "/view#token=" in wait_for_status(page, "no-token")
        page.goto(f"{desktop.url}/view#token=not-the-token")
        page.reload()  # the fragment alone does not reload the page
        assert "refused" in wait_for_status(page, "refused")
        assert page.query_selector("#screen canvas") is None
        assert "not-the-token" not in page.url
        time.sleep(1.5)  # and it does not keep retrying
        assert status(page)[0] == "refused"
    finally:
        context.close()


def ws_url(desktop) -> str:
    return desktop.url.replace("http://", "ws://") + "/vnc"


@pytest.mark.parametrize("first_message", [
    json.dumps({"token": "not-the-token", "interactive": True}),
    json.dumps({"interactive": True}),
    "RFB 003.008\n",
    b"RFB 003.008\n",
])
def test_a_raw_websocket_without_the_right_token_gets_4401_and_no_rfb(desktop, first_message):
    with connect(ws_url(desktop), open_timeout=10) as ws:
        ws.send(first_message)
        received = []
        with pytest.raises(ConnectionClosed):
            while True:
                received.append(ws.recv(timeout=10))
        assert received == []
        assert ws.close_code == 4401


def test_the_authorization_header_alone_does_not_open_the_bridge(desktop):
    # The token counts in the first message only: a client that sends none sees no RFB (and is
    # closed with 4401 after vnc_bridge.AUTH_TIMEOUT seconds).
    with connect(ws_url(desktop), open_timeout=10,
                 additional_headers={"Authorization": f"Bearer {desktop.token}"}) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)


def test_the_token_stays_out_of_urls_and_log_files(desktop, client, recorder, page, tmp_path):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    open_viewer(page, desktop, f"token={desktop.token}&interactive=1")
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    assert desktop.token not in page.url
    assert desktop.token not in page.evaluate("location.href")
    assert requested and not any(desktop.token in url for url in requested)
    assert f"{desktop.url.replace('http://', 'ws://')}/vnc" in requested
    page.reload()  # the token kept in sessionStorage serves a reload
    wait_for_status(page, "connected")
    assert page.url.endswith("/view#interactive=1")
    token_file = desktop.state_dir / "token"  # where the server reads it from: owner-only, on purpose
    assert token_file.stat().st_mode & 0o777 == 0o600
    for path in desktop.state_dir.rglob("*"):
        if path == token_file:
            continue
        if path.is_file() and not path.is_socket():
            assert desktop.token.encode() not in path.read_bytes(), path


def test_viewer_reconnects_after_x11vnc_restarts(desktop, client, recorder, page, tmp_path):
    open_viewer(page, desktop, f"token={desktop.token}")
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path)
    page.evaluate("""() => {
        window.seenStates = [];
        window.firstCanvas = document.querySelector('#screen canvas');
        new MutationObserver(() => window.seenStates.push(document.querySelector('#status').dataset.state))
            .observe(document.querySelector('#status'), {attributes: true});
    }""")
    output = desktop.supervisorctl("restart", "x11vnc")
    assert "started" in output, output
    restarted = time.monotonic()
    page.wait_for_function(
        "() => document.querySelector('#status').dataset.state === 'connected'"
        " && document.querySelector('#screen canvas') !== window.firstCanvas",
        timeout=10_000,
    )
    wait_until_canvas_shows_desktop(page, client, recorder, tmp_path, timeout=max(1.0, 10 - (time.monotonic() - restarted)))
    assert "reconnecting" in page.evaluate("window.seenStates")
    deadline = time.monotonic() + 30  # leave the desktop healthy for the tests that follow
    while httpx.get(desktop.url + "/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the desktop did not become healthy again"
        time.sleep(0.2)
