"""Settling: the screenshot after an action is the final frame, not a half-drawn one."""

from __future__ import annotations

import io

from PIL import Image

from support import start_recorder

GREEN = (0, 255, 0)


def test_settled_screenshot_shows_the_last_of_several_redraws(desktop, client, tmp_path):
    # The window repaints itself 4 times, 80 ms apart (within 300 ms), after each click.
    app = start_recorder(desktop, tmp_path, "--mode", "redraw", "--geometry", "400x300+300+200", "--steps", "4", "--interval-ms", "80")
    try:
        for _ in range(3):
            response = client.act({"action": "left_click", "coordinate": list(app.at(200, 150))}, screenshot=True)
            shot = Image.open(io.BytesIO(__import__("base64").b64decode(response.screenshot.data))).convert("RGB")
            # Corners (away from the big step number) show the final colour.
            for x, y in [(5, 5), (395, 5), (5, 295), (395, 295)]:
                assert shot.getpixel(app.at(x, y)) == GREEN
            assert response.screenshot.settled is True
            assert response.screenshot.settle_ms >= 240  # it waited through the redraws
            # ... and the recorder agrees it had finished before the picture was taken.
            app.wait_for(lambda r: r["type"] == "redraw_done", timeout=1)
            app.clear()
    finally:
        app.process.terminate()
        app.process.wait(10)


def test_settle_gives_up_at_the_cap_and_says_so(client, desktop, tmp_path):
    # 40 redraws 50 ms apart never leave 150 ms of quiet; a 400 ms cap must end the wait.
    app = start_recorder(desktop, tmp_path, "--mode", "redraw", "--geometry", "300x200+100+100", "--steps", "40", "--interval-ms", "50")
    try:
        response = client.act({"action": "left_click", "coordinate": list(app.at(150, 100))},
                              screenshot=True, settle={"quiet_ms": 150, "timeout_ms": 400})
        assert response.screenshot.settled is False
        assert 400 <= response.screenshot.settle_ms < 1500
    finally:
        app.process.terminate()
        app.process.wait(10)
