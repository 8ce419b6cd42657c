"""nbval runs the step notebooks in file order against the local target, in a private state folder.

The kernel inherits this environment, so the graph the notebooks start lives in a temporary folder and is stopped
after the session even when a notebook fails half-way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

_STATE = tempfile.mkdtemp(prefix="gtcdemo-nbval-")
os.environ["GTCDEMO_STATE"] = _STATE
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session", autouse=True)
def _stop_local_graph() -> Iterator[None]:
    yield
    from gtcdemo.local import LocalTarget

    target = LocalTarget("dev")
    target.teardown()
    assert target.leftover_pids() == [], "the notebooks left local processes running"
