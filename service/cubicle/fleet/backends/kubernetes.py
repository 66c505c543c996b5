"""Desktops on Kubernetes, through the official `kubernetes` client (in-cluster config when the
fleet runs in a Pod, else a kubeconfig: $KUBECONFIG or ~/.kube/config): one Pod per desktop,
in one namespace.

The Pod holds the two containers of a desktop (session and server), which share its network
and IPC namespaces but not its processes. Pod and containers run as non-root users, drop
every capability, cannot gain privileges and use the RuntimeDefault seccomp profile;
/dev/shm is a memory-backed volume sized for Firefox. The token's digest is in a Secret of
the desktop's own, owned by the Pod, so it goes with it. The record (`meta`) is an annotation
of the Pod. Images are never pulled unless asked (`image_pull_policy`): clusters without a
registry load them into the node. A Pod that failed, or whose containers keep crashing, is
reported failed and removed by the fleet. (Per-Pod process limits are the kubelet's
--pod-max-pids, not part of the Pod.)
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from . import DESKTOP_PORT, SERVER_UID, SESSION_UID, BackendError, DesktopSpec, Owned, State, session_environment

OWNER_LABEL = "cubicle.dev/fleet"
REF_LABEL = "cubicle.dev/desktop"
META_ANNOTATION = "cubicle.dev/meta"
CRASHING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CreateContainerError",
            "CreateContainerConfigError", "InvalidImageName")


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, fleet: str, namespace: str | None = None, image_pull_policy: str = "IfNotPresent",
                 kubeconfig: str | None = None):
        self.fleet = fleet
        try:
            if kubeconfig:
                k8s_config.load_kube_config(config_file=kubeconfig)
            else:
                try:
                    k8s_config.load_incluster_config()
                    in_cluster = True
                except ConfigException:
                    k8s_config.load_kube_config()
                    in_cluster = False
        except (ConfigException, OSError) as error:
            raise BackendError(f"no Kubernetes configuration: {error} (set KUBECONFIG, or run the fleet in a Pod)") from None
        self.api = k8s.CoreV1Api()
        self.namespace = namespace or (_own_namespace() if not kubeconfig and in_cluster else None) or "default"
        self.image_pull_policy = image_pull_policy
        try:
            self.api.list_namespaced_pod(self.namespace, limit=1)
        except ApiException as error:
            raise BackendError(f"the cluster refused to list Pods in {self.namespace!r}: {error.status} {error.reason}") from None
        except Exception as error:  # urllib3 connection errors have no common base here
            raise BackendError(f"the cluster does not answer: {type(error).__name__}: {error}") from None

    # -- creating ---------------------------------------------------------------------------

    def create(self, spec: DesktopSpec) -> None:
        labels = {OWNER_LABEL: self.fleet, REF_LABEL: spec.ref}
        limits = spec.limits
        secret_name = f"{spec.ref}-token"
        unprivileged = k8s.V1SecurityContext(allow_privilege_escalation=False, run_as_non_root=True,
                                             capabilities=k8s.V1Capabilities(drop=["ALL"]))

        def resources(share: float) -> k8s.V1ResourceRequirements:
            amount = {"cpu": f"{int(limits.cpus * share * 1000)}m", "memory": f"{int(limits.memory_mib * share)}Mi"}
            return k8s.V1ResourceRequirements(limits=amount, requests={"cpu": "50m", "memory": amount["memory"]})

        health = k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port=DESKTOP_PORT),
                             period_seconds=2, failure_threshold=3, timeout_seconds=4)
        pod = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=spec.ref, labels=labels,
                                      annotations={META_ANNOTATION: json.dumps(spec.meta)}),
            spec=k8s.V1PodSpec(
                restart_policy="Always", automount_service_account_token=False, enable_service_links=False,
                security_context=k8s.V1PodSecurityContext(
                    run_as_non_root=True, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
                volumes=[k8s.V1Volume(name="shm", empty_dir=k8s.V1EmptyDirVolumeSource(
                    medium="Memory", size_limit=f"{limits.shm_mib}Mi"))],
                containers=[
                    k8s.V1Container(
                        name="session", image=spec.image, image_pull_policy=self.image_pull_policy, args=["session"],
                        env=[k8s.V1EnvVar(name=name, value=value) for name, value in session_environment(spec).items()],
                        security_context=_as_user(unprivileged, SESSION_UID), resources=resources(0.8),
                        volume_mounts=[k8s.V1VolumeMount(name="shm", mount_path="/dev/shm")]),
                    k8s.V1Container(
                        name="server", image=spec.image, image_pull_policy=self.image_pull_policy, args=["server"],
                        env=[k8s.V1EnvVar(name=variable, value_from=k8s.V1EnvVarSource(
                            secret_key_ref=k8s.V1SecretKeySelector(name=secret_name, key=key)))
                             for variable, key in (("CUBICLE_TOKEN", "token"), ("CUBICLE_OPERATOR_TOKEN", "operator"))],
                        ports=[k8s.V1ContainerPort(container_port=DESKTOP_PORT)],
                        security_context=_as_user(unprivileged, SERVER_UID), resources=resources(0.2),
                        readiness_probe=health),
                ]))
        try:
            # The Secret first: a Pod whose Secret is missing fails to start its server
            # (CreateContainerConfigError). Then it is given to the Pod, to go with it.
            self.api.create_namespaced_secret(self.namespace, k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name=secret_name, labels=labels),
                string_data={"token": "sha256:" + spec.token_digest, "operator": "sha256:" + spec.operator_digest}))
            created = self.api.create_namespaced_pod(self.namespace, pod)
            assert created.metadata is not None  # the API server fills it in
            owner = {"apiVersion": "v1", "kind": "Pod", "name": created.metadata.name, "uid": created.metadata.uid}
            self.api.patch_namespaced_secret(secret_name, self.namespace, {"metadata": {"ownerReferences": [owner]}})
        except ApiException as error:
            self.delete(spec.ref)
            raise BackendError(f"the cluster refused the desktop: {error.status} {_reason(error)}") from None

    # -- looking ----------------------------------------------------------------------------

    def _pod(self, ref: str) -> Any | None:
        try:
            return self.api.read_namespaced_pod(ref, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise BackendError(f"the cluster refused to read Pod {ref}: {error.status} {_reason(error)}") from None

    def address(self, ref: str) -> str | None:
        pod = self._pod(ref)
        ip = pod.status.pod_ip if pod is not None and pod.status else None
        return f"http://{ip}:{DESKTOP_PORT}" if ip else None

    def state(self, ref: str) -> State:
        return _state_of(self._pod(ref))

    def list_owned(self) -> list[Owned]:
        pods = self.api.list_namespaced_pod(self.namespace, label_selector=f"{OWNER_LABEL}={self.fleet}").items
        found = []
        for pod in pods:
            assert pod.metadata is not None and pod.metadata.name is not None  # the API server fills them in
            meta = json.loads((pod.metadata.annotations or {}).get(META_ANNOTATION) or "{}")
            ip = pod.status.pod_ip if pod.status else None
            found.append(Owned(pod.metadata.name, _state_of(pod), meta, f"http://{ip}:{DESKTOP_PORT}" if ip else None))
        refs = {owned.ref for owned in found}
        # A Secret left by a create that failed half-way still belongs to us.
        for secret in self.api.list_namespaced_secret(self.namespace, label_selector=f"{OWNER_LABEL}={self.fleet}").items:
            assert secret.metadata is not None  # the API server fills it in
            ref = (secret.metadata.labels or {}).get(REF_LABEL)
            if ref and ref not in refs:
                found.append(Owned(ref, "gone", {}, None))
                refs.add(ref)
        return found

    # -- removing ---------------------------------------------------------------------------

    def delete(self, ref: str) -> None:
        for remove in (lambda: self.api.delete_namespaced_pod(ref, self.namespace, grace_period_seconds=0),
                       lambda: self.api.delete_namespaced_secret(f"{ref}-token", self.namespace)):
            try:
                remove()
            except ApiException as error:
                if error.status != 404:
                    raise BackendError(f"the cluster refused to delete {ref}: {error.status} {_reason(error)}") from None

    def save_meta(self, ref: str, meta: dict[str, Any]) -> None:
        try:
            self.api.patch_namespaced_pod(ref, self.namespace, {"metadata": {"annotations": {META_ANNOTATION: json.dumps(meta)}}})
        except ApiException as error:
            raise BackendError(f"the cluster refused to update Pod {ref}: {error.status} {_reason(error)}") from None

    def close(self) -> None:
        self.api.api_client.close()


def _as_user(context: k8s.V1SecurityContext, uid: int) -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(allow_privilege_escalation=context.allow_privilege_escalation, run_as_non_root=True,
                                 capabilities=context.capabilities, run_as_user=uid, run_as_group=uid)


def _state_of(pod: Any | None) -> State:
    if pod is None or pod.metadata.deletion_timestamp is not None:
        return "gone"
    phase = pod.status.phase if pod.status else None
    if phase in ("Failed", "Succeeded"):
        return "failed"
    for status in (pod.status.container_statuses or []) if pod.status else []:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason in CRASHING:
            return "failed"
        if (status.restart_count or 0) >= 3:
            return "failed"
    ready = pod.status and all(s.ready for s in (pod.status.container_statuses or [])) and pod.status.container_statuses
    return "running" if phase == "Running" and ready else "starting"


def _own_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _reason(error: ApiException) -> str:
    if error.body is None:
        return str(error.reason)
    try:
        return json.loads(error.body).get("message") or error.reason
    except (TypeError, ValueError):
        return str(error.reason)
