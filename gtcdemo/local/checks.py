"""What this machine must have before the local graph starts: the programs it runs, room for its processes, free
ports, a model folder and a state folder; refused one by one (``check_*``) or reported at once (``preflight``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DeploymentError, MissingDependencyError
from ..results import CheckReport
from .ports import PORT_RANGE, PREFERRED_PORTS, pick_port, port_free
from .state import StateFolder
from .volumes import materialise_model, pvc_root

if TYPE_CHECKING:
    from ..bundle import Bundle

# Each process of the local graph (a Dynamo frontend or mocker: ~100-150 MB, a Python event loop that wakes every
# scheduling step; Prometheus) needs a share of a core. Four per core keeps the 2-core minimum machine at 8: the
# dev graph (4) plus a few scaled workers, still answering in time for `wait` and the load generator.
MAX_PROCESSES_PER_CORE = 4
INSTALL_DYNAMO = ('.venv/bin/pip install --no-deps "ai-dynamo==1.6.1" "ai-dynamo-runtime==1.6.1" '
                  '&& .venv/bin/pip install -e ".[local]"   (or simply: make setup)')
INSTALL_PROMETHEUS = "apt-get update && apt-get install -y prometheus   (or simply: make setup)"


def check_capacity(b: Bundle, where: str | None = None) -> None:
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


def check_dependencies() -> dict[str, str]:
    """Where the Dynamo package and Prometheus are; a specific install command when one is missing."""
    if importlib.util.find_spec("dynamo") is None or importlib.util.find_spec("dynamo.mocker") is None:
        raise MissingDependencyError("the ai-dynamo package (Dynamo frontend and mocker) is not installed in "
                                     f"{sys.prefix}", fix=f"run: {INSTALL_DYNAMO}")
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise MissingDependencyError("Prometheus is not installed (no `prometheus` on PATH)",
                                     fix=f"run: {INSTALL_PROMETHEUS}")
    return {"dynamo": importlib.util.find_spec("dynamo").origin or "", "prometheus": prometheus}


def preflight(env: str, config_check: Callable[[CheckReport], Bundle | None],
              state_dir: Callable[[], Path]) -> CheckReport:
    """Everything the local graph of ``env`` needs, each a check: the bundle valid (``config_check``: a broken
    config is the one failed check), Dynamo and Prometheus installed, ports, model folder, state folder."""
    report = CheckReport(f"preflight: {env} on this machine (local target)")
    b = config_check(report)
    if b is None:
        return report
    try:
        found = check_dependencies()
        report.add("Dynamo (ai-dynamo)", True, f"{importlib.metadata.version('ai-dynamo')} in {sys.prefix}")
        report.add("Prometheus", True, found["prometheus"])
    except MissingDependencyError as exc:
        report.add("Dynamo and Prometheus", False, exc.problem, exc.fix or "")
    taken: set[int] = set()
    for role, port in PREFERRED_PORTS.items():
        if port_free(port):
            report.add(f"port {port} ({role})", True, "free on 127.0.0.1")
        else:
            report.add(f"port {port} ({role})", None, f"taken: the {role} will use {pick_port(port, taken)}")
    folder = state_dir()
    try:
        materialise_model(b, folder)
        report.add("model folder", True, f"{pvc_root()} (tokenizer + Llama-3.1-8B config, made here)")
    except OSError as exc:
        report.add("model folder", False, str(exc), f"make {pvc_root()} writable or set GTCDEMO_CACHE")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
        report.add("state folder", True, str(folder))
    except OSError as exc:
        report.add("state folder", False, str(exc), "set GTCDEMO_STATE to a writable folder")
    running = StateFolder(folder).supervisor_pid()
    report.add("deployment", True, f"running (supervisor pid {running})" if running else "not running yet")
    return report
