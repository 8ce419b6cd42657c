"""Shared fixtures for the pure-logic unit tests: the seed's literal values and an isolated project copy."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from gtcdemo import bundle, project

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seed Phase 1d-ii, Step 1, written out by hand from the seed (not read from the repo).
SEED_PREFILL = {
    "tensor_parallel_size": 1,
    "moe_expert_parallel_size": 1,
    "enable_attention_dp": False,
    "max_num_tokens": 8192,
    "max_batch_size": 16,
    "trust_remote_code": True,
    "backend": "pytorch",
    "enable_chunked_prefill": True,
    "disable_overlap_scheduler": True,
    "kv_cache_config": {"free_gpu_memory_fraction": 0.85},
    "cuda_graph_config": {"max_batch_size": 16},
    "cache_transceiver_config": {"backend": "DEFAULT"},
}
# "Same as prefill except": max_batch_size 64, disable_overlap_scheduler false, cuda_graph_config.max_batch_size 64.
SEED_DECODE = {
    "tensor_parallel_size": 1,
    "moe_expert_parallel_size": 1,
    "enable_attention_dp": False,
    "max_num_tokens": 8192,
    "max_batch_size": 64,
    "trust_remote_code": True,
    "backend": "pytorch",
    "enable_chunked_prefill": True,
    "disable_overlap_scheduler": False,
    "kv_cache_config": {"free_gpu_memory_fraction": 0.85},
    "cuda_graph_config": {"max_batch_size": 64},
    "cache_transceiver_config": {"backend": "DEFAULT"},
}


def _assert_exact(actual, expected, path: str = "") -> None:
    """Deep equality that also checks types, so True != 1 and 16 != 16.0 (plain == would accept both)."""
    assert type(actual) is type(expected), f"{path or '<root>'}: {actual!r} ({type(actual).__name__}) " \
        f"!= {expected!r} ({type(expected).__name__})"
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{path or '<root>'}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            _assert_exact(actual[key], expected[key], f"{path}.{key}" if path else str(key))
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_exact(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path or '<root>'}: {actual!r} != {expected!r}"


@pytest.fixture
def assert_exact():
    """Deep, type-checking equality (a fixture so test modules need not import conftest)."""
    return _assert_exact


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def seed_prefill() -> dict:
    return copy.deepcopy(SEED_PREFILL)


@pytest.fixture
def seed_decode() -> dict:
    return copy.deepcopy(SEED_DECODE)


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of engine-configs/ and manifests/, with gtcdemo.project pointed at it.

    Tests that break or rewrite config files work here, never on the committed files.
    """
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(REPO_ROOT / "engine-configs", root / "engine-configs")
    shutil.copytree(REPO_ROOT / "manifests", root / "manifests")
    monkeypatch.setattr(project, "ROOT", root)
    monkeypatch.setattr(project, "ENGINE_CONFIGS", root / "engine-configs")
    monkeypatch.setattr(project, "MANIFESTS", root / "manifests")
    return root


@pytest.fixture
def dev_bundle() -> bundle.Bundle:
    """The committed dev bundle (engine-configs/dev + manifests/dev), validated."""
    return bundle.load("dev")
