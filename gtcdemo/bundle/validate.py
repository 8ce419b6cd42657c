"""A bundle's objects checked before anything is applied: what the API server, the Dynamo operator and the workers
would otherwise refuse, silently drop or crash-loop on, each problem with its location and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import release
from ..args import arg_value, container_args, mapping
from ..errors import ConfigError
from .names import check_names
from .schema import (
    BACKENDS,
    COMPONENT_TYPES,
    DEFAULT_KAI_QUEUE,
    DGD_API_VERSION,
    GPU_TOLERATION_KEY,
    KAI_QUEUE_ANNOTATION,
    KAI_QUEUE_LABEL,
    SERVICE_KEYS,
    SPEC_KEYS,
    SUB_COMPONENT_TYPES,
    Problems,
)


def validate_pvc(pvc: dict, where: str) -> list[ConfigError]:
    """The fields a claim needs: name, namespace, access modes and a storage request."""
    errors = Problems()
    meta, spec = mapping(pvc.get("metadata")), mapping(pvc.get("spec"))
    name = meta.get("name", "?")
    errors.check(bool(meta.get("name")) and bool(meta.get("namespace")), "PVC metadata.name and namespace are "
                 "required", f"{where}: metadata", "set metadata.name (model-nfs-pvc) and metadata.namespace")
    errors.check(bool(spec.get("accessModes")), f"PVC {name} has no spec.accessModes", f"{where}: spec.accessModes",
                 "add `accessModes: [ReadWriteMany]` (NFS, shared by all workers)")
    storage = mapping(mapping(spec.get("resources")).get("requests")).get("storage")
    errors.check(bool(storage), f"PVC {name} has no spec.resources.requests.storage",
                 f"{where}: spec.resources.requests.storage", "add `resources: {requests: {storage: 100Gi}}`")
    return errors


def validate_dgd(dgd: dict, configmap: dict, where: str = "DGD") -> list[ConfigError]:
    """Problems in the DGD against the CRD fields this project knows and against the ConfigMap it mounts."""
    errors = Problems()
    spec = _check_spec(dgd, where, errors)
    services = _check_services_map(spec, where, errors) if spec is not None else None
    if services is None:
        return errors
    pvcs = {p.get("name") for p in spec.get("pvcs") or [] if isinstance(p, dict)}
    for name, svc in services.items():
        at = f"{where}.spec.services.{name}"
        if errors.check(isinstance(svc, dict), "service must be a map", at, "write the service's fields"):
            _check_service(svc, at, spec.get("backendFramework"), pvcs, configmap, errors)
    _check_across_services(services, configmap, where, errors)
    errors += check_release(dgd, where)
    errors += check_names(dgd, where)
    return errors


def check_release(dgd: dict, where: str = "DGD") -> list[ConfigError]:
    """The Dynamo release the DGD's images name: one for all services, and Frontend bucket settings it reads
    (the rules and their Dynamo sources are in gtcdemo/release.py, ``check_dgd``)."""
    return release.check_dgd(dgd, where)


def _check_spec(dgd: dict, where: str, errors: Problems) -> dict | None:
    """apiVersion, metadata and the spec's own fields; the spec, or None when there is none to look into."""
    meta = mapping(dgd.get("metadata"))
    errors.check(dgd.get("apiVersion") == DGD_API_VERSION, f"apiVersion is {dgd.get('apiVersion')!r}",
                 f"{where}.apiVersion", f"use {DGD_API_VERSION} (the installed CRD)")
    errors.check(bool(meta.get("name")) and bool(meta.get("namespace")), "metadata.name and namespace are required",
                 f"{where}.metadata", "set metadata.name (gtc-demo) and metadata.namespace (dynamo-workload)")
    spec = dgd.get("spec")
    if not errors.check(isinstance(spec, dict), "spec is missing", f"{where}.spec", "add a spec"):
        return None
    errors.unknown(set(spec), SPEC_KEYS, f"{where}.spec")
    errors.check(spec.get("backendFramework") in BACKENDS, f"backendFramework is {spec.get('backendFramework')!r}",
                 f"{where}.spec.backendFramework", f"use one of {sorted(BACKENDS)} (trtllm here)")
    check_envs(spec.get("envs"), f"{where}.spec.envs", errors)
    return spec


