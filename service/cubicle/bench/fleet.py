"""`cubicle bench --fleet`: desktops on demand, measured on a real engine.

- Cold: from POST /desktops to the first screenshot through the fleet, a new desktop each
  round, beside the baseline measured in the same run: one `docker run` of the desktop image
  as a single container (the way a desktop started before the fleet), to its first screenshot.
- Warm: the same from the warm pool (--warm 1, refilled between rounds).
- Idle memory: N desktops left idle, PSS of every process of each (both containers).
- Load: N desktops at once, each driven by a client of its own (screenshots and clicks),
  beside one client on one desktop.
- OSWorld's reset between tasks (cubicle.osworld): the fleet's reset of an osworld: true
  desktop until the fresh one's OSWorld server answers, beside the cold start.
- Then what the issue asks of the fleet: a restart loses no desktop, and nothing is left on
  the engine once the fleet's desktops are deleted.

The fleet is `cubicle fleet serve` started by the bench (a name and token of its own), on the
Docker engine or, with --backend kubernetes, on the cluster of $KUBECONFIG.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from cubicle.client import DesktopClient
from cubicle.fleet.client import FleetClient

from .desktops import free_ports
from .processes import read_kib
from .report import (
    RESULTS_DIR,
    Target,
    bullet,
    machine_line,
    ms,
    percentile,
    spread,
    summary_ms,
    table,
    target_lines,
    write_json,
)

IMAGE = "cubicle-desktop"
LEFTOVER_WAIT_S = 120.0  # for a deleted desktop's containers (or Pod) to be gone from the engine


class Fleet:
    """`cubicle fleet serve` for the bench: started, restarted and stopped here."""

    def __init__(self, backend: str, *extra: str):
        self.backend = backend
        self.extra = list(extra)
        self.name = f"bench{secrets.token_hex(3)}"
        self.token = "fleet-bench-" + secrets.token_urlsafe(20)
        self.state = Path(tempfile.mkdtemp(prefix="cubicle-bench-fleet-"))
        (self.port,) = free_ports(1)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Fleet:
        with open(self.state / "fleet.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cubicle", "fleet", "serve", "--port", str(self.port), "--backend", self.backend,
                 "--name", self.name, "--state-dir", str(self.state), "--image", IMAGE, "--max-desktops", "40",
                 *self.extra], env={**os.environ, "CUBICLE_FLEET_TOKEN": self.token}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the fleet exited; see {self.state / 'fleet.log'}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the fleet did not answer within 60 s")

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self, hard: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.process.wait(120)

    def api(self) -> FleetClient:
        return FleetClient(self.url, self.token, timeout=300)


def _first_screenshot(api: FleetClient) -> tuple[float, Any]:
    started = time.perf_counter()
    desktop = api.create()
    with FleetClient.desktop(desktop) as client:
        client.screenshot()
    return time.perf_counter() - started, desktop


def measure_cold(fleet: Fleet, rounds: int) -> list[float]:
    samples = []
    with fleet.api() as api:
        for _ in range(rounds):
            took, desktop = _first_screenshot(api)
            samples.append(took)
            api.delete(desktop.id)
    return samples


def measure_warm(fleet: Fleet, rounds: int) -> list[float]:
    samples = []
    with fleet.api() as api:
        for _ in range(rounds):
            _wait(lambda: fleet.health()["pooled"] >= 1, 300, "the pool to hold a ready desktop")
            took, desktop = _first_screenshot(api)
            samples.append(took)
            api.delete(desktop.id)
    return samples


def measure_osworld_reset(fleet: Fleet, rounds: int) -> list[float]:
    """OSWorld's revert_to_snapshot between two tasks, as cubicle.osworld gives it: the fleet's
    reset of an osworld: true desktop, until the fresh desktop's OSWorld server answers."""
    from cubicle.osworld.sources import FleetDesktops

    source = FleetDesktops(fleet.url, fleet.token, ttl_s=3600)
    desktop = source.start(1280, 800)
    samples = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            desktop = source.reset(desktop)
            samples.append(time.perf_counter() - started)
    finally:
        source.stop(desktop)
        source.close()
    return samples


def measure_baseline(rounds: int) -> list[float]:
    """One container of the desktop image with its port published, to its first screenshot:
    a desktop started by hand (`docker run`), the fleet's work left out."""
    import docker

    client = docker.from_env()
    samples = []
    for _ in range(rounds):
        (port,) = free_ports(1)
        token = secrets.token_urlsafe(24)
        started = time.perf_counter()
        container = client.containers.run(IMAGE, detach=True, ports={"8000/tcp": ("127.0.0.1", port)}, shm_size="1g",
                                          cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
                                          environment={"CUBICLE_TOKEN": token})
        try:
            with DesktopClient(f"http://127.0.0.1:{port}", token, timeout=30) as desktop:
                _wait(lambda: _answers(desktop), 120, "the container's desktop to answer")
                desktop.screenshot()
            samples.append(time.perf_counter() - started)
        finally:
            container.remove(force=True)
    client.close()
    return samples


