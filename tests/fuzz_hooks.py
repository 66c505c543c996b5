"""Schemathesis hooks for tests/test_fuzz.py: what makes a generated request safe to send to a
real desktop on the machine that runs the tests. The command line loads this file through
SCHEMATHESIS_HOOKS and applies it to every case of every phase: when a case is generated
(`map_case`) and again right before it is sent (`before_call`: stateful steps fill in values
from earlier answers after generation). Taming twice changes nothing the first did not.

A value is tamed only from one valid value to another (data meant to break the schema still
breaks it, and schemathesis re-checks a case that a hook changed):
- /shell/run: the generated text reaches bash as the content of a here-document printed by
  `cat`, not as commands (random text would run as the test user's commands);
- /apps/launch: the program is `true`, the generated arguments are kept;
- /files: two absolute paths in three are put inside the files root, the third is sent as it
  is (the server must refuse it: 403 outside_root); other paths the server refuses itself;
- /token: the new token's digest is that of the current one, so the run keeps its token;
- /windows: the panel is not closed or activated (each try would wait 2 s in vain);
- /recording/start: recordings end by themselves within 3 s, at 5 frames a second at most;
- /actions: waits, hold_key durations, settle times, batches, drag paths and typed text are
  kept short; clicks stay off the panel (its launchers start Firefox and LibreOffice), and a
  right click becomes a middle click (the desktop's right-click menu starts a terminal, where
  typed text would run);
- the fleet: new desktops are answered at once, while they start, and have no OSWorld server;
- the worker: runs go only to the fuzz desktop, with its token (a generated URL would send
  the worker, and a token, to whatever host it names); generated run ids and image names are
  often swapped for real ones, so that more than the 'not found' paths are reached.

Paths are matched by their end, so that a service that serves these routes under a prefix
(the fleet's proxy to a desktop) is tamed the same way. What each service has is read from
the environment (CUBICLE_FUZZ_*), which test_fuzz.py sets for each run of the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from typing import Any

import schemathesis

from cubicle.agent.api_models import DESKTOP  # what the worker takes as a desktop


def _setting(name: str) -> str:
    return os.environ.get(f"CUBICLE_FUZZ_{name}", "")


FILES_ROOT = _setting("FILES_ROOT").rstrip("/")
TOKEN = _setting("TOKEN")  # the token of the service under test
DESKTOP_URL = _setting("DESKTOP_URL")  # the worker's runs go there, with DESKTOP_TOKEN
DESKTOP_TOKEN = _setting("DESKTOP_TOKEN")
RUN_IDS = [run_id for run_id in _setting("RUN_IDS").split(",") if run_id]
IMAGE = _setting("IMAGE")
APPROVAL_ID = _setting("APPROVAL_ID")  # what the active run (RUN_IDS[-1]) waits for
KEPT_WINDOWS = {int(window) for window in _setting("KEPT_WINDOWS").split(",") if window}
SCREEN_HEIGHT = 800
MAX_PATH = 4096
SHELL_END = "FUZZ_END_"
RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")


@schemathesis.hook
def map_case(context, case):
    tame(case)
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    tame(case)


def tame(case) -> None:
    keep_unknown_query_keys(case)
    tame_run_ids(case)
    method, path = case.method.upper(), case.path
    for (wanted_method, suffix), tamer in TAMERS.items():
        if method == wanted_method and path.endswith(suffix):
            tamer(case)


def keep_unknown_query_keys(case) -> None:
    """An undeclared query parameter whose value is None or an empty list would be dropped by
    the HTTP client, sending a valid request that schemathesis still counts as breaking the
    schema: send such a value as JSON text, so the server really gets the unknown parameter."""
    if isinstance(case.query, dict):
        declared = {parameter.name for parameter in case.operation.query}
        for key, value in case.query.items():
            if key not in declared and (value is None or isinstance(value, (list, dict))):
                case.query[key] = json.dumps(value)


# -- the desktop --------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cap(holder: dict, key: str, low: float, high: float, to: float) -> None:
    """holder[key] = to, if it is a number in (low, high]: a valid value stays valid, an
    invalid one is left as it is."""
    value = holder.get(key)
    if _number(value) and low < value <= high:
        holder[key] = to


def _off_panel(value: Any, height: int) -> Any:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        x, y = value
        if height * 0.9 <= y < height:
            return [x, y // 2]
    return value


def _tame_action(action: Any, height: int) -> None:
    if not isinstance(action, dict):
        return
    kind = action.get("action")
    if kind == "right_click":
        action["action"] = "middle_click"
    if kind in ("wait", "hold_key"):
        _cap(action, "duration", 0.05, 300, 0.05)
    # Shortened only while within the schema's limits (20000 characters, 1000 points).
    if kind == "type" and isinstance(action.get("text"), str) and 200 < len(action["text"]) <= 20_000:
        action["text"] = action["text"][:200]
    if kind == "left_click_drag" and isinstance(action.get("path"), list) and 10 < len(action["path"]) <= 1000:
        action["path"] = action["path"][:10]
    for key in ("coordinate", "start_coordinate"):
        if key in action:
            action[key] = _off_panel(action[key], height)
    if isinstance(action.get("path"), list):
        action["path"] = [_off_panel(point, height) for point in action["path"]]


def _tame_settle(holder: Any) -> None:
    if isinstance(holder, dict):
        _cap(holder, "quiet_ms", 100, 5000, 100)
        _cap(holder, "timeout_ms", 1000, 60000, 1000)


def tame_actions(case) -> None:
    body = case.body
    batch, space = body, None
    if isinstance(body, dict) and "action" not in body:
        batch, space = body.get("actions"), body.get("coordinate_space")
        _tame_settle(body.get("settle"))
    height = space["height"] if isinstance(space, dict) and _number(space.get("height")) and space["height"] > 0 else SCREEN_HEIGHT
    if isinstance(batch, list) and 10 < len(batch) <= 100:  # at most 100 actions: stays valid
        del batch[10:]
    for action in batch if isinstance(batch, list) else [batch]:
        _tame_action(action, int(height))


def tame_screenshot(case) -> None:
    _tame_settle(case.query)


def tame_shell(case) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    command = body.get("command")
    if isinstance(command, str) and command.strip() and "\0" not in command and not command.startswith(f"cat <<'{SHELL_END}"):
        end = SHELL_END + secrets.token_hex(8)
        body["command"] = f"cat <<'{end}'\n{command}\n{end}"
    _cap(body, "timeout", 10, 600, 10)


def tame_launch(case) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    command = body.get("command")
    if isinstance(command, str) and command.strip() and not command.startswith("true "):
        body["command"] = "true " + command
    elif isinstance(command, list) and command and isinstance(command[0], str) and command[0] and "\0" not in command[0]:
        body["command"] = ["true", *command[1:]]
    if "timeout" not in body:
        body["timeout"] = 0.1  # the default, 20 s, would be waited out in full: no window comes
    _cap(body, "timeout", 0.1, 120, 0.1)


def _inside_root(path: Any) -> Any:
    """Two absolute paths in three moved into the files root (if the result is not too long)."""
    if not isinstance(path, str) or not path.startswith("/") or not FILES_ROOT or path.startswith(FILES_ROOT + "/"):
        return path
    if len(path) % 3 == 2 or len(FILES_ROOT) + len(path) > MAX_PATH:
        return path
    return FILES_ROOT + path


def tame_read_file(case) -> None:
    if isinstance(case.query, dict) and "path" in case.query:
        case.query["path"] = _inside_root(case.query["path"])


def tame_write_file(case) -> None:
    if isinstance(case.body, dict) and "path" in case.body:
        path = case.body["path"]
        if isinstance(path, str) and path.startswith("/") and not path.strip("/"):
            path = "/fuzz.txt"  # not the root folder itself, which no file can replace
        case.body["path"] = _inside_root(path)


def tame_window(case) -> None:
    """The panel is never closed or activated (it takes neither, and each try waits 2 s for it):
    its id becomes one no window has."""
    parameters = case.path_parameters
    window = parameters.get("window_id") if isinstance(parameters, dict) else None
    if isinstance(window, int) and not isinstance(window, bool):  # from an earlier answer: GET /windows
        window = str(window)
    if isinstance(window, str) and re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", window):
        if int(window, 16 if window[:2].lower() == "0x" else 10) in KEPT_WINDOWS:
            parameters["window_id"] = "0"


def tame_token(case) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", body["sha256"]):
        body["sha256"] = hashlib.sha256(TOKEN.encode()).hexdigest()


def tame_recording(case) -> None:
    """A recording started by the fuzzer ends by itself within seconds, at a few frames a second.
    A value past the schema's limit is left as it is: the server must refuse it."""
    from cubicle.recording import MAX_FRAME_RATE, MAX_SECONDS

    body = case.body
    if isinstance(body, dict):
        for key, most, limit in (("max_seconds", 3, MAX_SECONDS), ("frame_rate", 5, MAX_FRAME_RATE)):
            if _number(body.get(key)) and most < body[key] <= limit:
                body[key] = most


