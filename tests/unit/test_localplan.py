"""The local plan: the dev DGD as local processes (frontend + mocker workers), and the Prometheus config."""

from __future__ import annotations

import copy
import dataclasses
import re
from fractions import Fraction
from pathlib import Path

import pytest

from gtcdemo import bundle as bundle_mod
from gtcdemo.errors import ConfigError
from gtcdemo.local import plan as localplan
from gtcdemo.local import volumes

PORTS = {"frontend-0": 18000, "trtllmprefillworker-0": 19091, "trtllmdecodeworker-0": 19092}
PYTHON = "/opt/test/bin/python"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DYNAMO_NAMESPACE = "dynamo-workload-gtc-demo"

# The documented constants, written out independently of localplan's own.
GPU_BYTES = 81559 * 1024 * 1024            # one H100 80GB as nvidia-smi reports it
WEIGHT_BYTES = 2 * 8_030_000_000           # Llama-3.1-8B, 8.03e9 parameters x 2 bytes (bf16)
RESERVE_BYTES = 3 * 1024 ** 3              # activations / CUDA graphs outside the KV pool
KV_BYTES_PER_TOKEN = 128 * 1024            # 32 layers x 8 KV heads x 128 head_dim x 2 (K, V) x 2 bytes
TOKENS_PER_BLOCK = 32


def expected_blocks(fraction: Fraction, tokens_per_block: int = TOKENS_PER_BLOCK, tp: int = 1) -> int:
    """KV blocks: the fraction of (GPU memory - weights - reserve), in whole blocks, computed in exact arithmetic."""
    free = tp * GPU_BYTES - WEIGHT_BYTES - tp * RESERVE_BYTES
    return int(free * fraction) // (KV_BYTES_PER_TOKEN * tokens_per_block)


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def make_plan(b: bundle_mod.Bundle, tmp_path: Path, ports: dict[str, int] | None = None) -> list[localplan.ProcSpec]:
    return localplan.plan(b, state_dir=tmp_path / "state", pvc_root=tmp_path / "pvc", ports=ports or PORTS,
                          kv_bytes_per_token=KV_BYTES_PER_TOKEN, python=PYTHON)


def modified(b: bundle_mod.Bundle, *, dgd=None, engine: dict[str, dict] | None = None) -> bundle_mod.Bundle:
    """A copy of ``b`` with DGD changes (a callable on the DGD) and engine values replaced per role."""
    objects = copy.deepcopy(b.objects)
    if dgd:
        dgd(next(o for o in objects if o["kind"] == bundle_mod.DGD_KIND))
    configs = dict(b.engine_configs)
    for role, values in (engine or {}).items():
        configs[role] = dataclasses.replace(configs[role], values=values)
    return bundle_mod.Bundle(env=b.env, objects=objects, engine_configs=configs)


@pytest.fixture
def specs(dev_bundle, tmp_path) -> dict[str, localplan.ProcSpec]:
    return {s.name: s for s in make_plan(dev_bundle, tmp_path)}


# -- the dev plan ---------------------------------------------------------------------------------------------------


def test_plan_has_three_processes_in_service_order(dev_bundle, tmp_path):
    plan = make_plan(dev_bundle, tmp_path)
    assert [(s.name, s.service, s.role, s.replica) for s in plan] == [
        ("frontend-0", "Frontend", "frontend", 0),
        ("trtllmprefillworker-0", "TrtllmPrefillWorker", "prefill", 0),
        ("trtllmdecodeworker-0", "TrtllmDecodeWorker", "decode", 0),
    ]


def test_frontend_process(specs):
    fe = specs["frontend-0"]
    assert fe.argv == [PYTHON, "-m", "dynamo.frontend", "--http-host", "127.0.0.1", "--http-port", "18000"]
    assert fe.ports == {"http": 18000}
    assert fe.health == "http://127.0.0.1:18000/health"
    assert fe.env["DYN_ROUTER_MODE"] == "kv"
    assert fe.env["DYN_NAMESPACE"] == DYNAMO_NAMESPACE
    assert fe.mocker_settings == {}


