"""The harness itself: a real API server with Dynamo 0.8's CRDs and validating webhook, and a FakeOperator whose
objects and rules are the real operator's."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from ..support import poll
from .conftest import FAKE_HF_TOKEN, Kube
from .envtest import (
    DEFAULT_CONTEXT,
    NAMESPACE_ONLY_RULES,
    NAMESPACES,
    NO_POD_WATCH_RULES,
    OPERATOR_USER,
    OTHER_CONTEXT,
    EnvTest,
)
from .operator import (
    DGD_PLURAL,
    DGDSA_PLURAL,
    FINALIZER,
    GPU_NODES,
    GROUP,
    L_COMPONENT,
    L_COMPONENT_TYPE,
    L_DGD,
    L_DYN_NAMESPACE,
    L_KAI_QUEUE,
    L_METRICS,
    L_SELECTOR,
    L_SUB_COMPONENT_TYPE,
    MGMT_NODES,
    QUEUE_GROUP,
    QUEUE_PLURAL,
    QUEUE_VERSION,
    VERSION,
    FakeKubelet,
    container_exit,
)
from .webhook import CONFIGURATION_NAME, WEBHOOK_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
DGD_MANIFEST = REPO_ROOT / "manifests" / "dev" / "20-dgd-gtc-demo.yaml"
NS = "dynamo-workload"
SERVICES = ("Frontend", "TrtllmPrefillWorker", "TrtllmDecodeWorker")
WORKERS = ("TrtllmPrefillWorker", "TrtllmDecodeWorker")
REPLICAS_REFUSED = ("admission webhook \"vdynamographdeployment.kb.io\" denied the request: "
                    "spec.services[TrtllmDecodeWorker].replicas cannot be modified directly when scaling adapter "
                    "is enabled; scale or update the related DynamoGraphDeploymentScalingAdapter instead")


def dev_dgd() -> dict:
    return yaml.safe_load(DGD_MANIFEST.read_text())


def plan_dgd() -> dict:
    """The deployment plan's DGD as far as this test cares: workers with `args` and no `command`."""
    body = dev_dgd()
    for name in WORKERS:
        body["spec"]["services"][name]["extraPodSpec"]["mainContainer"].pop("command", None)
    return body


def create_dgd(kube: Kube, body: dict | None = None) -> dict:
    body = body or dev_dgd()
    return client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"].get("namespace", NS), DGD_PLURAL, body)


def patch_dgd(api: client.ApiClient, patch: dict, **kwargs: object) -> dict:
    return client.CustomObjectsApi(api).patch_namespaced_custom_object(GROUP, VERSION, NS, DGD_PLURAL, "gtc-demo",
                                                                       patch, **kwargs)


def adapters(kube: Kube) -> dict[str, dict]:
    items = client.CustomObjectsApi(kube.api_client).list_namespaced_custom_object(GROUP, VERSION, NS,
                                                                                   DGDSA_PLURAL)["items"]
    return {a["metadata"]["name"]: a for a in items}


def conditions(pod: client.V1Pod) -> dict[str, client.V1PodCondition]:
    return {c.type: c for c in (pod.status.conditions or [])}


