"""The agent worker end to end: the real anthropic SDK talks to a scripted Messages API
server, and every tool call is carried out on the real desktop."""

from __future__ import annotations

import json
import time

import anthropic
import pytest

from cubicle.agent.computer import HALT_TEXT
from cubicle.agent.loop import Agent, Budgets
from cubicle.agent.runs import RunStore
from fake_anthropic import Error, FakeAnthropic, last_image, message, text, tool_results, tool_use

API_KEY = "sk-ant-test-" + "k" * 24
XTERM_LAUNCHER = (17, 784)  # the first launcher of the panel, in screen pixels


@pytest.fixture
def fake():
    servers = []

    def start(turns):
        server = FakeAnthropic(turns)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def make_agent(client, desktop, fake_server, tmp_path, model, **options):
    api = anthropic.Anthropic(api_key=API_KEY, base_url=fake_server.url, max_retries=options.pop("max_retries", 0))
    return Agent(client, model, RunStore(tmp_path / "runs"), desktop_url=desktop.url, anthropic_client=api,
                 sleep=options.pop("sleep", lambda s: None), **options)


def close_new_windows(client, before):
    for window in client.windows():
        if window.id not in before:
            client.close_window(window.id)


def test_computer_20250124_clicks_the_terminal_launcher_and_types_a_command(client, desktop, fake, tmp_path):
    target = tmp_path / "from-the-agent.txt"
    before = {w.id for w in client.windows()}
    seen = {}

    def first(request):
        seen["tools"] = request["tools"]
        last_image(request)  # the task comes with a screenshot
        return message(text("I'll open a terminal."), tool_use("computer", {"action": "left_click", "coordinate": list(XTERM_LAUNCHER)}))

    def second(request):
        (result,) = tool_results(request)
        assert result["is_error"] is False
        assert any(block["type"] == "image" for block in result["content"])
        return message(tool_use("computer", {"action": "wait", "duration": 1.5}))

    def third(request):
        return message(tool_use("computer", {"action": "type", "text": f"echo agent-was-here > {target}\n"}))

    def fourth(request):
        return message(text("Done: the file is written."))

    server = fake([first, second, third, fourth])
    try:
        run = make_agent(client, desktop, server, tmp_path, "claude-haiku-4-5").run("Write a file from a terminal.")
        assert server.failure is None, server.failure
        assert run.meta["status"] == "finished", run.meta
        deadline = time.monotonic() + 10
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.read_text() == "agent-was-here\n"
        assert seen["tools"][0] == {"type": "computer_20250124", "name": "computer", "display_width_px": 1280,
                                    "display_height_px": 800, "display_number": 1}
        assert {t["name"] for t in seen["tools"]} == {"computer", "bash", "str_replace_based_edit_tool"}
        assert "computer-use-2025-01-24" in server.headers[0].get("anthropic-beta", "")
        # The run is on disk, step by step, and the key is nowhere in it.
        kinds = [event["type"] for event in run.events()]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert kinds.count("response") == 4 and kinds.count("action") == 3 and kinds.count("result") == 3
        assert all((run.folder / e["image"]).exists() for e in run.events() if e["type"] in ("action", "result") and e.get("image"))
        for path in run.folder.rglob("*"):
            if path.is_file():
                assert API_KEY.encode() not in path.read_bytes()
                assert desktop.token.encode() not in path.read_bytes()
    finally:
        close_new_windows(client, before)


def test_toolset_batch_stops_at_the_failing_action(client, desktop, fake, recorder, tmp_path):
    x, y = recorder.at(100, 100)
    calls = [
        tool_use("left_click", {"coordinate": [x, y]}, toolset=True),
        tool_use("left_click", {"coordinate": [5000, 10]}, toolset=True),
        tool_use("type", {"text": "must not arrive"}, toolset=True),
    ]
    results = {}

    def check(request):
        results["blocks"] = tool_results(request)
        return message(text("Understood."))

    server = fake([lambda r: message(*calls), check])
    run = make_agent(client, desktop, server, tmp_path, "claude-opus-5").run("Try a batch.")
    assert server.failure is None, server.failure
    assert run.meta["tool_version"] == "computer_toolset_20260801"
    assert server.requests[0]["tools"][0] == {"type": "computer_toolset_20260801"}
    assert "anthropic-beta" not in server.headers[0] or "computer-use" not in server.headers[0]["anthropic-beta"]
    first, second, third = results["blocks"]
    assert [b["tool_use_id"] for b in results["blocks"]] == [c["id"] for c in calls]
    assert all(b["toolset_name"] == "computer" for b in results["blocks"])
    assert first["is_error"] is False
    assert second["is_error"] is True
    assert second["content"] == [{"type": "text", "text": "Coordinates (5000, 10) are outside display bounds (1280x800)."}]
    assert third["is_error"] is True and third["content"] == [{"type": "text", "text": HALT_TEXT}]
    # The first click really happened; the typing after the failure did not.
    recorder.wait_for(lambda r: r["type"] == "release")
    time.sleep(0.3)
    assert [(r["x_root"], r["y_root"]) for r in recorder.records("press")] == [(x, y)]
    assert recorder.records("key_press") == []


