"""The worker's console (GET /) in a real browser (Debian's chromium through playwright),
against a real worker, the real desktop and the scripted model API: a person starts a task,
watches its steps arrive, takes the desktop over, acts, and hands it back."""

from __future__ import annotations

import threading

import httpx

from cubicle.agent.loop import TAKEN_OVER_TEXT
from fake_anthropic import message, text, tool_results, tool_use
from test_viewer import canvas_box, page_point
from test_worker import MODEL, gated, worker  # noqa: F401  (fixture)


def log_texts(page) -> list[str]:
    return page.eval_on_selector_all("#log li", "items => items.map(i => i.textContent)")


def wait_for_log(page, needle: str, timeout: float = 30.0) -> None:
    page.wait_for_function("n => [...document.querySelectorAll('#log li')].some(i => i.textContent.includes(n))",
                           arg=needle, timeout=timeout * 1000)


def open_console(page, w) -> None:
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(f"{w.url}/#token={w.token}")
    page.wait_for_selector("#new-run", state="visible")


def start_from_the_form(page, w, task: str) -> str:
    page.fill("#task", task)
    page.click("#new-run summary")  # the options: this desktop is not the worker's default's token
    page.fill("#desktop", w.desktop.url)
    page.fill("#desktop-token", w.desktop.token)
    page.fill("#model", MODEL)
    page.click("#start")
    page.wait_for_function("() => location.hash.startsWith('#run=')")
    return page.evaluate("decodeURIComponent(location.hash.slice(5))")


def wait_for_run(w, run_id: str, predicate, timeout: float = 30.0) -> dict:
    return w.wait_for(run_id, predicate, timeout)


def test_the_console_is_public_but_holds_nothing_and_refuses_a_wrong_token(worker, page):  # noqa: F811  (the worker fixture)
    w = worker([])
    served = httpx.get(w.url + "/")
    assert served.status_code == 200 and "cubicle console" in served.text
    policy = served.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy  # the other tests run under it
    assert w.token not in served.text
    assert httpx.get(w.url + "/runs").status_code == 401  # the data behind it still needs the token

    page.goto(f"{w.url}/#token=wrong-token")
    page.wait_for_selector("#login-error:not(:empty)")
    assert "refused" in page.text_content("#login-error")
    assert page.is_hidden("#app")
    assert "wrong-token" not in page.url

    page.fill("#login-token", w.token)
    page.click("#login-form button")
    page.wait_for_selector("#new-run", state="visible")
    assert w.token not in page.url  # kept in the tab's sessionStorage, never in the address bar


