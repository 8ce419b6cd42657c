"""Pure logic: duplicate keys, names the cluster refuses, the local target's bounds, the model's context.

Each test states a rule of the real system (Kubernetes, the Dynamo operator, Grove, PyYAML/tomllib, TRT-LLM) and
checks that gtcdemo applies it before anything runs; the bad-input table (tests/test_bad_input.py) feeds the same
rules through the user's entry points.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gtcdemo import bundle, engine_config, inference, load, modeldir
from gtcdemo.errors import ConfigError, DeploymentError
from gtcdemo.local import plan as localplan

MODEL = modeldir.SERVED_MODEL_NAME


# -- duplicate keys ---------------------------------------------------------------------------------------------
def test_a_key_written_twice_in_an_engine_config_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "decode.yaml"
    path.write_text("max_batch_size: 64\nkv_cache_config:\n  free_gpu_memory_fraction: 0.85\n"
                    "  free_gpu_memory_fraction: 0.5\nmax_batch_size: 32\n")
    with pytest.raises(ConfigError) as info:
        engine_config.parse(path, "decode")
    # The first duplicate in document order: PyYAML would have kept 0.5 silently.
    assert "key 'free_gpu_memory_fraction' is written twice in one mapping (lines 3 and 4)" in str(info.value)
    assert info.value.where.endswith("decode.yaml: kv_cache_config.free_gpu_memory_fraction")
    assert "keep one of the two lines" in info.value.fix


def test_a_key_written_twice_in_a_manifest_is_refused_with_both_lines(tmp_path: Path) -> None:
    (tmp_path / "20-dgd.yaml").write_text("kind: A\nmetadata:\n  name: x\n---\nkind: B\nspec:\n  replicas: 1\n"
                                          "  services: {}\n  replicas: 2\n")
    with pytest.raises(ConfigError, match=r"key 'replicas' is written twice in one mapping \(lines 7 and 9\)"):
        bundle.read_manifests(tmp_path)


def test_merge_keys_and_equal_keys_in_different_mappings_are_not_duplicates() -> None:
    text = "base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\ny:\n  a: 1\n"
    assert engine_config.load_yaml(text) == {"base": {"a": 1, "b": 2}, "x": {"a": 1, "b": 3}, "y": {"a": 1}}


def test_toml_duplicates_are_found_with_both_lines() -> None:
    text = 'a = 1\n[t]\na = 2\nb = "x"\n# b = 3\nb = 4\n[u]\nb = 5\n'
    assert engine_config.duplicate_toml_keys(text) == [("t.b", 4, 6)]


def test_cluster_toml_duplicate_key_names_both_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gtcdemo import cluster, project

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "cluster.toml").write_text('kube_context = "a"\nkube_context = "b"\n')
    monkeypatch.setattr(project, "MANIFESTS", tmp_path)
    monkeypatch.setattr(project, "check_env", lambda env: env)
    with pytest.raises(ConfigError, match=r"key 'kube_context' is written twice \(lines 1 and 2\)"):
        cluster.load_settings("dev")


# -- names --------------------------------------------------------------------------------------------------------
def _dgd() -> dict:
    return copy.deepcopy(bundle.load("dev").dgd)


def _name_errors(dgd: dict) -> list[str]:
    return [str(e) for e in bundle.check_names(dgd, "DGD")]


def test_the_committed_names_pass() -> None:
    assert _name_errors(_dgd()) == []


def test_a_70_character_dgd_name_is_refused_with_every_derived_name_and_its_length() -> None:
    dgd = _dgd()
    name = "g" * 70
    dgd["metadata"]["name"] = name
    errors = "\n".join(_name_errors(dgd))
    # graph.go generateLabels: the DGD name is a label value (<= 63).
    assert f"label nvidia.com/dynamo-graph-deployment-name='{name}' (70 characters)" in errors
    # graph.go GetDynamoComponentName -> GenerateComponentService: a Service name, a DNS-1035 label (<= 63).
    assert f"'{name}-frontend' (79 characters)" in errors
    # graph.go getDynamoNamespace: <namespace>-<dgd> as the label nvidia.com/dynamo-namespace.
    assert f"'dynamo-workload-{name}' (86 characters)" in errors
    # Grove validatePodNameConstraints: len(PodCliqueSet) + len(PodClique) <= 45.
    assert f"'{name}-0-trtllmdecodeworker-xxxxx'" in errors and "length 88 exceeds 45" in errors


@pytest.mark.parametrize("name, problem", [
    ("Gtc-Demo", "DNS-1123 subdomain"),          # upper case: the API server refuses the object
    ("gtc.demo", "DNS-1035 label"),              # a valid CR name, but the Services <dgd>-<svc> may not have dots
    ("9gtc", "DNS-1035 label"),                  # Services must start with a letter
])
def test_dgd_names_the_api_server_refuses(name: str, problem: str) -> None:
    dgd = _dgd()
    dgd["metadata"]["name"] = name
    assert problem in "\n".join(_name_errors(dgd))


def test_a_long_namespace_and_a_bad_label_value_are_refused() -> None:
    dgd = _dgd()
    dgd["metadata"]["namespace"] = "n" * 64
    dgd["spec"]["services"]["Frontend"]["labels"] = {"team": "-bad-"}
    errors = "\n".join(_name_errors(dgd))
    assert "namespace 'nnnn" in errors and "(64 characters)" in errors and "DNS-1123 label" in errors
    assert "label team='-bad-'" in errors


def test_validate_dgd_reports_the_names() -> None:
    dgd = _dgd()
    dgd["metadata"]["name"] = "g" * 70
    assert any("DNS-1035 label" in str(e) for e in bundle.validate_dgd(dgd, bundle.load("dev").configmap))


# -- the local target's bounds --------------------------------------------------------------------------------------
def test_capacity_counts_every_process_against_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from gtcdemo.local import checks as local

    monkeypatch.setattr(local.os, "cpu_count", lambda: 2)
    b = bundle.load("dev")
    limit = local.MAX_PROCESSES_PER_CORE * 2
    b.services["TrtllmDecodeWorker"]["replicas"] = limit - 3  # + frontend, prefill, Prometheus = limit
    local.check_capacity(b, "where")
    b.services["TrtllmDecodeWorker"]["replicas"] = limit - 2
    with pytest.raises(DeploymentError) as info:
        local.check_capacity(b, "where")
    assert f"make the local graph {limit + 1} processes" in str(info.value)
    assert f"at most {limit} processes on this machine ({local.MAX_PROCESSES_PER_CORE} per core x 2 cores)" \
        in str(info.value)


# -- the model's context --------------------------------------------------------------------------------------------
def test_the_context_limit_is_max_seq_len_else_the_models_max_position_embeddings() -> None:
    configs = bundle.load("dev").engine_configs
    limit = engine_config.context_limit(configs, MODEL)
    assert limit.tokens == 131072 and "max_position_embeddings of meta-llama/Llama-3.1-8B-Instruct" in limit.source
    values = dict(configs["decode"].values, max_seq_len=4096)
    configs = {**configs, "decode": engine_config.EngineConfig("decode", configs["decode"].path, "", values)}
    limit = engine_config.context_limit(configs, MODEL)
    assert limit.tokens == 4096 and limit.source == "max_seq_len in engine-configs/dev/decode.yaml"


def test_the_mocker_enforces_the_engines_context() -> None:
    """TRT-LLM's max_seq_len defaults to the model's max_position_embeddings; the mocker has no limit by default."""
    values = bundle.load("dev").engine_configs["decode"].values
    assert localplan.mocker_settings(values, modeldir.kv_bytes_per_token())["--max-model-len"] == 131072
    values = dict(values, max_seq_len=4096)
    assert localplan.mocker_settings(values, modeldir.kv_bytes_per_token())["--max-model-len"] == 4096


UNREACHABLE = "http://127.0.0.1:9"  # nothing is sent: a request that went out would fail with "cannot reach"


@pytest.mark.parametrize("call", [inference.chat_completion, inference.stream_chat])
def test_the_chat_helpers_refuse_beyond_the_context_before_sending(call) -> None:
    with pytest.raises(ConfigError) as info:
        call(UNREACHABLE, MODEL, "hello", max_tokens=200000)
    assert "+ 200000 output" in str(info.value) and "context of 131072 tokens" in str(info.value)
    assert "at most 131072" in info.value.fix
    with pytest.raises(ConfigError, match=r"at least \d{6} prompt \+ 8 output = \d{6} tokens"):
        call(UNREACHABLE, MODEL, "hello " * 140000, max_tokens=8)


def test_the_chat_helpers_take_an_explicit_limit() -> None:
    limit = engine_config.ContextLimit(16, "max_seq_len in engine-configs/dev/decode.yaml")
    with pytest.raises(ConfigError, match=r"context of 16 tokens \(max_seq_len in engine-configs/dev/decode.yaml\)"):
        inference.chat_completion(UNREACHABLE, MODEL, "hi", max_tokens=32, context_limit=limit)


def test_the_load_generator_refuses_beyond_the_context_before_sending() -> None:
    spec = load.LoadSpec(model=MODEL, concurrency=1, num_requests=1, input_tokens_mean=400000)
    with pytest.raises(ConfigError) as info:
        load.run(UNREACHABLE, spec, progress=False)
    assert "400000 prompt + 32 output = 400032 tokens" in str(info.value)
    assert "at most 131072" in info.value.fix
    # a spread of prompt lengths counts its longest prompt (mean + 5 std, as PromptSource draws them)
    spec = load.LoadSpec(model=MODEL, concurrency=1, num_requests=1, input_tokens_mean=100000,
                         input_tokens_std=7000, output_tokens=10)
    with pytest.raises(ConfigError, match=r"135000 prompt \+ 10 output"):
        load.check_context(spec)