def test_toolset_batch_without_final_screenshot_gets_one_on_its_last_result(client, desktop, fake, recorder, tmp_path):
    x, y = recorder.at(50, 50)
    results = {}

    def check(request):
        results["blocks"] = tool_results(request)
        return message(text("ok"))

    server = fake([lambda r: message(tool_use("mouse_move", {"coordinate": [x, y]}, toolset=True),
                                     tool_use("cursor_position", {}, toolset=True),
                                     tool_use("left_click", {}, toolset=True)), check])
    make_agent(client, desktop, server, tmp_path, "claude-opus-5").run("Move and click.")
    moved, position, clicked = results["blocks"]
    assert position["content"] == [{"type": "text", "text": f"X={x},Y={y}"}]
    assert not any(b["type"] == "image" for b in moved["content"])
    assert any(b["type"] == "image" for b in clicked["content"])


def test_zoom_returns_the_region_enlarged_to_the_screenshot_size(client, desktop, fake, recorder, tmp_path):
    x, y = recorder.at(0, 0)
    results = {}

    def check(request):
        results["request"] = request
        return message(text("I can read it now."))

    server = fake([lambda r: message(tool_use("computer", {"action": "zoom", "region": [x, y, x + 160, y + 100]})), check])
    make_agent(client, desktop, server, tmp_path, "claude-opus-4-6").run("Zoom in.")
    assert server.requests[0]["tools"][0]["type"] == "computer_20251124"
    assert server.requests[0]["tools"][0]["enable_zoom"] is True
    (result,) = tool_results(results["request"])
    picture = last_image(results["request"])
    assert picture.size == (1280, 800)
    assert picture.getpixel((100, 100)) == (255, 0, 0)  # the recorder's red corner square, enlarged 8x
    assert "still refer to the full 1280x800 screenshot" in result["content"][0]["text"]


def test_overloaded_api_is_waited_out_without_losing_the_run(client, desktop, fake, tmp_path):
    waits = []
    server = fake([
        lambda r: message(tool_use("computer", {"action": "cursor_position"})),
        lambda r: Error(529), lambda r: Error(529), lambda r: Error(429, "rate_limit_error", "slow down"),
        lambda r: message(text("finished after the storm")),
    ])
    run = make_agent(client, desktop, server, tmp_path, "claude-haiku-4-5", sleep=waits.append).run("Survive 529s.")
    assert run.meta["status"] == "finished"
    retries = [e for e in run.events() if e["type"] == "retry"]
    assert len(retries) == 3 and waits == [e["wait_s"] for e in retries]
    assert "529" in retries[0]["error"]
    assert len(server.requests) == 5


def test_max_steps_ends_the_run_cleanly(client, desktop, fake, tmp_path):
    server = fake([lambda r: message(tool_use("computer", {"action": "cursor_position"}))] * 10)
    run = make_agent(client, desktop, server, tmp_path, "claude-haiku-4-5", budgets=Budgets(max_steps=3)).run("Loop forever.")
    assert run.meta["status"] == "finished"
    assert "maximum of 3 steps" in run.meta["stop_reason"]
    assert len(server.requests) == 3
    assert run.events()[-1]["type"] == "run_finished"