def is_subset(part: object, whole: object) -> bool:
    """Every key/value of ``part`` is in ``whole`` (lists element by element): what defaults may add to."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and is_subset(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) == len(whole) and all(map(is_subset, part, whole))
    return part == whole


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
    for name in (f"{DGD_PLURAL}.{GROUP}", f"{DGDSA_PLURAL}.{GROUP}", f"{QUEUE_PLURAL}.{QUEUE_GROUP}"):
        crd = ext.read_custom_resource_definition(name)
        assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    assert ext.read_custom_resource_definition(f"{QUEUE_PLURAL}.{QUEUE_GROUP}").spec.scope == "Cluster"
    resources = client.CustomObjectsApi(kube.api_client).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in resources}
    assert by_name[DGD_PLURAL].short_names == ["dgd"]
    assert by_name[DGD_PLURAL].kind == "DynamoGraphDeployment"
    assert by_name[DGDSA_PLURAL].short_names == ["dgdsa"]
    assert {f"{DGD_PLURAL}/status", f"{DGDSA_PLURAL}/status", f"{DGDSA_PLURAL}/scale"} <= set(by_name)


# -- the CRD schema (0.8's) ---------------------------------------------------------------------------------------
def test_valid_dgd_is_created_with_nothing_pruned(kube: Kube) -> None:
    created = create_dgd(kube)
    assert created["metadata"]["name"] == "gtc-demo"
    got = kube.operator.get_dgd("gtc-demo")
    # Every field gtcdemo writes is in 0.8's schema (a field it does not know would be pruned silently); the
    # server only adds its defaults (volumeMounts[].useAsCompilationCache: false).
    assert is_subset(dev_dgd()["spec"], got["spec"]), "the 0.8 CRD pruned part of the repo's DGD"
    assert got["spec"]["services"]["Frontend"]["volumeMounts"][0]["useAsCompilationCache"] is False


def test_scaling_adapter_enabled_is_pruned_and_disable_defaults_false(kube: Kube) -> None:
    """0.8's CRD: scalingAdapter is {disable: bool, default false}; the newer `enabled` is silently dropped."""
    body = dev_dgd()
    body["spec"]["services"]["TrtllmDecodeWorker"]["scalingAdapter"] = {"enabled": False}
    body["spec"]["services"]["TrtllmPrefillWorker"]["scalingAdapter"] = {"disable": True}
    create_dgd(kube, body)
    services = kube.operator.get_dgd()["spec"]["services"]
    assert services["TrtllmDecodeWorker"]["scalingAdapter"] == {"disable": False}
    assert services["TrtllmPrefillWorker"]["scalingAdapter"] == {"disable": True}


@pytest.mark.parametrize(("service", "field", "value"), [
    ("TrtllmPrefillWorker", "replicas", "two"),
    ("TrtllmDecodeWorker", "replicas", -1),
])
def test_invalid_dgd_is_rejected_with_422(kube: Kube, service: str, field: str, value: object) -> None:
    body = dev_dgd()
    body["spec"]["services"][service][field] = value
    with pytest.raises(ApiException) as err:
        create_dgd(kube, body)
    assert err.value.status == 422
    assert field in err.value.body


def test_component_types_are_free_strings_in_0_8(kube: Kube) -> None:
    """0.8's CRD has no enum for componentType / subComponentType: the server accepts any string."""
    body = dev_dgd()
    body["spec"]["services"]["Frontend"]["componentType"] = "banana"
    body["spec"]["services"]["TrtllmDecodeWorker"]["subComponentType"] = "middle"
    services = create_dgd(kube, body)["spec"]["services"]
    assert (services["Frontend"]["componentType"], services["TrtllmDecodeWorker"]["subComponentType"]) == \
        ("banana", "middle")


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


# -- the validating webhook (deploy/operator/internal/webhook/validation/dynamographdeployment.go) ------------------
def test_webhook_is_registered_as_the_chart_does(kube: Kube) -> None:
    vwc = client.AdmissionregistrationV1Api(kube.api_client).read_validating_webhook_configuration(
        CONFIGURATION_NAME)
    (hook,) = vwc.webhooks
    assert (hook.name, hook.failure_policy, hook.side_effects, hook.timeout_seconds) == \
        (WEBHOOK_NAME, "Fail", "None", 10)
    assert [(r.operations, r.resources) for r in hook.rules] == [(["CREATE", "UPDATE"], ["dynamographdeployments"])]
    assert hook.client_config.url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize(("change", "message"), [
    (lambda spec: spec.update(services={}), "spec.services must have at least one service"),
    (lambda spec: spec["services"]["Frontend"]["volumeMounts"][0].pop("mountPoint"),
     "spec.services[Frontend].volumeMounts[0].mountPoint is required when useAsCompilationCache is false"),
    (lambda spec: spec["pvcs"][0].update(create=True),
     "spec.pvcs[0].storageClass is required when create is true\nspec.pvcs[0].size is required when create is true"
     "\nspec.pvcs[0].volumeAccessMode is required when create is true"),
], ids=["no-services", "mount-without-mountpoint", "pvc-create-incomplete"])
def test_webhook_validates_creates_as_0_8_does(kube: Kube, change, message: str) -> None:
    body = dev_dgd()
    change(body["spec"])
    with pytest.raises(ApiException) as err:
        create_dgd(kube, body)
    assert err.value.status == 403
    assert json.loads(err.value.body)["message"] == f'admission webhook "{WEBHOOK_NAME}" denied the request: {message}'


