"""The type check and the lint, as [tool.mypy] and [tool.ruff] in pyproject.toml configure them:
both must pass over the package (and ruff over the tests too)."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_passes():
    result = _run("mypy")
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"


def test_ruff_passes():
    result = _run("ruff", "check", "service", "tests")
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"
