"""The bundle of an env (PVC, ConfigMap, DGD): the runbook's DGD, the generated ConfigMap, drift, and DGD validation."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import yaml

from gtcdemo import bundle, project
from gtcdemo.errors import ConfigError, ValidationErrors

# The deployment runbook's DGD (its `k8s/dynamo/dev-disagg.yaml`), pasted verbatim.
RUNBOOK_DGD_YAML = """\
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: gtc-demo
  namespace: dynamo-workload
spec:
  backendFramework: trtllm
  pvcs:
    - name: model-nfs-pvc
  envs:
    - name: HF_HOME
      value: "/models"
  services:
    Frontend:
      dynamoNamespace: gtc-demo
      componentType: frontend
      replicas: 1
      volumeMounts:
        - name: model-nfs-pvc
          mountPoint: /models
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/dynamo-frontend:0.8.1
      envs:
        - name: DYN_ROUTER_MODE
          value: kv

    TrtllmPrefillWorker:
      dynamoNamespace: gtc-demo
      componentType: worker
      subComponentType: prefill
      replicas: 1
      scalingAdapter:
        enabled: true          # creates DGDSA: gtc-demo-trtllmprefillworker
      envFromSecret: hf-token
      volumeMounts:
        - name: model-nfs-pvc
          mountPoint: /models
      resources:
        limits:
          gpu: "1"
      labels:
        kai.scheduler/queue: default-queue
      extraPodSpec:
        tolerations:
          - key: nvidia.com/gpu
            operator: Exists
            effect: NoSchedule
        volumes:
          - name: engine-configs
            configMap:
              name: trtllm-engine-configs
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1
          args:
            - --model-path
            - /models/meta-llama/Llama-3.1-8B-Instruct
            - --served-model-name
            - meta-llama/Llama-3.1-8B-Instruct
            - --extra-engine-args
            - /engine-configs/prefill.yaml
            - --disaggregation-mode
            - prefill
            - --publish-events-and-metrics
          volumeMounts:
            - name: engine-configs
              mountPath: /engine-configs
              readOnly: true

    TrtllmDecodeWorker:
      dynamoNamespace: gtc-demo
      componentType: worker
      subComponentType: decode
      replicas: 1
      scalingAdapter:
        enabled: true          # creates DGDSA: gtc-demo-trtllmdecodeworker
      envFromSecret: hf-token
      volumeMounts:
        - name: model-nfs-pvc
          mountPoint: /models
      resources:
        limits:
          gpu: "1"
      labels:
        kai.scheduler/queue: default-queue
      extraPodSpec:
        tolerations:
          - key: nvidia.com/gpu
            operator: Exists
            effect: NoSchedule
        volumes:
          - name: engine-configs
            configMap:
              name: trtllm-engine-configs
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1
          args:
            - --model-path
            - /models/meta-llama/Llama-3.1-8B-Instruct
            - --served-model-name
            - meta-llama/Llama-3.1-8B-Instruct
            - --extra-engine-args
            - /engine-configs/decode.yaml
            - --disaggregation-mode
            - decode
            - --publish-events-and-metrics
          volumeMounts:
            - name: engine-configs
              mountPath: /engine-configs
              readOnly: true
"""

DGD_FILE = "20-dgd-gtc-demo.yaml"


WORKERS = ("TrtllmPrefillWorker", "TrtllmDecodeWorker")


def with_documented_deviations(dgd: dict) -> dict:
    """The runbook's DGD as the real 0.8 operator needs it (README lists each deviation and why): each worker
    names its program, the KAI queue is the DGD's annotation instead of the pod label the operator overwrites, and
    `scalingAdapter.enabled` (unknown to the 0.8 CRD, which prunes it) is left out."""
    dgd["metadata"]["annotations"] = {"nvidia.com/kai-scheduler-queue": "dynamo"}
    for name in WORKERS:
        svc = dgd["spec"]["services"][name]
        del svc["labels"]
        del svc["scalingAdapter"]  # 0.8 prunes `enabled` (its adapter is on by default)
        svc["extraPodSpec"]["mainContainer"]["command"] = ["python3", "-m", "dynamo.trtllm"]
    return dgd


@pytest.fixture
def raw_runbook_dgd() -> dict:
    """The runbook's DGD, verbatim."""
    return yaml.safe_load(RUNBOOK_DGD_YAML)


@pytest.fixture
def runbook_dgd(raw_runbook_dgd: dict) -> dict:
    """The runbook's DGD with the documented deviations: the valid starting point the tables below break."""
    return with_documented_deviations(raw_runbook_dgd)


# -- the committed dev bundle ---------------------------------------------------------------------------------------


