"""States that will not heal by waiting, recognised from the API objects alone (pure: no API calls)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import bundle as bundle_mod
from ..clock import seconds_since
from .names import COMPONENT_LABEL, GPU_RESOURCE


@dataclass(frozen=True)
class Problem:
    """A state that will not heal by waiting."""

    pod: str
    reason: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.pod}: {self.reason}: {self.message}\n  fix: {self.fix}"


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


def _unschedulable_fix(message: str) -> str:
    if GPU_RESOURCE in message and "Insufficient" in message:
        return "free a GPU node (each worker needs one H100) or lower the workers' replicas"
    if "taint" in message:
        return "add the toleration {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}"
    return "see the scheduler's message; `kubectl describe pod` shows the same"


def diagnose_pod(pod: Any, now: datetime, pending_bound_s: float,
                 logs: Callable[[str], str] | None = None) -> Problem | None:
    """The unhealable state of one pod (a V1Pod), if any: image pulls, crash loops, scheduling, gates.

    ``logs(pod_name)`` (the last log lines) is called only for a crash-looping pod, to name the cause.
    """
    name, status = pod.metadata.name, pod.status
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
    age_s = seconds_since(pod.metadata.creation_timestamp, now)
    for cond in status.conditions or []:
        if cond.type != "PodScheduled" or cond.status != "False":
            continue
        if cond.reason == "Unschedulable":
            return Problem(name, "Unschedulable", cond.message or "", _unschedulable_fix(cond.message or ""))
        if cond.reason == "SchedulingGated" and age_s > pending_bound_s:
            queue_name = (pod.metadata.labels or {}).get("kai.scheduler/queue", "?")
            return Problem(name, "SchedulingGated", f"gated for more than {pending_bound_s:.0f} s (pod label "
                           f"kai.scheduler/queue={queue_name})", "check that this KAI queue exists (`kubectl get "
                           "queues`) and has GPU quota; the DGD names it in its annotation "
                           f"{bundle_mod.KAI_QUEUE_ANNOTATION} (the operator sets the label from it)")
    if status.phase == "Pending" and age_s > pending_bound_s:
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
    """Running, with its Ready condition True (what the kubelet reports once every readiness probe passes)."""
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True"
                                                 for c in pod.status.conditions or [])
