"""Fuzzing the desktop's and the worker's HTTP APIs with schemathesis, from their own OpenAPI
schemas: every operation, with the token, data that fits the schema and data that does not.
No answer may be a 5xx, and every answer must be what the schema says (status, content type,
body and headers); data that breaks the schema must be refused with a 4xx.

The desktop under fuzz is one of its own (like test_session.py's), with CUBICLE_FILES_ROOT
set to a temporary folder, so the shared test desktop is never touched. Even so, a generated
request must not do harm on the machine that runs the tests, so a few values are tamed before
they are sent, and only ever from one valid value to another (data meant to break the schema
still breaks it):
- /shell/run: the generated text reaches bash as the content of a here-document printed by
  `cat`, not as commands (random text would run as the test user's commands);
- /apps/launch: the program is `true`, the generated arguments are kept;
- /files: relative paths are put inside the files root; other paths are refused by the
  server itself (403 outside_root), which is part of what is tested;
- waits, hold_key durations, settle times, launch timeouts, batches, drag paths and typed
  text are kept short, and clicks stay off the panel (its launchers start Firefox and LibreOffice), so
  the run stays within its time bound.

The run is bounded: CUBICLE_FUZZ_EXAMPLES examples per operation and mode (default 40),
derandomized so that CI sees the same cases every time; set CUBICLE_FUZZ_SEED to any other
value to explore other ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import anthropic
import httpx
import hypothesis
import pytest
import schemathesis
from conftest import Serving, running_desktop
from cubicle.agent.runs import RunStore
from cubicle.agent.service import create_worker_app
from fake_anthropic import FakeAnthropic, message, text
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CUBICLE_FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("CUBICLE_FUZZ_SEED")
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# positive_data_acceptance is left out on purpose: a coordinate's bounds, a key's name and
# whether a window exists depend on the live desktop, which no schema can say, so valid-looking
# data is rightly refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

WORKER_CHECKS = CHECKS  # the worker's schema documents its errors too
MODEL = "claude-haiku-4-5"
WORKER_TOKEN = "fuzz-worker-token-" + secrets.token_hex(8)
API_KEY = "sk-ant-fuzz-" + "f" * 24


# -- taming: valid values that would take long or do harm become valid values that do not --


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cap(holder: dict, key: str, low: float, high: float, to: float) -> None:
    """holder[key] = to, if it is a number in (low, high]: a valid value stays valid, an
    invalid one is left as it is."""
    value = holder.get(key)
    if _number(value) and low < value <= high:
        holder[key] = to


def _coordinate_off_panel(value: Any, height: int) -> Any:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        x, y = value
        if height * 0.9 <= y < height:
            return [x, y // 2]
    return value


def _tame_action(action: Any, height: int) -> None:
    if not isinstance(action, dict):
        return
    kind = action.get("action")
    if kind in ("wait", "hold_key"):
        _cap(action, "duration", 0.05, 300, 0.05)
    # Shortened only while within the schema's limits (20000 characters, 1000 points).
    if kind == "type" and isinstance(action.get("text"), str) and 200 < len(action["text"]) <= 20_000:
        action["text"] = action["text"][:200]
    if kind == "left_click_drag" and isinstance(action.get("path"), list) and 10 < len(action["path"]) <= 1000:
        action["path"] = action["path"][:10]
    for key in ("coordinate", "start_coordinate"):
        if key in action:
            action[key] = _coordinate_off_panel(action[key], height)
    if isinstance(action.get("path"), list):
        action["path"] = [_coordinate_off_panel(point, height) for point in action["path"]]


def _tame_settle(holder: Any) -> None:
    if isinstance(holder, dict):
        _cap(holder, "quiet_ms", 100, 5000, 100)
        _cap(holder, "timeout_ms", 1000, 60000, 1000)


def keep_unknown_query_keys(case) -> None:
    """An undeclared query parameter whose value is None or an empty list would be dropped by
    the HTTP client, sending a valid request that schemathesis still counts as breaking the
    schema: send such a value as JSON text, so the server really gets the unknown parameter."""
    if isinstance(case.query, dict):
        declared = {parameter.name for parameter in case.operation.query}
        for key, value in case.query.items():
            if key not in declared and (value is None or isinstance(value, (list, dict))):
                case.query[key] = json.dumps(value)


def tame_desktop_case(case, files_root: str) -> None:
    keep_unknown_query_keys(case)
    where = (case.method.upper(), case.path)
    body = case.body
    if where == ("POST", "/actions"):
        batch = body
        if isinstance(body, dict) and "action" not in body:
            batch = body.get("actions")
            space = body.get("coordinate_space")
            _tame_settle(body.get("settle"))
        else:
            space = None
        height = space["height"] if isinstance(space, dict) and isinstance(space.get("height"), int) and space["height"] > 0 else 800
        if isinstance(batch, list) and 10 < len(batch) <= 100:  # at most 100 actions: stays valid
            del batch[10:]
        for action in batch if isinstance(batch, list) else [batch]:
            _tame_action(action, height)
    elif where == ("GET", "/screenshot") and isinstance(case.query, dict):
        _tame_settle(case.query)
    elif where == ("POST", "/shell/run") and isinstance(body, dict):
        command = body.get("command")
        if isinstance(command, str) and command.strip() and "\0" not in command:
            end = "FUZZ_END_" + secrets.token_hex(8)
            body["command"] = f"cat <<'{end}'\n{command}\n{end}"
        _cap(body, "timeout", 10, 600, 10)
    elif where == ("POST", "/apps/launch") and isinstance(body, dict):
        command = body.get("command")
        if isinstance(command, str) and command.strip():
            body["command"] = "true " + command
        elif isinstance(command, list) and command and all(isinstance(part, str) for part in command):
            body["command"] = ["true", *command[1:]]
        if "timeout" not in body:
            body["timeout"] = 0.1  # the default, 20 s, would be waited out in full: no window comes
        _cap(body, "timeout", 0.1, 120, 0.1)
    elif where in (("GET", "/files"), ("PUT", "/files")):
        holder = case.query if where[0] == "GET" else body
        if isinstance(holder, dict) and isinstance(holder.get("path"), str) and not holder["path"].startswith("/"):
            holder["path"] = files_root + "/" + holder["path"]


# -- the fuzzing loop -----------------------------------------------------------------------


def fuzz(schema, call: Callable[[Any], None]) -> tuple[list[str], list[str], list[str]]:
    """Every operation of the schema in both modes; returns (operations, failures, the
    operations that no request can break the schema of)."""
    operations, failures, unbreakable = [], [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)
        for mode in MODES:
            settings = hypothesis.settings(
                max_examples=EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                verbosity=hypothesis.Verbosity.quiet, print_blob=False,
            )

            @settings
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                call(case)

            if SEED is not None:
                run = hypothesis.seed(int(SEED))(run)
            started = time.monotonic()
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to break: no parameters or body, or only a path parameter that is
                # any string (a bad window id is a 4xx the positive cases already get).
                if mode is GenerationMode.POSITIVE:
                    failures.append(f"{operation.label} ({mode.value}): no case could be generated")
                else:
                    unbreakable.append(operation.label)
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every failure is reported at the end
                report = str(error)
                failures.append(f"{operation.label} ({mode.value}): {report[:3000]}{' [...]' if len(report) > 3000 else ''}")
            print(f"fuzz {operation.label} {mode.value}: {time.monotonic() - started:.1f}s")
    return operations, failures, unbreakable


def caller(base_url: str, token: str, tame: Callable[[Any], None], checks=CHECKS):
    def call(case) -> None:
        tame(case)
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        case.validate_response(response, checks=checks, headers=headers)
    return call


# -- the desktop --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_desktop(tmp_path_factory):
    """A desktop of its own whose file routes are kept inside a temporary folder."""
    files_root = tmp_path_factory.mktemp("fuzz-files")
    with contextlib.ExitStack() as stack:
        # Set only while the desktop starts: it must not reach a desktop started later.
        with mock.patch.dict(os.environ, {"CUBICLE_FILES_ROOT": str(files_root)}):
            running = stack.enter_context(running_desktop(tmp_path_factory.mktemp("fuzz-desktop")))
        yield running, files_root


# A refusal of data that breaks the schema is one of these; 5xx is not (schemathesis would
# count it as a rejection too), and 413 is how an oversized body is refused.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 413, 415, 422]}}}
)


def _tuples_as_arrays(node: Any) -> Any:
    """Draft 2020-12 tuples whose members are all alike (`region`: four integers) as the
    equivalent plain array: schemathesis turns `prefixItems` into a draft-4 `items` list when
    it checks responses, and its 2020-12 validator then rejects the schema itself."""
    if isinstance(node, dict):
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and prefix and "items" not in node and all(item == prefix[0] for item in prefix):
            node = {**{k: v for k, v in node.items() if k != "prefixItems"}, "items": prefix[0]}
            node.setdefault("minItems", len(prefix))
            node.setdefault("maxItems", len(prefix))
        return {key: _tuples_as_arrays(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_tuples_as_arrays(item) for item in node]
    return node


def load_schema(url: str, token: str):
    response = httpx.get(url + "/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return schemathesis.openapi.from_dict(_tuples_as_arrays(response.json()), config=CONFIG)


def test_the_desktop_api_holds_up_under_fuzzing(fuzz_desktop):
    desktop, files_root = fuzz_desktop
    schema = load_schema(desktop.url, desktop.token)
    operations, failures, unbreakable = fuzz(schema, caller(desktop.url, desktop.token, lambda case: tame_desktop_case(case, str(files_root))))
    assert failures == [], "\n\n".join(failures)
    # Every route was fuzzed, those with a body or parameters with schema-breaking data too,
    # and the desktop is still whole afterwards.
    inputs = {"GET /screenshot", "POST /actions", "POST /apps/launch", "PUT /clipboard", "POST /shell/run", "GET /files", "PUT /files"}
    assert inputs <= set(operations) and not inputs & set(unbreakable)
    health = httpx.get(desktop.url + "/health", timeout=10)
    assert health.status_code == 200, health.text
    assert all(path.resolve().is_relative_to(files_root.resolve()) for path in files_root.rglob("*"))


# -- the worker ---------------------------------------------------------------------------


def tame_worker_case(case, desktop, run_ids: list[str], image: str) -> None:
    """Runs start only on the fuzz desktop, with its token: a generated URL would send the
    worker (and a token) to whatever host it names. Two in three generated run ids are
    swapped for ids of real runs (a finished one, an active one), and every other image name
    for a real one, so that more than the 'not found' paths are exercised."""
    keep_unknown_query_keys(case)
    parameters = case.path_parameters
    if isinstance(parameters, dict):
        if isinstance(parameters.get("run_id"), str):
            choice = len(parameters["run_id"]) % 3
            if choice < 2:
                parameters["run_id"] = run_ids[choice]
        if isinstance(parameters.get("name"), str) and len(parameters["name"]) % 2 == 0:
            parameters["name"] = image
    if (case.method.upper(), case.path) == ("POST", "/runs") and isinstance(case.body, dict):
        if isinstance(case.body.get("desktop"), str):
            case.body["desktop"] = desktop.url
        if isinstance(case.body.get("desktop_token"), str):
            case.body["desktop_token"] = desktop.token


def test_the_worker_api_holds_up_under_fuzzing(fuzz_desktop, desktop, tmp_path):
    fuzzed, _ = fuzz_desktop
    api = FakeAnthropic([])  # every model call ends its run: "(script exhausted)"
    gate = threading.Event()
    waiting = FakeAnthropic([lambda request: (gate.wait(120), message(text("done")))[1]])
    apis = iter([api, waiting])  # the second run waits for its first answer until the fuzzing is over

    def client() -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=API_KEY, base_url=next(apis, api).url, max_retries=0)

    app = create_worker_app(WORKER_TOKEN, RunStore(tmp_path / "runs"), anthropic_factory=client, default_desktop=fuzzed.url)
    serving = Serving(app)
    url = f"http://127.0.0.1:{serving.port}"
    headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    try:
        # As `cubicle agent serve` is run beside its desktop: with that desktop's token.
        with mock.patch.dict(os.environ, {"CUBICLE_TOKEN": fuzzed.token}):
            finished = httpx.post(url + "/runs", json={"task": "look", "model": MODEL}, headers=headers, timeout=60).json()
            deadline = time.monotonic() + 60
            while httpx.get(url + f"/runs/{finished['id']}", headers=headers, timeout=60).json()["active"]:
                assert time.monotonic() < deadline, "the first run never finished"
                time.sleep(0.05)
            image = min((tmp_path / "runs" / finished["id"] / "images").iterdir()).name
            # The active run is on the shared desktop (it only takes a screenshot there), so the
            # fuzz desktop stays free for the runs the fuzzing starts.
            active = httpx.post(url + "/runs", json={"task": "wait", "model": MODEL, "desktop": desktop.url,
                                                     "desktop_token": desktop.token}, headers=headers, timeout=60)
            assert active.status_code == 201, active.text
            run_ids = [finished["id"], active.json()["id"]]
            schema = load_schema(url, WORKER_TOKEN)

            def tame(case) -> None:
                tame_worker_case(case, fuzzed, run_ids, image)

            operations, failures, unbreakable = fuzz(schema, caller(url, WORKER_TOKEN, tame, WORKER_CHECKS))
        assert failures == [], "\n\n".join(failures)
        inputs = {"POST /runs", "GET /runs/{run_id}", "POST /runs/{run_id}/message", "POST /runs/{run_id}/approvals/{approval_id}"}
        assert inputs <= set(operations) and not inputs & set(unbreakable)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        gate.set()
        serving.stop()
        api.close()
        waiting.close()
