"""The HTTP APIs of the desktop, the worker and the fleet, tried as an API user would:
schemathesis' command line against each running service, from the OpenAPI schema the service
publishes, with every check (`--checks all`) and every phase (examples, coverage, fuzzing,
stateful). Any finding fails the test, with schemathesis' report: a 5xx, an answer the schema
does not describe (status, content type, headers, body), data that breaks the schema but is
taken, valid data that is refused, a wrong `Allow` on a 405, a route that ignores its token.

The schemas say what the servers refuse. What no schema can say is in tests/schemathesis.toml,
each exception with its reason (coordinates and key names depend on the live desktop, say),
and so is each 5xx that is the documented answer (503 from a worker without a fleet). The
requests are made safe for the machine that runs the tests by tests/fuzz_hooks.py, which the
command line applies to every case of every phase, stateful ones included (shell text never
runs as commands, launches run `true`, files stay inside a temporary folder, waits are short,
runs go only to the fuzz desktop); the desktop under fuzz is one of its own, whose file
routes are kept inside that folder. The MCP face (/mcp on the desktop) has no OpenAPI schema:
it is not in the desktop's, and tests/test_mcp*.py try it with MCP clients.

The run is bounded: CUBICLE_FUZZ_EXAMPLES examples per operation (default 30) and
derandomized, so that CI sees the same cases every time; set CUBICLE_FUZZ_SEED to explore
other ones and CUBICLE_FUZZ_EXAMPLES to go further (a few hundred for a long run).

`schemathesis_run` takes any service (a base URL, its token, the hooks' settings and a
working folder): another service is fuzzed by a test that starts it and calls it, with a
[[project]] of its own in the config file (chosen by its schema's title).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest

from cubicle.agent.scripted_api import ScriptedAPI, message, text
from cubicle.fleet.backends.docker import OWNER_LABEL
from engines import desktop_image, docker_client, new_fleet
from support import free_port, running_desktop, wait_until

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "fuzz_hooks.py"
CONFIG = HERE / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = int(os.environ.get("CUBICLE_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("CUBICLE_FUZZ_SEED")
PHASES = "examples,coverage,fuzzing,stateful"
# Beyond pytest's 300 s for a test: a wider run takes longer.
pytestmark = pytest.mark.timeout(600 + 60 * EXAMPLES)
MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-fuzz-" + "f" * 24


def schemathesis_run(base_url: str, token: str, hooks: dict[str, str], workdir: Path, config: Path = CONFIG,
                     timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` against the service at `base_url`, from the schema it publishes (read
    with `token`), with every check and phase, the hooks of tests/fuzz_hooks.py (`hooks`: their
    CUBICLE_FUZZ_* settings, without the prefix) and `config`. Its report is printed (pytest
    shows it when the test fails) and kept in `workdir`, where it runs."""
    published = httpx.get(base_url + "/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert published.status_code == 200, published.text
    schema = workdir / "openapi.json"
    schema.write_text(published.text, encoding="utf-8")
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run", str(schema), "--url", base_url,
        "--checks", "all", "--phases", PHASES, "--max-examples", str(EXAMPLES), "--workers", "1",
        "--request-timeout", "60", "--suppress-health-check", "all", "--report", "har", "--report-dir", str(workdir),
    ]
    command += ["--seed", SEED] if SEED is not None else ["--seed", "0", "--generation-deterministic"]
    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(HOOKS), CUBICLE_FUZZ_TOKEN=token)
    env.update({f"CUBICLE_FUZZ_{name}": value for name, value in hooks.items()})
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    (workdir / "report.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    print(result.stdout, result.stderr, f"schemathesis: {time.monotonic() - started:.0f}s, report in {workdir}", sep="\n")
    return result


def answers(workdir: Path) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request of the run, from its HAR report."""
    (har,) = workdir.glob("har-*.json")
    entries = json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]
    return [(entry["request"]["method"], urlsplit(entry["request"]["url"]).path, entry["response"]["status"])
            for entry in entries]


def assert_no_findings(result: subprocess.CompletedProcess[str]) -> None:
    """Exit code 0: no failure and no error (a schema schemathesis cannot read is one)."""
    assert result.returncode == 0, (f"schemathesis exited with {result.returncode}:\n"
                                    f"{result.stdout[-30000:]}\n{result.stderr[-5000:]}")


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


def test_the_desktop_api_passes_every_schemathesis_check(fuzz_desktop, tmp_path):
    desktop, files_root = fuzz_desktop
    headers = {"Authorization": f"Bearer {desktop.token}"}
    windows = httpx.get(desktop.url + "/windows", headers=headers, timeout=30).json()
    panel = [str(window["id"]) for window in windows if window["wm_class"] == "Tint2"]
    result = schemathesis_run(desktop.url, desktop.token, {"FILES_ROOT": str(files_root), "KEPT_WINDOWS": ",".join(panel)},
                              tmp_path)
    assert_no_findings(result)
    # The desktop is still whole afterwards, and nothing was written outside the files root.
    health = httpx.get(desktop.url + "/health", timeout=10)
    assert health.status_code == 200, health.text
    assert httpx.get(desktop.url + "/screen", headers=headers, timeout=10).status_code == 200  # with its token still
    assert all(path.resolve().is_relative_to(files_root.resolve()) for path in files_root.rglob("*"))


# -- the worker ---------------------------------------------------------------------------

WAIT_TASK = "fuzz: wait until the fuzzing is over"
# The worker holds every wait for approval: the active run's first action waits for one.
POLICY = '[[hold]]\ntool = "computer"\nactions = ["wait"]\nreason = "an approval for the fuzzing to decide"\n'
APPROVAL_ID = "toolu_fuzz_wait"


class ScriptedModel:
    """The Messages API for the worker's runs: each answer comes after a moment (so that a new
    run is still active when the next request steers it) and ends the run. The run whose task
    is WAIT_TASK first asks for a wait (held for approval as APPROVAL_ID), then gets its answer
    only when `release()` is called."""

    def __init__(self, turns: int = 100_000):
        self.gate = threading.Event()
        self.api = ScriptedAPI([self.answer] * turns)
        self.url = self.api.url

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if WAIT_TASK not in str(request["messages"][0]["content"]):
            time.sleep(0.3)
        elif len(request["messages"]) == 1:
            wait = {"type": "tool_use", "id": APPROVAL_ID, "name": "computer", "input": {"action": "wait", "duration": 0.1}}
            return message(wait)
        else:
            self.gate.wait(600)
        return message(text("done"))

    def release(self) -> None:
        self.gate.set()
        self.api.close()


@contextlib.contextmanager
def serving_worker(desktop, runs_dir: Path, model: ScriptedModel):
    """`cubicle agent serve` beside `desktop` (its default, with its token), with the scripted
    Messages API and POLICY; yields (url, token)."""
    token = "fuzz-worker-token-" + secrets.token_hex(8)
    port = free_port()
    policy = runs_dir.parent / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if not name.startswith("CUBICLE_FLEET_")}  # no fleet
    env.update(CUBICLE_WORKER_TOKEN=token, CUBICLE_TOKEN=desktop.token, CUBICLE_DESKTOP_URL=desktop.url,
               ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=model.url, CUBICLE_MODEL=MODEL)
    with open(runs_dir.parent / "worker.out", "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "cubicle", "agent", "serve", "--port", str(port),
                                    "--runs-dir", str(runs_dir), "--policy", str(policy)], env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _listening(url), 30, "the worker to listen")
        yield url, token
    finally:
        process.terminate()
        process.wait(30)


def _listening(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_worker_api_passes_every_schemathesis_check(fuzz_desktop, desktop, tmp_path):
    fuzzed, _ = fuzz_desktop
    model = ScriptedModel()
    runs_dir = tmp_path / "runs"
    try:
        with serving_worker(fuzzed, runs_dir, model) as (url, token):
            headers = {"Authorization": f"Bearer {token}"}
            finished = httpx.post(url + "/runs", json={"task": "look"}, headers=headers, timeout=60)
            assert finished.status_code == 201, finished.text
            finished_id = finished.json()["id"]
            wait_until(lambda: not httpx.get(url + f"/runs/{finished_id}", headers=headers, timeout=60).json()["active"],
                       60, "the first run to finish")
            image = min((runs_dir / finished_id / "images").iterdir()).name
            # The active run is on the shared desktop (it only takes a screenshot there), so the
            # fuzz desktop stays free for the runs the fuzzing starts.
            active = httpx.post(url + "/runs", json={"task": WAIT_TASK, "desktop": desktop.url, "desktop_token": desktop.token},
                                headers=headers, timeout=60)
            assert active.status_code == 201, active.text
            active_id = active.json()["id"]
            wait_until(lambda: httpx.get(url + f"/runs/{active_id}", headers=headers, timeout=60).json()["pending"],
                       60, "the active run to wait for approval")
            result = schemathesis_run(url, token, {
                "DESKTOP_URL": fuzzed.url, "DESKTOP_TOKEN": fuzzed.token, "RUN_IDS": f"{finished_id},{active_id}",
                "IMAGE": image, "APPROVAL_ID": APPROVAL_ID,
            }, tmp_path)
            assert_no_findings(result)
            assert httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        model.release()
    # The run routes were reached with real runs, not only refused with 404.
    answered = {(method, re.sub(r"/runs/[^/]+", "/runs/{run_id}", path), status) for method, path, status in answers(tmp_path)}
    assert {("POST", "/runs", 201), ("GET", "/runs/{run_id}", 200), ("POST", "/runs/{run_id}/pause", 202),
            ("POST", "/runs/{run_id}/approvals/" + APPROVAL_ID, 200)} <= answered


# -- the fleet ----------------------------------------------------------------------------


@pytest.mark.docker
def test_the_fleet_api_passes_every_schemathesis_check(tmp_path):
    """The fleet on the Docker engine, with room for two desktops: the fuzzing creates, resets
    and deletes real ones (and meets the quota)."""
    state = tmp_path / "fleet"
    state.mkdir()
    fleet = new_fleet("docker", state, "--image", desktop_image(), "--max-desktops", "2", "--max-ttl", "3600").start()
    try:
        result = schemathesis_run(fleet.url, fleet.token, {}, tmp_path)
        assert_no_findings(result)
        assert httpx.get(fleet.url + "/health", timeout=10).status_code == 200
    finally:
        fleet.stop()
        client = docker_client()
        owned = {"label": f"{OWNER_LABEL}={fleet.name}"}
        for container in client.containers.list(all=True, filters=owned):
            container.remove(force=True)
        for network in client.networks.list(filters=owned):
            network.remove()
    answered = {(method, re.sub(r"^/desktops/[^/]+", "/desktops/{id}", path), status) for method, path, status in answers(tmp_path)}
    assert {("POST", "/desktops", 201), ("POST", "/desktops/{id}/reset", 200), ("DELETE", "/desktops/{id}", 204)} <= answered

