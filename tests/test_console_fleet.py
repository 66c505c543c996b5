"""The console with a fleet behind the worker, in a real browser (Debian's chromium through
playwright): it lists the fleet's desktops and opens any of them live, view only; a task can
ask for a new desktop from the fleet. Real fleet on the Docker engine, real worker, scripted
model API."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from cubicle.agent.fleet_desktops import FleetDesktops
from cubicle.agent.runs import RunStore
from cubicle.agent.scripted_api import ScriptedAPI, message, text
from cubicle.agent.service import create_worker_app
from cubicle.fleet.client import FleetClient
from engines import desktop_image, new_fleet
from support import Serving, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture
def fleet(tmp_path):
    running = new_fleet("docker", tmp_path, "--image", desktop_image()).start()
    yield running
    running.stop()


def test_the_console_lists_the_fleets_desktops_and_watches_one_live(fleet, page, tmp_path):
    api = ScriptedAPI([lambda r: message(text("done"))])
    token = "worker-console-" + "c" * 20
    app = create_worker_app(token, RunStore(tmp_path / "runs"), fleet=FleetDesktops(fleet.url, fleet.token),
                            anthropic_factory=lambda: anthropic.Anthropic(api_key="sk-ant-c-" + "k" * 20, base_url=api.url))
    serving = Serving(app)
    url = f"http://127.0.0.1:{serving.port}"
    try:
        with FleetClient(fleet.url, fleet.token) as fleet_api:
            desktop = fleet_api.create(labels={"team": "console"})
            listed = httpx.get(url + "/desktops", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            assert [d["id"] for d in listed["desktops"]] == [desktop.id]
            assert "token" not in listed["desktops"][0]  # never in a list
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.goto(f"{url}/#token={token}")
            page.wait_for_selector(f"#desktops li[data-id='{desktop.id}']")
            assert "team=console" in page.text_content(f"#desktops li[data-id='{desktop.id}']")
            page.click(f"#desktops li[data-id='{desktop.id}']")
            page.wait_for_function("() => document.getElementById('desktop-state').textContent === 'Live, view only.'",
                                   timeout=30_000)
            box = page.eval_on_selector("#desktop-screen canvas", "c => [c.width, c.height]")
            assert box == [1280, 800]  # the desktop's own screen, through the fleet
            # A task on a new desktop of the fleet: the option is offered, and the run gets one.
            page.click("#new-run summary")
            assert page.is_visible("#new-desktop-label")
            page.check("#new-desktop")
            page.fill("#task", "Just look.")
            page.fill("#model", "claude-haiku-4-5")
            page.click("#start")
            page.wait_for_function("() => location.hash.startsWith('#run=')")
            run_id = page.evaluate("decodeURIComponent(location.hash.slice(5))")
            run = wait_until(lambda: (r := httpx.get(f"{url}/runs/{run_id}", headers={"Authorization": f"Bearer {token}"},
                                                     timeout=30).json())["active"] is False and r, 120, "the run to end")
            assert run["fleet_desktop"] and run["fleet_desktop"] != desktop.id
            fleet_api.delete(desktop.id)
    finally:
        serving.stop()
        api.close()
