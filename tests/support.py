"""What the tests share: waiting with a deadline, a graph that stops what it started, a private copy of the project's
inputs, ports, processes found in /proc, and stand-in programs on PATH.

Fixtures live in the conftest files (tests/conftest.py, tests/unit/conftest.py, tests/cluster/conftest.py); they and
the test modules import these helpers from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from gtcdemo import modeldir, project
from gtcdemo.clock import wait_until
from gtcdemo.local import LocalTarget

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gtcdemo"]  # `gtcdemo ...` as a user runs it, from this venv
MODEL = modeldir.SERVED_MODEL_NAME


def poll(check: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1, what: str = "") -> Any:
    """The first truthy answer of ``check``; the test fails naming ``what`` when none came before the deadline."""
    value = wait_until(check, timeout_s, interval_s)
    if not value:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what or check}")
    return value


# -- graphs ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_graph(state: Path, **kwargs: Any) -> Iterator[LocalTarget]:
    """A ready dev graph whose state lives under ``state`` (``kwargs`` go to LocalTarget, e.g. ``release``); stopped
    afterwards, and nothing of it may be left running."""
    target = LocalTarget("dev", state_dir=state / "dev-gtc-demo", **kwargs)
    try:
        target.apply()
        target.wait(timeout_s=180)
        yield target
    finally:
        target.teardown()
    assert target.leftover_pids() == [], "teardown left processes running"


def footprint(target: LocalTarget) -> dict[str, tuple[int | None, int]]:
    """Process name -> (pid, restarts), the supervisor included: equal before and after a test means the test
    stopped, restarted, scaled and broke nothing."""
    processes = {p["name"]: (p["pid"], p["restarts"]) for p in target.processes()}
    return {"supervisor": (target.supervisor_pid(), 0), **processes}


# -- the project's inputs --------------------------------------------------------------------------------------------
def copy_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """engine-configs/, manifests/ and pyproject.toml (the Dynamo release pins) copied into ``root``, and
    gtcdemo.project pointed at the copy in this process (a subprocess needs GTCDEMO_ROOT=root): tests that break
    or rewrite inputs work there, never on the committed files."""
    root.mkdir(parents=True)
    for name in ("engine-configs", "manifests"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "pyproject.toml", root)
    monkeypatch.setattr(project, "ROOT", root)
    monkeypatch.setattr(project, "ENGINE_CONFIGS", root / "engine-configs")
    monkeypatch.setattr(project, "MANIFESTS", root / "manifests")
    return root


# -- ports -----------------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nothing listens on (the kernel's pick; free until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def take_port(port: int) -> socket.socket | None:
    """A listening socket on 127.0.0.1:``port`` (close it to give the port back), or None when the port is held by
    someone else already."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port whose last user just died is free
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


# -- processes -------------------------------------------------------------------------------------------------------
class Proc(NamedTuple):
    pid: int
    ppid: int
    pgrp: int
    argv: list[str]

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def processes() -> list[Proc]:
    """Every process this user may read, from /proc (a process that exits meanwhile is left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
        found.append(Proc(int(entry), int(fields[1]), int(fields[2]), argv))
    return found


def children_of(pid: int) -> list[int]:
    return [p.pid for p in processes() if p.ppid == pid]


def group_members(pgid: int) -> list[int]:
    """Every process of process group ``pgid`` (each graph process runs in a group of its own, helpers included)."""
    return [p.pid for p in processes() if p.pgrp == pgid]


def mentioning(text: str | Path) -> dict[int, str]:
    """pid -> command line of every other process whose command line names ``text`` (a state folder, a runtime
    folder, a profile...)."""
    return {p.pid: p.command for p in processes() if str(text) in p.command and p.pid != os.getpid()}


# -- stand-in programs -----------------------------------------------------------------------------------------------
def fake_program(folder: Path, name: str, script: str) -> Path:
    """An executable ``folder/name`` holding ``script`` (with its #! line); put ``folder`` first on PATH to stand in
    for the real program. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(script)
    path.chmod(0o755)
    return folder