def test_webhook_refuses_a_plain_users_replicas_change_dry_runs_included(platform: Kube) -> None:
    create_dgd(platform)
    platform.operator.reconcile()
    reviews = platform.envtest.webhook.reviews
    for kwargs in ({"dry_run": "All"}, {}):
        seen = len(reviews)
        with pytest.raises(ApiException) as err:
            patch_dgd(platform.api_client, {"spec": {"services": {"TrtllmDecodeWorker": {"replicas": 2}}}}, **kwargs)
        assert err.value.status == 403
        assert json.loads(err.value.body)["message"] == REPLICAS_REFUSED
        assert reviews[seen]["dryRun"] is bool(kwargs) and reviews[seen]["username"] == "envtest-admin"
    # Server-side apply of the repo's DGD with other replicas: refused the same way.
    body = dev_dgd()
    body["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] = 3
    resource = DynamicClient(platform.api_client).resources.get(api_version=f"{GROUP}/{VERSION}",
                                                                 kind="DynamoGraphDeployment")
    with pytest.raises(DynamicApiError) as err:
        resource.server_side_apply(body=body, namespace=NS, field_manager="gtcdemo", force_conflicts=True,
                                   dry_run="All")
    assert err.value.status == 403 and "replicas cannot be modified directly" in err.value.summary()
    assert platform.operator.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 1


def test_webhook_allows_the_operator_other_changes_and_disabled_adapters(platform: Kube) -> None:
    body = dev_dgd()
    body["spec"]["services"]["Frontend"]["scalingAdapter"] = {"disable": True}
    create_dgd(platform, body)
    platform.operator.reconcile()
    # A plain user may change everything but the replicas of an adapted service ...
    env = {"name": "DYN_LOG", "value": "debug"}
    patched = patch_dgd(platform.api_client, {"spec": {"services": {
        "TrtllmDecodeWorker": {"envs": [env]}, "Frontend": {"replicas": 2}}}})
    assert patched["spec"]["services"]["TrtllmDecodeWorker"]["envs"] == [env]
    assert patched["spec"]["services"]["Frontend"]["replicas"] == 2  # its adapter is disabled
    # ... the operator's service account may change those too (CanModifyDGDReplicas) ...
    patched = patch_dgd(platform.operator.api_client, {"spec": {"services": {"TrtllmDecodeWorker": {"replicas": 2}}}})
    assert patched["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 2
    assert platform.envtest.webhook.reviews[-1]["username"] == OPERATOR_USER
    # ... and nobody may change the backend.
    with pytest.raises(ApiException) as err:
        patch_dgd(platform.operator.api_client, {"spec": {"backendFramework": "vllm"}})
    assert err.value.status == 403 and "spec.backendFramework is immutable" in err.value.body


def test_webhook_failure_policy_fail_refuses_dgd_writes_when_it_cannot_be_reached(kube: Kube) -> None:
    create_dgd(kube)
    admission = client.AdmissionregistrationV1Api(kube.api_client)
    vwc = admission.read_validating_webhook_configuration(CONFIGURATION_NAME)
    url = vwc.webhooks[0].client_config.url

    def point_at(target: str) -> None:
        admission.patch_validating_webhook_configuration(CONFIGURATION_NAME, [
            {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": target}])

    def write() -> str:
        try:
            patch_dgd(kube.api_client, {"metadata": {"labels": {"probe": "x"}}}, dry_run="All")
            return "allowed"
        except ApiException as exc:
            return exc.body if exc.status == 500 and "failed calling webhook" in exc.body else f"{exc.status}"

    point_at("https://127.0.0.1:9/validate")  # the discard port: nothing listens
    try:
        refusal = poll(lambda: (lambda r: r if r.startswith("{") else None)(write()), timeout_s=30,
                       what="the API server to call the unreachable webhook")
        assert WEBHOOK_NAME in str(refusal)
    finally:
        point_at(url)
    poll(lambda: write() == "allowed", timeout_s=30, what="the webhook to be reachable again")


# -- the operator: reconcile as Dynamo 0.8 does -----------------------------------------------------------------
def test_reconcile_creates_pods_service_and_adapters(platform: Kube) -> None:
    create_dgd(platform)
    pods = platform.operator.reconcile("gtc-demo")
    assert set(pods) == set(SERVICES)
    assert all(len(names) == 1 for names in pods.values())
    core = client.CoreV1Api(platform.api_client)
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
    assert labels[L_KAI_QUEUE] == "dynamo"  # the annotation's queue (default dynamo), whatever the DGD's labels say
    assert prefill.spec.scheduler_name == "kai-scheduler"
    main = prefill.spec.containers[0]
    assert main.name == "main"
    assert main.image == "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1"
    assert main.command == ["python3", "-m", "dynamo.trtllm"] and main.args[0] == "--model-path"
    assert main.resources.limits["nvidia.com/gpu"] == "1"
    assert main.env_from[0].secret_ref.name == "hf-token"
    env = {e.name: e.value for e in main.env}
    assert env["DYN_NAMESPACE"] == "dynamo-workload-gtc-demo" and env["DYN_SYSTEM_PORT"] == "9090"
    assert [e.name for e in main.env] == sorted(e.name for e in main.env)  # MergeEnvs sorts by name
    assert any(t.key == "nvidia.com/gpu" for t in prefill.spec.tolerations)
    assert prefill.spec.node_name is None
    assert prefill.status.phase == "Pending"
    assert prefill.metadata.owner_references[0].kind == "PodClique"
    frontend = core.read_namespaced_pod(pods["Frontend"][0], NS).spec.containers[0]
    assert (frontend.command, frontend.args) == (["python3"], ["-m", "dynamo.frontend"])

    svc = core.read_namespaced_service("gtc-demo-frontend", NS)
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("http", 8000, "http")]
    frontend_labels = core.read_namespaced_pod(pods["Frontend"][0], NS).metadata.labels
    assert all(frontend_labels[k] == v for k, v in svc.spec.selector.items())

    assert sorted(adapters(platform)) == ["gtc-demo-frontend", "gtc-demo-trtllmdecodeworker",
                                          "gtc-demo-trtllmprefillworker"]
    prefill_adapter = adapters(platform)["gtc-demo-trtllmprefillworker"]
    assert prefill_adapter["spec"] == {"replicas": 1, "dgdRef": {"name": "gtc-demo",
                                                                 "serviceName": "TrtllmPrefillWorker"}}
    assert prefill_adapter["metadata"]["labels"] == {L_DGD: "gtc-demo", L_COMPONENT: "TrtllmPrefillWorker"}
    assert prefill_adapter["status"] == {"replicas": 1, "selector": f"{L_DGD}=gtc-demo,{L_COMPONENT}="
                                                                    "TrtllmPrefillWorker"}

    dgd = platform.operator.get_dgd("gtc-demo")
    assert dgd["metadata"]["finalizers"] == [FINALIZER]
    assert dgd["status"]["state"] == "pending"
    (ready,) = dgd["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "some_resources_are_not_ready")
    assert ready["message"].startswith("Resources not ready: gtc-demo: podclique/gtc-demo-0-frontend: desired=1, "
                                       "ready=0")
    assert platform.operator.reconcile("gtc-demo") == pods  # idempotent


def test_frontend_service_carries_no_labels_of_ours(platform: Kube) -> None:
    """graph.go GenerateComponentService: with the chart's K8s discovery only the two discovery labels; nothing a
    lookup by DGD/component labels could match."""
    create_dgd(platform)
    platform.operator.reconcile()
    core = client.CoreV1Api(platform.api_client)
    svc = core.read_namespaced_service("gtc-demo-frontend", NS)
    assert svc.metadata.labels == {"nvidia.com/dynamo-discovery-backend": "kubernetes",
                                   "nvidia.com/dynamo-discovery-enabled": "true"}
    assert svc.spec.selector == {L_COMPONENT_TYPE: "frontend", L_DYN_NAMESPACE: "dynamo-workload-gtc-demo"}
    assert core.list_namespaced_service(NS, label_selector=f"{L_DGD}=gtc-demo").items == []
    assert core.list_namespaced_service(NS, label_selector=f"{L_COMPONENT_TYPE}=frontend").items == []


def test_replicas_move_from_the_adapter_into_the_dgd(platform: Kube) -> None:
    """The DGD controller creates each adapter with the DGD's replicas; afterwards the adapter is the source of
    truth and the adapter controller writes its replicas into the DGD (as the operator, so the webhook allows)."""
    create_dgd(platform)
    op = platform.operator
    op.reconcile()
    custom = client.CustomObjectsApi(platform.api_client)
    name = "gtc-demo-trtllmdecodeworker"
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name)
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (1, 1)
    assert scale["status"]["selector"] == f"{L_DGD}=gtc-demo,{L_COMPONENT}=TrtllmDecodeWorker"
    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name, {"spec": {"replicas": 3}})
    assert op.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 1  # until the operator acts

    pods = op.reconcile()
    assert len(pods["TrtllmDecodeWorker"]) == 3
    assert op.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 3
    adapter = adapters(platform)[name]
    assert adapter["spec"]["replicas"] == 3 and adapter["status"]["replicas"] == 3
    assert adapter["status"]["lastScaleTime"]

    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, DGDSA_PLURAL, name, {"spec": {"replicas": 1}})
    assert len(op.reconcile()["TrtllmDecodeWorker"]) == 1
    assert len(op.service_pods("gtc-demo", "TrtllmDecodeWorker")) == 1


def test_disabled_adapter_is_deleted_and_the_dgd_scales_directly(platform: Kube) -> None:
    create_dgd(platform)
    op = platform.operator
    op.reconcile()
    assert "gtc-demo-frontend" in adapters(platform)
    patch_dgd(platform.api_client, {"spec": {"services": {"Frontend": {"scalingAdapter": {"disable": True}}}}})
    op.reconcile()
    assert "gtc-demo-frontend" not in adapters(platform)
    patch_dgd(platform.api_client, {"spec": {"services": {"Frontend": {"replicas": 2}}}})  # allowed now
    assert len(op.reconcile()["Frontend"]) == 2


# -- the operator: failures as the DGD controller reports them ------------------------------------------------
def test_missing_kai_queue_fails_the_dgd_as_the_operator_does(platform: Kube) -> None:
    """grove.go ensureQueueExists: no pods, state failed, the Ready condition carries the error; adapters (made
    before the Grove step) exist."""
    client.CustomObjectsApi(platform.api_client).delete_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION,
                                                                              QUEUE_PLURAL, "dynamo")
    create_dgd(platform)
    assert platform.operator.reconcile() == {}
    assert platform.operator.dgd_pods() == []
    dgd = platform.operator.get_dgd()
    assert dgd["status"]["state"] == "failed"
    (ready,) = dgd["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "failed_to_reconcile_the_resources")
    assert ready["message"] == (
        "failed to reconcile the Grove PodClique Set: failed to generate the Grove GangSet: failed to determine "
        "kai-scheduler queue: kai-scheduler queue validation failed: queue 'dynamo' not found in cluster. Ensure "
        "the queue exists before using kai-scheduler")
    assert len(adapters(platform)) == 3


def test_the_queue_annotation_names_the_queue(platform: Kube) -> None:
    body = dev_dgd()
    body["metadata"].setdefault("annotations", {})["nvidia.com/kai-scheduler-queue"] = " team-a "
    body["spec"]["services"]["TrtllmDecodeWorker"]["labels"] = {L_KAI_QUEUE: "default-queue"}  # the plan's label
    create_dgd(platform, body)
    assert platform.operator.reconcile() == {}
    assert "queue 'team-a' not found" in platform.operator.get_dgd()["status"]["conditions"][0]["message"]
    client.CustomObjectsApi(platform.api_client).create_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION,
                                                                              QUEUE_PLURAL, {
        "apiVersion": f"{QUEUE_GROUP}/{QUEUE_VERSION}", "kind": "Queue", "metadata": {"name": "team-a"},
        "spec": {"parentQueue": "dynamo-default"}})
    pods = platform.operator.reconcile()
    assert {p.metadata.labels[L_KAI_QUEUE] for p in platform.operator.dgd_pods()} == {"team-a"}  # overwritten
    assert len(pods) == 3 and platform.operator.get_dgd()["status"]["state"] == "pending"


def test_missing_pvc_fails_the_dgd(kube: Kube) -> None:
    create_dgd(kube)  # no platform: no PVC
    assert kube.operator.reconcile() == {}
    dgd = kube.operator.get_dgd()
    assert dgd["status"]["state"] == "failed"
    assert dgd["status"]["conditions"][0]["message"] == \
        'failed to reconcile top-level PVCs: persistentvolumeclaims "model-nfs-pvc" not found'
    assert adapters(kube) == {}  # PVCs come before the adapters


def test_set_dgd_state_writes_what_the_controller_would(platform: Kube) -> None:
    create_dgd(platform)
    op = platform.operator
    op.reconcile()
    dgd = op.set_dgd_state("gtc-demo", "failed", message="failed to reconcile the Grove PodClique Set: boom")
    assert dgd["status"]["state"] == "failed" and "services" not in dgd["status"]
    (ready,) = dgd["status"]["conditions"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "failed_to_reconcile_the_resources", "failed to reconcile the Grove PodClique Set: boom")
    ready = op.set_dgd_state("gtc-demo", "failed", reason="ValidationFailed", message="Validation failed: x")[
        "status"]["conditions"][0]
    assert (ready["reason"], ready["message"]) == ("ValidationFailed", "Validation failed: x")
    assert op.set_dgd_state("gtc-demo", "successful")["status"]["conditions"][0]["status"] == "True"
    with pytest.raises(ValueError, match="state must be one of"):
        op.set_dgd_state("gtc-demo", "initializing")


# -- the kubelet: a worker without a command ---------------------------------------------------------------------
def test_worker_without_command_crash_loops_with_the_shells_complaint(platform: Kube) -> None:
    """component_common.go gives every container `/bin/sh -c`; only the Frontend gets a program of its own. The
    plan's workers (args, no command) therefore run `/bin/sh -c --model-path ...`: dash refuses the option."""
    create_dgd(platform, plan_dgd())
    op = platform.operator
    pods = op.reconcile()
    core = client.CoreV1Api(platform.api_client)
    decode = core.read_namespaced_pod(pods["TrtllmDecodeWorker"][0], NS)
    assert decode.spec.containers[0].command == ["/bin/sh", "-c"]
    assert decode.spec.containers[0].args[:2] == ["--model-path", "/models/meta-llama/Llama-3.1-8B-Instruct"]
    dgd = op.all_ready()
    for name in WORKERS:
        pod = core.read_namespaced_pod(pods[name][0], NS)
        status = pod.status.container_statuses[0]
        assert status.state.waiting.reason == "CrashLoopBackOff" and status.last_state.terminated.exit_code == 2
        assert FakeKubelet(operator=op).logs(NS, pods[name][0], tail=20) == "/bin/sh: 0: Illegal option --"
    assert op.is_ready(core.read_namespaced_pod(pods["Frontend"][0], NS))
    assert dgd["status"]["state"] == "pending"
    assert FakeKubelet(operator=op).logs(NS, pods["Frontend"][0], tail=2).splitlines() == [
        f"{pods['Frontend'][0]} log line {i}" for i in (98, 99)]


@pytest.mark.skipif(not Path("/bin/sh").resolve().name.startswith("dash"), reason="/bin/sh here is not dash")
def test_the_shells_complaint_is_what_dash_prints() -> None:
    """The runtime image's /bin/sh is Ubuntu 24.04's dash; this machine's (Debian 12) is the same dash 0.5.12."""
    pod = client.V1Pod(spec=client.V1PodSpec(containers=[client.V1Container(
        name="main", command=["/bin/sh", "-c"], args=["--model-path", "/models/x", "--served-model-name", "y"])]))
    code, log = container_exit(pod)
    real = subprocess.run([shutil.which("sh") or "/bin/sh", "-c", "--model-path", "/models/x"],
                          capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert (code, log) == (real.returncode, real.stderr.strip().replace(shutil.which("sh") or "/bin/sh", "/bin/sh"))
    no_args = client.V1Pod(spec=client.V1PodSpec(containers=[client.V1Container(name="main",
                                                                                command=["/bin/sh", "-c"])]))
    real = subprocess.run(["/bin/sh", "-c"], capture_output=True, text=True, check=False)
    assert container_exit(no_args) == (real.returncode, real.stderr.strip())


# -- the scheduler and the kubelet: pod status ---------------------------------------------------------------------
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
    assert [(c["type"], c["status"], c["message"]) for c in status["conditions"]] == [
        ("Ready", "True", "All resources are ready")]
    assert status["services"]["TrtllmDecodeWorker"] == {
        "componentKind": "PodClique", "componentName": "gtc-demo-0-trtllmdecodeworker", "replicas": 1,
        "updatedReplicas": 1, "readyReplicas": 1}
    endpoints = core.read_namespaced_endpoints("gtc-demo-frontend", NS)
    assert [a.target_ref.name for a in endpoints.subsets[0].addresses] == [frontend]
    assert [(p.name, p.port) for p in endpoints.subsets[0].ports] == [("http", 8000)]


def test_watch_sees_ready_transition(platform: Kube) -> None:
    create_dgd(platform)
    pods = platform.operator.reconcile()
    core = client.CoreV1Api(platform.api_client)
    selector = f"{L_DGD}=gtc-demo,{L_COMPONENT}=TrtllmPrefillWorker"
    listing = core.list_namespaced_pod(NS, label_selector=selector)
    platform.operator.container_creating(pods["TrtllmPrefillWorker"][0])
    platform.operator.ready(pods["TrtllmPrefillWorker"][0])
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, NS, label_selector=selector,
                          resource_version=listing.metadata.resource_version, timeout_seconds=10):
        pod = event["object"]
        seen.append((event["type"], pod.status.phase))
        if platform.operator.is_ready(pod):
            w.stop()
    assert seen[-1] == ("MODIFIED", "Running")
    assert ("MODIFIED", "Pending") in seen  # ContainerCreating came first


def test_compaction_makes_a_resumed_watch_end_with_410(platform: Kube) -> None:
    create_dgd(platform)
    pods = platform.operator.reconcile()
    core = client.CoreV1Api(platform.api_client)
    seen = core.list_namespaced_pod(NS, label_selector=f"{L_DGD}=gtc-demo").metadata.resource_version
    platform.operator.ready(pods["Frontend"][0])  # something happens after the client's resourceVersion
    platform.envtest.compact()
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector=f"{L_DGD}=gtc-demo",
                                      resource_version=seen, timeout_seconds=5):
            pass
    assert err.value.status == 410
    # Re-listing gives a resourceVersion the watch accepts again.
    fresh = core.list_namespaced_pod(NS).metadata.resource_version
    assert list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=fresh, timeout_seconds=1)) == []


