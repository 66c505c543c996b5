"""Steering a run from another thread: approvals held by a policy, human messages, pause, stop."""

from __future__ import annotations

import threading
import time

import anthropic

from cubicle.agent.control import RunControl
from cubicle.agent.loop import Agent
from cubicle.agent.policy import Policy
from cubicle.agent.runs import RunStore
from fake_anthropic import FakeAnthropic, message, text, tool_results, tool_use
from support import wait_until

POLICY = Policy.from_text("""
[[hold]]
tool = "bash"
command = 'rm\\s+-rf'
reason = "recursive delete"
""")


def agent_for(client, desktop, server, tmp_path, control, policy=None):
    api = anthropic.Anthropic(api_key="sk-ant-test-control-0000", base_url=server.url, max_retries=0)
    return Agent(client, "claude-haiku-4-5", RunStore(tmp_path / "runs"), desktop_url=desktop.url,
                 anthropic_client=api, control=control, policy=policy, sleep=lambda s: None)


def run_in_thread(agent, task):
    run = agent.start(task)
    thread = threading.Thread(target=agent.execute, args=(run,), daemon=True)
    thread.start()
    return run, thread





def test_a_held_action_waits_for_a_human_and_a_denial_reaches_the_model(client, desktop, tmp_path):
    victim = tmp_path / "keep-me"
    victim.mkdir()
    seen = {}

    def after(request):
        seen["results"] = tool_results(request)
        return message(text("I will not delete it then."))

    server = FakeAnthropic([lambda r: message(tool_use("bash", {"command": f"rm -rf {victim}"})), after])
    control = RunControl()
    try:
        run, thread = run_in_thread(agent_for(client, desktop, server, tmp_path, control, POLICY), "Clean up.")
        wait_until(lambda: control.pending)
        (approval_id, what), = control.pending.items()
        assert what["tool"] == "bash" and what["reason"] == "recursive delete"
        assert victim.exists()  # nothing ran while it waited
        assert control.decide(approval_id, approve=False, note="that folder is needed")
        thread.join(30)
        assert victim.exists()
        (result,) = seen["results"]
        assert result["is_error"] is True
        assert result["content"][0]["text"] == "A human denied this action (recursive delete): that folder is needed"
        kinds = [e["type"] for e in run.events()]
        assert "approval_requested" in kinds and "approval_decided" in kinds
        assert run.meta["status"] == "finished"
    finally:
        server.close()


def test_an_approved_action_runs(client, desktop, tmp_path):
    victim = tmp_path / "delete-me"
    victim.mkdir()
    server = FakeAnthropic([lambda r: message(tool_use("bash", {"command": f"rm -rf {victim}"})), lambda r: message(text("done"))])
    control = RunControl()
    try:
        _run, thread = run_in_thread(agent_for(client, desktop, server, tmp_path, control, POLICY), "Clean up.")
        wait_until(lambda: control.pending)
        control.decide(next(iter(control.pending)), approve=True)
        thread.join(30)
        assert not victim.exists()
    finally:
        server.close()


def test_pause_holds_the_next_step_and_a_message_reaches_the_model(client, desktop, tmp_path):
    second_request = threading.Event()
    seen = {}

    def first(request):
        control.pause()  # pause while the model "thinks": the loop must stop before the next call
        return message(tool_use("computer", {"action": "cursor_position"}))

    def second(request):
        second_request.set()
        seen["last"] = request["messages"][-1]["content"]
        return message(text("ok"))

    server = FakeAnthropic([first, second])
    control = RunControl()
    try:
        run, thread = run_in_thread(agent_for(client, desktop, server, tmp_path, control), "Wait for me.")
        wait_until(lambda: any(e["type"] == "paused" for e in run.events()))
        time.sleep(0.5)
        assert not second_request.is_set() and len(server.requests) == 1
        assert run.meta["status"] == "paused"
        control.post_message("Please also check the clock.")
        control.resume()
        thread.join(30)
        assert second_request.is_set()
        texts = [block.get("text") for block in seen["last"] if block["type"] == "text"]
        assert "Message from the human watching: Please also check the clock." in texts
        assert run.meta["status"] == "finished"
    finally:
        server.close()


def test_stop_while_an_approval_waits_ends_the_run_and_answers_the_tool_use(client, desktop, tmp_path):
    server = FakeAnthropic([lambda r: message(tool_use("bash", {"command": "rm -rf /tmp/nothing-here"}))])
    control = RunControl()
    try:
        run, thread = run_in_thread(agent_for(client, desktop, server, tmp_path, control, POLICY), "Delete.")
        wait_until(lambda: control.pending)
        control.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert run.meta["status"] == "stopped"
        last = run.events()[-2]
        assert last["type"] == "result" and last["is_error"] and "stopped the run" in last["text"]
    finally:
        server.close()
