"""Fixtures for the pure-logic unit tests: the dev engine settings as specified, and a private project copy."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gtcdemo import bundle
from tests.support import REPO, copy_project

_HERE = Path(__file__).resolve().parent

# The prefill engine settings the deployment is specified with, written out by hand (not read from the repo), so a
# change to engine-configs/dev/ that drifts from them fails.
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything in this folder is in the fast tier (`make unit`; a conftest's hook sees every item: filter)."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def assert_exact():
    """Deep, type-checking equality (a fixture so test modules need not import conftest)."""
    return _assert_exact


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def seed_prefill() -> dict:
    return copy.deepcopy(SEED_PREFILL)


@pytest.fixture
def seed_decode() -> dict:
    return copy.deepcopy(SEED_DECODE)


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the project's inputs, with gtcdemo.project pointed at it (tests.support.copy_project)."""
    return copy_project(tmp_path / "repo", monkeypatch)


@pytest.fixture
def dev_bundle() -> bundle.Bundle:
    """The committed dev bundle (engine-configs/dev + manifests/dev), validated."""
    return bundle.load("dev")