def test_objects_are_in_apply_order(dev_bundle):
    assert [o["kind"] for o in dev_bundle.objects] == ["PersistentVolumeClaim", "ConfigMap", "DynamoGraphDeployment"]
    assert [o["metadata"]["name"] for o in dev_bundle.objects] == ["model-nfs-pvc", "trtllm-engine-configs", "gtc-demo"]
    assert {o["metadata"]["namespace"] for o in dev_bundle.objects} == {"dynamo-workload"}


# The documented deviations from the runbook's DGD (README lists each and why): finer TTFT/ITL buckets,
# plus (with_documented_deviations) the workers' command and the KAI queue annotation.
BUCKETS = [
    {"name": "DYN_METRICS_TTFT_MIN", "value": "0.0045"}, {"name": "DYN_METRICS_TTFT_MAX", "value": "10"},
    {"name": "DYN_METRICS_TTFT_COUNT", "value": "135"}, {"name": "DYN_METRICS_ITL_MIN", "value": "0.0009"},
    {"name": "DYN_METRICS_ITL_MAX", "value": "0.2"}, {"name": "DYN_METRICS_ITL_COUNT", "value": "88"},
]
# Each setting under the names 1.6 reads and under the DYN_HISTOGRAM_-prefixed names 0.8 reads.
BUCKET_ENVS = BUCKETS + [{"name": "DYN_HISTOGRAM_" + e["name"], "value": e["value"]} for e in BUCKETS]


def test_dgd_equals_the_runbook_dgd_plus_only_the_documented_deviations(dev_bundle, runbook_dgd, assert_exact):
    expected = runbook_dgd
    expected["spec"]["services"]["Frontend"]["envs"] += BUCKET_ENVS
    assert_exact(dev_bundle.dgd, expected)


def test_corrected_runbook_dgd_is_valid_against_the_generated_configmap(dev_bundle, runbook_dgd):
    assert bundle.validate_dgd(runbook_dgd, dev_bundle.configmap) == []


def test_verbatim_runbook_dgd_is_refused_for_the_missing_worker_command_and_the_overwritten_queue_label(
        dev_bundle, raw_runbook_dgd):
    """The runbook's workers would crash-loop on the 0.8 operator (no command); its queue label is overwritten."""
    errors = bundle.validate_dgd(raw_runbook_dgd, dev_bundle.configmap)
    found = sorted((e.where, e.problem.split(":")[0]) for e in errors)
    assert found == sorted(
        [(f"DGD.spec.services.{w}.extraPodSpec.mainContainer.command", "worker service has args but no command")
         for w in WORKERS]
        + [(f"DGD.spec.services.{w}.labels.kai.scheduler/queue", "label kai.scheduler/queue is overwritten by the "
            "operator with the queue the DGD annotation nvidia.com/kai-scheduler-queue names (default 'dynamo')")
           for w in WORKERS])
    command_error = next(e for e in errors if e.where.endswith("command"))
    assert "the shell takes '--model-path' for an option" in command_error.problem
    assert command_error.fix == ("add `command: [python3, -m, dynamo.trtllm]` beside args (as Dynamo's "
                                 "examples/backends/trtllm/deploy/disagg.yaml does)")


def test_configmap_carries_both_engine_configs(dev_bundle, seed_prefill, seed_decode, assert_exact):
    cm = dev_bundle.configmap
    assert cm["apiVersion"] == "v1"
    assert cm["metadata"]["name"] == "trtllm-engine-configs"
    assert cm["metadata"]["namespace"] == "dynamo-workload"
    assert set(cm["data"]) == {"prefill.yaml", "decode.yaml"}
    assert_exact(yaml.safe_load(cm["data"]["prefill.yaml"]), seed_prefill)
    assert_exact(yaml.safe_load(cm["data"]["decode.yaml"]), seed_decode)


def test_configmap_values_are_the_engine_config_files_verbatim(dev_bundle, repo_root):
    for key, text in dev_bundle.configmap["data"].items():
        assert text == (repo_root / "engine-configs" / "dev" / key).read_text()


def test_committed_configmap_file_is_generated_and_current(dev_bundle, repo_root):
    text = (repo_root / "manifests" / "dev" / bundle.CONFIGMAP_FILE).read_text()
    assert text.startswith("# GENERATED by gtcdemo from engine-configs/dev/")
    assert "gtcdemo render --env dev --write" in text.splitlines()[1]
    assert yaml.safe_load(text) == dev_bundle.configmap
    assert text == bundle.configmap_text("dev", dev_bundle.configmap)  # byte-for-byte what `render --write` writes


def test_pvc_is_the_model_claim(dev_bundle):
    pvc = dev_bundle.objects[0]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"


def test_bundle_properties(dev_bundle):
    assert dev_bundle.env == "dev"
    assert dev_bundle.name == "gtc-demo"
    assert dev_bundle.namespace == "dynamo-workload"
    assert dev_bundle.dynamo_namespace == "dynamo-workload-gtc-demo"
    assert list(dev_bundle.services) == ["Frontend", "TrtllmPrefillWorker", "TrtllmDecodeWorker"]
    assert dev_bundle.expected_pods == 3
    assert dev_bundle.served_model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert sorted(dev_bundle.engine_configs) == ["decode", "prefill"]


