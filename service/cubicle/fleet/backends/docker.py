"""Desktops on the Docker engine, through the Docker Engine API (the `docker` SDK; DOCKER_HOST
is honoured).

Each desktop gets a bridge network of its own, so desktops cannot reach one another at all;
no port is published on the host. Its two containers: `<ref>-session` (the network and IPC
namespace's owner) and `<ref>-server` (joins both). Both drop every capability, cannot gain
privileges, keep Docker's default seccomp profile, run as their own non-root users, and share
one set of CPU, memory and process limits (split between them). Nothing restarts them: a
desktop whose container died is reported failed and removed by the fleet.

The networks' subnets are /28s taken from one range (CUBICLE_FLEET_SUBNETS, default
10.213.0.0/16: 4096 desktops), rather than from the engine's default pools, which run out
after about thirty networks. When the fleet itself runs in a container, it joins each
desktop's network to reach it. What a desktop's record (`meta`) holds is kept in a label-free
state file: labels cannot change after a container is created, and a record does.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from . import DESKTOP_PORT, SERVER_UID, SESSION_UID, BackendError, DesktopSpec, Owned, State, session_environment

OWNER_LABEL = "dev.cubicle.fleet"
REF_LABEL = "dev.cubicle.desktop"
ROLE_LABEL = "dev.cubicle.role"
SUBNET_BLOCK = 28
UNPRIVILEGED = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


class DockerBackend:
    name = "docker"

    def __init__(self, fleet: str, state_dir: Path, subnets: str | None = None, client: Any = None):
        self.fleet = fleet
        try:
            self.client = client or docker.from_env()
            self.client.ping()
        except DockerException as error:
            raise BackendError(f"the Docker engine does not answer ({error}); is it running, is DOCKER_HOST right?") from None
        self.range = ipaddress.ip_network(subnets or os.environ.get("CUBICLE_FLEET_SUBNETS") or "10.213.0.0/16")
        self.state_file = state_dir / f"docker-{fleet}.json"
        self._lock = threading.Lock()
        self._own_container = self._find_own_container()

    # -- creating ---------------------------------------------------------------------------

    def create(self, spec: DesktopSpec) -> None:
        self._check_image(spec.image)
        labels = {OWNER_LABEL: self.fleet, REF_LABEL: spec.ref}
        limits = spec.limits
        network = self._network(spec.ref, labels)
        try:
            session = self.client.containers.run(
                spec.image, ["session"], name=f"{spec.ref}-session", detach=True, user=f"{SESSION_UID}:{SESSION_UID}",
                environment=session_environment(spec),
                labels={**labels, ROLE_LABEL: "session"}, network=network.name, ipc_mode="shareable",
                shm_size=f"{limits.shm_mib}m", nano_cpus=int(limits.cpus * 0.8 * 1e9),
                mem_limit=f"{int(limits.memory_mib * 0.85)}m", pids_limit=int(limits.pids * 0.85), **UNPRIVILEGED)
            self.client.containers.run(
                spec.image, ["server"], name=f"{spec.ref}-server", detach=True, user=f"{SERVER_UID}:{SERVER_UID}",
                environment={"CUBICLE_TOKEN": "sha256:" + spec.token_digest,
                             "CUBICLE_OPERATOR_TOKEN": "sha256:" + spec.operator_digest},
                labels={**labels, ROLE_LABEL: "server"}, network_mode=f"container:{session.id}",
                ipc_mode=f"container:{session.id}", nano_cpus=int(limits.cpus * 0.2 * 1e9),
                mem_limit=f"{int(limits.memory_mib * 0.15)}m", pids_limit=int(limits.pids * 0.15), **UNPRIVILEGED)
        except (APIError, DockerException) as error:
            self.delete(spec.ref)
            raise BackendError(f"the Docker engine refused the desktop: {_explain(error)}") from None
        self.save_meta(spec.ref, spec.meta)

    def _check_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
        except ImageNotFound:
            raise BackendError(f"the image {image!r} is not on the Docker engine: build it first "
                               "(docker compose build, or docker build --target desktop -t cubicle-desktop .)") from None

    def _network(self, ref: str, labels: dict[str, str]):
        """The desktop's own bridge, on the first free /28 of the range."""
        with self._lock:
            taken = set()
            for network in self.client.networks.list(filters={"label": OWNER_LABEL}):
                for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                    if config.get("Subnet"):
                        taken.add(ipaddress.ip_network(config["Subnet"]))
            subnet = next((s for s in self.range.subnets(new_prefix=SUBNET_BLOCK) if s not in taken), None)
            if subnet is None:
                raise BackendError(f"no free /{SUBNET_BLOCK} left in {self.range} for another desktop network")
            pool = docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))
            try:
                network = self.client.networks.create(
                    f"{ref}-net", driver="bridge", labels=labels, ipam=docker.types.IPAMConfig(pool_configs=[pool]))
            except APIError as error:
                raise BackendError(f"the Docker engine refused the desktop's network: {_explain(error)}") from None
        if self._own_container is not None:
            network.connect(self._own_container)
        return network

    # -- looking ----------------------------------------------------------------------------

    def address(self, ref: str) -> str | None:
        try:
            session = self.client.containers.get(f"{ref}-session")
        except NotFound:
            return None
        networks = session.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = (networks.get(f"{ref}-net") or {}).get("IPAddress")
        return f"http://{ip}:{DESKTOP_PORT}" if ip else None

    def state(self, ref: str) -> State:
        states = []
        for role in ("session", "server"):
            try:
                states.append(self.client.containers.get(f"{ref}-{role}").status)
            except NotFound:
                states.append("gone")
        if all(state == "gone" for state in states):
            return "gone"
        if any(state in ("exited", "dead", "gone") for state in states):
            return "failed"
        return "running" if all(state == "running" for state in states) else "starting"

    def list_owned(self) -> list[Owned]:
        records = self._records()
        # sparse: the list's own fields, with no inspect per container, which fails with 404 for
        # a container removed between the list and the inspect.
        refs = {(container.attrs.get("Labels") or {}).get(REF_LABEL) for container in
                self.client.containers.list(all=True, sparse=True, filters={"label": f"{OWNER_LABEL}={self.fleet}"})}
        refs |= {network.attrs["Labels"].get(REF_LABEL) for network in
                 self.client.networks.list(filters={"label": f"{OWNER_LABEL}={self.fleet}"})}
        refs |= set(records)  # a record whose containers went while no fleet watched
        return [Owned(ref, self.state(ref), records.get(ref, {}), self.address(ref)) for ref in sorted(r for r in refs if r)]

    # -- removing ---------------------------------------------------------------------------

    def delete(self, ref: str) -> None:
        for role in ("server", "session"):
            try:
                self.client.containers.get(f"{ref}-{role}").remove(force=True, v=True)
            except NotFound:
                pass
            except APIError as error:
                if error.status_code != 409:  # 409: removal already in progress
                    raise BackendError(f"could not remove {ref}-{role}: {_explain(error)}") from None
        try:
            network = self.client.networks.get(f"{ref}-net")
            if self._own_container is not None:
                try:
                    network.disconnect(self._own_container, force=True)
                except APIError:
                    pass
            network.remove()
        except NotFound:
            pass
        except APIError as error:
            raise BackendError(f"could not remove the network {ref}-net: {_explain(error)}") from None
        with self._lock:
            records = self._records()
            if records.pop(ref, None) is not None:
                self._write(records)

    # -- records ----------------------------------------------------------------------------

    def save_meta(self, ref: str, meta: dict[str, Any]) -> None:
        with self._lock:
            records = self._records()
            records[ref] = meta
            self._write(records)

    def _records(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _write(self, records: dict[str, dict[str, Any]]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".new")
        temporary.write_text(json.dumps(records, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_file)

    def _find_own_container(self) -> str | None:
        """The fleet's own container, when it runs in one (its hostname is the container id)."""
        if not os.path.exists("/.dockerenv"):
            return None
        try:
            return self.client.containers.get(socket.gethostname()).id
        except (NotFound, APIError):
            return None

    def close(self) -> None:
        self.client.close()


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