def test_restricted_kubeconfigs_get_403_outside_their_rules(platform: Kube) -> None:
    namespace_only = config.new_client_from_config(config_file=str(platform.restricted_kubeconfig(
        NAMESPACE_ONLY_RULES)))
    no_pods = config.new_client_from_config(config_file=str(platform.restricted_kubeconfig(NO_POD_WATCH_RULES)))
    try:
        assert config.list_kube_config_contexts(config_file=str(platform.restricted_kubeconfig([])))[1]["name"] == \
            DEFAULT_CONTEXT
        core = client.CoreV1Api(namespace_only)
        assert len(core.list_namespaced_pod(NS).items) == 0
        with pytest.raises(ApiException) as err:
            core.list_node()
        assert err.value.status == 403 and 'cannot list resource "nodes"' in json.loads(err.value.body)["message"]
        create_dgd(platform)
        name = platform.operator.reconcile()["Frontend"][0]
        assert client.CoreV1Api(no_pods).read_namespaced_pod(name, NS).metadata.name == name
        with pytest.raises(ApiException) as err:
            next(iter(watch.Watch().stream(client.CoreV1Api(no_pods).list_namespaced_pod, NS, timeout_seconds=2)))
        assert err.value.status == 403 and 'cannot watch resource "pods"' in json.loads(err.value.body)["message"]
    finally:
        namespace_only.close()
        no_pods.close()