def test_to_yaml_round_trips(dev_bundle):
    assert list(yaml.safe_load_all(dev_bundle.to_yaml())) == dev_bundle.objects


def test_table_and_repr(dev_bundle):
    table = dev_bundle.table()
    assert list(table["kind"]) == ["PersistentVolumeClaim", "ConfigMap", "DynamoGraphDeployment",
                                   "  service", "  service", "  service"]
    details = dict(zip(table["name"], table["detail"], strict=True))
    assert details["trtllm-engine-configs"] == "keys: decode.yaml, prefill.yaml"
    assert details["gtc-demo"] == "backend trtllm, 3 pods"
    assert details["TrtllmPrefillWorker"] == "prefill, replicas 1, gpu 1"
    assert details["Frontend"] == "frontend, replicas 1, gpu 0"
    assert "Bundle(env='dev')" in repr(dev_bundle)
    assert "<code>dev</code>" in dev_bundle._repr_html_()


def test_configmap_name_requires_exactly_one_configmap(runbook_dgd):
    assert bundle.configmap_name(runbook_dgd) == "trtllm-engine-configs"
    runbook_dgd["spec"]["services"]["TrtllmDecodeWorker"]["extraPodSpec"]["volumes"][0]["configMap"]["name"] = "other"
    with pytest.raises(ConfigError) as info:
        bundle.configmap_name(runbook_dgd)
    assert "mounts 2 ConfigMaps (['other', 'trtllm-engine-configs'])" in str(info.value)
    assert "Fix:" in str(info.value)


# -- envs -----------------------------------------------------------------------------------------------------------


def test_unknown_env_lists_available_envs():
    with pytest.raises(ConfigError) as info:
        bundle.load("prod")
    message = str(info.value)
    assert "unknown env 'prod'; available: agg, dev" in message
    assert "Fix: pass one of ['agg', 'dev']" in message


def test_available_envs_need_both_folders(project_copy):
    (project_copy / "engine-configs" / "staging").mkdir()
    (project_copy / "manifests" / "staging").mkdir()
    (project_copy / "engine-configs" / "half").mkdir()  # no manifests/half: not an env
    assert project.available_envs() == ["agg", "dev", "staging"]
    with pytest.raises(ConfigError) as info:
        bundle.load("half")
    assert "available: agg, dev, staging" in str(info.value)
    assert "engine-configs/half/ and manifests/half/" in str(info.value)


# -- drift between engine-configs/ and the committed ConfigMap -----------------------------------------------------


def test_drift_is_an_error_until_render_write(project_copy, repo_root):
    committed = (repo_root / "manifests" / "dev" / bundle.CONFIGMAP_FILE).read_bytes()
    decode = project_copy / "engine-configs" / "dev" / "decode.yaml"
    decode.write_text(decode.read_text().replace("max_num_tokens: 8192", "max_num_tokens: 4096"))

    with pytest.raises(ValidationErrors) as info:
        bundle.load("dev")
    message = str(info.value)
    assert len(info.value.errors) == 1
    assert "manifests/dev/10-engine-configmap.yaml is missing or out of date with engine-configs/dev/" in message
    assert "Fix: run `gtcdemo render --env dev --write` and commit it" in message

    # Without the drift check (what `render` without --write prints), the new value is already there.
    preview = bundle.load("dev", check_drift=False)
    assert yaml.safe_load(preview.configmap["data"]["decode.yaml"])["max_num_tokens"] == 4096

    written = bundle.write_configmap("dev")
    assert written == project_copy / "manifests" / "dev" / bundle.CONFIGMAP_FILE
    fixed = bundle.load("dev")
    assert yaml.safe_load(fixed.configmap["data"]["decode.yaml"])["max_num_tokens"] == 4096
    assert yaml.safe_load(written.read_text()) == fixed.configmap
    assert written.read_text().startswith("# GENERATED by gtcdemo")
    # The committed file in the real repo was never touched.
    assert (repo_root / "manifests" / "dev" / bundle.CONFIGMAP_FILE).read_bytes() == committed


def test_comment_only_change_is_drift_too(project_copy):
    # The ConfigMap carries the files verbatim, so even a comment must be re-rendered.
    decode = project_copy / "engine-configs" / "dev" / "decode.yaml"
    decode.write_text("# tuned on stage\n" + decode.read_text())
    with pytest.raises(ValidationErrors, match="gtcdemo render --env dev --write"):
        bundle.load("dev")
    bundle.write_configmap("dev")
    assert bundle.load("dev").configmap["data"]["decode.yaml"].startswith("# tuned on stage\n")


