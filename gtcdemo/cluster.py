"""The cluster target: the bundle applied to the env's Kubernetes cluster with the official Python client.

Everything talks to the API server, except what needs a kubelet (pod logs, port-forwards): that sits behind
``KubeletAccess`` so tests can run the rest against a real API server with no nodes.

Pods are selected by the label the Dynamo operator really sets, ``nvidia.com/dynamo-graph-deployment-name``.
The seed's wait script used ``nvidia.com/dynamo-graph-deployment``, which the operator never sets: it would wait
forever on zero pods.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pandas as pd

from . import bundle as bundle_mod
from . import project
from .errors import ConfigError, DeploymentError
from .results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable
from .target import BundleHolder

GROUP, VERSION = "nvidia.com", "v1alpha1"
DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
DGD_LABEL = "nvidia.com/dynamo-graph-deployment-name"
SEED_LABEL = "nvidia.com/dynamo-graph-deployment"  # what the seed selected on; never set by the operator
COMPONENT_LABEL = "nvidia.com/dynamo-component"
COMPONENT_TYPE_LABEL = "nvidia.com/dynamo-component-type"
SUB_TYPE_LABEL = "nvidia.com/dynamo-sub-component-type"
FIELD_MANAGER = "gtcdemo"
OVERRIDE_ENV = "GTCDEMO_KUBE_CONTEXT"


@dataclass(frozen=True)
class ClusterSettings:
    """``manifests/<env>/cluster.toml``: how to reach this env's cluster and what its platform looks like."""

    kube_context: str
    operator_namespace: str = "dynamo-system"
    prometheus: str = "monitoring/kube-prometheus-stack-prometheus:9090"
    gpu_node_label: str = "doks.digitalocean.com/gpu-brand=nvidia"
    gpu_taint: str = "nvidia.com/gpu:NoSchedule"
    runtime_class: str = "nvidia"
    pending_bound_s: float = 300.0

    @property
    def prometheus_service(self) -> tuple[str, str, int]:
        namespace, rest = self.prometheus.split("/", 1)
        name, port = rest.rsplit(":", 1)
        return namespace, name, int(port)


def load_settings(env: str) -> ClusterSettings:
    path = project.MANIFESTS / project.check_env(env) / "cluster.toml"
    if not path.is_file():
        raise ConfigError(f"no cluster settings for env {env!r}", where=str(path),
                          fix="create it with kube_context = \"<context>\" (see manifests/dev/cluster.toml)")
    try:
        values = tomllib.loads(path.read_text())
        return ClusterSettings(**values)
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ConfigError(f"invalid cluster settings: {exc}", where=str(path),
                          fix="keys: " + ", ".join(ClusterSettings.__dataclass_fields__)) from None


