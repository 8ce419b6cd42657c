"""The cluster target: the bundle applied to the env's Kubernetes cluster with the official Python client.

Everything talks to the API server, except what needs a kubelet (pod logs, port-forwards): that sits behind
``KubeletAccess`` so tests can run the rest against a real API server with no nodes.

Pods are selected by the label the Dynamo operator really sets, ``nvidia.com/dynamo-graph-deployment-name``.
The seed's wait script used ``nvidia.com/dynamo-graph-deployment``, which the operator never sets: it would wait
forever on zero pods.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import re
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
from . import engine_config, project
from .errors import ConfigError, DeploymentError
from .results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable
from .target import Target

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
# The Dynamo operator's Deployment as the platform chart labels it
# (deploy/helm/charts/platform/components/operator/templates/deployment.yaml, _helpers.tpl selectorLabels). The chart
# also installs `grove-operator` when Grove is on: a name containing "operator" proves nothing.
OPERATOR_SELECTOR = "app.kubernetes.io/name=dynamo-operator,control-plane=controller-manager"
# KAI's Queue, which the operator looks up before it deploys with Grove + KAI (deploy/operator/internal/consts/
# consts.go QueueGVR; deploy/operator/internal/dynamo/grove.go ensureQueueExists). Cluster-scoped.
KAI_GROUP, KAI_VERSION, KAI_QUEUES = "scheduling.run.ai", "v2", "queues"


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
    for key, first, second in engine_config.duplicate_toml_keys(path.read_text())[:1]:  # tomllib names one line
        raise ConfigError(f"key {key!r} is written twice (lines {first} and {second})", where=str(path),
                          fix=f"keep one of the two lines (line {first} or {second})")
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


# A shell or an image entrypoint refusing an option-like word it was handed as its program or option: dash's
# "Illegal option --", bash's "--model-path: invalid option", "exec: --: invalid option", tini's "exec --model-path
# failed: No such file or directory", "--model-path: not found". The class of message, not one string: a refusal
# phrase on a line that carries a word starting with "--".
_REFUSAL = re.compile(r"(illegal|invalid|unrecognized|unrecognised|unknown|bad) (option|argument)|not found|"
                      r"no such file or directory|cannot execute", re.IGNORECASE)
_OPTION_WORD = re.compile(r"""(?:^|[\s:'"`(])--[\w-]*""")
SHELLS = {"sh", "bash", "dash", "ash", "zsh"}


def refused_argument(logs: str) -> str | None:
    """The last log line in which a program refuses an option-like argument, if any."""
    for line in reversed(logs.splitlines()):
        if _REFUSAL.search(line) and _OPTION_WORD.search(line):
            return line.strip()
    return None


def _crash_loop(pod: Any, cs: Any, logs: Callable[[str], str] | None) -> Problem:
    """A crash loop, with its cause when the last log lines show the program refusing an argument."""
    name, message = pod.metadata.name, f"container {cs.name} keeps crashing (restarts {cs.restart_count})"
    refused = refused_argument(logs(name)) if logs else None
    if refused is None:
        return Problem(name, "CrashLoopBackOff", message, "read its last log lines below; a worker OOM means "
                       "lowering kv_cache_config.free_gpu_memory_fraction or max_num_tokens")
    service = (pod.metadata.labels or {}).get(COMPONENT_LABEL, "<service>")
    container = next((c for c in pod.spec.containers or [] if c.name == cs.name), None)
    command = list((container.command if container else None) or [])
    where = f"spec.services.{service}.extraPodSpec.mainContainer"
    if not command or os.path.basename(command[0]) in SHELLS:
        # Dynamo 0.8 gives a worker no program, only `/bin/sh -c` (deploy/operator/internal/dynamo/
        # component_common.go; component_worker.go adds none), so the DGD's args reach the shell as options.
        return Problem(name, "CrashLoopBackOff", f"{message}: it has no program of its own, and "
                       f"{' '.join(command) or 'the image entrypoint'} refuses its first argument: {refused!r}",
                       f"add `command: [python3, -m, dynamo.trtllm]` to {where} in manifests/<env>/"
                       "20-dgd-gtc-demo.yaml (as Dynamo's examples/backends/trtllm/deploy/disagg.yaml), then "
                       "`gtcdemo up --target cluster`")
    return Problem(name, "CrashLoopBackOff", f"{message}: {' '.join(command)} refuses an argument: {refused!r}",
                   f"fix {where}.args (see `{' '.join(command)} --help`), then `gtcdemo up --target cluster`")


def diagnose_pod(pod: Any, now: datetime, pending_bound_s: float,
                 logs: Callable[[str], str] | None = None) -> Problem | None:
    """The unhealable state of one pod (a V1Pod), if any: image pulls, crash loops, scheduling, gates.

    ``logs(pod_name)`` (the last log lines) is called only for a crash-looping pod, to name the cause.
    """
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
            return _crash_loop(pod, cs, logs)
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
                queue_name = (pod.metadata.labels or {}).get("kai.scheduler/queue", "?")
                return Problem(name, "SchedulingGated", f"gated for more than {pending_bound_s:.0f} s (pod label "
                               f"kai.scheduler/queue={queue_name})", "check that this KAI queue exists (`kubectl get "
                               "queues`) and has GPU quota; the DGD names it in its annotation "
                               f"{bundle_mod.KAI_QUEUE_ANNOTATION} (the operator sets the label from it)")
    if status.phase == "Pending" and _age_s(pod.metadata.creation_timestamp, now) > pending_bound_s:
        return Problem(name, "Pending", f"still Pending after {pending_bound_s:.0f} s", "see its events below")
    return None


# Messages of a failed reconcile that the DGD controller retries and heals by itself: an optimistic-concurrency
# conflict (another writer updated the object first; apimachinery's StatusReasonConflict text).
_TRANSIENT = "the object has been modified"


def dgd_failure(dgd: dict) -> str | None:
    """The DGD controller's verdict that waiting will not change, as ``reason: message``, else None.

    The 0.8 controller (deploy/operator/internal/controller/dynamographdeployment_controller.go, Reconcile) writes
    state ``failed`` and a Ready condition False with the error as message when a reconcile fails (reasons
    ``failed_to_*``) or the spec is invalid (``ValidationFailed``); while resources start it writes ``pending``
    with Ready False and reason ``some_resources_are_not_ready``, which is not a failure.
    """
    status = dgd.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    reason, message = str(ready.get("reason") or ""), str(ready.get("message") or "")
    failed = status.get("state") == "failed" or (
        ready.get("status") == "False" and (reason == "ValidationFailed" or reason.startswith("failed_")))
    if not failed or _TRANSIENT in message:
        return None
    return f"{reason or 'failed'}: {message or '(no message)'}"


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
class ClusterTarget(Target):
    """The env's DGD on its Kubernetes cluster; answers the same questions as the local target."""

    kind = "cluster"
    stops_failed_up = False

    def __init__(self, env: str = "dev", *, context: str | None = None, kubeconfig: str | None = None,
                 access: KubeletAccess | None = None) -> None:
        from kubernetes import client, config

        super().__init__(env)
        self.settings = load_settings(env)
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
        notes: list[str] = []
        for obj in self.bundle.objects:
            resource = self._resource(dyn, obj)
            try:
                existing = resource.get(name=obj["metadata"]["name"], namespace=self.namespace)
            except NotFoundError:
                existing = None
            if obj["kind"] == bundle_mod.DGD_KIND and existing is not None:
                obj, notes = self._keep_adapter_replicas(obj, existing.to_dict())
            plan.append((obj, resource, existing))
        unchanged: set[int] = set()  # plan entries whose dry run changes nothing: not written at all
        for i, (obj, resource, existing) in enumerate(plan):  # dry run: nothing changes if anything is refused
            if obj["kind"] == "PersistentVolumeClaim" and existing is not None:
                continue
            try:
                dry = resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                                 force_conflicts=True, dry_run="All")
                if existing is not None and _content(dry.to_dict()) == _content(existing.to_dict()):
                    unchanged.add(i)
            except DynamicApiError as exc:
                if exc.status == 404:  # discovery was cached before the CRD went away
                    raise DeploymentError(
                        f"the API server does not serve {obj['kind']} ({obj['apiVersion']}): its CRD is not "
                        "installed; nothing was applied",
                        fix="install the Dynamo CRDs (helm install dynamo-crds ...)") from None
                message = _dynamic_message(exc)
                raise DeploymentError(
                    f"the API server refuses {obj['kind']} {obj['metadata']['name']} (dry run; nothing was "
                    f"applied): {message}",
                    fix="change replicas through the service's scaling adapter: `gtcdemo scale <service> N`"
                        if "scaling adapter" in message else
                        "fix the manifest field named above; the CRD installed on the cluster may differ from "
                        "the nvidia.com/v1alpha1 schema (Dynamo 0.8) gtcdemo is written for") from None
        rows = []
        for i, (obj, resource, existing) in enumerate(plan):
            name = obj["metadata"]["name"]
            # An existing claim is never modified. An object the dry run leaves as it is is not written: a no-op
            # apply can still move its resourceVersion (field-ownership bookkeeping, e.g. sharing `replicas` with
            # the operator after a DGDSA scale), and "unchanged" must mean unchanged.
            if (obj["kind"] == "PersistentVolumeClaim" and existing is not None) or i in unchanged:
                rows.append({"kind": obj["kind"], "name": name, "action": "unchanged"})
                continue
            resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                       force_conflicts=True)
            rows.append({"kind": obj["kind"], "name": name, "action": "created" if existing is None else "configured"})
        return ApplyResult(target=self.name, rows=rows, note="\n".join(notes))

    def _keep_adapter_replicas(self, dgd: dict, live: dict) -> tuple[dict, list[str]]:
        """``dgd`` carrying the live replicas of every service a DGDSA scales, and a note where the manifest differs.

        A DGDSA owns its service's replicas: its controller writes them into the DGD
        (deploy/operator/internal/controller/dynamographdeploymentscalingadapter_controller.go) and Dynamo's
        validating webhook refuses anyone else's change of them, dry runs included
        (deploy/operator/internal/webhook/validation/dynamographdeployment.go, validateReplicasChanges; on in 0.8
        unless ``scalingAdapter.disable: true``). Applying the live value shows the webhook no change; the operator
        took the field over with its last update, and server-side apply leaves it in its hands.
        """
        live_services = (live.get("spec") or {}).get("services") or {}
        adapters = self.adapters()
        body = copy.deepcopy(dgd)
        notes = []
        for service, spec in body["spec"]["services"].items():
            adapter = _adapter_for(service, self.bundle.name, adapters)
            if adapter is None or service not in live_services or (spec.get("scalingAdapter") or {}).get("disable"):
                continue
            live_replicas = (live_services[service] or {}).get("replicas", 1)
            wanted = spec.get("replicas", 1)
            spec["replicas"] = live_replicas
            if wanted != live_replicas:
                notes.append(f"{service}: kept its {live_replicas} live replicas (the manifest says {wanted}): the "
                             f"scaling adapter {adapter['metadata']['name']} owns them; to change them: `gtcdemo "
                             f"scale {service} {wanted}`")
        return body, notes

    # -- wait ------------------------------------------------------------------------------------------------------
    def _watch(self, stop: threading.Event, events: queue.Queue, kind: str, list_fn: Callable, **kwargs: Any) -> None:
        """List, then stream watch events of one kind into ``events`` until ``stop`` is set.

        A watch whose resourceVersion has expired (410 Gone) re-lists and resumes from the list's resourceVersion,
        as the kubernetes client documents for ``Watch.stream``; any other error (403: no RBAC to list/watch, a
        lost API server) is handed to the waiter as ``ERROR`` and ends this watch: the waiter fails at once.
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        resource_version = None
        while not stop.is_set():
            w = watch.Watch()
            try:
                if resource_version is None:
                    items, resource_version = _listed(list_fn(**kwargs))
                    events.put((kind, "RELISTED", items))
                for event in w.stream(list_fn, resource_version=resource_version, timeout_seconds=5, **kwargs):
                    events.put((kind, event["type"], event["object"]))
                    if stop.is_set():
                        break
                resource_version = w.resource_version or resource_version
            except ApiException as exc:
                if exc.status != 410:
                    events.put((kind, "ERROR", exc))
                    return
                resource_version = None  # expired: list again, then watch from there
            except Exception as exc:
                events.put((kind, "ERROR", exc))
                return
            finally:
                w.stop()

    def _watch_error(self, kind: str, exc: Exception) -> DeploymentError:
        """A watch that cannot go on: say which, why, and what permission or connection it needs."""
        from kubernetes.client.exceptions import ApiException

        resource = {"pod": "pods", "dgd": f"{DGD_PLURAL}.{GROUP}", "event": "events"}[kind]
        if isinstance(exc, ApiException):
            fix = (f"your credentials need get, list and watch on {resource} in {self.namespace} (a Role; check "
                   f"with `kubectl auth can-i watch {resource} -n {self.namespace}`)" if exc.status in (401, 403)
                   else "check the API server: `gtcdemo preflight --target cluster`")
            return DeploymentError(f"watching {resource} in {self.namespace} failed: HTTP {exc.status} "
                                   f"{exc.reason}: {_api_message(exc)}", where=f"{self.context}/{self.namespace}",
                                   fix=fix)
        return DeploymentError(f"watching {resource} in {self.namespace} failed: cannot reach the API server of "
                               f"{self.context}: {type(exc).__name__}: {exc}", where=self.context,
                               fix=f"check your network/VPN and `kubectl --context {self.context} get nodes`")

    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None,
             pending_bound_s: float | None = None) -> ReadyResult:
        """Watch the DGD's pods until the live replica count is Running and Ready AND the DGD reports successful.

        Fails at once on states that will not heal (the DGD ``failed``, image pulls, crash loops, unschedulable,
        missing volumes, gated or pending past a bound, a watch the API server refuses), printing the pods, their
        events and the last 20 log lines of each.
        """
        if timeout_s <= 0:
            raise DeploymentError(f"timeout must be > 0 s, got {timeout_s}", fix="pass e.g. timeout_s=600")
        from kubernetes.client.exceptions import ApiException

        bound = self.settings.pending_bound_s if pending_bound_s is None else pending_bound_s
        start = time.monotonic()
        deadline = start + timeout_s
        try:
            pods = {p.metadata.name: p for p in self.pods()}
        except ApiException as exc:
            raise self._watch_error("pod", exc) from None
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
                failure = dgd_failure(dgd)
                if failure:
                    raise self._failure(f"DGD {self.bundle.name} failed: {failure}", pods,
                                        fix="act on the operator's message above (`kubectl -n "
                                            f"{self.namespace} describe dgd {self.bundle.name}`); `gtcdemo "
                                            "preflight --target cluster` checks the platform. Fixed already? The "
                                            "operator retries with back-off and the state stays `failed` until "
                                            "then: wait again")
                now = datetime.now(UTC)
                for pod in pods.values():
                    problem = diagnose_pod(pod, now, bound, logs=lambda name: self._pod_logs(name, 20))
                    if problem:
                        raise self._failure(f"{problem}", pods)
                # The live replicas: a DGDSA may have scaled a service away from the manifest's count.
                expected = sum(int((s or {}).get("replicas", 1)) for s in
                               ((dgd.get("spec") or {}).get("services") or self.bundle.services).values())
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
                    raise self._watch_error(kind, obj)
                if kind_type == "RELISTED":
                    if kind == "pod":
                        pods = {p.metadata.name: p for p in obj}
                    elif kind == "dgd":
                        dgd = obj[0] if obj else {}
                    else:
                        problem = next(filter(None, (diagnose_event(e, set(pods)) for e in obj)), None)
                        if problem:
                            raise self._failure(str(problem), pods)
                elif kind == "pod":
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

    def _failure(self, headline: str, pods: dict[str, Any], fix: str = "act on the first line above; `gtcdemo "
                 "status --target cluster` shows the rest") -> DeploymentError:
        """The diagnosis a presenter needs: the pods as `-o wide`, their recent events, their last log lines."""
        events = self.events_frame(set(pods))
        parts = [headline, "", "pods:", pods_frame(list(pods.values())).to_string(index=False)]
        parts += ["", "recent events:", events.to_string(index=False) if not events.empty else "(none)"]
        for name in sorted(pods):
            parts += ["", f"last 20 log lines of {name}:", self._pod_logs(name, 20)]
        return DeploymentError("\n".join(parts), where=f"{self.context}/{self.namespace}", fix=fix)

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
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC)
        nodes = []
        nodes_title = "nodes"
        try:
            listed_nodes = self.core.list_node().items
        except ApiException as exc:
            if exc.status != 403:
                raise
            listed_nodes, nodes_title = [], "nodes: forbidden (your credentials may not list nodes, cluster-scoped)"
        for n in sorted(listed_nodes, key=lambda n: n.metadata.name):
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
            StatusTable(nodes_title, pd.DataFrame(nodes)),
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
        """The frontend Service: ``<dgd>-frontend``; else one labelled as the DGD's frontend; else list candidates.

        Dynamo 0.8 names it ``<dgd>-<frontend service lowercased>`` and gives it no labels of ours
        (deploy/operator/internal/dynamo/graph.go, GenerateComponentService), so the name comes first.
        """
        from kubernetes.client.exceptions import ApiException

        frontend = next((s for s, spec in self.bundle.services.items() if spec.get("componentType") == "frontend"),
                        "frontend")
        conventional = f"{self.bundle.name}-{frontend.lower()}"
        try:
            self.core.read_namespaced_service(conventional, self.namespace)
            return conventional
        except ApiException as exc:
            if exc.status != 404:
                raise
        labelled = self.core.list_namespaced_service(
            self.namespace, label_selector=f"{self.selector},{COMPONENT_TYPE_LABEL}=frontend").items
        if labelled:
            return labelled[0].metadata.name
        candidates = [s.metadata.name for s in self.core.list_namespaced_service(self.namespace).items]
        raise DeploymentError(f"no frontend Service for {self.bundle.name} in {self.namespace} (neither named "
                              f"{conventional} nor labelled {COMPONENT_TYPE_LABEL}=frontend); services there: "
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
        live = self.get_dgd()
        if live is None:  # scaling never deploys
            raise DeploymentError(f"DGD {self.bundle.name} does not exist in {self.namespace} on {self.context}: "
                                  "nothing to scale", where=f"{self.context}/{self.namespace}",
                                  fix=f"start it: gtcdemo up --env {self.env} --target cluster")
        services = copy.deepcopy(live.get("spec", {}).get("services") or self.bundle.services)
        services.setdefault(service, copy.deepcopy(self.bundle.services[service]))["replicas"] = replicas
        self._refuse_beyond_gpus(services, where=f"gtcdemo scale {service} {replicas}")
        adapter = _adapter_for(service, self.bundle.name, self.adapters())
        if adapter is not None:
            name = adapter["metadata"]["name"]
            self.custom.patch_namespaced_custom_object_scale(GROUP, VERSION, self.namespace, DGDSA_PLURAL, name,
                                                             {"spec": {"replicas": replicas}})
            return ApplyResult(self.name, [{"kind": "DynamoGraphDeploymentScalingAdapter", "name": name,
                                            "action": f"scaled to {replicas}"}])
        # No adapter: the DGD owns the replicas, and the webhook accepts a direct edit, unless the service's adapter
        # is on but its DGDSA not made yet (0.8: on unless `scalingAdapter.disable: true`, validateReplicasChanges).
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL, self.bundle.name,
                                                       {"spec": {"services": {service: {"replicas": replicas}}}})
        except ApiException as exc:
            raise DeploymentError(
                f"scaling {service} through the DGD is refused: {_api_message(exc)}",
                where=f"{self.context}/{self.namespace}",
                fix=f"its scaling adapter is on but there is no DGDSA {self.bundle.name}-{service.lower()} yet: wait "
                    "until the operator made it (`gtcdemo wait --target cluster`), then scale again"
                    if exc.status == 403 and "scaling adapter" in _api_message(exc) else
                    "check the message above") from None
        return ApplyResult(self.name, [{"kind": "DynamoGraphDeployment", "name": self.bundle.name,
                                        "action": f"{service} replicas set to {replicas}"}])

    def is_running(self) -> bool:
        return self.get_dgd() is not None

    def not_running(self, doing: str = "") -> DeploymentError:
        return DeploymentError(f"no DynamoGraphDeployment {self.bundle.name} in {self.namespace}{doing}",
                               where=self.name, fix=f"deploy it: gtcdemo up --env {self.env} --target cluster")

    def replicas(self, service: str) -> int:
        services = ((self.get_dgd() or {}).get("spec") or {}).get("services") or {}
        return int((services.get(service) or {}).get("replicas", 1))

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
        except ApiException as exc:
            report.add(f"namespace {ns}", False,
                       *(_refusal(exc, "get", "namespaces") or ("missing", f"kubectl create namespace {ns}")))
        ext = client.ApiextensionsV1Api(self.api)
        for plural, label in ((DGD_PLURAL, "DGD CRD"), (DGDSA_PLURAL, "DGDSA CRD")):
            try:
                crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
                served = [v.name for v in crd.spec.versions if v.served]
                ok = VERSION in served
                report.add(label, ok, f"{plural}.{GROUP} serves {', '.join(served)}",
                           f"the DGD uses {GROUP}/{VERSION}: upgrade the dynamo-crds chart")
            except ApiException as exc:
                report.add(label, False, *(_refusal(exc, "get", "customresourcedefinitions") or (
                    f"{plural}.{GROUP} not installed",
                    "install Dynamo's CRDs (the dynamo-crds Helm chart) before the platform")))
        report.add(*self._operator_check())
        report.add(*self._queue_check())
        self._gpu_checks(report)
        try:
            client.NodeV1Api(self.api).read_runtime_class(self.settings.runtime_class)
            report.add(f"RuntimeClass {self.settings.runtime_class}", True, "exists")
        except ApiException as exc:
            report.add(f"RuntimeClass {self.settings.runtime_class}", False,
                       *(_refusal(exc, "get", "runtimeclasses") or (
                           "missing", "install the NVIDIA GPU operator / container toolkit, which creates it")))
        for pvc in (o for o in b.objects if o["kind"] == "PersistentVolumeClaim"):
            name = pvc["metadata"]["name"]
            try:
                phase = self.core.read_namespaced_persistent_volume_claim(name, ns).status.phase
                report.add(f"PVC {name}", phase == "Bound", f"{phase}",
                           "the model PVC must be Bound to the NFS volume that holds the model files "
                           "(`kubectl describe pvc`)")
            except ApiException as exc:
                report.add(f"PVC {name}", False, *(_refusal(exc, "get", "persistentvolumeclaims", ns) or (
                    "missing", f"create it bound to the NFS volume that holds the model files: "
                    f"`kubectl apply -f manifests/{self.env}/00-model-nfs-pvc.yaml`")))
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
        except ApiException as exc:
            report.add("Prometheus service", False, *(_refusal(exc, "get", "services", prom_ns) or (
                f"{prom_ns}/{prom_name} missing",
                "install kube-prometheus-stack, or set `prometheus` in manifests/<env>/cluster.toml")))
        report.add(*self._dry_run_check())
        return report

    def _operator_check(self) -> tuple[str, bool, str, str]:
        """The Dynamo operator, found by the platform chart's labels (never by a name containing "operator")."""
        from kubernetes.client.exceptions import ApiException

        ns = self.settings.operator_namespace
        label = f"Dynamo operator in {ns}"
        try:
            operators = self.apps.list_namespaced_deployment(ns, label_selector=OPERATOR_SELECTOR).items
            others = [] if operators else self.apps.list_namespaced_deployment(ns).items
        except ApiException as exc:
            return label, False, *(_refusal(exc, "list", "deployments", ns) or ("?", ""))
        running = [d for d in operators if (d.status.ready_replicas or 0) >= 1]
        if operators:
            return (label, bool(running), ", ".join(f"Deployment {d.metadata.name} ({d.status.ready_replicas or 0} "
                                                    "ready)" for d in operators),
                    f"the operator has no ready pod: `kubectl -n {ns} describe deploy -l {OPERATOR_SELECTOR}`")
        found = ", ".join(f"{d.metadata.name} ({d.status.ready_replicas or 0} ready)" for d in others)
        return (label, False, f"no Deployment labelled {OPERATOR_SELECTOR}"
                + (f"; found only {found} (grove-operator runs Grove's PodCliques, not DGDs)" if found else ""),
                "nothing turns the DGD into pods without the Dynamo operator (a platform installed with "
                "dynamo-operator.enabled=false has none): enable it in the dynamo-platform chart: "
                f"`helm upgrade <release> <chart> -n {ns} "
                "--reuse-values --set dynamo-operator.enabled=true`")

    def _queue_check(self) -> tuple[str, bool | None, str, str]:
        """The KAI queue the DGD names (annotation, default "dynamo"): the 0.8 operator refuses to deploy without it.

        As deploy/operator/internal/dynamo/grove.go (resolveKaiSchedulerQueueName, ensureQueueExists).
        """
        from kubernetes.client.exceptions import ApiException

        name = self._queue_name()
        label = f"KAI queue {name}"
        try:
            self.custom.get_cluster_custom_object(KAI_GROUP, KAI_VERSION, KAI_QUEUES, name)
            return label, True, f"exists ({KAI_QUEUES}.{KAI_GROUP}/{KAI_VERSION})", ""
        except ApiException as exc:
            refused = _refusal(exc, "get", f"{KAI_QUEUES}.{KAI_GROUP}")
            if refused:
                return label, False, *refused
            if not (_status_details(exc).get("name")):  # the resource itself is not served: no KAI
                return (label, None, f"{KAI_QUEUES}.{KAI_GROUP}/{KAI_VERSION} is not served: KAI is not installed, so "
                        "the operator schedules without a queue", "the demo's platform runs Grove + KAI: check the "
                        "dynamo-platform chart's kai-scheduler.enabled")
        with contextlib.suppress(ApiException):
            existing = [q["metadata"]["name"] for q in self.custom.list_cluster_custom_object(
                KAI_GROUP, KAI_VERSION, KAI_QUEUES)["items"]]
            return (label, False, f"missing (queues: {', '.join(existing) or 'none'}); the operator refuses to "
                    f"deploy the DGD without it", self._queue_fix(name))
        return label, False, "missing; the operator refuses to deploy the DGD without it", self._queue_fix(name)

    def _queue_name(self) -> str:
        """The DGD's KAI queue: its annotation, trimmed, else the default (grove.go resolveKaiSchedulerQueueName)."""
        annotations = self.bundle.dgd["metadata"].get("annotations") or {}
        return str(annotations.get(bundle_mod.KAI_QUEUE_ANNOTATION) or "").strip() or bundle_mod.DEFAULT_KAI_QUEUE

    def _queue_fix(self, name: str) -> str:
        return (f"create Queue {name} as the dynamo-platform chart's hook does (deploy/helm/charts/platform/templates/"
                f"kai.yaml: `apiVersion: {KAI_GROUP}/{KAI_VERSION}`, `kind: Queue`, parentQueue dynamo-default, "
                "quota and limit -1 for cpu, gpu and memory; `helm upgrade <release> <chart> --reuse-values` re-runs "
                f"it), or name an existing queue in the DGD annotation {bundle_mod.KAI_QUEUE_ANNOTATION} in "
                f"manifests/{self.env}/20-dgd-{self.bundle.name}.yaml")

    def _gpu_checks(self, report: CheckReport) -> None:
        """GPU nodes with the seed's label, enough allocatable GPUs (in total, and on one node for the largest
        pod), and the taint the workers tolerate."""
        from kubernetes.client.exceptions import ApiException

        key, _, value = self.settings.gpu_node_label.partition("=")
        taint_key, _, taint_effect = self.settings.gpu_taint.partition(":")
        try:
            gpu_nodes = self.core.list_node(label_selector=self.settings.gpu_node_label).items
        except ApiException as exc:
            report.add("GPU nodes", False, *(_refusal(exc, "list", "nodes") or ("?", "")))
            return
        needed, per_pod = gpus_requested(self.bundle.services)
        per_node = [_allocatable_gpus(n) for n in gpu_nodes]
        allocatable = sum(per_node)
        tainted = [n for n in gpu_nodes if any(t.key == taint_key and t.effect == taint_effect
                                               for t in n.spec.taints or [])]
        fits_a_node = per_pod <= max(per_node, default=0)
        report.add("GPU nodes", bool(gpu_nodes) and allocatable >= needed and fits_a_node,
                   f"{len(gpu_nodes)} nodes labelled {key}={value}, {allocatable} allocatable nvidia.com/gpu, "
                   f"the DGD needs {needed}" + ("" if fits_a_node else
                                                f"; a pod needs {per_pod}, more than any one node has"),
                   "add GPU nodes or lower the workers' replicas; check the NVIDIA device plugin / GPU operator")
        if gpu_nodes:
            report.add("GPU node taint", True if len(tainted) == len(gpu_nodes) else None,
                       f"{len(tainted)}/{len(gpu_nodes)} GPU nodes tainted {self.settings.gpu_taint}",
                       "untainted GPU nodes also take pods that need no GPU (the workers tolerate the taint)")

    def _refuse_beyond_gpus(self, services: dict, where: str) -> None:
        """Refuse, before anything is applied, GPU pods the GPU nodes (preflight's listing) can never all hold:
        more GPUs than they have allocatable, or a pod needing more than any one node has. Credentials that may not
        list nodes skip this, and so does a cluster with no node labelled as GPU nodes (a node pool scaled to zero,
        or another label: preflight says so)."""
        from kubernetes.client.exceptions import ApiException

        try:
            nodes = self.core.list_node(label_selector=self.settings.gpu_node_label).items
        except ApiException as exc:
            if exc.status in (401, 403):
                return
            raise self._api_error(exc, "listing the GPU nodes") from None
        needed, per_pod = gpus_requested(services)
        per_node = [_allocatable_gpus(n) for n in nodes]
        if nodes and (needed > sum(per_node) or per_pod > max(per_node)):
            raise DeploymentError(
                f"the DGD's pods would request {needed} nvidia.com/gpu (at most {per_pod} in one pod), but the "
                f"{len(nodes)} nodes labelled {self.settings.gpu_node_label} have {sum(per_node)} allocatable (at "
                f"most {max(per_node, default=0)} on one node): pods beyond that stay Pending; nothing was applied",
                where=where, fix="lower the workers' replicas to fit the GPUs, or add GPU nodes (`gtcdemo preflight "
                                 "--target cluster` lists them)")

    def _refuse_missing_prerequisites(self) -> None:
        """What the API server would accept but the pods could never use: a missing secret, an unbound claim, a
        missing KAI queue (with KAI installed; a cluster without it, or credentials that may not read queues, pass)."""
        from kubernetes.client.exceptions import ApiException

        self._refuse_beyond_gpus(self.bundle.services, where=f"manifests/{self.env} DGD {self.bundle.name}.spec."
                                                             "services.*.replicas")
        queue_name = self._queue_name()
        try:
            self.custom.get_cluster_custom_object(KAI_GROUP, KAI_VERSION, KAI_QUEUES, queue_name)
        except ApiException as exc:
            if exc.status == 404 and _status_details(exc).get("name"):
                raise DeploymentError(
                    f"KAI queue {queue_name} does not exist: the Dynamo operator refuses to deploy the DGD without it "
                    "(grove.go ensureQueueExists); nothing was applied",
                    where=f"manifests/{self.env}: the DGD's metadata.annotations.{bundle_mod.KAI_QUEUE_ANNOTATION}",
                    fix=self._queue_fix(queue_name)) from None

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
                    fix="bind it to the NFS volume that holds the model files "
                        f"(`kubectl -n {self.namespace} describe pvc {name}`)")

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
                if obj["kind"] in ("PersistentVolumeClaim", bundle_mod.DGD_KIND):
                    try:
                        existing = resource.get(name=obj["metadata"]["name"], namespace=self.namespace)
                    except NotFoundError:
                        existing = None
                    if existing is not None and obj["kind"] == "PersistentVolumeClaim":
                        continue  # apply never modifies an existing claim
                    if existing is not None:
                        obj = self._keep_adapter_replicas(obj, existing.to_dict())[0]
                resource.server_side_apply(body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                                           force_conflicts=True, dry_run="All")
        except DeploymentError as exc:
            return "server-side dry run", False, exc.problem, exc.fix or ""
        except DynamicApiError as exc:
            return ("server-side dry run", False, f"{obj['kind']} {obj['metadata']['name']}: {_dynamic_message(exc)}",
                    "fix the field named above (the cluster's CRD or webhook refuses it)")
        return "server-side dry run", True, f"{len(self.bundle.objects)} objects accepted", ""


