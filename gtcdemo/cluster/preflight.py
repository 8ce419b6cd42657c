"""Everything the deployment needs from the cluster, checked before anything is applied.

Each check is written once and answers twice: as a row of ``gtcdemo preflight`` (PASS / WARN / FAIL, what was
found, the fix) and, where applying would leave pods that can never run, as the refusal ``apply`` and ``scale``
raise before they change anything (``Finding.refusal``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import bundle as bundle_mod
from ..errors import DeploymentError
from ..results import CheckReport
from . import apply as apply_mod
from .apierrors import api_message, refusal, status_details
from .kube import Kube
from .names import (
    DGD_PLURAL,
    DGDSA_PLURAL,
    GPU_RESOURCE,
    GROUP,
    KAI_GROUP,
    KAI_QUEUES,
    KAI_VERSION,
    OPERATOR_SELECTOR,
    VERSION,
)
from .settings import ClusterSettings


@dataclass(frozen=True)
class Finding:
    """One check's answer; ``ok`` True = PASS, False = FAIL, None = WARN."""

    check: str
    ok: bool | None
    detail: str
    fix: str = ""
    refusal: DeploymentError | None = None  # what apply raises: set where the pods could never run

    def add_to(self, report: CheckReport) -> None:
        report.add(self.check, self.ok, self.detail, self.fix)


def refuse(findings: list[Finding]) -> None:
    """Raise the first refusal among ``findings`` (apply's and scale's guard: nothing is changed)."""
    for finding in findings:
        if finding.refusal is not None:
            raise finding.refusal


# -- the prerequisites apply refuses without ----------------------------------------------------------------------
def gpus_requested(services: dict) -> tuple[int, int]:
    """GPUs the services' pods request in total (replicas x resources.limits.gpu), and the most one pod requests."""
    per_pod = {name: int(str(((s.get("resources") or {}).get("limits") or {}).get("gpu", "0")) or 0)
               for name, s in services.items()}
    total = sum(int(s.get("replicas", 1)) * per_pod[name] for name, s in services.items())
    return total, max((n for name, n in per_pod.items() if int(services[name].get("replicas", 1))), default=0)


def _allocatable_gpus(node: Any) -> int:
    return int((node.status.allocatable or {}).get(GPU_RESOURCE, "0"))


def gpu_findings(kube: Kube, settings: ClusterSettings, services: dict, where: str) -> list[Finding]:
    """GPU nodes with the env's label, enough allocatable GPUs (in total, and on one node for the largest pod), and
    the taint the workers tolerate.

    Refused: GPU pods the nodes can never all hold. Credentials that may not list nodes pass, and so does a cluster
    with no node carrying the label (a node pool scaled to zero, or another label: the preflight row says so).
    """
    from kubernetes.client.exceptions import ApiException

    label = settings.gpu_node_label
    try:
        nodes = kube.core.list_node(label_selector=label).items
    except ApiException as exc:
        blocking = None if exc.status in (401, 403) else kube.error(exc, "listing the GPU nodes")
        return [Finding("GPU nodes", False, *(refusal(exc, "list", "nodes") or ("?", "")), refusal=blocking)]
    needed, per_pod = gpus_requested(services)
    per_node = [_allocatable_gpus(n) for n in nodes]
    fits_a_node = per_pod <= max(per_node, default=0)
    fits = bool(nodes) and needed <= sum(per_node) and fits_a_node
    blocking = None if fits or not nodes else DeploymentError(
        f"the DGD's pods would request {needed} {GPU_RESOURCE} (at most {per_pod} in one pod), but the "
        f"{len(nodes)} nodes labelled {label} have {sum(per_node)} allocatable (at most {max(per_node)} on one "
        "node): pods beyond that stay Pending; nothing was applied",
        where=where, fix="lower the workers' replicas to fit the GPUs, or add GPU nodes (`gtcdemo preflight "
                         "--target cluster` lists them)")
    key, _, value = label.partition("=")
    findings = [Finding("GPU nodes", fits, f"{len(nodes)} nodes labelled {key}={value}, {sum(per_node)} allocatable "
                        f"{GPU_RESOURCE}, the DGD needs {needed}"
                        + ("" if fits_a_node else f"; a pod needs {per_pod}, more than any one node has"),
                        "add GPU nodes or lower the workers' replicas; check the NVIDIA device plugin / GPU operator",
                        refusal=blocking)]
    if nodes:
        taint_key, _, taint_effect = settings.gpu_taint.partition(":")
        tainted = [n for n in nodes if any(t.key == taint_key and t.effect == taint_effect
                                           for t in n.spec.taints or [])]
        findings.append(Finding("GPU node taint", True if len(tainted) == len(nodes) else None,
                                f"{len(tainted)}/{len(nodes)} GPU nodes tainted {settings.gpu_taint}",
                                "untainted GPU nodes also take pods that need no GPU (the workers tolerate the taint)"))
    return findings


