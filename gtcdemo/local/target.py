"""The local target: the env's DGD run on this machine with the real Dynamo frontend, mocker workers and Prometheus.

``LocalTarget`` keeps the Target contract (``gtcdemo/target.py``) with a supervisor process per deployment: ``apply``
writes the process plan into the deployment's state folder and starts (or signals) the supervisor that runs it;
every other question is answered from what the supervisor recorded there (``gtcdemo/local/state.py``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pandas as pd
import yaml

from .. import modeldir, project
from .. import release as release_mod
from ..bundle import DGD_KIND, Bundle
from ..clock import Deadline, age
from ..errors import DeploymentError
from ..inference import chat_completion
from ..metrics import scrape_targets
from ..results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable
from ..target import Target
from . import supervisor
from .checks import check_capacity, check_dependencies, preflight
from .plan import check_rehearsable, plan, prometheus_config, prometheus_spec
from .ports import LOOPBACK, PREFERRED_PORTS, claims_of, listeners, pick_port, port_state, release_claims
from .state import PLAN, STATE, SUPERVISOR, StateFolder, write_json
from .volumes import materialise, pvc_root

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def dgd_name(env: str) -> str | None:
    """The DGD's ``metadata.name`` in ``manifests/<env>/``, read without validating anything (None if unreadable)."""
    for path in sorted((project.MANIFESTS / env).glob("*.y*ml")):
        with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == DGD_KIND:
                    name = (doc.get("metadata") or {}).get("name")
                    return name if isinstance(name, str) and _DNS_LABEL.fullmatch(name) else None
    return None


def _process_rows(before: list[dict], after: list[dict]) -> list[dict]:
    """What running ``after`` instead of ``before`` does to each process: started, restarted (changed) or stopped."""
    old, new = {p["name"]: p["digest"] for p in before}, {p["name"]: p["digest"] for p in after}
    rows = [{"kind": "Process", "name": name, "action": "restarted" if name in old else "started"}
            for name, digest in new.items() if old.get(name) != digest]
    return rows + [{"kind": "Process", "name": name, "action": "stopped"} for name in old if name not in new]