@pytest.mark.parametrize(("name", "mode", "component", "max_seqs", "port"), [
    ("trtllmprefillworker-0", "prefill", "prefill", "16", 19091),
    ("trtllmdecodeworker-0", "decode", "backend", "64", 19092),
])
def test_worker_process(specs, tmp_path, name, mode, component, max_seqs, port):
    w = specs[name]
    argv = w.argv
    assert argv[:5] == [PYTHON, "-m", "dynamo.mocker", "--engine-type", "trtllm"]
    assert flag(argv, "--disaggregation-mode") == mode
    assert flag(argv, "--model-name") == MODEL
    assert flag(argv, "--model-path") == str(tmp_path / "pvc" / "model-nfs-pvc" / MODEL)
    assert flag(argv, "--endpoint") == f"dyn://{DYNAMO_NAMESPACE}.{component}.generate"
    assert flag(argv, "--max-num-seqs") == max_seqs
    assert flag(argv, "--max-num-batched-tokens") == "8192"
    assert flag(argv, "--block-size") == "32"
    assert flag(argv, "--num-gpu-blocks-override") == str(expected_blocks(Fraction(85, 100)))
    # A bare switch: the next item is another flag (or nothing), never a value.
    i = argv.index("--enable-chunked-prefill")
    assert i == len(argv) - 1 or argv[i + 1].startswith("--")
    # The TRT-LLM-only container args are not passed to the mocker (its --extra-engine-args means something else).
    for foreign in ("--extra-engine-args", "--publish-events-and-metrics", "--served-model-name"):
        assert foreign not in argv
    assert w.ports == {"system": port}
    assert w.health == f"http://127.0.0.1:{port}/health"
    assert w.env["DYN_SYSTEM_ENABLED"] == "true"
    assert w.env["DYN_SYSTEM_PORT"] == str(port)
    assert w.env["DYN_NAMESPACE"] == DYNAMO_NAMESPACE
    assert "DYN_ROUTER_MODE" not in w.env  # a Frontend service env, not a DGD-wide one
    assert w.mocker_settings["--max-num-seqs"] == int(max_seqs)


def test_worker_flags_given_as_flag_equals_value_are_read_like_argparse_does(dev_bundle, tmp_path, specs):
    """dynamo.trtllm reads `--extra-engine-args=/engine-configs/decode.yaml` as the two-word form: so does the plan
    (it used to miss the engine config there, and run the mocker with its defaults)."""
    def joined(dgd: dict) -> None:
        main = dgd["spec"]["services"]["TrtllmDecodeWorker"]["extraPodSpec"]["mainContainer"]
        args = main["args"]
        for name in ("--extra-engine-args", "--disaggregation-mode", "--model-path"):
            i = args.index(name)
            args[i:i + 2] = [f"{name}={args[i + 1]}"]
        assert "--extra-engine-args=/engine-configs/decode.yaml" in args

    decode = {s.name: s for s in make_plan(modified(dev_bundle, dgd=joined), tmp_path)}["trtllmdecodeworker-0"]
    assert decode.mocker_settings == specs["trtllmdecodeworker-0"].mocker_settings
    assert decode.mocker_settings["--max-num-seqs"] == 64  # decode.yaml's max_batch_size, not a default
    assert decode.argv == specs["trtllmdecodeworker-0"].argv


def test_num_gpu_blocks_matches_the_hand_computed_value(specs):
    # (81559 MiB - 16.06 GB - 3 GiB) x 0.85 / (128 KiB x 32) = 13423.8..., floored.
    assert expected_blocks(Fraction(85, 100)) == 13423
    for name in ("trtllmprefillworker-0", "trtllmdecodeworker-0"):
        assert specs[name].mocker_settings["--num-gpu-blocks-override"] == 13423


def test_model_path_and_hf_home_map_into_the_pvc_stand_in(specs, tmp_path):
    for spec in specs.values():
        assert spec.env["HF_HOME"] == str(tmp_path / "pvc" / "model-nfs-pvc")