def test_hand_edited_configmap_is_drift(project_copy):
    path = project_copy / "manifests" / "dev" / bundle.CONFIGMAP_FILE
    path.write_text(path.read_text().replace("max_batch_size: 64", "max_batch_size: 32"))
    with pytest.raises(ValidationErrors, match="gtcdemo render --env dev --write"):
        bundle.load("dev")


def test_missing_configmap_file_is_drift(project_copy):
    (project_copy / "manifests" / "dev" / bundle.CONFIGMAP_FILE).unlink()
    with pytest.raises(ValidationErrors) as info:
        bundle.load("dev")
    assert "missing or out of date" in str(info.value)
    bundle.write_configmap("dev")
    assert bundle.load("dev").configmap["metadata"]["name"] == "trtllm-engine-configs"


def test_write_configmap_refuses_invalid_engine_configs(project_copy):
    decode = project_copy / "engine-configs" / "dev" / "decode.yaml"
    decode.write_text(decode.read_text().replace("max_batch_size: 64", "max_batch_size: sixty-four"))
    before = (project_copy / "manifests" / "dev" / bundle.CONFIGMAP_FILE).read_text()
    with pytest.raises(ValidationErrors) as info:
        bundle.write_configmap("dev")
    assert "engine-configs/dev/decode.yaml: max_batch_size" in str(info.value)
    assert (project_copy / "manifests" / "dev" / bundle.CONFIGMAP_FILE).read_text() == before


# -- the manifests folder -------------------------------------------------------------------------------------------


def test_two_dgds_in_one_file_are_rejected(project_copy):
    path = project_copy / "manifests" / "dev" / DGD_FILE
    second = yaml.safe_load(path.read_text())
    second["metadata"]["name"] = "gtc-demo-2"
    path.write_text(path.read_text() + "---\n" + yaml.safe_dump(second))
    with pytest.raises(ConfigError) as info:
        bundle.load("dev")
    message = str(info.value)
    assert f"{DGD_FILE}: 2 DynamoGraphDeployments in one file" in message
    assert "Fix: keep exactly one DGD per env" in message


def test_two_dgds_in_two_files_are_rejected(project_copy):
    dgd = yaml.safe_load((project_copy / "manifests" / "dev" / DGD_FILE).read_text())
    dgd["metadata"]["name"] = "gtc-demo-2"
    (project_copy / "manifests" / "dev" / "30-second.yaml").write_text(yaml.safe_dump(dgd))
    with pytest.raises(ConfigError) as info:
        bundle.load("dev")
    assert "found 2 DynamoGraphDeployments in manifests/dev/" in str(info.value)
    assert "Fix: keep exactly one DGD per env" in str(info.value)


def test_no_dgd_is_rejected(project_copy):
    (project_copy / "manifests" / "dev" / DGD_FILE).unlink()
    with pytest.raises(ConfigError, match="found 0 DynamoGraphDeployments in manifests/dev/"):
        bundle.load("dev")


def test_unexpected_kind_is_rejected(project_copy):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "dynamo-workload"}}
    (project_copy / "manifests" / "dev" / "30-service.yaml").write_text(yaml.safe_dump(service))
    with pytest.raises(ValidationErrors) as info:
        bundle.load("dev")
    message = str(info.value)
    assert "30-service.yaml: unexpected kind 'Service'" in message
    assert "Fix: manifests/<env>/ holds only PersistentVolumeClaim, ConfigMap, DynamoGraphDeployment" in message


def test_manifest_yaml_syntax_error_has_line_number(project_copy):
    path = project_copy / "manifests" / "dev" / DGD_FILE
    lines = path.read_text().splitlines()
    index = lines.index("  backendFramework: trtllm")
    lines[index] = "  backendFramework: trtllm: oops"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        bundle.load("dev")
    message = str(info.value)
    assert f"manifests/dev/{DGD_FILE}: YAML syntax error at line {index + 1}" in message
    assert "Fix: fix the YAML syntax" in message


def test_yml_extension_is_read_too(project_copy):
    dgd_dir = project_copy / "manifests" / "dev"
    (dgd_dir / DGD_FILE).rename(dgd_dir / "20-dgd-gtc-demo.yml")
    assert bundle.load("dev").name == "gtc-demo"


def test_dgd_errors_from_load_are_located_in_the_manifest(project_copy):
    path = project_copy / "manifests" / "dev" / DGD_FILE
    path.write_text(path.read_text().replace("      subComponentType: prefill\n      replicas: 1\n",
                                             "      subComponentType: prefill\n      replica: 1\n", 1))
    with pytest.raises(ValidationErrors) as info:
        bundle.load("dev")
    message = str(info.value)
    assert "manifests/dev DGD gtc-demo.spec.services.TrtllmPrefillWorker.replica" in message
    assert "did you mean 'replicas'?" in message


# -- validate_dgd: a table of broken DGDs ---------------------------------------------------------------------------