def _check_services_map(spec: dict, where: str, errors: Problems) -> dict | None:
    services = spec.get("services")
    if not errors.check(isinstance(services, dict) and services, "spec.services is empty or not a map",
                        f"{where}.spec.services",
                        "declare Frontend, TrtllmPrefillWorker and TrtllmDecodeWorker (disaggregated, as in "
                        "manifests/dev/) or Frontend and TrtllmWorker (aggregated, as in manifests/agg/)"):
        return None
    errors.check(len(services) <= 25, f"{len(services)} services (the CRD allows 25)", f"{where}.spec.services",
                 "remove services")
    return services


def _check_service(svc: dict, at: str, backend: Any, pvcs: set, configmap: dict, errors: Problems) -> None:
    """One service: its fields, envs, program, labels, role, replicas, mounts, GPU and (workers) engine args."""
    errors.unknown(set(svc), SERVICE_KEYS, at)
    check_envs(svc.get("envs"), f"{at}.envs", errors)
    ctype = svc.get("componentType")
    _check_command(svc, ctype, backend, at, errors)
    _check_kai_label(svc, at, errors)
    _check_role(svc, at, errors)
    _check_volume_mounts(svc, at, pvcs, errors)
    _check_gpu(svc, at, errors)
    if ctype == "worker":
        _check_worker_args(svc, at, configmap, errors)


def check_envs(entries: Any, at: str, errors: Problems) -> None:
    """Env entries are {name, value} or {name, valueFrom}; anything else the API server would silently drop."""
    for i, env in enumerate(entries or []):
        if not errors.check(isinstance(env, dict) and "name" in env, f"env entry {env!r} has no name", f"{at}[{i}]",
                            "write `- name: X` / `value: \"...\"`"):
            continue
        errors.unknown(set(env), {"name", "value", "valueFrom"}, f"{at}[{i}]")
        errors.check("value" in env or "valueFrom" in env, f"env {env['name']} has no value", f"{at}[{i}]",
                     f"add `value: \"...\"` under `- name: {env['name']}`")


def _check_command(svc: dict, ctype: Any, backend: Any, at: str, errors: Problems) -> None:
    """``args`` without ``command`` only works where the operator supplies the program.

    Dynamo 0.8 gives every main container ``command: [/bin/sh, -c]``
    (deploy/operator/internal/dynamo/component_common.go, getCommonContainer) and only the Frontend a program of
    its own: ``python3`` + args ``-m dynamo.frontend`` (component_frontend.go); worker, planner and other types keep
    the shell (component_worker.go, component_planner.go). The DGD's mainContainer is merged over that with
    mergo.WithOverride (graph.go, GenerateBasePodSpec): given ``args`` replace the defaults, an absent ``command``
    keeps them. So a worker's ``--model-path ...`` reaches ``/bin/sh -c`` as an option (CrashLoopBackOff), and a
    Frontend's own args replace ``-m dynamo.frontend``.
    """
    main = mapping(mapping(svc.get("extraPodSpec")).get("mainContainer"))
    args, command = main.get("args"), main.get("command")
    at = f"{at}.extraPodSpec.mainContainer"
    if command is not None and command != []:  # an empty list is no command: the operator's default stays
        errors.check(isinstance(command, list) and bool(command) and all(isinstance(c, str) for c in command),
                     f"command is {command!r}, not a list of strings", f"{at}.command",
                     "write it as a list, e.g. `command: [python3, -m, dynamo.trtllm]`")
        return
    if not args:
        return
    if ctype == "frontend":
        errors.check(list(args[:2]) == ["-m", "dynamo.frontend"], "args without command replace the operator's "
                     "default `-m dynamo.frontend`, so python3 would run your first arg", f"{at}.args",
                     "start args with `-m`, `dynamo.frontend`, or add `command: [python3, -m, dynamo.frontend]`")
        return
    known = backend if backend in BACKENDS else "trtllm"
    errors.append(ConfigError(
        f"{ctype or 'this'} service has args but no command: the operator runs `/bin/sh -c` with these args, so the "
        f"shell takes {str(args[0])!r} for an option and the container crash-loops", where=f"{at}.command",
        fix=f"add `command: [python3, -m, dynamo.{known}]` beside args (as Dynamo's "
            f"examples/backends/{known}/deploy/disagg.yaml does)"))


