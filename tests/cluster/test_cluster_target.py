"""ClusterTarget against a real kube-apiserver + etcd, with the tests playing the Dynamo operator and the kubelet.

Only what needs a kubelet (pod logs, port-forwards) goes through a test double; everything else is the real API.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gtcdemo import bundle as bundle_mod
from gtcdemo.cluster import DGD_LABEL, ClusterTarget
from gtcdemo.errors import ConfigError, DeploymentError

from .conftest import FAKE_HF_TOKEN

NS = "dynamo-workload"


class FakeKubelet:
    """The kubelet-backed calls: canned log lines, and port-forwards to a URL the test chooses."""

    def __init__(self, forward_to: str | None = None) -> None:
        self.forward_to = forward_to
        self.forwards: list[tuple[str, str, int]] = []
        self.open_forwards = 0

    def logs(self, namespace: str, pod: str, tail: int) -> str:
        return "\n".join(f"{pod} log line {i}" for i in range(100 - tail, 100))

    @contextlib.contextmanager
    def port_forward(self, namespace: str, service: str, port: int) -> Iterator[str]:
        if self.forward_to is None:
            raise DeploymentError(f"no kubelet to forward svc/{service}", fix="(test double)")
        self.forwards.append((namespace, service, port))
        self.open_forwards += 1
        try:
            yield self.forward_to
        finally:
            self.open_forwards -= 1


@pytest.fixture
def kubelet() -> FakeKubelet:
    return FakeKubelet()


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
    assert dgd["spec"] == target.bundle.dgd["spec"]


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
    target = ClusterTarget("dev", kubeconfig=str(kube.kubeconfig), access=kubelet)
    result = target.apply()
    assert result.rows[0] == {"kind": "PersistentVolumeClaim", "name": "model-nfs-pvc", "action": "created"}


def test_dgd_the_schema_rejects_applies_nothing(target: ClusterTarget, platform) -> None:
    b = bundle_mod.load("dev")
    b.services["TrtllmPrefillWorker"]["labels"]["kai.scheduler/queue"] = 5  # labels are strings in the CRD
    with pytest.raises(DeploymentError) as info:
        target.apply(b)
    assert "refuses DynamoGraphDeployment gtc-demo (dry run; nothing was applied)" in str(info.value)
    core = client.CoreV1Api(platform.api_client)
    assert core.list_namespaced_config_map(NS, field_selector="metadata.name=trtllm-engine-configs").items == []
    assert target.get_dgd() is None


def test_missing_crd_is_reported_and_nothing_applied(target: ClusterTarget, platform) -> None:
    from kubernetes.client.exceptions import ApiException

    from tests.conftest import poll

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
    adapters = ready.details[0].frame
    assert sorted(adapters["name"]) == ["gtc-demo-trtllmdecodeworker", "gtc-demo-trtllmprefillworker"]
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


def test_seed_label_selects_nothing_the_operator_label_selects_all(target: ClusterTarget, platform) -> None:
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
    assert len(adapters) == 2 and len(pods[pods["name"].str.startswith("gtc-demo")]) == 3
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
    target.apply()
    result = target.scale("Frontend", 2)
    assert result.rows[0]["kind"] == "DynamoGraphDeployment"
    assert target.get_dgd()["spec"]["services"]["Frontend"]["replicas"] == 2
    with pytest.raises(DeploymentError, match="replicas must be a whole number >= 0"):
        target.scale("Frontend", -1)
    with pytest.raises(DeploymentError, match="use one of Frontend, TrtllmPrefillWorker, TrtllmDecodeWorker"):
        target.scale("Decoder", 1)


def test_teardown_deletes_dgd_and_configmap_waits_for_pods_and_is_idempotent(target: ClusterTarget,
                                                                             platform) -> None:
    op = platform.operator
    target.apply()
    op.reconcile()

    def operator_cleans_up() -> None:
        import time

        deadline = time.monotonic() + 30
        while target.get_dgd() is not None:  # the operator notices the deletion
            assert time.monotonic() < deadline
            time.sleep(0.05)
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
def test_frontend_service_by_label_then_convention_then_candidates(target: ClusterTarget, platform) -> None:
    target.apply()
    platform.operator.reconcile()
    assert target.frontend_service() == "gtc-demo-frontend"
    core = client.CoreV1Api(platform.api_client)
    svc = core.read_namespaced_service("gtc-demo-frontend", NS)
    core.delete_namespaced_service("gtc-demo-frontend", NS)
    renamed = copy.deepcopy(svc)
    renamed.metadata = client.V1ObjectMeta(name="gtc-demo-fe-7f9c", labels=svc.metadata.labels)
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
def test_preflight_passes_on_the_seed_platform(target: ClusterTarget) -> None:
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