SVC = "DGD.spec.services"
PREFILL_WORKER = f"{SVC}.TrtllmPrefillWorker"
DECODE_WORKER = f"{SVC}.TrtllmDecodeWorker"
Mutation = Callable[[dict], None]


def _svc(dgd: dict, name: str) -> dict:
    return dgd["spec"]["services"][name]


def _args(dgd: dict, name: str) -> list:
    return _svc(dgd, name)["extraPodSpec"]["mainContainer"]["args"]


def _set_arg(name: str, flag: str, value: str) -> Mutation:
    def mutate(dgd: dict) -> None:
        args = _args(dgd, name)
        args[args.index(flag) + 1] = value
    return mutate


def _drop_arg(name: str, flag: str) -> Mutation:
    def mutate(dgd: dict) -> None:
        args = _args(dgd, name)
        i = args.index(flag)
        del args[i:i + 2]
    return mutate


def _main(dgd: dict, name: str) -> dict:
    return _svc(dgd, name)["extraPodSpec"].setdefault("mainContainer", {})


def both(*mutations: Mutation) -> Mutation:
    def mutate(dgd: dict) -> None:
        for m in mutations:
            m(dgd)
    return mutate


def _set_svc(name: str, key: str, value) -> Mutation:
    return lambda dgd: _svc(dgd, name).__setitem__(key, value)


def _rename_svc_key(name: str, old: str, new: str) -> Mutation:
    return lambda dgd: _svc(dgd, name).__setitem__(new, _svc(dgd, name).pop(old))


def _two_frontends(dgd: dict) -> None:
    dgd["spec"]["services"]["Frontend2"] = copy.deepcopy(_svc(dgd, "Frontend"))


def _no_frontend(dgd: dict) -> None:
    del dgd["spec"]["services"]["Frontend"]


def _extra_args_equals_form(dgd: dict) -> None:
    args = _args(dgd, "TrtllmDecodeWorker")
    i = args.index("--extra-engine-args")
    args[i:i + 2] = ["--extra-engine-args=/engine-configs/deocde.yaml"]


