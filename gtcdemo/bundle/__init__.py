"""The bundle: the validated objects of one env (PVC, ConfigMap, DGD), in apply order.

The committed ``manifests/<env>/`` files are exactly what ``kubectl apply -f manifests/<env>/`` applies. The
ConfigMap among them is generated from ``engine-configs/<env>/`` (``gtcdemo render --env <env> --write``); loading
a bundle whose committed ConfigMap has drifted from the engine configs is an error, so the two never disagree.

The package, one concern a module: ``manifests`` (reading and writing the YAML), ``configmap`` (generating the
ConfigMap), ``validate`` (the DGD and PVC checks), ``names`` (the names the cluster derives), ``schema`` (the fields
and the problem list). Callers import from here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from .. import engine_config, project
from ..args import arg_value, container_args
from ..errors import ConfigError, ValidationErrors
from .configmap import (
    CONFIGMAP_FILE,
    GENERATED_HEADER,
    configmap_name,
    configmap_text,
    render_configmap,
    write_configmap,
)
from .manifests import dgds, dump_yaml, read_manifests
from .names import check_names
from .schema import DEFAULT_KAI_QUEUE, DGD_API_VERSION, DGD_KIND, KAI_QUEUE_ANNOTATION, KAI_QUEUE_LABEL
from .validate import check_release, validate_dgd, validate_pvc

__all__ = [
    "APPLY_ORDER", "CONFIGMAP_FILE", "DEFAULT_KAI_QUEUE", "DGD_API_VERSION", "DGD_KIND", "GENERATED_HEADER",
    "KAI_QUEUE_ANNOTATION", "KAI_QUEUE_LABEL", "Bundle", "check_names", "check_release", "configmap_name",
    "configmap_text", "dump_yaml", "load", "read_manifests", "render_configmap", "validate_dgd", "validate_pvc",
    "write_configmap",
]

APPLY_ORDER = {"PersistentVolumeClaim": 0, "ConfigMap": 1, DGD_KIND: 2}


@dataclass
class Bundle:
    """The validated objects of one env, ready to apply to any target."""

    env: str
    objects: list[dict]
    engine_configs: dict[str, engine_config.EngineConfig] = field(repr=False)

    def _one(self, kind: str) -> dict:
        return next(o for o in self.objects if o["kind"] == kind)

    @property
    def dgd(self) -> dict:
        return self._one(DGD_KIND)

    @property
    def configmap(self) -> dict:
        return self._one("ConfigMap")

    @property
    def name(self) -> str:
        return self.dgd["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.dgd["metadata"]["namespace"]

    @property
    def services(self) -> dict[str, dict]:
        return self.dgd["spec"]["services"]

    @property
    def dynamo_namespace(self) -> str:
        """The runtime namespace the operator injects (``<k8s-namespace>-<dgd>``); dynamoNamespace is ignored."""
        return f"{self.namespace}-{self.name}"

    @property
    def expected_pods(self) -> int:
        return sum(int(s.get("replicas", 1)) for s in self.services.values())

    @property
    def served_model_name(self) -> str:
        names = {arg_value(container_args(s), "--served-model-name") for s in self.services.values()} - {None}
        return names.pop() if names else ""

    def table(self) -> pd.DataFrame:
        """One row per object (and per DGD service), for display."""
        rows = []
        for obj in self.objects:
            meta = obj["metadata"]
            detail = ""
            if obj["kind"] == "ConfigMap":
                detail = "keys: " + ", ".join(obj.get("data", {}))
            elif obj["kind"] == "PersistentVolumeClaim":
                spec = obj["spec"]
                detail = f"{', '.join(spec.get('accessModes', []))} {spec['resources']['requests']['storage']}"
            elif obj["kind"] == DGD_KIND:
                detail = f"backend {obj['spec'].get('backendFramework')}, {self.expected_pods} pods"
            rows.append({"kind": obj["kind"], "name": meta["name"], "namespace": meta.get("namespace", ""),
                         "detail": detail})
        for svc, spec in self.services.items():
            role = spec.get("subComponentType") or spec.get("componentType")
            gpus = spec.get("resources", {}).get("limits", {}).get("gpu", "0")
            rows.append({"kind": "  service", "name": svc, "namespace": self.namespace,
                         "detail": f"{role}, replicas {spec.get('replicas', 1)}, gpu {gpus}"})
        return pd.DataFrame(rows)

    def to_yaml(self) -> str:
        return "---\n".join(dump_yaml(o) for o in self.objects)

    def __repr__(self) -> str:
        return f"Bundle(env={self.env!r})\n{self.table().to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<b>Bundle <code>{html.escape(self.env)}</code></b>" + self.table().to_html(index=False)


def load(env: str, *, check_drift: bool = True) -> Bundle:
    """Load, generate and validate the bundle of ``env``; raise ValidationErrors before anything is applied."""
    project.check_env(env)
    configs = engine_config.load(env)
    docs = read_manifests(project.MANIFESTS / env)
    found = dgds(docs)
    if len(found) != 1:
        raise ConfigError(f"found {len(found)} DynamoGraphDeployments in manifests/{env}/", where=f"manifests/{env}",
                          fix="keep exactly one DGD per env")
    dgd = found[0]
    configmap = render_configmap(env, dgd, configs)
    committed = [d for _, d in docs if d.get("kind") == "ConfigMap"
                 and d.get("metadata", {}).get("name") == configmap["metadata"]["name"]]
    errors: list[ConfigError] = []
    if check_drift and (not committed or committed[0] != configmap):
        errors.append(ConfigError(
            f"manifests/{env}/{CONFIGMAP_FILE} is missing or out of date with engine-configs/{env}/",
            where=f"manifests/{env}/{CONFIGMAP_FILE}", fix=f"run `gtcdemo render --env {env} --write` and commit it"))
    errors.extend(validate_dgd(dgd, configmap, where=f"manifests/{env} DGD {dgd.get('metadata', {}).get('name')}"))
    for path, doc in docs:
        if doc.get("kind") == "PersistentVolumeClaim":
            errors.extend(validate_pvc(doc, path.name))
        if doc.get("kind") not in APPLY_ORDER:
            errors.append(ConfigError(f"unexpected kind {doc.get('kind')!r}", where=path.name,
                                      fix=f"manifests/<env>/ holds only {', '.join(APPLY_ORDER)}"))
    if errors:
        raise ValidationErrors(errors)
    claims = [d for _, d in docs if d.get("kind") == "PersistentVolumeClaim"]
    objects = sorted([*claims, configmap, dgd], key=lambda o: APPLY_ORDER[o["kind"]])
    return Bundle(env=env, objects=objects, engine_configs=configs)
