"""A deployment's state folder: its files, and whether the processes they record still run.

One folder per deployment (``<state-root>/<env>-<dgd>/``) holds everything about it, so the CLI, a notebook and a
test find, inspect and stop the same graph, also after the process that started it has died:

- ``applied/``: the objects as last applied; ``configmaps/``: the ConfigMap's keys as files;
- ``plan.json``: the processes to run and the replicas `gtcdemo scale` set (written by ``apply``);
- ``supervisor.json`` and ``state.json``: the supervisor's pid and its processes' records (written only by the
  supervisor, ``gtcdemo/local/supervisor.py``); ``logs/``, ``prometheus/``, ``discovery/``: what the processes write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..clock import wait_until
from ..errors import DeploymentError

PLAN, STATE, SUPERVISOR = "plan.json", "state.json", "supervisor.json"
LOCK_TIMEOUT_S = 60.0


def proc_starttime(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a process from a reused pid.

    Not psutil's ``create_time()``: that adds the boot time as the wall clock has it now, so a value recorded by the
    supervisor stops matching after an NTP step; psutil itself tells processes apart by this monotonic value."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[19])


def alive(pid: int | None, starttime: int | None) -> bool:
    """Whether the process recorded as (``pid``, ``starttime``) still runs (not another one with its pid)."""
    return bool(pid) and starttime is not None and proc_starttime(pid) == starttime


def write_json(path: Path, data: Any) -> None:
    """Write atomically so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


class StateFolder:
    """The state folder as the commands read it: who supervises the graph, what it runs, what a dead one left."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, name: str) -> dict | None:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        """The pid of the graph's supervisor while it runs, else None."""
        info = self.read(SUPERVISOR)
        return info["pid"] if info and alive(info.get("pid"), info.get("starttime")) else None

    def processes(self) -> list[dict]:
        """The supervisor's records of its processes (none when it is not running)."""
        state = self.read(STATE) or {}
        return list(state.get("processes", {}).values()) if self.supervisor_pid() else []

    def planned(self) -> list[dict]:
        """The processes ``apply`` told the supervisor to run (it may not have started them yet)."""
        return (self.read(PLAN) or {}).get("procs", []) if self.supervisor_pid() else []

    def scaled(self) -> dict[str, int]:
        """The replicas `gtcdemo scale` set per service; they hold until the graph is torn down."""
        return dict((self.read(PLAN) or {}).get("scaled", {}))

    def left_behind(self) -> tuple[int | None, list[dict], int]:
        """After a supervisor that died without stopping the graph (SIGKILL, OOM): its pid, the processes it
        recorded that still run, and how many it recorded. (None, [], 0) when it stopped cleanly or never ran."""
        info = self.read(SUPERVISOR) or {}
        if not info.get("pid") or alive(info.get("pid"), info.get("starttime")):
            return None, [], 0
        recorded = [p for p in (self.read(STATE) or {}).get("processes", {}).values() if p.get("pid")]
        return info["pid"], [p for p in recorded if alive(p["pid"], p.get("starttime"))], len(recorded)

    def note(self) -> str:
        """What happened to a graph that is not running (empty when it was stopped, or never started)."""
        pid, orphans, recorded = self.left_behind()
        if pid is None:
            return ""
        note = f"its supervisor (pid {pid}) was killed or crashed; "
        if orphans:
            return note + "still running without it: " + ", ".join(
                f"{p['name']} (pid {p['pid']}, {','.join(f'{k}:{v}' for k, v in p['ports'].items())})"
                for p in orphans)
        return note + f"its {recorded} processes stopped with it"

    def stop_recorded(self, state: dict | None = None) -> None:
        """Stop the recorded process groups still alive (pid reuse checked): what a killed supervisor left."""
        state = state if state is not None else self.read(STATE) or {}
        orphans = [p for p in state.get("processes", {}).values() if alive(p.get("pid"), p.get("starttime"))]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p["pid"], sig)
            wait_until(lambda: not any(alive(p["pid"], p["starttime"]) for p in orphans), 8, 0.05)

    def leftover_pids(self) -> list[int]:
        """Processes of this deployment still alive, the supervisor included."""
        state, sup = self.read(STATE) or {}, self.read(SUPERVISOR) or {}
        pids = [p["pid"] for p in state.get("processes", {}).values() if alive(p.get("pid"), p.get("starttime"))]
        return [*pids, sup["pid"]] if alive(sup.get("pid"), sup.get("starttime")) else pids

    @contextlib.contextmanager
    def lock(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Serialise commands that change this deployment (two `up`s, `up` and `down`...)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "w") as handle:
            def take() -> bool:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return False
            if not wait_until(take, timeout_s, 0.1):
                raise DeploymentError(f"another gtcdemo command holds the lock on {self.path}",
                                      fix="wait for it to finish (see `gtcdemo status`), then retry")
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
