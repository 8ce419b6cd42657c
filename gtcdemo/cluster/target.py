"""The cluster target: the env's DGD on its Kubernetes cluster, answering the same questions as the local target.

Every answer about what runs is asked of the API server (the live DGD, its adapters and pods), never read back from
the bundle: a scaling adapter, another user or the operator may have changed it since it was applied.
"""

from __future__ import annotations

import contextlib
import copy
import queue
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .. import bundle as bundle_mod
from ..clock import Deadline
from ..errors import DeploymentError
from ..results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable
from ..target import Target
from . import apply as apply_mod
from . import preflight as preflight_mod
from .access import KubectlAccess, KubeletAccess, forward_healthy
from .apierrors import api_message
from .diagnosis import dgd_failure, diagnose_event, diagnose_pod, pod_ready
from .kube import Kube
from .names import COMPONENT_LABEL, COMPONENT_TYPE_LABEL, DGD_LABEL, DGD_PLURAL, DGDSA_PLURAL, GROUP, VERSION
from .settings import load_settings
from .tables import adapters_frame, dgds_frame, events_frame, nodes_frame, pods_frame, pvcs_frame
from .watch import watch_error, watching

DGDSA_KIND = "DynamoGraphDeploymentScalingAdapter"


def _deployed(dgd: dict | None) -> bool:
    """A DGD that exists and is not being deleted (the operator's finalizer holds a deleted one until its pods go)."""
    return dgd is not None and not (dgd.get("metadata") or {}).get("deletionTimestamp")