def test_pruning_keeps_the_prefix_identical_between_prunes(client, desktop, fake, tmp_path):
    server = fake([lambda r: message(tool_use("computer", {"action": "screenshot"}))] * 40)
    run = make_agent(client, desktop, server, tmp_path, "claude-haiku-4-5", budgets=Budgets(max_steps=40)).run("Look 40 times.")

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    pruned_at = {e["step"] for e in run.events() if e["type"] == "request" and e["pruned"]}
    assert pruned_at, "40 screenshots must trigger at least one prune"
    assert len(pruned_at) <= 3  # in batches, not every turn
    for step, (previous, current) in enumerate(zip(server.requests, server.requests[1:]), start=2):
        images = json.dumps(current).count('"type": "image"')
        assert images <= 19
        before, after = strip(previous["messages"]), strip(current["messages"])
        if step not in pruned_at:
            assert after[: len(before)] == before, f"prefix changed at step {step}"
            assert strip(previous["system"]) == strip(current["system"]) and previous["tools"] == current["tools"]
        # Cache breakpoints: system, and at most three in the messages.
        assert json.dumps(current).count("cache_control") <= 4


@pytest.mark.desktop  # a 1920x1080 desktop of its own
def test_model_coordinates_land_exactly_when_screenshots_are_scaled(tmp_path_factory, fake, tmp_path):
    from cubicle.client import DesktopClient
    from support import running_desktop, start_recorder

    with running_desktop(tmp_path_factory.mktemp("big"), size="1920x1080") as big:
        with DesktopClient(big.url, big.token) as client:
            app = start_recorder(big, tmp_path, "--geometry", "600x400+900+500", "--title", "target")
            time.sleep(0.5)
            app.clear()
            clicked = {}

            def find_and_click(request):
                picture = last_image(request)
                clicked["size"] = picture.size
                red = [(x, y) for x in range(picture.width) for y in range(0, picture.height, 1)
                       if picture.getpixel((x, y)) == (255, 0, 0)]
                xs, ys = [p[0] for p in red], [p[1] for p in red]
                clicked["points"] = [(min(xs), min(ys)), (max(xs), max(ys))]
                return message(*[tool_use("computer", {"action": "left_click", "coordinate": list(p)}) for p in clicked["points"]])

            server = fake([find_and_click, lambda r: message(text("clicked"))])
            run = make_agent(client, big, server, tmp_path, "claude-haiku-4-5").run("Click the red square.")
            assert server.failure is None, server.failure
            assert clicked["size"] == (1429, 804)  # 1920x1080 shrunk to the older models' limit
            assert run.events()[0]["image"] == {"width": 1429, "height": 804}
            app.wait_for(lambda r: len([x for x in app.records("release")]) >= 2)
            presses = app.records("press")
            assert len(presses) == 2
            for press in presses:  # both corners of what the model saw land in the real 40x40 square
                assert 0 <= press["x"] < 40 and 0 <= press["y"] < 40, press
            app.process.terminate()
            app.process.wait(10)


def test_bash_and_editor_tools_work_inside_the_desktop(client, desktop, fake, tmp_path):
    notes = tmp_path / "notes.txt"
    seen = []

    def record(reply):
        def turn(request):
            seen.append(tool_results(request))
            return reply
        return turn

    server = fake([
        lambda r: message(tool_use("bash", {"command": f"printf 'alpha\\nbeta\\nbeta\\n' > {notes} && echo $DISPLAY"})),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "str_replace", "path": str(notes), "old_str": "beta", "new_str": "gamma"}))),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "str_replace", "path": str(notes), "old_str": "delta", "new_str": "x"}))),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "str_replace", "path": str(notes), "old_str": "alpha\n", "new_str": "ALPHA\n"}))),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "insert", "path": str(notes), "insert_line": 1, "insert_text": "inserted"}))),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "view", "path": str(notes), "view_range": [1, 2]}))),
        record(message(tool_use("str_replace_based_edit_tool", {"command": "view", "path": "relative.txt"}))),
        record(message(tool_use("bash", {"command": "exit 3"}))),
        record(message(text("done"))),
    ])
    run = make_agent(client, desktop, server, tmp_path, "claude-haiku-4-5").run("Edit a file.")
    assert server.failure is None, server.failure
    assert run.meta["status"] == "finished"
    bash_result, several, none, replaced, inserted, viewed, relative, exited = [results[0] for results in seen]
    assert bash_result["content"][0]["text"].strip() == desktop.display
    assert several["is_error"] and "occurs 2 times" in several["content"][0]["text"]
    assert none["is_error"] and "did not appear verbatim" in none["content"][0]["text"]
    assert not replaced["is_error"] and "has been edited" in replaced["content"][0]["text"]
    assert not inserted["is_error"]
    assert viewed["content"][0]["text"] == "     1\tALPHA\n     2\tinserted"
    assert relative["is_error"] and "not an absolute path" in relative["content"][0]["text"]
    assert "[exit code 3]" in exited["content"][0]["text"]
    assert notes.read_text() == "ALPHA\ninserted\nbeta\nbeta\n"


