"""What the OSWorld tests share: desktop-env (OSWorld's own client, from PyPI) imported as its
users import it, a desktop serving OSWorld's protocol, and our tasks in OSWorld's task format
(tests/osworld_tasks/) with their local files and oracle action scripts."""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import shutil
import sys
import uuid
import warnings
from pathlib import Path
from types import SimpleNamespace

from support import ROOT, free_port, running_desktop

TASKS = ROOT / "tests" / "osworld_tasks"
FILES = TASKS / "files"
# Fixture URLs: never fetched. OSWorld's set-up downloads only what its cache does not hold,
# and the cache is filled from FILES before each task (as a run with a warm cache has it).
FIXTURE_URL = "https://fixtures.cubicle.invalid/osworld/"


def desktop_env() -> SimpleNamespace:
    """desktop-env's modules. Its metrics package imports every metric, one of which needs
    easyocr (on torch, not installed): tests/osworld_stubs has a stand-in that fails if used.
    Two of its imports warn at import time (PyMuPDF's fitz name, PyPDF2); they are not ours."""
    stubs = str(ROOT / "tests" / "osworld_stubs")
    if stubs not in sys.path:
        sys.path.append(stubs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `fitz` API is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="PyPDF2 is deprecated", category=DeprecationWarning)
        env = importlib.import_module("desktop_env.desktop_env")
        python = importlib.import_module("desktop_env.controllers.python")
        metrics = importlib.import_module("desktop_env.evaluators.metrics")
    return SimpleNamespace(DesktopEnv=env.DesktopEnv, PythonController=python.PythonController, metrics=metrics)


def contained(call, *args, **kwargs):
    """A call into desktop-env with its warnings kept to itself. Its set-up uploads files it
    never closes, its metrics read files with openpyxl and pandas, which warn, and leave them
    open: under this suite's warnings-are-errors, such a warning would be raised inside
    desktop-env (which turns a failing metric into a silent 0) or when the file is collected."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = call(*args, **kwargs)
        gc.collect()  # its unclosed files, closed while their warnings are recorded here
    return result


@contextlib.contextmanager
def osworld_desktop(state_dir: Path, size: str = "1280x800"):
    """`cubicle desktop --osworld` on free ports: (the desktop, host:port of its OSWorld server)."""
    port = free_port()
    with running_desktop(state_dir, size, ("--osworld", "--osworld-port", str(port))) as desktop:
        from cubicle.osworld.sources import wait_until_serving

        address = f"127.0.0.1:{port}"
        wait_until_serving(address, 60)
        yield desktop, address


def task_names() -> list[str]:
    return sorted(path.stem for path in TASKS.glob("*.json") if not path.name.endswith(".oracle.json"))


def load_task(name: str) -> dict:
    return json.loads((TASKS / f"{name}.json").read_text())


def oracle(name: str) -> list:
    """The actions that solve the task, as an agent would send them to DesktopEnv.step."""
    return json.loads((TASKS / f"{name}.oracle.json").read_text())


def seed_cache(cache_dir: Path, task: dict) -> None:
    """The task's files where OSWorld's client looks before it downloads: set-up downloads at
    <cache>/<task id>/<uuid5(url)>_<name>, the evaluator's cloud files at <cache>/<task id>/<dest>."""
    folder = cache_dir / task["id"]
    folder.mkdir(parents=True, exist_ok=True)

    def local(url: str) -> Path:
        assert url.startswith(FIXTURE_URL), f"{url} is not a local fixture"
        return FILES / url[len(FIXTURE_URL):]

    steps = list(task.get("config", [])) + list(task["evaluator"].get("postconfig", []))
    for step in steps:
        if step["type"] == "download":
            for file in step["parameters"]["files"]:
                target = folder / f"{uuid.uuid5(uuid.NAMESPACE_URL, file['url'])}_{Path(file['path']).name}"
                shutil.copyfile(local(file["url"]), target)
    expected = task["evaluator"].get("expected") or []
    for getter in expected if isinstance(expected, list) else [expected]:
        if getter and getter.get("type") == "cloud_file":
            shutil.copyfile(local(getter["path"]), folder / getter["dest"])