class ClusterTarget(Target):
    """The env's DGD on its Kubernetes cluster; answers the same questions as the local target."""

    kind = "cluster"
    stops_failed_up = False

    def __init__(self, env: str = "dev", *, context: str | None = None, kubeconfig: str | None = None,
                 access: KubeletAccess | None = None) -> None:
        super().__init__(env)
        self.settings = load_settings(env)
        self.kube = Kube(self.settings, env, context=context, kubeconfig=kubeconfig)
        self.context, self.core, self.custom = self.kube.context, self.kube.core, self.kube.custom
        self.access: KubeletAccess = access or KubectlAccess(self.core, self.context, self.kube.kubeconfig)

    # -- where -------------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.bundle.name} on {self.context}/{self.bundle.namespace}"

    @property
    def namespace(self) -> str:
        return self.bundle.namespace

    @property
    def selector(self) -> str:
        return f"{DGD_LABEL}={self.bundle.name}"

    # -- live objects ------------------------------------------------------------------------------------------------
    def pods(self) -> list[Any]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items

    def get_dgd(self) -> dict | None:
        return self.kube.get_dgd(self.namespace, self.bundle.name)

    def adapters(self) -> list[dict]:
        return self.kube.adapters(self.namespace, self.bundle.name)

    def is_running(self) -> bool:
        return _deployed(self.get_dgd())

    def not_running(self, doing: str = "") -> DeploymentError:
        state = "is being deleted" if self.get_dgd() is not None else "does not exist"
        return DeploymentError(f"DGD {self.bundle.name} {state} in {self.namespace} on {self.context}{doing}",
                               where=f"{self.context}/{self.namespace}",
                               fix=f"start it: gtcdemo up --env {self.env} --target cluster")

    def replicas(self, service: str) -> int:
        """The replicas the live DGD gives ``service`` (0 when it is not deployed or has no such service).

        The DGD, not the manifest: an adapter's replicas are written into the DGD by the DGDSA controller
        (deploy/operator/internal/controller/dynamographdeploymentscalingadapter_controller.go).
        """
        live = self.get_dgd()
        services = ((live or {}).get("spec") or {}).get("services") or {}
        if not _deployed(live) or service not in services:
            return 0
        return int((services[service] or {}).get("replicas", 1))

    # -- apply -------------------------------------------------------------------------------------------------------
    def apply(self, bundle: bundle_mod.Bundle | None = None) -> ApplyResult:
        """Server-side apply (field manager gtcdemo) of PVC (only when absent), ConfigMap and DGD, in that order.

        Refused before anything changes: a missing namespace, prerequisites the pods could never do without
        (``preflight.prerequisites``), and anything the server-side dry run of every object refuses.
        """
        from kubernetes.client.exceptions import ApiException

        if bundle is not None:
            self._bundle = bundle
        try:
            self.core.read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise DeploymentError(f"namespace {self.namespace} does not exist on {self.context}; nothing was "
                                      "applied", fix=f"kubectl create namespace {self.namespace}") from None
            raise self.kube.error(exc, "reading the namespace") from None
        except Exception as exc:  # connection errors
            raise self.kube.error(exc, "reading the namespace") from None
        preflight_mod.refuse(preflight_mod.prerequisites(self.kube, self.settings, self.bundle))
        plan = apply_mod.dry_run(self.kube, self.bundle)
        return ApplyResult(target=self.name, rows=apply_mod.write(self.bundle, plan), note="\n".join(plan.notes))

    # -- wait --------------------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None,
             pending_bound_s: float | None = None) -> ReadyResult:
        """Watch the DGD's pods until the live replica count is Running and Ready AND the DGD reports successful.

        Fails at once on states that will not heal (the DGD ``failed`` or deleted, image pulls, crash loops,
        unschedulable, missing volumes, gated or pending past a bound, a watch the API server refuses), printing the
        pods, their events and the last 20 log lines of each.
        """
        if timeout_s <= 0:
            raise DeploymentError(f"timeout must be > 0 s, got {timeout_s}", fix="pass e.g. timeout_s=600")
        from kubernetes.client.exceptions import ApiException

        bound = self.settings.pending_bound_s if pending_bound_s is None else pending_bound_s
        deadline = Deadline(timeout_s)
        try:
            pods = {p.metadata.name: p for p in self.pods()}
        except ApiException as exc:
            raise watch_error("pod", exc, self.context, self.namespace) from None
        dgd = self.get_dgd()
        if dgd is None:
            raise DeploymentError(f"DGD {self.bundle.name} does not exist in {self.namespace}",
                                  fix="apply it first: `gtcdemo up --target cluster` (or notebook 02_deploy)")
        last_note = ""
        with watching(self.kube, self.namespace, self.bundle.name, self.selector) as events:
            while True:
                if not dgd:
                    raise self.not_running(": it was deleted while waiting")
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
                expected = sum(int((s or {}).get("replicas", 1))
                               for s in ((dgd.get("spec") or {}).get("services") or {}).values())
                ready = [p for p in pods.values() if pod_ready(p)]
                state = (dgd.get("status") or {}).get("state", "")
                note = f"{len(ready)}/{expected} pods Running and Ready, DGD state {state or '(none)'}"
                if len(ready) >= expected and state == "successful":
                    elapsed = deadline.elapsed
                    if progress:
                        progress(f"ready after {elapsed:.1f} s")
                    return ReadyResult(target=self.name, ready=True, elapsed_s=elapsed,
                                       status=StatusTable(f"{self.name}: pods", pods_frame(list(pods.values()))),
                                       details=[self.adapters_table()])
                if progress and note != last_note:
                    progress(note)
                    last_note = note
                if deadline.expired:
                    raise self._failure(f"not ready after {timeout_s:.0f} s: {note}", pods)
                try:
                    kind, kind_type, obj = events.get(timeout=min(deadline.remaining, 5.0))
                except queue.Empty:
                    continue  # re-check the Pending bounds and the deadline
                if kind_type == "ERROR":
                    raise watch_error(kind, obj, self.context, self.namespace)
                if kind == "pod":
                    if kind_type == "RELISTED":
                        pods = {p.metadata.name: p for p in obj}
                    elif kind_type == "DELETED":
                        pods.pop(obj.metadata.name, None)
                    else:
                        pods[obj.metadata.name] = obj
                elif kind == "dgd":
                    if kind_type == "RELISTED":
                        obj = obj[0] if obj else {}
                    dgd = {} if kind_type == "DELETED" else obj
                else:
                    listed = obj if kind_type == "RELISTED" else [obj]
                    problem = next(filter(None, (diagnose_event(e, set(pods)) for e in listed)), None)
                    if problem:
                        raise self._failure(str(problem), pods)

    def _failure(self, headline: str, pods: dict[str, Any], fix: str = "act on the first line above; `gtcdemo "
                 "status --target cluster` shows the rest") -> DeploymentError:
        """The diagnosis a presenter needs: the pods as `-o wide`, their recent events, their last log lines."""
        events = events_frame(self.core.list_namespaced_event(self.namespace).items, set(pods))
        parts = [headline, "", "pods:", pods_frame(list(pods.values())).to_string(index=False)]
        parts += ["", "recent events:", events.to_string(index=False) if not events.empty else "(none)"]
        for name in sorted(pods):
            parts += ["", f"last 20 log lines of {name}:", self._pod_logs(name, 20)]
        return DeploymentError("\n".join(parts), where=f"{self.context}/{self.namespace}", fix=fix)

    def _pod_logs(self, pod: str, tail: int) -> str:
        try:
            return self.access.logs(self.namespace, pod, tail) or "(empty)"
        except Exception as exc:  # a pod that never started has no logs
            return f"(no logs: {type(exc).__name__}: {api_message(exc)})"

    # -- status ------------------------------------------------------------------------------------------------------
    def status(self) -> StatusTable:
        return StatusTable(f"{self.name}: pods ({self.selector})", pods_frame(self.pods()))

    def adapters_table(self) -> StatusTable:
        return StatusTable(f"DGDSAs of {self.bundle.name}", adapters_frame(self.adapters()))

    def demo_status(self) -> Overview:
        """Nodes (-o wide), then the DGD, DGDSAs, pods and PVCs of the namespace, as the demo's `demo-status`."""
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC)
        nodes_title = "nodes"
        try:
            nodes = self.core.list_node().items
        except ApiException as exc:
            if exc.status != 403:
                raise
            nodes, nodes_title = [], "nodes: forbidden (your credentials may not list nodes, cluster-scoped)"
        dgds = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL)["items"]
        pvcs = self.core.list_namespaced_persistent_volume_claim(self.namespace).items
        return Overview(f"demo-status: {self.context}", [
            StatusTable(nodes_title, nodes_frame(nodes, now)),
            StatusTable(f"dgd -n {self.namespace}", dgds_frame(dgds, now)),
            StatusTable(f"dgdsa -n {self.namespace}", self.adapters_table().frame),
            StatusTable(f"pods -n {self.namespace}", pods_frame(self.core.list_namespaced_pod(self.namespace).items,
                                                                now)),
            StatusTable(f"pvc -n {self.namespace}", pvcs_frame(pvcs, now)),
        ])

    def logs(self, service: str | None = None, tail: int = 20) -> dict[str, str]:
        out = {}
        for pod in sorted(self.pods(), key=lambda p: p.metadata.name):
            if service and (pod.metadata.labels or {}).get(COMPONENT_LABEL) != service:
                continue
            out[pod.metadata.name] = self._pod_logs(pod.metadata.name, tail)
        return out

    def preflight(self) -> CheckReport:
        """Everything the deployment needs, checked before anything is applied (each failure with its fix)."""
        return preflight_mod.run(self.kube, self.settings, self.env, self.config_check)

    # -- endpoints ---------------------------------------------------------------------------------------------------
    def frontend_service(self) -> str:
        """The frontend Service: ``<dgd>-frontend``; else one labelled as the DGD's frontend; else list candidates.

        Dynamo 0.8 names it ``<dgd>-<frontend service lowercased>`` and gives it no labels of ours
        (deploy/operator/internal/dynamo/graph.go, GenerateComponentService), so the name comes first; the service
        is the live DGD's (the bundle's before it is deployed).
        """
        from kubernetes.client.exceptions import ApiException

        services = ((self.get_dgd() or {}).get("spec") or {}).get("services") or self.bundle.services
        frontend = next((s for s, spec in services.items() if (spec or {}).get("componentType") == "frontend"),
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

    def frontend(self) -> contextlib.AbstractContextManager[str]:
        """A port-forward to the frontend Service, health-checked, closed on exit."""
        return forward_healthy(self.access, self.namespace, self.frontend_service(), 8000, "/health")

    def prometheus(self) -> contextlib.AbstractContextManager[str]:
        namespace, name, port = self.settings.prometheus_service
        return forward_healthy(self.access, namespace, name, port, "/-/ready")

    # -- scale and teardown ------------------------------------------------------------------------------------------
    def scale(self, service: str, replicas: int) -> ApplyResult:
        """Through the service's DGDSA (scale subresource) when one exists, else by patching the DGD.

        Unchanged (nothing written) when the service already has ``replicas``; refused, with nothing written, when
        the DGD is not deployed (scaling never deploys) or the GPU nodes could never hold the result.
        """
        if service not in self.bundle.services:
            raise DeploymentError(f"no service {service!r} in {self.bundle.name}",
                                  fix=f"use one of {', '.join(self.bundle.services)}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DeploymentError(f"replicas must be a whole number >= 0, got {replicas!r}", fix="e.g. 2")
        live = self.get_dgd()
        if live is None or not _deployed(live):
            raise self.not_running(": nothing to scale")
        services = copy.deepcopy((live.get("spec") or {}).get("services") or {})
        spec = services.setdefault(service, copy.deepcopy(self.bundle.services[service]))
        adapter = apply_mod.adapter_for(service, self.bundle.name, self.adapters())
        if adapter is not None:
            kind, name, current = DGDSA_KIND, adapter["metadata"]["name"], (adapter.get("spec") or {}).get("replicas")
        else:
            kind, name, current = bundle_mod.DGD_KIND, self.bundle.name, (spec or {}).get("replicas", 1)
        if current == replicas:
            return ApplyResult(self.name, [{"kind": kind, "name": name, "action": "unchanged"}])
        spec["replicas"] = replicas
        preflight_mod.refuse(preflight_mod.gpu_findings(self.kube, self.settings, services,
                                                        where=f"gtcdemo scale {service} {replicas}"))
        if adapter is not None:
            self.custom.patch_namespaced_custom_object_scale(GROUP, VERSION, self.namespace, DGDSA_PLURAL, name,
                                                             {"spec": {"replicas": replicas}})
            return ApplyResult(self.name, [{"kind": kind, "name": name, "action": f"scaled to {replicas}"}])
        # No adapter: the DGD owns the replicas, and the webhook accepts a direct edit, unless the service's adapter
        # is on but its DGDSA not made yet (0.8: on unless `scalingAdapter.disable: true`, validateReplicasChanges).
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL, name,
                                                       {"spec": {"services": {service: {"replicas": replicas}}}})
        except ApiException as exc:
            raise DeploymentError(
                f"scaling {service} through the DGD is refused: {api_message(exc)}",
                where=f"{self.context}/{self.namespace}",
                fix=f"its scaling adapter is on but there is no DGDSA {self.bundle.name}-{service.lower()} yet: wait "
                    "until the operator made it (`gtcdemo wait --target cluster`), then scale again"
                    if exc.status == 403 and "scaling adapter" in api_message(exc) else
                    "check the message above") from None
        return ApplyResult(self.name, [{"kind": kind, "name": name, "action": f"{service} replicas set to {replicas}"}])

    def teardown(self, timeout_s: float = 300.0) -> ApplyResult:
        """Delete the DGD and its ConfigMap (the model PVC stays) and wait until the DGD's pods are gone."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        configmap = self.bundle.configmap["metadata"]["name"]
        rows = []
        for kind, name, delete in (
                (bundle_mod.DGD_KIND, self.bundle.name, lambda: self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, DGD_PLURAL, self.bundle.name)),
                ("ConfigMap", configmap, lambda: self.core.delete_namespaced_config_map(configmap, self.namespace))):
            try:
                delete()
                rows.append({"kind": kind, "name": name, "action": "deleted"})
            except ApiException as exc:
                if exc.status != 404:
                    raise self.kube.error(exc, f"deleting the {kind}") from None
        deadline = Deadline(timeout_s)
        remaining = {p.metadata.name for p in self.pods()}
        resource_version = None
        while remaining:
            if deadline.expired:
                raise DeploymentError(f"pods still present after {timeout_s:.0f} s: {', '.join(sorted(remaining))}",
                                      fix="check the Dynamo operator in dynamo-system (it deletes them)")
            w = watch.Watch()
            for event in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                                  timeout_seconds=max(1, int(min(deadline.remaining, 30))),
                                  resource_version=resource_version):
                resource_version = event["object"].metadata.resource_version
                if event["type"] == "DELETED":
                    remaining.discard(event["object"].metadata.name)
                if not remaining:
                    w.stop()
            remaining &= {p.metadata.name for p in self.pods()}
        return ApplyResult(self.name, rows)