def _queue_name(bundle: bundle_mod.Bundle) -> str:
    """The DGD's KAI queue: its annotation, trimmed, else the default (grove.go resolveKaiSchedulerQueueName)."""
    annotations = bundle.dgd["metadata"].get("annotations") or {}
    return str(annotations.get(bundle_mod.KAI_QUEUE_ANNOTATION) or "").strip() or bundle_mod.DEFAULT_KAI_QUEUE


def _queue_fix(bundle: bundle_mod.Bundle, name: str) -> str:
    return (f"create Queue {name} as the dynamo-platform chart's hook does (deploy/helm/charts/platform/templates/"
            f"kai.yaml: `apiVersion: {KAI_GROUP}/{KAI_VERSION}`, `kind: Queue`, parentQueue dynamo-default, "
            "quota and limit -1 for cpu, gpu and memory; `helm upgrade <release> <chart> --reuse-values` re-runs "
            f"it), or name an existing queue in the DGD annotation {bundle_mod.KAI_QUEUE_ANNOTATION} in "
            f"manifests/{bundle.env}/20-dgd-{bundle.name}.yaml")


def queue_finding(kube: Kube, bundle: bundle_mod.Bundle) -> Finding:
    """The KAI queue the DGD names (annotation, default "dynamo"): the 0.8 operator refuses to deploy without it.

    As deploy/operator/internal/dynamo/grove.go (resolveKaiSchedulerQueueName, ensureQueueExists). Refused: a
    missing queue with KAI installed (a cluster without KAI, or credentials that may not read queues, pass).
    """
    from kubernetes.client.exceptions import ApiException

    name = _queue_name(bundle)
    label = f"KAI queue {name}"
    try:
        kube.custom.get_cluster_custom_object(KAI_GROUP, KAI_VERSION, KAI_QUEUES, name)
        return Finding(label, True, f"exists ({KAI_QUEUES}.{KAI_GROUP}/{KAI_VERSION})")
    except ApiException as exc:
        refused = refusal(exc, "get", f"{KAI_QUEUES}.{KAI_GROUP}")
        if refused:
            return Finding(label, False, *refused)
        if not status_details(exc).get("name"):  # the resource itself is not served: no KAI
            return Finding(label, None, f"{KAI_QUEUES}.{KAI_GROUP}/{KAI_VERSION} is not served: KAI is not "
                           "installed, so the operator schedules without a queue", "the demo's platform runs Grove + "
                           "KAI: check the dynamo-platform chart's kai-scheduler.enabled")
    fix = _queue_fix(bundle, name)
    blocking = DeploymentError(
        f"KAI queue {name} does not exist: the Dynamo operator refuses to deploy the DGD without it "
        "(grove.go ensureQueueExists); nothing was applied",
        where=f"manifests/{bundle.env}: the DGD's metadata.annotations.{bundle_mod.KAI_QUEUE_ANNOTATION}", fix=fix)
    detail = "missing; the operator refuses to deploy the DGD without it"
    with contextlib.suppress(ApiException):
        existing = [q["metadata"]["name"] for q in kube.custom.list_cluster_custom_object(
            KAI_GROUP, KAI_VERSION, KAI_QUEUES)["items"]]
        detail = (f"missing (queues: {', '.join(existing) or 'none'}); the operator refuses to deploy the DGD "
                  "without it")
    return Finding(label, False, detail, fix, refusal=blocking)


