"""Plays the Dynamo 0.8 operator (with Grove + KAI), the scheduler and the kubelet against the envtest API server.

Nothing runs in envtest except kube-apiserver, etcd and Dynamo's validating webhook (``webhook.py``): no controller
turns a DGD into pods, no scheduler binds them, no kubelet reports their status. ``FakeOperator`` writes those
objects the way the real components would, so the cluster code under test reads exactly what it would read on the
demo's DigitalOcean cluster (do-nyc2-gtc-demo). Tests drive it one action at a time::

    op = FakeOperator(operator_api_client)   # as the operator's service account (EnvTest.operator_client())
    pods = op.reconcile("gtc-demo")          # {"Frontend": ["gtc-demo-0-frontend-x7k2p"], ...}
    op.container_creating(pods["Frontend"][0])
    op.all_ready("gtc-demo")

The operator's rules imitate Dynamo at commit cf433e682 (release 0.8; its platform chart is 0.8.0), each with a
comment naming the file it comes from; paths are under ``deploy/operator/internal/`` unless they say otherwise.
What the real operator does and this one does not: the planner's ServiceAccount/RoleBinding, the events its
controllers record about their own actions, Grove's own pod labels and env vars, rolling updates of changed pod
templates, multinode services, and the path without Grove (DynamoComponentDeployments).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import hashlib
import json
import random
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .envtest import OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, _rest

GROUP = "nvidia.com"
VERSION = "v1alpha1"
DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
DGD_API_VERSION = f"{GROUP}/{VERSION}"

# consts/consts.go: the operator's labels and annotations.
L_DGD = "nvidia.com/dynamo-graph-deployment-name"
L_COMPONENT = "nvidia.com/dynamo-component"
L_COMPONENT_TYPE = "nvidia.com/dynamo-component-type"
L_SUB_COMPONENT_TYPE = "nvidia.com/dynamo-sub-component-type"
L_DYN_NAMESPACE = "nvidia.com/dynamo-namespace"
L_SELECTOR = "nvidia.com/selector"
L_METRICS = "nvidia.com/metrics-enabled"
L_DISCOVERY_BACKEND = "nvidia.com/dynamo-discovery-backend"
L_DISCOVERY_ENABLED = "nvidia.com/dynamo-discovery-enabled"
L_KAI_QUEUE = "kai.scheduler/queue"
A_KAI_QUEUE = "nvidia.com/kai-scheduler-queue"
A_ENABLE_METRICS = "nvidia.com/enable-metrics"
A_DISCOVERY_BACKEND = "nvidia.com/dynamo-discovery-backend"
DEFAULT_KAI_QUEUE = "dynamo"
KAI_SCHEDULER_NAME = "kai-scheduler"
GLOBAL_DYNAMO_NAMESPACE = "dynamo"
FRONTEND_PORT, FRONTEND_PORT_NAME = 8000, "http"
SYSTEM_PORT, SYSTEM_PORT_NAME = 9090, "system"
FS_GROUP = 1000
SHARED_MEMORY_SIZE = "8Gi"
# controller_common/finalizer.go and controller_common/resource.go.
FINALIZER = "nvidia.com/finalizer"
A_LAST_APPLIED_HASH = "nvidia.com/last-applied-hash"
A_LAST_APPLIED_GENERATION = "nvidia.com/last-applied-generation"
# KAI's Queue (consts.go QueueGVR): cluster-scoped.
QUEUE_GROUP, QUEUE_VERSION, QUEUE_PLURAL = "scheduling.run.ai", "v2", "queues"
# DGD status (controller/dynamographdeployment_controller.go).
STATE_PENDING, STATE_SUCCESSFUL, STATE_FAILED = "pending", "successful", "failed"
DEFAULT_REASONS = {STATE_SUCCESSFUL: "all_resources_are_ready", STATE_PENDING: "some_resources_are_not_ready",
                   STATE_FAILED: "failed_to_reconcile_the_resources"}

# The platform chart with its defaults (deploy/helm/charts/platform/values.yaml, components/operator/templates/):
# release dynamo-platform in dynamo-system, discoveryBackend "kubernetes", bundled NATS and etcd.
OPERATOR_DEPLOYMENT = OPERATOR_SERVICE_ACCOUNT  # <fullname>-controller-manager, as its service account
DISCOVERY_BACKEND = "kubernetes"
NATS_ADDRESS = "nats://dynamo-platform-nats.dynamo-system.svc.cluster.local:4222"
ETCD_ADDRESS = "dynamo-platform-etcd.dynamo-system.svc.cluster.local:2379"
OPERATOR_IMAGE = "nvcr.io/nvidia/ai-dynamo/kubernetes-operator:0.8.1"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_BRAND_LABEL = "doks.digitalocean.com/gpu-brand"
# The demo cluster: 3 x gpu-h100x1-80gb (tainted) and 2 x s-2vcpu-4gb. Fixed names so tests can refer to them.
GPU_NODES = ("gpu-h100x1-80gb-0a1bq", "gpu-h100x1-80gb-2c3dr", "gpu-h100x1-80gb-4e5fs")
MGMT_NODES = ("s-2vcpu-4gb-6g7ht", "s-2vcpu-4gb-8h9ju")
UNSCHEDULABLE_MESSAGE = ("0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
                         "{nvidia.com/gpu: }.")
# Kubernetes' own alphabet for generated name suffixes (no vowels, no look-alikes): lowercase alnum.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PodRef = str | client.V1Pod


def now() -> str:
    """RFC 3339 UTC timestamp with second precision, as the API server stores them."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suffix(n: int = 5) -> str:
    return "".join(random.choices(_SUFFIX_ALPHABET, k=n))


