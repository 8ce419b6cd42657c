"""Fixtures for the tests: a private state folder per test, graphs that stop what they started, and one running graph
shared by the whole run's read-only tests. The helpers they use are in tests/support.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gtcdemo.local import LocalTarget

from .support import footprint, running_graph


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("GTCDEMO_STATE", str(root))
    return root


@pytest.fixture
def make_local(state_dir: Path) -> Iterator[Callable[..., LocalTarget]]:
    """Factory for LocalTargets in this test's state folder; all are torn down after the test."""
    made: list[LocalTarget] = []

    def make(env: str = "dev") -> LocalTarget:
        target = LocalTarget(env)
        made.append(target)
        return target

    yield make
    for target in made:
        target.teardown()
        assert target.leftover_pids() == [], "teardown left processes running"


_POINTED_AT: set[str] = set()  # the state roots GTCDEMO_STATE points at for a module's graph fixture


@contextlib.contextmanager
def state_pointing_at(target: LocalTarget) -> Iterator[None]:
    """GTCDEMO_STATE pointing at ``target`` meanwhile: one graph fixture per module, or the later one would win."""
    assert os.environ.get("GTCDEMO_STATE") not in _POINTED_AT, \
        "a module takes either `graph` or `own_graph`: both point GTCDEMO_STATE at their graph"
    root = str(target.dir.parent)
    _POINTED_AT.add(root)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GTCDEMO_STATE", root)
            yield
    finally:
        _POINTED_AT.discard(root)


@pytest.fixture(scope="session")
def shared_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """The one dev graph of the run for the tests that only read from it (a start-up and teardown take ~7 s on 2
    cores; one per module cost nine a run): take it through ``graph``."""
    with running_graph(tmp_path_factory.mktemp("shared-graph-state")) as target:
        yield target


@pytest.fixture(scope="module")
def graph(shared_graph: LocalTarget) -> Iterator[LocalTarget]:
    """The shared graph, with GTCDEMO_STATE pointing at it while the module runs (the CLIs and notebook kernels its
    tests start find it there). Read-only: a test that stops, scales or breaks a graph takes ``own_graph``; after
    the module, every process must be the one it found."""
    before = footprint(shared_graph)
    with state_pointing_at(shared_graph):
        yield shared_graph
    after = footprint(shared_graph)
    assert after == before, ("the module changed the shared graph (process: (pid, restarts)): "
                             f"{before} -> {after}; a test that stops, scales or breaks a graph takes `own_graph`")


@pytest.fixture(scope="module")
def own_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """A graph of the module's own, for tests that stop, scale or break it; GTCDEMO_STATE points at it meanwhile."""
    with running_graph(tmp_path_factory.mktemp("own-graph-state")) as target, state_pointing_at(target):
        yield target
