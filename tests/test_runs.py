"""The run store: durable step-by-step logs, secrets kept off disk, listing and the HTML replay.

Pure Python on the real filesystem; no desktop needed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from cubicle.agent import runs as runs_module
from cubicle.agent.replay import image_size, render_replay, write_replay
from cubicle.agent.runs import REDACTED, Run, RunNotFound, RunStore, redact
from cubicle.agent.runs_cli import list_runs, show_run

SERVICE = Path(__file__).resolve().parent.parent / "service"


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(SERVICE), os.environ.get("PYTHONPATH", "")]))


def png(width: int = 200, height: int = 100, colour: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def new_run(tmp_path: Path, task: str = "open the editor") -> Run:
    return RunStore(tmp_path / "runs").create_run(task, "claude-sonnet-4-5", "computer_20250124", "http://127.0.0.1:8000")


@pytest.fixture(autouse=True)
def no_registered_secrets(monkeypatch):
    monkeypatch.setattr(runs_module, "_registered_secrets", set())
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("CUBICLE_TOKEN", raising=False)


# -- layout and durability --------------------------------------------------------------


def test_a_new_run_is_a_folder_with_metadata(tmp_path):
    run = new_run(tmp_path)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run.id)
    assert run.folder == tmp_path / "runs" / run.id
    assert (run.folder / "images").is_dir() and (run.folder / "events.jsonl").is_file()
    meta = json.loads((run.folder / "run.json").read_text())
    assert meta["id"] == run.id and meta["status"] == "running" and meta["stop_reason"] is None
    assert meta["task"] == "open the editor" and meta["desktop"] == "http://127.0.0.1:8000"
    assert meta["totals"] == {"steps": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                              "cache_creation_tokens": 0, "cost_usd": 0.0}
    assert meta["created_at"].endswith("Z")
    assert not [p for p in run.folder.iterdir() if p.name.endswith(".tmp")]


def test_an_event_is_on_disk_and_fsynced_when_append_returns(tmp_path, monkeypatch):
    run = new_run(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])

    event = run.append("message", text="hello", actor="human")
    assert event["seq"] == 0 and event["type"] == "message" and event["time"].endswith("Z")
    assert run._events_fd in synced  # the events file itself was fsync'd

    # Another process sees it at once: nothing waits in a buffer of ours.
    reader = subprocess.run(
        [sys.executable, "-c", "import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))",
         str(run.events_path)],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(reader.stdout) == [event]

    second = run.append("retry", step=1, error="overloaded", wait_s=2.0)
    reader = subprocess.run(
        [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read().count(chr(10)))", str(run.events_path)],
        capture_output=True, text=True, check=True,
    )
    assert reader.stdout.strip() == "2" and second["seq"] == 1


CHILD = textwrap.dedent("""
    import sys
    from cubicle.agent.runs import RunStore
    run = RunStore(sys.argv[1]).create_run("count", "claude-sonnet-4-5", "computer_20250124", "")
    print(run.id, flush=True)
    image = open(sys.argv[2], "rb").read()
    step = 0
    while True:
        step += 1
        path = run.save_image(step, 1, image, "image/png")
        event = run.append("result", step=step, tool_use_id=f"t{step}", is_error=False,
                           text="x" * 5000, image=path, duration_ms=1.0)
        print(event["seq"], flush=True)