BAD_DGDS = [
    pytest.param(_rename_svc_key("TrtllmDecodeWorker", "replicas", "replica"), f"{DECODE_WORKER}.replica",
                 ["unknown field 'replica' (the API server would silently drop it)", "Fix: did you mean 'replicas'?"],
                 1, id="typo-service-field-replica"),
    pytest.param(_rename_svc_key("Frontend", "envs", "env"), f"{SVC}.Frontend.env",
                 ["unknown field 'env'", "did you mean 'envs'?"], 1, id="typo-service-field-env"),
    pytest.param(_set_svc("TrtllmPrefillWorker", "bananas", 1), f"{PREFILL_WORKER}.bananas",
                 ["unknown field 'bananas'", "Fix: remove it; known fields:"], 1, id="unknown-service-field"),
    pytest.param(lambda d: d["spec"].__setitem__("env", d["spec"].pop("envs")), "DGD.spec.env",
                 ["unknown field 'env'", "Fix: did you mean 'envs'?"], 1, id="typo-in-spec"),
    pytest.param(lambda d: d["spec"].__setitem__("backendFramwork", d["spec"].pop("backendFramework")),
                 "DGD.spec.backendFramwork", ["did you mean 'backendFramework'?", "backendFramework is None"], 2,
                 id="typo-in-spec-backend"),
    pytest.param(lambda d: _svc(d, "TrtllmPrefillWorker")["volumeMounts"][0].__setitem__("name", "models-pvc"),
                 f"{PREFILL_WORKER}.volumeMounts[0].name",
                 ["volumeMounts[0] names PVC 'models-pvc', which is not registered in spec.pvcs ['model-nfs-pvc']",
                  "Fix: add `- name: models-pvc` to spec.pvcs, or mount one of ['model-nfs-pvc']"], 1,
                 id="volume-mount-names-no-pvc"),
    pytest.param(lambda d: d["spec"].__setitem__("pvcs", []), f"{SVC}.Frontend.volumeMounts[0].name",
                 ["names PVC 'model-nfs-pvc', which is not registered in spec.pvcs []"], 3, id="no-pvcs-registered"),
    pytest.param(lambda d: _svc(d, "Frontend")["volumeMounts"][0].__setitem__("mountPoint", "models"),
                 f"{SVC}.Frontend.volumeMounts[0].mountPoint",
                 ["mountPoint must be an absolute path", "Fix: set mountPoint: /models"], 1, id="relative-mount-point"),
    pytest.param(_set_arg("TrtllmDecodeWorker", "--extra-engine-args", "/engine-configs/decoder.yaml"),
                 f"{DECODE_WORKER}.extraPodSpec.mainContainer.args",
                 ["--extra-engine-args /engine-configs/decoder.yaml needs key 'decoder.yaml', but ConfigMap "
                  "trtllm-engine-configs has ['decode.yaml', 'prefill.yaml']",
                  "Fix: point it at one of ['decode.yaml', 'prefill.yaml'] or add engine-configs/<env>/decoder.yaml"],
                 1, id="engine-args-key-missing"),
    pytest.param(_extra_args_equals_form, f"{DECODE_WORKER}.extraPodSpec.mainContainer.args",
                 ["needs key 'deocde.yaml'"], 1, id="engine-args-equals-form-key-missing"),
    pytest.param(_set_arg("TrtllmPrefillWorker", "--extra-engine-args", "/etc/trtllm/prefill.yaml"),
                 f"{PREFILL_WORKER}.extraPodSpec",
                 ["--extra-engine-args /etc/trtllm/prefill.yaml is not under any mounted volume",
                  "Fix: mount the engine-config ConfigMap at /engine-configs in mainContainer.volumeMounts"], 1,
                 id="engine-args-not-under-mount"),
    pytest.param(lambda d: _svc(d, "TrtllmPrefillWorker")["extraPodSpec"]["mainContainer"].pop("volumeMounts"),
                 f"{PREFILL_WORKER}.extraPodSpec", ["is not under any mounted volume"], 1,
                 id="engine-configs-not-mounted"),
    pytest.param(lambda d: _svc(d, "TrtllmDecodeWorker")["extraPodSpec"]["mainContainer"]["volumeMounts"][0]
                 .__setitem__("name", "cfg"), f"{DECODE_WORKER}.extraPodSpec.volumes",
                 ["volumeMount 'cfg' has no matching volume", "Fix: add a volume named 'cfg'"], 1,
                 id="mount-without-volume"),
    pytest.param(lambda d: _svc(d, "TrtllmDecodeWorker")["extraPodSpec"]["volumes"][0]["configMap"]
                 .__setitem__("name", "old-engine-configs"), f"{DECODE_WORKER}.extraPodSpec.volumes",
                 ["/engine-configs/decode.yaml comes from ConfigMap 'old-engine-configs', not the generated "
                  "'trtllm-engine-configs'", "Fix: mount ConfigMap trtllm-engine-configs"], 1,
                 id="engine-args-from-other-configmap"),
    pytest.param(lambda d: _svc(d, "TrtllmDecodeWorker")["extraPodSpec"].pop("tolerations"),
                 f"{DECODE_WORKER}.extraPodSpec.tolerations",
                 ["requests a GPU but does not tolerate the GPU nodes' taint nvidia.com/gpu:NoSchedule",
                  "Fix: add `- {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}`"], 1,
                 id="gpu-worker-without-toleration"),
    pytest.param(lambda d: _svc(d, "TrtllmPrefillWorker")["extraPodSpec"]["tolerations"][0]
                 .__setitem__("effect", "NoExecute"), f"{PREFILL_WORKER}.extraPodSpec.tolerations",
                 ["does not tolerate"], 1, id="gpu-toleration-wrong-effect"),
    pytest.param(lambda d: _svc(d, "Frontend").__setitem__("resources", {"limits": {"gpu": "1"}}),
                 f"{SVC}.Frontend.extraPodSpec.tolerations", ["requests a GPU but does not tolerate"], 1,
                 id="frontend-with-gpu-without-toleration"),
    pytest.param(_set_arg("TrtllmDecodeWorker", "--served-model-name", "meta-llama/Llama-3.1-70B-Instruct"),
                 SVC, ["workers serve different model names",
                       "'TrtllmPrefillWorker': 'meta-llama/Llama-3.1-8B-Instruct'",
                       "'TrtllmDecodeWorker': 'meta-llama/Llama-3.1-70B-Instruct'",
                       "Fix: use one --served-model-name across all workers"], 1, id="served-model-name-mismatch"),
    pytest.param(_drop_arg("TrtllmPrefillWorker", "--served-model-name"),
                 f"{PREFILL_WORKER}.extraPodSpec.mainContainer.args",
                 ["worker has no --served-model-name",
                  "Fix: add `--served-model-name meta-llama/Llama-3.1-8B-Instruct`"], 1,
                 id="served-model-name-missing"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "componentType", "wroker"), f"{DECODE_WORKER}.componentType",
                 ["componentType is 'wroker'", "Fix: use one of ['frontend', 'main', 'planner', 'worker']"], 1,
                 id="bad-component-type"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "subComponentType", "decoder"), f"{DECODE_WORKER}.subComponentType",
                 ["subComponentType is 'decoder'", "Fix: use prefill or decode",
                  "--disaggregation-mode is 'decode' but subComponentType is 'decoder'"], 2,
                 id="bad-sub-component-type"),
    pytest.param(_set_arg("TrtllmDecodeWorker", "--disaggregation-mode", "prefill"),
                 f"{DECODE_WORKER}.extraPodSpec.mainContainer.args",
                 ["--disaggregation-mode is 'prefill' but subComponentType is 'decode'",
                  "Fix: pass `--disaggregation-mode decode`"], 1, id="disaggregation-mode-mismatch"),
    pytest.param(_drop_arg("TrtllmPrefillWorker", "--disaggregation-mode"),
                 f"{PREFILL_WORKER}.extraPodSpec.mainContainer.args",
                 ["--disaggregation-mode is None but subComponentType is 'prefill'"], 1,
                 id="disaggregation-mode-missing"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "replicas", -1), f"{DECODE_WORKER}.replicas",
                 ["replicas is -1", "Fix: use a whole number >= 0"], 1, id="replicas-negative"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "replicas", "two"), f"{DECODE_WORKER}.replicas",
                 ["replicas is 'two'", "Fix: use a whole number >= 0"], 1, id="replicas-string"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "replicas", True), f"{DECODE_WORKER}.replicas",
                 ["replicas is True"], 1, id="replicas-bool"),
    pytest.param(_set_svc("TrtllmDecodeWorker", "replicas", 1.5), f"{DECODE_WORKER}.replicas",
                 ["replicas is 1.5"], 1, id="replicas-float"),
    pytest.param(lambda d: _svc(d, "TrtllmPrefillWorker")["resources"]["limits"].__setitem__("gpu", "one"),
                 f"{PREFILL_WORKER}.resources.limits.gpu",
                 ["resources.limits.gpu is 'one'", 'Fix: use a quoted whole number, e.g. "1"'], 1, id="gpu-one"),
    pytest.param(lambda d: _svc(d, "TrtllmPrefillWorker")["resources"]["limits"].__setitem__("gpu", "-1"),
                 f"{PREFILL_WORKER}.resources.limits.gpu", ["resources.limits.gpu is '-1'"], 1, id="gpu-negative"),
    pytest.param(_set_svc("TrtllmPrefillWorker", "scalingAdapter", {"enable": True}),
                 f"{PREFILL_WORKER}.scalingAdapter",
                 ["scalingAdapter is {'enable': True}", "Fix: use `enabled: true` (CRD >= 0.9) or `disable: false`"],
                 1, id="scaling-adapter-typo"),
    pytest.param(_two_frontends, SVC, ["2 frontend services",
                                       "Fix: declare exactly one service with componentType: frontend"], 1,
                 id="two-frontends"),
    pytest.param(_no_frontend, SVC, ["0 frontend services"], 1, id="no-frontend"),
    pytest.param(lambda d: d.__setitem__("apiVersion", "nvidia.com/v1beta1"), "DGD.apiVersion",
                 ["apiVersion is 'nvidia.com/v1beta1'", "Fix: use nvidia.com/v1alpha1 (the installed CRD)"], 1,
                 id="wrong-api-version"),
    pytest.param(lambda d: d["metadata"].pop("namespace"), "DGD.metadata",
                 ["metadata.name and namespace are required", "Fix: set metadata.name (gtc-demo)"], 1,
                 id="missing-namespace"),
    pytest.param(lambda d: d["spec"].pop("services"), f"{SVC}",
                 ["spec.services is empty or not a map",
                  "Fix: declare Frontend, TrtllmPrefillWorker and TrtllmDecodeWorker"], 1, id="missing-services"),
    pytest.param(lambda d: d["spec"].__setitem__("services", {}), SVC, ["spec.services is empty or not a map"], 1,
                 id="empty-services"),
    pytest.param(lambda d: d["spec"].__setitem__("services", ["Frontend"]), SVC,
                 ["spec.services is empty or not a map"], 1, id="services-as-list"),
    pytest.param(lambda d: d.pop("spec"), "DGD.spec", ["spec is missing", "Fix: add a spec"], 1, id="missing-spec"),
    pytest.param(lambda d: d["spec"].__setitem__("backendFramework", "tensorrt"), "DGD.spec.backendFramework",
                 ["backendFramework is 'tensorrt'", "Fix: use one of ['sglang', 'trtllm', 'vllm']"], 1,
                 id="bad-backend-framework"),
    pytest.param(lambda d: d["spec"]["envs"][0].pop("value"), "DGD.spec.envs[0]",
                 ["env HF_HOME has no value"], 1, id="env-without-value"),
    # The 0.8 operator gives only the Frontend a program (component_frontend.go); the others keep /bin/sh -c.
    pytest.param(lambda d: _main(d, "TrtllmDecodeWorker").pop("command"),
                 f"{DECODE_WORKER}.extraPodSpec.mainContainer.command",
                 ["worker service has args but no command", "the shell takes '--model-path' for an option",
                  "Fix: add `command: [python3, -m, dynamo.trtllm]` beside args"], 1, id="worker-args-without-command"),
    pytest.param(both(lambda d: _main(d, "TrtllmPrefillWorker").pop("command"),
                      lambda d: d["spec"].__setitem__("backendFramework", "vllm")),
                 f"{PREFILL_WORKER}.extraPodSpec.mainContainer.command",
                 ["Fix: add `command: [python3, -m, dynamo.vllm]`", "examples/backends/vllm/deploy/disagg.yaml"], 1,
                 id="vllm-worker-args-without-command"),
    pytest.param(both(lambda d: _main(d, "TrtllmPrefillWorker").pop("command"),
                      _set_svc("TrtllmPrefillWorker", "componentType", "main")),
                 f"{PREFILL_WORKER}.extraPodSpec.mainContainer.command", ["main service has args but no command"], 1,
                 id="main-args-without-command"),
    pytest.param(lambda d: _main(d, "TrtllmDecodeWorker").__setitem__("command", "python3 -m dynamo.trtllm"),
                 f"{DECODE_WORKER}.extraPodSpec.mainContainer.command",
                 ["command is 'python3 -m dynamo.trtllm', not a list of strings",
                  "Fix: write it as a list, e.g. `command: [python3, -m, dynamo.trtllm]`"], 1,
                 id="command-as-a-string"),
    pytest.param(lambda d: _main(d, "Frontend").__setitem__("args", ["--http-port", "8000"]),
                 f"{SVC}.Frontend.extraPodSpec.mainContainer.args",
                 ["args without command replace the operator's default `-m dynamo.frontend`",
                  "Fix: start args with `-m`, `dynamo.frontend`"], 1, id="frontend-args-without-module"),
    pytest.param(lambda d: _svc(d, "TrtllmDecodeWorker").__setitem__("labels", {"kai.scheduler/queue": "gpu"}),
                 f"{DECODE_WORKER}.labels.kai.scheduler/queue",
                 ["label kai.scheduler/queue is overwritten by the operator",
                  "Fix: remove the label and set `metadata.annotations: {nvidia.com/kai-scheduler-queue: <queue>}`"],
                 1, id="kai-queue-label"),
]


