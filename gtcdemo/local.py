"""The local target: the env's DGD run on this machine with the real Dynamo frontend, mocker workers and Prometheus.

All state lives in one folder per deployment (``<state-root>/<env>-<dgd>/``): the applied objects, the process
plan, ``state.json`` written by the supervisor, logs, ConfigMap files and Prometheus data. So the CLI, a notebook
and a test find, inspect and stop the same running graph, also after the process that started it has died.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pandas as pd

from . import bundle as bundle_mod
from . import localplan, modeldir, project
from . import release as release_mod
from .errors import DeploymentError, MissingDependencyError
from .inference import chat_completion
from .results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable
from .supervisor import SECRET_ENV, alive, proc_starttime, write_json
from .target import Target

PREFERRED_PORTS = {"frontend": 8000, "prometheus": 9090, "worker": 9091, "nats": 4222, "nats-monitor": 8222}
LOCK_TIMEOUT_S = 60.0
PORT_RANGE = 200  # ports tried above each preferred one (pick_port)
# Each process of the local graph (a Dynamo frontend or mocker: ~100-150 MB, a Python event loop that wakes every
# scheduling step; Prometheus) needs a share of a core. Four per core keeps the 2-core minimum machine at 8: the
# dev graph (4) plus a few scaled workers, still answering in time for `wait` and the load generator.
MAX_PROCESSES_PER_CORE = 4
INSTALL_DYNAMO = ('.venv/bin/pip install --no-deps "ai-dynamo==1.6.1" "ai-dynamo-runtime==1.6.1" '
                  '&& .venv/bin/pip install -e ".[local]"   (or simply: make setup)')
INSTALL_PROMETHEUS = "apt-get update && apt-get install -y prometheus   (or simply: make setup)"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((localplan.LOOPBACK, port))
        except OSError:
            return False
    return True


PORT_CLAIMS = Path(tempfile.gettempdir()) / "gtcdemo-ports"


def _claim(port: int, owner: Path) -> bool:
    """Claim ``port`` for the deployment in ``owner`` until it is torn down, machine-wide.

    A free port is not enough: two deployments starting at the same moment could pick the same one before
    either binds it (and the frontend binds with SO_REUSEPORT, so both would succeed and split the traffic).
    A claim whose owner's supervisor is gone is stale and taken over.
    """
    PORT_CLAIMS.mkdir(exist_ok=True)
    path = PORT_CLAIMS / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = Path(path.read_text())
            except OSError:
                continue
            if holder == owner:
                return True
            info = None
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((holder / "supervisor.json").read_text())
            if info and alive(info.get("pid"), info.get("starttime")):
                return False
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < 60:
                    return False  # claimed moments ago: its deployment is starting (no supervisor yet)
            path.unlink(missing_ok=True)  # stale: its deployment is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(owner))
        return True
    return False


def claims_of(owner: Path) -> set[str]:
    """The ports (claim file names) held for the deployment in ``owner``."""
    held = set()
    for path in PORT_CLAIMS.glob("*") if PORT_CLAIMS.exists() else []:
        with contextlib.suppress(OSError):
            if Path(path.read_text()) == owner:
                held.add(path.name)
    return held


def release_claims(owner: Path, keep: set[str] | frozenset[str] = frozenset()) -> None:
    """Drop the deployment's port claims (but those in ``keep``: a running graph's, when a change failed)."""
    for name in claims_of(owner) - set(keep):
        with contextlib.suppress(OSError):
            (PORT_CLAIMS / name).unlink()


def check_capacity(b: bundle_mod.Bundle, where: str | None = None) -> None:
    """Refuse, before anything is claimed or written, a graph this machine cannot hold: more processes than
    MAX_PROCESSES_PER_CORE per core, or more than the PORT_RANGE ports each kind may use."""
    cores = os.cpu_count() or 1
    limit = MAX_PROCESSES_PER_CORE * cores
    replicas = {name: int(svc.get("replicas", 1)) for name, svc in b.services.items()}
    frontends = sum(n for name, n in replicas.items() if b.services[name].get("componentType") == "frontend")
    total = sum(replicas.values()) + 1  # + Prometheus
    service = max(replicas, key=lambda name: replicas[name])
    at = where or f"manifests/{b.env} DGD {b.name}.spec.services.{service}.replicas"
    if total > limit or frontends > PORT_RANGE or total - frontends > PORT_RANGE:
        raise DeploymentError(
            f"{service}: {replicas[service]} replicas make the local graph {total} processes (frontends, workers, "
            f"Prometheus), more than it runs: at most {limit} processes on this machine ({MAX_PROCESSES_PER_CORE} "
            f"per core x {cores} cores), and {PORT_RANGE} ports per kind ({PREFERRED_PORTS['frontend']}+ for "
            f"frontends, {PREFERRED_PORTS['worker']}+ for workers); nothing was claimed or started", where=at,
            fix=f"lower the replicas (at most {limit - total + replicas[service]} for {service} here), or rehearse "
                "a bigger graph on the cluster target")


def pick_port(preferred: int, taken: set[int], owner: Path | None = None) -> int:
    """``preferred`` when free (and, with ``owner``, claimed for it), else the next such port above it."""
    for port in range(preferred, preferred + PORT_RANGE):
        if port not in taken and _port_free(port) and (owner is None or _claim(port, owner)):
            taken.add(port)
            return port
    raise DeploymentError(f"no free port in {preferred}-{preferred + PORT_RANGE - 1} on 127.0.0.1",
                          fix="stop other deployments (`gtcdemo down`) or free ports in that range")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (from /proc/net/tcp*), to tell whose process answers there."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(fields[9])
    return inodes


def port_state(pid: int, port: int) -> str:
    """"own" when only ``pid`` listens on ``port``; "shared" when another process listens there too (the Dynamo
    frontend binds with SO_REUSEPORT, so two deployments started at once could share a port and split the
    traffic); "none" when ``pid`` does not listen there (a health check would reach someone else)."""
    inodes = _listening_inodes(port)
    mine = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    mine.add(link[8:-1])
    if not mine:
        return "none"
    return "own" if mine == inodes else "shared"


def check_dependencies() -> dict[str, str]:
    """Where the Dynamo package and Prometheus are; a specific install command when one is missing."""
    import importlib.util

    if importlib.util.find_spec("dynamo") is None or importlib.util.find_spec("dynamo.mocker") is None:
        raise MissingDependencyError("the ai-dynamo package (Dynamo frontend and mocker) is not installed in "
                                     f"{sys.prefix}", fix=f"run: {INSTALL_DYNAMO}")
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise MissingDependencyError("Prometheus is not installed (no `prometheus` on PATH)",
                                     fix=f"run: {INSTALL_PROMETHEUS}")
    return {"dynamo": importlib.util.find_spec("dynamo").origin or "", "prometheus": prometheus}


def pvc_root() -> Path:
    """Local stand-ins for the cluster's PVCs, shared by all deployments (the model folder is made once)."""
    return modeldir.default_model_dir().parents[1] / "pvc"


