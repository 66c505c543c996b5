"""`cubicle agent run`: one task, live progress in the terminal, the run saved on disk; with a
policy, held actions are put to the person at the terminal."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from .control import RunControl
from .models import TOOL_VERSIONS, UnknownModel


def add_arguments(parser) -> None:
    parser.add_argument("task", help="what the agent should do, in plain words")
    parser.add_argument("--desktop", default=os.environ.get("CUBICLE_DESKTOP_URL", "http://127.0.0.1:8000"),
                        help="the desktop's URL (default $CUBICLE_DESKTOP_URL or http://127.0.0.1:8000; its token is "
                        "$CUBICLE_TOKEN), or 'new': a desktop of the fleet ($CUBICLE_FLEET_URL, $CUBICLE_FLEET_TOKEN), "
                        "deleted when the run ends")
    parser.add_argument("--keep-desktop", action="store_true", help="with --desktop new: keep the desktop afterwards")
    parser.add_argument("--browser", action="store_true",
                        help="also give the model the browser toolset, on the desktop's Chromium (toolset models)")
    parser.add_argument("--model", default=os.environ.get("CUBICLE_MODEL", "claude-sonnet-5"),
                        help="Claude model id (default $CUBICLE_MODEL or claude-sonnet-5)")
    parser.add_argument("--tool-version", choices=TOOL_VERSIONS, default=None,
                        help="override the computer tool version chosen from the model")
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens in all")
    parser.add_argument("--max-cost", type=float, default=None, help="stop after this many USD (estimated)")
    parser.add_argument("--runs-dir", default=None, help="where runs are saved (default $CUBICLE_RUNS_DIR or ./runs)")
    parser.add_argument("--policy", default=None, metavar="FILE",
                        help="a policy file (TOML): actions it holds wait for your approval in the terminal")


def add_resume_arguments(parser) -> None:
    parser.add_argument("run_id", help="the run to take up (a unique prefix is enough)")
    parser.add_argument("--desktop", default=None,
                        help="the desktop's URL (default: the run's own); its token is $CUBICLE_TOKEN")
    parser.add_argument("--max-steps", type=int, default=None, help="the run's step budget, counted from its start (default 50)")
    parser.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens in all")
    parser.add_argument("--max-cost", type=float, default=None, help="stop after this many USD (estimated)")
    parser.add_argument("--runs-dir", default=None, help="where runs are saved (default $CUBICLE_RUNS_DIR or ./runs)")
    parser.add_argument("--policy", default=None, metavar="FILE",
                        help="a policy file (TOML): actions it holds wait for your approval in the terminal")


class Progress:
    """One line per action and result; a spinner while the model thinks (only on a terminal)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self._spinning = threading.Event()
        self._spinner: threading.Thread | None = None
        self.totals = {"input": 0, "output": 0, "cost": 0.0}

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"

    def _spin(self, step: int) -> None:
        for frame in itertools.cycle("|/-\\"):
            if not self._spinning.is_set():
                break
            self.stream.write(f"\r{self._elapsed()}  step {step:3}  {frame} thinking ")
            self.stream.flush()
            time.sleep(0.1)
        self.stream.write("\r" + " " * 40 + "\r")

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinning.clear()
            self._spinner.join()
            self._spinner = None

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind == "thinking":
            if self.tty and self._spinner is None:
                self._spinning.set()
                self._spinner = threading.Thread(target=self._spin, args=(event["step"],), daemon=True)
                self._spinner.start()
            return
        self._stop_spinner()
        line = None
        if kind == "response":
            usage = event["usage"]
            self.totals["input"] += usage["input_tokens"] + usage["cache_read_tokens"] + usage["cache_creation_tokens"]
            self.totals["output"] += usage["output_tokens"]
            self.totals["cost"] += event["cost_usd"]
            texts = [block["text"] for block in event["content"] if block.get("type") == "text"]
            line = (f"step {event['step']:3}  model {event['duration_ms'] / 1000:.1f}s  "
                    f"tokens in {self.totals['input']:,} out {self.totals['output']:,}  ${self.totals['cost']:.4f}")
            if texts:
                line += "\n" + " " * 10 + " ".join(texts).strip().replace("\n", "\n" + " " * 10)
        elif kind == "action":
            shown = {k: v for k, v in (event["input"] or {}).items() if k not in ("action", "file_text")}
            line = f"          {event['tool']}: {event['name']} {shown if shown else ''}"
        elif kind == "result" and event["is_error"]:
            line = f"          error: {event['text']}"
        elif kind == "retry":
            line = f"          the model API failed ({event['error'][:80]}); waiting {event['wait_s']:.0f}s"
        elif kind == "run_finished":
            line = f"{event['status']}: {event['reason']}"
        if line:
            self.stream.write(f"{self._elapsed()}  {line}\n")
            self.stream.flush()