""")


def test_a_killed_run_keeps_every_completed_event_and_reopens(tmp_path):
    root = tmp_path / "runs"
    picture = tmp_path / "shot.png"
    picture.write_bytes(png(64, 48))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(picture)], stdout=subprocess.PIPE, text=True,
                             env=child_env())
    try:
        run_id = child.stdout.readline().strip()
        acknowledged = []
        while len(acknowledged) < 40:
            line = child.stdout.readline()
            assert line, "the writer died"
            acknowledged.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    child.stdout.close()

    run = RunStore(root).open(run_id)
    seqs = [e["seq"] for e in run.events()]
    assert seqs[: len(acknowledged)] == acknowledged == list(range(len(acknowledged)))
    assert seqs == list(range(len(seqs)))
    for event in run.events():
        assert (run.folder / event["image"]).is_file()

    # A crash mid-write leaves half a line: readers skip it, the next append cuts it off.
    last = seqs[-1]
    with open(run.events_path, "ab") as handle:
        handle.write(b'{"seq": %d, "time": "2026-01-01T00:00:00Z", "type": "res' % (last + 1))
    assert [e["seq"] for e in RunStore(root).open(run_id).events()] == seqs

    reopened = RunStore(root).open(run_id)
    event = reopened.append("message", text="resumed", actor="human")
    assert event["seq"] == last + 1
    lines = run.events_path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["seq"] for line in lines[:-1]] == list(range(last + 2))


def test_reopened_run_continues_numbering_and_keeps_metadata(tmp_path):
    run = new_run(tmp_path)
    for step in range(3):
        run.append("request", step=step, messages=1, images=1, bytes=10, prefix_hash="ab")
    run.update(status="paused")
    run.close()
    again = RunStore(tmp_path / "runs").open(run.id)
    assert again.meta["status"] == "paused"
    assert again.append("message", text="go on", actor="human")["seq"] == 3
    assert RunStore(tmp_path / "runs").open(run.id[:17]).id == run.id  # a unique prefix is enough


def test_appends_from_many_threads_get_distinct_numbers(tmp_path):
    run = new_run(tmp_path)

    def write(worker: int) -> None:
        for index in range(25):
            run.append("message", text=f"{worker}-{index}", actor="human")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = run.events()
    assert [e["seq"] for e in events] == list(range(200))
    assert len({e["text"] for e in events}) == 200


def test_images_are_stored_by_step_and_never_overwritten(tmp_path):
    run = new_run(tmp_path)
    first = run.save_image(3, 1, png(), "image/png")
    assert first == "images/0003-01.png"
    assert run.save_image(3, 1, png(colour=(0, 0, 0)), "image/png") == "images/0003-01-2.png"
    assert run.save_image(4, 0, b"\xff\xd8fake", "image/jpeg") == "images/0004-00.jpg"
    assert image_size(run.folder / first) == (200, 100)
    with pytest.raises(ValueError, match="media type"):
        run.save_image(5, 0, b"", "text/html")


def test_totals_add_up(tmp_path):
    run = new_run(tmp_path)
    usages = [(1000, 50, 0, 900, 0.0043), (200, 80, 900, 0, 0.0015), (300, 20, 1100, 10, 0.0012)]
    for step, usage in enumerate(usages, 1):
        run.add_usage(*usage)
        run.update(totals={"steps": step})
    expected = {"steps": 3, "input_tokens": 1500, "output_tokens": 150, "cache_read_tokens": 2000,
                "cache_creation_tokens": 910, "cost_usd": pytest.approx(0.007)}
    assert json.loads((run.folder / "run.json").read_text())["totals"] == expected
    assert run.meta["totals"] == expected
    assert RunStore(tmp_path / "runs").open(run.id).meta["totals"] == expected
    run.update(status="finished", stop_reason="the model ended its turn")
    meta = json.loads((run.folder / "run.json").read_text())
    assert meta["status"] == "finished" and meta["totals"]["input_tokens"] == 1500
    with pytest.raises(ValueError, match="status"):
        run.update(status="done")


def test_list_is_newest_first_and_skips_strays(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    ids = [store.create_run(f"task {n}", "claude-sonnet-4-5", "computer_20250124", "").id for n in range(4)]
    (store.root / "not-a-run").mkdir()
    (store.root / "notes.txt").write_text("hi")
    listed = store.list()
    assert [m["id"] for m in listed] == ids[::-1]
    assert [m["task"] for m in listed] == ["task 3", "task 2", "task 1", "task 0"]

    monkeypatch.setenv("CUBICLE_RUNS_DIR", str(store.root))
    assert [m["id"] for m in RunStore().list()] == ids[::-1]
    assert RunStore(tmp_path / "nothing-here").list() == []
    with pytest.raises(RunNotFound):
        store.open("../etc")
    with pytest.raises(RunNotFound):
        store.open("20990101-000000-abcdef")


# -- secrets ----------------------------------------------------------------------------


def test_redact_rules(monkeypatch):
    monkeypatch.setenv("CUBICLE_TOKEN", "tok-0123456789")
    RunStore.add_secret("short")  # under 8 characters: ignored
    value = {
        "a": "Bearer tok-0123456789",
        "b": ["tok-0123456789", "harmless"],
        "Authorization": "Basic something-else",
        "X-API-Key": "whatever",
        "headers": {"API_KEY": 12345, "content-type": "short"},
        "none": None,
        "raw": b"bytes tok-0123456789",
    }
    assert redact(value) == {
        "a": REDACTED,
        "b": [REDACTED, "harmless"],
        "Authorization": REDACTED,
        "X-API-Key": REDACTED,
        "headers": {"API_KEY": REDACTED, "content-type": "short"},
        "none": None,
        "raw": "<20 bytes>",
    }


def test_secrets_never_reach_disk(tmp_path, monkeypatch):
    api_key = "sk-ant-api03-" + "Q" * 40
    token = "cubicle-token-5f2a9c1e7b"
    registered = "registered-secret-value"
    monkeypatch.setenv("ANTHROPIC_API_KEY", api_key)
    monkeypatch.setenv("CUBICLE_TOKEN", token)
    RunStore.add_secret(registered)
    header_value = "Bearer not-a-known-secret-but-a-header"

    store = RunStore(tmp_path / "runs")
    run = store.create_run(f"log in with {token}", "claude-sonnet-4-5", "computer_20250124",
                           f"http://user:{token}@127.0.0.1:8000", api_key=api_key)
    run.append("run_started", task=f"use {api_key}", model="claude-sonnet-4-5", tool_version="computer_20250124",
               desktop="http://127.0.0.1:8000", screen={"width": 200, "height": 100}, image={"width": 200, "height": 100})
    shot = run.save_image(1, 0, png(), "image/png")
    run.append("request", step=1, messages=[{"role": "user", "content": [{"type": "text", "text": f"key={api_key}"}]}],
               images=1, bytes=100, prefix_hash="x", headers={"Authorization": header_value, "x-api-key": "abc",
                                                                "accept": "application/json"})
    run.append("action", step=1, tool_use_id="t1", tool="computer", name="type", input={"text": token}, image=shot,
               actor="model")
    run.append("result", step=1, tool_use_id="t1", is_error=True,
               text=f"{registered} appeared in the terminal", image=None, duration_ms=3)
    run.append("message", text=f"nested {[{'deep': [api_key]}]}", actor="human")
    run.update(stop_reason=f"failed: 401 for key {api_key}")
    write_replay(run)
    for line in show_output(store, run.id, replay=True).splitlines():
        assert api_key not in line and token not in line

    secrets = [api_key, token, registered, header_value, "not-a-known-secret"]
    files = [p for p in run.folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "events.jsonl", "replay.html", "0001-00.png"}
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} leaked into {path.name}"
    events = run.events()
    assert events[1]["headers"] == {"Authorization": REDACTED, "x-api-key": REDACTED, "accept": "application/json"}
    assert events[1]["messages"][0]["content"][0]["text"] == REDACTED
    assert events[2]["input"] == {"text": REDACTED}
    assert run.meta["task"] == REDACTED and run.meta["api_key"] == REDACTED


# -- replay -----------------------------------------------------------------------------


def recorded_run(tmp_path: Path) -> Run:
    run = new_run(tmp_path, task="Fill in the form <script>alert('x')</script> & save")
    run.append("run_started", task=run.meta["task"], model="claude-sonnet-4-5", tool_version="computer_20250124",
               desktop="http://127.0.0.1:8000", screen={"width": 400, "height": 200}, image={"width": 200, "height": 100})
    first = run.save_image(0, 0, png(), "image/png")
    run.append("request", step=1, messages=1, images=1, bytes=2048, prefix_hash="abc")
    run.append("response", step=1, stop_reason="tool_use",
               content=[{"type": "text", "text": "I'll click <b>OK</b>."},
                        {"type": "tool_use", "id": "t1", "name": "computer", "input": {"action": "left_click", "coordinate": [120, 40]}},
                        {"type": "tool_use", "id": "t2", "name": "computer",
                         "input": {"action": "left_click_drag", "start_coordinate": [10, 10], "path": [[50, 50]], "coordinate": [90, 20]}}],
               usage={"input_tokens": 1200, "output_tokens": 40, "cache_read_tokens": 0, "cache_creation_tokens": 1000},
               cost_usd=0.0042, duration_ms=1830.5)
    run.add_usage(1200, 40, 0, 1000, 0.0042)
    run.update(totals={"steps": 1})
    run.append("action", step=1, tool_use_id="t1", tool="computer", name="left_click",
               input={"action": "left_click", "coordinate": [120, 40]}, image=first, actor="model")
    run.append("action", step=1, tool_use_id="t2", tool="computer", name="left_click_drag",
               input={"action": "left_click_drag", "start_coordinate": [10, 10], "path": [[50, 50]], "coordinate": [90, 20]},
               image=first, actor="model")
    second = run.save_image(1, 1, png(colour=(200, 200, 200)), "image/png")
    run.append("result", step=1, tool_use_id="t1", is_error=False, text="", image=None, duration_ms=210)
    run.append("result", step=1, tool_use_id="t2", is_error=False, text="", image=second, duration_ms=210)
    run.append("retry", step=2, error="RateLimitError: 429", wait_s=2.0)
    run.append("response", step=2, stop_reason="tool_use",
               content=[{"type": "text", "text": "Typing and scrolling."}],
               usage={"input_tokens": 300, "output_tokens": 30}, cost_usd=0.001, duration_ms=900)
    steps = [
        ("t3", "computer", "type", {"action": "type", "text": "a < b && c > d"}),
        ("t4", "computer", "key", {"action": "key", "text": "ctrl+s"}),
        ("t5", "computer", "scroll", {"action": "scroll", "coordinate": [100, 50], "scroll_direction": "down", "scroll_amount": 5}),
        ("t6", "computer", "zoom", {"action": "zoom", "region": [20, 10, 80, 60]}),
        ("t7", "computer", "mouse_move", {"action": "mouse_move", "coordinate": [150, 70]}),
        ("t8", "computer", "right_click", {"action": "right_click", "coordinate": [30, 80]}),
        ("t9", "computer", "double_click", {"action": "double_click", "coordinate": [60, 60], "text": "shift"}),
    ]
    for tool_use_id, tool, name, tool_input in steps:
        run.append("action", step=2, tool_use_id=tool_use_id, tool=tool, name=name, input=tool_input, image=second, actor="model")
        run.append("result", step=2, tool_use_id=tool_use_id, is_error=False, text="", image=None, duration_ms=50)
    run.append("action", step=2, tool_use_id="b1", tool="bash", name="echo hi", input={"command": "echo '<hi>'"}, image=None,
               actor="model")
    run.append("result", step=2, tool_use_id="b1", is_error=False, text="<hi>\n", image=None, duration_ms=12)
    run.append("action", step=2, tool_use_id="e1", tool="str_replace_based_edit_tool", name="view",
               input={"command": "view", "path": "/home/user/notes.txt"}, image=None, actor="model")
    run.append("result", step=2, tool_use_id="e1", is_error=True, text="The path /home/user/notes.txt does not exist.",
               image=None, duration_ms=3)
    run.append("message", text="Use the <other> button", actor="human")
    run.append("action", tool_use_id="h1", tool="computer", name="left_click", input={"coordinate": [77, 33]}, image=second,
               actor="human")
    run.update(status="finished", stop_reason="the model ended its turn")
    run.append("run_finished", status="finished", reason="the model ended its turn", totals=run.meta["totals"])
    return run


def test_replay_draws_actions_on_the_screenshots(tmp_path):
    run = recorded_run(tmp_path)
    page = render_replay(run)
    assert page.startswith("<!doctype html>")
    assert '<circle cx="120" cy="40"' in page  # the left click
    assert '<polyline points="10,10 50,50 90,20"' in page  # the drag, through its path
    assert 'marker-end="url(#arrow-' in page
    assert "scroll down 5" in page
    assert '<rect x="20" y="10" width="60" height="50"' in page  # the zoom region
    assert "ctrl+s" in page and "a &lt; b &amp;&amp; c &gt; d" in page  # caption boxes, escaped
    assert '<circle cx="150" cy="70"' in page  # the mouse move dot
    assert 'stroke="#1e88e5"' in page  # right click in its own colour
    assert "double +shift" in page
    assert '<svg viewBox="0 0 200 100"' in page
    assert '<circle cx="77" cy="33"' in page and 'stroke="#8e24aa"' in page  # the human's click
    assert 'class="who">human<' in page


def test_replay_escapes_text_and_points_at_existing_images(tmp_path):
    run = recorded_run(tmp_path)
    path = write_replay(run)
    assert path == run.folder / "replay.html"
    page = path.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "Fill in the form &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; save" in page
    assert "I&#x27;ll click &lt;b&gt;OK&lt;/b&gt;." in page
    assert "$ echo &#x27;&lt;hi&gt;&#x27;" in page and "Use the &lt;other&gt; button" in page
    assert "does not exist." in page and 'class="result error"' in page
    assert "RateLimitError: 429" in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all((run.folder / src).is_file() for src in sources)
    assert all(not src.startswith(("/", "http")) for src in sources)
    assert re.findall(r'<img [^>]*>', page) == [tag for tag in re.findall(r'<img [^>]*>', page) if 'loading="lazy"' in tag]
    assert "http://" not in page.replace("http://127.0.0.1:8000", "")  # nothing loaded from elsewhere
    assert "$0.0042" in page and 'href="#step-2"' in page


def test_replay_of_a_long_run(tmp_path):
    run = new_run(tmp_path)
    image = png(128, 80)
    started = time.monotonic()
    for step in range(1, 151):
        shot = run.save_image(step, 0, image, "image/png")
        run.append("response", step=step, stop_reason="tool_use", content=[{"type": "text", "text": f"step {step}"}],
                   usage={"input_tokens": 10, "output_tokens": 1}, cost_usd=0.0001, duration_ms=5)
        run.append("action", step=step, tool_use_id=f"t{step}", tool="computer", name="left_click",
                   input={"coordinate": [step % 128, step % 80]}, image=shot, actor="model")
        run.append("result", step=step, tool_use_id=f"t{step}", is_error=step % 50 == 0, text="", image=None, duration_ms=5)
    page = render_replay(run)
    assert time.monotonic() - started < 30
    assert page.count('<section class="step') == 150
    assert page.count('loading="lazy"') == 150
    assert page.count('id="step-') == 150
    assert page.count('class="err"') == 3  # steps 50, 100 and 150 marked in the index


# -- the command line -------------------------------------------------------------------


def show_output(store: RunStore, run_id: str, replay: bool = False) -> str:
    out = io.StringIO()
    assert show_run(argparse.Namespace(runs_dir=str(store.root), run_id=run_id, replay=replay), out=out) == 0
    return out.getvalue()


def test_cli_list_and_show(tmp_path, capsys):
    run = recorded_run(tmp_path)
    other = RunStore(tmp_path / "runs").create_run("a second, later task\nwith two lines", "claude-opus-4-5",
                                                  "computer_20251124", "")
    out = io.StringIO()
    assert list_runs(argparse.Namespace(runs_dir=str(tmp_path / "runs")), out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:5] == ["ID", "STATUS", "STEPS", "COST", "AGE"]
    assert lines[1].startswith(other.id) and "a second, later task with two lines" in lines[1]
    assert lines[2].startswith(run.id) and "finished" in lines[2] and "$0.0042" in lines[2]

    text = show_output(RunStore(tmp_path / "runs"), run.id, replay=True)
    assert "finished (the model ended its turn)" in text
    assert "left_click (120, 40)" in text and "left_click_drag (10, 10) → (90, 20)" in text
    assert "scroll down 5 at (100, 50)" in text and "bash: echo '<hi>'" in text
    assert "ERROR The path /home/user/notes.txt does not exist." in text
    assert "human left_click (77, 33)" in text and "retry in 2.0 s" in text
    assert text.strip().endswith(str(run.folder / "replay.html"))
    assert (run.folder / "replay.html").is_file()

    empty = io.StringIO()
    assert list_runs(argparse.Namespace(runs_dir=str(tmp_path / "none")), out=empty) == 0
    assert "no runs" in empty.getvalue()
    assert show_run(argparse.Namespace(runs_dir=str(tmp_path / "runs"), run_id="nope", replay=False)) == 1
    assert "no run 'nope'" in capsys.readouterr().err