# -- the platform and teardown -------------------------------------------------------------------------------------
def test_demo_platform_and_teardown_of_dgd(platform: Kube) -> None:
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
    apps = client.AppsV1Api(platform.api_client)
    dep = apps.list_namespaced_deployment(
        "dynamo-system", label_selector="app.kubernetes.io/name=dynamo-operator,control-plane=controller-manager").items
    assert [(d.metadata.name, d.status.ready_replicas) for d in dep] == [
        ("dynamo-platform-dynamo-operator-controller-manager", 1)]
    assert {d.metadata.name for d in apps.list_namespaced_deployment("dynamo-system").items} == {
        "dynamo-platform-dynamo-operator-controller-manager", "grove-operator"}
    queues = client.CustomObjectsApi(platform.api_client).list_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION,
                                                                                     QUEUE_PLURAL)["items"]
    assert {q["metadata"]["name"]: q["spec"].get("parentQueue") for q in queues} == {
        "dynamo-default": None, "dynamo": "dynamo-default"}
    assert core.read_namespaced_service("kube-prometheus-stack-prometheus", "monitoring").spec.ports[0].port == 9090
    operator_pods = core.list_namespaced_pod("dynamo-system", label_selector="app.kubernetes.io/name=dynamo-operator")
    assert [platform.operator.is_ready(p) for p in operator_pods.items] == [True]

    create_dgd(platform)
    platform.operator.reconcile()
    platform.operator.all_ready()
    custom = client.CustomObjectsApi(platform.api_client)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, DGD_PLURAL, "gtc-demo")
    # The operator's finalizer holds the DGD until the operator has seen the deletion.
    assert platform.operator.get_dgd()["metadata"]["deletionTimestamp"] and platform.operator.deletion_requested()
    deleted = platform.operator.delete_dgd_pods("gtc-demo")
    assert len(deleted) == 3
    poll(lambda: not platform.operator.dgd_pods("gtc-demo"), what="pods gone")
    assert not custom.list_namespaced_custom_object(GROUP, VERSION, NS, DGD_PLURAL)["items"]
    assert not custom.list_namespaced_custom_object(GROUP, VERSION, NS, DGDSA_PLURAL)["items"]
    assert [s.metadata.name for s in core.list_namespaced_service(NS).items] == []


