"""ClusterTarget against a real kube-apiserver + etcd, with the tests playing the Dynamo operator and the kubelet.

Only what needs a kubelet (pod logs, port-forwards) goes through a test double; everything else is the real API.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gtcdemo import bundle as bundle_mod
from gtcdemo.cluster import ClusterTarget
from gtcdemo.cluster.names import DGD_LABEL
from gtcdemo.errors import ConfigError, DeploymentError

from .conftest import FAKE_HF_TOKEN
from .operator import FakeKubelet

NS = "dynamo-workload"


@pytest.fixture
def target(platform, kubelet: FakeKubelet) -> ClusterTarget:
    return ClusterTarget("dev", kubeconfig=str(platform.kubeconfig), access=kubelet)


def in_background(action: Callable[[], object]) -> threading.Thread:
    """Play the operator/kubelet while the code under test blocks in a watch."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # surfaced by join_ok
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_ok(thread: threading.Thread) -> None:
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]


def pods_of(op, service: str) -> list[str]:
    return [p.metadata.name for p in op.service_pods("gtc-demo", service)]


# -- apply ---------------------------------------------------------------------------------------------------------
def test_apply_creates_then_is_unchanged_and_never_touches_the_bound_pvc(target: ClusterTarget, platform) -> None:
    core = client.CoreV1Api(platform.api_client)
    pvc_before = core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS)
    first = target.apply()
    assert [(r["kind"], r["action"]) for r in first.rows] == [
        ("PersistentVolumeClaim", "unchanged"), ("ConfigMap", "created"), ("DynamoGraphDeployment", "created")]
    second = target.apply()
    assert {r["action"] for r in second.rows} == {"unchanged"}
    pvc_after = core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS)
    assert pvc_after.metadata.resource_version == pvc_before.metadata.resource_version
    cm = core.read_namespaced_config_map("trtllm-engine-configs", NS)
    assert sorted(cm.data) == ["decode.yaml", "prefill.yaml"]
    managers = {m.manager for m in cm.metadata.managed_fields}
    assert "gtcdemo" in managers
    dgd = client.CustomObjectsApi(platform.api_client).get_namespaced_custom_object(
        "nvidia.com", "v1alpha1", NS, "dynamographdeployments", "gtc-demo")
    assert _with_crd_defaults(target.bundle.dgd["spec"]) == dgd["spec"]


def _with_crd_defaults(spec: dict) -> dict:
    """The spec as the 0.8 CRD stores it: its schema defaults volumeMounts[].useAsCompilationCache to false."""
    spec = copy.deepcopy(spec)
    for svc in spec["services"].values():
        for mount in svc.get("volumeMounts") or []:
            mount.setdefault("useAsCompilationCache", False)
    return spec


def test_changed_engine_config_is_configured(target: ClusterTarget) -> None:
    target.apply()
    b = bundle_mod.load("dev")
    b.configmap["data"]["decode.yaml"] += "# tuned\n"
    result = target.apply(b)
    assert ("ConfigMap", "configured") in {(r["kind"], r["action"]) for r in result.rows}
    assert ("DynamoGraphDeployment", "unchanged") in {(r["kind"], r["action"]) for r in result.rows}


def test_pvc_is_created_when_absent(kube, kubelet) -> None:
    client.CoreV1Api(kube.api_client).create_namespaced_secret(
        NS, client.V1Secret(metadata=client.V1ObjectMeta(name="hf-token"), string_data={"HF_TOKEN": "x"}))
    client.CustomObjectsApi(kube.api_client).create_cluster_custom_object(  # the DGD's KAI queue (apply checks it)
        "scheduling.run.ai", "v2", "queues", {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
                                              "metadata": {"name": "dynamo"}, "spec": {}})
    target = ClusterTarget("dev", kubeconfig=str(kube.kubeconfig), access=kubelet)
    result = target.apply()
    assert result.rows[0] == {"kind": "PersistentVolumeClaim", "name": "model-nfs-pvc", "action": "created"}


def test_dgd_the_schema_rejects_applies_nothing(target: ClusterTarget, platform) -> None:
    b = bundle_mod.load("dev")
    b.services["TrtllmPrefillWorker"]["labels"] = {"app": 5}  # labels are strings in the CRD
    with pytest.raises(DeploymentError) as info:
        target.apply(b)
    assert "refuses DynamoGraphDeployment gtc-demo (dry run; nothing was applied)" in str(info.value)
    core = client.CoreV1Api(platform.api_client)
    assert core.list_namespaced_config_map(NS, field_selector="metadata.name=trtllm-engine-configs").items == []
    assert target.get_dgd() is None