def test_every_host_setting_is_loopback(specs):
    for spec in specs.values():
        hosts = {k: v for k, v in spec.env.items() if re.fullmatch(r"DYN_.*HOST", k)}
        assert {"DYN_TCP_RPC_HOST", "DYN_TCP_RESPONSE_STREAM_HOST", "DYN_EVENT_PLANE_HOST"} <= set(hosts)
        assert set(hosts.values()) == {"127.0.0.1"}, hosts
        assert not any("0.0.0.0" in a for a in spec.argv)
    for name in ("trtllmprefillworker-0", "trtllmdecodeworker-0"):
        assert specs[name].env["DYN_SYSTEM_HOST"] == "127.0.0.1"
    assert flag(specs["frontend-0"].argv, "--http-host") == "127.0.0.1"


def test_runtime_needs_no_etcd_or_nats(specs, tmp_path):
    for spec in specs.values():
        assert spec.env["DYN_DISCOVERY_BACKEND"] == "file"
        assert spec.env["DYN_FILE_KV"] == str(tmp_path / "state" / "discovery")  # one shared discovery folder
        assert spec.env["DYN_REQUEST_PLANE"] == "tcp"
        assert spec.env["DYN_EVENT_PLANE"] == "zmq"
        assert spec.env["HF_HUB_OFFLINE"] == "1"
        assert all(isinstance(v, str) for v in spec.env.values())


def test_missing_port_for_a_process_is_an_error(dev_bundle, tmp_path):
    with pytest.raises(KeyError, match="trtllmdecodeworker-0"):
        make_plan(dev_bundle, tmp_path, ports={k: v for k, v in PORTS.items() if k != "trtllmdecodeworker-0"})


def test_unrunnable_component_type_is_a_config_error(dev_bundle, tmp_path):
    planner = modified(dev_bundle, dgd=lambda d: d["spec"]["services"]["Frontend"].__setitem__("componentType",
                                                                                                 "planner"))
    with pytest.raises(ConfigError) as info:
        make_plan(planner, tmp_path)
    assert "service Frontend has componentType 'planner'" in str(info.value)
    assert "Fix: use frontend or worker services" in str(info.value)


def test_planned_worker_argv_is_accepted_by_the_installed_mocker(specs, tmp_path):
    """The flags localplan emits exist in the installed dynamo.mocker (argument parsing only, no process)."""
    mocker_args = pytest.importorskip("dynamo.mocker.args")
    mocker_config = pytest.importorskip("dynamo.mocker.config")
    from gtcdemo import modeldir

    model = modeldir.ensure_model_dir(tmp_path / "model")
    for name, max_seqs in (("trtllmprefillworker-0", 16), ("trtllmdecodeworker-0", 64)):
        argv = list(specs[name].argv[3:])
        argv[argv.index("--model-path") + 1] = str(model)
        engine = mocker_config.build_mocker_engine_args(mocker_args.parse_args(argv))["engine"]
        assert engine["backend"] == "trtllm"
        assert engine["num_gpu_blocks"] == 13423
        assert engine["block_size"] == 32
        assert engine["max_num_seqs"] == max_seqs
        assert engine["max_num_batched_tokens"] == 8192
        assert engine["enable_chunked_prefill"] is True


# -- digest ---------------------------------------------------------------------------------------------------------


def _digests(b: bundle_mod.Bundle, tmp_path: Path, ports: dict[str, int] | None = None) -> dict[str, str]:
    return {s.name: s.digest() for s in make_plan(b, tmp_path, ports)}


def test_digest_is_stable(dev_bundle, tmp_path):
    first = _digests(dev_bundle, tmp_path)
    assert first == _digests(dev_bundle, tmp_path)
    assert len(set(first.values())) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", d) for d in first.values())


def test_digest_changes_when_replicas_change(dev_bundle, tmp_path):
    before = _digests(dev_bundle, tmp_path)
    scaled = modified(dev_bundle, dgd=lambda d: d["spec"]["services"]["TrtllmDecodeWorker"].__setitem__("replicas", 2))
    after = _digests(scaled, tmp_path, {**PORTS, "trtllmdecodeworker-1": 19093})
    assert after != before
    assert set(after) == {*before, "trtllmdecodeworker-1"}
    assert after["trtllmdecodeworker-1"] not in before.values()
    # Scaling up adds a process; the running replicas keep their digest, so they are not restarted.
    assert {k: after[k] for k in before} == before
    scaled_to_zero = modified(dev_bundle,
                              dgd=lambda d: d["spec"]["services"]["TrtllmDecodeWorker"].__setitem__("replicas", 0))
    assert set(_digests(scaled_to_zero, tmp_path)) == {"frontend-0", "trtllmprefillworker-0"}


