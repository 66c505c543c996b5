"""What the fleet must do, on any backend: each check drives a real `cubicle fleet serve` (see
engines.FleetProcess) and looks at the result as a user would, and at what the engine holds
through an `Engine` adapter (test_fleet_docker.py, test_fleet_kubernetes.py). Nothing is mocked."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cubicle.client import CubicleError
from cubicle.fleet.client import FleetClient
from engines import FleetProcess, wait_until


class Engine(Protocol):
    def owned(self, fleet: FleetProcess) -> dict[str, list[str]]:
        """What the engine holds for this fleet, by kind (containers or pods, networks, secrets ...)."""

    def kill(self, fleet: FleetProcess, desktop_id: str) -> None:
        """Kill the desktop under the fleet: its container, or its Pod."""

    def ip_of(self, fleet: FleetProcess, desktop_id: str) -> str: ...

    def ref_of(self, fleet: FleetProcess, desktop_id: str) -> str: ...

    def record(self, fleet: FleetProcess, ref: str) -> dict[str, Any]:
        """What the backend keeps of a desktop (its meta)."""

    def assert_unprivileged(self, fleet: FleetProcess, desktop_id: str, secrets: list[str]) -> None: ...


def nothing_left(engine: Engine, fleet: FleetProcess) -> bool:
    return not any(engine.owned(fleet).values())


def several_desktops_at_once_each_its_own_and_closed_to_the_others(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        made: list = []
        errors: list = []

        def create(n: int) -> None:
            try:
                made.append(api.create(labels={"test": "several", "n": str(n)}))
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert errors == [] and len(made) == 3
        assert {d.status for d in made} == {"running"} and len({d.token for d in made}) == 3
        assert {d.id for d in api.list(labels={"test": "several"})} == {d.id for d in made}
        assert [d.labels["n"] for d in api.list(labels={"n": "1"})] == ["1"]
        first, second, third = made
        clients = [FleetClient.desktop(d) for d in made]
        try:
            for n, client in enumerate(clients):
                shot = client.screenshot()
                assert (shot.width, shot.height) == (1280, 800) and shot.data.startswith(b"\x89PNG")
                client.write_file(f"/var/lib/cubicle/home/mine-{n}.txt", f"desktop {n}\n")
                client.act({"action": "key", "text": "ctrl+alt+t"})  # a keystroke through the fleet
            for n, client in enumerate(clients):
                assert client.shell("cat ~/mine-*.txt").output == f"desktop {n}\n"  # its own file, and only its own
                assert client.shell("id -un").output.strip() == "cubicle"
            # One desktop's token opens no other desktop, nor the fleet.
            for desktop, other in ((first, second), (second, third), (third, first)):
                refused = httpx.get(other.urls.api + "/screenshot", headers=fleet.headers(desktop.token), timeout=30)
                assert refused.status_code == 401
                assert httpx.get(fleet.url + "/desktops", headers=fleet.headers(desktop.token), timeout=30).status_code == 401
                assert httpx.delete(f"{fleet.url}/desktops/{other.id}", headers=fleet.headers(desktop.token),
                                    timeout=30).status_code == 401
            # Nor does a desktop hold anything that opens another: its own server's address is
            # reachable, but only with that desktop's token.
            first_ip = engine.ip_of(fleet, first.id)
            probe = clients[2].shell(f"python3 -c \"import urllib.request as u\ntry: u.urlopen('http://{first_ip}:8000/cursor', timeout=3)\n"
                                     f"except Exception as e: print(type(e).__name__, getattr(e, 'code', ''))\"", timeout=20).output
            assert "HTTPError 401" in probe or "URLError" in probe or "timeout" in probe, probe
        finally:
            for client in clients:
                client.close()
        for desktop in made:
            api.delete(desktop.id)
        assert {d.id for d in api.list()} == set()
    wait_until(lambda: nothing_left(engine, fleet), 120, "everything of the fleet to go")


def desktops_are_unprivileged_and_hold_no_secret(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        desktop = api.create()
        engine.assert_unprivileged(fleet, desktop.id, [desktop.token, fleet.token])
        # What the desktop user sees of the server: nothing (another container, another user).
        with FleetClient.desktop(desktop) as client:
            seen = client.shell("ps -eo user= | sort -u; ls /var/lib/cubicle-server 2>&1 | head -1; env").output
        assert seen.split("\n")[0] == "cubicle" and "Permission denied" in seen
        assert desktop.token not in seen and fleet.token not in seen
        api.delete(desktop.id)


def the_ttl_and_the_idle_timeout_reap(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        short = api.create(ttl_s=12, idle_timeout_s=None, labels={"reap": "ttl"})
        idle = api.create(ttl_s=600, idle_timeout_s=10, labels={"reap": "idle"})
        kept = api.create(ttl_s=600, idle_timeout_s=10, labels={"reap": "kept"})
        with FleetClient.desktop(kept) as busy:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:  # activity through the fleet keeps it
                busy.cursor()
                time.sleep(1)
        ids = {d.id for d in api.list()}
        assert short.id not in ids and idle.id not in ids and kept.id in ids
        api.keepalive(kept.id, ttl_s=120)  # a new TTL from now: sooner than the 600 s asked at first
        assert api.get(kept.id).expires_at < kept.expires_at
        api.delete(kept.id)
    wait_until(lambda: nothing_left(engine, fleet), 120, "the reaped desktops to go from the engine")


def a_desktop_that_died_shows_failed_and_is_cleaned_up(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        victim = api.create(labels={"fate": "killed"})
        survivor = api.create(labels={"fate": "kept"})
        victim_ref = engine.ref_of(fleet, victim.id)
        engine.kill(fleet, victim.id)
        failed = wait_until(lambda: (d := api.get(victim.id)).status == "failed" and d, 60, "the killed desktop to show failed")
        assert failed.reason
        with FleetClient.desktop(victim) as dead, pytest.raises(CubicleError) as refused:
            dead.screenshot()
        assert refused.value.status == 502 and refused.value.code == "desktop_failed"
        wait_until(lambda: not any(victim_ref in item for items in engine.owned(fleet).values() for item in items), 120,
                   "what was left of the dead desktop to be removed")
        assert api.get(survivor.id).status == "running"
        with FleetClient.desktop(survivor) as alive:
            assert alive.screenshot().width == 1280
        api.delete(survivor.id)


def a_restarted_fleet_adopts_every_desktop_and_loses_none(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        made = [api.create(labels={"restart": str(n)}) for n in range(2)]
        with FleetClient.desktop(made[0]) as client:
            client.write_file("/var/lib/cubicle/home/before.txt", "still here\n")
    fleet.stop(hard=True)  # killed, not asked to stop
    fleet.start()
    with FleetClient(fleet.url, fleet.token) as api:
        adopted = {d.id: d for d in api.list()}
        assert set(adopted) == {d.id for d in made}
        assert {d.labels["restart"] for d in adopted.values()} == {"0", "1"}
        with FleetClient.desktop(made[0]) as client:  # the same token, from before the restart
            assert client.read_file("/var/lib/cubicle/home/before.txt").content == "still here\n"
        with FleetClient.desktop(made[1]) as client:
            assert client.screenshot().width == 1280
        for desktop in made:
            api.delete(desktop.id)
    wait_until(lambda: nothing_left(engine, fleet), 120, "the adopted desktops to go on delete")


def reset_gives_a_fresh_desktop_under_the_same_id_and_token(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        desktop = api.create(labels={"kind": "eval"})
        with FleetClient.desktop(desktop) as client:
            client.write_file("/var/lib/cubicle/home/task.txt", "from the last task\n")
        before = engine.ref_of(fleet, desktop.id)
        fresh = api.reset(desktop.id)
        assert fresh.id == desktop.id and fresh.labels == {"kind": "eval"} and fresh.expires_at == desktop.expires_at
        assert engine.ref_of(fleet, desktop.id) != before
        with FleetClient.desktop(desktop) as client:
            with pytest.raises(CubicleError) as gone:
                client.read_file("/var/lib/cubicle/home/task.txt")
            assert gone.value.status == 404
        api.delete(desktop.id)
    wait_until(lambda: nothing_left(engine, fleet), 120, "the old and the new desktop to go")


def the_warm_pool_serves_from_itself_and_refills(fleet: FleetProcess, engine: Engine) -> None:
    """`fleet` runs with --warm 1."""
    pooled = lambda: httpx.get(fleet.url + "/health", timeout=10).json()["pooled"]  # noqa: E731
    with FleetClient(fleet.url, fleet.token) as api:
        wait_until(lambda: pooled() == 1, 180, "the pool to hold a ready desktop")
        (pooled_ref,) = [ref for ref in engine.owned(fleet)["desktops"]]
        assert engine.record(fleet, pooled_ref)["pooled"] is True
        desktop = api.create(labels={"from": "pool"})
        # The pooled desktop itself was handed out, now under the user's token.
        assert engine.ref_of(fleet, desktop.id) == pooled_ref
        assert engine.record(fleet, pooled_ref)["pooled"] is False
        with FleetClient.desktop(desktop) as client:
            assert client.screenshot().width == 1280
        wait_until(lambda: pooled() == 1, 180, "the pool to refill")
        assert len(engine.owned(fleet)["desktops"]) == 2
        api.delete(desktop.id)


def thirty_create_delete_cycles_leave_nothing_behind(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        for cycle in range(30):
            desktop = api.create(labels={"cycle": str(cycle)})
            api.delete(desktop.id)
        assert api.list() == []
    wait_until(lambda: nothing_left(engine, fleet), 120, "nothing of 30 desktops to be left")


def bad_requests_are_refused_clearly_and_change_nothing(fleet: FleetProcess, engine: Engine, max_desktops: int) -> None:
    def error(response: httpx.Response, status: int, code: str) -> str:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        return response.json()["error"]["message"]

    def post(body: dict[str, Any], token: str | None = None) -> httpx.Response:
        return httpx.post(fleet.url + "/desktops", json=body, headers=fleet.headers(token), timeout=120)

    assert error(post({"colour": "blue"}), 422, "invalid_request") == "colour: unknown field"
    assert error(post({"width": 100}), 422, "invalid_request").startswith("width: ")
    assert error(post({"height": 99999}), 422, "invalid_request").startswith("height: ")
    assert "7200" in error(post({"ttl_s": 365 * 86400}), 422, "invalid_request")
    assert "longer than ttl_s" in error(post({"ttl_s": 60, "idle_timeout_s": 120}), 422, "invalid_request")
    assert error(post({"width": "1280"}), 422, "invalid_request").startswith("width: ")
    assert error(post({"labels": {"bad key!": "x"}}), 422, "invalid_request").startswith("labels")
    assert "office: false" in error(post({"office": False}), 422, "invalid_request")
    assert error(post({}, token="wrong-token-xxxxxxxxxxxx"), 401, "unauthorized")
    assert error(httpx.get(fleet.url + "/desktops/nope", headers=fleet.headers()), 404, "desktop_not_found")
    assert error(httpx.delete(fleet.url + "/desktops/nope", headers=fleet.headers()), 404, "desktop_not_found")
    assert error(httpx.get(fleet.url + "/desktops/nope/screenshot", headers=fleet.headers()), 404, "desktop_not_found")
    assert error(httpx.get(fleet.url + "/desktops?label=novalue", headers=fleet.headers()), 422, "invalid_request")
    assert nothing_left(engine, fleet)  # none of them started anything
    with FleetClient(fleet.url, fleet.token) as api:
        made = [api.create() for _ in range(max_desktops)]
        assert f"at most {max_desktops}" in error(post({}), 429, "quota_exceeded")
        assert len(engine.owned(fleet)["desktops"]) == max_desktops
        for desktop in made:
            api.delete(desktop.id)


def websockets_and_pages_go_through_the_fleet(fleet: FleetProcess, engine: Engine) -> None:
    with FleetClient(fleet.url, fleet.token) as api:
        desktop = api.create()
        assert httpx.get(desktop.urls.view, timeout=30).status_code == 200  # a public page, as on the desktop
        with connect(desktop.urls.vnc, open_timeout=30) as socket:
            socket.send(json.dumps({"token": desktop.token, "interactive": False}))
            assert socket.recv(timeout=30).startswith(b"RFB 003.")
        for token in ("wrong-token-xxxxxxxxxxxxxxxxxx", None):
            with connect(desktop.urls.vnc, open_timeout=30) as socket:
                socket.send(json.dumps({"token": token, "interactive": True}))
                with pytest.raises(ConnectionClosed) as closed:
                    socket.recv(timeout=30)
                assert closed.value.rcvd.code == 4401
        api.delete(desktop.id)


def the_worker_takes_a_desktop_for_a_run_and_gives_it_back(fleet: FleetProcess, engine: Engine, tmp_path) -> None:
    """POST /runs {"desktop": "new"}: a desktop of the fleet for the run, deleted at its end
    unless keep_desktop; the run log says which desktop it used."""
    import anthropic

    from cubicle.agent.fleet_desktops import FleetDesktops
    from cubicle.agent.runs import RunStore
    from cubicle.agent.scripted_api import ScriptedAPI, message, text, tool_use
    from cubicle.agent.service import create_worker_app
    from support import Serving

    api = ScriptedAPI([lambda r: message(tool_use("bash", {"command": "echo run-on-a-fleet-desktop > ~/proof.txt"})),
                       lambda r: message(text("done")),
                       lambda r: message(text("done again"))])
    worker_token = "worker-" + "w" * 24
    app = create_worker_app(worker_token, RunStore(tmp_path / "runs"), fleet=FleetDesktops(fleet.url, fleet.token),
                            anthropic_factory=lambda: anthropic.Anthropic(api_key="sk-ant-fleet-" + "k" * 20,
                                                                          base_url=api.url, max_retries=0))
    serving = Serving(app)
    url, headers = f"http://127.0.0.1:{serving.port}", {"Authorization": f"Bearer {worker_token}"}
    try:
        def run_to_its_end(body: dict[str, Any]) -> dict[str, Any]:
            created = httpx.post(url + "/runs", json=body, headers=headers, timeout=300)
            assert created.status_code == 201, created.text
            return wait_until(lambda: (r := httpx.get(f"{url}/runs/{created.json()['id']}", headers=headers,
                                                      timeout=30).json())["status"] == "finished" and r, 120, "the run to end")

        with FleetClient(fleet.url, fleet.token) as fleet_api:
            run = run_to_its_end({"task": "Write the proof.", "desktop": "new", "model": "claude-haiku-4-5"})
            assert run["fleet_desktop"] and run["desktop"].endswith(f"/desktops/{run['fleet_desktop']}")
            result = next(e for e in run["events"] if e["type"] == "result")
            assert result["is_error"] is False
            wait_until(lambda: run["fleet_desktop"] not in {d.id for d in fleet_api.list()}, 60,
                       "the run's desktop to be deleted at its end")
            kept = run_to_its_end({"task": "Again, and keep it.", "desktop": "new", "keep_desktop": True,
                                   "model": "claude-haiku-4-5"})
            assert kept["fleet_desktop"] in {d.id for d in fleet_api.list()}
            fleet_api.delete(kept["fleet_desktop"])
            refused = httpx.post(url + "/runs", json={"task": "x", "desktop": "new", "desktop_token": "t" * 30},
                                 headers=headers, timeout=30)
            assert refused.status_code == 422 and "desktop_token" in refused.json()["error"]["message"]
    finally:
        serving.stop()
        api.close()
