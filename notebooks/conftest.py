"""nbval runs the step notebooks in file order against the local target, in a private state folder.

The kernel inherits this environment, so the graph the notebooks start lives in a temporary folder and is stopped
after the session even when a notebook fails half-way.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_STATE = tempfile.mkdtemp(prefix="gtcdemo-nbval-")
os.environ["GTCDEMO_STATE"] = _STATE
os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the graph the notebooks started (nbval items take no fixtures, so this is a hook)."""
    from gtcdemo.local import LocalTarget

    leftover: list[int] = []
    for env in ("dev", "agg"):  # 06 deploys agg too (and tears it down itself: this is the net under a failure)
        target = LocalTarget(env)  # its state folder is under GTCDEMO_STATE, set above
        target.teardown()
        leftover += target.leftover_pids()
    if leftover:
        session.shouldfail = f"the notebooks left local processes running: {leftover}"
