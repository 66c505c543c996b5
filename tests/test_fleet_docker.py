"""The fleet on the real Docker engine (the checks are in fleet_checks.py): `cubicle fleet serve
--backend docker` as a process of its own, desktops made from the image built from this
checkout, and what the engine holds looked at through the Docker Engine API."""

from __future__ import annotations

import json
from typing import Any

import pytest

import fleet_checks as checks
from cubicle.fleet.backends.docker import OWNER_LABEL, REF_LABEL, ROLE_LABEL
from engines import FleetProcess, desktop_image, docker_client, new_fleet

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
MAX_DESKTOPS = 6


class DockerEngine:
    def owned(self, fleet: FleetProcess) -> dict[str, list[str]]:
        client = docker_client()
        label = {"label": f"{OWNER_LABEL}={fleet.name}"}
        # sparse: no inspect per container, which would fail for one the fleet removes meanwhile
        containers = [(c.attrs["Names"][0].lstrip("/"), c.attrs.get("Labels") or {})
                      for c in client.containers.list(all=True, sparse=True, filters=label)]
        return {"desktops": sorted({labels[REF_LABEL] for _, labels in containers if labels.get(ROLE_LABEL) == "session"}),
                "containers": [name for name, _ in containers],
                "networks": [n.name for n in client.networks.list(filters=label)],
                "volumes": [v.name for v in client.volumes.list(filters=label)]}

    def records(self, fleet: FleetProcess) -> dict[str, dict[str, Any]]:
        path = fleet.state_dir / f"docker-{fleet.name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record(self, fleet: FleetProcess, ref: str) -> dict[str, Any]:
        return self.records(fleet)[ref]

    def ref_of(self, fleet: FleetProcess, desktop_id: str) -> str:
        return next(ref for ref, meta in self.records(fleet).items() if meta.get("id") == desktop_id)

    def kill(self, fleet: FleetProcess, desktop_id: str) -> None:
        docker_client().containers.get(f"{self.ref_of(fleet, desktop_id)}-session").kill()

    def ip_of(self, fleet: FleetProcess, desktop_id: str) -> str:
        session = docker_client().containers.get(f"{self.ref_of(fleet, desktop_id)}-session")
        return next(iter(session.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]

    def assert_unprivileged(self, fleet: FleetProcess, desktop_id: str, secrets: list[str]) -> None:
        ref = self.ref_of(fleet, desktop_id)
        client = docker_client()
        containers = {role: client.containers.get(f"{ref}-{role}") for role in ("session", "server")}
        for role, container in containers.items():
            host = container.attrs["HostConfig"]
            assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
            assert "no-new-privileges:true" in host["SecurityOpt"] and not host.get("Privileged")
            assert not any("unconfined" in option for option in host["SecurityOpt"])  # Docker's default seccomp
            assert host["PidsLimit"] and host["Memory"] and host["NanoCpus"]
            published = container.attrs["NetworkSettings"].get("Ports") or {}
            assert not host.get("PortBindings") and all(binding is None for binding in published.values())
            assert container.attrs["Config"]["User"] == ("1000:1000" if role == "session" else "1001:1001")
            settings = json.dumps(container.attrs["Config"])
            assert not any(secret in settings for secret in secrets)  # digests only
        assert containers["session"].attrs["HostConfig"]["ShmSize"] >= 512 * 1024 * 1024
        assert containers["server"].attrs["HostConfig"]["NetworkMode"] == f"container:{containers['session'].id}"
        # A network of its own: no other container on it.
        (network,) = containers["session"].attrs["NetworkSettings"]["Networks"]
        attached = client.networks.get(network).attrs["Containers"] or {}
        assert set(attached) <= {containers["session"].id}


ENGINE = DockerEngine()


@pytest.fixture
def engine() -> DockerEngine:
    return ENGINE


def remove_leftovers(fleet: FleetProcess) -> None:
    """A failing test must not leak its desktops into the next one."""
    client = docker_client()
    label = {"label": f"{OWNER_LABEL}={fleet.name}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()


@pytest.fixture(scope="module")
def image() -> str:
    return desktop_image()


def running_fleet(image: str, tmp_path, *extra: str):
    fleet = new_fleet("docker", tmp_path, "--image", image, "--max-desktops", str(MAX_DESKTOPS), "--max-ttl", "7200",
                      *extra).start()
    try:
        yield fleet
    finally:
        fleet.stop()
        remove_leftovers(fleet)


@pytest.fixture
def fleet(image, tmp_path):
    yield from running_fleet(image, tmp_path)


@pytest.fixture
def warm_fleet(image, tmp_path):
    yield from running_fleet(image, tmp_path, "--warm", "1")


def test_several_desktops_at_once_each_its_own_and_closed_to_the_others(fleet):
    checks.several_desktops_at_once_each_its_own_and_closed_to_the_others(fleet, ENGINE)


def test_desktops_are_unprivileged_and_hold_no_secret(fleet):
    checks.desktops_are_unprivileged_and_hold_no_secret(fleet, ENGINE)


def test_the_ttl_and_the_idle_timeout_reap(fleet):
    checks.the_ttl_and_the_idle_timeout_reap(fleet, ENGINE)


def test_a_desktop_whose_container_died_shows_failed_and_is_cleaned_up(fleet):
    checks.a_desktop_that_died_shows_failed_and_is_cleaned_up(fleet, ENGINE)


def test_a_restarted_fleet_adopts_every_desktop_and_loses_none(fleet):
    checks.a_restarted_fleet_adopts_every_desktop_and_loses_none(fleet, ENGINE)


def test_reset_gives_a_fresh_desktop_under_the_same_id_and_token(fleet):
    checks.reset_gives_a_fresh_desktop_under_the_same_id_and_token(fleet, ENGINE)


def test_the_warm_pool_serves_from_itself_and_refills(warm_fleet):
    checks.the_warm_pool_serves_from_itself_and_refills(warm_fleet, ENGINE)


def test_thirty_create_delete_cycles_leave_nothing_behind(fleet):
    checks.thirty_create_delete_cycles_leave_nothing_behind(fleet, ENGINE)


def test_bad_requests_are_refused_clearly_and_change_nothing(fleet):
    checks.bad_requests_are_refused_clearly_and_change_nothing(fleet, ENGINE, MAX_DESKTOPS)


def test_the_worker_takes_a_desktop_for_a_run_and_gives_it_back(fleet, engine, tmp_path):
    checks.the_worker_takes_a_desktop_for_a_run_and_gives_it_back(fleet, engine, tmp_path)


def test_websockets_and_pages_go_through_the_fleet(fleet):
    checks.websockets_and_pages_go_through_the_fleet(fleet, ENGINE)