def secret_findings(kube: Kube, bundle: bundle_mod.Bundle) -> list[Finding]:
    """Every ``envFromSecret`` of the DGD exists (its metadata only is read). Refused: a missing one."""
    from kubernetes.client.exceptions import ApiException

    ns, findings = bundle.namespace, []
    for secret in sorted({s["envFromSecret"] for s in bundle.services.values() if s.get("envFromSecret")}):
        label = f"secret {secret}"
        fix = f"kubectl -n {ns} create secret generic {secret} --from-literal=HF_TOKEN=<your token>"
        try:
            present = kube.secret_exists(ns, secret)
        except ApiException as exc:
            findings.append(Finding(label, False, *(refusal(exc, "get", "secrets", ns) or ("?", "")),
                                    refusal=kube.error(exc, f"reading secret {secret}")))
            continue
        findings.append(Finding(label, present, "present (data not read)" if present else "missing", fix,
                                refusal=None if present else DeploymentError(
                                    f"secret {secret} does not exist in {ns}: the workers could not start; nothing "
                                    "was applied", fix=fix)))
    return findings


def claim_findings(kube: Kube, bundle: bundle_mod.Bundle) -> list[Finding]:
    """Every claim of the bundle is Bound. Refused: one that exists but is not (the workers would wait forever);
    a missing one is not refused: apply creates it."""
    from kubernetes.client.exceptions import ApiException

    ns, findings = bundle.namespace, []
    for pvc in (o for o in bundle.objects if o["kind"] == apply_mod.PVC):
        name = pvc["metadata"]["name"]
        label = f"PVC {name}"
        try:
            phase = kube.core.read_namespaced_persistent_volume_claim(name, ns).status.phase
        except ApiException as exc:
            refused = refusal(exc, "get", "persistentvolumeclaims", ns)
            findings.append(Finding(label, False, *(refused or (
                "missing", "create it bound to the NFS volume that holds the model files: "
                f"`kubectl apply -f manifests/{bundle.env}/00-model-nfs-pvc.yaml`")),
                refusal=kube.error(exc, f"reading PVC {name}") if refused else None))
            continue
        bound = phase == "Bound"
        findings.append(Finding(label, bound, f"{phase}", "the model PVC must be Bound to the NFS volume that holds "
                                "the model files (`kubectl describe pvc`)", refusal=None if bound else DeploymentError(
                                    f"PVC {name} in {ns} is {phase}, not Bound: the workers would wait forever for "
                                    "the model files; nothing was applied",
                                    fix="bind it to the NFS volume that holds the model files "
                                        f"(`kubectl -n {ns} describe pvc {name}`)")))
    return findings


def prerequisites(kube: Kube, settings: ClusterSettings, bundle: bundle_mod.Bundle) -> list[Finding]:
    """What the API server would accept but the pods could never use: GPUs, the KAI queue, secrets, claims."""
    where = f"manifests/{bundle.env} DGD {bundle.name}.spec.services.*.replicas"
    return (gpu_findings(kube, settings, bundle.services, where) + [queue_finding(kube, bundle)]
            + secret_findings(kube, bundle) + claim_findings(kube, bundle))


# -- the platform -------------------------------------------------------------------------------------------------
def _operator_finding(kube: Kube, settings: ClusterSettings) -> Finding:
    """The Dynamo operator, found by the platform chart's labels (never by a name containing "operator")."""
    from kubernetes.client.exceptions import ApiException

    ns = settings.operator_namespace
    label = f"Dynamo operator in {ns}"
    try:
        operators = kube.apps.list_namespaced_deployment(ns, label_selector=OPERATOR_SELECTOR).items
        others = [] if operators else kube.apps.list_namespaced_deployment(ns).items
    except ApiException as exc:
        return Finding(label, False, *(refusal(exc, "list", "deployments", ns) or ("?", "")))
    if operators:
        running = [d for d in operators if (d.status.ready_replicas or 0) >= 1]
        return Finding(label, bool(running), ", ".join(f"Deployment {d.metadata.name} "
                                                       f"({d.status.ready_replicas or 0} ready)" for d in operators),
                       f"the operator has no ready pod: `kubectl -n {ns} describe deploy -l {OPERATOR_SELECTOR}`")
    found = ", ".join(f"{d.metadata.name} ({d.status.ready_replicas or 0} ready)" for d in others)
    return Finding(label, False, f"no Deployment labelled {OPERATOR_SELECTOR}"
                   + (f"; found only {found} (grove-operator runs Grove's PodCliques, not DGDs)" if found else ""),
                   "nothing turns the DGD into pods without the Dynamo operator (a platform installed with "
                   "dynamo-operator.enabled=false has none): enable it in the dynamo-platform chart: "
                   f"`helm upgrade <release> <chart> -n {ns} --reuse-values --set dynamo-operator.enabled=true`")