def _check_kai_label(svc: dict, at: str, errors: Problems) -> None:
    """The KAI queue is the DGD annotation's: the operator overwrites a queue label on the pods."""
    errors.check(KAI_QUEUE_LABEL not in mapping(svc.get("labels")),
                 f"label {KAI_QUEUE_LABEL} is overwritten by the operator with the queue the DGD annotation "
                 f"{KAI_QUEUE_ANNOTATION} names (default {DEFAULT_KAI_QUEUE!r})", f"{at}.labels.{KAI_QUEUE_LABEL}",
                 f"remove the label and set `metadata.annotations: {{{KAI_QUEUE_ANNOTATION}: <queue>}}` on the DGD")


def _check_role(svc: dict, at: str, errors: Problems) -> None:
    """componentType, subComponentType, replicas and the scaling adapter, as the CRD takes them."""
    ctype, sub = svc.get("componentType"), svc.get("subComponentType")
    errors.check(ctype in COMPONENT_TYPES, f"componentType is {ctype!r}", f"{at}.componentType",
                 f"use one of {sorted(COMPONENT_TYPES)}")
    if sub is not None:
        errors.check(sub in SUB_COMPONENT_TYPES, f"subComponentType is {sub!r}", f"{at}.subComponentType",
                     "use prefill or decode")
    replicas = svc.get("replicas", 1)
    errors.check(isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0,
                 f"replicas is {replicas!r}", f"{at}.replicas", "use a whole number >= 0")
    adapter = svc.get("scalingAdapter")
    if adapter is not None:
        errors.check(isinstance(adapter, dict) and set(adapter) <= {"enabled", "disable"},
                     f"scalingAdapter is {adapter!r}", f"{at}.scalingAdapter",
                     "use `enabled: true` (CRD >= 0.9) or `disable: false` (0.8)")


def _check_volume_mounts(svc: dict, at: str, pvcs: set, errors: Problems) -> None:
    """Each mount names a PVC of spec.pvcs, at an absolute path."""
    for j, mount in enumerate(svc.get("volumeMounts") or []):
        if not errors.check(isinstance(mount, dict), f"volumeMounts[{j}] is {mount!r}, not a mapping",
                            f"{at}.volumeMounts[{j}]", "write `- name: model-nfs-pvc` / `mountPoint: /models`"):
            continue
        errors.check(mount.get("name") in pvcs, f"volumeMounts[{j}] names PVC {mount.get('name')!r}, which is "
                     f"not registered in spec.pvcs {sorted(pvcs)}", f"{at}.volumeMounts[{j}].name",
                     f"add `- name: {mount.get('name')}` to spec.pvcs, or mount one of {sorted(pvcs)}")
        errors.check(str(mount.get("mountPoint", "")).startswith("/"), "mountPoint must be an absolute path",
                     f"{at}.volumeMounts[{j}].mountPoint", "set mountPoint: /models")


def _check_gpu(svc: dict, at: str, errors: Problems) -> None:
    """A whole number of GPUs; a service that asks for one tolerates the GPU nodes' taint, or never schedules."""
    gpus = str(mapping(mapping(svc.get("resources")).get("limits")).get("gpu", "0"))
    errors.check(gpus.isdigit(), f"resources.limits.gpu is {gpus!r}", f"{at}.resources.limits.gpu",
                 'use a quoted whole number, e.g. "1"')
    if gpus.isdigit() and int(gpus) > 0:
        tolerations = mapping(svc.get("extraPodSpec")).get("tolerations") or []
        errors.check(any(_tolerates_gpu_taint(mapping(t)) for t in tolerations), "requests a GPU but does not "
                     f"tolerate the GPU nodes' taint {GPU_TOLERATION_KEY}:NoSchedule, so it would never schedule",
                     f"{at}.extraPodSpec.tolerations",
                     f"add `- {{key: {GPU_TOLERATION_KEY}, operator: Exists, effect: NoSchedule}}`")


def _tolerates_gpu_taint(toleration: dict) -> bool:
    """Kubernetes semantics: an empty key with operator Exists tolerates every taint; an empty effect, every effect."""
    key_ok = toleration.get("key") == GPU_TOLERATION_KEY or (not toleration.get("key")
                                                              and toleration.get("operator") == "Exists")
    return key_ok and toleration.get("effect") in (None, "", "NoSchedule")