def gpus_requested(services: dict) -> tuple[int, int]:
    """GPUs the services' pods request in total (replicas x resources.limits.gpu), and the most one pod requests."""
    per_pod = {name: int(str(((s.get("resources") or {}).get("limits") or {}).get("gpu", "0")) or 0)
               for name, s in services.items()}
    total = sum(int(s.get("replicas", 1)) * per_pod[name] for name, s in services.items())
    return total, max((n for name, n in per_pod.items() if int(services[name].get("replicas", 1))), default=0)


def _allocatable_gpus(node: Any) -> int:
    return int((node.status.allocatable or {}).get("nvidia.com/gpu", "0"))


def _content(obj: dict) -> dict:
    """What an apply can change: the object without its status and the server's bookkeeping."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k not in ("managedFields", "resourceVersion", "generation")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _adapter_for(service: str, dgd_name: str, adapters: list[dict]) -> dict | None:
    """The DGDSA of ``service``: by its dgdRef, else by the operator's name ``<dgd>-<service lowercased>``."""
    return next((a for a in adapters if (a.get("spec", {}).get("dgdRef") or {}).get("serviceName") == service
                 or a["metadata"]["name"] == f"{dgd_name}-{service.lower()}"), None)


def _listed(listed: Any) -> tuple[list, str | None]:
    """Items and resourceVersion of a list answer (a typed V1*List, or a dict for custom objects)."""
    if isinstance(listed, dict):
        return listed.get("items") or [], (listed.get("metadata") or {}).get("resourceVersion")
    return list(listed.items or []), listed.metadata.resource_version


def _status_details(exc: Exception) -> dict:
    """``details`` of the API server's Status body (``name`` is set when the object, not its kind, is missing)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return json.loads(getattr(exc, "body", None) or "{}").get("details") or {}
    return {}


def _refusal(exc: Exception, verb: str, resource: str, namespace: str | None = None) -> tuple[str, str] | None:
    """(detail, fix) of an API error other than 404: what permission is missing (403/401), else the server's word."""
    status = getattr(exc, "status", None)
    if status == 404:
        return None
    scope = f"in namespace {namespace}" if namespace else "cluster-scoped"
    if status in (401, 403):
        can_i = f"kubectl auth can-i {verb} {resource}" + (f" -n {namespace}" if namespace else "")
        grant = f"a Role in {namespace}" if namespace else "a ClusterRole (bound with a ClusterRoleBinding)"
        return (f"forbidden: your credentials may not {verb} {resource} ({scope}): {_api_message(exc)}",
                f"ask the cluster admin for {grant} allowing {verb} on {resource} (check: `{can_i}`), or run "
                "preflight with the platform admin's kubeconfig")
    return f"HTTP {status}: {_api_message(exc)}", "check the API server (`kubectl get --raw /readyz`)"


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