def test_missing_crd_is_reported_and_nothing_applied(target: ClusterTarget, platform) -> None:
    from kubernetes.client.exceptions import ApiException

    from tests.support import poll

    ext = client.ApiextensionsV1Api(platform.api_client)
    ext.delete_custom_resource_definition("dynamographdeployments.nvidia.com")

    def gone() -> bool:
        try:
            ext.read_custom_resource_definition("dynamographdeployments.nvidia.com")
            return False
        except ApiException as exc:
            return exc.status == 404

    try:
        poll(gone, timeout_s=30, what="the DGD CRD to be removed")
        with pytest.raises(DeploymentError, match=r"DynamoGraphDeployment .*its CRD is not installed"):
            target.apply()
        core = client.CoreV1Api(platform.api_client)
        assert core.list_namespaced_config_map(NS, field_selector="metadata.name=trtllm-engine-configs").items == []
        report = target.preflight()
        dgd_check = next(r for r in report.rows if r["check"] == "DGD CRD")
        assert dgd_check["result"] == "FAIL" and "dynamo-crds" in dgd_check["fix"]
    finally:
        crd = yaml.safe_load((Path(__file__).parent / "crds" / "dynamographdeployments.yaml").read_text())
        ext.create_custom_resource_definition(crd)
        poll(lambda: any(c.type == "Established" and c.status == "True" for c in
                         ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []),
             timeout_s=30, what="the DGD CRD to be re-established")


