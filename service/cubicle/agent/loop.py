"""The agent loop: ask the model, carry out its tool calls on the desktop, log every step.

Each step is one model call. Everything that happens is appended to the run's log as it
happens, so a run killed at any moment keeps all completed steps. Rate limits and overloads
beyond the SDK's own retries are waited out; budgets end a run cleanly.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import httpx
from anthropic import NOT_GIVEN
from anthropic.tools import ToolError
from PIL import Image

from cubicle.anthropic import CubicleBrowser, CubicleComputer, URLRules
from cubicle.client import CubicleError, DesktopClient

from .computer import ComputerTool
from .control import RunControl, Stopped
from .conversation import Conversation
from .events import RunEvent
from .host_tools import BashTool, EditorTool
from .models import ModelProfile, UnknownModel, profile_for
from .policy import Policy
from .prompt import system_prompt
from .runs import IMAGES_DIR, Run, RunStore
from .tools import ToolCollection, ToolOutcome, halt_text

INTERRUPTED_TEXT = "The human interrupted the agent here: this action was not carried out."
STOPPED_TEXT = "The human stopped the run here: this action was not carried out."
CUT_OFF_TEXT = ("Not executed: this tool call was cut off at the output token limit. "
                "Send it again, in smaller parts if it is long.")
NOT_RUN_TEXT = "Not executed: this action was not carried out."
RESUMED_TEXT = ("Not executed: the worker carrying out this run stopped before this action ran. "
                "The run has been resumed; look at the screen again.")
RESUMED_UNKNOWN_TEXT = ("The worker carrying out this run stopped while this action was being carried out: it may "
                        "or may not have happened. The run has been resumed; look at the screen again.")
RESUMED_NOTE = ("The worker carrying out this task stopped, and the run has been resumed from its log. "
                "Time has passed: this is the screen now.")
TAKEN_OVER_TEXT = ("Not executed: a human took control of the desktop before this action ran. "
                   "You will be told when they hand it back.")
TOOLSET_VERSION = "computer_toolset_20260801"
# Members whose result already shows the screen (or is a position): no screenshot after them.
LOOKING_MEMBERS = frozenset({"screenshot", "zoom", "cursor_position"})
RETRYABLE = (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError)


@dataclass
class Budgets:
    max_steps: int = 50
    max_tokens: int | None = None  # input + output, all steps
    max_cost: float | None = None  # USD, estimated
    max_wait_s: float = 900.0  # total time waiting out overloads before giving up


def browser_refusal(model: str, tool_version: str) -> str:
    return (f"the browser toolset needs a model that takes the toolsets (the 5-series, Opus 4.8), not {model} "
            f"with {tool_version}")


def handed_back_text(actions: list[str]) -> str:
    did = ("What they did, in order:\n" + "\n".join(f"- {a}" for a in actions)) if actions else "They did not act on the desktop."
    return (f"A human took control of the desktop and has now handed it back to you. {did}\n"
            "The screen may have changed: look at it before you go on.")


class RunEnded(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Agent:
    def __init__(
        self,
        desktop: DesktopClient,
        model: str,
        store: RunStore,
        *,
        desktop_url: str = "",
        tool_version: str | None = None,
        budgets: Budgets | None = None,
        anthropic_client: anthropic.Anthropic | None = None,
        max_output_tokens: int = 4096,
        image_format: str = "png",
        on_event: Callable[[RunEvent], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        control: RunControl | None = None,
        policy: Policy | None = None,
        browser: bool = False,
    ):
        self.desktop = desktop
        self.desktop_url = desktop_url
        self.profile: ModelProfile = profile_for(model, tool_version)
        self.store = store
        self.budgets = budgets or Budgets()
        self.api = anthropic_client or anthropic.Anthropic(max_retries=2)
        self.max_output_tokens = max_output_tokens
        self.image_format = image_format
        self.on_event = on_event or (lambda event: None)
        self.control = control or RunControl()
        self.sleep = sleep or self.control.sleep  # a stop ends a wait for the model API at once
        self.bash = BashTool(desktop)
        self.editor = EditorTool(desktop)
        self.policy = policy
        if browser and self.profile.tool_version != TOOLSET_VERSION:
            raise UnknownModel(browser_refusal(model, self.profile.tool_version))
        self.browser: CubicleBrowser | None = None
        self.wants_browser = browser
        self._answered: dict[str, ToolOutcome] = {}  # this turn's tool_use id -> its outcome
        self._turn: tuple[Run, int] | None = None  # the run and step whose tools are running (for confirm)

    # -- logging ------------------------------------------------------------------------

    def _log(self, run: Run, kind: str, **fields: Any) -> RunEvent:
        event = run.append(kind, **fields)
        self.on_event(event)
        return event

    def _save_image(self, run: Run, step: int, outcome: ToolOutcome, index: int) -> str | None:
        if outcome.image is None:
            return None
        return run.save_image(step, index, outcome.image, outcome.media_type or "image/png")

    # -- the run ------------------------------------------------------------------------

    def run(self, task: str) -> Run:
        """Start a run and carry it out to its end (blocking)."""
        return self.execute(self.start(task))

    def start(self, task: str) -> Run:
        """Create the run (on disk at once) and its first screenshot; `execute` carries it out."""
        screen = self.desktop.screen()
        size = self.profile.image_size(screen.width, screen.height)
        self._offer_tools(size)
        first = self.screenshot()
        if first.is_error:
            raise CubicleError(503, "no_screenshot", first.text)
        # The size the desktop really produced is the model's coordinate space.
        with Image.open(io.BytesIO(first.image or b"")) as probe:
            if probe.size != size:
                size = probe.size
                self._offer_tools(size)
        self.screen_size = (screen.width, screen.height)
        run = self.store.create_run(task, self.profile.model, self.profile.tool_version, self.desktop_url)
        run.claim()
        self._log(run, "run_started", task=task, model=self.profile.model, tool_version=self.profile.tool_version,
                  desktop=self.desktop_url, screen={"width": screen.width, "height": screen.height},
                  image={"width": size[0], "height": size[1]}, browser=self.wants_browser)
        self.conversation = Conversation(self._system_prompt((screen.width, screen.height), size), self.tools.definitions())
        self.last_image = self._save_image(run, 0, first, 0)
        self.conversation.add_user([{"type": "text", "text": task}] + [b for b in first.content() if b["type"] == "image"])
        return run

    def resume(self, run: Run) -> Run:
        """Take up a run whose worker died: rebuild the conversation from the run's log,
        answer the tool calls left without a result (they are never replayed), and show the
        model the screen as it is now. `execute` then goes on from the last completed step."""
        run.claim()
        events = run.events()
        if any(e.get("type") == "run_finished" for e in events):
            run.release()
            raise ValueError(f"run {run.id} has finished ({run.meta['status']}): there is nothing to resume")
        started = next((e for e in events if e.get("type") == "run_started"), None)
        first_image = next(iter(sorted((run.folder / IMAGES_DIR).glob("0000-00.*"))), None)
        if started is None or first_image is None:
            run.release()
            raise ValueError(f"run {run.id} has no start in its log: it cannot be resumed")
        screen = self.desktop.screen()
        recorded = started.get("screen") or {}
        if (screen.width, screen.height) != (recorded.get("width"), recorded.get("height")):
            run.release()
            raise ValueError(f"the desktop's screen is {screen.width}x{screen.height}, the run's was "
                             f"{recorded.get('width')}x{recorded.get('height')}: the model's coordinates would be wrong")
        image = cast(dict[str, int], started.get("image") or {})  # run_started's image: the screenshots' size
        size = (image.get("width") or screen.width, image.get("height") or screen.height)
        self.wants_browser = bool(started.get("browser"))  # the tools the run had, again
        self._offer_tools(size)
        self.screen_size = (screen.width, screen.height)
        self.conversation = Conversation(self._system_prompt((screen.width, screen.height), size), self.tools.definitions())
        task = started.get("task") or run.meta.get("task", "")
        left_open = rebuild_conversation(self.conversation, run, events, task, first_image)
        now = self.screenshot()
        self.last_image = self._save_image(run, run.meta["totals"]["steps"], now, 0)
        blocks = [{"type": "text", "text": RESUMED_NOTE}] + [b for b in now.content() if b["type"] == "image"]
        if self.conversation.messages[-1]["role"] == "user":
            self.conversation.messages[-1]["content"].extend(blocks)
        else:
            self.conversation.add_user(blocks)
        run.update(status="running", stop_reason=None)
        self._log(run, "run_resumed", step=run.meta["totals"]["steps"], not_carried_out=left_open, image=self.last_image)
        return run

    # -- the tools ----------------------------------------------------------------------

    def _offer_tools(self, size: tuple[int, int]) -> None:
        """The run's tools for screenshots of `size`: the SDK's computer toolset for the models
        that take it (its confirm hook is the policy's approvals), else the beta computer tool."""
        if self.profile.tool_version == TOOLSET_VERSION:
            self.computer: ComputerTool | CubicleComputer = CubicleComputer(
                self.desktop, confirm=self._confirm, image_size=size, image_format=self.image_format)
        else:
            self.computer = ComputerTool(self.desktop, self.profile.tool_version, size, self.image_format)
        entries: list[Any] = [self.computer, self.bash, self.editor]
        if self.wants_browser:
            if self.browser is None:
                rules = URLRules(self.policy.allow_urls, self.policy.deny_urls) if self.policy and self.policy.has_url_rules else None
                self.browser = CubicleBrowser(self.desktop, confirm=self._confirm, configs=self._browser_members(),
                                              url_policy=rules if rules is not None else NOT_GIVEN)
            entries.insert(1, self.browser)
        self.tools = ToolCollection(entries)

    def _browser_members(self) -> dict[str, dict[str, bool]]:
        """The browser members the SDK leaves off: the page's console and network are only
        read; a script run in the page or a file sent from the desktop is offered only when
        the policy puts every such call before a human."""
        configs = {member: {"enabled": True} for member in ("read_console", "read_network")}
        for member in ("javascript_exec", "file_upload"):
            if self.policy is not None and self.policy.always_holds("browser", member):
                configs[member] = {"enabled": True}
        return configs

    def _system_prompt(self, screen: tuple[int, int], size: tuple[int, int]) -> str:
        """What the desktop has (an older desktop without GET /apps: the usual set)."""
        try:
            apps = [app["description"] for app in self.desktop.apps() if app["installed"]]
        except (CubicleError, httpx.HTTPError, KeyError, TypeError):
            apps = None
        return system_prompt(screen, size, apps=apps, browser=self.browser is not None)

    @property
    def image_size(self) -> tuple[int, int]:
        """The model's coordinate space: the size of the screenshots it is sent."""
        return self.computer.image_size or self.screen_size

    def screenshot(self) -> ToolOutcome:
        """The screen now, in the model's coordinate space; a desktop that cannot be reached
        or refuses is an error outcome, not an exception."""
        computer = self.computer
        if isinstance(computer, ComputerTool):
            return self._guard(lambda: [computer.screenshot()], 1)[0]
        try:
            shot = computer.screenshot_now()
        except (CubicleError, httpx.HTTPError) as error:
            return ToolOutcome(f"No screenshot could be taken: {error}", True)
        return ToolOutcome(image=shot.data, media_type=shot.media_type, extra={"settle_ms": shot.settle_ms})

    def _confirm(self, context: Any) -> bool:
        """The SDK's confirm hook for toolset members: the policy's hold and a human's decision.
        A denial is the member's error result, in the words the plain tools' denials use."""
        if self._turn is None:
            return True
        run, step = self._turn
        block = {"id": context.tool_use.id, "name": context.member, "toolset_name": context.tool_use.toolset_name,
                 "input": context.tool_use.input}
        try:
            denied = self._approval(run, step, block)
        except Stopped:
            raise ToolError(STOPPED_TEXT) from None
        if denied is not None:
            raise ToolError(denied.text)
        return True

    def execute(self, run: Run) -> Run:
        conversation = self.conversation
        try:
            self._loop(run, conversation)
        except RunEnded as end:
            self._finish(run, end.status, end.reason)
        except (KeyboardInterrupt, Stopped) as stop:
            by_ctrl_c = isinstance(stop, KeyboardInterrupt)
            text = INTERRUPTED_TEXT if by_ctrl_c else STOPPED_TEXT
            pending = conversation.pending_tool_uses()
            if pending:
                # Blocks that already ran keep their real results; only the rest are "not done".
                conversation.add_user([
                    self._result_block(block, self._answered.get(block["id"]) or ToolOutcome(text, True))
                    for block in pending
                ])
                for block in pending:
                    if block["id"] not in self._answered:
                        self._log(run, "result", step=run.meta["totals"]["steps"], tool_use_id=block["id"],
                                  is_error=True, text=text, duration_ms=0)
            if by_ctrl_c:
                self._finish(run, "interrupted", "stopped by the human (Ctrl-C)")
            else:
                self._finish(run, "stopped", "stopped by a human")
        except Exception as error:
            self._finish(run, "failed", f"{type(error).__name__}: {error}")
            raise
        finally:
            run.release()
            if self.browser is not None:
                self.browser.close()  # Playwright's connection; the desktop's Chromium stays for the viewer
        return run

    def _finish(self, run: Run, status: str, reason: str) -> None:
        run.update(status=status, stop_reason=reason)
        self._log(run, "run_finished", status=status, reason=reason, totals=run.meta["totals"])

    def _check_budgets(self, run: Run, step: int) -> None:
        totals = run.meta["totals"]
        if step > self.budgets.max_steps:
            raise RunEnded("finished", f"budget: reached the maximum of {self.budgets.max_steps} steps")
        used = totals["input_tokens"] + totals["output_tokens"] + totals["cache_read_tokens"] + totals["cache_creation_tokens"]
        if self.budgets.max_tokens is not None and used >= self.budgets.max_tokens:
            raise RunEnded("finished", f"budget: used {used} tokens of {self.budgets.max_tokens}")
        if self.budgets.max_cost is not None and totals["cost_usd"] >= self.budgets.max_cost:
            raise RunEnded("finished", f"budget: spent ${totals['cost_usd']:.4f} of ${self.budgets.max_cost:.2f}")

    def _loop(self, run: Run, conversation: Conversation) -> None:
        step = run.meta["totals"]["steps"]  # 0, or where a resumed run left off
        while True:
            step += 1
            self._checkpoint(run, conversation)
            self._check_budgets(run, step)
            pruned = conversation.prune()
            request = conversation.request()
            self._log(run, "request", step=step, messages=len(request["messages"]), images=conversation.image_count(),
                      pruned=pruned, bytes=len(json.dumps(request)))
            started = time.monotonic()
            response = self._call(run, step, request)
            usage = response.usage
            cache_read = usage.cache_read_input_tokens or 0
            cache_write = usage.cache_creation_input_tokens or 0
            cost = self.profile.cost(usage.input_tokens, usage.output_tokens, cache_read, cache_write)
            content = [block.model_dump(mode="json", exclude_none=True) for block in response.content]
            run.add_usage(usage.input_tokens, usage.output_tokens, cache_read, cache_write, cost)
            run.update(totals={**run.meta["totals"], "steps": step})
            self._log(run, "response", step=step, stop_reason=response.stop_reason, content=content,
                      usage={"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                             "cache_read_tokens": cache_read, "cache_creation_tokens": cache_write},
                      cost_usd=round(cost, 6), duration_ms=round((time.monotonic() - started) * 1000, 1))
            conversation.add_assistant(content)
            tool_uses = [block for block in content if block.get("type") == "tool_use"]
            if tool_uses:
                # At the output limit the last tool call may be cut short: never run half of it.
                truncated = tool_uses[-1] if response.stop_reason == "max_tokens" else None
                conversation.add_user(self._run_tools(run, step, tool_uses, truncated))
                continue
            if response.stop_reason == "end_turn" or response.stop_reason == "stop_sequence":
                if self.control.has_messages:
                    continue  # a human wrote while the model was finishing: let it answer
                raise RunEnded("finished", "the model ended its turn")
            if response.stop_reason == "max_tokens":
                conversation.add_user([{"type": "text", "text": "Your last message was cut off at the output limit. Continue."}])
            elif response.stop_reason == "pause_turn":
                continue  # a long server-side turn: send it back as it is and the model goes on
            elif response.stop_reason == "refusal":
                raise RunEnded("failed", "the model refused to continue")
            else:
                raise RunEnded("finished", f"stop reason {response.stop_reason!r}")

    def _checkpoint(self, run: Run, conversation: Conversation) -> None:
        """Between steps: wait out a pause, stop if asked, pass on what humans said."""
        if self.control.paused:
            self._log(run, "paused")
            run.update(status="paused")
            self.control.wait_while_paused()
            run.update(status="running")
            self._log(run, "resumed")
        if self.control.stopped:
            raise Stopped()
        blocks: list[dict[str, Any]] = []
        handed_back = self.control.take_handed_back()
        if handed_back is not None:
            blocks += self._handed_back(run, handed_back)
        messages = self.control.take_messages()
        for message in messages:
            self._log(run, "message", text=message, actor="human")
        blocks += [{"type": "text", "text": f"Message from the human watching: {m}"} for m in messages]
        if blocks:
            if conversation.messages and conversation.messages[-1]["role"] == "user":
                conversation.messages[-1]["content"].extend(blocks)
            else:
                conversation.add_user(blocks)

    def _handed_back(self, run: Run, actions: list[str]) -> list[dict[str, Any]]:
        """What the model is told when a human hands the desktop back: what they did, and
        the screen as they left it."""
        screenshot = self.screenshot()
        image = self._save_image(run, run.meta["totals"]["steps"], screenshot, 0) if not screenshot.is_error else None
        if image:
            self.last_image = image
        self._log(run, "handed_back", step=run.meta["totals"]["steps"], actions=actions, image=image, actor="human")
        return [{"type": "text", "text": handed_back_text(actions)}] + [b for b in screenshot.content() if b["type"] == "image"]

    def _call(self, run: Run, step: int, request: dict[str, Any]):
        """messages.create, waiting out overloads and rate limits past the SDK's own retries."""
        waited = 0.0
        attempt = 0
        betas = [self.profile.beta_flag] if self.profile.beta_flag else []
        while True:
            self.on_event({"type": "thinking", "step": step})
            try:
                return self.api.beta.messages.create(
                    model=self.profile.model, max_tokens=self.max_output_tokens, betas=betas, **request
                )
            except RETRYABLE as error:
                wait = min(60.0, 2.0 * 2 ** attempt)
                headers = getattr(getattr(error, "response", None), "headers", None) or {}
                retry_after = headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(300.0, max(1.0, float(retry_after)))
                if waited + wait > self.budgets.max_wait_s:
                    raise RunEnded("failed", f"the model API kept failing for {waited:.0f} s: {error}") from None
                self._log(run, "retry", step=step, error=f"{type(error).__name__}: {getattr(error, 'status_code', '')} {error}"[:500], wait_s=wait)
                self.sleep(wait)
                waited += wait
                attempt += 1
            except anthropic.APIStatusError as error:
                raise RunEnded("failed", f"the model API refused the request: {error.status_code} {error.message}"[:1000]) from None

    # -- tools --------------------------------------------------------------------------

    def _result_block(self, block: dict[str, Any], outcome: ToolOutcome) -> dict[str, Any]:
        return _result_block(block, outcome)

    def _approval(self, run: Run, step: int, block: dict[str, Any]) -> ToolOutcome | None:
        """None to go ahead; an error outcome when the policy holds the action and a human
        denies it. Blocks until the human decides."""
        if self.policy is None:
            return None
        tool_input = block.get("input") or {}
        tool, name = self._tool_and_name(block)
        title = None
        if self.policy.needs_window_title:
            try:
                focused = [w for w in self.desktop.windows() if w.focused]
            except (httpx.HTTPError, CubicleError):
                focused = []  # unknown title: a rule that needs one does not match
            title = focused[0].title if focused else None
        hold = self.policy.check(tool, name, tool_input, title)
        if hold is None:
            return None
        approval_id = block["id"]
        what = {"approval_id": approval_id, "step": step, "tool": tool, "name": name, "input": tool_input,
                "reason": hold.reason, "window_title": title}
        self._log(run, "approval_requested", **what)
        approved, note = self.control.wait_for_decision(approval_id, what)
        self._log(run, "approval_decided", approval_id=approval_id, approved=approved, note=note)
        if approved:
            return None
        return ToolOutcome(f"A human denied this action ({hold.reason})" + (f": {note}" if note else "."), is_error=True)

    def _run_tools(self, run: Run, step: int, blocks: list[dict[str, Any]],
                   truncated: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Carry out a turn's tool calls in order and answer every one of them. After the first
        failure the rest are not run (the toolsets' batch rule, for every tool); a takeover
        leaves the rest of the turn, planned for a screen the human is now changing, undone."""
        self._answered = {}
        self._turn = (run, step)
        failed = False
        try:
            for index, block in enumerate(blocks):
                if self.control.stopped:
                    raise Stopped()
                if self.control.taken_over and not failed:
                    for rest in blocks[index:]:
                        self._answered[rest["id"]] = ToolOutcome(TAKEN_OVER_TEXT, True)
                        self._log(run, "result", step=step, tool_use_id=rest["id"], is_error=True,
                                  text=TAKEN_OVER_TEXT, duration_ms=0)
                    break
                if failed:
                    outcome = ToolOutcome(halt_text(block), True)
                elif block is truncated:
                    outcome = ToolOutcome(CUT_OFF_TEXT, True)
                elif block.get("toolset_name"):
                    batch_ends = index + 1 == len(blocks) or blocks[index + 1].get("toolset_name") != block["toolset_name"]
                    outcome = self._run_member(run, step, block, batch_ends)
                else:
                    outcome = self._run_tool(run, step, block)
                self._answered[block["id"]] = outcome
                failed = failed or outcome.is_error
        finally:
            self._turn = None
        return [self._result_block(block, self._answered[block["id"]]) for block in blocks]

    def _run_member(self, run: Run, step: int, block: dict[str, Any], batch_ends: bool) -> ToolOutcome:
        """A toolset member, through the SDK's own class (its confirm hook holds it for approval).
        The last member of a turn's run of members, if it changed the screen, gets the settled
        screen on its result: the model need not ask for it in a turn of its own."""
        self._log_action(run, step, block)
        started = time.monotonic()
        (outcome,) = self._guard(lambda: [self.tools.run(block)], 1)
        if (batch_ends and not outcome.is_error and outcome.image is None and block.get("toolset_name") == "computer"
                and block.get("name") not in LOOKING_MEMBERS):
            after = self.screenshot()
            if not after.is_error:
                outcome.image, outcome.media_type, outcome.extra = after.image, after.media_type, after.extra
        self._log_results(run, step, [block], [outcome], started, len(self._answered))
        return outcome

    def _run_tool(self, run: Run, step: int, block: dict[str, Any]) -> ToolOutcome:
        """A plain tool: held for approval first if the policy says so, then carried out."""
        denied = self._approval(run, step, block)
        if denied:
            return denied
        self._log_action(run, step, block)
        started = time.monotonic()
        (outcome,) = self._guard(lambda: [self.tools.run(block)], 1)
        self._log_results(run, step, [block], [outcome], started, len(self._answered))
        return outcome

    @staticmethod
    def _guard(action: Callable[[], list[ToolOutcome]], count: int) -> list[ToolOutcome]:
        """A desktop that cannot be reached fails the action, not the run: the model is told
        and may wait and try again."""
        try:
            return action()
        except httpx.HTTPError as error:
            text = f"The desktop could not be reached ({type(error).__name__}: {error}); wait a moment and try again."
            return [ToolOutcome(text, True)] + [ToolOutcome(halt_text({}), True) for _ in range(count - 1)]

    @staticmethod
    def _tool_and_name(block: dict[str, Any]) -> tuple[str, str | None]:
        """('computer', 'left_click'), ('browser', 'navigate'), ('bash', None), ('str_replace_based_edit_tool', 'view')."""
        tool_input = block.get("input") or {}
        if block.get("toolset_name"):
            return block["toolset_name"], block["name"]
        if block.get("name") == "computer":
            return "computer", tool_input.get("action")
        # A tool_use block always names its tool.
        return cast(str, block.get("name")), tool_input.get("command") if block.get("name") != "bash" else None

    def _log_action(self, run: Run, step: int, block: dict[str, Any]) -> None:
        tool, action = self._tool_and_name(block)
        self._log(run, "action", step=step, tool_use_id=block["id"], tool=tool, name=action,
                  input=block.get("input") or {}, image=self.last_image, actor="model")

    def _log_results(self, run, step, blocks, outcomes, started, first_index) -> None:
        duration = round((time.monotonic() - started) * 1000, 1)
        for offset, (block, outcome) in enumerate(zip(blocks, outcomes)):
            image = self._save_image(run, step, outcome, first_index + offset + 1)
            if image:
                self.last_image = image
            self._log(run, "result", step=step, tool_use_id=block["id"], is_error=outcome.is_error,
                      text=outcome.text, image=image, duration_ms=duration, settle_ms=outcome.extra.get("settle_ms"))


# -- rebuilding a conversation from a run's log (for resume) --------------------------------


def _stored_outcome(run: Run, event: RunEvent) -> ToolOutcome:
    image, media_type = None, None
    path = event.get("image")
    if isinstance(path, str) and path.startswith(IMAGES_DIR + "/") and (run.folder / path).is_file():
        image = (run.folder / path).read_bytes()
        media_type = "image/jpeg" if path.endswith(".jpg") else "image/" + path.rsplit(".", 1)[-1]
    return ToolOutcome(event.get("text") or "", bool(event.get("is_error")), image, media_type)


def _image_block(data: bytes, media_type: str | None) -> dict[str, Any]:
    return ToolOutcome(image=data, media_type=media_type).content()[-1]


def rebuild_conversation(conversation: Conversation, run: Run, events: list[RunEvent], task: str,
                         first_image) -> int:
    """Replay the log into `conversation`, as the loop built it: each model turn, the results
    of its tool calls (with their screenshots, from the run's images), what humans said and
    did. Tool calls the log has no result for are answered "not executed". Returns how many
    of the last turn's calls were left without a result."""
    media = "image/jpeg" if first_image.suffix == ".jpg" else "image/" + first_image.suffix[1:]
    user: list[dict[str, Any]] = [{"type": "text", "text": task}, _image_block(first_image.read_bytes(), media)]
    calls: list[dict[str, Any]] = []  # tool_use blocks of the last model turn
    results: dict[str, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []  # what the loop added after the results: messages, hand backs

    started: set[str | None] = set()  # calls whose action was logged as begun

    def close_turn(missing_text: str) -> int:
        nonlocal user, calls, results, extra
        missing = [c for c in calls if c["id"] not in results]
        blocks = [results.get(c["id"]) or _result_block(c, ToolOutcome(
            RESUMED_UNKNOWN_TEXT if missing_text == RESUMED_TEXT and c["id"] in started else missing_text, True))
            for c in calls]
        user, calls, results, extra = user + blocks + extra, [], {}, []
        started.clear()
        return len(missing)

    for event in events:
        kind = event.get("type")
        if kind == "response":
            close_turn(NOT_RUN_TEXT)
            if user:
                conversation.add_user(user)
            user = []
            content = event.get("content") or []
            conversation.add_assistant(content)
            calls = [block for block in content if block.get("type") == "tool_use"]
            if not calls and event.get("stop_reason") == "max_tokens":
                user = [{"type": "text", "text": "Your last message was cut off at the output limit. Continue."}]
        elif kind == "action" and event.get("actor") != "human":
            started.add(event.get("tool_use_id"))
        elif kind == "result" and event.get("actor") != "human":
            call = next((c for c in calls if c["id"] == event.get("tool_use_id")), None)
            if call is not None:
                results[call["id"]] = _result_block(call, _stored_outcome(run, event))
        elif kind == "message":
            extra.append({"type": "text", "text": f"Message from the human watching: {event.get('text', '')}"})
        elif kind == "handed_back":
            extra.append({"type": "text", "text": handed_back_text(event.get("actions") or [])})
            if event.get("image"):
                outcome = _stored_outcome(run, event)
                if outcome.image:
                    extra.append(_image_block(outcome.image, outcome.media_type))
    left_open = close_turn(RESUMED_TEXT)
    if user:
        conversation.add_user(user)
    return left_open


def _result_block(block: dict[str, Any], outcome: ToolOutcome) -> dict[str, Any]:
    result = {"type": "tool_result", "tool_use_id": block["id"], "content": outcome.content(), "is_error": outcome.is_error}
    if block.get("toolset_name"):
        result["toolset_name"] = block["toolset_name"]
    return result
