"""The local graph's owner: one detached process per deployment that runs, restarts and stops its processes.

Started by ``start`` (from ``LocalTarget.apply``) as ``python -m gtcdemo.local.supervisor <state-dir>``, in its own
session so that it outlives a notebook kernel or a CLI call; stopped by ``stop`` (``LocalTarget.teardown``).

It does what a kubelet and a Deployment would: starts every process in ``plan.json`` in its own process group,
restarts one that exits (with exponential back-off, counting restarts), reconciles on SIGHUP after the plan changes,
and on SIGTERM/SIGINT stops every process before it exits itself.
It is the only writer of ``supervisor.json`` (its pid, from its start until it has stopped everything) and
``state.json`` (its processes), which the CLI, notebooks and tests read.

It imports nothing heavy (``gtcdemo.local`` loads its modules on first use): one runs per graph, for hours.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .. import project
from ..clock import Deadline, wait_until
from ..errors import DeploymentError
from .state import PLAN, STATE, SUPERVISOR, StateFolder, proc_starttime, write_json

MODULE = "gtcdemo.local.supervisor"
START_TIMEOUT_S = 30.0

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
STOP_GRACE_S = 8.0
# The local graph downloads nothing (HF_HUB_OFFLINE=1): the caller's Hugging Face token stays out of its processes.
SECRET_ENV = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN"}
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child between fork and exec must not import


def _die_with(parent: int) -> Callable[[], None]:
    """What a child runs between fork and exec: unblock the supervisor's signals, and ask the kernel to SIGKILL it
    when its parent dies (PR_SET_PDEATHSIG), so a supervisor killed by anything (SIGKILL, the OOM killer) takes its
    graph with it instead of leaving processes serving on their ports. The setting survives execve (gtcdemo.release
    execs the 0.8 programs) and fires when the *thread* that forked exits: the supervisor forks from its only
    thread. A parent already gone before the call is caught by the getppid check."""
    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


@dataclass
class Child:
    spec: dict
    popen: subprocess.Popen | None = None
    log: IO | None = None
    restarts: int = 0
    started_at: float | None = None
    created_at: float = field(default_factory=time.time)
    next_start: float = 0.0
    backoff: float = BACKOFF_START_S
    last_exit_code: int | None = None
    last_exit_at: float | None = None
    starttime: int | None = None
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.spec["name"]

    def phase(self) -> str:
        if self.stopping:
            return "Terminating"
        if self.popen is not None and self.popen.poll() is None:
            return "Running"
        return "CrashLoopBackOff" if self.restarts or self.last_exit_code is not None else "Pending"

    def record(self) -> dict:
        pid = self.popen.pid if self.popen is not None and self.popen.poll() is None else None
        return {
            "name": self.name, "service": self.spec["service"], "role": self.spec["role"],
            "replica": self.spec["replica"], "ports": self.spec["ports"], "health": self.spec["health"],
            "digest": self.spec["digest"], "pid": pid, "starttime": self.starttime if pid else None,
            "phase": self.phase(), "restarts": self.restarts, "started_at": self.started_at,
            "created_at": self.created_at, "last_exit_code": self.last_exit_code, "last_exit_at": self.last_exit_at,
            "next_start": self.next_start if pid is None else None, "log": str(self.spec["log"]),
        }


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.children: dict[str, Child] = {}
        self.stopping = False

    # -- process control -------------------------------------------------------------------------------------
    def start(self, child: Child) -> None:
        spec = child.spec
        log_path = Path(spec["log"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        child.log = open(log_path, "ab", buffering=0)  # noqa: SIM115 (kept open for the child's lifetime)
        child.log.write(f"\n=== gtcdemo: starting {spec['name']} at {time.strftime('%Y-%m-%dT%H:%M:%S')} "
                        f"(restart {child.restarts}) ===\n".encode())
        env = {**{k: v for k, v in os.environ.items()
                  if not k.startswith(("DYN_", "GTCDEMO_SUPERVISOR")) and k not in SECRET_ENV}, **spec["env"]}
        child.popen = subprocess.Popen(
            spec["argv"], env=env, stdin=subprocess.DEVNULL, stdout=child.log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.dir, preexec_fn=_die_with(os.getpid()),
        )
        child.starttime = proc_starttime(child.popen.pid)
        child.started_at = time.time()
        child.stopping = False

    def stop(self, children: list[Child]) -> None:
        """SIGTERM each process group, then SIGKILL whatever is left after the grace period."""
        running = [c for c in children if c.popen is not None and c.popen.poll() is None]
        for c in running:
            c.stopping = True
            self._signal(c, signal.SIGTERM)
        deadline = Deadline(STOP_GRACE_S)
        for c in running:
            try:
                c.popen.wait(timeout=deadline.remaining)
            except subprocess.TimeoutExpired:
                self._signal(c, signal.SIGKILL)
                c.popen.wait()
        for c in children:
            self._signal(c, signal.SIGKILL)  # stragglers in the group (helpers the process spawned)
            if c.log:
                c.log.close()
            c.stopping = False

    @staticmethod
    def _signal(child: Child, sig: int) -> None:
        if child.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.popen.pid, sig)

    # -- reconcile -------------------------------------------------------------------------------------------
    def load_plan(self) -> list[dict]:
        plan = json.loads((self.dir / PLAN).read_text())
        prom = plan.get("prometheus_config")
        if prom is not None:
            (self.dir / "prometheus").mkdir(exist_ok=True)
            write_json(self.dir / "prometheus" / "prometheus.yml", prom)  # JSON is valid YAML
        return plan["procs"]

    def reconcile(self) -> None:
        wanted = {p["name"]: p for p in self.load_plan()}
        stale = [c for name, c in self.children.items()
                 if name not in wanted or c.spec["digest"] != wanted[name]["digest"]]
        self.stop(stale)
        for c in stale:
            del self.children[c.name]
        kept = set(self.children)
        for name, spec in wanted.items():
            if name not in self.children:
                self.children[name] = Child(spec=spec)
                self.start(self.children[name])
        prom = self.children.get("prometheus")
        if "prometheus" in kept and prom.popen and prom.popen.poll() is None:
            self._signal(prom, signal.SIGHUP)  # reload scrape targets (a just-started one reads them anyway)
        self.write_state()

    def reap(self) -> None:
        now = time.time()
        for c in self.children.values():
            if c.popen is not None and c.popen.poll() is not None and not c.stopping:
                c.last_exit_code, c.last_exit_at = c.popen.returncode, now
                ran = now - (c.started_at or now)
                c.backoff = BACKOFF_START_S if ran > BACKOFF_RESET_AFTER_S else c.backoff
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_MAX_S)
                c.popen = None
                if c.log:
                    c.log.close()
            elif c.popen is None and not self.stopping and now >= c.next_start and c.last_exit_code is not None:
                c.restarts += 1
                self.start(c)

    def write_state(self) -> None:
        write_json(self.dir / STATE, {
            "supervisor": {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()),
                           "stopping": self.stopping},
            "processes": {name: c.record() for name, c in self.children.items()},
            "updated_at": time.time(),
        })

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        discovery = self.dir / "discovery"
        if discovery.exists():  # a crashed run's registrations would point the frontend at dead workers
            import shutil
            shutil.rmtree(discovery)
        discovery.mkdir()
        write_json(self.dir / SUPERVISOR, {"pid": os.getpid(), "starttime": proc_starttime(os.getpid())})
        try:
            self.reconcile()
            while not self.stopping:
                waits = [c.next_start - time.time() for c in self.children.values()
                         if c.popen is None and c.last_exit_code is not None]
                timeout = max(0.05, min([1.0, *waits]))
                info = signal.sigtimedwait(SIGNALS, timeout)
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self.stopping = True
                    break
                if info is not None and info.si_signo == signal.SIGHUP:
                    self.reconcile()
                before = json.dumps([c.record() for c in self.children.values()], sort_keys=True)
                self.reap()
                if json.dumps([c.record() for c in self.children.values()], sort_keys=True) != before:
                    self.write_state()
        finally:
            # Stop the processes first: nothing below (a state folder deleted under us) may orphan them.
            self.stopping = True
            self.stop(list(self.children.values()))
            self.children.clear()
            with contextlib.suppress(OSError):
                self.write_state()
                (self.dir / SUPERVISOR).unlink(missing_ok=True)
        return 0


# -- seen from the commands -----------------------------------------------------------------------------------------
def start(state_dir: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Start the supervisor of ``state_dir`` and wait until it has recorded itself and its processes.

    It alone writes supervisor.json; until it has, only this call knows it, so a failure or a Ctrl-C here stops it
    (a later `down` could not find it)."""
    folder = StateFolder(state_dir)
    (state_dir / STATE).unlink(missing_ok=True)
    log = open(state_dir / "supervisor.log", "ab")  # noqa: SIM115 (handed to the child)
    # Ctrl-C must not land between starting the supervisor and holding it in `proc`.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", MODULE, str(state_dir)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**{k: v for k, v in os.environ.items() if k not in SECRET_ENV},
                                     "PYTHONPATH": str(project.ROOT)},
                                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, blocked))
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if not wait_until(lambda: folder.supervisor_pid() and folder.read(STATE), timeout_s, 0.05):
            raise DeploymentError("the local supervisor did not start", where=str(state_dir / "supervisor.log"),
                                  fix="read the supervisor log above; then `gtcdemo down` and retry")
    except BaseException:
        if proc is not None and not folder.supervisor_pid():
            proc.terminate()  # it stops what it started, and removes its supervisor.json
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()  # its processes follow it (PR_SET_PDEATHSIG)
        raise
    finally:
        log.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def stop(state_dir: Path, timeout_s: float) -> None:
    """Stop the running supervisor of ``state_dir`` (SIGTERM: it stops its processes first), SIGKILL after
    ``timeout_s``."""
    folder = StateFolder(state_dir)
    pid = folder.supervisor_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not folder.supervisor_pid(), timeout_s, 0.05):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main())