def _hex(seed: str, n: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _ignore_404(exc: ApiException) -> None:
    if exc.status != 404:
        raise exc


class OperatorError(Exception):
    """An error of the DGD controller's reconcile: the Go error chain, which becomes the DGD's failed message."""


# == what a container does when the kubelet starts it =================================================================
def container_exit(pod: client.V1Pod) -> tuple[int, str] | None:
    """(exit code, log) of a main container that exits at once, or None when it runs.

    The operator gives every component the command ``/bin/sh -c`` (``dynamo/component_common.go``
    getCommonContainer) and only the Frontend its own (``python3 -m dynamo.frontend``, ``component_frontend.go``);
    a worker keeps it (``component_worker.go``; ``backend_trtllm.go`` changes nothing for a single node), and a
    ``mainContainer`` without ``command`` does not replace it (mergo.WithOverride skips empty fields,
    ``graph.go`` GenerateBasePodSpec). So a worker with ``args: [--model-path, ...]`` and no ``command`` runs
    ``/bin/sh -c --model-path ...``: the command replaces the image's ENTRYPOINT (container/Dockerfile.trtllm:
    /opt/nvidia/nvidia_entrypoint.sh), and /bin/sh in that image (Ubuntu 24.04, runtime stage
    ``cuda-dl-base:25.10-cuda13.0-runtime-ubuntu24.04``) is dash, which reads ``--model-path`` as options and
    stops: ``/bin/sh: 0: Illegal option --``, exit code 2 (dash 0.5.12; a test checks this text against the local
    /bin/sh). Only those two shell failures are modelled; any other command is taken to run.
    """
    main = next((c for c in pod.spec.containers if c.name == "main"), pod.spec.containers[0])
    command, args = list(main.command or []), list(main.args or [])
    if command != ["/bin/sh", "-c"]:
        return None
    if not args:
        return 2, "/bin/sh: 0: -c requires an argument"
    if args[0].startswith("--") and args[0] != "--":
        return 2, "/bin/sh: 0: Illegal option --"
    return None


# == helpers imitating Dynamo's Go helpers ===========================================================================
def merge_envs(common: list[dict], specific: list[dict]) -> list[dict]:
    """dynamo/graph.go MergeEnvs: ``specific`` overrides ``common`` by name; the result is sorted by name."""
    merged = {e["name"]: e for e in common}
    merged.update({e["name"]: e for e in specific})
    return [copy.deepcopy(merged[name]) for name in sorted(merged)]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or value is False or value == 0


def mergo_override(dst: dict, src: dict) -> dict:
    """mergo.Merge(&dst, src, mergo.WithOverride) as graph.go uses it: every non-empty field of ``src`` wins;
    structs and maps merge key by key, slices and scalars are replaced."""
    for key, value in src.items():
        if _empty(value):
            continue
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            mergo_override(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def spec_hash(spec: Any) -> str:
    """controller_common/resource.go GetSpecHash: sha256 of the spec as JSON with sorted keys (the value differs
    from Go's encoding; only whether it changed matters)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# (API prefix, plural) of the namespaced kinds the operator syncs (SyncResource) or the GC deletes with the DGD.
_KINDS = {
    "DynamoGraphDeploymentScalingAdapter": (f"apis/{GROUP}/{VERSION}", DGDSA_PLURAL),
    "Service": ("api/v1", "services"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}


class FakeOperator:
    """The Dynamo operator + scheduler + kubelet, played by hand against a real API server.

    Give it a client authenticated as the operator's service account (``EnvTest.operator_client()``): the DGD
    webhook lets only that identity change the replicas of services with a scaling adapter.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str = "dynamo-workload") -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.node_api = client.NodeV1Api(api_client)

    # == the operator ===========================================================================================
    def get_dgd(self, dgd_name: str = "gtc-demo") -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL, dgd_name)

    def reconcile(self, dgd_name: str = "gtc-demo") -> dict[str, list[str]]:
        """One pass of the operator's controllers for DGD ``dgd_name``: the scaling-adapter controller, the DGD
        controller, then the adapter controller again (for the adapters just created). Idempotent.

        Returns the live pod names per service (sorted); ``{}`` when the DGD is gone, being deleted, or its
        reconcile failed (its status then says why).
        """
        self.adapter_controller(dgd_name)
        pods = self.dgd_controller(dgd_name)
        self.adapter_controller(dgd_name)
        return pods

    # -- controller/dynamographdeploymentscalingadapter_controller.go --------------------------------------------
    def adapter_controller(self, dgd_name: str = "gtc-demo") -> None:
        """The DGDSA is the source of truth: a spec.replicas that differs from the DGD's service replicas (default
        1) is written INTO the DGD (an Update as the operator, which the webhook allows) and stamps
        status.lastScaleTime; status.replicas/selector always follow spec.replicas. Adapters whose DGD or service is
        missing are left alone (the real controller logs an error and retries)."""
        for adapter in self._adapters(dgd_name):
            meta, spec = adapter["metadata"], adapter["spec"]
            if meta.get("deletionTimestamp"):
                continue
            try:
                dgd = self.get_dgd(spec["dgdRef"]["name"])
            except ApiException as exc:
                _ignore_404(exc)
                continue
            service = spec["dgdRef"]["serviceName"]
            component = ((dgd.get("spec") or {}).get("services") or {}).get(service)
            if component is None:
                continue
            status = dict(adapter.get("status") or {})
            wanted = int(spec["replicas"])
            if int(component.get("replicas", 1)) != wanted:
                self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL,
                                                           dgd["metadata"]["name"],
                                                           {"spec": {"services": {service: {"replicas": wanted}}}})
                status["lastScaleTime"] = now()
            status.update(replicas=wanted, selector=f"{L_DGD}={dgd['metadata']['name']},{L_COMPONENT}={service}")
            if status != (adapter.get("status") or {}):  # the real one writes every time; same result
                adapter["status"] = status
                self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, self.namespace, DGDSA_PLURAL,
                                                                    meta["name"], adapter)

    # -- controller/dynamographdeployment_controller.go ------------------------------------------------------
    def dgd_controller(self, dgd_name: str = "gtc-demo") -> dict[str, list[str]]:
        """Reconcile: the finalizer (controller_common/finalizer.go HandleFinalizer), reconcileResources, and the
        status the deferred function writes: state ``failed`` with the error as the Ready condition's message when
        reconcileResources fails, else ``successful`` / ``pending`` from checkResourcesReadiness."""
        try:
            dgd = self.get_dgd(dgd_name)
        except ApiException as exc:
            _ignore_404(exc)
            return {}
        finalizers = list(dgd["metadata"].get("finalizers") or [])
        if dgd["metadata"].get("deletionTimestamp"):  # FinalizeResource does nothing; no status for a deleted DGD
            if FINALIZER in finalizers:
                dgd["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]
                self._replace_dgd(dgd)
            return {}
        if FINALIZER not in finalizers:
            dgd["metadata"]["finalizers"] = [*finalizers, FINALIZER]
            dgd = self._replace_dgd(dgd)
        try:
            pods = self._reconcile_resources(dgd)
        except OperatorError as exc:
            self._write_status(dgd_name, STATE_FAILED, DEFAULT_REASONS[STATE_FAILED], str(exc), services=None)
            return {}
        state, reason, message, services = self._readiness(dgd)
        self._write_status(dgd_name, state, reason, message, services)
        return pods

    def _reconcile_resources(self, dgd: dict) -> dict[str, list[str]]:
        """reconcileResources in its order: PVCs, scaling adapters, K8s-discovery RBAC, then Grove
        (reconcileGroveResources): the KAI queue, the pods of each PodClique, the component Services."""
        services: dict[str, dict] = {k: v or {} for k, v in ((dgd.get("spec") or {}).get("services") or {}).items()}
        owner = self._owner_ref(dgd)
        self._reconcile_pvcs(dgd, owner)
        self._reconcile_adapters(dgd, services, owner)
        discovery = self._discovery_backend(dgd) == "kubernetes"
        if discovery:
            self._reconcile_discovery_rbac(dgd, owner)
        try:
            queue = self._kai_queue(dgd)
        except OperatorError as exc:  # GenerateGrovePodCliqueSet's error, wrapped on its way up
            raise OperatorError("failed to reconcile the Grove PodClique Set: failed to generate the Grove GangSet: "
                                f"failed to determine kai-scheduler queue: {exc}") from None
        result = {service: self._reconcile_pods(dgd, service, spec, queue) for service, spec in services.items()}
        for pod in self.dgd_pods(dgd["metadata"]["name"]):  # Grove drops the PodCliques of removed services
            if (pod.metadata.labels or {}).get(L_COMPONENT) not in services:
                self._delete_pod(pod.metadata.name)
        for service, spec in services.items():
            # dynamographdeployment_controller.go: a Service for every component with K8s discovery (the chart's
            # default), else for the frontend only. Services of removed components are not deleted.
            if discovery or spec.get("componentType") == "frontend":
                self._sync("Service", self._component_service(dgd, service, spec, discovery), False, owner)
        return result

    def _reconcile_pvcs(self, dgd: dict, owner: dict) -> None:
        """reconcilePVCs: a listed PVC must exist unless ``create: true`` (then constructPVC, controller/common.go).
        The Go client's NotFound text becomes the DGD's failed message."""
        for pvc in (dgd.get("spec") or {}).get("pvcs") or []:
            name = pvc.get("name")
            if not name:
                continue  # "PVC not reconcilable: name is required" (logged, skipped)
            try:
                self.core.read_namespaced_persistent_volume_claim(name, self.namespace)
                continue
            except ApiException as exc:
                _ignore_404(exc)
            if not pvc.get("create"):
                raise OperatorError(f'failed to reconcile top-level PVCs: persistentvolumeclaims "{name}" not found')
            self.core.create_namespaced_persistent_volume_claim(self.namespace, {
                "metadata": {"name": name, "namespace": self.namespace, "ownerReferences": [owner]},
                "spec": {"accessModes": [pvc.get("volumeAccessMode")], "storageClassName": pvc.get("storageClass"),
                         "resources": {"requests": {"storage": str(pvc.get("size"))}}}})

    def _reconcile_adapters(self, dgd: dict, services: dict[str, dict], owner: dict) -> None:
        """reconcileScalingAdapters: for EVERY service a DGDSA ``<dgd>-<lowercased service>`` (labels DGD name +
        component, spec.replicas = the DGD's replicas, default 1), unless ``scalingAdapter.disable: true`` (then
        it is deleted); adapters of services no longer in the DGD are deleted. 0.8 semantics: newer releases
        create one only with ``scalingAdapter.enabled: true``."""
        dgd_name = dgd["metadata"]["name"]
        for service, spec in services.items():
            disabled = bool((spec.get("scalingAdapter") or {}).get("disable"))
            self._sync("DynamoGraphDeploymentScalingAdapter", {
                "apiVersion": DGD_API_VERSION, "kind": "DynamoGraphDeploymentScalingAdapter",
                "metadata": {"name": f"{dgd_name}-{service.lower()}", "namespace": self.namespace,
                             "labels": {L_DGD: dgd_name, L_COMPONENT: service}},
                "spec": {"replicas": int(spec.get("replicas", 1)),
                         "dgdRef": {"name": dgd_name, "serviceName": service}},
            }, disabled, owner)
        for adapter in self._adapters(dgd_name):
            if adapter["spec"]["dgdRef"]["serviceName"] not in services:
                self._delete_custom(DGDSA_PLURAL, adapter["metadata"]["name"])

    def _reconcile_discovery_rbac(self, dgd: dict, owner: dict) -> None:
        """reconcileK8sDiscoveryResources (discovery/resource.go): ServiceAccount, Role and RoleBinding
        ``<dgd>-k8s-service-discovery[-role|-binding]`` for the pods' discovery through the Kubernetes API."""
        name = f"{dgd['metadata']['name']}-k8s-service-discovery"
        labels = {"app.kubernetes.io/managed-by": "dynamo-operator", "app.kubernetes.io/component": "rbac",
                  "app.kubernetes.io/name": name}
        meta = {"namespace": self.namespace, "labels": labels}
        self._sync("ServiceAccount", {"apiVersion": "v1", "kind": "ServiceAccount",
                                      "metadata": {"name": name, **meta}}, False, owner)
        self._sync("Role", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                            "metadata": {"name": f"{name}-role", **meta}, "rules": [
                                {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
                                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                                 "verbs": ["get", "list", "watch"]},
                                {"apiGroups": [GROUP], "resources": ["dynamoworkermetadatas"],
                                 "verbs": ["create", "get", "list", "watch", "update", "patch", "delete"]}]},
                   False, owner)
        self._sync("RoleBinding", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                                   "metadata": {"name": f"{name}-binding", **meta},
                                   "subjects": [{"kind": "ServiceAccount", "name": name,
                                                 "namespace": self.namespace}],
                                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                               "name": f"{name}-role"}}, False, owner)

    def _kai_queue(self, dgd: dict) -> str:
        """dynamo/grove.go DetermineKaiSchedulerQueue + ensureQueueExists: the queue named by the DGD annotation
        ``nvidia.com/kai-scheduler-queue`` (trimmed; default ``dynamo``) must exist as a KAI Queue, else the
        reconcile fails with grove.go's message."""
        name = ((dgd["metadata"].get("annotations") or {}).get(A_KAI_QUEUE) or "").strip() or DEFAULT_KAI_QUEUE
        try:
            self.custom.get_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION, QUEUE_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise OperatorError(f"kai-scheduler queue validation failed: queue '{name}' not found in cluster. "
                                    "Ensure the queue exists before using kai-scheduler") from None
            raise OperatorError(f"kai-scheduler queue validation failed: failed to validate queue '{name}': "
                                f"{exc.reason}") from None
        return name

    @staticmethod
    def _discovery_backend(dgd: dict) -> str:
        """controller_common/predicate.go GetDiscoveryBackend: the DGD annotation, else the operator's flag."""
        return (dgd["metadata"].get("annotations") or {}).get(A_DISCOVERY_BACKEND, DISCOVERY_BACKEND)

    def _component_service(self, dgd: dict, service: str, spec: dict, discovery: bool) -> dict:
        """dynamo/graph.go GenerateComponentService: ``<dgd>-<lowercased service>``, selecting component type +
        Dynamo namespace, port http:8000 (frontend) or system:9090, and NO labels of gtcdemo's: with K8s discovery
        only the two discovery labels, without it none at all."""
        frontend = spec.get("componentType") == "frontend"
        name, port = (FRONTEND_PORT_NAME, FRONTEND_PORT) if frontend else (SYSTEM_PORT_NAME, SYSTEM_PORT)
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{dgd['metadata']['name']}-{service.lower()}", "namespace": self.namespace},
            "spec": {"selector": {L_COMPONENT_TYPE: spec.get("componentType", ""),
                                  L_DYN_NAMESPACE: self._dynamo_namespace(dgd, spec)},
                     "ports": [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"}]},
        }
        if discovery:
            body["metadata"]["labels"] = {L_DISCOVERY_BACKEND: "kubernetes", L_DISCOVERY_ENABLED: "true"}
        return body

    def _dynamo_namespace(self, dgd: dict, spec: dict) -> str:
        """dynamo/graph.go getDynamoNamespace: ``<k8s namespace>-<dgd>`` (dynamoNamespace is ignored), or
        ``dynamo`` for a service with globalDynamoNamespace."""
        return GLOBAL_DYNAMO_NAMESPACE if spec.get("globalDynamoNamespace") else \
            f"{self.namespace}-{dgd['metadata']['name']}"

    def _reconcile_pods(self, dgd: dict, service: str, spec: dict, queue: str) -> list[str]:
        """Grove's PodClique ``<dgd>-0-<service>``: pods created or deleted (newest first) to match replicas."""
        dgd_name = dgd["metadata"]["name"]
        replicas = int(spec.get("replicas", 1))
        pods = [p for p in self.service_pods(dgd_name, service) if p.metadata.deletion_timestamp is None]
        while len(pods) < replicas:
            pods.append(self.core.create_namespaced_pod(self.namespace, self.pod_manifest(dgd, service, spec, queue)))
        if len(pods) > replicas:
            pods.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
            for pod in pods[replicas:]:
                self._delete_pod(pod.metadata.name)
            pods = pods[:replicas]
        return sorted(p.metadata.name for p in pods)

    def pod_manifest(self, dgd: dict, service: str, spec: dict, queue: str = DEFAULT_KAI_QUEUE) -> dict:
        """The pod of one service as Grove creates it from the operator's PodClique template.

        dynamo/graph.go GenerateGrovePodCliqueSet -> GeneratePodSpecForComponent -> GenerateBasePodSpec, with the
        component defaults of component_common.go / component_frontend.go / component_worker.go, labels from
        generateLabels, annotations from generateAnnotations, KAI from grove.go injectKaiSchedulerIfEnabled.
        """
        spec = copy.deepcopy(spec)
        dgd_name = dgd["metadata"]["name"]
        component_type = spec.get("componentType", "")
        dynamo_ns = self._dynamo_namespace(dgd, spec)
        discovery = self._discovery_backend(dgd)
        container = self._base_container(component_type, dgd_name, dynamo_ns, discovery)

        extra = copy.deepcopy(spec.get("extraPodSpec") or {})
        main = extra.pop("mainContainer", None) or {}
        if main:  # GenerateBasePodSpec: merge mainContainer over the defaults; envs merged by name
            base_env = container["env"]
            mergo_override(container, main)
            container["env"] = merge_envs(base_env, container["env"])
        component_envs = spec.get("envs") or []
        if (dgd.get("spec") or {}).get("envs"):  # GeneratePodSpecForComponent: DGD envs under the service's
            component_envs = merge_envs(dgd["spec"]["envs"], component_envs)
        container["env"] = merge_envs(container["env"], component_envs)
        for probe in ("livenessProbe", "readinessProbe"):  # replaced whole, never merged
            if spec.get(probe):
                container[probe] = spec[probe]
        for kind, items in self._resources(spec.get("resources")).items():  # maps.Copy over the container's
            container.setdefault("resources", {}).setdefault(kind, {}).update(items)
        if spec.get("envFromSecret"):
            container["envFrom"] = [*container.get("envFrom", []), {"secretRef": {"name": spec["envFromSecret"]}}]
        # addStandardEnvVars: what the chart passes to the operator (--natsAddr, --etcdAddr), user envs win.
        container["env"] = merge_envs([{"name": "NATS_SERVER", "value": NATS_ADDRESS},
                                       {"name": "ETCD_ENDPOINTS", "value": ETCD_ADDRESS}], container["env"])
        volumes: list[dict] = []
        for mount in spec.get("volumeMounts") or []:
            volumes.append({"name": mount["name"], "persistentVolumeClaim": {"claimName": mount["name"]}})
            container.setdefault("volumeMounts", []).append({"name": mount["name"],
                                                             "mountPath": mount.get("mountPoint")})
        # generateSharedMemoryVolumeAndMount: /dev/shm of 8Gi by default (sharedMemory is pruned by the test CRD).
        volumes.append({"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY_SIZE}})
        container.setdefault("volumeMounts", []).append({"name": "shared-memory", "mountPath": "/dev/shm"})

        pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": 60, "restartPolicy": "Always"}
        user_security_context = "securityContext" in extra
        mergo_override(pod_spec, extra)  # the rest of extraPodSpec is a PodSpec
        if not user_security_context:  # applyDefaultSecurityContext
            pod_spec["securityContext"] = {"fsGroup": FS_GROUP}
        if discovery == "kubernetes" and not pod_spec.get("serviceAccountName"):
            pod_spec["serviceAccountName"] = f"{dgd_name}-k8s-service-discovery"
        pod_spec["containers"] = [*(pod_spec.get("containers") or []), container]
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *volumes]
        pod_spec.pop("nodeName", None)  # the scheduler (here: the setters) binds pods

        labels = self.pod_labels(dgd, service, spec)
        annotations = {k: str(v) for k, v in (spec.get("annotations") or {}).items()}
        if discovery:
            annotations[A_DISCOVERY_BACKEND] = discovery
        annotations.update((spec.get("extraPodMetadata") or {}).get("annotations") or {})
        # injectKaiSchedulerIfEnabled: unless another scheduler was asked for, kai-scheduler and the validated
        # queue, which OVERWRITES any kai.scheduler/queue label the DGD gave.
        if pod_spec.get("schedulerName") in (None, "", KAI_SCHEDULER_NAME):
            pod_spec["schedulerName"] = KAI_SCHEDULER_NAME
            labels[L_KAI_QUEUE] = queue
        clique = f"{dgd_name}-0-{service.lower()}"
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{clique}-{suffix()}", "namespace": self.namespace, "labels": labels,
                         "annotations": annotations,
                         # Grove's PodClique owns the pod (no Grove CRDs here): named <dgd>-0-<service lowercased>, as
                         # dynamo/grove.go GetComponentReadinessAndServiceReplicaStatuses reads it back.
                         "ownerReferences": [{"apiVersion": "grove.io/v1alpha1", "kind": "PodClique",
                                              "name": clique, "controller": True, "blockOwnerDeletion": True,
                                              "uid": _hex(dgd["metadata"]["uid"] + clique, 32)}]},
            "spec": pod_spec,
        }

    def _base_container(self, component_type: str, dgd_name: str, dynamo_ns: str, discovery: str) -> dict:
        """ComponentDefaultsFactory(componentType).GetBaseContainer."""
        # component_common.go getCommonContainer: EVERY component starts with command /bin/sh -c.
        env = [{"name": "DYN_NAMESPACE", "value": dynamo_ns}, {"name": "DYN_COMPONENT", "value": component_type},
               {"name": "DYN_PARENT_DGD_K8S_NAME", "value": dgd_name},
               {"name": "DYN_PARENT_DGD_K8S_NAMESPACE", "value": self.namespace}]
        env += [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in
                (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("POD_UID", "metadata.uid"))]
        if discovery != "etcd":
            env.append({"name": "DYN_DISCOVERY_BACKEND", "value": "kubernetes"})
        container: dict[str, Any] = {"name": "main", "command": ["/bin/sh", "-c"], "env": env}
        if component_type == "frontend":  # component_frontend.go
            container.update(
                command=["python3"], args=["-m", "dynamo.frontend"],
                ports=[{"protocol": "TCP", "name": FRONTEND_PORT_NAME, "containerPort": FRONTEND_PORT}],
                livenessProbe={"httpGet": {"path": "/live", "port": FRONTEND_PORT_NAME}, "initialDelaySeconds": 15,
                               "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3},
                readinessProbe={"httpGet": {"path": "/health", "port": FRONTEND_PORT_NAME},
                                "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 3,
                                "failureThreshold": 3})
            env += [{"name": "DYNAMO_PORT", "value": str(FRONTEND_PORT)},
                    {"name": "DYN_HTTP_PORT", "value": str(FRONTEND_PORT)}]
        elif component_type in ("worker", "prefill", "decode"):  # component_worker.go: no command of its own
            container.update(
                ports=[{"protocol": "TCP", "name": SYSTEM_PORT_NAME, "containerPort": SYSTEM_PORT}],
                livenessProbe={"httpGet": {"path": "/live", "port": SYSTEM_PORT_NAME}, "periodSeconds": 5,
                               "timeoutSeconds": 4, "failureThreshold": 1},
                readinessProbe={"httpGet": {"path": "/health", "port": SYSTEM_PORT_NAME}, "periodSeconds": 10,
                                "timeoutSeconds": 4, "failureThreshold": 3},
                startupProbe={"httpGet": {"path": "/live", "port": SYSTEM_PORT_NAME}, "periodSeconds": 10,
                              "timeoutSeconds": 5, "failureThreshold": 720})  # 2 h of model loading
            env += [{"name": "DYN_SYSTEM_ENABLED", "value": "true"},
                    {"name": "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", "value": '["generate"]'},
                    {"name": "DYN_SYSTEM_PORT", "value": str(SYSTEM_PORT)},
                    {"name": "DYN_HEALTH_CHECK_ENABLED", "value": "false"}]
        return container

    @staticmethod
    def _resources(resources: dict | None) -> dict[str, dict[str, str]]:
        """controller_common/resource.go GetResourcesConfig: cpu, memory, gpu (as gpuType, default
        nvidia.com/gpu) and custom, for limits and requests."""
        out: dict[str, dict[str, str]] = {}
        for kind in ("limits", "requests"):
            item = (resources or {}).get(kind) or {}
            values = {k: str(item[k]) for k in ("cpu", "memory") if item.get(k)}
            if item.get("gpu"):
                values[item.get("gpuType") or GPU_RESOURCE] = str(item["gpu"])
            values.update({k: str(v) for k, v in (item.get("custom") or {}).items()})
            if values:
                out[kind] = values
        return out

    def pod_labels(self, dgd: dict, service: str, spec: dict) -> dict[str, str]:
        """dynamo/graph.go generateLabels: selector, DGD name, component (the service key as written), Dynamo
        namespace, component type and sub-type when set, metrics-enabled unless the DGD annotation
        nvidia.com/enable-metrics is "false"; then the service's labels and extraPodMetadata.labels OVERRIDE them.
        (The KAI queue label is set after this, in pod_manifest.)"""
        dgd_name = dgd["metadata"]["name"]
        labels = {L_SELECTOR: f"{dgd_name}-{service.lower()}", L_DGD: dgd_name, L_COMPONENT: service,
                  L_DYN_NAMESPACE: self._dynamo_namespace(dgd, spec)}
        if spec.get("componentType"):
            labels[L_COMPONENT_TYPE] = spec["componentType"]
        if spec.get("subComponentType"):
            labels[L_SUB_COMPONENT_TYPE] = spec["subComponentType"]
        if (dgd["metadata"].get("annotations") or {}).get(A_ENABLE_METRICS) != "false":
            labels[L_METRICS] = "true"
        labels.update({k: str(v) for k, v in (spec.get("labels") or {}).items()})
        labels.update((spec.get("extraPodMetadata") or {}).get("labels") or {})
        return labels

    def _readiness(self, dgd: dict) -> tuple[str, str, str, dict[str, dict]]:
        """checkResourcesReadiness over the PodCliqueSet (dynamo/grove.go
        GetComponentReadinessAndServiceReplicaStatuses: each PodClique ready when its ready pods equal its
        replicas) and the Services (always ready): (state, reason, message, status.services)."""
        dgd_name = dgd["metadata"]["name"]
        services = (dgd.get("spec") or {}).get("services") or {}
        statuses: dict[str, dict] = {}
        not_ready: list[str] = []
        for service in sorted(services):
            clique = f"{dgd_name}-0-{service.lower()}"
            wanted = int((services[service] or {}).get("replicas", 1))
            pods = [p for p in self.service_pods(dgd_name, service) if p.metadata.deletion_timestamp is None]
            ready = sum(1 for p in pods if self.is_ready(p))
            statuses[service] = {"componentKind": "PodClique", "componentName": clique, "replicas": len(pods),
                                 "updatedReplicas": len(pods), "readyReplicas": ready}
            if wanted and wanted != ready:
                not_ready.append(f"podclique/{clique}: desired={wanted}, ready={ready}")
        if not not_ready:
            return STATE_SUCCESSFUL, DEFAULT_REASONS[STATE_SUCCESSFUL], "All resources are ready", statuses
        return (STATE_PENDING, DEFAULT_REASONS[STATE_PENDING],
                f"Resources not ready: {dgd_name}: {'; '.join(not_ready)}", statuses)

    def _write_status(self, dgd_name: str, state: str, reason: str, message: str,
                      services: dict[str, dict] | None) -> dict:
        """The deferred status write of Reconcile (r.Status().Update): state, the Ready condition replaced whole
        (AddStatusCondition: lastTransitionTime is always now), services (dropped when the reconcile failed)."""
        dgd = self.get_dgd(dgd_name)
        status = dict(dgd.get("status") or {})
        condition = {"type": "Ready", "status": "True" if state == STATE_SUCCESSFUL else "False", "reason": reason,
                     "message": message, "lastTransitionTime": now()}
        others = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        status.update(state=state, conditions=[*others, condition])
        status.pop("services", None)
        if services:
            status["services"] = services
        dgd["status"] = status
        return self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, self.namespace, DGD_PLURAL,
                                                                   dgd_name, dgd)

    def set_dgd_state(self, dgd_name: str, state: str, reason: str | None = None, message: str | None = None
                      ) -> dict:
        """Write ``status.state`` and the Ready condition as the DGD controller would, without looking at the pods.

        ``failed`` with the reason/message of a failed reconcile, e.g.
        ``set_dgd_state("gtc-demo", "failed", message='failed to reconcile top-level PVCs: ...')``."""
        if state not in DEFAULT_REASONS:
            raise ValueError(f"state must be one of {sorted(DEFAULT_REASONS)}, got {state!r}")
        default_message = {STATE_SUCCESSFUL: "All resources are ready"}.get(state, "")
        if state == STATE_PENDING:
            default_message = self._readiness(self.get_dgd(dgd_name))[2]
        services = (self.get_dgd(dgd_name).get("status") or {}).get("services")
        return self._write_status(dgd_name, state, reason or DEFAULT_REASONS[state],
                                  default_message if message is None else message,
                                  None if state == STATE_FAILED else services)

    def all_ready(self, dgd_name: str = "gtc-demo") -> dict:
        """The kubelet makes every pod of the DGD Ready (a container that cannot run crash-loops instead), then
        the operator reconciles (the PodCliques' status changed): ``successful`` only if every pod really is."""
        for pod in self.dgd_pods(dgd_name):
            if pod.metadata.deletion_timestamp is None:
                self.ready(pod)
        self.reconcile(dgd_name)
        return self.get_dgd(dgd_name)

    def deletion_requested(self, dgd_name: str = "gtc-demo") -> bool:
        """The DGD is gone or being deleted (held by the operator's finalizer until delete_dgd_pods runs)."""
        try:
            return bool(self.get_dgd(dgd_name)["metadata"].get("deletionTimestamp"))
        except ApiException as exc:
            _ignore_404(exc)
            return True

    def delete_dgd_pods(self, dgd_name: str = "gtc-demo") -> list[str]:
        """What the operator and the garbage collector do once the DGD is deleted: the operator removes its
        finalizer from a DGD being deleted (the DGD goes), then everything it owned goes: pods (through Grove's
        PodCliques), Services and their Endpoints, adapters, the discovery RBAC. Returns the deleted pod names."""
        try:
            dgd = self.get_dgd(dgd_name)
        except ApiException as exc:
            _ignore_404(exc)
        else:
            if dgd["metadata"].get("deletionTimestamp"):
                self.dgd_controller(dgd_name)  # HandleFinalizer removes nvidia.com/finalizer: the DGD goes
        names = [p.metadata.name for p in self.dgd_pods(dgd_name)]
        for name in names:
            self._delete_pod(name)
        for kind in ("Service", "ServiceAccount", "Role", "RoleBinding"):
            prefix, plural = _KINDS[kind]
            for obj in _rest(self.api_client, "GET", f"/{prefix}/namespaces/{self.namespace}/{plural}")["items"]:
                if any(ref.get("kind") == "DynamoGraphDeployment" and ref.get("name") == dgd_name
                       for ref in obj["metadata"].get("ownerReferences") or []):
                    self._delete_path(f"/{prefix}/namespaces/{self.namespace}/{plural}/{obj['metadata']['name']}")
                    if kind == "Service":
                        self._delete(self.core.delete_namespaced_endpoints, obj["metadata"]["name"])
        for adapter in self._adapters(dgd_name):
            self._delete_custom(DGDSA_PLURAL, adapter["metadata"]["name"])
        return names

    # -- controller_common/resource.go SyncResource -----------------------------------------------------------
    def _sync(self, kind: str, desired: dict, to_delete: bool, owner: dict) -> dict | None:
        """Create with a controller owner reference and the last-applied hash/generation annotations; delete when
        ``to_delete``; update (spec copied over) when the spec hash changed or someone else bumped the
        generation since the operator's last write (GetSpecChangeResult)."""
        prefix, plural = _KINDS[kind]
        name = desired["metadata"]["name"]
        base = f"/{prefix}/namespaces/{self.namespace}/{plural}"
        try:
            current = _rest(self.api_client, "GET", f"{base}/{name}")
        except ApiException as exc:
            _ignore_404(exc)
            current = None
        new_hash = spec_hash(desired.get("spec"))
        if current is None:
            if to_delete:
                return None
            desired["metadata"]["ownerReferences"] = [owner]
            desired["metadata"].setdefault("annotations", {}).update(
                {A_LAST_APPLIED_HASH: new_hash, A_LAST_APPLIED_GENERATION: "1"})
            return _rest(self.api_client, "POST", base, desired)
        if to_delete:
            self._delete_path(f"{base}/{name}")
            return None
        annotations = current["metadata"].get("annotations") or {}
        generation = int(current["metadata"].get("generation") or 0)
        applied_generation = annotations.get(A_LAST_APPLIED_GENERATION, "")
        manual_change = generation > 0 and applied_generation.isdigit() and generation > int(applied_generation)
        if annotations.get(A_LAST_APPLIED_HASH) == new_hash and applied_generation.isdigit() and not manual_change:
            return current
        if "spec" in desired:  # CopySpec (a Service keeps its allocated clusterIP: the API server copies it over)
            current["spec"] = desired["spec"]
        current["metadata"].setdefault("annotations", {}).update(
            {A_LAST_APPLIED_HASH: new_hash, A_LAST_APPLIED_GENERATION: str(generation + 1)})
        return _rest(self.api_client, "PUT", f"{base}/{name}", current)

    def _replace_dgd(self, dgd: dict) -> dict:
        return self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL,
                                                            dgd["metadata"]["name"], dgd)

    def reap_terminating(self) -> list[str]:
        """What the kubelet does for pods deleted with a grace period: remove them for good (grace 0).

        Without a kubelet, a pod that is bound to a node and deleted normally stays Terminating forever."""
        reaped = []
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.metadata.deletion_timestamp is not None:
                self._delete_pod(pod.metadata.name)
                reaped.append(pod.metadata.name)
        return reaped

    # -- lookups ------------------------------------------------------------------------------------------------
    def dgd_pods(self, dgd_name: str = "gtc-demo") -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"{L_DGD}={dgd_name}").items

    def service_pods(self, dgd_name: str, service: str) -> list[client.V1Pod]:
        selector = f"{L_DGD}={dgd_name},{L_COMPONENT}={service}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def _adapters(self, dgd_name: str) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, DGDSA_PLURAL,
                                                         label_selector=f"{L_DGD}={dgd_name}")["items"]

    @staticmethod
    def is_ready(pod: client.V1Pod) -> bool:
        conds = (pod.status.conditions or []) if pod.status else []
        return any(c.type == "Ready" and c.status == "True" for c in conds)

    @staticmethod
    def _owner_ref(obj: dict) -> dict:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _delete(self, fn: Any, name: str, **kwargs: Any) -> None:
        try:
            fn(name, self.namespace, **kwargs)
        except ApiException as exc:
            _ignore_404(exc)

    def _delete_pod(self, name: str) -> None:
        self._delete(self.core.delete_namespaced_pod, name, grace_period_seconds=0)

    def _delete_custom(self, plural: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as exc:
            _ignore_404(exc)


    def _delete_path(self, path: str) -> None:
        try:
            _rest(self.api_client, "DELETE", path, {"propagationPolicy": "Background"})
        except ApiException as exc:
            _ignore_404(exc)

    # == the scheduler and the kubelet: pod status ================================================================
    def _read_pod(self, pod: PodRef) -> client.V1Pod:
        name = pod if isinstance(pod, str) else pod.metadata.name
        return self.core.read_namespaced_pod(name, self.namespace)

    def _pick_node(self, pod: client.V1Pod) -> str:
        """The scheduler's choice: a GPU node for GPU pods (the least used), else a non-GPU node."""
        wants_gpu = any(GPU_RESOURCE in ((c.resources.limits or {}) if c.resources else {})
                        for c in pod.spec.containers)
        nodes = self.core.list_node().items
        pool = [n for n in nodes if bool((n.metadata.labels or {}).get(GPU_BRAND_LABEL)) == wants_gpu] or nodes
        if not pool:
            return "envtest-gpu-node" if wants_gpu else "envtest-node"
        used: dict[str, int] = {}
        for other in self.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items:
            used[other.spec.node_name] = used.get(other.spec.node_name, 0) + 1
        return min(pool, key=lambda n: (used.get(n.metadata.name, 0), n.metadata.name)).metadata.name

    def bind(self, pod: PodRef, node: str | None = None) -> client.V1Pod:
        """Bind the pod to ``node`` (default: the scheduler's choice) through the pods/binding subresource, which
        sets spec.nodeName and condition PodScheduled=True. No-op when already bound."""
        obj = self._read_pod(pod)
        if obj.spec.node_name:
            return obj
        node = node or self._pick_node(obj)
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": obj.metadata.name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        # _preload_content=False: the client would try to read the returned Status as a V1Binding and fail
        # ("Invalid value for `target`, must not be `None`").
        self.core.create_namespaced_pod_binding(obj.metadata.name, self.namespace, body, _preload_content=False)
        return self._read_pod(obj.metadata.name)

    def _node_ip(self, node_name: str) -> str:
        try:
            node = self.core.read_node(node_name)
        except ApiException as exc:
            _ignore_404(exc)
            return "10.116.0.250"
        for addr in (node.status.addresses or []) if node.status else []:
            if addr.type == "InternalIP":
                return addr.address
        return "10.116.0.250"

    @staticmethod
    def _pod_ip(pod: client.V1Pod) -> str:
        if pod.status and pod.status.pod_ip:
            return pod.status.pod_ip
        digest = hashlib.sha256(pod.metadata.name.encode()).digest()
        return f"10.244.{digest[0] % 250 + 1}.{digest[1] % 250 + 2}"

    def _conditions(self, pod: client.V1Pod, **wanted: tuple[str, str | None, str | None]) -> list[dict]:
        """Conditions ``type -> (status, reason, message)``; lastTransitionTime kept when the status is unchanged."""
        old = {c.type: c for c in ((pod.status.conditions or []) if pod.status else [])}
        out = []
        for ctype, (status, reason, message) in wanted.items():
            prev = old.get(ctype)
            when = prev.last_transition_time if prev is not None and prev.status == status else None
            cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None,
                                    "lastTransitionTime": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else now()}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            out.append(cond)
        return out

    def _container_status(self, pod: client.V1Pod, *, ready: bool, started: bool, state: dict,
                          restarts: int = 0, last_state: dict | None = None, image_id: bool = True) -> list[dict]:
        image = pod.spec.containers[0].image
        status: dict[str, Any] = {"name": pod.spec.containers[0].name, "image": image, "ready": ready,
                                  "restartCount": restarts, "started": started, "state": state,
                                  "lastState": last_state or {},
                                  "imageID": f"{image.split(':')[0]}@sha256:{_hex(image)}" if image_id else ""}
        if "running" in state or "terminated" in state or last_state:
            status["containerID"] = f"containerd://{_hex(pod.metadata.name + str(restarts))}"
        return [status]

    def _put_status(self, pod: client.V1Pod, status: dict) -> client.V1Pod:
        """Replace the pod's whole status (JSON patch on the /status subresource), keeping qosClass."""
        if pod.status and pod.status.qos_class:
            status.setdefault("qosClass", pod.status.qos_class)
        return self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace,
                                                     [{"op": "replace", "path": "/status", "value": status}])

    def _scheduled_base(self, pod: client.V1Pod, phase: str) -> dict:
        start = pod.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if pod.status and pod.status.start_time \
            else now()
        return {"phase": phase, "hostIP": self._node_ip(pod.spec.node_name), "startTime": start}

    def _not_ready_conditions(self, pod: client.V1Pod) -> list[dict]:
        msg = f"containers with unready status: [{pod.spec.containers[0].name}]"
        return self._conditions(pod, Initialized=("True", None, None), Ready=("False", "ContainersNotReady", msg),
                                ContainersReady=("False", "ContainersNotReady", msg), PodScheduled=("True", None, None))

    def pending(self, pod: PodRef) -> client.V1Pod:
        """Just created, not looked at by the scheduler yet: phase Pending, no conditions."""
        obj = self._read_pod(pod)
        return self._put_status(obj, {"phase": "Pending"})

    def unschedulable(self, pod: PodRef, message: str = UNSCHEDULABLE_MESSAGE, *, emit_event: bool = True
                      ) -> client.V1Pod:
        """The scheduler found no node: PodScheduled=False/Unschedulable (+ a FailedScheduling event)."""
        obj = self._read_pod(pod)
        out = self._put_status(obj, {"phase": "Pending", "conditions": self._conditions(
            obj, PodScheduled=("False", "Unschedulable", message))})
        if emit_event:
            self.event(obj, "FailedScheduling", message, source="default-scheduler")
        return out

    def gated(self, pod: PodRef) -> client.V1Pod:
        """Held back before scheduling (Grove/KAI without a queue): PodScheduled=False/SchedulingGated.

        v1.20 has no spec.schedulingGates (1.26+), so only the condition shows it, as on a real cluster's pod."""
        obj = self._read_pod(pod)
        return self._put_status(obj, {"phase": "Pending", "conditions": self._conditions(
            obj, PodScheduled=("False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates"))})

    def container_creating(self, pod: PodRef, node: str | None = None) -> client.V1Pod:
        """Bound to a node, image pulling / volumes mounting: Pending, container waiting ContainerCreating."""
        obj = self.bind(pod, node)
        status = self._scheduled_base(obj, "Pending")
        status["conditions"] = self._not_ready_conditions(obj)
        status["containerStatuses"] = self._container_status(
            obj, ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}}, image_id=False)
        return self._put_status(obj, status)

    def running(self, pod: PodRef, ready: bool = False, node: str | None = None) -> client.V1Pod:
        """Container running. ``ready=False``: not Ready yet (a slow model load: the startup probe still fails).

        A container that exits at start (``container_exit``: e.g. a worker without ``command``) cannot be
        running: the kubelet restarts it with back-off, so the pod goes to CrashLoopBackOff instead."""
        obj = self.bind(pod, node)
        if container_exit(obj) is not None:
            return self.crash_loop(obj)
        ip = self._pod_ip(obj)
        status = self._scheduled_base(obj, "Running")
        status.update({"podIP": ip, "podIPs": [{"ip": ip}]})
        old_running = None
        for cs in (obj.status.container_statuses or []) if obj.status else []:
            if cs.state and cs.state.running and cs.state.running.started_at:
                old_running = cs.state.running.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        restarts = max([cs.restart_count for cs in (obj.status.container_statuses or [])] or [0]) \
            if obj.status else 0
        if ready:
            status["conditions"] = self._conditions(
                obj, Initialized=("True", None, None), Ready=("True", None, None),
                ContainersReady=("True", None, None), PodScheduled=("True", None, None))
        else:
            status["conditions"] = self._not_ready_conditions(obj)
        status["containerStatuses"] = self._container_status(
            obj, ready=ready, started=ready, restarts=restarts,
            state={"running": {"startedAt": old_running or now()}})
        return self._put_status(obj, status)

    def ready(self, pod: PodRef, node: str | None = None) -> client.V1Pod:
        """Running and Ready (probes pass)."""
        out = self.running(pod, ready=True, node=node)
        self._sync_endpoints_for(out)
        return out

    def crash_loop(self, pod: PodRef, restarts: int = 5, *, emit_event: bool = True) -> client.V1Pod:
        """The container keeps exiting (with its ``container_exit`` code, else 1): Running phase, container
        waiting CrashLoopBackOff."""
        obj = self.bind(pod)
        exit_code = (container_exit(obj) or (1, ""))[0]
        ip = self._pod_ip(obj)
        status = self._scheduled_base(obj, "Running")
        status.update({"podIP": ip, "podIPs": [{"ip": ip}], "conditions": self._not_ready_conditions(obj)})
        name = obj.spec.containers[0].name
        message = f"back-off 5m0s restarting failed container={name} pod={obj.metadata.name}_{self.namespace}" \
                  f"({obj.metadata.uid})"
        ts = now()
        status["containerStatuses"] = self._container_status(
            obj, ready=False, started=False, restarts=restarts,
            state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
            last_state={"terminated": {"exitCode": exit_code, "reason": "Error", "startedAt": ts, "finishedAt": ts,
                                       "containerID": f"containerd://{_hex(obj.metadata.name + str(restarts))}"}})
        out = self._put_status(obj, status)
        if emit_event:
            self.event(obj, "BackOff", "Back-off restarting failed container", count=restarts)
        return out

    def image_pull_backoff(self, pod: PodRef, *, emit_event: bool = True) -> client.V1Pod:
        """The image cannot be pulled: Pending, container waiting ImagePullBackOff."""
        obj = self.bind(pod)
        image = obj.spec.containers[0].image
        status = self._scheduled_base(obj, "Pending")
        status["conditions"] = self._not_ready_conditions(obj)
        status["containerStatuses"] = self._container_status(
            obj, ready=False, started=False, image_id=False,
            state={"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}})
        out = self._put_status(obj, status)
        if emit_event:
            self.event(obj, "Failed", f'Error: ImagePullBackOff (Back-off pulling image "{image}")')
        return out

    def _sync_endpoints_for(self, pod: client.V1Pod) -> None:
        """The endpoints controller: every Service whose selector matches the pod gets Endpoints of the same name
        and labels holding its Ready pods' IPs, ports resolved by the container port name the Service targets."""
        labels = pod.metadata.labels or {}
        for svc in self.core.list_namespaced_service(self.namespace).items:
            selector = svc.spec.selector or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            selected = ",".join(f"{k}={v}" for k, v in selector.items())
            pods = [p for p in self.core.list_namespaced_pod(self.namespace, label_selector=selected).items
                    if self.is_ready(p) and p.status.pod_ip and p.metadata.deletion_timestamp is None]
            container_ports = {port.name: port.container_port for p in pods for c in p.spec.containers
                               for port in c.ports or [] if port.name}
            ports = [{"name": port.name, "protocol": port.protocol,
                      "port": container_ports.get(port.target_port, port.port)
                      if isinstance(port.target_port, str) else int(port.target_port or port.port)}
                     for port in svc.spec.ports or []]
            addresses = [{"ip": p.status.pod_ip, "nodeName": p.spec.node_name,
                          "targetRef": {"kind": "Pod", "name": p.metadata.name, "namespace": self.namespace,
                                        "uid": p.metadata.uid}} for p in pods]
            body: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": svc.metadata.name, "namespace": self.namespace,
                             "labels": dict(svc.metadata.labels or {})},
                "subsets": [{"addresses": addresses, "ports": ports}] if addresses else [],
            }
            try:
                self.core.replace_namespaced_endpoints(svc.metadata.name, self.namespace, body)
            except ApiException as exc:
                _ignore_404(exc)
                self.core.create_namespaced_endpoints(self.namespace, body)

    # -- events -------------------------------------------------------------------------------------------------
    def event(self, pod: PodRef, reason: str, message: str, type: str = "Warning", *,
              source: str = "kubelet", count: int = 1) -> client.CoreV1Event:
        """A core/v1 Event about the pod (FailedMount, FailedScheduling, BackOff ...), as the kubelet records it."""
        obj = self._read_pod(pod)
        ts = now()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{obj.metadata.name}.{_hex(reason + message + ts + suffix(), 16)}",
                         "namespace": obj.metadata.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": obj.metadata.name,
                               "namespace": obj.metadata.namespace, "uid": obj.metadata.uid,
                               "resourceVersion": obj.metadata.resource_version},
            "reason": reason, "message": message, "type": type, "count": count,
            "firstTimestamp": ts, "lastTimestamp": ts,
            "source": {"component": source, **({"host": obj.spec.node_name} if obj.spec.node_name else {})},
            "reportingComponent": source, "reportingInstance": obj.spec.node_name or "",
        }
        return self.core.create_namespaced_event(obj.metadata.namespace, body)

    # == the platform (what the platform install left on the demo cluster) ======================================
    def create_node(self, name: str, gpu: bool = True, *, index: int = 0) -> client.V1Node:
        """A Node object like the demo cluster's DOKS nodes (nothing contacts it): GPU nodes are gpu-h100x1-80gb,
        labelled gpu-brand=nvidia, tainted nvidia.com/gpu:NoSchedule, with nvidia.com/gpu: 1; else s-2vcpu-4gb."""
        size = "gpu-h100x1-80gb" if gpu else "s-2vcpu-4gb"
        labels = {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": size, "beta.kubernetes.io/instance-type": size,
            "topology.kubernetes.io/region": "nyc2", "failure-domain.beta.kubernetes.io/region": "nyc2",
            "doks.digitalocean.com/node-pool": "pool-gpu" if gpu else "pool-mgmt",
            "doks.digitalocean.com/node-id": _hex(name, 8),
        }
        if gpu:
            labels[GPU_BRAND_LABEL] = "nvidia"
        taints = [{"key": GPU_RESOURCE, "effect": "NoSchedule"}] if gpu else []
        capacity = {"cpu": "20", "memory": "247618936Ki", "ephemeral-storage": "742911600Ki", "pods": "110",
                    GPU_RESOURCE: "1"} if gpu else \
            {"cpu": "2", "memory": "4020176Ki", "ephemeral-storage": "82512364Ki", "pods": "110"}
        allocatable = dict(capacity, memory="239930936Ki" if gpu else "3267536Ki")
        ts = now()
        conditions = [
            {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": ts,
             "lastTransitionTime": ts}
            for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))
        ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
              "lastHeartbeatTime": ts, "lastTransitionTime": ts}]
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": f"digitalocean://{int(_hex(name, 8), 16) % 10**9}", "taints": taints},
            "status": {
                "capacity": capacity, "allocatable": allocatable, "conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": f"10.116.0.{10 + index}"},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"machineID": _hex(name + "m", 32), "systemUUID": _hex(name + "s", 32),
                             "bootID": _hex(name + "b", 32), "kernelVersion": "6.1.0-27-amd64",
                             "osImage": "Debian GNU/Linux 12 (bookworm)", "operatingSystem": "linux",
                             "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.22",
                             "kubeletVersion": "v1.31.1", "kubeProxyVersion": "v1.31.1"},
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        }
        self.core.create_node(body)  # nodes, unlike most kinds, keep the status given on create
        # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready:NoSchedule on create, and the
        # node lifecycle controller (absent here) would remove it once the node is Ready: set the taints we mean.
        return self.core.patch_node(name, [{"op": "replace", "path": "/spec/taints", "value": taints}])

    def demo_platform(self, fake_token: str = "hf_FAKE_TOKEN_FOR_TESTS", *, dynamo_operator: bool = True,
                      grove: bool = True, queue: bool = True) -> dict[str, Any]:
        """What the platform install left on the demo cluster: 3 GPU + 2 mgmt nodes, RuntimeClass nvidia,
        PV/PVC model-nfs-pvc (Bound), secret hf-token (HF_TOKEN = ``fake_token``), Prometheus' Service in
        monitoring, and Dynamo's platform chart 0.8 with Grove + KAI in dynamo-system: the Dynamo operator
        (``dynamo_operator``), ``grove-operator`` (``grove``) and KAI's queues ``dynamo-default`` / ``dynamo``
        (``queue``). Each switch set to False leaves that piece out. Returns the names."""
        nodes = []
        for i, name in enumerate(GPU_NODES):
            nodes.append(self.create_node(name, gpu=True, index=i).metadata.name)
        for i, name in enumerate(MGMT_NODES):
            nodes.append(self.create_node(name, gpu=False, index=len(GPU_NODES) + i).metadata.name)

        self.node_api.create_runtime_class({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                            "metadata": {"name": "nvidia"}, "handler": "nvidia"})

        ns = self.namespace
        self.core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "model-nfs-pv"},
            "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                     "nfs": {"server": "10.116.0.100", "path": "/models"},
                     "claimRef": {"namespace": ns, "name": "model-nfs-pvc"}},
        })
        self.core.patch_persistent_volume_status("model-nfs-pv", {"status": {"phase": "Bound"}})
        self.core.create_namespaced_persistent_volume_claim(ns, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "model-nfs-pvc", "namespace": ns,
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": "model-nfs-pv",
                     "resources": {"requests": {"storage": "100Gi"}}},
        })
        self.core.patch_namespaced_persistent_volume_claim_status("model-nfs-pvc", ns, {"status": {
            "phase": "Bound", "accessModes": ["ReadWriteMany"], "capacity": {"storage": "100Gi"}}})

        self.core.create_namespaced_secret(ns, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "hf-token", "namespace": ns},
            "data": {"HF_TOKEN": base64.b64encode(fake_token.encode()).decode()},
        })
        out: dict[str, Any] = {"nodes": nodes, "runtimeclass": "nvidia", "pv": "model-nfs-pv",
                               "pvc": "model-nfs-pvc", "secret": "hf-token", "queues": []}
        if dynamo_operator:
            out.update(self._platform_operator())
        if grove:
            # Grove's chart is not in Dynamo's repository: the Deployment's name as the platform installs it
            # (grove.enabled), with only the name label (nothing here asserts Grove's labels).
            grove_labels = {"app.kubernetes.io/name": "grove-operator"}
            grove_container = {"name": "grove-operator", "image": "ghcr.io/nvidia/grove/grove-operator:v0.1.0-alpha.3"}
            out["grove_deployment"] = "grove-operator"
            self._deployment(OPERATOR_NAMESPACE, "grove-operator", grove_labels, grove_labels, [grove_container])
        if queue:
            # deploy/helm/charts/platform/templates/kai.yaml: the parent queue, then `dynamo` under it.
            unlimited = {"quota": -1, "limit": -1, "overQuotaWeight": 1}
            for name, parent in (("dynamo-default", None), (DEFAULT_KAI_QUEUE, "dynamo-default")):
                spec: dict[str, Any] = {"resources": {"cpu": unlimited, "gpu": unlimited, "memory": unlimited}}
                if parent:
                    spec["parentQueue"] = parent
                self.custom.create_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION, QUEUE_PLURAL, {
                    "apiVersion": f"{QUEUE_GROUP}/{QUEUE_VERSION}", "kind": "Queue", "metadata": {"name": name},
                    "spec": spec})
                out["queues"].append(name)

        self.core.create_namespaced_service("monitoring", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-prometheus-stack-prometheus", "namespace": "monitoring",
                         "labels": {"app": "kube-prometheus-stack-prometheus", "release": "kube-prometheus-stack",
                                    "self-monitor": "true"}},
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "prometheus",
                                                       "prometheus": "kube-prometheus-stack-prometheus"},
                     "ports": [{"name": "http-web", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]},
        })
        out["prometheus_service"] = "kube-prometheus-stack-prometheus"
        return out

    def _platform_operator(self) -> dict[str, str]:
        """The Dynamo operator as the platform chart installs it (components/operator/templates/deployment.yaml,
        serviceaccount.yaml, _helpers.tpl): Deployment and ServiceAccount
        ``dynamo-platform-dynamo-operator-controller-manager``, the chart's labels, and one Ready pod. The chart's
        version labels say 0.8.1, the release the demo cluster runs (cf433e682's subchart still says 0.7.1)."""
        selector = {"control-plane": "controller-manager", "app.kubernetes.io/name": "dynamo-operator",
                    "app.kubernetes.io/instance": "dynamo-platform"}
        labels = {**selector, "app.kubernetes.io/component": "manager",
                  "app.kubernetes.io/created-by": "dynamo-operator", "app.kubernetes.io/part-of": "dynamo-operator",
                  "helm.sh/chart": "dynamo-operator-0.8.1", "app.kubernetes.io/version": "0.8.1",
                  "app.kubernetes.io/managed-by": "Helm"}
        self.core.create_namespaced_service_account(OPERATOR_NAMESPACE, {
            "metadata": {"name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE, "labels": {
                **{k: v for k, v in labels.items() if k != "control-plane"}, "app.kubernetes.io/component": "rbac"}}})
        containers = [{"name": "manager", "image": OPERATOR_IMAGE, "command": ["/manager"],
                       "args": ["--leader-elect", "--discovery-backend=kubernetes", "--enable-webhooks=true"],
                       "ports": [{"containerPort": 9443, "name": "webhook-server", "protocol": "TCP"}]}]
        pod = self._deployment(OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT, labels, selector, containers,
                               service_account=OPERATOR_SERVICE_ACCOUNT)
        return {"operator_deployment": OPERATOR_DEPLOYMENT, "operator_pod": pod}

    def _deployment(self, namespace: str, name: str, labels: dict[str, str], selector: dict[str, str],
                    containers: list[dict], service_account: str | None = None) -> str:
        """A Deployment reported Available with one Ready pod (what its controllers and kubelet would write).
        Returns the pod's name."""
        template: dict[str, Any] = {"metadata": {"labels": selector}, "spec": {"containers": containers}}
        if service_account:
            template["spec"]["serviceAccountName"] = service_account
        deployment = self.apps.create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template},
        })
        ts = now()
        hash_ = _hex(name, 10)
        self.apps.patch_namespaced_deployment_status(name, namespace, {"status": {
            "observedGeneration": deployment.metadata.generation, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.", "lastUpdateTime": ts, "lastTransitionTime": ts},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": f'ReplicaSet "{name}-{hash_}" has successfully progressed.',
                 "lastUpdateTime": ts, "lastTransitionTime": ts},
            ]}})
        pod = self.core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{hash_}-{suffix()}", "namespace": namespace,
                         "labels": {**selector, "pod-template-hash": hash_}},
            "spec": template["spec"],
        })
        FakeOperator(self.api_client, namespace).ready(pod.metadata.name, node=MGMT_NODES[0])
        return pod.metadata.name