def _platform_findings(kube: Kube, settings: ClusterSettings, bundle: bundle_mod.Bundle) -> list[Finding]:
    """The namespace, Dynamo's CRDs and operator, the KAI queue, GPUs, the RuntimeClass."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns = bundle.namespace
    findings = []
    try:
        kube.core.read_namespace(ns)
        findings.append(Finding(f"namespace {ns}", True, "exists"))
    except ApiException as exc:
        findings.append(Finding(f"namespace {ns}", False,
                                *(refusal(exc, "get", "namespaces") or ("missing", f"kubectl create namespace {ns}"))))
    ext = client.ApiextensionsV1Api(kube.api)
    for plural, label in ((DGD_PLURAL, "DGD CRD"), (DGDSA_PLURAL, "DGDSA CRD")):
        try:
            served = [v.name for v in ext.read_custom_resource_definition(f"{plural}.{GROUP}").spec.versions
                      if v.served]
            findings.append(Finding(label, VERSION in served, f"{plural}.{GROUP} serves {', '.join(served)}",
                                    f"the DGD uses {GROUP}/{VERSION}: upgrade the dynamo-crds chart"))
        except ApiException as exc:
            findings.append(Finding(label, False, *(refusal(exc, "get", "customresourcedefinitions") or (
                f"{plural}.{GROUP} not installed", "install Dynamo's CRDs (the dynamo-crds Helm chart) before the "
                                                   "platform"))))
    findings += [_operator_finding(kube, settings), queue_finding(kube, bundle)]
    findings += gpu_findings(kube, settings, bundle.services,
                             where=f"manifests/{bundle.env} DGD {bundle.name}.spec.services.*.replicas")
    runtime_class = f"RuntimeClass {settings.runtime_class}"
    try:
        client.NodeV1Api(kube.api).read_runtime_class(settings.runtime_class)
        findings.append(Finding(runtime_class, True, "exists"))
    except ApiException as exc:
        findings.append(Finding(runtime_class, False, *(refusal(exc, "get", "runtimeclasses") or (
            "missing", "install the NVIDIA GPU operator / container toolkit, which creates it"))))
    return findings


def _prometheus_finding(kube: Kube, settings: ClusterSettings, env: str) -> Finding:
    from kubernetes.client.exceptions import ApiException

    ns, name, port = settings.prometheus_service
    try:
        ports = [p.port for p in kube.core.read_namespaced_service(name, ns).spec.ports or []]
        return Finding("Prometheus service", port in ports, f"{ns}/{name} ports {ports}",
                       f"expected port {port}; fix `prometheus` in manifests/{env}/cluster.toml")
    except ApiException as exc:
        return Finding("Prometheus service", False, *(refusal(exc, "get", "services", ns) or (
            f"{ns}/{name} missing",
            "install kube-prometheus-stack, or set `prometheus` in manifests/<env>/cluster.toml")))


def _dry_run_finding(kube: Kube, bundle: bundle_mod.Bundle) -> Finding:
    """The same server-side dry run apply makes first (schema, webhook), without writing anything."""
    try:
        apply_mod.dry_run(kube, bundle)
    except DeploymentError as exc:
        return Finding("server-side dry run", False, exc.problem, exc.fix or "")
    return Finding("server-side dry run", True, f"{len(bundle.objects)} objects accepted")


def run(kube: Kube, settings: ClusterSettings, env: str,
        config_check: Callable[[CheckReport], bundle_mod.Bundle | None]) -> CheckReport:
    """Every check, each failure with its fix; the bundle is checked first, so a broken config is one of the rows."""
    from kubernetes import client

    report = CheckReport(f"preflight: {env} on {kube.context}")
    bundle = config_check(report)
    if bundle is None:
        return report
    try:
        version = client.VersionApi(kube.api).get_code()
        report.add("API server reachable", True, f"{kube.context}: Kubernetes {version.git_version}")
    except Exception as exc:  # connection errors too: every other check needs the API server
        report.add("API server reachable", False, f"{type(exc).__name__}: {api_message(exc)}",
                   f"check network/VPN and `kubectl --context {kube.context} get nodes`")
        return report
    for finding in (_platform_findings(kube, settings, bundle) + claim_findings(kube, bundle)
                    + secret_findings(kube, bundle)
                    + [_prometheus_finding(kube, settings, env), _dry_run_finding(kube, bundle)]):
        finding.add_to(report)
    return report
