"""Shared fixtures: every test that runs a graph gets its own state folder and stops what it started."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gtcdemo.local import LocalTarget


def poll(check: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.1, what: str = "") -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or check}")
        time.sleep(interval_s)


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


@contextlib.contextmanager
def running_graph(state: Path, **kwargs: object) -> Iterator[LocalTarget]:
    """A dev graph with its own state root (GTCDEMO_STATE meanwhile), torn down and checked for leftovers."""
    target = LocalTarget("dev", state_dir=state / "dev-gtc-demo", **kwargs)
    old = os.environ.get("GTCDEMO_STATE")
    os.environ["GTCDEMO_STATE"] = str(state)
    try:
        target.apply()
        target.wait(timeout_s=180)
        yield target
    finally:
        target.teardown()
        if old is None:
            os.environ.pop("GTCDEMO_STATE", None)
        else:
            os.environ["GTCDEMO_STATE"] = old
    assert target.leftover_pids() == []


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """One running dev graph shared by a module's read-only tests."""
    with running_graph(tmp_path_factory.mktemp("graph-state")) as target:
        yield target