def test_digest_changes_when_an_engine_value_changes(dev_bundle, tmp_path, seed_decode):
    before = _digests(dev_bundle, tmp_path)
    seed_decode["max_batch_size"] = 32
    seed_decode["cuda_graph_config"]["max_batch_size"] = 32
    after = _digests(modified(dev_bundle, engine={"decode": seed_decode}), tmp_path)
    assert after["trtllmdecodeworker-0"] != before["trtllmdecodeworker-0"]
    assert after["trtllmprefillworker-0"] == before["trtllmprefillworker-0"]
    assert after["frontend-0"] == before["frontend-0"]


def test_digest_changes_when_kv_fraction_changes(dev_bundle, tmp_path, seed_prefill):
    before = _digests(dev_bundle, tmp_path)
    seed_prefill["kv_cache_config"]["free_gpu_memory_fraction"] = 0.5
    after = _digests(modified(dev_bundle, engine={"prefill": seed_prefill}), tmp_path)
    assert after["trtllmprefillworker-0"] != before["trtllmprefillworker-0"]


def test_digest_changes_with_env_and_port(dev_bundle, tmp_path):
    before = _digests(dev_bundle, tmp_path)
    moved = _digests(dev_bundle, tmp_path, {**PORTS, "frontend-0": 18001})
    assert moved["frontend-0"] != before["frontend-0"]
    routed = modified(dev_bundle, dgd=lambda d: d["spec"]["services"]["Frontend"]["envs"][0].__setitem__("value",
                                                                                                          "round-robin"))
    assert _digests(routed, tmp_path)["frontend-0"] != before["frontend-0"]


def test_engine_keys_without_mocker_equivalent_do_not_restart(dev_bundle, tmp_path, seed_decode):
    before = _digests(dev_bundle, tmp_path)
    seed_decode["disable_overlap_scheduler"] = True
    seed_decode["cache_transceiver_config"]["backend"] = "UCX"
    assert _digests(modified(dev_bundle, engine={"decode": seed_decode}), tmp_path) == before


# -- mocker_settings ------------------------------------------------------------------------------------------------


def test_mocker_settings_for_the_specified_prefill(seed_prefill):
    assert localplan.mocker_settings(seed_prefill, KV_BYTES_PER_TOKEN) == {
        "--block-size": 32,
        "--num-gpu-blocks-override": expected_blocks(Fraction(85, 100)),
        "--max-num-seqs": 16,
        "--max-num-batched-tokens": 8192,
        "--max-model-len": 131072,  # TRT-LLM's default max_seq_len: Llama-3.1-8B's max_position_embeddings
        "--enable-chunked-prefill": None,
    }


@pytest.mark.parametrize(("config", "present", "absent"), [
    ({"kv_cache_config": {"enable_block_reuse": False}}, {"--no-enable-prefix-caching": None},
     ["--enable-prefix-caching"]),
    ({"kv_cache_config": {"enable_block_reuse": True}}, {"--enable-prefix-caching": None},
     ["--no-enable-prefix-caching"]),
    ({"max_seq_len": 4096}, {"--max-model-len": 4096}, []),
    ({"enable_chunked_prefill": False}, {"--no-enable-chunked-prefill": None}, ["--enable-chunked-prefill"]),
    ({"max_batch_size": 8, "max_num_tokens": 2048}, {"--max-num-seqs": 8, "--max-num-batched-tokens": 2048}, []),
    ({"kv_cache_config": {"tokens_per_block": 64}}, {"--block-size": 64}, []),
], ids=["block-reuse-off", "block-reuse-on", "max-seq-len", "chunked-prefill-off", "batch-limits", "tokens-per-block"])
def test_mocker_settings_mapping(config, present, absent):
    settings = localplan.mocker_settings(config, KV_BYTES_PER_TOKEN)
    for key, value in present.items():
        assert key in settings and settings[key] == value, settings
    for key in absent:
        assert key not in settings
    if "max_seq_len" not in config:  # the model's own context, as TRT-LLM defaults max_seq_len
        assert settings["--max-model-len"] == 131072