def ask_at_the_terminal(what: dict[str, Any], stream=sys.stdout) -> tuple[bool, str]:
    """Show a held action and ask whether it may run: (approved, note). Without an answer
    (end of input) it is denied."""
    shown = {k: v for k, v in (what.get("input") or {}).items() if k != "action"}
    stream.write(f"\n  held for approval ({what.get('reason')}):\n    {what.get('tool')}"
                 f"{': ' + what['name'] if what.get('name') else ''} {shown}\n")
    stream.flush()
    try:
        answer = input("  run it? [y/N, or a reason to deny] ").strip()
    except EOFError:
        return False, "nobody was at the terminal to approve it"
    if answer.lower() in ("y", "yes"):
        return True, ""
    return False, "" if answer.lower() in ("", "n", "no") else answer


class TerminalControl(RunControl):
    """Held actions are put to the person at the terminal, in the agent's own thread."""

    def wait_for_decision(self, approval_id: str, what: dict) -> tuple[bool, str]:
        return ask_at_the_terminal(what)


def _load_policy(args):
    from .policy import Policy, PolicyError

    if not getattr(args, "policy", None):
        return None
    try:
        return Policy.load(args.policy)
    except PolicyError as error:
        print(f"cubicle agent: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def resume_run(args) -> int:
    """`cubicle agent resume ID`: carry on a run whose worker died, from its last completed step."""
    import httpx

    from cubicle.client import CubicleError, DesktopClient

    from .loop import Agent, Budgets
    from .runs import RunBusy, RunNotFound, RunStore

    policy = _load_policy(args)
    store = RunStore(args.runs_dir)
    try:
        run = store.open(args.run_id)
    except RunNotFound as error:
        print(f"cubicle agent resume: {error}", file=sys.stderr)
        return 2
    meta = run.meta
    desktop_url = args.desktop or meta.get("desktop") or "http://127.0.0.1:8000"
    progress = Progress()
    with DesktopClient(desktop_url, timeout=120) as desktop:
        agent = Agent(desktop, meta["model"], store, desktop_url=desktop_url, tool_version=meta.get("tool_version"),
                      budgets=Budgets(args.max_steps or 50, args.max_tokens, args.max_cost), on_event=progress,
                      policy=policy, control=TerminalControl() if policy else None)
        try:
            agent.resume(run)
        except (RunBusy, ValueError) as error:
            print(f"cubicle agent resume: {error}", file=sys.stderr)
            return 2
        except (CubicleError, httpx.HTTPError) as error:
            run.release()
            print(f"cubicle agent resume: the desktop at {desktop_url} is not usable: {error}", file=sys.stderr)
            return 2
        print(f"resuming run {run.id} after step {run.meta['totals']['steps']}", flush=True)
        agent.execute(run)
    print(f"run {run.id} saved in {run.folder}  (cubicle runs show {run.id} --replay)")
    return 0 if run.meta["status"] == "finished" else 1


def run_task(args) -> int:
    # Imported here: building the `cubicle` parser must not need the agent extra (anthropic).
    from cubicle.client import DesktopClient
    from cubicle.web import ApiError

    from .fleet_desktops import NEW, FleetDesktops
    from .loop import Agent, Budgets
    from .runs import RunStore

    policy = _load_policy(args)
    store = RunStore(args.runs_dir)
    progress = Progress()
    url, token, fleet, claimed = args.desktop, None, None, None
    if args.desktop == NEW:
        fleet = FleetDesktops.from_environment()
        try:
            claimed = fleet.claim(labels={"cubicle.worker": "agent-run"})
        except ApiError as error:
            print(f"cubicle agent: {error.message}", file=sys.stderr)
            return 2
        url, token = claimed.urls.api, claimed.token
        RunStore.add_secret(token)
        print(f"cubicle agent: desktop {claimed.id} of the fleet, live at {claimed.urls.view}#token=<its token>",
              file=sys.stderr)
    try:
        with DesktopClient(url, token, timeout=120) as desktop:
            try:
                agent = Agent(desktop, args.model, store, desktop_url=url, tool_version=args.tool_version,
                              budgets=Budgets(args.max_steps, args.max_tokens, args.max_cost), on_event=progress,
                              policy=policy, control=TerminalControl() if policy else None, browser=args.browser)
            except UnknownModel as error:
                print(f"cubicle agent: {error}", file=sys.stderr)
                return 2
            run = agent.run(args.task)
    finally:
        if claimed is not None and fleet is not None and not args.keep_desktop:
            fleet.release(claimed.id)
    print(f"run {run.id} saved in {run.folder}  (cubicle runs show {run.id} --replay)")
    return 0 if run.meta["status"] == "finished" else 1
