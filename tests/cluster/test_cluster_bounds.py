"""Replica counts checked against the GPUs the nodes have (preflight's node listing) before anything is applied
(issue 12). The bad-input table holds the refusals through the user's entry points (cluster-*-beyond-the-gpus)."""

from __future__ import annotations

import pytest
from kubernetes import client

from gtcdemo import bundle as bundle_mod
from gtcdemo.cluster import ClusterTarget
from gtcdemo.cluster.preflight import gpus_requested
from gtcdemo.errors import DeploymentError
from tests.cluster.operator import FakeKubelet


@pytest.fixture
def target(platform, kubelet: FakeKubelet) -> ClusterTarget:
    return ClusterTarget("dev", kubeconfig=str(platform.kubeconfig), access=kubelet)


def _two_gpu_decode() -> bundle_mod.Bundle:
    b = bundle_mod.load("dev")
    b.services["TrtllmDecodeWorker"]["resources"]["limits"]["gpu"] = "2"
    return b


def test_gpus_requested_counts_replicas_and_the_largest_pod() -> None:
    b = _two_gpu_decode()
    assert gpus_requested(b.services) == (3, 2)
    b.services["TrtllmDecodeWorker"]["replicas"] = 0  # a service scaled to zero has no pod to place
    assert gpus_requested(b.services) == (1, 1)


def test_a_pod_needing_more_gpus_than_any_node_has_fails_preflight_and_apply(target: ClusterTarget,
                                                                             platform) -> None:
    """The demo cluster's nodes have one H100 each: a 2-GPU worker (tensor parallel 2) can never be scheduled, even
    though the nodes have 3 GPUs in total (a pod cannot span nodes)."""
    target._bundle = _two_gpu_decode()
    check = next(r for r in target.preflight().rows if r["check"] == "GPU nodes")
    assert check["result"] == "FAIL" and "a pod needs 2, more than any one node has" in check["detail"]
    with pytest.raises(DeploymentError, match=r"at most 2 in one pod.*at most 1 on one node"):
        target.apply()
    dgds = client.CustomObjectsApi(platform.api_client).list_namespaced_custom_object(
        "nvidia.com", "v1alpha1", "dynamo-workload", "dynamographdeployments")["items"]
    assert dgds == []  # nothing was applied
