"""OSWorld's DesktopEnv, unchanged, on desktops in containers: from the fleet on the real Docker
engine (cubicle.osworld.sources.FleetDesktops, `cubicle fleet serve --backend docker`) and from
the engine directly (DockerDesktops), both with the desktop image built from this checkout.

OSWorld's server (port 5000, no credentials) is reachable only at the desktop's address on its
own Docker network, which this host routes to; no port of a desktop is published on the host,
and a desktop made without osworld: true serves nothing on port 5000 at all."""

from __future__ import annotations

import contextlib
import io
import json
import socket

import httpx
import pytest
from PIL import Image

from cubicle.client import CubicleError, DesktopClient
from cubicle.fleet.backends.docker import OWNER_LABEL, REF_LABEL, ROLE_LABEL
from cubicle.fleet.client import FleetClient
from engines import FleetProcess, desktop_image, docker_client, new_fleet
from osworld_support import contained, desktop_env, load_task, oracle, seed_cache

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SIZE = (1280, 800)
PAUSE_S = 2.0  # DesktopEnv.step's own default
OSWORLD_PORT = 5000


# -- the engine, as the Docker Engine API shows it ----------------------------------------


@contextlib.contextmanager
def engine():
    client = docker_client()
    try:
        yield client
    finally:
        client.close()


def containers_of(ref: str) -> list:
    with engine() as client:
        return client.containers.list(all=True, filters={"label": f"{REF_LABEL}={ref}"})


def networks_of(ref: str) -> list[str]:
    with engine() as client:
        return [network.name for network in client.networks.list(filters={"label": f"{REF_LABEL}={ref}"})]


def owned_by(owner: str) -> list[str]:
    with engine() as client:
        label = {"label": f"{OWNER_LABEL}={owner}"}
        return ([c.name for c in client.containers.list(all=True, filters=label)]
                + [n.name for n in client.networks.list(filters=label)])


def remove_everything_of(owner: str) -> None:
    """What a failing test left on the engine, gone before the next one runs."""
    with engine() as client:
        label = {"label": f"{OWNER_LABEL}={owner}"}
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True, v=True)
        for network in client.networks.list(filters=label):
            network.remove()


def private_ip(ref: str) -> str:
    """The session container's address on the desktop's own network."""
    (session,) = [c for c in containers_of(ref) if c.labels.get(ROLE_LABEL) == "session"]
    return session.attrs["NetworkSettings"]["Networks"][f"{ref}-net"]["IPAddress"]


def assert_nothing_published(ref: str) -> None:
    containers = containers_of(ref)
    assert {c.labels[ROLE_LABEL] for c in containers} == {"session", "server"}
    for container in containers:
        assert not container.attrs["HostConfig"].get("PortBindings"), container.name
        published = container.attrs["NetworkSettings"].get("Ports") or {}
        assert all(binding is None for binding in published.values()), (container.name, published)


def refused(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=10):
            return False
    except ConnectionRefusedError:
        return True


def ref_of(fleet: FleetProcess, desktop_id: str) -> str:
    records = json.loads((fleet.state_dir / f"docker-{fleet.name}.json").read_text())
    (ref,) = [ref for ref, meta in records.items() if meta.get("id") == desktop_id]
    return ref


# -- the fleet: one per module ------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    image = desktop_image()
    fleet = new_fleet("docker", tmp_path_factory.mktemp("osworld-fleet"), "--image", image, "--max-desktops", "4",
                      "--max-ttl", "7200")
    try:
        yield fleet.start()
    finally:
        fleet.stop()
        remove_everything_of(fleet.name)