def _arg(svc: dict, flag: str) -> str | None:
    return arg_value(container_args(svc), flag)


def _check_worker_args(svc: dict, at: str, configmap: dict, errors: Problems) -> None:
    """A worker names the served model, runs its own disaggregation mode, and reads an engine config that exists."""
    args_at = f"{at}.extraPodSpec.mainContainer.args"
    errors.check(_arg(svc, "--served-model-name") is not None, "worker has no --served-model-name", args_at,
                 "add `--served-model-name meta-llama/Llama-3.1-8B-Instruct`")
    sub, mode = svc.get("subComponentType"), _arg(svc, "--disaggregation-mode")
    if sub is not None:
        errors.check(mode == sub, f"--disaggregation-mode is {mode!r} but subComponentType is {sub!r}", args_at,
                     f"pass `--disaggregation-mode {sub}`")
    _check_engine_args(svc, at, configmap, errors)


def _check_engine_args(svc: dict, at: str, configmap: dict, errors: Problems) -> None:
    """Every --extra-engine-args path must be served by a mounted volume of the generated ConfigMap."""
    path = _arg(svc, "--extra-engine-args")
    if path is None:
        return
    cm_name, cm_keys = mapping(configmap.get("metadata")).get("name"), set(configmap.get("data", {}))
    pod = mapping(svc.get("extraPodSpec"))
    volumes = {mapping(v).get("name"): mapping(v) for v in pod.get("volumes") or []}
    for mount in (mapping(pod.get("mainContainer")).get("volumeMounts") or []):
        mount = mapping(mount)
        prefix = str(mount.get("mountPath", "")).rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes.get(mount.get("name"))
        if volume is None:
            errors.append(ConfigError(f"volumeMount {mount.get('name')!r} has no matching volume",
                                      where=f"{at}.extraPodSpec.volumes",
                                      fix=f"add a volume named {mount.get('name')!r}"))
            return
        source = mapping(volume.get("configMap")).get("name")
        key = path[len(prefix):]
        errors.check(source == cm_name, f"{path} comes from ConfigMap {source!r}, not the generated {cm_name!r}",
                     f"{at}.extraPodSpec.volumes", f"mount ConfigMap {cm_name}")
        errors.check(key in cm_keys, f"--extra-engine-args {path} needs key {key!r}, but ConfigMap {cm_name} "
                     f"has {sorted(cm_keys)}", f"{at}.extraPodSpec.mainContainer.args",
                     f"point it at one of {sorted(cm_keys)} or add engine-configs/<env>/{key}")
        return
    errors.append(ConfigError(f"--extra-engine-args {path} is not under any mounted volume", where=f"{at}.extraPodSpec",
                              fix="mount the engine-config ConfigMap at /engine-configs in mainContainer.volumeMounts"))


def _check_across_services(services: dict, configmap: dict, where: str, errors: Problems) -> None:
    """What holds for the graph as a whole: every engine config read, one served model, one frontend."""
    valid = {name: svc for name, svc in services.items() if isinstance(svc, dict)}
    cm_keys = set(configmap.get("data", {}))
    referenced = {Path(p).name for p in (_arg(s, "--extra-engine-args") for s in valid.values()) if p}
    # (When a worker names a key that does not exist, that error says it all: do not also list the one it missed.)
    for key in sorted(cm_keys - referenced) if referenced <= cm_keys else []:
        errors.append(ConfigError(
            f"ConfigMap key {key!r} is referenced by no worker's --extra-engine-args (workers read "
            f"{sorted(referenced)})", where=f"{where}.spec.services",
            fix=f"point a worker's --extra-engine-args at /engine-configs/{key}, or remove engine-configs/<env>/{key}"))
    served = {name: model for name, svc in valid.items() if svc.get("componentType") == "worker"
              and (model := _arg(svc, "--served-model-name")) is not None}
    if len(set(served.values())) > 1:
        errors.append(ConfigError(f"workers serve different model names: {served}", where=f"{where}.spec.services",
                                  fix="use one --served-model-name across all workers"))
    frontends = sum(svc.get("componentType") == "frontend" for svc in valid.values())
    errors.check(frontends == 1, f"{frontends} frontend services", f"{where}.spec.services",
                 "declare exactly one service with componentType: frontend")