def _answers(desktop: DesktopClient) -> bool:
    try:
        return desktop.health().status == "ok"
    except (httpx.HTTPError, ValueError):
        return False


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def desktop_pss_mib(backend: str, ref: str) -> float:
    """PSS of every process of one desktop (its two containers), from /proc on this machine."""
    import docker

    client = docker.from_env()
    if backend == "docker":
        names = [f"{ref}-session", f"{ref}-server"]
    else:  # dockershim names a Pod's containers k8s_<container>_<pod>_...
        names = [c.name for c in client.containers.list(filters={"name": "k8s_"}) if f"_{ref}_" in c.name
                 and not c.name.startswith("k8s_POD_")]
    total_kib = 0
    for name in names:
        for process in client.containers.get(name).top(ps_args="-eo pid")["Processes"]:
            total_kib += read_kib(f"/proc/{process[0]}/smaps_rollup", "Pss:") or 0
    client.close()
    return total_kib / 1024


def measure_idle_memory(fleet: Fleet, count: int) -> tuple[list[float], int]:
    """PSS per desktop of `count` idle ones; the number that started."""
    made = []
    with fleet.api() as api:
        try:
            for _ in range(count):
                made.append(api.create(idle_timeout_s=None))
            time.sleep(20)  # let them settle, as idle desktops do
            refs = _refs(fleet, [d.id for d in made])
            return [desktop_pss_mib(fleet.backend, ref) for ref in refs], len(made)
        finally:
            for desktop in made:
                api.delete(desktop.id)


def _refs(fleet: Fleet, ids: list[str]) -> list[str]:
    """The backend's names of the desktops (what the engine calls them)."""
    if fleet.backend == "docker":
        records = json.loads((fleet.state / f"docker-{fleet.name}.json").read_text())
        return [ref for ref, meta in records.items() if meta.get("id") in ids]
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    k8s_config.load_kube_config()
    pods = k8s.CoreV1Api().list_namespaced_pod("default", label_selector=f"cubicle.dev/fleet={fleet.name}").items
    names = []
    for pod in pods:
        meta = pod.metadata
        assert meta is not None and meta.name is not None and meta.annotations is not None  # the fleet's pods have them
        if json.loads(meta.annotations["cubicle.dev/meta"]).get("id") in ids:
            names.append(meta.name)
    return names


def measure_load(fleet: Fleet, count: int, seconds: float) -> dict[str, Any]:
    """`count` desktops, each driven by its own client (a screenshot, then a click), at once;
    and one desktop driven alone for the same time, first."""
    with fleet.api() as api:
        made = [api.create(idle_timeout_s=None) for _ in range(count)]
        try:
            alone = _drive([made[0]], seconds)
            together = _drive(made, seconds)
        finally:
            for desktop in made:
                api.delete(desktop.id)
    return {"alone": alone, "together": together, "desktops": count}