@pytest.mark.parametrize(("mutate", "where", "expected", "count"), BAD_DGDS)
def test_bad_dgd_is_reported_with_location_and_fix(dev_bundle, runbook_dgd, mutate, where, expected, count):
    dgd = copy.deepcopy(runbook_dgd)
    mutate(dgd)
    errors = bundle.validate_dgd(dgd, dev_bundle.configmap)
    message = "\n".join(str(e) for e in errors)
    assert len(errors) == count, message
    assert any(str(e).startswith(f"{where}") for e in errors), f"no error located at {where!r}:\n{message}"
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    for error in errors:
        assert isinstance(error, ConfigError)
        assert error.where and error.fix and "\nFix: " in str(error), str(error)


def test_bad_dgd_table_is_big_enough():
    assert len(BAD_DGDS) >= 15


def test_validate_dgd_does_not_mutate_its_input(dev_bundle, runbook_dgd):
    before = copy.deepcopy(runbook_dgd)
    bundle.validate_dgd(runbook_dgd, dev_bundle.configmap)
    assert runbook_dgd == before


def test_validate_dgd_uses_the_given_location(dev_bundle, runbook_dgd):
    runbook_dgd["apiVersion"] = "v1"
    (error,) = bundle.validate_dgd(runbook_dgd, dev_bundle.configmap, where="manifests/dev DGD gtc-demo")
    assert error.where == "manifests/dev DGD gtc-demo.apiVersion"