def test_desktop_env_runs_a_task_on_a_fleet_desktop_resets_it_and_deletes_it(fleet, tmp_path):
    from cubicle.osworld.provider import install
    from cubicle.osworld.sources import FleetDesktops

    osworld = desktop_env()
    source = FleetDesktops(fleet.url, fleet.token, ttl_s=3600)  # within the fleet's --max-ttl
    task, next_task = load_task("files-renamed"), load_task("text-edit-saved")
    seed_cache(tmp_path, task)
    seed_cache(tmp_path, next_task)
    try:
        with install(source):
            env = osworld.DesktopEnv(provider_name="docker", action_space="pyautogui", screen_size=SIZE,
                                     cache_dir=str(tmp_path))
        try:
            first = env.provider.desktop
            assert (first.width, first.height) == SIZE
            first_ref = ref_of(fleet, first.id)
            assert first.osworld == f"{private_ip(first_ref)}:{OSWORLD_PORT}"

            observation = contained(env.reset, task_config=task)
            assert observation["screenshot"][:8] == b"\x89PNG\r\n\x1a\n"
            assert Image.open(io.BytesIO(observation["screenshot"])).size == SIZE
            assert observation["instruction"] == task["instruction"]
            for action in oracle("files-renamed"):
                env.step(action, pause=PAUSE_S)
            assert contained(env.evaluate) == 1
            env.step("pyautogui.typewrite('touch ~/left-behind\\n')", pause=1.0)
            listing = "import os; print(sorted(os.listdir(os.path.expanduser('~'))))"
            assert "left-behind" in env.controller.execute_python_command(listing)["output"]

            # The next task: OSWorld's revert_to_snapshot is the fleet's reset, a fresh desktop
            # under the same id, on which the task's file is uploaded (a multipart form) and opened.
            contained(env.reset, task_config=next_task)
            fresh = env.provider.desktop
            assert fresh.id == first.id
            fresh_ref = ref_of(fleet, fresh.id)
            assert fresh_ref != first_ref and containers_of(first_ref) == [] and networks_of(first_ref) == []
            assert fresh.osworld == f"{private_ip(fresh_ref)}:{OSWORLD_PORT}"
            home = env.controller.execute_python_command(listing)["output"]
            assert "left-behind" not in home and "reports" not in home and "notes.txt" in home
            assert contained(env.evaluate) == 0  # notes.txt as uploaded: not yet edited
            for action in oracle("text-edit-saved"):
                env.step(action, pause=PAUSE_S)
            assert contained(env.evaluate) == 1
        finally:
            env.close()
        assert env.provider.desktop is None
        gone = httpx.get(f"{fleet.url}/desktops/{first.id}", headers=fleet.headers(), timeout=30)
        assert gone.status_code == 404
        assert containers_of(fresh_ref) == [] and networks_of(fresh_ref) == []
        assert owned_by(fleet.name) == []
    finally:
        source.close()


def test_only_an_osworld_desktop_serves_port_5000_and_only_on_its_private_network(fleet):
    with FleetClient(fleet.url, fleet.token) as api:
        with_osworld = api.create(osworld=True, labels={"test": "isolation"})
        plain = api.create(labels={"test": "isolation"})
        try:
            osworld_ref, plain_ref = ref_of(fleet, with_osworld.id), ref_of(fleet, plain.id)
            osworld_ip, plain_ip = private_ip(osworld_ref), private_ip(plain_ref)
            # The fleet tells its token's holder where the OSWorld server is: the private address.
            assert with_osworld.osworld == f"{osworld_ip}:{OSWORLD_PORT}"
            assert api.get(with_osworld.id).osworld == with_osworld.osworld
            assert plain.osworld is None and api.get(plain.id).osworld is None
            platform = httpx.get(f"http://{with_osworld.osworld}/platform", timeout=30)
            assert (platform.status_code, platform.text) == (200, "Linux")
            # Nothing of either desktop is published on the host: no port binding at all.
            assert_nothing_published(osworld_ref)
            assert_nothing_published(plain_ref)
            # The plain desktop is there (its server accepts connections) but port 5000 is closed.
            assert not refused(plain_ip, 8000)
            assert refused(plain_ip, OSWORLD_PORT)
        finally:
            api.delete(with_osworld.id)
            api.delete(plain.id)
    assert containers_of(osworld_ref) == [] and containers_of(plain_ref) == []


def test_docker_desktops_serve_pythoncontroller_and_leave_nothing_when_stopped(tmp_path):
    from cubicle.osworld.sources import DockerDesktops

    osworld = desktop_env()
    source = DockerDesktops(desktop_image(), state_dir=str(tmp_path))
    try:
        desktop = source.start(1024, 768)
        ref = desktop.id
        ip = private_ip(ref)
        assert desktop.osworld == f"{ip}:{OSWORLD_PORT}" and desktop.api == f"http://{ip}:8000"
        assert_nothing_published(ref)
        controller = osworld.PythonController(vm_ip=ip, server_port=OSWORLD_PORT)
        screenshot = controller.get_screenshot()
        assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
        assert Image.open(io.BytesIO(screenshot)).size == (1024, 768)
        assert controller.get_vm_screen_size() == {"width": 1024, "height": 768}
        moved = controller.execute_python_command("pyautogui.moveTo(321, 234)")
        assert moved["returncode"] == 0, moved
        position = controller.execute_python_command("print(tuple(pyautogui.position()))")
        assert position["output"].strip() == "(321, 234)"
        with DesktopClient(desktop.api, desktop.token) as api:
            cursor = api.cursor()
            assert (cursor.x, cursor.y) == (321, 234)
        with DesktopClient(desktop.api, "not-the-token") as stranger, pytest.raises(CubicleError) as refusal:
            stranger.cursor()
        assert refusal.value.status == 401
        source.stop(desktop)
        assert containers_of(ref) == [] and networks_of(ref) == []
        assert owned_by(source.name) == []
    finally:
        remove_everything_of(source.name)
        source.close()