class LocalTarget(Target):
    """Runs a bundle as local processes; answers the same questions as the cluster target."""

    kind = "local"
    stops_failed_up = True

    def __init__(self, env: str = "dev", state_dir: Path | None = None, release: str | None = None) -> None:
        """``release``: the Dynamo release to run; None = the local default (this environment's), "dgd" = the one
        the DGD's images name (what the cluster runs, from its own venv), or a version."""
        super().__init__(env)
        self.dir = state_dir or project.state_root() / f"{env}-{self.bundle.name}"
        self.release_choice = release

    @property
    def release(self) -> release_mod.Release:
        """The Dynamo release this graph runs (installed: else the command that installs it)."""
        choice = self.release_choice
        version = release_mod.dgd_release(self.bundle.dgd) if choice == "dgd" else choice
        return release_mod.resolve(version).require()

    # -- the bundle and state files -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.env}-{self.bundle.name} (local)"

    def _read(self, name: str) -> dict | None:
        try:
            return json.loads((self.dir / name).read_text())
        except (OSError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        info = self._read("supervisor.json")
        if info and alive(info.get("pid"), info.get("starttime")):
            return info["pid"]
        return None

    def is_running(self) -> bool:
        return self.supervisor_pid() is not None

    def _left_behind(self) -> tuple[int | None, list[dict], int]:
        """After a supervisor that died without stopping the graph (SIGKILL, OOM): its pid, the processes it
        recorded that still run, and how many it recorded. (None, [], 0) when it stopped cleanly or never ran."""
        info = self._read("supervisor.json") or {}
        if not info.get("pid") or alive(info.get("pid"), info.get("starttime")):
            return None, [], 0
        recorded = [p for p in (self._read("state.json") or {}).get("processes", {}).values() if p.get("pid")]
        return info["pid"], [p for p in recorded if alive(p["pid"], p.get("starttime"))], len(recorded)

    def _state_note(self) -> str:
        """What happened to a graph that is not running (empty when it was stopped, or never started)."""
        pid, orphans, recorded = self._left_behind()
        if pid is None:
            return ""
        note = f"its supervisor (pid {pid}) was killed or crashed; "
        if orphans:
            return note + "still running without it: " + ", ".join(
                f"{p['name']} (pid {p['pid']}, {','.join(f'{k}:{v}' for k, v in p['ports'].items())})"
                for p in orphans)
        return note + f"its {recorded} processes stopped with it"

    def not_running(self, doing: str = "") -> DeploymentError:
        """The error of a command that needs the running graph: what happened, and how to start it."""
        note = self._state_note()
        fix = f"start it: gtcdemo up --env {self.env}"
        if self._left_behind()[1]:
            fix = f"stop them: gtcdemo down --env {self.env}; then {fix}"
        return DeploymentError(f"{self.name} is not running{': ' + note if note else ''}{doing}",
                               where=str(self.dir), fix=fix)

    @contextlib.contextmanager
    def lock(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Serialise commands that change this deployment (two `up`s, `up` and `down`...)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "w") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DeploymentError(f"another gtcdemo command holds the lock on {self.dir}",
                                              fix="wait for it to finish (see `gtcdemo status`), then retry") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- apply ---------------------------------------------------------------------------------------------------
    def _ports(self, previous: dict | None) -> dict[str, int]:
        """Keep the ports of a running graph; otherwise prefer the usual ones and move up when taken."""
        old = {p["name"]: p["ports"] for p in (previous or {}).get("procs", [])} if self.is_running() else {}
        taken: set[int] = set()
        ports: dict[str, int] = {}
        for service, svc in self.bundle.services.items():
            for replica in range(int(svc.get("replicas", 1))):
                name = f"{service.lower()}-{replica}"
                kind = "frontend" if svc.get("componentType") == "frontend" else "worker"
                kept = next(iter(old.get(name, {}).values()), None)
                ports[name] = kept if kept else pick_port(PREFERRED_PORTS[kind], taken, self.dir)
                taken.add(ports[name])
        kept = next(iter(old.get("prometheus", {}).values()), None)
        ports["prometheus"] = kept if kept else pick_port(PREFERRED_PORTS["prometheus"], taken, self.dir)
        if self.release.needs_nats:
            nats = old.get("nats", {})
            for key, name in (("client", "nats"), ("monitor", "nats-monitor")):
                ports[name] = nats.get(key) or pick_port(PREFERRED_PORTS[name], taken, self.dir)
        return ports

    def _materialise(self) -> None:
        """Write the ConfigMap's keys as files, and make the model folder inside the model PVC's stand-in."""
        cm = self.bundle.configmap
        folder = self.dir / "configmaps" / cm["metadata"]["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for key, text in cm["data"].items():
            (folder / key).write_text(text)
        self._materialise_model()

    def _materialise_model(self) -> None:
        for svc in self.bundle.services.values():
            args = [str(a) for a in svc.get("extraPodSpec", {}).get("mainContainer", {}).get("args", []) or []]
            if "--model-path" in args:
                mounts = localplan.service_mounts(svc, pvc_root(), self.dir / "configmaps")
                modeldir.ensure_model_dir(Path(mounts.local(args[args.index("--model-path") + 1])))

    def apply(self, bundle: bundle_mod.Bundle | None = None) -> ApplyResult:
        """Apply the bundle: start the graph, or reconcile a running one; report created/configured/unchanged.

        Everything that can be refused is checked first (the machine's capacity, dependencies, the release); a
        failure after that leaves no port claim, and no state folder where there was none."""
        if bundle is not None:
            self._bundle = bundle
        check_capacity(self.bundle)
        check_dependencies()
        release = self.release
        localplan.check_rehearsable(self.bundle)
        existed = self.dir.exists()
        with self.lock():
            held = claims_of(self.dir)
            try:
                return self._apply_locked(release)
            except BaseException:
                if self.is_running():
                    release_claims(self.dir, keep=held)  # the running graph keeps its own ports
                elif not (self.dir / "supervisor.json").exists():  # nothing started: leave nothing behind
                    release_claims(self.dir)
                    if not existed:
                        shutil.rmtree(self.dir, ignore_errors=True)
                raise

    def _apply_locked(self, release: release_mod.Release) -> ApplyResult:
        if not self.is_running():
            self._stop_recorded()  # what a dead supervisor left running would hold the ports
        previous = self._read("plan.json")
        ports = self._ports(previous)
        applied_dir = self.dir / "applied"
        specs = localplan.plan(self.bundle, state_dir=self.dir, pvc_root=pvc_root(), ports=ports, release=release,
                               kv_bytes_per_token=modeldir.kv_bytes_per_token())
        specs.append(localplan.prometheus_spec(self.dir, ports["prometheus"], shutil.which("prometheus") or ""))
        applied_dir.mkdir(exist_ok=True)
        actions = []
        for obj in self.bundle.objects:
            path = applied_dir / f"{obj['kind']}-{obj['metadata']['name']}.json"
            before = json.loads(path.read_text()) if path.exists() else None
            action = "created" if before is None else "unchanged" if before == obj else "configured"
            if obj["kind"] == "PersistentVolumeClaim" and before is not None:
                action = "unchanged"  # an existing claim is never modified (as on the cluster)
            else:
                write_json(path, obj)
            actions.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "action": action})
        self._materialise()
        procs = []
        for spec in specs:
            record = asdict(spec)
            record["digest"] = spec.digest()
            record["log"] = str(self.dir / "logs" / f"{spec.name}.log")
            procs.append(record)
        plan = {"procs": procs, "prometheus_config": localplan.prometheus_config(self.bundle, specs)}
        write_json(self.dir / "plan.json", plan)
        pid = self.supervisor_pid()
        if pid and previous != plan:
            os.kill(pid, signal.SIGHUP)
            note = f"running graph reconciled (supervisor pid {pid})"
        elif pid:
            note = f"already running (supervisor pid {pid}): nothing to change"
        else:
            self._start_supervisor()
            note = f"graph started (supervisor pid {self.supervisor_pid()}, state in {self.dir})"
        return ApplyResult(target=self.name, rows=actions, note=note)

    def _start_supervisor(self) -> None:
        (self.dir / "state.json").unlink(missing_ok=True)
        log = open(self.dir / "supervisor.log", "ab")  # noqa: SIM115 (handed to the child)
        # Ctrl-C must not land between starting the supervisor and recording it, or `down` could not find it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            proc = subprocess.Popen([sys.executable, "-m", "gtcdemo.supervisor", str(self.dir)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    env={**{k: v for k, v in os.environ.items() if k not in SECRET_ENV},
                                         "PYTHONPATH": str(project.ROOT)},
                                    preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, blocked))
            write_json(self.dir / "supervisor.json", {"pid": proc.pid, "starttime": proc_starttime(proc.pid)})
        finally:
            log.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        deadline = time.monotonic() + 30
        while not (self.is_running() and self._read("state.json")):
            if time.monotonic() > deadline:
                raise DeploymentError("the local supervisor did not start", where=str(self.dir / "supervisor.log"),
                                      fix="read the supervisor log above; then `gtcdemo down` and retry")
            time.sleep(0.05)

    # -- observe ---------------------------------------------------------------------------------------------------
    def processes(self) -> list[dict]:
        state = self._read("state.json") or {}
        if not self.is_running():
            return []
        return list(state.get("processes", {}).values())

    @staticmethod
    def _healthy(process: dict) -> bool:
        """Running, listening on its own ports (not another deployment's), and answering its health URL."""
        if process["phase"] != "Running" or not process["pid"]:
            return False
        if not all(port_state(process["pid"], port) == "own" for port in process["ports"].values()):
            return False
        try:
            return httpx.get(process["health"], timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _scraping(self) -> bool:
        """Prometheus has scraped every target successfully at least once (so metrics exist right after wait)."""
        try:
            targets = httpx.get(f"{self.prometheus_url()}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        except (httpx.HTTPError, KeyError, ValueError, DeploymentError):
            return False
        expected = sum(1 for p in self.processes() if p["role"] == "frontend" or "system" in p["ports"])
        return len(targets) == expected and all(t["health"] == "up" for t in targets)

    def status(self) -> StatusTable:
        """Processes in the shape of ``kubectl get pods``; a graph that is not running says what happened, and
        lists what a dead supervisor left running (phase Orphaned)."""
        now = time.time()
        rows = []
        running = self.is_running()
        for p in self.processes() if running else self._left_behind()[1]:
            ready = running and self._healthy(p)
            rows.append({
                "name": p["name"], "service": p["service"], "role": p["role"], "replica": p["replica"],
                "pid": p["pid"] or "", "phase": p["phase"] if running else "Orphaned",
                "ready": "1/1" if ready else "0/1", "restarts": p["restarts"],
                "age": _age(now - (p["created_at"] or now)),
                "ports": ",".join(f"{k}:{v}" for k, v in p["ports"].items()),
            })
        columns = ["name", "service", "role", "replica", "pid", "phase", "ready", "restarts", "age", "ports"]
        note = self._state_note()
        state = "running" if running else f"not running: {note}" if note else "not running"
        return StatusTable(title=f"{self.name}: {state}", frame=pd.DataFrame(rows, columns=columns))

    def logs(self, service: str | None = None, tail: int = 20) -> dict[str, str]:
        """The last ``tail`` lines of each process's log (of one service when given)."""
        out = {}
        for path in sorted((self.dir / "logs").glob("*.log")):
            name = path.stem
            if service and not (name.startswith(service.lower()) or name == service):
                continue
            lines = path.read_text(errors="replace").splitlines()
            out[name] = "\n".join(lines[-tail:])
        return out

    def frontend_url(self) -> str:
        if not self.is_running():
            raise self.not_running()
        procs = [p for p in self.processes() if p["role"] == "frontend"]
        if not procs:
            raise DeploymentError(f"no frontend is running for {self.name}", fix="run `gtcdemo up` (or 02_deploy)")
        return f"http://{localplan.LOOPBACK}:{procs[0]['ports']['http']}"

    def prometheus_url(self) -> str:
        if not self.is_running():
            raise self.not_running()
        procs = [p for p in self.processes() if p["role"] == "prometheus"]
        if not procs:
            raise DeploymentError(f"no Prometheus is running for {self.name}", fix="run `gtcdemo up` (or 02_deploy)")
        return f"http://{localplan.LOOPBACK}:{procs[0]['ports']['http']}"

    @contextlib.contextmanager
    def frontend(self) -> Iterator[str]:
        """The frontend's base URL (no port-forward is needed locally)."""
        yield self.frontend_url()

    @contextlib.contextmanager
    def prometheus(self) -> Iterator[str]:
        yield self.prometheus_url()

    def demo_status(self) -> Overview:
        """The local counterpart of the seed's `demo-status`: processes, applied objects, where the state is."""
        applied = []
        for path in sorted((self.dir / "applied").glob("*.json")) if (self.dir / "applied").exists() else []:
            obj = json.loads(path.read_text())
            applied.append({"kind": obj["kind"], "name": obj["metadata"]["name"],
                            "namespace": obj["metadata"].get("namespace", "")})
        where = pd.DataFrame([{"state folder": str(self.dir), "model PVC folder": str(pvc_root()),
                               "supervisor pid": self.supervisor_pid() or ""}])
        return Overview(f"demo-status: {self.name}", [
            self.status(),
            StatusTable("applied objects", pd.DataFrame(applied, columns=["kind", "name", "namespace"])),
            StatusTable("where", where),
        ])

    def preflight(self) -> CheckReport:
        """What the local graph needs: the bundle valid, Dynamo and Prometheus installed, ports, model folder."""
        import importlib.metadata

        from .errors import ConfigError

        report = CheckReport(f"preflight: {self.env} on this machine (local target)")
        try:
            b = self.bundle
            report.add("engine configs and manifests", True, f"{b.name}: {b.expected_pods} pods, "
                       f"{', '.join(b.engine_configs)} configs valid")
        except ConfigError as exc:
            report.add("engine configs and manifests", False, str(exc).splitlines()[0], exc.fix or "")
            return report
        try:
            found = check_dependencies()
            report.add("Dynamo (ai-dynamo)", True, f"{importlib.metadata.version('ai-dynamo')} in {sys.prefix}")
            report.add("Prometheus", True, found["prometheus"])
        except MissingDependencyError as exc:
            report.add("Dynamo and Prometheus", False, exc.problem, exc.fix or "")
        taken: set[int] = set()
        for role, port in PREFERRED_PORTS.items():
            if _port_free(port):
                report.add(f"port {port} ({role})", True, "free on 127.0.0.1")
            else:
                report.add(f"port {port} ({role})", None, f"taken: the {role} will use {pick_port(port, taken)}")
        try:
            self._materialise_model()
            report.add("model folder", True, f"{pvc_root()} (tokenizer + Llama-3.1-8B config, made here)")
        except OSError as exc:
            report.add("model folder", False, str(exc), f"make {pvc_root()} writable or set GTCDEMO_CACHE")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".write-test"
            probe.write_text("")
            probe.unlink()
            report.add("state folder", True, str(self.dir))
        except OSError as exc:
            report.add("state folder", False, str(exc), "set GTCDEMO_STATE to a writable folder")
        running = self.supervisor_pid()
        report.add("deployment", True, f"running (supervisor pid {running})" if running else "not running yet")
        return report

    # -- wait --------------------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None) -> ReadyResult:
        """Until every process is alive and healthy AND a real chat completion succeeds.

        Fails at once, with the process's last log lines, when a process exits during start-up.
        """
        if timeout_s <= 0:
            raise DeploymentError(f"timeout must be > 0 s, got {timeout_s}", fix="pass e.g. timeout_s=600")
        start = time.monotonic()
        deadline = start + timeout_s
        last_note = ""
        while True:
            if not self.is_running():
                raise self.not_running()
            procs = self.processes()
            # A process that exited and is not (yet) back: a recovered crash of long ago must not fail every wait.
            crashed = [p for p in procs if p["last_exit_code"] is not None and p["phase"] != "Running"]
            if crashed:
                p = crashed[0]
                tail = self.logs(p["name"], tail=20).get(p["name"], "")
                raise DeploymentError(
                    f"{p['name']} exited with code {p['last_exit_code']} during start-up; last log lines:\n{tail}",
                    where=p["log"], fix="fix the cause above, then `gtcdemo down` and `gtcdemo up`")
            shared = [(p["name"], port) for p in procs if p["pid"] for port in p["ports"].values()
                      if port_state(p["pid"], port) == "shared"]
            if shared:
                name, port = shared[0]
                raise DeploymentError(f"{name}'s port {port} is also served by another process, so requests and "
                                      "metrics would mix", where=str(self.dir),
                                      fix="another graph was started at the same moment: `gtcdemo down` here, "
                                          "then `gtcdemo up` again (it picks a free port)")
            unhealthy = [p["name"] for p in procs if not self._healthy(p)]
            note = f"waiting for {', '.join(unhealthy)}" if unhealthy else "processes healthy; trying a completion"
            if not unhealthy and not self._scraping():
                note = "processes healthy; waiting for Prometheus' first scrape of every target"
            elif not unhealthy:
                try:
                    chat_completion(self.frontend_url(), self.bundle.served_model_name, "ping", max_tokens=2,
                                    timeout_s=10)
                    elapsed = time.monotonic() - start
                    if progress:
                        progress(f"ready after {elapsed:.1f} s")
                    return ReadyResult(target=self.name, ready=True, elapsed_s=elapsed, status=self.status())
                except Exception as exc:  # the first completion can fail briefly after the model is listed
                    note = f"model listed, completion not yet answered ({type(exc).__name__})"
            if progress and note != last_note:
                progress(note)
                last_note = note
            if time.monotonic() > deadline:
                raise DeploymentError(f"not ready after {timeout_s:.0f} s: {note}", where=str(self.dir / "logs"),
                                      fix="check `gtcdemo logs`; raise the timeout if the machine is busy")
            time.sleep(0.2)

    # -- scale and teardown -------------------------------------------------------------------------------------------
    def scale(self, service: str, replicas: int) -> ApplyResult:
        """Change one service's replicas (what the DGDSA does on the cluster) and reconcile.

        Refused, with nothing claimed or written, when the graph is not running (scaling never deploys) or when
        the machine cannot hold the result (check_capacity)."""
        if service not in self.bundle.services:
            raise DeploymentError(f"no service {service!r} in {self.bundle.name}",
                                  fix=f"use one of {', '.join(self.bundle.services)}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DeploymentError(f"replicas must be >= 0, got {replicas}", fix="pass a whole number >= 0")
        if not self.is_running():
            raise self.not_running(": nothing to scale")
        svc = self.bundle.services[service]
        before = svc.get("replicas", 1)
        svc["replicas"] = replicas
        try:
            check_capacity(self.bundle, where=f"gtcdemo scale {service} {replicas}")
            return self.apply()
        except BaseException:
            svc["replicas"] = before  # this target keeps describing what runs
            raise

    def replicas(self, service: str) -> int:
        return sum(1 for p in self.processes() if p["service"] == service)

    def teardown(self, timeout_s: float = 30.0) -> ApplyResult:
        """Stop exactly this deployment's processes (also after the process that started them died)."""
        if not self.dir.exists():  # never deployed here: nothing to stop, and no state folder to create
            return ApplyResult(target=self.name, rows=[])
        with self.lock():
            rows = []
            pid = self.supervisor_pid()
            state = self._read("state.json") or {}
            if pid:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout_s
                while self.supervisor_pid() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.supervisor_pid():
                    os.kill(pid, signal.SIGKILL)
            self._stop_recorded(state)
            for path in sorted((self.dir / "applied").glob("*.json")) if (self.dir / "applied").exists() else []:
                obj = json.loads(path.read_text())
                if obj["kind"] == "PersistentVolumeClaim":
                    continue  # like the cluster, the model claim outlives the deployment
                path.unlink()
                rows.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "action": "deleted"})
            for name in ("plan.json", "supervisor.json"):
                (self.dir / name).unlink(missing_ok=True)
            release_claims(self.dir)
        return ApplyResult(target=self.name, rows=rows)

    def _stop_recorded(self, state: dict | None = None) -> None:
        """Stop the recorded process groups still alive (pid reuse checked): what a killed supervisor left."""
        state = state if state is not None else self._read("state.json") or {}
        orphans = [p for p in state.get("processes", {}).values() if alive(p.get("pid"), p.get("starttime"))]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p["pid"], sig)
            deadline = time.monotonic() + 8
            while any(alive(p["pid"], p["starttime"]) for p in orphans) and time.monotonic() < deadline:
                time.sleep(0.05)

    def leftover_pids(self) -> list[int]:
        """Processes of this deployment still alive (for tests and `down` checks)."""
        state = self._read("state.json") or {}
        sup = self._read("supervisor.json") or {}
        pids = [p["pid"] for p in state.get("processes", {}).values() if alive(p.get("pid"), p.get("starttime"))]
        if alive(sup.get("pid"), sup.get("starttime")):
            pids.append(sup["pid"])
        return pids


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


__all__ = ["LocalTarget", "check_dependencies", "pick_port", "proc_starttime"]
