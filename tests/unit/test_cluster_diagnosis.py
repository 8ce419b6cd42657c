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

from gtcdemo.cluster import diagnose_pod, pod_phase, pod_ready, pods_frame

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _pod(*, waiting: str | None = None, message: str = "", phase: str = "Pending",
         conditions: list[V1PodCondition] | None = None, age_s: float = 10, restarts: int = 0) -> V1Pod:
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
        spec=V1PodSpec(containers=[V1Container(name="main")]),
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
     "kai.scheduler/queue"),
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
