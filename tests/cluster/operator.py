"""Plays the Dynamo operator, the scheduler and the kubelet against the envtest API server.

Nothing runs in envtest except kube-apiserver and etcd: no controller turns a DGD into pods, no scheduler binds
them, no kubelet reports their status. ``FakeOperator`` writes those objects the way the real components would
(names, labels, owner references, status shapes as seen on a real cluster), so the cluster code under test reads
exactly what it would read on the seed's DigitalOcean cluster. Tests drive it step by step::

    op = FakeOperator(api_client)
    pods = op.reconcile("gtc-demo")          # {"Frontend": ["gtc-demo-0-frontend-x7k2p"], ...}
    op.container_creating(pods["Frontend"][0])
    op.all_ready("gtc-demo")

Facts used (labels, names, DGDSA, states) are in /work/shared/reference/dynamo-facts.md.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import random
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP = "nvidia.com"
VERSION = "v1alpha1"
DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
DGD_API_VERSION = f"{GROUP}/{VERSION}"

# The operator's pod labels.
L_DGD = "nvidia.com/dynamo-graph-deployment-name"
L_COMPONENT = "nvidia.com/dynamo-component"
L_COMPONENT_TYPE = "nvidia.com/dynamo-component-type"
L_SUB_COMPONENT_TYPE = "nvidia.com/dynamo-sub-component-type"
L_DYN_NAMESPACE = "nvidia.com/dynamo-namespace"
L_SELECTOR = "nvidia.com/selector"
L_METRICS = "nvidia.com/metrics-enabled"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_BRAND_LABEL = "doks.digitalocean.com/gpu-brand"
# The seed's cluster: 3 x gpu-h100x1-80gb (tainted) and 2 x s-2vcpu-4gb. Fixed names so tests can refer to them.
GPU_NODES = ("gpu-h100x1-80gb-0a1bq", "gpu-h100x1-80gb-2c3dr", "gpu-h100x1-80gb-4e5fs")
MGMT_NODES = ("s-2vcpu-4gb-6g7ht", "s-2vcpu-4gb-8h9ju")

DEFAULT_IMAGES = {
    "frontend": "nvcr.io/nvidia/ai-dynamo/dynamo-frontend:0.8.1",
    "worker": "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1",
}
FALLBACK_IMAGE = "nvcr.io/nvidia/ai-dynamo/dynamo-frontend:0.8.1"
FRONTEND_PORT = 8000
SYSTEM_PORT = 9090
OPERATOR_DEPLOYMENT = "dynamo-platform-dynamo-operator-controller-manager"
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


class FakeOperator:
    """The Dynamo operator + scheduler + kubelet, played by hand against a real API server."""

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
        """One pass of the operator's reconcile loop for DGD ``dgd_name``. Idempotent.

        For each service: the adapter (DGDSA) when ``scalingAdapter.enabled`` (its ``spec.replicas`` wins over the
        DGD's and is written back to the DGD, as the adapter controller does), then pods created or deleted to match
        the replicas (default 1), the ``<dgd>-<service>`` Service for frontend services, and the DGD status
        (``successful`` only if every wanted pod is Ready, else ``pending``). Pods, adapters and Services of services
        no longer in the DGD are deleted. Returns the live pod names per service (sorted).
        """
        dgd = self.get_dgd(dgd_name)
        services: dict[str, dict] = (dgd.get("spec") or {}).get("services") or {}
        owner = self._owner_ref(dgd)
        result: dict[str, list[str]] = {}
        for service, spec in services.items():
            spec = spec or {}
            replicas = int(spec.get("replicas", 1))
            if (spec.get("scalingAdapter") or {}).get("enabled"):
                replicas = self._reconcile_adapter(dgd_name, service, replicas, owner)
            result[service] = self._reconcile_pods(dgd, service, spec, replicas, owner)
            if spec.get("componentType") == "frontend":
                self._ensure_frontend_service(dgd_name, service, owner)
        self._delete_orphans(dgd_name, services)
        self._write_dgd_status(dgd_name, services, final=False)
        return result

    def _reconcile_adapter(self, dgd_name: str, service: str, replicas: int, owner: dict) -> int:
        name = f"{dgd_name}-{service.lower()}"
        try:
            adapter = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, DGDSA_PLURAL, name)
        except ApiException as exc:
            _ignore_404(exc)
            adapter = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, DGDSA_PLURAL, {
                "apiVersion": DGD_API_VERSION, "kind": "DynamoGraphDeploymentScalingAdapter",
                "metadata": {"name": name, "namespace": self.namespace, "ownerReferences": [owner],
                             "labels": {L_DGD: dgd_name, L_COMPONENT: service}},
                "spec": {"replicas": replicas, "dgdRef": {"name": dgd_name, "serviceName": service}},
            })
        wanted = (adapter.get("spec") or {}).get("replicas")
        if wanted is None:
            wanted = replicas
        wanted = int(wanted)
        if wanted != replicas:  # the adapter owns the replicas: write them back to the DGD
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, DGD_PLURAL, dgd_name,
                                                       {"spec": {"services": {service: {"replicas": wanted}}}})
        status = adapter.get("status") or {}
        if status.get("replicas") != wanted or not status.get("selector"):
            new_status = {"replicas": wanted, "selector": f"{L_DGD}={dgd_name},{L_COMPONENT}={service}"}
            if status.get("replicas") != wanted:
                new_status["lastScaleTime"] = now()
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, DGDSA_PLURAL, name,
                                                              {"status": new_status})
        return wanted

    def _reconcile_pods(self, dgd: dict, service: str, spec: dict, replicas: int, owner: dict) -> list[str]:
        dgd_name = dgd["metadata"]["name"]
        pods = [p for p in self.service_pods(dgd_name, service) if p.metadata.deletion_timestamp is None]
        while len(pods) < replicas:
            pods.append(self.core.create_namespaced_pod(self.namespace, self._pod_manifest(dgd, service, spec, owner)))
        if len(pods) > replicas:  # scale down: newest first, as a ReplicaSet / PodClique would
            pods.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
            for pod in pods[replicas:]:
                self._delete_pod(pod.metadata.name)
            pods = pods[:replicas]
        return sorted(p.metadata.name for p in pods)

    def _pod_manifest(self, dgd: dict, service: str, spec: dict, owner: dict) -> dict:
        dgd_name = dgd["metadata"]["name"]
        lower = service.lower()
        component_type = spec.get("componentType") or "main"
        extra = copy.deepcopy(spec.get("extraPodSpec") or {})
        main = extra.pop("mainContainer", None) or {}
        labels = {k: str(v) for k, v in (spec.get("labels") or {}).items()}
        labels.update(self.pod_labels(dgd_name, service, spec))

        env = [{"name": "DYN_NAMESPACE", "value": f"{self.namespace}-{dgd_name}"},
               {"name": "DYN_PARENT_DGD_K8S_NAME", "value": dgd_name},
               {"name": "DYN_PARENT_DGD_K8S_NAMESPACE", "value": self.namespace}]
        for item in [*((dgd.get("spec") or {}).get("envs") or []), *(spec.get("envs") or []), *(main.get("env") or [])]:
            env = [e for e in env if e["name"] != item["name"]] + [item]

        volumes: list[dict] = []
        mounts: list[dict] = []
        for vm in spec.get("volumeMounts") or []:
            if not any(v["name"] == vm["name"] for v in volumes):
                volumes.append({"name": vm["name"], "persistentVolumeClaim": {"claimName": vm["name"]}})
            mounts.append({"name": vm["name"], "mountPath": vm.get("mountPoint") or f"/mnt/{vm['name']}"})
        volumes += extra.pop("volumes", None) or []
        mounts += main.get("volumeMounts") or []

        limits: dict[str, str] = {}
        requests: dict[str, str] = {}
        res = spec.get("resources") or {}
        for src, dst in ((res.get("limits") or {}, limits), (res.get("requests") or {}, requests)):
            if src.get("gpu"):
                dst[GPU_RESOURCE] = str(src["gpu"])
            for key in ("cpu", "memory"):
                if src.get(key):
                    dst[key] = str(src[key])
        for key, value in ((main.get("resources") or {}).get("limits") or {}).items():
            limits.setdefault(key, str(value))
        for key, value in ((main.get("resources") or {}).get("requests") or {}).items():
            requests.setdefault(key, str(value))

        annotations = {k: str(v) for k, v in (spec.get("annotations") or {}).items()}
        frontend = component_type == "frontend"
        port = {"name": "http", "containerPort": FRONTEND_PORT, "protocol": "TCP"} if frontend else \
            {"name": "system", "containerPort": SYSTEM_PORT, "protocol": "TCP"}
        container: dict[str, Any] = {
            "name": "main",
            "image": main.get("image") or DEFAULT_IMAGES.get(component_type, FALLBACK_IMAGE),
            "env": env,
            "ports": [port],
            "volumeMounts": mounts,
            "resources": {k: v for k, v in (("limits", limits), ("requests", requests)) if v},
            "livenessProbe": {"httpGet": {"path": "/live", "port": port["name"]}, "periodSeconds": 5,
                              "failureThreshold": 1},
            "readinessProbe": {"httpGet": {"path": "/health", "port": port["name"]}, "periodSeconds": 10,
                               "failureThreshold": 3},
        }
        if not frontend:  # model loading may take up to 2 h
            container["startupProbe"] = {"httpGet": {"path": "/live", "port": port["name"]}, "periodSeconds": 10,
                                         "failureThreshold": 720}
        for key in ("command", "args", "workingDir", "securityContext", "envFrom"):
            if main.get(key):
                container[key] = main[key]
        if spec.get("envFromSecret"):
            container["envFrom"] = [*container.get("envFrom", []), {"secretRef": {"name": spec["envFromSecret"]}}]

        pod_spec: dict[str, Any] = {**extra}  # the rest of extraPodSpec is a PodSpec: pass it through
        pod_spec["containers"] = [container, *(extra.get("containers") or [])]
        pod_spec["volumes"] = volumes
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 60)
        pod_spec.pop("nodeName", None)  # the scheduler (here: the setters) binds pods
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{dgd_name}-0-{lower}-{suffix()}", "namespace": self.namespace,
                         "labels": labels, "annotations": annotations, "ownerReferences": [owner]},
            "spec": pod_spec,
        }

    def pod_labels(self, dgd_name: str, service: str, spec: dict) -> dict[str, str]:
        """The labels the operator puts on every pod of ``service``."""
        labels = {
            L_DGD: dgd_name,
            L_COMPONENT: service,
            L_COMPONENT_TYPE: spec.get("componentType") or "main",
            L_DYN_NAMESPACE: f"{self.namespace}-{dgd_name}",
            L_SELECTOR: f"{dgd_name}-{service.lower()}",
            L_METRICS: "true",
        }
        if spec.get("subComponentType"):
            labels[L_SUB_COMPONENT_TYPE] = spec["subComponentType"]
        return labels

    def _ensure_frontend_service(self, dgd_name: str, service: str, owner: dict) -> None:
        name = f"{dgd_name}-{service.lower()}"
        body = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.namespace, "ownerReferences": [owner],
                         "labels": {L_DGD: dgd_name, L_COMPONENT: service, L_COMPONENT_TYPE: "frontend"}},
            "spec": {"type": "ClusterIP", "selector": {L_DGD: dgd_name, L_COMPONENT: service},
                     "ports": [{"name": "http", "port": FRONTEND_PORT, "targetPort": "http", "protocol": "TCP"}]},
        }
        try:
            self.core.create_namespaced_service(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _delete_orphans(self, dgd_name: str, services: dict[str, dict]) -> None:
        for pod in self.dgd_pods(dgd_name):
            if (pod.metadata.labels or {}).get(L_COMPONENT) not in services:
                self._delete_pod(pod.metadata.name)
        for adapter in self._adapters(dgd_name):
            service = adapter["spec"]["dgdRef"]["serviceName"]
            if not ((services.get(service) or {}).get("scalingAdapter") or {}).get("enabled"):
                self._delete_custom(DGDSA_PLURAL, adapter["metadata"]["name"])
        for svc in self.core.list_namespaced_service(self.namespace, label_selector=f"{L_DGD}={dgd_name}").items:
            component = (svc.metadata.labels or {}).get(L_COMPONENT)
            if (services.get(component) or {}).get("componentType") != "frontend":
                self._delete(self.core.delete_namespaced_service, svc.metadata.name)

    def _write_dgd_status(self, dgd_name: str, services: dict[str, dict], *, final: bool) -> dict:
        """DGD status from the pods: ``successful`` when every wanted pod is Ready (or ``final``), else ``pending``."""
        dgd = self.get_dgd(dgd_name)
        services = (dgd.get("spec") or {}).get("services") or services
        svc_status: dict[str, dict] = {}
        all_ready = True
        for service, spec in services.items():
            wanted = int((spec or {}).get("replicas", 1))
            pods = [p for p in self.service_pods(dgd_name, service) if p.metadata.deletion_timestamp is None]
            ready = sum(1 for p in pods if self.is_ready(p))
            all_ready = all_ready and ready >= wanted and len(pods) == wanted
            svc_status[service] = {
                "componentKind": "PodClique", "componentName": f"{dgd_name}-0-{service.lower()}",
                "replicas": len(pods), "updatedReplicas": len(pods), "readyReplicas": ready,
                "availableReplicas": ready,
            }
        state = "successful" if (final or all_ready) else "pending"
        return self._patch_dgd_status(dgd, state, services=svc_status)

    def _patch_dgd_status(self, dgd: dict, state: str, services: dict | None = None) -> dict:
        ready = state == "successful"
        old = {c.get("type"): c for c in ((dgd.get("status") or {}).get("conditions") or [])}.get("Ready") or {}
        want_status = "True" if ready else "False"
        condition = {
            "type": "Ready", "status": want_status,
            "reason": "all_resources_are_ready" if ready else "some_resources_are_not_ready",
            "message": "All resources are ready" if ready else "Resources not ready",
            "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == want_status else now(),
        }
        status: dict[str, Any] = {"state": state, "conditions": [condition]}
        if services is not None:
            status["services"] = services
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, DGD_PLURAL, dgd["metadata"]["name"], {"status": status})

    def set_dgd_state(self, dgd_name: str, state: str) -> dict:
        """Set ``status.state`` (and the Ready condition to match) without looking at the pods."""
        return self._patch_dgd_status(self.get_dgd(dgd_name), state)

    def all_ready(self, dgd_name: str = "gtc-demo") -> dict:
        """Every pod of the DGD becomes Ready; the DGD becomes ``successful`` with Ready=True and status.services."""
        for pod in self.dgd_pods(dgd_name):
            if pod.metadata.deletion_timestamp is None:
                self.ready(pod)
        return self._write_dgd_status(dgd_name, {}, final=True)

    def delete_dgd_pods(self, dgd_name: str = "gtc-demo") -> list[str]:
        """What the operator and the garbage collector do once the DGD is gone: delete its pods (grace 0), its
        Services and Endpoints, and its adapters. Returns the deleted pod names."""
        names = [p.metadata.name for p in self.dgd_pods(dgd_name)]
        for name in names:
            self._delete_pod(name)
        for svc in self.core.list_namespaced_service(self.namespace, label_selector=f"{L_DGD}={dgd_name}").items:
            self._delete(self.core.delete_namespaced_service, svc.metadata.name)
            self._delete(self.core.delete_namespaced_endpoints, svc.metadata.name)
        for adapter in self._adapters(dgd_name):
            self._delete_custom(DGDSA_PLURAL, adapter["metadata"]["name"])
        return names

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
        """Container running. ``ready=False``: not Ready yet (a slow model load: the startup probe still fails)."""
        obj = self.bind(pod, node)
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
        """The container keeps exiting with code 1: Running phase, container waiting CrashLoopBackOff."""
        obj = self.bind(pod)
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
            last_state={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ts, "finishedAt": ts,
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
        """The endpoints controller: keep Endpoints ``<dgd>-<frontend service>`` = the Ready frontend pods' IPs."""
        labels = pod.metadata.labels or {}
        if labels.get(L_COMPONENT_TYPE) != "frontend" or L_DGD not in labels:
            return
        dgd_name, service = labels[L_DGD], labels[L_COMPONENT]
        name = f"{dgd_name}-{service.lower()}"
        pods = [p for p in self.service_pods(dgd_name, service) if self.is_ready(p) and p.status.pod_ip]
        addresses = [{"ip": p.status.pod_ip, "nodeName": p.spec.node_name,
                      "targetRef": {"kind": "Pod", "name": p.metadata.name, "namespace": self.namespace,
                                    "uid": p.metadata.uid}} for p in pods]
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {L_DGD: dgd_name}},
            "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": FRONTEND_PORT,
                                                            "protocol": "TCP"}]}] if addresses else [],
        }
        try:
            self.core.replace_namespaced_endpoints(name, self.namespace, body)
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

    # == the platform (what the seed's Phase 1d-i left on the cluster) ==========================================
    def create_node(self, name: str, gpu: bool = True, *, index: int = 0) -> client.V1Node:
        """A Node object like the seed's DOKS nodes (nothing contacts it): GPU nodes are gpu-h100x1-80gb, labelled
        gpu-brand=nvidia, tainted nvidia.com/gpu:NoSchedule, with nvidia.com/gpu: 1; else s-2vcpu-4gb."""
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

    def seed_platform(self, fake_token: str = "hf_FAKE_TOKEN_FOR_TESTS") -> dict[str, Any]:
        """What the seed's platform (Phase 1d-i) left on the cluster: 3 GPU + 2 mgmt nodes, RuntimeClass nvidia,
        PV/PVC model-nfs-pvc (Bound), secret hf-token (HF_TOKEN = ``fake_token``), the Dynamo operator Deployment
        (and its Ready pod) in dynamo-system, and Prometheus' Service in monitoring. Returns the names."""
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

        op_labels = {"app.kubernetes.io/name": "dynamo-operator", "app.kubernetes.io/instance": "dynamo-platform",
                     "control-plane": "controller-manager"}
        image = "nvcr.io/nvidia/ai-dynamo/kubernetes-operator:0.8.1"
        template = {"metadata": {"labels": op_labels},
                    "spec": {"containers": [{"name": "manager", "image": image, "args": ["--leader-elect"]}]}}
        deployment = self.apps.create_namespaced_deployment("dynamo-system", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": OPERATOR_DEPLOYMENT, "namespace": "dynamo-system", "labels": op_labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": op_labels}, "template": template},
        })
        ts = now()
        self.apps.patch_namespaced_deployment_status(OPERATOR_DEPLOYMENT, "dynamo-system", {"status": {
            "observedGeneration": deployment.metadata.generation, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.", "lastUpdateTime": ts, "lastTransitionTime": ts},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": f'ReplicaSet "{OPERATOR_DEPLOYMENT}-5d8f7c9b6d" has successfully progressed.',
                 "lastUpdateTime": ts, "lastTransitionTime": ts},
            ]}})
        operator_pod = self.core.create_namespaced_pod("dynamo-system", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{OPERATOR_DEPLOYMENT}-5d8f7c9b6d-{suffix()}", "namespace": "dynamo-system",
                         "labels": {**op_labels, "pod-template-hash": "5d8f7c9b6d"}},
            "spec": template["spec"],
        })
        FakeOperator(self.api_client, "dynamo-system").ready(operator_pod.metadata.name, node=MGMT_NODES[0])

        self.core.create_namespaced_service("monitoring", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-prometheus-stack-prometheus", "namespace": "monitoring",
                         "labels": {"app": "kube-prometheus-stack-prometheus", "release": "kube-prometheus-stack",
                                    "self-monitor": "true"}},
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "prometheus",
                                                       "prometheus": "kube-prometheus-stack-prometheus"},
                     "ports": [{"name": "http-web", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]},
        })
        return {"nodes": nodes, "runtimeclass": "nvidia", "pv": "model-nfs-pv", "pvc": "model-nfs-pvc",
                "secret": "hf-token", "operator_deployment": OPERATOR_DEPLOYMENT,
                "operator_pod": operator_pod.metadata.name, "prometheus_service": "kube-prometheus-stack-prometheus"}
