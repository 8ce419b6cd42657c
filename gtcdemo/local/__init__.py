"""The local target: the env's DGD as processes on this machine (the real Dynamo frontend, mocker workers standing
in for TRT-LLM, a real Prometheus), owned by one supervisor process per deployment.

One concern a module, imports pointing down this list only:

- ``target``: ``LocalTarget``, the Target contract (gtcdemo/target.py) kept with the modules below;
- ``checks``: what the machine must have first (Dynamo, Prometheus, cores, ports...), and ``preflight``;
- ``plan``: the DGD as process command lines, mocker flags, KV-cache size and Prometheus' scrape config;
- ``volumes``: the DGD's PVCs and ConfigMaps as local folders and files;
- ``ports``: ports picked and claimed machine-wide, and who listens on them;
- ``supervisor``: the process that runs, restarts and stops the graph (``python -m gtcdemo.local.supervisor``);
- ``state``: the deployment's state folder, and whether the processes it records still run.

Names are loaded on first use, so that the supervisor (which imports this package first) stays small: it needs
only ``state``, not pandas and httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checks import MAX_PROCESSES_PER_CORE, check_capacity, check_dependencies
    from .ports import PORT_CLAIMS, pick_port, port_free, port_state, release_claims
    from .state import alive, proc_starttime, write_json
    from .target import LocalTarget
    from .volumes import pvc_root

__all__ = [
    "MAX_PROCESSES_PER_CORE", "PORT_CLAIMS", "LocalTarget", "alive", "check_capacity", "check_dependencies",
    "pick_port", "port_free", "port_state", "proc_starttime", "pvc_root", "release_claims", "write_json",
]
# Where each name lives (the imports above, for readers and type checkers, run only then).
_EXPORTS = {
    "LocalTarget": "target",
    "MAX_PROCESSES_PER_CORE": "checks", "check_capacity": "checks", "check_dependencies": "checks",
    "PORT_CLAIMS": "ports", "pick_port": "ports", "port_free": "ports", "port_state": "ports",
    "release_claims": "ports",
    "alive": "state", "proc_starttime": "state", "write_json": "state",
    "pvc_root": "volumes",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