def kill_the_worker_while_it_thinks(desktop, fake, runs_dir, turns) -> dict:
    """`cubicle agent run` in a process of its own, answered by `turns` and then by a model that
    thinks until the process is SIGKILLed; returns the environment it ran with."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    thinking = threading.Event()

    def slow(request):
        thinking.set()
        time.sleep(30)  # the model "thinks" until the worker is killed
        return message(text("never seen"))

    server = fake([*turns, slow])
    env = dict(os.environ, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=server.url, CUBICLE_TOKEN=desktop.token)
    worker = subprocess.Popen(
        [sys.executable, "-m", "cubicle", "agent", "run", "Move the mouse, then think a long time.",
         "--desktop", desktop.url, "--model", "claude-haiku-4-5", "--runs-dir", str(runs_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert thinking.wait(60), worker.stdout.read1().decode() if worker.poll() is not None else "no last request"
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    worker.stdout.close()
    return env


def test_a_run_killed_mid_way_keeps_its_log(desktop, fake, tmp_path):
    runs_dir = tmp_path / "runs"
    kill_the_worker_while_it_thinks(desktop, fake, runs_dir, [
        lambda r: message(tool_use("computer", {"action": "mouse_move", "coordinate": [300, 300]})),
        lambda r: message(tool_use("computer", {"action": "cursor_position"}))])
    (run_id,) = [meta["id"] for meta in RunStore(runs_dir).list()]
    run = RunStore(runs_dir).open(run_id)
    kinds = [event["type"] for event in run.events()]
    assert kinds == ["run_started", "request", "response", "action", "result",
                     "request", "response", "action", "result", "request"]
    assert run.events()[8]["text"] == "X=300,Y=300"
    assert all((run.folder / e["image"]).exists() for e in run.events() if e["type"] == "result" and e.get("image"))
    assert run.meta["status"] == "running"  # killed: nobody could write the end


def test_a_killed_run_is_resumed_from_its_last_completed_step(desktop, fake, tmp_path):
    import subprocess
    import sys

    from cubicle.agent.loop import RESUMED_NOTE

    runs_dir = tmp_path / "runs"
    env = kill_the_worker_while_it_thinks(desktop, fake, runs_dir, [
        lambda r: message(text("Moving."), tool_use("computer", {"action": "mouse_move", "coordinate": [310, 290]})),
        lambda r: message(tool_use("computer", {"action": "cursor_position"}))])
    command = [sys.executable, "-m", "cubicle", "agent"]
    (run_id,) = [meta["id"] for meta in RunStore(runs_dir).list()]
    before = RunStore(runs_dir).open(run_id).events()
    assert [e["type"] for e in before][-1] == "request"

    seen = {}

    def check(request):
        seen["request"] = request
        return message(tool_use("computer", {"action": "cursor_position"}))

    second = fake([check, lambda r: message(text("Done after the restart."))])
    env["ANTHROPIC_BASE_URL"] = second.url
    resumed = subprocess.run(command + ["resume", run_id[:15], "--runs-dir", str(runs_dir)],
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming run {run_id} after step 2" in resumed.stdout

    # The model got the whole conversation back: its own turns, their results, then the screen now.
    messages = seen["request"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "Move the mouse, then think a long time."
    assert messages[0]["content"][1]["type"] == "image"
    assert messages[1]["content"][0]["text"] == "Moving." and messages[1]["content"][1]["input"]["coordinate"] == [310, 290]
    (moved,) = tool_results({"messages": messages[:3]})
    assert moved["tool_use_id"] == messages[1]["content"][1]["id"] and moved["content"][-1]["type"] == "image"
    last = messages[4]["content"]
    assert [b["type"] for b in last] == ["tool_result", "text", "image"]
    assert last[0]["content"][0]["text"] == "X=310,Y=290"  # the result saved before the kill
    assert last[1]["text"] == RESUMED_NOTE

    run = RunStore(runs_dir).open(run_id)
    after = run.events()
    assert after[:len(before)] == before  # nothing before the kill was changed
    assert [e["type"] for e in after[len(before):]] == ["run_resumed", "request", "response", "action", "result",
                                                        "request", "response", "run_finished"]
    assert [e["seq"] for e in after] == list(range(len(after)))
    assert after[len(before)]["not_carried_out"] == 0 and (run.folder / after[len(before)]["image"]).is_file()
    assert run.meta["status"] == "finished" and run.meta["totals"]["steps"] == 4

    again = subprocess.run(command + ["resume", run_id, "--runs-dir", str(runs_dir)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "has finished" in again.stderr


def test_a_run_another_process_carries_out_cannot_be_resumed(desktop, tmp_path):
    import os
    import subprocess
    import sys

    run = RunStore(tmp_path / "runs").create_run("busy", "claude-haiku-4-5", "computer_20250124", desktop.url)
    run.append("run_started", task="busy", screen={"width": 1280, "height": 800})
    run.claim()  # as a live worker does
    env = dict(os.environ, ANTHROPIC_API_KEY=API_KEY, CUBICLE_TOKEN=desktop.token)
    refused = subprocess.run([sys.executable, "-m", "cubicle", "agent", "resume", run.id, "--runs-dir", str(tmp_path / "runs")],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "being carried out by another process" in refused.stderr
    assert [e["type"] for e in run.events()] == ["run_started"]
    run.release()


def test_rebuilding_answers_every_call_the_log_has_no_result_for(tmp_path):
    from cubicle.agent.conversation import Conversation
    from cubicle.agent.loop import NOT_RUN_TEXT, RESUMED_TEXT, RESUMED_UNKNOWN_TEXT, rebuild_conversation

    run = RunStore(tmp_path / "runs").create_run("t", "claude-haiku-4-5", "computer_20250124", "http://x")
    first = run.folder / run.save_image(0, 0, b"\x89PNG first", "image/png")
    a, b, c, d = (tool_use("computer", {"action": "cursor_position"}) for _ in range(4))
    for kind, fields in [
        ("response", {"content": [a, b], "stop_reason": "tool_use"}),
        ("action", {"tool_use_id": a["id"]}), ("result", {"tool_use_id": a["id"], "text": "failed", "is_error": True}),
        ("message", {"text": "try the menu", "actor": "human"}),
        ("response", {"content": [c, d], "stop_reason": "tool_use"}),
        ("action", {"tool_use_id": c["id"]}),  # killed here: c begun, d never
    ]:
        run.append(kind, **fields)
    conversation = Conversation("system", [])
    left_open = rebuild_conversation(conversation, run, run.events(), "the task", first)
    assert left_open == 2
    roles = [m["role"] for m in conversation.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    after_first = conversation.messages[2]["content"]
    assert [(r.get("tool_use_id"), r.get("is_error")) for r in after_first[:2]] == [(a["id"], True), (b["id"], True)]
    assert after_first[1]["content"][0]["text"] == NOT_RUN_TEXT  # halted after a's failure: never logged
    assert after_first[2] == {"type": "text", "text": "Message from the human watching: try the menu"}
    last = conversation.messages[4]["content"]
    assert [r["content"][0]["text"] for r in last] == [RESUMED_UNKNOWN_TEXT, RESUMED_TEXT]


def test_ctrl_c_ends_the_run_cleanly_with_the_log_saved(desktop, fake, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading

    thinking = threading.Event()

    def slow(request):
        thinking.set()
        time.sleep(20)
        return message(text("too late"))

    server = fake([lambda r: message(tool_use("computer", {"action": "cursor_position"})), slow])
    runs_dir = tmp_path / "runs"
    env = dict(os.environ, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=server.url, CUBICLE_TOKEN=desktop.token)
    worker = subprocess.Popen(
        [sys.executable, "-m", "cubicle", "agent", "run", "Think, then be interrupted.", "--desktop", desktop.url,
         "--model", "claude-haiku-4-5", "--runs-dir", str(runs_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert thinking.wait(60)
    worker.send_signal(signal.SIGINT)
    output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 1, output
    assert "interrupted: stopped by the human (Ctrl-C)" in output
    (meta,) = RunStore(runs_dir).list()
    assert meta["status"] == "interrupted"
    events = RunStore(runs_dir).open(meta["id"]).events()
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "interrupted"
    assert API_KEY not in output
