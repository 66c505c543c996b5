"""The fleet on a real Kubernetes cluster (the checks are in fleet_checks.py): a single-node
cluster started for this module by scripts/engines/kubernetes (built once from Debian's source
package, cached), `cubicle fleet serve --backend kubernetes` with its kubeconfig, one Pod per
desktop in a namespace of the test's own, and what the cluster holds looked at through the
official client."""

from __future__ import annotations

import json
import secrets
import subprocess
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

import fleet_checks as checks
from cubicle.fleet.backends.kubernetes import META_ANNOTATION, OWNER_LABEL
from engines import ROOT, FleetProcess, desktop_image, new_fleet

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(900)]
MAX_DESKTOPS = 4
KUBECTL = "/var/cache/cubicle/kubernetes-1.20.2/bin/kubectl"  # scripts/engines/kubernetes builds it there


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(kubeconfig path, namespace) of a cluster up for this module, down after it."""
    state = tmp_path_factory.mktemp("kubernetes")
    script = str(ROOT / "scripts/engines/kubernetes")
    up = subprocess.run([script, "up", str(state)], capture_output=True, text=True, timeout=1800)
    assert up.returncode == 0, f"the cluster did not come up:\n{up.stderr[-4000:]}"
    kubeconfig = up.stdout.strip().splitlines()[-1]
    try:
        k8s_config.load_kube_config(config_file=kubeconfig)
        namespace = f"cubicle-test-{secrets.token_hex(3)}"
        k8s.CoreV1Api().create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        yield kubeconfig, namespace
    finally:
        subprocess.run([script, "down", str(state)], capture_output=True, timeout=300)


class KubernetesEngine:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.api = k8s.CoreV1Api()

    def pods(self, fleet: FleetProcess) -> list[Any]:
        return self.api.list_namespaced_pod(self.namespace, label_selector=f"{OWNER_LABEL}={fleet.name}").items

    def owned(self, fleet: FleetProcess) -> dict[str, list[str]]:
        pods = [p.metadata.name for p in self.pods(fleet)]
        found = self.api.list_namespaced_secret(self.namespace, label_selector=f"{OWNER_LABEL}={fleet.name}").items
        return {"desktops": pods, "secrets": [s.metadata.name for s in found]}

    def record(self, fleet: FleetProcess, ref: str) -> dict[str, Any]:
        pod = self.api.read_namespaced_pod(ref, self.namespace)
        return json.loads(pod.metadata.annotations[META_ANNOTATION])

    def ref_of(self, fleet: FleetProcess, desktop_id: str) -> str:
        return next(p.metadata.name for p in self.pods(fleet)
                    if json.loads(p.metadata.annotations[META_ANNOTATION]).get("id") == desktop_id)

    def kill(self, fleet: FleetProcess, desktop_id: str) -> None:
        self.api.delete_namespaced_pod(self.ref_of(fleet, desktop_id), self.namespace, grace_period_seconds=0)

    def ip_of(self, fleet: FleetProcess, desktop_id: str) -> str:
        return self.api.read_namespaced_pod(self.ref_of(fleet, desktop_id), self.namespace).status.pod_ip

    def assert_unprivileged(self, fleet: FleetProcess, desktop_id: str, secrets: list[str]) -> None:
        pod = self.api.read_namespaced_pod(self.ref_of(fleet, desktop_id), self.namespace)
        spec = pod.spec
        assert spec.security_context.run_as_non_root is True
        assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
        assert not spec.share_process_namespace and spec.automount_service_account_token is False
        assert not spec.host_network and not spec.host_pid and not spec.host_ipc
        users = {}
        for container in spec.containers:
            context = container.security_context
            assert context.allow_privilege_escalation is False and context.capabilities.drop == ["ALL"]
            assert not context.capabilities.add and not context.privileged
            assert container.resources.limits["cpu"] and container.resources.limits["memory"]
            assert not container.ports or all(port.host_port is None for port in container.ports)
            users[container.name] = context.run_as_user
            assert not any(secret in json.dumps(k8s.ApiClient().sanitize_for_serialization(container))
                           for secret in secrets)
        assert users == {"session": 1000, "server": 1001}
        (shm,) = [v for v in spec.volumes if v.name == "shm"]
        assert shm.empty_dir.medium == "Memory"
        # The Secret holds digests only, and belongs to the Pod (it goes with it).
        (secret,) = self.api.list_namespaced_secret(self.namespace, label_selector=f"{OWNER_LABEL}={fleet.name}").items
        assert secret.metadata.owner_references[0].name == pod.metadata.name
        values = " ".join(__import__("base64").b64decode(v).decode() for v in secret.data.values())
        assert values.startswith("sha256:") and not any(s in values for s in secrets)


@pytest.fixture(scope="module")
def engine(cluster) -> KubernetesEngine:
    return KubernetesEngine(cluster[1])


def running_fleet(cluster, tmp_path, *extra: str):
    kubeconfig, namespace = cluster
    fleet = new_fleet("kubernetes", tmp_path, "--image", desktop_image(), "--namespace", namespace,
                      "--image-pull-policy", "Never", "--max-desktops", str(MAX_DESKTOPS), "--max-ttl", "7200", *extra,
                      env={"KUBECONFIG": kubeconfig}).start()
    try:
        yield fleet
    finally:
        fleet.stop()
        api = k8s.CoreV1Api()
        for pod in api.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}={fleet.name}").items:
            api.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


@pytest.fixture
def fleet(cluster, tmp_path):
    yield from running_fleet(cluster, tmp_path)


@pytest.fixture
def warm_fleet(cluster, tmp_path):
    yield from running_fleet(cluster, tmp_path, "--warm", "1")


def test_several_desktops_at_once_each_its_own_and_closed_to_the_others(fleet, engine):
    checks.several_desktops_at_once_each_its_own_and_closed_to_the_others(fleet, engine)


def test_desktops_are_unprivileged_pods_and_hold_no_secret(fleet, engine):
    checks.desktops_are_unprivileged_and_hold_no_secret(fleet, engine)


def test_the_ttl_and_the_idle_timeout_reap(fleet, engine):
    checks.the_ttl_and_the_idle_timeout_reap(fleet, engine)


def test_a_desktop_whose_pod_was_deleted_shows_failed_and_is_cleaned_up(fleet, engine):
    checks.a_desktop_that_died_shows_failed_and_is_cleaned_up(fleet, engine)


def test_a_restarted_fleet_adopts_every_desktop_and_loses_none(fleet, engine):
    checks.a_restarted_fleet_adopts_every_desktop_and_loses_none(fleet, engine)


def test_reset_gives_a_fresh_desktop_under_the_same_id_and_token(fleet, engine):
    checks.reset_gives_a_fresh_desktop_under_the_same_id_and_token(fleet, engine)


def test_the_warm_pool_serves_from_itself_and_refills(warm_fleet, engine):
    checks.the_warm_pool_serves_from_itself_and_refills(warm_fleet, engine)


def test_thirty_create_delete_cycles_leave_nothing_behind(fleet, engine):
    checks.thirty_create_delete_cycles_leave_nothing_behind(fleet, engine)


def test_bad_requests_are_refused_clearly_and_change_nothing(fleet, engine):
    checks.bad_requests_are_refused_clearly_and_change_nothing(fleet, engine, MAX_DESKTOPS)


def test_the_worker_takes_a_desktop_for_a_run_and_gives_it_back(fleet, engine, tmp_path):
    checks.the_worker_takes_a_desktop_for_a_run_and_gives_it_back(fleet, engine, tmp_path)


def test_websockets_and_pages_go_through_the_fleet(fleet, engine):
    checks.websockets_and_pages_go_through_the_fleet(fleet, engine)


def test_the_manifests_run_the_fleet_and_the_worker_in_the_cluster(cluster, tmp_path):
    """deploy/kubernetes applied as the README says: the fleet runs in the cluster with its
    ServiceAccount, makes a desktop Pod that works through its Service, and the worker in the
    cluster carries out a run on a desktop it takes from that fleet."""
    import httpx

    from cubicle.agent.scripted_api import ScriptedAPI, message, text, tool_use
    from engines import built_images
    from support import wait_until

    built_images()
    kubeconfig, _ = cluster
    kubectl = [KUBECTL, "--kubeconfig", kubeconfig]
    api = k8s.CoreV1Api()
    fleet_token, worker_token = "fleet-" + secrets.token_hex(16), "worker-" + secrets.token_hex(16)
    scripted = ScriptedAPI([lambda r: message(tool_use("bash", {"command": "echo in-the-cluster"})),
                            lambda r: message(text("done"))], host="172.17.0.1")
    try:
        api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="cubicle")))
        api.create_namespaced_secret("cubicle", k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="cubicle-tokens"), string_data={
            "fleet-token": fleet_token, "worker-token": worker_token, "anthropic-api-key": "sk-ant-k8s-" + "k" * 20}))
        applied = subprocess.run(kubectl + ["apply", "-k", str(ROOT / "deploy/kubernetes")], capture_output=True, text=True,
                                 timeout=120)
        assert applied.returncode == 0, applied.stderr
        # The worker's model API is the scripted one, on the host: a test-only setting.
        patched = subprocess.run(kubectl + ["-n", "cubicle", "set", "env", "deployment/cubicle-worker",
                                            f"ANTHROPIC_BASE_URL={scripted.url}"], capture_output=True, text=True, timeout=60)
        assert patched.returncode == 0, patched.stderr

        def service_url(name: str) -> str:
            service = api.read_namespaced_service(name, "cubicle")
            return f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"

        fleet_url, worker_url = service_url("cubicle-fleet"), service_url("cubicle-worker")

        def answers(url: str) -> bool:
            try:
                return httpx.get(url + "/health", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: answers(fleet_url) and answers(worker_url), 300, "the fleet and the worker to be up in the cluster")
        fleet_headers = {"Authorization": f"Bearer {fleet_token}"}
        created = httpx.post(fleet_url + "/desktops", json={"labels": {"from": "manifests"}}, headers=fleet_headers, timeout=300)
        assert created.status_code == 201, created.text
        desktop = created.json()
        shot = httpx.get(desktop["urls"]["api"] + "/screenshot", headers={"Authorization": f"Bearer {desktop['token']}"},
                         timeout=60)
        assert shot.status_code == 200 and shot.headers["x-image-width"] == "1280"
        pods = api.list_namespaced_pod("cubicle", label_selector="cubicle.dev/fleet=cubicle").items
        assert any(json.loads(p.metadata.annotations["cubicle.dev/meta"])["id"] == desktop["id"] for p in pods)
        assert httpx.delete(f"{fleet_url}/desktops/{desktop['id']}", headers=fleet_headers, timeout=60).status_code == 204

        worker_headers = {"Authorization": f"Bearer {worker_token}"}
        run = httpx.post(worker_url + "/runs", json={"task": "Say where you are.", "desktop": "new",
                                                     "model": "claude-haiku-4-5"}, headers=worker_headers, timeout=300)
        assert run.status_code == 201, run.text
        finished = wait_until(lambda: (r := httpx.get(f"{worker_url}/runs/{run.json()['id']}", headers=worker_headers,
                                                      timeout=30).json())["active"] is False and r, 180, "the run to end")
        assert finished["status"] == "finished", finished
        (result,) = [e for e in finished["events"] if e["type"] == "result"]
        assert result["text"].strip() == "in-the-cluster"
        # The Role stops at its namespace: the fleet's ServiceAccount may not list Pods elsewhere.
        denied = subprocess.run(kubectl + ["auth", "can-i", "list", "pods", "-n", "default",
                                           "--as", "system:serviceaccount:cubicle:cubicle-fleet"],
                                capture_output=True, text=True, timeout=30)
        assert denied.stdout.strip() == "no"
    finally:
        subprocess.run(kubectl + ["delete", "namespace", "cubicle", "--wait=false"], capture_output=True, timeout=60)
        scripted.close()