class LocalTarget(Target):
    """Runs a bundle as local processes; answers the same questions as the cluster target."""

    kind = "local"
    stops_failed_up = True

    def __init__(self, env: str = "dev", state_dir: Path | None = None, release: str | None = None) -> None:
        """``release``: the Dynamo release to run; None = the local default (this environment's), "dgd" = the one
        the DGD's images name (what the cluster runs, from its own venv), or a version."""
        super().__init__(env)
        self._state_dir = state_dir
        self._state_root = project.state_root()
        self.release_choice = release

    @functools.cached_property
    def deployment(self) -> str:
        """``<env>-<DGD name>``, the name read without validating the bundle: a broken config can still be
        reported (preflight), looked at and stopped. Without a readable name, the bundle's own error says why."""
        return f"{self.env}-{dgd_name(self.env) or self.bundle.name}"

    @property
    def dir(self) -> Path:
        """The deployment's state folder (``<state root>/<env>-<DGD name>`` unless given)."""
        return self._state_dir or self._state_root / self.deployment

    @property
    def state(self) -> StateFolder:
        return StateFolder(self.dir)

    @property
    def name(self) -> str:
        return f"{self.deployment} (local)"

    @property
    def release(self) -> release_mod.Release:
        """The Dynamo release this graph runs (installed: else the command that installs it)."""
        choice = self.release_choice
        version = release_mod.dgd_release(self.bundle.dgd) if choice == "dgd" else choice
        return release_mod.resolve(version).require()

    # -- what runs -------------------------------------------------------------------------------------------------
    def supervisor_pid(self) -> int | None:
        return self.state.supervisor_pid()

    def is_running(self) -> bool:
        return self.supervisor_pid() is not None

    def processes(self) -> list[dict]:
        """The supervisor's records of the graph's processes (none when it is not running)."""
        return self.state.processes()

    def leftover_pids(self) -> list[int]:
        """Processes of this deployment still alive (for tests and `down` checks)."""
        return self.state.leftover_pids()

    def replicas(self, service: str) -> int:
        """The processes of ``service`` the supervisor runs (as planned: a scale counts before its process is up)."""
        return sum(1 for p in self.state.planned() if p["service"] == service)

    def not_running(self, doing: str = "") -> DeploymentError:
        """The error of a command that needs the running graph: what happened, and how to start it."""
        note = self.state.note()
        fix = f"start it: gtcdemo up --env {self.env}"
        if self.state.left_behind()[1]:
            fix = f"stop them: gtcdemo down --env {self.env}; then {fix}"
        return DeploymentError(f"{self.name} is not running{': ' + note if note else ''}{doing}",
                               where=str(self.dir), fix=fix)

    # -- apply and scale -------------------------------------------------------------------------------------------
    def apply(self, bundle: Bundle | None = None) -> ApplyResult:
        """Apply the bundle: start the graph, or reconcile a running one; report each object created, configured
        or unchanged and each process started, restarted or stopped.

        The replicas `gtcdemo scale` set are kept, as a scaling adapter keeps them on the cluster; the note says
        where the manifest differs."""
        if bundle is not None:
            self._bundle = bundle
        scaled = self.state.scaled()
        result = self._apply(scaled)
        for service, replicas in scaled.items():
            wanted = int(self.bundle.services.get(service, {}).get("replicas", replicas))
            if replicas != wanted:
                result.note += (f"\n{service}: kept its {replicas} scaled replicas (the manifest says {wanted}); to "
                                f"change them: `gtcdemo scale {service} {wanted}`")
        return result

    def scale(self, service: str, replicas: int) -> ApplyResult:
        """Run ``replicas`` of ``service`` (what its scaling adapter does on the cluster) and reconcile.

        The count is kept in the state folder, never in the env's bundle, so `replicas` and a later `apply` (of any
        process) agree with it until the graph is torn down. Refused, with nothing claimed or written, when the
        graph is not running (scaling never deploys) or when the machine cannot hold the result (check_capacity)."""
        if service not in self.bundle.services:
            raise DeploymentError(f"no service {service!r} in {self.bundle.name}",
                                  fix=f"use one of {', '.join(self.bundle.services)}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DeploymentError(f"replicas must be >= 0, got {replicas}", fix="pass a whole number >= 0")
        if not self.is_running():
            raise self.not_running(": nothing to scale")
        return self._apply({**self.state.scaled(), service: replicas}, where=f"gtcdemo scale {service} {replicas}")

    def _scaled(self, scaled: dict[str, int]) -> Bundle:
        """The bundle with the replicas `gtcdemo scale` set (a copy: the env's bundle keeps what its files say)."""
        objects = copy.deepcopy(self.bundle.objects)
        services = next(o for o in objects if o["kind"] == DGD_KIND)["spec"]["services"]
        for service, replicas in scaled.items():
            if service in services:
                services[service]["replicas"] = replicas
        return dataclasses.replace(self.bundle, objects=objects)

    def _apply(self, scaled: dict[str, int], where: str | None = None) -> ApplyResult:
        """Everything that can be refused is checked first (the machine's capacity, dependencies, the release); a
        failure after that leaves no port claim, and no state folder where there was none."""
        b = self._scaled(scaled)
        check_capacity(b, where)
        check_dependencies()
        release = self.release
        check_rehearsable(b)
        existed = self.dir.exists()
        with self.state.lock():
            held = claims_of(self.dir)
            try:
                return self._apply_locked(b, scaled, release)
            except BaseException:
                if self.is_running():
                    release_claims(self.dir, keep=held)  # the running graph keeps its own ports
                elif not (self.dir / SUPERVISOR).exists():  # nothing started: leave nothing behind
                    release_claims(self.dir)
                    if not existed:
                        shutil.rmtree(self.dir, ignore_errors=True)
                raise

    def _ports(self, b: Bundle, previous: dict | None) -> dict[str, int]:
        """Keep the ports of a running graph; otherwise prefer the usual ones and move up when taken."""
        old = {p["name"]: p["ports"] for p in (previous or {}).get("procs", [])} if self.is_running() else {}
        taken: set[int] = set()
        ports: dict[str, int] = {}
        for service, svc in b.services.items():
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

    def _apply_locked(self, b: Bundle, scaled: dict[str, int], release: release_mod.Release) -> ApplyResult:
        if not self.is_running():
            self.state.stop_recorded()  # what a dead supervisor left running would hold the ports
        previous = self.state.read(PLAN)
        ports = self._ports(b, previous)
        specs = plan(b, state_dir=self.dir, pvc_root=pvc_root(), ports=ports, release=release,
                     kv_bytes_per_token=modeldir.kv_bytes_per_token())
        specs.append(prometheus_spec(self.dir, ports["prometheus"], shutil.which("prometheus") or ""))
        applied_dir = self.dir / "applied"
        applied_dir.mkdir(exist_ok=True)
        rows = []
        for obj in b.objects:
            path = applied_dir / f"{obj['kind']}-{obj['metadata']['name']}.json"
            before = json.loads(path.read_text()) if path.exists() else None
            action = "created" if before is None else "unchanged" if before == obj else "configured"
            if obj["kind"] == "PersistentVolumeClaim" and before is not None:
                action = "unchanged"  # an existing claim is never modified (as on the cluster)
            else:
                write_json(path, obj)
            rows.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "action": action})
        materialise(b, self.dir)
        procs = [{**asdict(spec), "digest": spec.digest(), "log": str(self.dir / "logs" / f"{spec.name}.log")}
                 for spec in specs]
        wanted = {"procs": procs, "prometheus_config": prometheus_config(b, specs)}
        if scaled:
            wanted["scaled"] = scaled
        write_json(self.dir / PLAN, wanted)
        pid = self.supervisor_pid()
        if pid and previous != wanted:
            os.kill(pid, signal.SIGHUP)
            note = f"running graph reconciled (supervisor pid {pid})"
        elif pid:
            note = f"already running (supervisor pid {pid}): nothing to change"
        else:
            supervisor.start(self.dir)
            note = f"graph started (supervisor pid {self.supervisor_pid()}, state in {self.dir})"
        running_before = (previous or {}).get("procs", []) if pid else []
        return ApplyResult(target=self.name, rows=rows + _process_rows(running_before, procs), note=note)

    # -- wait ------------------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None) -> ReadyResult:
        """Until every planned process is alive and healthy AND a real chat completion succeeds.

        Fails at once, with the process's last log lines, when a process exits during start-up.
        """
        if timeout_s <= 0:
            raise DeploymentError(f"timeout must be > 0 s, got {timeout_s}", fix="pass e.g. timeout_s=600")
        deadline = Deadline(timeout_s)
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
            listening = listeners()
            shared = [(p["name"], port) for p in procs if p["pid"] for port in p["ports"].values()
                      if port_state(p["pid"], port, listening) == "shared"]
            if shared:
                name, port = shared[0]
                raise DeploymentError(f"{name}'s port {port} is also served by another process, so requests and "
                                      "metrics would mix", where=str(self.dir),
                                      fix="another graph was started at the same moment: `gtcdemo down` here, "
                                          "then `gtcdemo up` again (it picks a free port)")
            # The supervisor reconciles a changed plan (a scale) moments after apply: until then it records the
            # processes of the old one.
            recorded = {p["name"]: p.get("digest") for p in procs}
            unhealthy = list(dict.fromkeys(
                [p["name"] for p in self.state.planned() if recorded.get(p["name"]) != p["digest"]]
                + [p["name"] for p in procs if not self._healthy(p, listening)]))
            note = f"waiting for {', '.join(unhealthy)}" if unhealthy else "processes healthy; trying a completion"
            if not unhealthy and not self._scraping():
                note = "processes healthy; waiting for Prometheus' first scrape of every target"
            elif not unhealthy:
                try:
                    chat_completion(self.frontend_url(), self.bundle.served_model_name, "ping", max_tokens=2,
                                    timeout_s=10)
                    elapsed = deadline.elapsed
                    if progress:
                        progress(f"ready after {elapsed:.1f} s")
                    return ReadyResult(target=self.name, ready=True, elapsed_s=elapsed, status=self.status())
                except Exception as exc:  # the first completion can fail briefly after the model is listed
                    note = f"model listed, completion not yet answered ({type(exc).__name__})"
            if progress and note != last_note:
                progress(note)
                last_note = note
            if not deadline.sleep(0.2):
                raise DeploymentError(f"not ready after {timeout_s:.0f} s: {note}", where=str(self.dir / "logs"),
                                      fix="check `gtcdemo logs`; raise the timeout if the machine is busy")

    @staticmethod
    def _healthy(process: dict, listening: dict[int, set[int | None]]) -> bool:
        """Running, listening on its own ports (not another deployment's), and answering its health URL."""
        if process["phase"] != "Running" or not process["pid"]:
            return False
        if not all(port_state(process["pid"], port, listening) == "own" for port in process["ports"].values()):
            return False
        try:
            return httpx.get(process["health"], timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _scraping(self) -> bool:
        """Prometheus has scraped every target successfully at least once (so metrics exist right after wait)."""
        try:
            targets = scrape_targets(self.prometheus_url(), timeout_s=2)
        except DeploymentError:
            return False
        expected = sum(1 for p in self.processes() if p["role"] == "frontend" or "system" in p["ports"])
        return len(targets) == expected and all(t["health"] == "up" for t in targets)

    # -- observe ---------------------------------------------------------------------------------------------------
    def status(self) -> StatusTable:
        """Processes in the shape of ``kubectl get pods``; a graph that is not running says what happened, and
        lists what a dead supervisor left running (phase Orphaned)."""
        now = time.time()
        rows = []
        running = self.is_running()
        listening = listeners() if running else {}
        for p in self.processes() if running else self.state.left_behind()[1]:
            ready = running and self._healthy(p, listening)
            rows.append({
                "name": p["name"], "service": p["service"], "role": p["role"], "replica": p["replica"],
                "pid": p["pid"] or "", "phase": p["phase"] if running else "Orphaned",
                "ready": "1/1" if ready else "0/1", "restarts": p["restarts"],
                "age": age(now - (p["created_at"] or now)),
                "ports": ",".join(f"{k}:{v}" for k, v in p["ports"].items()),
            })
        columns = ["name", "service", "role", "replica", "pid", "phase", "ready", "restarts", "age", "ports"]
        note = self.state.note()
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

    def _url(self, role: str, what: str) -> str:
        if not self.is_running():
            raise self.not_running()
        procs = [p for p in self.processes() if p["role"] == role]
        if not procs:
            raise DeploymentError(f"no {what} is running for {self.name}", fix="run `gtcdemo up` (or 02_deploy)")
        return f"http://{LOOPBACK}:{procs[0]['ports']['http']}"

    def frontend_url(self) -> str:
        return self._url("frontend", "frontend")

    def prometheus_url(self) -> str:
        return self._url("prometheus", "Prometheus")

    @contextlib.contextmanager
    def frontend(self) -> Iterator[str]:
        """The frontend's base URL (no port-forward is needed locally)."""
        yield self.frontend_url()

    @contextlib.contextmanager
    def prometheus(self) -> Iterator[str]:
        yield self.prometheus_url()

    def demo_status(self) -> Overview:
        """What `demo-status` shows of the local graph: its processes, the applied objects, where its state is."""
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
        return preflight(self.env, self.config_check, lambda: self.dir)

    # -- teardown --------------------------------------------------------------------------------------------------
    def teardown(self, timeout_s: float = 30.0) -> ApplyResult:
        """Stop exactly this deployment's processes (also after the process that started them died)."""
        if not self.dir.exists():  # never deployed here: nothing to stop, and no state folder to create
            return ApplyResult(target=self.name, rows=[])
        with self.state.lock():
            rows = []
            state = self.state.read(STATE) or {}  # before the supervisor, stopping, empties it
            supervisor.stop(self.dir, timeout_s)
            self.state.stop_recorded(state)
            for path in sorted((self.dir / "applied").glob("*.json")) if (self.dir / "applied").exists() else []:
                obj = json.loads(path.read_text())
                if obj["kind"] == "PersistentVolumeClaim":
                    continue  # like the cluster, the model claim outlives the deployment
                path.unlink()
                rows.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "action": "deleted"})
            for name in (PLAN, SUPERVISOR):  # the supervisor's own file, should it have been killed
                (self.dir / name).unlink(missing_ok=True)
            release_claims(self.dir)
        return ApplyResult(target=self.name, rows=rows)
