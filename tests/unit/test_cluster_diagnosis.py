"""Pod diagnosis is pure: states that will not heal are recognised from the pod alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from gtcdemo.cluster.diagnosis import dgd_failure, diagnose_pod, pod_ready, refused_argument
from gtcdemo.cluster.tables import pod_phase, pods_frame

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _pod(*, waiting: str | None = None, message: str = "", phase: str = "Pending",
         conditions: list[V1PodCondition] | None = None, age_s: float = 10, restarts: int = 0,
         command: list[str] | None = None) -> V1Pod:
    statuses = None
    if waiting:
        statuses = [V1ContainerStatus(name="main", image="nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1",
                                      image_id="", ready=False, restart_count=restarts,
                                      state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting,
                                                                                              message=message)))]
    return V1Pod(
        metadata=V1ObjectMeta(name="gtc-demo-0-trtllmdecodeworker-abcde", creation_timestamp=NOW - timedelta(
            seconds=age_s), labels={"nvidia.com/dynamo-component": "TrtllmDecodeWorker",
                                    "nvidia.com/dynamo-sub-component-type": "decode"}),
        spec=V1PodSpec(containers=[V1Container(name="main", command=command)]),
        status=V1PodStatus(phase=phase, container_statuses=statuses, conditions=conditions))


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> V1PodCondition:
    return V1PodCondition(type=type_, status=status, reason=reason, message=message)


@pytest.mark.parametrize(("pod", "reason", "fix_part"), [
    (_pod(waiting="ImagePullBackOff", message="401 Unauthorized"), "ImagePullBackOff", "NGC pull secret"),
    (_pod(waiting="ErrImagePull"), "ErrImagePull", "image tag"),
    (_pod(waiting="CrashLoopBackOff", phase="Running", restarts=4), "CrashLoopBackOff", "last log lines"),
    (_pod(waiting="CreateContainerConfigError", message='secret "hf-token" not found'),
     "CreateContainerConfigError", "create secret generic hf-token"),
    (_pod(conditions=[_cond("PodScheduled", "False", "Unschedulable",
                            "0/5 nodes are available: 3 Insufficient nvidia.com/gpu.")]), "Unschedulable",
     "free a GPU node"),
    (_pod(conditions=[_cond("PodScheduled", "False", "Unschedulable",
                            "0/5 nodes are available: 3 node(s) had untolerated taint {nvidia.com/gpu: }")]),
     "Unschedulable", "toleration"),
    (_pod(conditions=[_cond("PodScheduled", "False", "SchedulingGated")], age_s=301), "SchedulingGated",
     "nvidia.com/kai-scheduler-queue"),
    (_pod(age_s=400), "Pending", "events"),
], ids=["image-pull-backoff", "err-image-pull", "crash-loop", "missing-secret", "insufficient-gpu",
        "untolerated-taint", "gated-too-long", "pending-too-long"])
def test_unhealable_states_are_diagnosed(pod: V1Pod, reason: str, fix_part: str) -> None:
    problem = diagnose_pod(pod, NOW, pending_bound_s=300)
    assert problem is not None and problem.reason == reason
    assert fix_part in problem.fix
    assert problem.pod in str(problem)


@pytest.mark.parametrize("pod", [
    _pod(age_s=30),  # pending briefly: a normal start
    _pod(conditions=[_cond("PodScheduled", "False", "SchedulingGated")], age_s=30),
    _pod(waiting="ContainerCreating", age_s=30),
    _pod(phase="Running", conditions=[_cond("Ready", "False")], age_s=3000),  # a slow model load heals
], ids=["pending-briefly", "gated-briefly", "creating", "slow-model-load"])
def test_states_that_heal_are_not_failures(pod: V1Pod) -> None:
    assert diagnose_pod(pod, NOW, pending_bound_s=300) is None


def test_ready_phase_and_table() -> None:
    ready = _pod(phase="Running", conditions=[_cond("Ready", "True")])
    ready.status.container_statuses = [V1ContainerStatus(name="main", image="i", image_id="", ready=True,
                                                         restart_count=1, state=V1ContainerState())]
    crashing = _pod(waiting="CrashLoopBackOff", phase="Running", restarts=3)
    assert pod_ready(ready) and not pod_ready(crashing)
    assert pod_phase(crashing) == "CrashLoopBackOff" and pod_phase(ready) == "Running"
    frame = pods_frame([ready], NOW)
    assert frame.loc[0, ["service", "role", "phase", "ready", "restarts"]].tolist() == [
        "TrtllmDecodeWorker", "decode", "Running", "1/1", 1]


# -- a crash loop's cause, from the last log lines ------------------------------------------------------------------
# What a program prints when it is handed the DGD's `--model-path ...` as its option or program: the class of message
# (a refusal phrase on a line carrying a `--` word), in the spellings of several shells and entrypoints.
REFUSALS = [
    "/bin/sh: 0: Illegal option --",                                               # dash (Debian/Ubuntu /bin/sh)
    "/bin/sh: --model-path: invalid option",                                      # bash as /bin/sh
    "/opt/nvidia/nvidia_entrypoint.sh: line 67: exec: --: invalid option",        # an entrypoint's `exec "$@"`
    "[FATAL tini (7)] exec --model-path failed: No such file or directory",       # tini
    "/usr/local/bin/entrypoint.sh: 12: exec: --model-path: not found",            # dash's exec
]


@pytest.mark.parametrize("line", REFUSALS)
@pytest.mark.parametrize("command", [None, ["/bin/sh", "-c"]], ids=["no-command", "operator-default-shell"])
def test_crash_loop_of_a_worker_without_command_names_the_missing_command(line: str, command) -> None:
    pod = _pod(waiting="CrashLoopBackOff", phase="Running", restarts=3, command=command)
    logs = f"NVIDIA Release 25.10 (build 220001)\nContainer image Copyright (c) 2025\n{line}\n"
    problem = diagnose_pod(pod, NOW, pending_bound_s=300, logs=lambda name: logs)
    assert problem is not None and problem.reason == "CrashLoopBackOff"
    assert "has no program of its own" in problem.message and repr(line) in problem.message
    assert problem.fix.startswith("add `command: [python3, -m, dynamo.trtllm]` to spec.services.TrtllmDecodeWorker."
                                  "extraPodSpec.mainContainer in manifests/<env>/20-dgd-gtc-demo.yaml")
    assert "free_gpu_memory_fraction" not in problem.fix


def test_crash_loop_of_a_worker_with_a_program_that_refuses_an_arg_points_at_the_args() -> None:
    pod = _pod(waiting="CrashLoopBackOff", phase="Running", command=["python3", "-m", "dynamo.trtllm"])
    logs = "usage: __main__.py [-h] ...\n__main__.py: error: unrecognized arguments: --publish-events\n"
    problem = diagnose_pod(pod, NOW, pending_bound_s=300, logs=lambda name: logs)
    assert problem is not None and "python3 -m dynamo.trtllm refuses an argument" in problem.message
    assert problem.fix.startswith("fix spec.services.TrtllmDecodeWorker.extraPodSpec.mainContainer.args")


@pytest.mark.parametrize("logs", [
    "[TensorRT-LLM][ERROR] CUDA runtime error in cudaMalloc: out of memory\nKilled\n",
    "loading weights from /models/meta-llama/Llama-3.1-8B-Instruct: not found\n",  # no option word: not an arg
    "",
], ids=["oom", "missing-file-is-not-an-argument", "no-logs"])
def test_crash_loop_without_an_argument_refusal_keeps_the_generic_advice(logs: str) -> None:
    pod = _pod(waiting="CrashLoopBackOff", phase="Running", restarts=2)
    problem = diagnose_pod(pod, NOW, pending_bound_s=300, logs=lambda name: logs)
    assert problem is not None and problem.message == "container main keeps crashing (restarts 2)"
    assert "free_gpu_memory_fraction" in problem.fix
    assert refused_argument(logs) is None


def test_logs_are_read_only_for_a_crash_looping_pod() -> None:
    def no_logs(name: str) -> str:
        raise AssertionError(f"logs of {name} read for a pod that is not crash-looping")

    assert diagnose_pod(_pod(age_s=30), NOW, pending_bound_s=300, logs=no_logs) is None
    assert diagnose_pod(_pod(waiting="ImagePullBackOff"), NOW, pending_bound_s=300, logs=no_logs).reason == \
        "ImagePullBackOff"


# -- the DGD's own verdict --------------------------------------------------------------------------------------------
def _dgd(state: str, status: str, reason: str, message: str) -> dict:
    """A DGD status as the 0.8 controller writes it (dynamographdeployment_controller.go, Reconcile's defer)."""
    ready = {"type": "Ready", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": "2026-11-27T12:00:00Z"}
    return {"status": {"state": state, "conditions": [ready]}}


QUEUE_MESSAGE = ("failed to reconcile the Grove PodClique Set: failed to generate the Grove GangSet: failed to "
                 "determine kai-scheduler queue: kai-scheduler queue validation failed: queue 'dynamo' not found in "
                 "cluster. Ensure the queue exists before using kai-scheduler")


@pytest.mark.parametrize(("dgd", "expected"), [
    (_dgd("failed", "False", "failed_to_reconcile_the_resources", QUEUE_MESSAGE),
     f"failed_to_reconcile_the_resources: {QUEUE_MESSAGE}"),
    (_dgd("failed", "False", "ValidationFailed", "Validation failed: spec.services must have at least one service"),
     "ValidationFailed: Validation failed: spec.services must have at least one service"),
    (_dgd("pending", "False", "ValidationFailed", "Validation failed: x"), "ValidationFailed: Validation failed: x"),
    ({"status": {"state": "failed"}}, "failed: (no message)"),
], ids=["reconcile-failed", "validation-failed", "ready-false-validation-reason", "failed-without-condition"])
def test_a_failed_dgd_is_a_failure_with_the_conditions_message(dgd: dict, expected: str) -> None:
    assert dgd_failure(dgd) == expected


@pytest.mark.parametrize("dgd", [
    _dgd("pending", "False", "some_resources_are_not_ready", "Resources not ready: gtc-demo: podclique not ready"),
    _dgd("successful", "True", "all_resources_are_ready", "All resources are ready"),
    _dgd("failed", "False", "failed_to_reconcile_the_resources", 'Operation cannot be fulfilled on '
         'dynamographdeployments.nvidia.com "gtc-demo": the object has been modified; please apply your changes to '
         'the latest version and try again'),
    {}, {"status": {}},
], ids=["pending", "successful", "update-conflict-retried", "no-dgd", "no-status"])
def test_a_dgd_on_its_way_is_not_a_failure(dgd: dict) -> None:
    assert dgd_failure(dgd) is None