class FakeKubelet:
    """The kubelet-backed calls of ClusterTarget (its ``access``): pod logs, and port-forwards to a URL the test
    chooses.

    Logs: a pod whose container exits at start (``container_exit``) shows that container's complaint, as
    ``kubectl logs`` shows the last run of a crash-looping container; any other pod shows canned lines
    ``<pod> log line <i>``. Without an ``operator`` (to read the pod), always the canned lines."""

    def __init__(self, forward_to: str | None = None, operator: FakeOperator | None = None) -> None:
        self.forward_to = forward_to
        self.operator = operator
        self.forwards: list[tuple[str, str, int]] = []
        self.open_forwards = 0

    def logs(self, namespace: str, pod: str, tail: int) -> str:
        if self.operator is not None:
            obj = self.operator.core.read_namespaced_pod(pod, namespace)
            exited = container_exit(obj)
            if exited is not None:
                return "\n".join(exited[1].splitlines()[-tail:])
        return "\n".join(f"{pod} log line {i}" for i in range(100 - tail, 100))

    @contextlib.contextmanager
    def port_forward(self, namespace: str, service: str, port: int) -> Iterator[str]:
        from gtcdemo.errors import DeploymentError

        if self.forward_to is None:
            raise DeploymentError(f"no kubelet to forward svc/{service}", fix="(test double)")
        self.forwards.append((namespace, service, port))
        self.open_forwards += 1
        try:
            yield self.forward_to
        finally:
            self.open_forwards -= 1