@pytest.mark.parametrize(("max_tokens", "blocks"), [
    (3200, 100),                      # caps the block count: 3200 tokens / 32 per block
    (3210, 100),                      # whole blocks only
    (10, 1),                          # never fewer than one block
    (10**9, expected_blocks(Fraction(85, 100))),  # a cap above the memory-derived count changes nothing
], ids=["cap", "cap-rounds-down", "cap-floor-one-block", "cap-above-memory"])
def test_kv_max_tokens_caps_the_block_count(seed_decode, max_tokens, blocks):
    seed_decode["kv_cache_config"]["max_tokens"] = max_tokens
    assert localplan.mocker_settings(seed_decode, KV_BYTES_PER_TOKEN)["--num-gpu-blocks-override"] == blocks


def test_block_count_follows_the_fraction_block_size_and_tp():
    kv = KV_BYTES_PER_TOKEN
    assert localplan.kv_blocks({}, kv_bytes_per_token=kv, block_size=32) == expected_blocks(Fraction(9, 10))
    assert localplan.kv_blocks({"kv_cache_config": {"free_gpu_memory_fraction": 0.5}}, kv_bytes_per_token=kv,
                               block_size=32) == expected_blocks(Fraction(1, 2))
    assert localplan.kv_blocks({"kv_cache_config": {"free_gpu_memory_fraction": 0.85}}, kv_bytes_per_token=kv,
                               block_size=64) == expected_blocks(Fraction(85, 100), tokens_per_block=64)
    assert localplan.kv_blocks({"tensor_parallel_size": 2, "kv_cache_config": {"free_gpu_memory_fraction": 0.85}},
                               kv_bytes_per_token=kv, block_size=32) == expected_blocks(Fraction(85, 100), tp=2)
    settings = localplan.mocker_settings({"kv_cache_config": {"tokens_per_block": 64}}, kv)
    assert settings["--num-gpu-blocks-override"] == expected_blocks(Fraction(9, 10), tokens_per_block=64)


def test_keys_without_mocker_equivalent_add_no_flags(seed_decode):
    ignored = {
        "moe_expert_parallel_size": 1, "enable_attention_dp": False, "pipeline_parallel_size": 1,
        "trust_remote_code": True, "backend": "pytorch", "disable_overlap_scheduler": False, "print_iter_log": True,
        "max_input_len": 1024, "model": "x", "cuda_graph_config": {"max_batch_size": 8},
        "cache_transceiver_config": {"backend": "UCX"}, "kv_cache_config": {"dtype": "fp8"},
    }
    assert set(localplan.mocker_settings(ignored, KV_BYTES_PER_TOKEN)) == {"--block-size", "--num-gpu-blocks-override",
                                                                         "--max-model-len"}


def test_capacity_scheduler_policy_is_translated_for_the_mocker():
    """The mocker only accepts lower-case guaranteed_no_evict; the other TRT-LLM policies have no equivalent."""
    def policy(name: str) -> str | None:
        settings = localplan.mocker_settings({"scheduler_config": {"capacity_scheduler_policy": name}},
                                             KV_BYTES_PER_TOKEN)
        return settings.get("--trtllm-capacity-scheduler-policy")
    assert policy("GUARANTEED_NO_EVICT") == "guaranteed_no_evict"
    assert policy("MAX_UTILIZATION") is None and policy("STATIC_BATCH") is None


# -- mounts ---------------------------------------------------------------------------------------------------------