def test_demo_platform_switches_leave_pieces_out(kube: Kube) -> None:
    names = kube.operator.demo_platform(dynamo_operator=False, grove=True, queue=False)
    assert "operator_deployment" not in names and names["queues"] == []
    deployments = client.AppsV1Api(kube.api_client).list_namespaced_deployment("dynamo-system").items
    assert [d.metadata.name for d in deployments] == ["grove-operator"]


def test_graceful_pod_delete_needs_the_kubelet(platform: Kube) -> None:
    """A bound pod deleted with a grace period stays Terminating until the (fake) kubelet reaps it."""
    create_dgd(platform)
    name = platform.operator.reconcile()["Frontend"][0]
    platform.operator.ready(name, node="some-node")
    core = client.CoreV1Api(platform.api_client)
    core.delete_namespaced_pod(name, NS)
    assert core.read_namespaced_pod(name, NS).metadata.deletion_timestamp is not None
    assert platform.operator.reap_terminating() == [name]
    poll(lambda: not [p for p in platform.operator.dgd_pods() if p.metadata.name == name], what="pod reaped")


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
    custom = client.CustomObjectsApi(kube.api_client)
    assert not custom.list_namespaced_custom_object(GROUP, VERSION, NS, DGD_PLURAL)["items"]
    assert not custom.list_cluster_custom_object(QUEUE_GROUP, QUEUE_VERSION, QUEUE_PLURAL)["items"]
    assert not core.list_namespaced_persistent_volume_claim(NS).items
