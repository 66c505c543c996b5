"""Fixtures: a real desktop (the same supervisord graph `cubicle desktop` runs for users),
a client for it, the input-recording test app, and a real browser. What they are built from
lives in support.py, where test modules import it from.

One desktop serves the whole test session: starting Xvfb, openbox, tint2, x11vnc and the
server takes a few seconds, and tests leave the screen as they found it.

Tests are marked by what they need (the markers of [tool.pytest.ini_options] in
pyproject.toml): a test that uses one of the fixtures of MARKS_BY_FIXTURE, directly or through
another fixture, gets its marker here; a test that starts such a thing itself is marked where
it is; a test with none of the TIERS is `pure` (`scripts/test -m pure`: no X, in seconds).
"""

from __future__ import annotations

import time

import pytest

from cubicle.client import DesktopClient

# The helpers' old home: still importable from here (tests/test_image.py imports them so).
from support import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    TOKEN,
    VIEWPORT,
    Recorder,
    RunningDesktop,
    Serving,
    free_display,
    free_port,
    pixel,
    running_desktop,
    start_recorder,
    wait_healthy,
    wait_until,
)

MARKS_BY_FIXTURE = {
    "desktop": "desktop",  # the session's desktop, or tests/test_image.py's container of it
    "own_desktop": "desktop",  # a module's desktop of its own (test_session, test_browser_toolset)
    "fuzz_desktop": "desktop",  # test_fuzz's, its files kept in a folder
    "browser": "browser",
    "images": "image",  # tests/test_image.py: built with docker compose build
}


TIERS = {"desktop", "browser", "image", "docker", "kubernetes"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        needed = {MARKS_BY_FIXTURE[name] for name in item.fixturenames if name in MARKS_BY_FIXTURE}
        for name in sorted(needed):
            item.add_marker(name)
        if not TIERS & {mark.name for mark in item.iter_markers()}:
            item.add_marker("pure")


@pytest.fixture(scope="session")
def desktop(tmp_path_factory) -> RunningDesktop:
    with running_desktop(tmp_path_factory.mktemp("desktop-state")) as running:
        yield running


@pytest.fixture(scope="session")
def client(desktop) -> DesktopClient:
    with DesktopClient(desktop.url, desktop.token, timeout=60) as api:
        yield api


@pytest.fixture
def recorder(desktop, client, tmp_path):
    app = start_recorder(desktop, tmp_path, "--geometry", "800x500+200+120", "--title", "cubicle-recorder")
    # The window manager must have given it focus before keys are sent.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        window = next((w for w in client.windows() if w.title == "cubicle-recorder"), None)
        if window and window.focused:
            break
        if window:
            client.activate(window.id)
        time.sleep(0.1)
    app.clear()
    yield app
    app.process.terminate()
    app.process.wait(timeout=10)


# -- a real browser: Debian's chromium, driven by playwright (never a downloaded browser) --------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs it (desktop/packages-test.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)  # a fresh sessionStorage for every test
    opened = context.new_page()
    yield opened
    context.close()
