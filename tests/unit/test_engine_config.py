"""engine-configs/<env>/*.yaml: the committed dev values, validation messages, and the side-by-side view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gtcdemo import engine_config
from gtcdemo.errors import ConfigError, ValidationErrors

# -- the committed dev configs are the runbook's engine configs -------------------------------------------------


def test_dev_configs_load_with_exactly_the_two_roles(repo_root):
    configs = engine_config.load("dev")
    assert sorted(configs) == ["decode", "prefill"]
    for role, cfg in configs.items():
        assert cfg.role == role
        assert cfg.path == repo_root / "engine-configs" / "dev" / f"{role}.yaml"
        assert cfg.text == cfg.path.read_text()  # the raw text is what the ConfigMap carries


def test_dev_prefill_matches_the_runbook_exactly(seed_prefill, assert_exact):
    assert_exact(engine_config.load("dev")["prefill"].values, seed_prefill)


def test_dev_decode_matches_the_runbook_exactly(seed_decode, assert_exact):
    assert_exact(engine_config.load("dev")["decode"].values, seed_decode)


@pytest.mark.parametrize(("role", "dotted", "expected"), [
    ("prefill", "tensor_parallel_size", 1),
    ("prefill", "moe_expert_parallel_size", 1),
    ("prefill", "enable_attention_dp", False),
    ("prefill", "max_num_tokens", 8192),
    ("prefill", "max_batch_size", 16),
    ("prefill", "trust_remote_code", True),
    ("prefill", "backend", "pytorch"),
    ("prefill", "enable_chunked_prefill", True),
    ("prefill", "disable_overlap_scheduler", True),
    ("prefill", "kv_cache_config.free_gpu_memory_fraction", 0.85),
    ("prefill", "cuda_graph_config.max_batch_size", 16),
    ("prefill", "cache_transceiver_config.backend", "DEFAULT"),
    ("decode", "tensor_parallel_size", 1),
    ("decode", "moe_expert_parallel_size", 1),
    ("decode", "enable_attention_dp", False),
    ("decode", "max_num_tokens", 8192),
    ("decode", "max_batch_size", 64),
    ("decode", "trust_remote_code", True),
    ("decode", "backend", "pytorch"),
    ("decode", "enable_chunked_prefill", True),
    ("decode", "disable_overlap_scheduler", False),
    ("decode", "kv_cache_config.free_gpu_memory_fraction", 0.85),
    ("decode", "cuda_graph_config.max_batch_size", 64),
    ("decode", "cache_transceiver_config.backend", "DEFAULT"),
])
def test_engine_config_get_dotted(role, dotted, expected):
    value = engine_config.load("dev")[role].get(dotted)
    assert value == expected
    assert type(value) is type(expected)


def test_get_missing_key_returns_default():
    cfg = engine_config.load("dev")["decode"]
    assert cfg.get("kv_cache_config.nope") is None
    assert cfg.get("max_batch_size.deeper", "d") == "d"  # stepping into a scalar is "missing", not an error
    assert cfg.get("scheduler_config.capacity_scheduler_policy", "x") == "x"


def test_committed_values_validate_cleanly(seed_prefill, seed_decode):
    assert engine_config.validate_values(seed_prefill, Path("prefill.yaml")) == []
    assert engine_config.validate_values(seed_decode, Path("decode.yaml")) == []


def test_unknown_env_lists_available_envs():
    with pytest.raises(ConfigError) as info:
        engine_config.load("prod")
    message = str(info.value)
    assert "unknown env 'prod'" in message
    assert "available: agg, dev" in message
    assert "Fix:" in message and "engine-configs/prod/" in message


# -- bad configs: every message names the file, the key path and a fix ------------------------------------------

Edit = Callable[[dict], None] | str | None  # mutate the parsed dict, replace the raw text, or None = delete the file


def _set(dotted: str, value: Any) -> Callable[[dict], None]:
    def edit(values: dict) -> None:
        *parents, last = dotted.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[last] = value
    return edit


def _delete(dotted: str) -> Callable[[dict], None]:
    def edit(values: dict) -> None:
        *parents, last = dotted.split(".")
        node = values
        for part in parents:
            node = node[part]
        del node[last]
    return edit


def _rename(dotted: str, new: str) -> Callable[[dict], None]:
    def edit(values: dict) -> None:
        *parents, last = dotted.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)
    return edit


SYNTAX_ERROR_TEXT = "tensor_parallel_size: 1\nmax_batch_size: 64\nbackend: pytorch: extra\n"

DECODE = "engine-configs/dev/decode.yaml"
PREFILL = "engine-configs/dev/prefill.yaml"

BAD_CONFIGS = [
    # unknown keys, with did-you-mean
    pytest.param("decode", _rename("max_batch_size", "max_batch_szie"), f"{DECODE}: max_batch_szie",
                 ["unknown key 'max_batch_szie'", "Fix: did you mean 'max_batch_size'?"], id="typo-top-level-key"),
    pytest.param("prefill", _rename("max_num_tokens", "max_num_token"), f"{PREFILL}: max_num_token",
                 ["unknown key 'max_num_token'", "did you mean 'max_num_tokens'?"], id="typo-in-prefill"),
    pytest.param("decode", _rename("kv_cache_config.free_gpu_memory_fraction", "free_gpu_mem_fraction"),
                 f"{DECODE}: kv_cache_config.free_gpu_mem_fraction",
                 ["unknown key 'kv_cache_config.free_gpu_mem_fraction'",
                  "did you mean 'kv_cache_config.free_gpu_memory_fraction'?"],
                 id="typo-nested-key"),
    pytest.param("decode", _set("banana_mode", True), f"{DECODE}: banana_mode",
                 ["unknown key 'banana_mode'", "Fix: remove it; known keys:", "max_batch_size"],
                 id="unknown-key-no-close-match"),
    # wrong types
    pytest.param("decode", _set("max_batch_size", "64"), f"{DECODE}: max_batch_size",
                 ["must be an integer, got str '64'", "Fix: change max_batch_size: it must be an integer"],
                 id="string-for-int"),
    pytest.param("decode", _set("max_num_tokens", "8k"), f"{DECODE}: max_num_tokens",
                 ["must be an integer, got str '8k'"], id="string-for-int-max-num-tokens"),
    pytest.param("decode", _set("max_batch_size", True), f"{DECODE}: max_batch_size",
                 ["must be an integer, got bool True"], id="bool-for-int"),
    pytest.param("decode", _set("tensor_parallel_size", False), f"{DECODE}: tensor_parallel_size",
                 ["must be an integer, got bool False"], id="bool-for-int-tp"),
    pytest.param("decode", _set("enable_chunked_prefill", 1), f"{DECODE}: enable_chunked_prefill",
                 ["must be true or false, got 1", "Fix: change enable_chunked_prefill: it must be true or false"],
                 id="int-for-bool"),
    pytest.param("decode", _set("disable_overlap_scheduler", "false"), f"{DECODE}: disable_overlap_scheduler",
                 ["must be true or false, got 'false'"], id="string-for-bool"),
    pytest.param("decode", _set("kv_cache_config.free_gpu_memory_fraction", "0.85"),
                 f"{DECODE}: kv_cache_config.free_gpu_memory_fraction", ["must be a number, got str '0.85'"],
                 id="string-for-fraction"),
    pytest.param("decode", _set("kv_cache_config", 0.85), f"{DECODE}: kv_cache_config",
                 ["must be a mapping, got 0.85", "Fix: write kv_cache_config as a nested block",
                  "free_gpu_memory_fraction"], id="scalar-for-mapping"),
    pytest.param("decode", _set("backend", "tensorrt"), f"{DECODE}: backend",
                 ["must be one of pytorch, _autodeploy, got 'tensorrt'"], id="bad-choice-backend"),
    pytest.param("decode", _set("cache_transceiver_config.backend", "NCCL"),
                 f"{DECODE}: cache_transceiver_config.backend",
                 ["must be one of DEFAULT, UCX, NIXL, MPI, got 'NCCL'"], id="bad-choice-transceiver"),
    pytest.param("decode", _set("cuda_graph_config.batch_sizes", [1, 0, 8]),
                 f"{DECODE}: cuda_graph_config.batch_sizes",
                 ["must be a list of integers >= 1, got [1, 0, 8]"], id="bad-int-list"),
    # out of range
    pytest.param("decode", _set("kv_cache_config.free_gpu_memory_fraction", 0),
                 f"{DECODE}: kv_cache_config.free_gpu_memory_fraction",
                 ["must be in (0, 1], got 0",
                  "Fix: change kv_cache_config.free_gpu_memory_fraction: it must be in (0, 1]"], id="fraction-zero"),
    pytest.param("decode", _set("kv_cache_config.free_gpu_memory_fraction", 1.5),
                 f"{DECODE}: kv_cache_config.free_gpu_memory_fraction", ["must be in (0, 1], got 1.5"],
                 id="fraction-1.5"),
    pytest.param("prefill", _set("kv_cache_config.free_gpu_memory_fraction", -0.1),
                 f"{PREFILL}: kv_cache_config.free_gpu_memory_fraction", ["must be in (0, 1], got -0.1"],
                 id="fraction-negative"),
    pytest.param("decode", _set("max_batch_size", 0), f"{DECODE}: max_batch_size", ["must be >= 1, got 0"],
                 id="batch-zero"),
    pytest.param("decode", _set("max_batch_size", -1), f"{DECODE}: max_batch_size", ["must be >= 1, got -1"],
                 id="batch-negative"),
    pytest.param("prefill", _set("cuda_graph_config.max_batch_size", 0), f"{PREFILL}: cuda_graph_config.max_batch_size",
                 ["must be >= 1, got 0"], id="cuda-batch-zero"),
    pytest.param("decode", _set("cuda_graph_config.max_batch_size", -1), f"{DECODE}: cuda_graph_config.max_batch_size",
                 ["must be >= 1, got -1"], id="cuda-batch-negative"),
    # cross-field
    pytest.param("decode", _set("cuda_graph_config.max_batch_size", 128), f"{DECODE}: cuda_graph_config.max_batch_size",
                 ["cuda_graph_config.max_batch_size (128) exceeds max_batch_size (64)",
                  "Fix: lower it to at most 64, or raise max_batch_size"], id="cuda-batch-above-max-batch"),
    pytest.param("prefill", _set("cuda_graph_config.max_batch_size", 17),
                 f"{PREFILL}: cuda_graph_config.max_batch_size",
                 ["(17) exceeds max_batch_size (16)", "at most 16"], id="cuda-batch-above-max-batch-prefill"),
    pytest.param("decode", _delete("cache_transceiver_config"), f"{DECODE}: cache_transceiver_config",
                 ["missing cache_transceiver_config", "Fix: add `cache_transceiver_config: {backend: DEFAULT}`"],
                 id="missing-cache-transceiver"),
    pytest.param("decode", _set("tensor_parallel_size", 2), f"{DECODE}: tensor_parallel_size",
                 ["prefill has tensor_parallel_size=1 but decode has 2",
                  "Fix: set the same tensor_parallel_size in prefill.yaml and decode.yaml"], id="tp-disagrees"),
    pytest.param("prefill", _set("enable_attention_dp", True), f"{DECODE}: enable_attention_dp",
                 ["prefill has enable_attention_dp=True but decode has False", "KV cache layouts must match"],
                 id="attention-dp-disagrees"),
    pytest.param("decode", _set("pipeline_parallel_size", 2), f"{DECODE}: pipeline_parallel_size",
                 ["prefill has pipeline_parallel_size=None but decode has 2"], id="pp-only-in-decode"),
    # file-level problems
    pytest.param("decode", SYNTAX_ERROR_TEXT, f"{DECODE}: YAML syntax error at line 3",
                 ["mapping values are not allowed here", "Fix: fix the YAML"], id="yaml-syntax-error"),
    pytest.param("decode", "max_batch_size: 64\n\tbackend: pytorch\n", f"{DECODE}: YAML syntax error at line 2",
                 ["Fix: fix the YAML (indentation with spaces"], id="yaml-tab-indent"),
    pytest.param("decode", "", f"{DECODE}: the file is empty or not a YAML mapping",
                 ["Fix: write the TRT-LLM engine options as `key: value` lines"], id="empty-file"),
    pytest.param("decode", "# only a comment\n", f"{DECODE}: the file is empty", ["Fix:"], id="comments-only-file"),
    pytest.param("decode", "- max_batch_size: 64\n", f"{DECODE}: the file is empty or not a YAML mapping", ["Fix:"],
                 id="list-not-mapping"),
    pytest.param("decode", None, "engine-configs/dev: missing decode.yaml",
                 ["Fix: create decode.yaml (copy engine-configs/dev/decode.yaml as a start)"],
                 id="missing-decode-yaml"),
    pytest.param("prefill", None, "engine-configs/dev: missing prefill.yaml", ["Fix: create prefill.yaml"],
                 id="missing-prefill-yaml"),
]


def _apply(root: Path, role: str, edit: Edit) -> Path:
    path = root / "engine-configs" / "dev" / f"{role}.yaml"
    if edit is None:
        path.unlink()
    elif isinstance(edit, str):
        path.write_text(edit)
    else:
        values = yaml.safe_load(path.read_text())
        edit(values)
        path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.mark.parametrize(("role", "edit", "where", "expected"), BAD_CONFIGS)
def test_bad_engine_config_is_reported_with_file_key_and_fix(project_copy, role, edit, where, expected):
    _apply(project_copy, role, edit)
    with pytest.raises(ValidationErrors) as info:
        engine_config.load("dev")
    errors = info.value.errors
    message = str(info.value)
    assert len(errors) == 1, message  # one mistake, one problem (no cascade of follow-on errors)
    assert message.startswith("1 problem(s) found, nothing was applied:")
    error = errors[0]
    assert isinstance(error, ConfigError)
    assert where in str(error), str(error)
    assert "Fix:" in str(error) and error.fix, str(error)
    for text in expected:
        assert text in str(error), f"{text!r} not in:\n{error}"


def test_all_problems_are_reported_at_once(project_copy):
    _apply(project_copy, "prefill", _set("max_batch_size", "16"))
    _apply(project_copy, "decode", _set("kv_cache_config.free_gpu_memory_fraction", 2))
    _apply(project_copy, "decode", _rename("max_num_tokens", "max_num_tokns"))
    with pytest.raises(ValidationErrors) as info:
        engine_config.load("dev")
    message = str(info.value)
    assert len(info.value.errors) == 3
    assert message.startswith("3 problem(s) found")
    assert f"{PREFILL}: max_batch_size" in message
    assert f"{DECODE}: kv_cache_config.free_gpu_memory_fraction" in message
    assert f"{DECODE}: max_num_tokns" in message
    assert message.count("Fix:") == 3


def test_missing_file_and_broken_file_reported_together(project_copy):
    _apply(project_copy, "decode", None)
    _apply(project_copy, "prefill", "")
    with pytest.raises(ValidationErrors) as info:
        engine_config.load("dev")
    message = str(info.value)
    assert len(info.value.errors) == 2
    assert "missing decode.yaml" in message
    assert f"{PREFILL}: the file is empty" in message


def test_yaml_syntax_error_carries_line_and_column(tmp_path):
    path = tmp_path / "decode.yaml"
    path.write_text(SYNTAX_ERROR_TEXT)
    with pytest.raises(ConfigError) as info:
        engine_config.parse(path, "decode")
    assert "YAML syntax error at line 3, column" in info.value.problem
    assert info.value.where == str(path)  # outside the project root: shown as the full path
    assert info.value.fix


def test_validate_values_outside_project_root_shows_full_path(tmp_path, seed_decode):
    seed_decode["max_batch_size"] = 0
    errors = engine_config.validate_values(seed_decode, tmp_path / "decode.yaml")
    assert [e.where for e in errors] == [f"{tmp_path / 'decode.yaml'}: max_batch_size"]


def test_load_with_explicit_directory(tmp_path, seed_prefill, seed_decode, assert_exact):
    (tmp_path / "prefill.yaml").write_text(yaml.safe_dump(seed_prefill))
    (tmp_path / "decode.yaml").write_text(yaml.safe_dump(seed_decode))
    configs = engine_config.load("ignored-when-directory-given", directory=tmp_path)
    assert_exact(configs["prefill"].values, seed_prefill)
    assert_exact(configs["decode"].values, seed_decode)


def test_optional_known_keys_are_accepted(project_copy):
    _apply(project_copy, "decode", _set("kv_cache_config.enable_block_reuse", False))
    _apply(project_copy, "decode", _set("max_seq_len", 8192))
    _apply(project_copy, "decode", _set("scheduler_config", {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT"}))
    assert engine_config.load("dev")["decode"].get("max_seq_len") == 8192


# -- side_by_side ---------------------------------------------------------------------------------------------------


def test_side_by_side_differs_exactly_on_the_three_committed_differences():
    frame = engine_config.side_by_side(engine_config.load("dev"))
    assert frame.index.name == "key"
    assert list(frame.columns) == ["decode", "prefill", "differs"]  # roles in load order (sorted file names)
    differing = set(frame.index[frame["differs"]])
    assert differing == {"max_batch_size", "disable_overlap_scheduler", "cuda_graph_config.max_batch_size"}
    assert frame.loc["max_batch_size", "prefill"] == 16
    assert frame.loc["max_batch_size", "decode"] == 64
    assert frame.loc["cuda_graph_config.max_batch_size", "prefill"] == 16
    assert frame.loc["cuda_graph_config.max_batch_size", "decode"] == 64
    assert bool(frame.loc["disable_overlap_scheduler", "prefill"]) is True
    assert bool(frame.loc["disable_overlap_scheduler", "decode"]) is False


def test_side_by_side_has_one_row_per_flattened_key(seed_prefill):
    frame = engine_config.side_by_side(engine_config.load("dev"))
    expected_rows = {
        "tensor_parallel_size", "moe_expert_parallel_size", "enable_attention_dp", "max_num_tokens",
        "max_batch_size", "trust_remote_code", "backend", "enable_chunked_prefill", "disable_overlap_scheduler",
        "kv_cache_config.free_gpu_memory_fraction", "cuda_graph_config.max_batch_size",
        "cache_transceiver_config.backend",
    }
    assert set(frame.index) == expected_rows
    assert len(frame) == len(expected_rows)


def test_side_by_side_marks_a_key_present_in_one_role_only(project_copy):
    _apply(project_copy, "decode", _set("kv_cache_config.enable_block_reuse", False))
    frame = engine_config.side_by_side(engine_config.load("dev"))
    assert frame.loc["kv_cache_config.enable_block_reuse", "prefill"] == "—"
    assert bool(frame.loc["kv_cache_config.enable_block_reuse", "differs"]) is True


def test_highlight_differences_styles_only_differing_rows():
    frame = engine_config.side_by_side(engine_config.load("dev"))
    html = engine_config.highlight_differences(frame).to_html()
    assert html.count("background-color: #fff3b0") >= 1
    assert "max_batch_size" in html


def test_the_aggregated_env_has_one_config_without_a_kv_hand_over(repo_root):
    """engine-configs/agg/ holds agg.yaml alone: no prefill/decode pair and no cache_transceiver_config."""
    configs = engine_config.load("agg")
    assert set(configs) == {"agg"}
    assert configs["agg"].get("cache_transceiver_config") is None


def test_a_disaggregated_role_still_needs_its_kv_hand_over(tmp_path, seed_prefill, seed_decode):
    """Only agg.yaml may lack cache_transceiver_config; a prefill.yaml without it is refused as before."""
    prefill = {k: v for k, v in seed_prefill.items() if k != "cache_transceiver_config"}
    (tmp_path / "prefill.yaml").write_text(yaml.safe_dump(prefill))
    (tmp_path / "decode.yaml").write_text(yaml.safe_dump(seed_decode))
    with pytest.raises(ValidationErrors, match="missing cache_transceiver_config"):
        engine_config.load("dev", directory=tmp_path)
    (tmp_path / "agg.yaml").write_text(yaml.safe_dump(prefill))  # an aggregated env: prefill/decode not required
    (tmp_path / "prefill.yaml").unlink()
    (tmp_path / "decode.yaml").unlink()
    assert set(engine_config.load("dev", directory=tmp_path)) == {"agg"}
