"""Server-side apply of a bundle: every object dry-run first, so that nothing changes if the API server or Dynamo's
webhook refuses any of them; then only what the dry run shows would change is written."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .. import bundle as bundle_mod
from ..errors import DeploymentError
from .apierrors import api_message
from .kube import Kube
from .names import FIELD_MANAGER

PVC = "PersistentVolumeClaim"


@dataclass
class Planned:
    """One object of the bundle as the dry run found it: what exists, and whether applying would change it."""

    obj: dict
    resource: Any
    existing: dict | None
    unchanged: bool

    @property
    def action(self) -> str:
        """kubectl's word for what applying does to it."""
        return "unchanged" if self.unchanged else "created" if self.existing is None else "configured"


@dataclass
class Plan:
    """The bundle's objects in apply order, each dry-run, and notes on what apply keeps from the live objects."""

    objects: list[Planned]
    notes: list[str] = field(default_factory=list)


def adapter_for(service: str, dgd_name: str, adapters: list[dict]) -> dict | None:
    """The DGDSA of ``service``: by its dgdRef, else by the operator's name ``<dgd>-<service lowercased>``."""
    return next((a for a in adapters if (a.get("spec", {}).get("dgdRef") or {}).get("serviceName") == service
                 or a["metadata"]["name"] == f"{dgd_name}-{service.lower()}"), None)


def keep_adapter_replicas(dgd: dict, live: dict, adapters: list[dict]) -> tuple[dict, list[str]]:
    """``dgd`` carrying the live replicas of every service a DGDSA scales, and a note where the manifest differs.

    A DGDSA owns its service's replicas: its controller writes them into the DGD
    (deploy/operator/internal/controller/dynamographdeploymentscalingadapter_controller.go) and Dynamo's
    validating webhook refuses anyone else's change of them, dry runs included
    (deploy/operator/internal/webhook/validation/dynamographdeployment.go, validateReplicasChanges; on in 0.8
    unless ``scalingAdapter.disable: true``). Applying the live value shows the webhook no change; the operator
    took the field over with its last update, and server-side apply leaves it in its hands.
    """
    live_services = (live.get("spec") or {}).get("services") or {}
    body = copy.deepcopy(dgd)
    notes = []
    for service, spec in body["spec"]["services"].items():
        adapter = adapter_for(service, dgd["metadata"]["name"], adapters)
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


def _content(obj: dict) -> dict:
    """What an apply can change: the object without its status and the server's bookkeeping."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k not in ("managedFields", "resourceVersion", "generation")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _refused(obj: dict, exc: Exception) -> DeploymentError:
    """The dry run's refusal of ``obj``, with what to change."""
    if getattr(exc, "status", None) == 404:  # discovery was cached before the CRD went away
        return DeploymentError(f"the API server does not serve {obj['kind']} ({obj['apiVersion']}): its CRD is not "
                               "installed; nothing was applied", fix="install the Dynamo CRDs (helm install "
                                                                     "dynamo-crds ...)")
    message = api_message(exc)
    return DeploymentError(
        f"the API server refuses {obj['kind']} {obj['metadata']['name']} (dry run; nothing was applied): {message}",
        fix="change replicas through the service's scaling adapter: `gtcdemo scale <service> N`"
            if "scaling adapter" in message else
            "fix the manifest field named above; the CRD installed on the cluster may differ from "
            "the nvidia.com/v1alpha1 schema (Dynamo 0.8) gtcdemo is written for")


def dry_run(kube: Kube, bundle: bundle_mod.Bundle) -> Plan:
    """Server-side dry run (``dryRun=All``) of every object; raises DeploymentError on the first refusal.

    An existing claim is never modified (so not dry-run either). A live DGD's adapter-owned replicas are kept
    (``keep_adapter_replicas``).
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

    plan = Plan([])
    for obj in bundle.objects:
        resource = kube.resource(obj)
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            existing = resource.get(name=name, namespace=bundle.namespace).to_dict()
        except NotFoundError:
            existing = None
        except ApiException as exc:
            raise kube.error(exc, f"reading {kind} {name}") from None
        if kind == PVC and existing is not None:
            plan.objects.append(Planned(obj, resource, existing, unchanged=True))
            continue
        if kind == bundle_mod.DGD_KIND and existing is not None:
            try:
                adapters = kube.adapters(bundle.namespace, name)
            except ApiException as exc:
                raise kube.error(exc, f"listing the scaling adapters of {name}") from None
            obj, notes = keep_adapter_replicas(obj, existing, adapters)
            plan.notes += notes
        try:
            dry = resource.server_side_apply(body=obj, namespace=bundle.namespace, field_manager=FIELD_MANAGER,
                                             force_conflicts=True, dry_run="All")
        except DynamicApiError as exc:
            raise _refused(obj, exc) from None
        unchanged = existing is not None and _content(dry.to_dict()) == _content(existing)
        plan.objects.append(Planned(obj, resource, existing, unchanged))
    return plan


def write(bundle: bundle_mod.Bundle, plan: Plan) -> list[dict]:
    """Apply what the dry run shows would change; one row per object with kubectl's word for what happened.

    An object the dry run leaves as it is is not written: a no-op apply can still move its resourceVersion
    (field-ownership bookkeeping, e.g. sharing `replicas` with the operator after a DGDSA scale), and "unchanged"
    must mean unchanged.
    """
    rows = []
    for p in plan.objects:
        if not p.unchanged:
            p.resource.server_side_apply(body=p.obj, namespace=bundle.namespace, field_manager=FIELD_MANAGER,
                                         force_conflicts=True)
        rows.append({"kind": p.obj["kind"], "name": p.obj["metadata"]["name"], "action": p.action})
    return rows
