"""The cluster's objects as the tables ``kubectl get`` shows (pure: API objects in, DataFrames out)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ..clock import age, seconds_since
from .names import COMPONENT_LABEL, COMPONENT_TYPE_LABEL, GPU_RESOURCE, SUB_TYPE_LABEL


def _age(timestamp: Any, now: datetime) -> str:
    return age(seconds_since(timestamp, now))


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
    """`kubectl get pods -o wide`, with each pod's service and role (from the operator's labels)."""
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


def events_frame(events: list[Any], pods: set[str] | None = None, limit: int = 20) -> pd.DataFrame:
    """The last ``limit`` events (of ``pods`` only, when given), oldest first, as `kubectl get events`."""
    rows = []
    for e in events:
        obj = e.involved_object
        if pods is not None and (obj is None or obj.name not in pods):
            continue
        when = e.last_timestamp or e.event_time or e.metadata.creation_timestamp
        rows.append({"when": when, "type": e.type, "reason": e.reason,
                     "object": f"{(obj.kind or '').lower()}/{obj.name}" if obj else "", "message": e.message})
    rows.sort(key=lambda r: r["when"] or datetime.min.replace(tzinfo=UTC))
    return pd.DataFrame(rows[-limit:], columns=["when", "type", "reason", "object", "message"])


def nodes_frame(nodes: list[Any], now: datetime) -> pd.DataFrame:
    """`kubectl get nodes -o wide`, with each node's allocatable GPUs."""
    rows = []
    for n in sorted(nodes, key=lambda n: n.metadata.name):
        ready = next((c.status for c in n.status.conditions or [] if c.type == "Ready"), "Unknown")
        info = n.status.node_info
        ip = next((a.address for a in n.status.addresses or [] if a.type == "InternalIP"), "<none>")
        roles = ",".join(k.split("/", 1)[1] for k in (n.metadata.labels or {}) if
                         k.startswith("node-role.kubernetes.io/")) or "<none>"
        rows.append({"name": n.metadata.name, "status": "Ready" if ready == "True" else "NotReady",
                     "roles": roles, "age": _age(n.metadata.creation_timestamp, now),
                     "version": info.kubelet_version if info else "", "internal-ip": ip,
                     "gpus": (n.status.allocatable or {}).get(GPU_RESOURCE, "0"),
                     "os-image": info.os_image if info else "",
                     "container-runtime": info.container_runtime_version if info else ""})
    return pd.DataFrame(rows)


def dgds_frame(dgds: list[dict], now: datetime) -> pd.DataFrame:
    """`kubectl get dgd`: each DGD's state and Ready condition."""
    rows = []
    for d in dgds:
        status = d.get("status") or {}
        ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "")
        rows.append({"name": d["metadata"]["name"], "state": status.get("state", ""), "ready": ready,
                     "age": _age(d["metadata"].get("creationTimestamp"), now)})
    return pd.DataFrame(rows, columns=["name", "state", "ready", "age"])


def adapters_frame(adapters: list[dict]) -> pd.DataFrame:
    """`kubectl get dgdsa`: each adapter's service, the replicas asked for and those it reports."""
    rows = [{"name": a["metadata"]["name"],
             "service": (a.get("spec", {}).get("dgdRef") or {}).get("serviceName", ""),
             "desired": a.get("spec", {}).get("replicas"), "replicas": (a.get("status") or {}).get("replicas"),
             "last scale": (a.get("status") or {}).get("lastScaleTime", "")} for a in adapters]
    return pd.DataFrame(rows, columns=["name", "service", "desired", "replicas", "last scale"])


def pvcs_frame(pvcs: list[Any], now: datetime) -> pd.DataFrame:
    """`kubectl get pvc`."""
    return pd.DataFrame([{"name": p.metadata.name, "status": p.status.phase, "volume": p.spec.volume_name or "",
                          "capacity": (p.status.capacity or {}).get("storage", ""),
                          "access modes": ",".join(p.spec.access_modes or []),
                          "storageclass": p.spec.storage_class_name or "",
                          "age": _age(p.metadata.creation_timestamp, now)} for p in pvcs])