def test_missing_namespace_is_refused_before_anything(platform, kubelet, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    b = bundle_mod.load("dev")
    for obj in b.objects:
        obj["metadata"]["namespace"] = "no-such-namespace"
    target = ClusterTarget("dev", kubeconfig=str(platform.kubeconfig), access=kubelet)
    with pytest.raises(DeploymentError, match=r"namespace no-such-namespace does not exist .*nothing was applied"):
        target.apply(b)


# -- context guard -------------------------------------------------------------------------------------------------
def test_wrong_current_context_is_refused_with_both_names(platform, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(platform.kubeconfig).read_text())
    config["current-context"] = "other-cluster"
    other = tmp_path / "kubeconfig"
    other.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        ClusterTarget("dev", kubeconfig=str(other), access=FakeKubelet())
    message = str(info.value)
    assert "'other-cluster'" in message and "'do-nyc2-gtc-demo'" in message
    assert "kubectl config use-context do-nyc2-gtc-demo" in message and "GTCDEMO_KUBE_CONTEXT=other-cluster" in message
    # Deliberate override: allowed.
    assert ClusterTarget("dev", kubeconfig=str(other), context="other-cluster", access=FakeKubelet()).context == \
        "other-cluster"


def test_unknown_context_lists_the_known_ones(platform) -> None:
    expected = r"'prod' is not in your kubeconfig \(it has: do-nyc2-gtc-demo, other-cluster"
    with pytest.raises(ConfigError, match=expected):
        ClusterTarget("dev", kubeconfig=str(platform.kubeconfig), context="prod", access=FakeKubelet())


# -- wait ------------------------------------------------------------------------------------------------------------
def test_happy_path_wait_sees_three_ready_pods_and_prints_adapters(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()

    def operator_and_kubelet() -> None:
        pods = op.reconcile()
        for names in pods.values():
            for name in names:
                op.container_creating(name)
                op.running(name, ready=False)  # model loading
        op.all_ready()

    notes: list[str] = []
    thread = in_background(operator_and_kubelet)
    ready = target.wait(timeout_s=120, progress=notes.append)
    join_ok(thread)
    assert ready.ready
    frame = ready.status.frame
    assert sorted(frame["service"]) == ["Frontend", "TrtllmDecodeWorker", "TrtllmPrefillWorker"]
    assert set(frame["phase"]) == {"Running"} and set(frame["ready"]) == {"1/1"}
    adapters = ready.details[0].frame  # 0.8: one per service unless scalingAdapter.disable (the Frontend's too)
    assert sorted(adapters["name"]) == ["gtc-demo-frontend", "gtc-demo-trtllmdecodeworker",
                                        "gtc-demo-trtllmprefillworker"]
    assert notes[-1].startswith("ready after")
    assert "DGDSAs of gtc-demo" in repr(ready)


def test_ready_pods_but_dgd_not_successful_keeps_waiting(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    for names in op.reconcile().values():
        for name in names:
            op.ready(name)
    op.set_dgd_state("gtc-demo", "pending")  # the operator has not caught up yet
    with pytest.raises(DeploymentError, match=r"not ready after 2 s: 3/3 pods Running and Ready, DGD state pending"):
        target.wait(timeout_s=2)


def test_slow_model_load_times_out_with_pods_events_and_logs(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    for names in op.reconcile().values():
        for name in names:
            op.running(name, ready=False)
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=2)
    message = str(info.value)
    assert "not ready after 2 s: 0/3 pods Running and Ready" in message
    assert "pods:" in message and "recent events:" in message
    decode = pods_of(op, "TrtllmDecodeWorker")[0]
    assert f"last 20 log lines of {decode}" in message and f"{decode} log line 99" in message
    assert f"{decode} log line 79" not in message  # exactly the last 20


@pytest.mark.parametrize(("play", "expected"), [
    (lambda op, pod: op.crash_loop(pod, restarts=4), "CrashLoopBackOff: container main keeps crashing (restarts 4)"),
    (lambda op, pod: op.image_pull_backoff(pod), "ImagePullBackOff: image nvcr.io/nvidia/ai-dynamo/"),
    (lambda op, pod: op.unschedulable(pod), "free a GPU node"),
    (lambda op, pod: op.event(pod, "FailedMount", 'MountVolume.SetUp failed for volume "engine-configs" : '
                              'configmap "trtllm-engine-configs" not found'), "FailedMount"),
], ids=["crash-loop", "image-pull-backoff", "unschedulable", "failed-mount"])
def test_unhealable_states_fail_fast_with_a_diagnosis(target: ClusterTarget, platform, play, expected: str) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()
    decode = pods_of(op, "TrtllmDecodeWorker")[0]
    thread = in_background(lambda: play(op, decode))
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=600)  # fails long before this: the state will not heal
    join_ok(thread)
    message = str(info.value)
    assert decode in message.splitlines()[0] and expected in message
    assert "fix:" in message and f"last 20 log lines of {decode}" in message


def test_pods_pending_past_the_bound_fail(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    for names in op.reconcile().values():
        for name in names:
            op.gated(name)
    with pytest.raises(DeploymentError, match=r"(?s)SchedulingGated: gated for more than 0 s.*kai.scheduler/queue"):
        target.wait(timeout_s=60, pending_bound_s=0)


def test_wait_without_a_dgd_says_to_apply(target: ClusterTarget) -> None:
    with pytest.raises(DeploymentError, match=r"(?s)DGD gtc-demo does not exist .*gtcdemo up --target cluster"):
        target.wait(timeout_s=5)


def test_the_plans_label_selects_nothing_the_operator_label_selects_all(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    core = client.CoreV1Api(platform.api_client)
    assert core.list_namespaced_pod(NS, label_selector="nvidia.com/dynamo-graph-deployment=gtc-demo").items == []
    assert len(core.list_namespaced_pod(NS, label_selector=f"{DGD_LABEL}=gtc-demo").items) == 3


# -- status, logs, scale, teardown ------------------------------------------------------------------------------------
def test_demo_status_shows_nodes_dgd_adapters_pods_pvcs(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    platform.operator.all_ready()
    overview = target.demo_status()
    titles = [t.title for t in overview.tables]
    assert titles == ["nodes", f"dgd -n {NS}", f"dgdsa -n {NS}", f"pods -n {NS}", f"pvc -n {NS}"]
    nodes, dgd, adapters, pods, pvcs = (t.frame for t in overview.tables)
    assert len(nodes) == 5 and sorted(nodes["gpus"].tolist()).count("1") == 3
    assert dgd.loc[0, "state"] == "successful"
    assert len(adapters) == 3 and len(pods[pods["name"].str.startswith("gtc-demo")]) == 3
    assert pvcs.loc[0, "status"] == "Bound"
    assert "demo-status" in repr(overview) and "<table" in overview._repr_html_()


def test_logs_per_service_go_through_the_kubelet(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    logs = target.logs("TrtllmPrefillWorker", tail=3)
    assert len(logs) == 1
    (pod, text), = logs.items()
    assert text.splitlines() == [f"{pod} log line {i}" for i in (97, 98, 99)]


def test_scale_goes_through_the_dgdsa_scale_subresource(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    result = target.scale("TrtllmDecodeWorker", 2)
    assert result.rows == [{"kind": "DynamoGraphDeploymentScalingAdapter", "name": "gtc-demo-trtllmdecodeworker",
                            "action": "scaled to 2"}]
    custom = client.CustomObjectsApi(platform.api_client)
    scale = custom.get_namespaced_custom_object_scale("nvidia.com", "v1alpha1", NS,
                                                      "dynamographdeploymentscalingadapters",
                                                      "gtc-demo-trtllmdecodeworker")
    assert scale["spec"]["replicas"] == 2
    dgd = target.get_dgd()
    assert dgd["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 1  # never edited directly
    platform.operator.reconcile()
    assert len(pods_of(platform.operator, "TrtllmDecodeWorker")) == 2


def test_scale_without_an_adapter_patches_the_dgd(target: ClusterTarget, platform) -> None:
    b = bundle_mod.load("dev")
    b.services["Frontend"]["scalingAdapter"] = {"disable": True}  # 0.8: no DGDSA, the DGD owns the replicas
    target.apply(b)
    platform.operator.reconcile()
    assert [a["metadata"]["name"] for a in target.adapters()] == ["gtc-demo-trtllmdecodeworker",
                                                                  "gtc-demo-trtllmprefillworker"]
    result = target.scale("Frontend", 2)
    assert result.rows[0]["kind"] == "DynamoGraphDeployment"
    assert target.get_dgd()["spec"]["services"]["Frontend"]["replicas"] == 2
    with pytest.raises(DeploymentError, match="replicas must be a whole number >= 0"):
        target.scale("Frontend", -1)
    with pytest.raises(DeploymentError, match="use one of Frontend, TrtllmPrefillWorker, TrtllmDecodeWorker"):
        target.scale("Decoder", 1)


def test_scale_before_the_operator_made_the_adapter_says_to_wait(target: ClusterTarget) -> None:
    """0.8's adapter is on by default: the webhook refuses a direct edit even before the DGDSA exists."""
    target.apply()  # no reconcile: no DGDSA yet
    with pytest.raises(DeploymentError) as info:
        target.scale("TrtllmDecodeWorker", 2)
    message = str(info.value)
    assert "scaling TrtllmDecodeWorker through the DGD is refused: admission webhook" in message
    assert "no DGDSA gtc-demo-trtllmdecodeworker yet" in message
    assert target.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 1


def test_teardown_deletes_dgd_and_configmap_waits_for_pods_and_is_idempotent(target: ClusterTarget,
                                                                             platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()

    def operator_cleans_up() -> None:
        from tests.support import poll

        poll(op.deletion_requested, timeout_s=30, what="the DGD to be deleted")  # held by the operator's finalizer
        op.delete_dgd_pods()

    thread = in_background(operator_cleans_up)
    result = target.teardown(timeout_s=60)
    join_ok(thread)
    assert {(r["kind"], r["action"]) for r in result.rows} == {("DynamoGraphDeployment", "deleted"),
                                                               ("ConfigMap", "deleted")}
    assert target.pods() == []
    core = client.CoreV1Api(platform.api_client)
    assert core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS).status.phase == "Bound"
    assert target.teardown(timeout_s=5).rows == []


# -- endpoints -------------------------------------------------------------------------------------------------------
def test_frontend_service_by_name_then_labels_then_candidates(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    assert target.frontend_service() == "gtc-demo-frontend"
    core = client.CoreV1Api(platform.api_client)
    svc = core.read_namespaced_service("gtc-demo-frontend", NS)
    core.delete_namespaced_service("gtc-demo-frontend", NS)
    renamed = copy.deepcopy(svc)
    renamed.metadata = client.V1ObjectMeta(name="gtc-demo-fe-7f9c", labels={
        DGD_LABEL: "gtc-demo", "nvidia.com/dynamo-component-type": "frontend"})  # as a newer operator might
    renamed.spec.cluster_ip = None
    renamed.spec.cluster_i_ps = None
    core.create_namespaced_service(NS, renamed)
    assert target.frontend_service() == "gtc-demo-fe-7f9c"  # found by labels, whatever its name
    core.delete_namespaced_service("gtc-demo-fe-7f9c", NS)
    with pytest.raises(DeploymentError, match=r"no frontend Service .*services there: .*"):
        target.frontend_service()


def test_test_inference_through_the_cluster_path_hits_a_real_frontend(target: ClusterTarget, platform, kubelet,
                                                                      graph) -> None:
    """The port-forward is the only fake: behind it answers the real local Dynamo frontend."""
    from gtcdemo.inference import chat_completion

    target.apply()
    platform.operator.reconcile()
    kubelet.forward_to = graph.frontend_url()
    with target.frontend() as url:
        assert kubelet.open_forwards == 1
        body = chat_completion(url, target.bundle.served_model_name, "hello from the cluster path", max_tokens=4)
    assert kubelet.open_forwards == 0  # closed on exit
    assert kubelet.forwards == [(NS, "gtc-demo-frontend", 8000)]
    assert body["object"] == "chat.completion"
    kubelet.forward_to = graph.prometheus_url()
    with target.prometheus() as url:
        assert url == graph.prometheus_url()
    assert kubelet.forwards[-1] == ("monitoring", "kube-prometheus-stack-prometheus", 9090)


def test_frontend_that_does_not_answer_is_reported(target: ClusterTarget, platform, kubelet) -> None:
    target.apply()
    platform.operator.reconcile()
    kubelet.forward_to = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(DeploymentError, match=r"svc/gtc-demo-frontend is forwarded but does not answer /health"), \
            target.frontend():
        pass
    assert kubelet.open_forwards == 0


# -- preflight -------------------------------------------------------------------------------------------------------
def test_preflight_passes_on_the_demo_platform(target: ClusterTarget) -> None:
    report = target.preflight()
    assert report.ok, repr(report)
    checks = {r["check"]: r for r in report.rows}
    assert checks["GPU nodes"]["detail"].startswith("3 nodes labelled doks.digitalocean.com/gpu-brand=nvidia, "
                                                    "3 allocatable nvidia.com/gpu, the DGD needs 2")
    assert checks["secret hf-token"]["detail"] == "present (data not read)"
    assert checks["server-side dry run"]["result"] == "PASS"
    assert FAKE_HF_TOKEN not in repr(report) and FAKE_HF_TOKEN not in report._repr_html_()


def test_preflight_names_each_missing_piece_and_its_fix(target: ClusterTarget, platform) -> None:
    core = client.CoreV1Api(platform.api_client)
    core.delete_namespaced_secret("hf-token", NS)
    core.patch_namespaced_persistent_volume_claim_status("model-nfs-pvc", NS, {"status": {"phase": "Pending"}})
    client.NodeV1Api(platform.api_client).delete_runtime_class("nvidia")
    report = target.preflight()
    failed = {r["check"]: r["fix"] for r in report.failures}
    assert set(failed) == {"secret hf-token", "PVC model-nfs-pvc", "RuntimeClass nvidia"}
    assert "kubectl -n dynamo-workload create secret generic hf-token" in failed["secret hf-token"]
    assert not report.ok and "3 check(s) failed" in repr(report)


# == against the real Dynamo 0.8 operator's rules (issue 9) =========================================================
WORKERS = ("TrtllmPrefillWorker", "TrtllmDecodeWorker")


def _workers_without_command(b: bundle_mod.Bundle) -> bundle_mod.Bundle:
    """The deployment plan's workers: args and no command (validation refuses this; apply(b) skips validation)."""
    for name in WORKERS:
        b.services[name]["extraPodSpec"]["mainContainer"].pop("command")
    return b


def test_worker_without_command_crash_loops_and_wait_names_the_missing_command(target: ClusterTarget,
                                                                                platform) -> None:
    """0.8 gives a worker only `/bin/sh -c` (component_common.go): the shell refuses `--model-path`."""
    op = platform.operator
    target.apply(_workers_without_command(bundle_mod.load("dev")))
    pods = op.reconcile()
    thread = in_background(lambda: [op.running(name) for names in pods.values() for name in names])
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=600)  # fails at once: the crash loop will not heal
    join_ok(thread)
    first = str(info.value).splitlines()[0]
    assert "CrashLoopBackOff" in first and "it has no program of its own" in first
    assert "Illegal option --" in first
    assert "add `command: [python3, -m, dynamo.trtllm]` to spec.services.Trtllm" in str(info.value)
    assert "free_gpu_memory_fraction" not in str(info.value)


def test_workers_with_the_committed_command_run(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    thread = in_background(lambda: (op.reconcile(), op.all_ready()))
    assert target.wait(timeout_s=120).ready
    join_ok(thread)
    main = next(p for p in op.service_pods("gtc-demo", "TrtllmDecodeWorker")).spec.containers[0]
    assert main.command == ["python3", "-m", "dynamo.trtllm"] and main.args[0] == "--model-path"


def _scaled_decode(target: ClusterTarget, op, replicas: int = 2) -> None:
    target.apply()
    op.reconcile()
    target.scale("TrtllmDecodeWorker", replicas)
    op.reconcile()  # the adapter controller writes the replicas into the DGD, as the operator
    assert target.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == replicas


def test_up_after_scale_keeps_the_adapters_replicas_and_still_applies_an_engine_config_change(
        target: ClusterTarget, platform) -> None:
    """Dynamo's webhook refuses anyone but the operator a change of an adapted service's replicas, dry runs
    included (validateReplicasChanges): apply carries the live replicas, so the webhook sees none."""
    op = platform.operator
    _scaled_decode(target, op)
    b = bundle_mod.load("dev")
    b.configmap["data"]["decode.yaml"] += "# tuned after the scale\n"
    result = target.apply(b)  # the manifest still says replicas: 1
    actions = {(r["kind"], r["action"]) for r in result.rows}
    assert ("ConfigMap", "configured") in actions and ("DynamoGraphDeployment", "unchanged") in actions
    assert result.note == ("TrtllmDecodeWorker: kept its 2 live replicas (the manifest says 1): the scaling adapter "
                           "gtc-demo-trtllmdecodeworker owns them; to change them: `gtcdemo scale "
                           "TrtllmDecodeWorker 1`")
    assert "gtcdemo scale TrtllmDecodeWorker 1" in repr(result)
    core = client.CoreV1Api(platform.api_client)
    assert core.read_namespaced_config_map("trtllm-engine-configs", NS).data["decode.yaml"].endswith(
        "# tuned after the scale\n")
    dgd = target.get_dgd()
    assert dgd["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 2
    # Now gtcdemo and the operator share `replicas`: a later scale and a later apply still both go through.
    # (Down to 1: 3 decode workers + the prefill one would need 4 GPUs, and the platform's nodes have 3, which
    # gtcdemo refuses before applying.)
    target.scale("TrtllmDecodeWorker", 1)
    op.reconcile()
    assert target.apply().note == ""  # the live replicas and the manifest agree again
    assert target.get_dgd()["spec"]["services"]["TrtllmDecodeWorker"]["replicas"] == 1
    assert target.preflight().rows[-1]["result"] == "PASS"  # its dry run carries the live replicas too
    op.reconcile()
    assert len(pods_of(op, "TrtllmDecodeWorker")) == 1


def test_changing_an_adapted_services_replicas_in_the_manifest_is_kept_and_said(target: ClusterTarget,
                                                                                 platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()
    b = bundle_mod.load("dev")
    b.services["TrtllmPrefillWorker"]["replicas"] = 2
    result = target.apply(b)
    assert "TrtllmPrefillWorker: kept its 1 live replicas (the manifest says 2)" in result.note
    assert "`gtcdemo scale TrtllmPrefillWorker 2`" in result.note
    assert target.get_dgd()["spec"]["services"]["TrtllmPrefillWorker"]["replicas"] == 1


def test_wait_expects_the_live_replicas_after_a_scale(target: ClusterTarget, platform) -> None:
    op = platform.operator
    _scaled_decode(target, op)
    decode = pods_of(op, "TrtllmDecodeWorker")
    assert len(decode) == 2
    for names in op.reconcile().values():
        for name in names:
            if name != decode[1]:
                op.ready(name)
    op.set_dgd_state("gtc-demo", "successful")
    with pytest.raises(DeploymentError, match=r"not ready after 2 s: 3/4 pods Running and Ready"):
        target.wait(timeout_s=2)


QUEUE_MISSING = "queue 'dynamo' not found in cluster. Ensure the queue exists before using kai-scheduler"


def test_dgd_failed_fails_the_wait_at_once_with_the_operators_message(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()
    thread = in_background(lambda: op.set_dgd_state(
        "gtc-demo", "failed", reason="failed_to_reconcile_the_resources",
        message="failed to reconcile the Grove PodClique Set: something the operator cannot do"))
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=600)
    join_ok(thread)
    assert info.value.problem.splitlines()[0] == (
        "DGD gtc-demo failed: failed_to_reconcile_the_resources: failed to reconcile the Grove PodClique Set: "
        "something the operator cannot do")
    assert "kubectl -n dynamo-workload describe dgd gtc-demo" in str(info.value)


def test_missing_kai_queue_fails_preflight_and_the_wait(kube, kubelet) -> None:
    """grove.go ensureQueueExists: without the DGD's queue the operator refuses (DGD failed)."""
    kube.platform = kube.operator.demo_platform(fake_token=FAKE_HF_TOKEN, queue=False)
    target = ClusterTarget("dev", kubeconfig=str(kube.kubeconfig), access=kubelet)
    report = target.preflight()
    queue_check = next(r for r in report.rows if r["check"] == "KAI queue dynamo")
    assert queue_check["result"] == "FAIL"
    assert queue_check["detail"].startswith("missing (queues: ") and "refuses to deploy" in queue_check["detail"]
    assert "deploy/helm/charts/platform/templates/kai.yaml" in queue_check["fix"]
    assert "nvidia.com/kai-scheduler-queue" in queue_check["fix"]
    with pytest.raises(DeploymentError) as info:  # refused before anything is applied
        target.apply()
    assert "KAI queue dynamo does not exist: the Dynamo operator refuses to deploy the DGD" in str(info.value)
    assert "templates/kai.yaml" in info.value.fix
    assert target.get_dgd() is None


def test_kai_queue_deleted_after_the_apply_fails_the_wait_at_once(target: ClusterTarget, platform) -> None:
    target.apply()
    client.CustomObjectsApi(platform.api_client).delete_cluster_custom_object("scheduling.run.ai", "v2", "queues",
                                                                              "dynamo")
    platform.operator.reconcile()  # grove.go ensureQueueExists: the reconcile fails, the DGD is `failed`
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=600)
    assert info.value.problem.startswith("DGD gtc-demo failed: failed_to_reconcile_the_resources: ")
    assert QUEUE_MISSING in info.value.problem.splitlines()[0]


def test_preflight_finds_the_queue_and_the_operator_by_the_charts_labels(target: ClusterTarget, platform) -> None:
    checks = {r["check"]: r for r in target.preflight().rows}
    assert checks["KAI queue dynamo"]["result"] == "PASS"
    operator = checks["Dynamo operator in dynamo-system"]
    assert operator["result"] == "PASS"
    assert operator["detail"] == "Deployment dynamo-platform-dynamo-operator-controller-manager (1 ready)"


def test_grove_operator_alone_fails_the_operator_check(kube, kubelet) -> None:
    """The deployment plan's 'operator disabled' with Grove on: only grove-operator runs in dynamo-system."""
    kube.platform = kube.operator.demo_platform(fake_token=FAKE_HF_TOKEN, dynamo_operator=False)
    target = ClusterTarget("dev", kubeconfig=str(kube.kubeconfig), access=kubelet)
    check = next(r for r in target.preflight().rows if r["check"] == "Dynamo operator in dynamo-system")
    assert check["result"] == "FAIL"
    assert check["detail"].startswith("no Deployment labelled app.kubernetes.io/name=dynamo-operator,"
                                      "control-plane=controller-manager; found only grove-operator (")
    assert "--set dynamo-operator.enabled=true" in check["fix"]


def test_frontend_service_of_08_is_found_by_name_before_any_labelled_one(target: ClusterTarget, platform) -> None:
    """0.8 creates `<dgd>-frontend` with no labels of ours (graph.go GenerateComponentService)."""
    target.apply()
    platform.operator.reconcile()
    core = client.CoreV1Api(platform.api_client)
    assert not (core.read_namespaced_service("gtc-demo-frontend", NS).metadata.labels or {}).get(DGD_LABEL)
    core.create_namespaced_service(NS, client.V1Service(
        metadata=client.V1ObjectMeta(name="gtc-demo-frontend-lb", labels={
            DGD_LABEL: "gtc-demo", "nvidia.com/dynamo-component-type": "frontend"}),
        spec=client.V1ServiceSpec(selector={"app": "x"}, ports=[client.V1ServicePort(port=8000)])))
    assert target.frontend_service() == "gtc-demo-frontend"


def test_preflight_on_a_namespace_only_kubeconfig_says_what_is_missing(platform, kubelet) -> None:
    from .envtest import NAMESPACE_ONLY_RULES

    restricted = platform.restricted_kubeconfig(NAMESPACE_ONLY_RULES)
    report = ClusterTarget("dev", kubeconfig=str(restricted), access=kubelet).preflight()
    checks = {r["check"]: r for r in report.rows}
    gpu = checks["GPU nodes"]
    assert gpu["result"] == "FAIL"
    assert gpu["detail"].startswith("forbidden: your credentials may not list nodes (cluster-scoped)")
    assert "ClusterRole" in gpu["fix"] and "kubectl auth can-i list nodes" in gpu["fix"]
    assert checks["secret hf-token"]["result"] == "PASS" and checks["PVC model-nfs-pvc"]["result"] == "PASS"
    assert checks["server-side dry run"]["result"] == "PASS"  # the checks after the refused one still ran
    assert checks["KAI queue dynamo"]["detail"].startswith("forbidden: your credentials may not get queues")


def test_wait_without_rbac_to_watch_pods_fails_at_once(target: ClusterTarget, platform, kubelet) -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},  # no watch
             {"apiGroups": ["", "nvidia.com"], "resources": ["events", "dynamographdeployments",
                                                            "dynamographdeploymentscalingadapters"], "verbs": ["*"]}]
    target.apply()
    platform.operator.reconcile()
    restricted = ClusterTarget("dev", kubeconfig=str(platform.restricted_kubeconfig(rules)), access=kubelet)
    with pytest.raises(DeploymentError) as info:
        restricted.wait(timeout_s=30)
    message = str(info.value)
    assert message.startswith("do-nyc2-gtc-demo/dynamo-workload: watching pods in dynamo-workload failed: HTTP 403")
    assert "kubectl auth can-i watch pods -n dynamo-workload" in message


def test_expired_watch_relists_and_resumes(target: ClusterTarget, platform, monkeypatch) -> None:
    """410 Gone (etcd compacted past the watch's resourceVersion): list again, then watch from there."""
    op = platform.operator
    target.apply()
    pods = op.reconcile()
    lists: list[bool] = []
    real = target.core.list_namespaced_pod

    @functools.wraps(real)  # the watch finds the return type in the docstring
    def spy(*args, **kwargs):
        lists.append(bool(kwargs.get("watch")))
        return real(*args, **kwargs)

    monkeypatch.setattr(target.core, "list_namespaced_pod", spy)

    def expire_then_become_ready() -> None:
        from tests.support import poll

        poll(lambda: lists.count(True) >= 1, what="the pod watch to start")
        before = lists.count(False)
        platform.envtest.compact()  # the watch's next restart (every 5 s) is from a compacted resourceVersion
        poll(lambda: lists.count(False) > before, timeout_s=30, what="a re-list after 410 Gone")
        for names in pods.values():
            for name in names:
                op.running(name, ready=False)
        op.all_ready()  # seen only if the watch resumed after the re-list

    thread = in_background(expire_then_become_ready)
    assert target.wait(timeout_s=120).ready
    join_ok(thread)


# == the Target contract, asked of the live cluster ================================================================
def test_apply_says_whether_it_changed_anything(target: ClusterTarget) -> None:
    assert target.apply().changed
    assert not target.apply().changed


def test_running_and_replicas_are_asked_of_the_live_dgd(target: ClusterTarget, platform) -> None:
    op = platform.operator
    assert not target.is_running() and target.replicas("TrtllmDecodeWorker") == 0
    stopped = target.not_running(": nothing to show")
    assert stopped.problem == "DGD gtc-demo does not exist in dynamo-workload on do-nyc2-gtc-demo: nothing to show"
    assert stopped.fix == "start it: gtcdemo up --env dev --target cluster"
    _scaled_decode(target, op)  # through the DGDSA: its controller writes the replicas into the DGD
    assert target.is_running()
    assert target.bundle.services["TrtllmDecodeWorker"].get("replicas", 1) == 1  # the manifest still says 1
    assert target.replicas("TrtllmDecodeWorker") == 2 and target.replicas("TrtllmPrefillWorker") == 1
    assert target.replicas("NoSuchService") == 0


def test_scaling_to_the_replicas_a_service_has_changes_nothing(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()
    custom = client.CustomObjectsApi(platform.api_client)
    adapter = custom.get_namespaced_custom_object("nvidia.com", "v1alpha1", NS, "dynamographdeploymentscalingadapters",
                                                  "gtc-demo-trtllmdecodeworker")
    result = target.scale("TrtllmDecodeWorker", 1)
    assert not result.changed and result.rows[0]["action"] == "unchanged"
    after = custom.get_namespaced_custom_object("nvidia.com", "v1alpha1", NS, "dynamographdeploymentscalingadapters",
                                                "gtc-demo-trtllmdecodeworker")
    assert after["metadata"]["resourceVersion"] == adapter["metadata"]["resourceVersion"]
    assert target.scale("TrtllmDecodeWorker", 2).changed


def test_a_dgd_deleted_while_waiting_fails_the_wait_at_once(target: ClusterTarget, platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()

    def someone_tears_it_down() -> None:
        from tests.support import poll

        client.CustomObjectsApi(platform.api_client).delete_namespaced_custom_object(
            "nvidia.com", "v1alpha1", NS, "dynamographdeployments", "gtc-demo")
        poll(op.deletion_requested, timeout_s=30, what="the DGD to be deleted")
        op.delete_dgd_pods()  # the operator lets the DGD go

    thread = in_background(someone_tears_it_down)
    with pytest.raises(DeploymentError, match="DGD gtc-demo does not exist in dynamo-workload on do-nyc2-gtc-demo: "
                                              "it was deleted while waiting"):
        target.wait(timeout_s=60)
    join_ok(thread)


def test_the_secret_is_read_as_metadata_only(target: ClusterTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dynamic client sends the PartialObjectMetadata Accept header: the API server answers without `data`."""
    answers: list = []
    real = target.kube.dynamic.request

    def spy(*args, **kwargs):
        answer = real(*args, **kwargs)
        answers.append(answer.to_dict())
        return answer

    monkeypatch.setattr(target.kube.dynamic, "request", spy)
    assert target.kube.secret_exists(NS, "hf-token")
    assert answers[-1]["kind"] == "PartialObjectMetadata" and "data" not in answers[-1]
    assert FAKE_HF_TOKEN not in repr(answers)
    assert not target.kube.secret_exists(NS, "no-such-secret")


def test_preflight_reports_a_broken_config_as_its_first_check(platform, kubelet, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from gtcdemo import project

    for folder in ("manifests", "engine-configs"):
        shutil.copytree(project.ROOT / folder / "dev", tmp_path / folder / "dev")
    dgd = tmp_path / "manifests" / "dev" / "20-dgd-gtc-demo.yaml"
    dgd.write_text(dgd.read_text().replace("kind: DynamoGraphDeployment", "kind: DynamoGraphDeployment\n  oops: ["))
    monkeypatch.setattr(project, "MANIFESTS", tmp_path / "manifests")
    monkeypatch.setattr(project, "ENGINE_CONFIGS", tmp_path / "engine-configs")
    report = ClusterTarget("dev", kubeconfig=str(platform.kubeconfig), access=kubelet).preflight()
    assert [(r["check"], r["result"]) for r in report.rows] == [("engine configs and manifests", "FAIL")]
    assert "20-dgd-gtc-demo.yaml" in report.rows[0]["detail"]


def test_the_aggregated_env_applies_and_becomes_ready_beside_nothing_else(platform, kubelet: FakeKubelet) -> None:
    """`agg` (notebook 06's other layout) through the same path as dev: the real API server's schema and the
    operator's webhook accept it, the operator's pods come up (Frontend + 2 TrtllmWorker), one adapter per service,
    and teardown deletes it. A rehearsal of 06 on the cluster depends on every step here."""
    agg = ClusterTarget("agg", kubeconfig=str(platform.kubeconfig), access=kubelet)
    op = platform.operator
    assert agg.apply().changed
    assert agg.replicas("TrtllmWorker") == 2 and agg.replicas("TrtllmPrefillWorker") == 0

    def operator_and_kubelet() -> None:
        for names in op.reconcile("gtc-demo-agg").values():
            for name in names:
                op.container_creating(name)
                op.running(name, ready=False)  # model loading
        op.all_ready("gtc-demo-agg")

    thread = in_background(operator_and_kubelet)
    ready = agg.wait(timeout_s=120)
    join_ok(thread)
    assert ready.ready
    assert sorted(ready.status.frame["service"]) == ["Frontend", "TrtllmWorker", "TrtllmWorker"]
    assert sorted(ready.details[0].frame["name"]) == ["gtc-demo-agg-frontend", "gtc-demo-agg-trtllmworker"]

    def operator_cleans_up() -> None:
        from tests.support import poll

        poll(lambda: op.deletion_requested("gtc-demo-agg"), timeout_s=30, what="the DGD to be deleted")
        op.delete_dgd_pods("gtc-demo-agg")

    thread = in_background(operator_cleans_up)
    assert agg.teardown(timeout_s=60).changed
    join_ok(thread)
    assert not agg.is_running() and agg.pods() == []