def test_the_console_starts_a_run_and_shows_its_steps_as_they_happen(worker, page, recorder):  # noqa: F811
    x, y = recorder.at(150, 100)
    gate = threading.Event()
    w = worker([
        lambda r: message(text("I will click the canvas."), tool_use("computer", {"action": "left_click", "coordinate": [x, y]})),
        gated(gate, message(text("All done here."))),
    ])
    open_console(page, w)
    run_id = start_from_the_form(page, w, "Click the canvas once.")

    # The first step shows while the model still "thinks" about the second.
    wait_for_log(page, "I will click the canvas.")
    wait_for_log(page, f"left_click at ({x}, {y})")
    assert recorder.wait_for(lambda r: r["type"] == "press")["x_root"] == x
    # The action's screenshot loads: the console's cookie opens run images to <img>.
    page.wait_for_function("() => [...document.querySelectorAll('#log img.thumb')].some(i => i.complete && i.naturalWidth > 0)")
    assert "running" in page.text_content("#run-facts")
    page.wait_for_selector("#screen canvas", state="visible", timeout=15000)  # the live desktop beside the log

    gate.set()
    wait_for_log(page, "All done here.")
    wait_for_log(page, "Run finished")
    page.wait_for_function("() => document.querySelector('#run-facts').textContent.includes('finished')")
    assert page.is_hidden("#stop") and page.is_hidden("#takeover")
    page.wait_for_function("id => document.querySelector(`#runs li[data-id='${id}']`).textContent.includes('finished')", arg=run_id)

    # The replay opens from the console's link, images and all.
    replay = page.context.new_page()
    href = page.get_attribute("#replay", "href")
    assert href == f"/runs/{run_id}/replay"
    replay.goto(w.url + href)
    assert "left_click" in replay.content()
    replay.wait_for_function("() => [...document.images].length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert httpx.get(f"{w.url}/runs/{run_id}/replay").status_code == 401  # not without the cookie or token


def test_take_over_pauses_the_run_records_the_human_and_hand_back_resumes(worker, page, recorder):  # noqa: F811
    x, y = recorder.at(300, 200)
    thinking = threading.Event()
    told = {}

    def after_hand_back(request):
        told["results"] = tool_results(request)
        told["texts"] = [b.get("text", "") for b in request["messages"][-1]["content"] if b.get("type") == "text"]
        return message(text("Thanks, I see what you did."))

    w = worker([
        gated(thinking, message(tool_use("computer", {"action": "key", "text": "Escape"}))),
        after_hand_back,
    ])
    open_console(page, w)
    run_id = start_from_the_form(page, w, "Wait for the human.")
    page.wait_for_selector("#screen canvas")
    page.wait_for_function("() => document.querySelector('#screen-state').textContent.includes('view only')")

    # View only: a click on the live desktop does not reach the app.
    box = canvas_box(page)
    page.mouse.click(*page_point(box, x, y))
    page.wait_for_timeout(500)
    assert recorder.records("press") == []

    # Take over while the model "thinks": its next action is not carried out, the run pauses.
    page.click("#takeover")
    page.wait_for_selector("#handback", state="visible")
    thinking.set()
    shown = wait_for_run(w, run_id, lambda r: r["status"] == "paused" and r["taken_over"])
    results = [e for e in shown["events"] if e["type"] == "result"]
    assert results[-1]["text"] == TAKEN_OVER_TEXT and results[-1]["is_error"]
    assert recorder.records("key_press") == []  # the model's Escape never reached the desktop

    # The human clicks and types through the console's view; it reaches the app and the log.
    page.wait_for_function("() => document.querySelector('#screen-state').textContent.includes('You have control')")
    page.wait_for_timeout(300)  # noVNC rescales to the changed layout on its next frame
    page.mouse.click(*page_point(canvas_box(page), x, y))
    pressed = recorder.wait_for(lambda r: r["type"] == "press")
    # The browser scales the desktop down: its click lands within a pixel or two of the aim.
    assert abs(pressed["x_root"] - x) <= 3 and abs(pressed["y_root"] - y) <= 3, (pressed, x, y)
    x, y = pressed["x_root"], pressed["y_root"]  # what the log must show: where it really landed
    page.keyboard.type("ok")
    recorder.wait_for(lambda r: r["type"] == "key_press" and r["char"] == "k")
    wait_for_log(page, f"left_click at ({x}, {y})")

    page.click("#handback")
    shown = wait_for_run(w, run_id, lambda r: not r["active"])
    assert shown["status"] == "finished"
    human = [e for e in shown["events"] if e["type"] == "action" and e.get("actor") == "human"]
    assert [(e["name"], e["input"]) for e in human] == [
        ("left_click", {"action": "left_click", "coordinate": [x, y]}),
        ("type", {"action": "type", "text": "ok"}),
    ]
    human_results = [e for e in shown["events"] if e["type"] == "result" and e["tool_use_id"] in {h["tool_use_id"] for h in human}]
    assert len(human_results) == 2 and all(e["image"] for e in human_results)
    handed = next(e for e in shown["events"] if e["type"] == "handed_back")
    assert handed["actions"] == [f"left_click at ({x}, {y})", 'type "ok"'] and handed["image"]

    # The model was told, with the screen as the human left it.
    told_text = "\n".join(told["texts"])
    assert "A human took control of the desktop" in told_text
    assert f"left_click at ({x}, {y})" in told_text and 'type "ok"' in told_text
    wait_for_log(page, "Handed back to the model after 2 human action(s)")
    assert any("human" in item and "left_click" in item for item in log_texts(page))