# -- the worker ---------------------------------------------------------------------------


def tame_new_run(case) -> None:
    """Whatever URL the worker would take becomes the fuzz desktop's (the one it has by
    default); "new" stays, and is refused: the worker under fuzz has no fleet."""
    body = case.body
    if not isinstance(body, dict) or not DESKTOP_URL:
        return
    desktop = body.get("desktop")
    if isinstance(desktop, str) and desktop not in ("", "new") and re.fullmatch(DESKTOP, desktop):
        body["desktop"] = DESKTOP_URL
    if isinstance(body.get("desktop_token"), str):
        body["desktop_token"] = DESKTOP_TOKEN


def tame_run_ids(case) -> None:
    """Two in three generated run ids (that do not look like one) become ids of real runs,
    every other image name a real one, and every other approval id the one the active run
    waits for (with that run's id)."""
    parameters = case.path_parameters
    if not isinstance(parameters, dict):
        return
    run_id = parameters.get("run_id")
    if RUN_IDS and isinstance(run_id, str) and not RUN_ID.fullmatch(run_id) and len(run_id) % 3 < 2:
        parameters["run_id"] = RUN_IDS[len(run_id) % len(RUN_IDS)]
    name = parameters.get("name")
    if IMAGE and isinstance(name, str) and name != IMAGE and len(name) % 2 == 0:
        parameters["name"] = IMAGE
    approval = parameters.get("approval_id")
    if APPROVAL_ID and isinstance(approval, str) and approval != APPROVAL_ID and len(approval) % 2 == 0:
        parameters["approval_id"] = APPROVAL_ID
        if RUN_IDS:
            parameters["run_id"] = RUN_IDS[-1]


# -- the fleet ----------------------------------------------------------------------------


def tame_new_desktop(case) -> None:
    """A new desktop is answered at once, while it starts (waiting for each would take the
    run's time), and never with OSWorld's server, which runs any code it is sent."""
    body = case.body
    if isinstance(body, dict):
        if body.get("wait") is True or "wait" not in body:
            body["wait"] = False
        if body.get("osworld") is True:
            body["osworld"] = False


TAMERS = {
    ("POST", "/actions"): tame_actions,
    ("GET", "/screenshot"): tame_screenshot,
    ("POST", "/shell/run"): tame_shell,
    ("POST", "/apps/launch"): tame_launch,
    ("GET", "/files"): tame_read_file,
    ("PUT", "/files"): tame_write_file,
    ("PUT", "/token"): tame_token,
    ("POST", "/activate"): tame_window,
    ("POST", "/close"): tame_window,
    ("POST", "/runs"): tame_new_run,
    ("POST", "/desktops"): tame_new_desktop,
    ("POST", "/recording/start"): tame_recording,
}