def _drive(desktops: list[Any], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client_loop(desktop: Any) -> None:
        with FleetClient.desktop(desktop) as client:
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    if n % 2 == 0:
                        client.screenshot()
                    else:
                        client.act({"action": "mouse_move", "coordinate": [100 + n % 500, 100 + n % 300]})
                except Exception:  # noqa: BLE001 - counted, the load goes on
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
                n += 1

    threads = [threading.Thread(target=client_loop, args=(d,)) for d in desktops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests": len(latencies), "errors": errors[0], "p50": statistics.median(latencies) if latencies else None,
            "p95": percentile(latencies, 0.95) if latencies else None, "per_s": len(latencies) / seconds}


def check_restart_and_leftovers(fleet: Fleet) -> tuple[bool, float | None]:
    """Whether a hard restart kept every desktop, and how long after their DELETEs nothing of
    them was left on the engine (None: something still was after LEFTOVER_WAIT_S). A deleted
    Pod takes a while to end: Kubernetes stops its containers after the API has answered."""
    with fleet.api() as api:
        made = {api.create(labels={"bench": "restart"}).id for _ in range(3)}
    fleet.stop(hard=True)
    fleet.start()
    with fleet.api() as api:
        kept = {d.id for d in api.list()} == made
        for desktop_id in made:
            api.delete(desktop_id)
    deleted = time.monotonic()
    while not _nothing_left(fleet):
        if time.monotonic() - deleted > LEFTOVER_WAIT_S:
            return kept, None
        time.sleep(0.5)
    return kept, time.monotonic() - deleted


def _nothing_left(fleet: Fleet) -> bool:
    import docker

    client = docker.from_env()
    if fleet.backend == "docker":
        label = {"label": f"dev.cubicle.fleet={fleet.name}"}
        left = client.containers.list(all=True, filters=label) + client.networks.list(filters=label)
    else:
        left = [c for c in client.containers.list(all=True, filters={"name": "k8s_"}) if fleet.name in c.name]
    client.close()
    return not left


def run_fleet_bench(args: argparse.Namespace) -> int:
    backend = args.backend
    rounds = args.rounds if args.rounds != 30 else 20  # 20 unless asked: each round starts a desktop
    results: dict[str, Any] = {"backend": backend, "rounds": rounds}
    print(machine_line())
    print(f"fleet bench on {backend}: {rounds} rounds each", flush=True)
    baseline = measure_baseline(min(rounds, 10)) if backend == "docker" else None
    cold_fleet = Fleet(backend).start()
    try:
        cold = measure_cold(cold_fleet, rounds)
        memory, started = measure_idle_memory(cold_fleet, args.idle)
        load = measure_load(cold_fleet, args.drive, args.seconds)
        osworld_reset = measure_osworld_reset(cold_fleet, min(rounds, 10))
        restart_kept, gone_after_s = check_restart_and_leftovers(cold_fleet)
    finally:
        cold_fleet.stop()
    warm_fleet = Fleet(backend, "--warm", "1").start()
    try:
        warm = measure_warm(warm_fleet, rounds)
    finally:
        warm_fleet.stop()

    rows = [["cold: POST /desktops -> first screenshot", f"p50 {ms(statistics.median(cold))} ms",
             f"p95 {ms(percentile(cold, 0.95))} ms", f"{spread(baseline)} (docker run, one container)" if baseline else "-",
             f"{statistics.median(cold) / statistics.median(baseline):.2f}x" if baseline else "-"],
            ["warm: from the pool", f"p50 {ms(statistics.median(warm))} ms", f"p95 {ms(percentile(warm, 0.95))} ms",
             f"cold p50 {ms(statistics.median(cold))} ms", f"{statistics.median(cold) / statistics.median(warm):.1f}x faster"],
            [f"idle memory ({started} desktops)", f"{statistics.median(memory):.0f} MiB PSS each",
             f"{sum(memory) / 1024:.2f} GiB in all", "-", "-"]]
    alone, together = load["alone"], load["together"]
    rows.append([f"{load['desktops']} desktops, one client each", f"p50 {ms(together['p50'])} ms",
                 f"p95 {ms(together['p95'])} ms", f"1 desktop alone: p50 {ms(alone['p50'])} ms",
                 f"{together['per_s'] / alone['per_s']:.1f}x the requests/s, {together['errors']} errors"])
    rows.append(["OSWorld reset: fresh desktop, its OSWorld server answering", f"p50 {ms(statistics.median(osworld_reset))} ms",
                 f"p95 {ms(percentile(osworld_reset, 0.95))} ms", f"cold p50 {ms(statistics.median(cold))} ms",
                 f"{statistics.median(osworld_reset) / statistics.median(cold):.2f}x"])
    print("\n".join(table(["figure", "median", "p95", "baseline", "ratio"], rows, args.markdown)))
    targets: list[Target] = [
        ("warm <= 100 ms p50", f"{ms(statistics.median(warm))} ms", statistics.median(warm) <= 0.1),
        ("cold <= 3 s p50" + (" (Docker)" if backend == "docker" else ""), f"{statistics.median(cold):.2f} s",
         statistics.median(cold) <= 3.0),
        (f"{args.idle} idle desktops on this machine", f"{started} started, {sum(memory) / 1024:.1f} GiB", started == args.idle),
        ("a restart of the fleet loses nothing", "kept" if restart_kept else "LOST", restart_kept),
        ("zero leftovers after delete", f"none {gone_after_s:.1f} s after" if gone_after_s is not None
         else f"SOME after {LEFTOVER_WAIT_S:g} s", gone_after_s is not None),
    ]
    print("\n".join(target_lines(targets, args.markdown)))
    results.update(cold=summary_ms(cold), warm=summary_ms(warm), osworld_reset=summary_ms(osworld_reset), baseline=summary_ms(baseline) if baseline else None,
                   idle_pss_mib=memory, load=load)
    path = RESULTS_DIR / f"fleet-{backend}.json"
    write_json(path, results, targets)
    print(f"{bullet(args.markdown)}results in {path}")
    return 0