# -- what needs a kubelet ------------------------------------------------------------------------------------------
class KubeletAccess(Protocol):
    """Pod logs and port-forwards: served by kubelets, so absent on a test API server."""

    def logs(self, namespace: str, pod: str, tail: int) -> str: ...

    def port_forward(self, namespace: str, service: str, port: int) -> contextlib.AbstractContextManager[str]: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KubectlAccess:
    """The real thing: logs through the API, port-forwards through `kubectl port-forward` on loopback."""

    def __init__(self, core: Any, context: str, kubeconfig: str | None = None) -> None:
        self.core, self.context, self.kubeconfig = core, context, kubeconfig

    def logs(self, namespace: str, pod: str, tail: int) -> str:
        return self.core.read_namespaced_pod_log(pod, namespace, tail_lines=tail)

    @contextlib.contextmanager
    def port_forward(self, namespace: str, service: str, port: int) -> Iterator[str]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise DeploymentError("kubectl is not installed (needed for port-forwards)",
                                  fix="install kubectl (apt-get install kubernetes-client, or your usual way)")
        local = free_port()
        argv = [kubectl, "--context", self.context, "-n", namespace, "port-forward", f"svc/{service}",
                f"{local}:{port}", "--address", "127.0.0.1"]
        if self.kubeconfig:
            argv[1:1] = ["--kubeconfig", self.kubeconfig]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise DeploymentError(f"port-forward to svc/{service} in {namespace} exited: "
                                          f"{(proc.stdout.read() if proc.stdout else '').strip()}",
                                          fix=f"check `kubectl -n {namespace} get svc {service}` and its pods")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=0.5):
                    break
                if time.monotonic() > deadline:
                    raise DeploymentError(f"port-forward to svc/{service} did not open within 20 s",
                                          fix="check that its pods are Running and Ready")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{local}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- pod diagnosis (pure) ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A state that will not heal by waiting."""

    pod: str
    reason: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.pod}: {self.reason}: {self.message}\n  fix: {self.fix}"


def _age_s(timestamp: Any, now: datetime) -> float:
    if timestamp is None:
        return 0.0
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (now - timestamp).total_seconds()


def diagnose_pod(pod: Any, now: datetime, pending_bound_s: float) -> Problem | None:
    """The unhealable state of one pod (a V1Pod), if any: image pulls, crash loops, scheduling, gates."""
    name = pod.metadata.name
    status = pod.status
    for cs in (status.init_container_statuses or []) + (status.container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting is None:
            continue
        if waiting.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return Problem(name, waiting.reason, f"image {cs.image} cannot be pulled: {waiting.message or ''}".strip(),
                           "check the image tag and that the namespace can pull from nvcr.io (an NGC pull secret)")
        if waiting.reason == "CrashLoopBackOff":
            return Problem(name, "CrashLoopBackOff", f"container {cs.name} keeps crashing "
                           f"(restarts {cs.restart_count})", "read its last log lines below; a worker OOM means "
                           "lowering kv_cache_config.free_gpu_memory_fraction or max_num_tokens")
        if waiting.reason in ("CreateContainerConfigError", "CreateContainerError"):
            return Problem(name, waiting.reason, waiting.message or "", "a referenced Secret or ConfigMap is "
                           "missing: e.g. `kubectl -n dynamo-workload create secret generic hf-token "
                           "--from-literal=HF_TOKEN=...`")
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            if cond.reason == "Unschedulable":
                message = cond.message or ""
                if "nvidia.com/gpu" in message and "Insufficient" in message:
                    fix = "free a GPU node (each worker needs one H100) or lower the workers' replicas"
                elif "taint" in message:
                    fix = "add the toleration {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}"
                else:
                    fix = "see the scheduler's message; `kubectl describe pod` shows the same"
                return Problem(name, "Unschedulable", message, fix)
            if cond.reason == "SchedulingGated" and _age_s(pod.metadata.creation_timestamp, now) > pending_bound_s:
                return Problem(name, "SchedulingGated", f"gated for more than {pending_bound_s:.0f} s",
                               "check the pod's kai.scheduler/queue label and that the KAI queue exists "
                               "(`kubectl get queues`)")
    if status.phase == "Pending" and _age_s(pod.metadata.creation_timestamp, now) > pending_bound_s:
        return Problem(name, "Pending", f"still Pending after {pending_bound_s:.0f} s", "see its events below")
    return None


def diagnose_event(event: Any, pods: set[str]) -> Problem | None:
    """A FailedMount of a missing PVC or ConfigMap will not heal by waiting."""
    involved = event.involved_object
    if involved is None or involved.kind != "Pod" or involved.name not in pods:
        return None
    if event.reason == "FailedMount" and "not found" in (event.message or ""):
        return Problem(involved.name, "FailedMount", event.message, "create the missing PVC or ConfigMap "
                       "(`gtcdemo up --target cluster` applies both) and check the names in the DGD")
    return None


def pod_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True"
                                                 for c in pod.status.conditions or [])


def _age(timestamp: Any, now: datetime) -> str:
    seconds = int(_age_s(timestamp, now))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def pod_phase(pod: Any) -> str:
    """What `kubectl get pods` shows in its STATUS column."""
    if pod.metadata.deletion_timestamp:
        return "Terminating"
    for cs in pod.status.container_statuses or []:
        if cs.state and cs.state.waiting and cs.state.waiting.reason:
            return cs.state.waiting.reason
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "SchedulingGated":
            return "SchedulingGated"
    return pod.status.phase or "Unknown"


def pods_frame(pods: list[Any], now: datetime | None = None) -> pd.DataFrame:
    now = now or datetime.now(UTC)
    rows = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        labels = pod.metadata.labels or {}
        statuses = pod.status.container_statuses or []
        rows.append({
            "name": pod.metadata.name, "service": labels.get(COMPONENT_LABEL, ""),
            "role": labels.get(SUB_TYPE_LABEL) or labels.get(COMPONENT_TYPE_LABEL, ""),
            "phase": pod_phase(pod), "ready": f"{sum(bool(c.ready) for c in statuses)}/{len(pod.spec.containers)}",
            "restarts": sum(c.restart_count or 0 for c in statuses),
            "age": _age(pod.metadata.creation_timestamp, now), "ip": pod.status.pod_ip or "<none>",
            "node": pod.spec.node_name or "<none>",
        })
    return pd.DataFrame(rows, columns=["name", "service", "role", "phase", "ready", "restarts", "age", "ip", "node"])


# -- the target ------------------------------------------------------------------------------------------------------
class ClusterTarget(BundleHolder):
    """The env's DGD on its Kubernetes cluster; answers the same questions as the local target."""

    kind = "cluster"

    def __init__(self, env: str = "dev", *, context: str | None = None, kubeconfig: str | None = None,
                 access: KubeletAccess | None = None) -> None:
        from kubernetes import client, config

        self.env = project.check_env(env)
        self.settings = load_settings(env)
        self._bundle: bundle_mod.Bundle | None = None
        self.kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        override = context or os.environ.get(OVERRIDE_ENV)
        self.context = override or self.settings.kube_context
        try:
            contexts, current = config.list_kube_config_contexts(config_file=self.kubeconfig)
        except (config.ConfigException, OSError) as exc:
            raise ConfigError(f"no usable kubeconfig: {exc}", where=self.kubeconfig or "~/.kube/config",
                              fix=f"get the credentials of {self.settings.kube_context} (e.g. `doctl kubernetes "
                                  "cluster kubeconfig save gtc-demo`), or use target='local'") from None
        names = [c["name"] for c in contexts]
        if self.context not in names:
            raise ConfigError(f"kube context {self.context!r} is not in your kubeconfig (it has: {', '.join(names)})",
                              where="kubeconfig", fix=f"add the {self.context} credentials to your kubeconfig")
        current_name = (current or {}).get("name")
        if override is None and current_name != self.context:
            raise ConfigError(
                f"the current kube context is {current_name!r}, but env {env!r} deploys to {self.context!r}; "
                "refusing to touch a cluster you may not mean", where="kube context",
                fix=f"`kubectl config use-context {self.context}`, or deliberately override: "
                    f"{OVERRIDE_ENV}={current_name} (or `--context {current_name}`)")
        self.api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.access: KubeletAccess = access or KubectlAccess(self.core, self.context, self.kubeconfig)

    # -- basics -----------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.bundle.name} on {self.context}/{self.bundle.namespace}"

    @property
    def namespace(self) -> str:
        return self.bundle.namespace

    @property
    def selector(self) -> str:
        return f"{DGD_LABEL}={self.bundle.name}"

    def _dynamic(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api)

    def _api_error(self, exc: Exception, what: str) -> DeploymentError:
        from kubernetes.client.exceptions import ApiException

        if isinstance(exc, ApiException):
            return DeploymentError(f"{what}: HTTP {exc.status} {exc.reason}: {_api_message(exc)}",
                                   fix="check the message above; `gtcdemo preflight --target cluster` checks the "
                                       "platform")
        return DeploymentError(f"{what}: cannot reach the API server of {self.context}: {exc}",
                               fix="check your network/VPN and `kubectl --context "
                                   f"{self.context} get nodes`")

    def pods(self) -> list[Any]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items

    def get_dgd(self) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL,
                                                            self.bundle.name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def adapters(self) -> list[dict]:
        """The DGDSAs that exist for this DGD (never assumed from the manifest: CRD versions differ)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, DGDSA_PLURAL,
                label_selector=f"nvidia.com/dynamo-graph-deployment-name={self.bundle.name}")["items"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    # -- apply ---------------------------------------------------------------------------------------------------
    def _resource(self, dyn: Any, obj: dict) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise DeploymentError(
                f"the API server does not serve {obj['kind']} ({obj['apiVersion']}): its CRD is not installed",
                fix="install the Dynamo CRDs (helm install dynamo-crds ...) and check `kubectl get crd | grep "
                    "nvidia.com`") from None

    def apply(self, bundle: bundle_mod.Bundle | None = None) -> ApplyResult:
        """Server-side apply (field manager gtcdemo) of PVC (only when absent), ConfigMap and DGD, in that order.

        A server-side dry run of every object comes first, so schema and webhook errors surface before anything
        changes.
        """
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        if bundle is not None:
            self._bundle = bundle
        try:
            self.core.read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise DeploymentError(f"namespace {self.namespace} does not exist on {self.context}; nothing was "
                                      "applied", fix=f"kubectl create namespace {self.namespace}") from None
            raise self._api_error(exc, "reading the namespace") from None
        except Exception as exc:  # connection errors
            raise self._api_error(exc, "reading the namespace") from None
        self._refuse_missing_prerequisites()
        dyn = self._dynamic()
        plan: list[tuple[dict, Any, Any]] = []
        for obj in self.bundle.objects:
            resource = self._resource(dyn, obj)
            try:
                existing = resource.get(name=obj["metadata"]["name"], namespace=self.namespace)
            except NotFoundError:
                existing = None
            plan.append((obj, resource, existing))
        for obj, resource, existing in plan:  # dry run: nothing changes when anything would be refused
            if obj["kind"] == "PersistentVolumeClaim" and existing is not None:
                continue
            try:
                resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                           force_conflicts=True, dry_run="All")
            except DynamicApiError as exc:
                if exc.status == 404:  # discovery was cached before the CRD went away
                    raise DeploymentError(
                        f"the API server does not serve {obj['kind']} ({obj['apiVersion']}): its CRD is not "
                        "installed; nothing was applied",
                        fix="install the Dynamo CRDs (helm install dynamo-crds ...)") from None
                raise DeploymentError(
                    f"the API server refuses {obj['kind']} {obj['metadata']['name']} (dry run; nothing was "
                    f"applied): {_dynamic_message(exc)}",
                    fix="fix the manifest field named above; the CRD installed on the cluster may differ from "
                        "the seed's schema") from None
        rows = []
        for obj, resource, existing in plan:
            name = obj["metadata"]["name"]
            if obj["kind"] == "PersistentVolumeClaim" and existing is not None:
                rows.append({"kind": obj["kind"], "name": name, "action": "unchanged"})  # never modify a claim
                continue
            applied = resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                                 force_conflicts=True)
            if existing is None:
                action = "created"
            elif applied.metadata.resourceVersion == existing.metadata.resourceVersion:
                action = "unchanged"
            else:
                action = "configured"
            rows.append({"kind": obj["kind"], "name": name, "action": action})
        return ApplyResult(target=self.name, rows=rows)

    # -- wait ------------------------------------------------------------------------------------------------------
    def _watch(self, stop: threading.Event, events: queue.Queue, kind: str, list_fn: Callable, **kwargs: Any) -> None:
        """Stream watch events of one kind into ``events`` until ``stop`` is set (restarting expired watches)."""
        from kubernetes import watch

        resource_version = kwargs.pop("resource_version", None)
        while not stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(list_fn, resource_version=resource_version, timeout_seconds=5, **kwargs):
                    events.put((kind, event["type"], event["object"]))
                    resource_version = None if event["type"] == "ERROR" else \
                        getattr(getattr(event["object"], "metadata", None), "resource_version", None)
                    if stop.is_set():
                        break
            except Exception as exc:  # surfaced to the waiter, which decides
                events.put((kind, "ERROR", exc))
                resource_version = None
                stop.wait(0.5)
            finally:
                w.stop()

    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None,
             pending_bound_s: float | None = None) -> ReadyResult:
        """Watch the DGD's pods until the expected count is Running and Ready AND the DGD reports successful.

        Fails at once on states that will not heal (image pulls, crash loops, unschedulable, missing volumes,
        gated or pending past a bound), printing the pods, their events and the last 20 log lines of each.
        """
        if timeout_s <= 0:
            raise DeploymentError(f"timeout must be > 0 s, got {timeout_s}", fix="pass e.g. timeout_s=600")
        bound = self.settings.pending_bound_s if pending_bound_s is None else pending_bound_s
        expected = self.bundle.expected_pods
        start = time.monotonic()
        deadline = start + timeout_s
        pods = {p.metadata.name: p for p in self.core.list_namespaced_pod(
            self.namespace, label_selector=self.selector).items}
        dgd = self.get_dgd()
        if dgd is None:
            raise DeploymentError(f"DGD {self.bundle.name} does not exist in {self.namespace}",
                                  fix="apply it first: `gtcdemo up --target cluster` (or notebook 02_deploy)")
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._watch, daemon=True, args=(stop, events, "pod", self.core.list_namespaced_pod,
                                                                    ), kwargs={"namespace": self.namespace,
                                                                               "label_selector": self.selector}),
            threading.Thread(target=self._watch, daemon=True,
                             args=(stop, events, "dgd", self.custom.list_namespaced_custom_object),
                             kwargs={"group": GROUP, "version": VERSION, "namespace": self.namespace,
                                     "plural": DGD_PLURAL, "field_selector": f"metadata.name={self.bundle.name}"}),
            threading.Thread(target=self._watch, daemon=True, args=(stop, events, "event",
                                                                    self.core.list_namespaced_event),
                             kwargs={"namespace": self.namespace, "field_selector": "involvedObject.kind=Pod"}),
        ]
        for thread in threads:
            thread.start()
        last_note = ""
        try:
            while True:
                now = datetime.now(UTC)
                for pod in pods.values():
                    problem = diagnose_pod(pod, now, bound)
                    if problem:
                        raise self._failure(f"{problem}", pods)
                ready = [p for p in pods.values() if pod_ready(p)]
                state = (dgd.get("status") or {}).get("state", "")
                note = f"{len(ready)}/{expected} pods Running and Ready, DGD state {state or '(none)'}"
                if len(ready) >= expected and state == "successful":
                    elapsed = time.monotonic() - start
                    if progress:
                        progress(f"ready after {elapsed:.1f} s")
                    status = StatusTable(f"{self.name}: pods", pods_frame(list(pods.values())))
                    return ReadyResult(target=self.name, ready=True, elapsed_s=elapsed, status=status,
                                       details=[self.adapters_table()])
                if progress and note != last_note:
                    progress(note)
                    last_note = note
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._failure(f"not ready after {timeout_s:.0f} s: {note}", pods)
                try:
                    kind, kind_type, obj = events.get(timeout=min(remaining, 5.0))
                except queue.Empty:
                    continue  # re-check the Pending bounds
                if kind_type == "ERROR":
                    continue
                if kind == "pod":
                    if kind_type == "DELETED":
                        pods.pop(obj.metadata.name, None)
                    else:
                        pods[obj.metadata.name] = obj
                elif kind == "dgd":
                    dgd = obj if kind_type != "DELETED" else {}
                elif kind == "event":
                    problem = diagnose_event(obj, set(pods))
                    if problem:
                        raise self._failure(str(problem), pods)
        finally:
            stop.set()

    def _failure(self, headline: str, pods: dict[str, Any]) -> DeploymentError:
        """The diagnosis a presenter needs: the pods as `-o wide`, their recent events, their last log lines."""
        events = self.events_frame(set(pods))
        parts = [headline, "", "pods:", pods_frame(list(pods.values())).to_string(index=False)]
        parts += ["", "recent events:", events.to_string(index=False) if not events.empty else "(none)"]
        for name in sorted(pods):
            parts += ["", f"last 20 log lines of {name}:", self._pod_logs(name, 20)]
        return DeploymentError("\n".join(parts), where=f"{self.context}/{self.namespace}",
                               fix="act on the first line above; `gtcdemo status --target cluster` shows the rest")

    def _pod_logs(self, pod: str, tail: int) -> str:
        try:
            return self.access.logs(self.namespace, pod, tail) or "(empty)"
        except Exception as exc:  # a pod that never started has no logs
            return f"(no logs: {type(exc).__name__}: {_api_message(exc)})"

    def events_frame(self, pods: set[str] | None = None, limit: int = 20) -> pd.DataFrame:
        items = self.core.list_namespaced_event(self.namespace).items
        rows = []
        for e in items:
            obj = e.involved_object
            if pods is not None and (obj is None or obj.name not in pods):
                continue
            when = e.last_timestamp or e.event_time or e.metadata.creation_timestamp
            rows.append({"when": when, "type": e.type, "reason": e.reason,
                         "object": f"{(obj.kind or '').lower()}/{obj.name}" if obj else "", "message": e.message})
        rows.sort(key=lambda r: r["when"] or datetime.min.replace(tzinfo=UTC))
        frame = pd.DataFrame(rows[-limit:], columns=["when", "type", "reason", "object", "message"])
        return frame

    # -- status --------------------------------------------------------------------------------------------------
    def status(self) -> StatusTable:
        return StatusTable(f"{self.name}: pods ({self.selector})", pods_frame(self.pods()))

    def adapters_table(self) -> StatusTable:
        rows = [{"name": a["metadata"]["name"], "service": (a.get("spec", {}).get("dgdRef") or {}).get("serviceName",
                 ""), "desired": a.get("spec", {}).get("replicas"),
                 "replicas": (a.get("status") or {}).get("replicas"),
                 "last scale": (a.get("status") or {}).get("lastScaleTime", "")} for a in self.adapters()]
        return StatusTable(f"DGDSAs of {self.bundle.name}",
                           pd.DataFrame(rows, columns=["name", "service", "desired", "replicas", "last scale"]))

    def demo_status(self) -> Overview:
        """The seed's `demo-status`: nodes (-o wide), then the DGD, DGDSAs, pods and PVCs of the namespace."""
        now = datetime.now(UTC)
        nodes = []
        for n in sorted(self.core.list_node().items, key=lambda n: n.metadata.name):
            ready = next((c.status for c in n.status.conditions or [] if c.type == "Ready"), "Unknown")
            info = n.status.node_info
            ip = next((a.address for a in n.status.addresses or [] if a.type == "InternalIP"), "<none>")
            roles = ",".join(k.split("/", 1)[1] for k in (n.metadata.labels or {}) if
                             k.startswith("node-role.kubernetes.io/")) or "<none>"
            nodes.append({"name": n.metadata.name, "status": "Ready" if ready == "True" else "NotReady",
                          "roles": roles, "age": _age(n.metadata.creation_timestamp, now),
                          "version": info.kubelet_version if info else "", "internal-ip": ip,
                          "gpus": (n.status.allocatable or {}).get("nvidia.com/gpu", "0"),
                          "os-image": info.os_image if info else "",
                          "container-runtime": info.container_runtime_version if info else ""})
        dgds = []
        for d in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL)["items"]:
            status = d.get("status") or {}
            ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "")
            dgds.append({"name": d["metadata"]["name"], "state": status.get("state", ""), "ready": ready,
                         "age": _age(d["metadata"].get("creationTimestamp"), now)})
        pvcs = [{"name": p.metadata.name, "status": p.status.phase, "volume": p.spec.volume_name or "",
                 "capacity": (p.status.capacity or {}).get("storage", ""),
                 "access modes": ",".join(p.spec.access_modes or []), "storageclass": p.spec.storage_class_name or "",
                 "age": _age(p.metadata.creation_timestamp, now)}
                for p in self.core.list_namespaced_persistent_volume_claim(self.namespace).items]
        all_pods = self.core.list_namespaced_pod(self.namespace).items
        return Overview(f"demo-status: {self.context}", [
            StatusTable("nodes", pd.DataFrame(nodes)),
            StatusTable(f"dgd -n {self.namespace}", pd.DataFrame(dgds, columns=["name", "state", "ready", "age"])),
            StatusTable(f"dgdsa -n {self.namespace}", self.adapters_table().frame),
            StatusTable(f"pods -n {self.namespace}", pods_frame(all_pods, now)),
            StatusTable(f"pvc -n {self.namespace}", pd.DataFrame(pvcs)),
        ])

    def logs(self, service: str | None = None, tail: int = 20) -> dict[str, str]:
        out = {}
        for pod in sorted(self.pods(), key=lambda p: p.metadata.name):
            if service and (pod.metadata.labels or {}).get(COMPONENT_LABEL) != service:
                continue
            out[pod.metadata.name] = self._pod_logs(pod.metadata.name, tail)
        return out

    # -- endpoints ------------------------------------------------------------------------------------------------
    def frontend_service(self) -> str:
        """The frontend Service, found by labels; else the `<dgd>-frontend` convention; else list candidates."""
        from kubernetes.client.exceptions import ApiException

        labelled = self.core.list_namespaced_service(
            self.namespace, label_selector=f"{self.selector},{COMPONENT_TYPE_LABEL}=frontend").items
        if labelled:
            return labelled[0].metadata.name
        conventional = f"{self.bundle.name}-frontend"
        try:
            self.core.read_namespaced_service(conventional, self.namespace)
            return conventional
        except ApiException as exc:
            if exc.status != 404:
                raise
        candidates = [s.metadata.name for s in self.core.list_namespaced_service(self.namespace).items]
        raise DeploymentError(f"no frontend Service for {self.bundle.name} in {self.namespace} (neither labelled "
                              f"{COMPONENT_TYPE_LABEL}=frontend nor named {conventional}); services there: "
                              f"{', '.join(candidates) or '(none)'}",
                              fix="check that the operator reconciled the DGD (`kubectl get dgd,svc -n "
                                  f"{self.namespace}`)")

    @contextlib.contextmanager
    def _forward_healthy(self, namespace: str, service: str, port: int, health: str) -> Iterator[str]:
        with self.access.port_forward(namespace, service, port) as url:
            try:
                response = httpx.get(f"{url}{health}", timeout=5)
            except httpx.HTTPError as exc:
                raise DeploymentError(f"svc/{service} is forwarded but does not answer {health}: {exc}",
                                      fix=f"check its pods: `kubectl -n {namespace} get pods`") from None
            if response.status_code >= 500:
                raise DeploymentError(f"svc/{service} answers {health} with HTTP {response.status_code}",
                                      fix="wait until `gtcdemo wait --target cluster` reports ready")
            yield url

    def frontend(self) -> contextlib.AbstractContextManager[str]:
        """A port-forward to the frontend Service, health-checked, closed on exit."""
        return self._forward_healthy(self.namespace, self.frontend_service(), 8000, "/health")

    def prometheus(self) -> contextlib.AbstractContextManager[str]:
        namespace, name, port = self.settings.prometheus_service
        return self._forward_healthy(namespace, name, port, "/-/ready")

    # -- scale and teardown ----------------------------------------------------------------------------------------
    def scale(self, service: str, replicas: int) -> ApplyResult:
        """Through the service's DGDSA (scale subresource) when one exists, else by patching the DGD."""
        if service not in self.bundle.services:
            raise DeploymentError(f"no service {service!r} in {self.bundle.name}",
                                  fix=f"use one of {', '.join(self.bundle.services)}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DeploymentError(f"replicas must be a whole number >= 0, got {replicas!r}", fix="e.g. 2")
        adapter = next((a for a in self.adapters()
                        if (a.get("spec", {}).get("dgdRef") or {}).get("serviceName") == service
                        or a["metadata"]["name"] == f"{self.bundle.name}-{service.lower()}"), None)
        if adapter is not None:
            name = adapter["metadata"]["name"]
            self.custom.patch_namespaced_custom_object_scale(GROUP, VERSION, self.namespace, DGDSA_PLURAL, name,
                                                             {"spec": {"replicas": replicas}})
            return ApplyResult(self.name, [{"kind": "DynamoGraphDeploymentScalingAdapter", "name": name,
                                            "action": f"scaled to {replicas}"}])
        # No adapter: the DGD owns the replicas, and the webhook accepts a direct edit.
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL, self.bundle.name,
                                                   {"spec": {"services": {service: {"replicas": replicas}}}})
        return ApplyResult(self.name, [{"kind": "DynamoGraphDeployment", "name": self.bundle.name,
                                        "action": f"{service} replicas set to {replicas}"}])

    def teardown(self, timeout_s: float = 300.0) -> ApplyResult:
        """Delete the DGD and its ConfigMap (the model PVC stays) and wait until the DGD's pods are gone."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        rows = []
        for kind, delete in (("DynamoGraphDeployment", lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, DGD_PLURAL, self.bundle.name)),
                             ("ConfigMap", lambda: self.core.delete_namespaced_config_map(
                                 self.bundle.configmap["metadata"]["name"], self.namespace))):
            try:
                delete()
                rows.append({"kind": kind, "name": self.bundle.name if kind != "ConfigMap"
                             else self.bundle.configmap["metadata"]["name"], "action": "deleted"})
            except ApiException as exc:
                if exc.status != 404:
                    raise self._api_error(exc, f"deleting the {kind}") from None
        deadline = time.monotonic() + timeout_s
        remaining = {p.metadata.name for p in self.pods()}
        resource_version = None
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeploymentError(f"pods still present after {timeout_s:.0f} s: {', '.join(sorted(remaining))}",
                                      fix="check the Dynamo operator in dynamo-system (it deletes them)")
            w = watch.Watch()
            for event in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                                  timeout_seconds=max(1, int(min(left, 30))), resource_version=resource_version):
                resource_version = event["object"].metadata.resource_version
                if event["type"] == "DELETED":
                    remaining.discard(event["object"].metadata.name)
                if not remaining:
                    w.stop()
            remaining &= {p.metadata.name for p in self.pods()}
        return ApplyResult(self.name, rows)

    # -- preflight -----------------------------------------------------------------------------------------------
    def preflight(self) -> CheckReport:
        """Everything the deployment needs, checked before anything is applied (each failure with its fix)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        report = CheckReport(f"preflight: {self.bundle.name} on {self.context}")
        b, ns = self.bundle, self.namespace
        try:
            version = client.VersionApi(self.api).get_code()
            report.add("API server reachable", True, f"{self.context}: Kubernetes {version.git_version}")
        except Exception as exc:
            report.add("API server reachable", False, f"{type(exc).__name__}: {_api_message(exc)}",
                       f"check network/VPN and `kubectl --context {self.context} get nodes`")
            return report
        try:
            self.core.read_namespace(ns)
            report.add(f"namespace {ns}", True, "exists")
        except ApiException:
            report.add(f"namespace {ns}", False, "missing", f"kubectl create namespace {ns}")
        ext = client.ApiextensionsV1Api(self.api)
        for plural, label in ((DGD_PLURAL, "DGD CRD"), (DGDSA_PLURAL, "DGDSA CRD")):
            try:
                crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
                served = [v.name for v in crd.spec.versions if v.served]
                ok = VERSION in served
                report.add(label, ok, f"{plural}.{GROUP} serves {', '.join(served)}",
                           f"the DGD uses {GROUP}/{VERSION}: upgrade the dynamo-crds chart")
            except ApiException:
                report.add(label, False, f"{plural}.{GROUP} not installed",
                           "helm install the dynamo-crds chart (Phase 1d-i)")
        deployments = self.apps.list_namespaced_deployment(self.settings.operator_namespace).items
        operators = [d for d in deployments if "operator" in d.metadata.name]
        running = [d for d in operators if (d.status.ready_replicas or 0) >= 1]
        report.add(f"Dynamo operator in {self.settings.operator_namespace}", bool(running),
                   ", ".join(f"{d.metadata.name} ({d.status.ready_replicas or 0} ready)" for d in operators)
                   or "no operator Deployment found",
                   "the DGD is reconciled by the Dynamo operator: enable it in the dynamo-platform chart "
                   "(the seed says 'operator disabled'; nothing creates pods without it)")
        key, _, value = self.settings.gpu_node_label.partition("=")
        taint_key, _, taint_effect = self.settings.gpu_taint.partition(":")
        gpu_nodes = self.core.list_node(label_selector=self.settings.gpu_node_label).items
        needed = sum(int(s.get("replicas", 1)) * int(str(((s.get("resources") or {}).get("limits") or {})
                                                         .get("gpu", "0")) or 0) for s in b.services.values())
        allocatable = sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) for n in gpu_nodes)
        tainted = [n for n in gpu_nodes if any(t.key == taint_key and t.effect == taint_effect
                                               for t in n.spec.taints or [])]
        report.add("GPU nodes", bool(gpu_nodes) and allocatable >= needed,
                   f"{len(gpu_nodes)} nodes labelled {key}={value}, {allocatable} allocatable nvidia.com/gpu, "
                   f"the DGD needs {needed}",
                   "add GPU nodes or lower the workers' replicas; check the NVIDIA device plugin / GPU operator")
        if gpu_nodes:
            report.add("GPU node taint", True if len(tainted) == len(gpu_nodes) else None,
                       f"{len(tainted)}/{len(gpu_nodes)} GPU nodes tainted {self.settings.gpu_taint}",
                       "untainted GPU nodes also take pods that need no GPU (the workers tolerate the taint)")
        try:
            client.NodeV1Api(self.api).read_runtime_class(self.settings.runtime_class)
            report.add(f"RuntimeClass {self.settings.runtime_class}", True, "exists")
        except ApiException:
            report.add(f"RuntimeClass {self.settings.runtime_class}", False, "missing",
                       "install the NVIDIA GPU operator / container toolkit, which creates it")
        for pvc in (o for o in b.objects if o["kind"] == "PersistentVolumeClaim"):
            name = pvc["metadata"]["name"]
            try:
                phase = self.core.read_namespaced_persistent_volume_claim(name, ns).status.phase
                report.add(f"PVC {name}", phase == "Bound", f"{phase}",
                           "the model PVC must be Bound to the NFS volume of Phase 1d-i (`kubectl describe pvc`)")
            except ApiException:
                report.add(f"PVC {name}", False, "missing", "create it in Phase 1d-i (model files on NFS)")
        for secret in sorted({s["envFromSecret"] for s in b.services.values() if s.get("envFromSecret")}):
            present = self._secret_exists(secret)
            report.add(f"secret {secret}", present, "present (data not read)" if present else "missing",
                       f"kubectl -n {ns} create secret generic {secret} --from-literal=HF_TOKEN=<your token>")
        prom_ns, prom_name, prom_port = self.settings.prometheus_service
        try:
            svc = self.core.read_namespaced_service(prom_name, prom_ns)
            ports = [p.port for p in svc.spec.ports or []]
            report.add("Prometheus service", prom_port in ports, f"{prom_ns}/{prom_name} ports {ports}",
                       f"expected port {prom_port}; fix `prometheus` in manifests/{self.env}/cluster.toml")
        except ApiException:
            report.add("Prometheus service", False, f"{prom_ns}/{prom_name} missing",
                       "install kube-prometheus-stack, or set `prometheus` in manifests/<env>/cluster.toml")
        report.add(*self._dry_run_check())
        return report

    def _refuse_missing_prerequisites(self) -> None:
        """What the API server would accept but the pods could never use: a missing secret, an unbound claim."""
        from kubernetes.client.exceptions import ApiException

        for secret in sorted({s["envFromSecret"] for s in self.bundle.services.values() if s.get("envFromSecret")}):
            if not self._secret_exists(secret):
                raise DeploymentError(
                    f"secret {secret} does not exist in {self.namespace}: the workers could not start; nothing was "
                    "applied", fix=f"kubectl -n {self.namespace} create secret generic {secret} "
                                   "--from-literal=HF_TOKEN=<your token>")
        for pvc in (o for o in self.bundle.objects if o["kind"] == "PersistentVolumeClaim"):
            name = pvc["metadata"]["name"]
            try:
                phase = self.core.read_namespaced_persistent_volume_claim(name, self.namespace).status.phase
            except ApiException as exc:
                if exc.status == 404:
                    continue  # absent: apply creates it
                raise
            if phase != "Bound":
                raise DeploymentError(
                    f"PVC {name} in {self.namespace} is {phase}, not Bound: the workers would wait forever for the "
                    "model files; nothing was applied",
                    fix=f"bind it to the NFS volume of Phase 1d-i (`kubectl -n {self.namespace} describe pvc {name}`)")

    def _secret_exists(self, name: str) -> bool:
        """Ask for the secret's metadata only, so its data never reaches this process."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.call_api(f"/api/v1/namespaces/{self.namespace}/secrets/{name}", "GET",
                              header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
                              auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def _dry_run_check(self) -> tuple[str, bool, str, str]:
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        dyn = self._dynamic()
        try:
            for obj in self.bundle.objects:
                resource = self._resource(dyn, obj)
                if obj["kind"] == "PersistentVolumeClaim":
                    try:
                        resource.get(name=obj["metadata"]["name"], namespace=self.namespace)
                        continue
                    except NotFoundError:
                        pass
                resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                           force_conflicts=True, dry_run="All")
        except DeploymentError as exc:
            return "server-side dry run", False, exc.problem, exc.fix or ""
        except DynamicApiError as exc:
            return ("server-side dry run", False, f"{obj['kind']} {obj['metadata']['name']}: {_dynamic_message(exc)}",
                    "fix the field named above (the cluster's CRD or webhook refuses it)")
        return "server-side dry run", True, f"{len(self.bundle.objects)} objects accepted", ""


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        import json

        with contextlib.suppress(ValueError, TypeError):
            return json.loads(body).get("message", str(body))
        return str(body)
    return str(exc)


def _dynamic_message(exc: Exception) -> str:
    import json

    body = getattr(exc, "body", None)
    with contextlib.suppress(ValueError, TypeError):
        return json.loads(body).get("message", body)
    return str(getattr(exc, "summary", lambda: exc)())
