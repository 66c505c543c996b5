"""The real container engines for the tests: the Docker engine (started by scripts/setup, through
scripts/engines/docker-up), the desktop images built on it from this checkout, and a fleet
service (`cubicle fleet serve`) run as a process of its own.

Images are built with the engine's own cache, so a run after the first rebuilds only what the
checkout changed. The base image (debian:bookworm-slim) is made by scripts/engines/base-image
when missing: no registry can be pulled from here.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from support import ROOT, free_port, wait_until

BASE_IMAGE = "debian:bookworm-slim"
HOST_CA = "/usr/local/share/host-ca.crt"  # where scripts/engines/base-image puts this machine's CA bundle
DESKTOP_IMAGE = "cubicle-desktop"
AGENT_IMAGE = "cubicle-agent"
BUILD_TIMEOUT_S = 1800


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"the Docker engine does not answer ({error}): scripts/setup starts it (scripts/engines/docker-up)")
    return client


def compose_environment(**settings: str) -> dict[str, str]:
    """The environment `docker compose` runs with here: the build's CA bundle when the base
    image has one (see HOST_CA), placeholder tokens where only a build is asked for."""
    placeholders = {name: f"build-only-{name.lower()}" for name in ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "CUBICLE_FLEET_TOKEN")}
    environment = {**os.environ, **placeholders, **settings}
    environment.pop("PIP_CERT", None)  # this machine's own: a path the build does not have
    if base_has_ca():
        environment.setdefault("CUBICLE_PIP_CERT", HOST_CA)
    return environment


@functools.cache
def base_has_ca() -> bool:
    client = docker_client()
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(ROOT / "scripts/engines/base-image")], check=True, timeout=900)
    try:
        client.containers.run(BASE_IMAGE, ["test", "-f", HOST_CA], remove=True)
        return True
    except docker.errors.ContainerError:
        return False


@functools.cache
def built_images() -> tuple[str, str]:
    """cubicle-desktop and cubicle-agent, built from this checkout by `docker compose build`
    (once per test run; the engine's build cache makes a rebuild cost what changed)."""
    result = subprocess.run(["docker", "compose", "--project-directory", str(ROOT), "build", "desktop", "agent"],
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=compose_environment(), cwd=ROOT)
    assert result.returncode == 0, f"docker compose build failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
    return DESKTOP_IMAGE, AGENT_IMAGE


def desktop_image() -> str:
    return built_images()[0]


@dataclass
class FleetProcess:
    """`cubicle fleet serve` in a process of its own, restartable with the same token and name."""

    backend: str
    state_dir: Path
    name: str
    token: str
    extra: list[str]
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FleetProcess:
        self.port = self.port or free_port()  # a restart listens where the fleet was
        with open(self.state_dir / "fleet.log", "ab") as log:  # the child keeps its own copy
            self.process = self._spawn(log)
        wait_until(self._answers, 60, "the fleet to answer")
        return self

    def _spawn(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "cubicle", "fleet", "serve", "--port", str(self.port), "--backend", self.backend,
             "--name", self.name, "--state-dir", str(self.state_dir), *self.extra],
            env={**os.environ, **self.env, "CUBICLE_FLEET_TOKEN": self.token}, stdout=log, stderr=subprocess.STDOUT)

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"the fleet exited: {self.log()[-3000:]}"
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, hard: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.process.wait(60)

    def log(self) -> str:
        return (self.state_dir / "fleet.log").read_text(errors="replace")

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def new_fleet(backend: str, state_dir: Path, *extra: str, env: dict[str, str] | None = None) -> FleetProcess:
    return FleetProcess(backend, state_dir, f"t{secrets.token_hex(4)}", "fleet-" + secrets.token_urlsafe(24),
                        list(extra), env or {})