def test_mounts_map_container_paths_longest_first(tmp_path):
    mounts = volumes.Mounts([("/models", tmp_path / "pvc"), ("/models/cache", tmp_path / "cache")])
    assert mounts.local("/models") == str(tmp_path / "pvc")
    assert mounts.local("/models/a/b") == str(tmp_path / "pvc" / "a" / "b")
    assert mounts.local("/models/cache/x") == str(tmp_path / "cache" / "x")
    assert mounts.local("/modelsX/y") == "/modelsX/y"  # a prefix of the name is not a mount
    assert mounts.local("/etc/hosts") == "/etc/hosts"


def test_service_mounts_include_the_configmap(dev_bundle, tmp_path):
    svc = dev_bundle.services["TrtllmDecodeWorker"]
    mounts = volumes.service_mounts(svc, tmp_path / "pvc", tmp_path / "cm")
    assert mounts.local("/engine-configs/decode.yaml") == str(tmp_path / "cm" / "trtllm-engine-configs" / "decode.yaml")
    assert mounts.local("/models/x") == str(tmp_path / "pvc" / "model-nfs-pvc" / "x")


# -- Prometheus -----------------------------------------------------------------------------------------------------


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, f"not a Prometheus duration: {duration!r}"
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_prometheus_config_scrapes_every_port_fast(dev_bundle, tmp_path):
    plan = make_plan(dev_bundle, tmp_path)
    plan.append(localplan.prometheus_spec(tmp_path / "state", 19090))  # as local.py passes it: must not be scraped
    config = localplan.prometheus_config(dev_bundle, plan)
    interval = _seconds(config["global"]["scrape_interval"])
    assert 0 < interval <= 2
    assert _seconds(config["global"]["scrape_timeout"]) <= interval
    groups = [t for job in config["scrape_configs"] for t in job["static_configs"]]
    assert all(len(t["targets"]) == 1 for t in groups)
    targets = {t["targets"][0]: t["labels"] for t in groups}
    assert set(targets) == {"127.0.0.1:18000", "127.0.0.1:19091", "127.0.0.1:19092"}
    pods = {"127.0.0.1:18000": "frontend-0", "127.0.0.1:19091": "trtllmprefillworker-0",
            "127.0.0.1:19092": "trtllmdecodeworker-0"}
    # Exactly the labels prometheus-operator gives a PodMonitor's targets (promcfg.go generatePodMonitorConfig)
    # plus Dynamo's PodMonitor relabeling (dynamo_namespace): nothing the cluster's series would lack.
    for address, labels in targets.items():
        frontend = address == "127.0.0.1:18000"
        assert labels == {
            "namespace": "dynamo-workload", "container": "main", "pod": pods[address],
            "job": "dynamo-system/dynamo-frontend" if frontend else "dynamo-system/dynamo-worker",
            "endpoint": "http" if frontend else "system", "dynamo_namespace": DYNAMO_NAMESPACE}


def test_prometheus_config_has_one_target_per_replica(dev_bundle, tmp_path):
    scaled = modified(dev_bundle, dgd=lambda d: d["spec"]["services"]["TrtllmDecodeWorker"].__setitem__("replicas", 2))
    plan = make_plan(scaled, tmp_path, {**PORTS, "trtllmdecodeworker-1": 19093})
    workers = localplan.prometheus_config(scaled, plan)["scrape_configs"][1]["static_configs"]
    assert sorted(t["targets"][0] for t in workers) == ["127.0.0.1:19091", "127.0.0.1:19092", "127.0.0.1:19093"]


def test_prometheus_interval_is_configurable(dev_bundle, tmp_path):
    config = localplan.prometheus_config(dev_bundle, make_plan(dev_bundle, tmp_path), interval_s=0.5)
    assert _seconds(config["global"]["scrape_interval"]) == 0.5


def test_prometheus_spec_listens_on_loopback(tmp_path):
    spec = localplan.prometheus_spec(tmp_path, 19090, binary="/usr/bin/prometheus")
    assert spec.argv[0] == "/usr/bin/prometheus"
    assert "--web.listen-address=127.0.0.1:19090" in spec.argv
    assert f"--config.file={tmp_path / 'prometheus' / 'prometheus.yml'}" in spec.argv
    assert spec.health == "http://127.0.0.1:19090/-/ready"
    assert spec.role == "prometheus"
