"""The harness itself: a real API server with our CRDs, and a FakeOperator whose objects look like the real ones."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ..conftest import poll
from .conftest import FAKE_HF_TOKEN, Kube
from .envtest import DEFAULT_CONTEXT, NAMESPACES, OTHER_CONTEXT, EnvTest
from .operator import (
    DGD_PLURAL,
    DGDSA_PLURAL,
    GPU_NODES,
    GROUP,
    L_COMPONENT,
    L_COMPONENT_TYPE,
    L_DGD,
    L_DYN_NAMESPACE,
    L_METRICS,
    L_SELECTOR,
    L_SUB_COMPONENT_TYPE,
    MGMT_NODES,
    VERSION,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DGD_MANIFEST = REPO_ROOT / "manifests" / "dev" / "20-dgd-gtc-demo.yaml"
NS = "dynamo-workload"
SERVICES = ("Frontend", "TrtllmPrefillWorker", "TrtllmDecodeWorker")




def dev_dgd() -> dict:
    return yaml.safe_load(DGD_MANIFEST.read_text())


def create_dgd(kube: Kube, body: dict | None = None) -> dict:
    body = body or dev_dgd()
    return client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"].get("namespace", NS), DGD_PLURAL, body)


def conditions(pod: client.V1Pod) -> dict[str, client.V1PodCondition]:
    return {c.type: c for c in (pod.status.conditions or [])}


# -- the server ---------------------------------------------------------------------------------------------------
def test_server_namespaces_and_contexts(envtest: EnvTest, kube: Kube) -> None:
    contexts, current = config.list_kube_config_contexts(config_file=str(kube.kubeconfig))
    assert current["name"] == DEFAULT_CONTEXT
    assert {c["name"] for c in contexts} == {DEFAULT_CONTEXT, OTHER_CONTEXT}
    for ctx in (DEFAULT_CONTEXT, OTHER_CONTEXT):
        with envtest.api_client(ctx) as api:
            assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    names = {ns.metadata.name for ns in client.CoreV1Api(kube.api_client).list_namespace().items}
    assert set(NAMESPACES) <= names
    # The session points the kubernetes client's defaults at the test server.
    default_api = config.new_client_from_config()
    try:
        assert default_api.configuration.host == envtest.server
    finally:
        default_api.close()


def test_crds_established_and_short_names_discoverable(kube: Kube) -> None:
    ext = client.ApiextensionsV1Api(kube.api_client)
    for plural in (DGD_PLURAL, DGDSA_PLURAL):
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    resources = client.CustomObjectsApi(kube.api_client).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in resources}
    assert by_name[DGD_PLURAL].short_names == ["dgd"]
    assert by_name[DGD_PLURAL].kind == "DynamoGraphDeployment"
    assert by_name[DGDSA_PLURAL].short_names == ["dgdsa"]
    assert {f"{DGD_PLURAL}/status", f"{DGDSA_PLURAL}/status", f"{DGDSA_PLURAL}/scale"} <= set(by_name)


# -- the CRD schema -----------------------------------------------------------------------------------------------
def test_valid_dgd_is_created(kube: Kube) -> None:
    created = create_dgd(kube)
    assert created["metadata"]["name"] == "gtc-demo"
    got = kube.operator.get_dgd("gtc-demo")
    # Nothing of the repo's DGD was pruned by the schema: every field gtcdemo writes is in it.
    assert got["spec"] == dev_dgd()["spec"]


@pytest.mark.parametrize(("service", "field", "value"), [
    ("TrtllmPrefillWorker", "replicas", "two"),
    ("Frontend", "componentType", "banana"),
    ("TrtllmDecodeWorker", "subComponentType", "middle"),
    ("TrtllmDecodeWorker", "replicas", -1),
])
def test_invalid_dgd_is_rejected_with_422(kube: Kube, service: str, field: str, value: object) -> None:
    body = dev_dgd()
    body["spec"]["services"][service][field] = value
    with pytest.raises(ApiException) as err:
        create_dgd(kube, body)
    assert err.value.status == 422
    assert field in err.value.body


def test_invalid_backend_and_too_many_services_are_rejected(kube: Kube) -> None:
    body = dev_dgd()
    body["spec"]["backendFramework"] = "tensorflow"
    with pytest.raises(ApiException) as err:
        create_dgd(kube, body)
    assert err.value.status == 422
    body = dev_dgd()
    frontend = body["spec"]["services"]["Frontend"]
    body["spec"]["services"] = {f"Svc{i}": copy.deepcopy(frontend) for i in range(26)}
    with pytest.raises(ApiException) as err:
        create_dgd(kube, body)
    assert err.value.status == 422


# -- the fake operator --------------------------------------------------------------------------------------------
def test_reconcile_creates_pods_service_and_adapters(kube: Kube) -> None:
    create_dgd(kube)
    pods = kube.operator.reconcile("gtc-demo")
    assert set(pods) == set(SERVICES)
    assert all(len(names) == 1 for names in pods.values())
    core = client.CoreV1Api(kube.api_client)
    listed = core.list_namespaced_pod(NS, label_selector=f"{L_DGD}=gtc-demo").items
    assert len(listed) == 3
    prefill = next(p for p in listed if p.metadata.labels[L_COMPONENT] == "TrtllmPrefillWorker")
    assert prefill.metadata.name.startswith("gtc-demo-0-trtllmprefillworker-")
    assert len(prefill.metadata.name.rsplit("-", 1)[1]) == 5
    labels = prefill.metadata.labels
    assert labels[L_COMPONENT_TYPE] == "worker"
    assert labels[L_SUB_COMPONENT_TYPE] == "prefill"
    assert labels[L_DYN_NAMESPACE] == "dynamo-workload-gtc-demo"
    assert labels[L_SELECTOR] == "gtc-demo-trtllmprefillworker"
    assert labels[L_METRICS] == "true"
    assert labels["kai.scheduler/queue"] == "default-queue"
    main = prefill.spec.containers[0]
    assert main.name == "main"
    assert main.image == "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1"
    assert main.resources.limits["nvidia.com/gpu"] == "1"
    assert main.env_from[0].secret_ref.name == "hf-token"
    assert any(t.key == "nvidia.com/gpu" for t in prefill.spec.tolerations)
    assert prefill.spec.node_name is None
    assert prefill.status.phase == "Pending"
    assert prefill.metadata.owner_references[0].kind == "DynamoGraphDeployment"

    svc = core.read_namespaced_service("gtc-demo-frontend", NS)
    assert [(p.name, p.port) for p in svc.spec.ports] == [("http", 8000)]
    assert svc.metadata.labels[L_DGD] == "gtc-demo"
    assert svc.metadata.labels[L_COMPONENT_TYPE] == "frontend"
    frontend_pod = core.read_namespaced_pod(pods["Frontend"][0], NS)
    assert all(frontend_pod.metadata.labels[k] == v for k, v in svc.spec.selector.items())

    custom = client.CustomObjectsApi(kube.api_client)
    adapters = custom.list_namespaced_custom_object(GROUP, VERSION, NS, DGDSA_PLURAL)["items"]
    assert sorted(a["metadata"]["name"] for a in adapters) == [
        "gtc-demo-trtllmdecodeworker", "gtc-demo-trtllmprefillworker"]
    prefill_adapter = next(a for a in adapters if a["metadata"]["name"] == "gtc-demo-trtllmprefillworker")
    assert prefill_adapter["spec"] == {"replicas": 1, "dgdRef": {"name": "gtc-demo",
                                                                 "serviceName": "TrtllmPrefillWorker"}}
    assert prefill_adapter["metadata"]["labels"][L_COMPONENT] == "TrtllmPrefillWorker"
    assert prefill_adapter["status"]["replicas"] == 1

    assert kube.operator.get_dgd("gtc-demo")["status"]["state"] == "pending"
    assert kube.operator.reconcile("gtc-demo") == pods  # idempotent


def test_scale_subresource_and_reconcile_follow_the_adapter(kube: Kube) -> None:
    create_dgd(kube)
    kube.operator.reconcile()
    custom = client.CustomObjectsApi(kube.api_client)
    name = "gtc-demo-trtllmdecodeworker"
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name)
    assert scale["spec"]["replicas"] == 1
    assert scale["status"]["replicas"] == 1
    assert "nvidia.com/dynamo-component=TrtllmDecodeWorker" in scale["status"]["selector"]
    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name, {"spec": {"replicas": 3}})
    assert custom.get_namespaced_custom_object(GROUP, VERSION, NS, DGDSA_PLURAL, name)["spec"]["replicas"] == 3

    pods = kube.operator.reconcile()
    assert len(pods["TrtllmDecodeWorker"]) == 3
    assert kube.operator.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 3
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name)
    assert scale["status"]["replicas"] == 3

    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name, {"spec": {"replicas": 1}})
    pods = kube.operator.reconcile()
    assert len(pods["TrtllmDecodeWorker"]) == 1
    assert len(kube.operator.service_pods("gtc-demo", "TrtllmDecodeWorker")) == 1

    # A service without an adapter scales through the DGD itself.
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, DGD_PLURAL, "gtc-demo",
                                          {"spec": {"services": {"Frontend": {"replicas": 2}}}})
    assert len(kube.operator.reconcile()["Frontend"]) == 2


def test_pod_status_setters(platform: Kube) -> None:
    op = platform.operator
    create_dgd(platform)
    pods = op.reconcile()
    core = client.CoreV1Api(platform.api_client)
    prefill, decode, frontend = pods["TrtllmPrefillWorker"][0], pods["TrtllmDecodeWorker"][0], pods["Frontend"][0]

    op.pending(prefill)
    pod = core.read_namespaced_pod(prefill, NS)
    assert pod.status.phase == "Pending" and not pod.status.conditions

    op.unschedulable(prefill)
    pod = core.read_namespaced_pod(prefill, NS)
    cond = conditions(pod)["PodScheduled"]
    assert (cond.status, cond.reason) == ("False", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in cond.message
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={prefill}").items
    assert [e.reason for e in events] == ["FailedScheduling"]

    op.gated(decode)
    cond = conditions(core.read_namespaced_pod(decode, NS))["PodScheduled"]
    assert (cond.status, cond.reason) == ("False", "SchedulingGated")

    op.container_creating(prefill)
    pod = core.read_namespaced_pod(prefill, NS)
    assert pod.spec.node_name in GPU_NODES
    assert pod.status.phase == "Pending"
    assert pod.status.host_ip.startswith("10.116.0.")
    assert conditions(pod)["PodScheduled"].status == "True"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"

    op.running(prefill)  # model still loading
    pod = core.read_namespaced_pod(prefill, NS)
    assert pod.status.phase == "Running"
    assert conditions(pod)["Ready"].status == "False"
    assert pod.status.container_statuses[0].state.running.started_at is not None
    assert pod.status.pod_ip

    op.ready(prefill)
    pod = core.read_namespaced_pod(prefill, NS)
    assert {t: c.status for t, c in conditions(pod).items()} == {
        "Initialized": "True", "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    assert all(c.last_transition_time is not None for c in pod.status.conditions)
    assert pod.status.container_statuses[0].ready is True
    assert pod.status.container_statuses[0].image == "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1"

    op.crash_loop(decode, restarts=7)
    pod = core.read_namespaced_pod(decode, NS)
    status = pod.status.container_statuses[0]
    assert pod.spec.node_name in GPU_NODES
    assert pod.spec.node_name != core.read_namespaced_pod(prefill, NS).spec.node_name  # the least used GPU node
    assert (pod.status.phase, status.state.waiting.reason, status.restart_count) == ("Running", "CrashLoopBackOff", 7)
    assert status.last_state.terminated.exit_code == 1

    op.image_pull_backoff(frontend)
    pod = core.read_namespaced_pod(frontend, NS)
    assert pod.spec.node_name in MGMT_NODES
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"

    ev = op.event(prefill, "FailedMount", "MountVolume.SetUp failed for volume \"model-nfs-pvc\" : mount failed")
    assert ev.involved_object.uid == core.read_namespaced_pod(prefill, NS).metadata.uid
    reasons = {e.reason for e in core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={prefill},involvedObject.kind=Pod").items}
    assert {"FailedScheduling", "FailedMount"} <= reasons

    op.all_ready("gtc-demo")
    assert all(op.is_ready(p) for p in op.dgd_pods("gtc-demo"))
    status = op.get_dgd("gtc-demo")["status"]
    assert status["state"] == "successful"
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Ready", "True")]
    assert status["services"]["TrtllmDecodeWorker"]["readyReplicas"] == 1
    endpoints = core.read_namespaced_endpoints("gtc-demo-frontend", NS)
    assert [a.target_ref.name for a in endpoints.subsets[0].addresses] == [frontend]

    op.set_dgd_state("gtc-demo", "failed")
    assert op.get_dgd("gtc-demo")["status"]["state"] == "failed"


def test_watch_sees_ready_transition(kube: Kube) -> None:
    create_dgd(kube)
    pods = kube.operator.reconcile()
    core = client.CoreV1Api(kube.api_client)
    selector = f"{L_DGD}=gtc-demo,{L_COMPONENT}=TrtllmPrefillWorker"
    listing = core.list_namespaced_pod(NS, label_selector=selector)
    kube.operator.container_creating(pods["TrtllmPrefillWorker"][0])
    kube.operator.ready(pods["TrtllmPrefillWorker"][0])
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, NS, label_selector=selector,
                          resource_version=listing.metadata.resource_version, timeout_seconds=10):
        pod = event["object"]
        seen.append((event["type"], pod.status.phase))
        if kube.operator.is_ready(pod):
            w.stop()
    assert seen[-1] == ("MODIFIED", "Running")
    assert ("MODIFIED", "Pending") in seen  # ContainerCreating came first


def test_seed_platform_and_teardown_of_dgd(platform: Kube) -> None:
    core = client.CoreV1Api(platform.api_client)
    nodes = core.list_node().items
    gpu = [n for n in nodes if n.metadata.labels.get("doks.digitalocean.com/gpu-brand") == "nvidia"]
    assert len(nodes) == 5 and len(gpu) == 3
    assert all([(t.key, t.effect) for t in n.spec.taints] == [("nvidia.com/gpu", "NoSchedule")] for n in gpu)
    assert all(n.status.allocatable["nvidia.com/gpu"] == "1" for n in gpu)
    assert all({c.type: c.status for c in n.status.conditions}["Ready"] == "True" for n in nodes)
    assert client.NodeV1Api(platform.api_client).read_runtime_class("nvidia").handler == "nvidia"
    assert core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS).status.phase == "Bound"
    secret = core.read_namespaced_secret("hf-token", NS)
    assert base64.b64decode(secret.data["HF_TOKEN"]).decode() == FAKE_HF_TOKEN
    dep = client.AppsV1Api(platform.api_client).list_namespaced_deployment(
        "dynamo-system", label_selector="app.kubernetes.io/name=dynamo-operator").items
    assert [d.status.ready_replicas for d in dep] == [1]
    assert core.read_namespaced_service("kube-prometheus-stack-prometheus", "monitoring").spec.ports[0].port == 9090
    operator_pods = core.list_namespaced_pod("dynamo-system", label_selector="app.kubernetes.io/name=dynamo-operator")
    assert [platform.operator.is_ready(p) for p in operator_pods.items] == [True]

    create_dgd(platform)
    platform.operator.reconcile()
    platform.operator.all_ready()
    client.CustomObjectsApi(platform.api_client).delete_namespaced_custom_object(
        GROUP, VERSION, NS, DGD_PLURAL, "gtc-demo")
    deleted = platform.operator.delete_dgd_pods("gtc-demo")
    assert len(deleted) == 3
    poll(lambda: not platform.operator.dgd_pods("gtc-demo"), what="pods gone")
    assert not client.CustomObjectsApi(platform.api_client).list_namespaced_custom_object(
        GROUP, VERSION, NS, DGDSA_PLURAL)["items"]


def test_graceful_pod_delete_needs_the_kubelet(kube: Kube) -> None:
    """A bound pod deleted with a grace period stays Terminating until the (fake) kubelet reaps it."""
    create_dgd(kube)
    name = kube.operator.reconcile()["Frontend"][0]
    kube.operator.ready(name, node="some-node")
    core = client.CoreV1Api(kube.api_client)
    core.delete_namespaced_pod(name, NS)
    assert core.read_namespaced_pod(name, NS).metadata.deletion_timestamp is not None
    assert kube.operator.reap_terminating() == [name]
    poll(lambda: not [p for p in kube.operator.dgd_pods() if p.metadata.name == name], what="pod reaped")


def test_no_kubelet_logs_and_proxies_fail_fast_on_loopback(platform: Kube) -> None:
    """Logs and proxies need a kubelet / the cluster network: they fail at once, nothing leaves the machine."""
    create_dgd(platform)
    name = platform.operator.reconcile()["Frontend"][0]
    platform.operator.all_ready()
    core = client.CoreV1Api(platform.api_client)
    calls = {
        "logs": lambda: core.read_namespaced_pod_log(name, NS),
        "service proxy": lambda: core.connect_get_namespaced_service_proxy_with_path("gtc-demo-frontend:http", NS,
                                                                                     "v1/models"),
    }
    for what, call in calls.items():
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 500, what
        assert "no-cluster-network.sock" in err.value.body, what  # refused locally: nothing was dialled


def test_tests_are_isolated(kube: Kube) -> None:
    """Runs after the tests above: the per-test cleanup left nothing behind."""
    core = client.CoreV1Api(kube.api_client)
    assert not core.list_namespaced_pod(NS).items
    assert not core.list_node().items
    assert not client.CustomObjectsApi(kube.api_client).list_namespaced_custom_object(
        GROUP, VERSION, NS, DGD_PLURAL)["items"]
    assert not core.list_namespaced_persistent_volume_claim(NS).items