def test_integer_gpu_and_zero_replicas_are_fine(dev_bundle, runbook_dgd):
    _svc(runbook_dgd, "TrtllmPrefillWorker")["resources"]["limits"]["gpu"] = 1
    _svc(runbook_dgd, "TrtllmDecodeWorker")["replicas"] = 0
    _svc(runbook_dgd, "TrtllmDecodeWorker")["scalingAdapter"] = {"disable": False}  # the 0.8 CRD spelling
    assert bundle.validate_dgd(runbook_dgd, dev_bundle.configmap) == []


def test_load_reports_dgd_and_drift_problems_together(project_copy):
    path = project_copy / "manifests" / "dev" / DGD_FILE
    dgd = yaml.safe_load(path.read_text())
    dgd["apiVersion"] = "nvidia.com/v1beta1"
    _svc(dgd, "TrtllmDecodeWorker")["replicas"] = "two"
    path.write_text(yaml.safe_dump(dgd, sort_keys=False))
    decode = project_copy / "engine-configs" / "dev" / "decode.yaml"
    decode.write_text(decode.read_text().replace("max_num_tokens: 8192", "max_num_tokens: 4096"))
    with pytest.raises(ValidationErrors) as info:
        bundle.load("dev")
    message = str(info.value)
    assert message.startswith("3 problem(s) found, nothing was applied:")
    assert "apiVersion is 'nvidia.com/v1beta1'" in message
    assert "replicas is 'two'" in message
    assert "gtcdemo render --env dev --write" in message
