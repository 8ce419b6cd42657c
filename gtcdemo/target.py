"""The contract both targets keep: what notebooks, the CLI and the demo may ask of "where the graph runs".

Nothing above this contract branches on which target it holds; each target answers every question here in its own
terms (processes on this machine, pods on the cluster). This module imports neither target: the factory that picks
one is ``gtcdemo.targets.get_target``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from . import project
from .bundle import Bundle
from .errors import ConfigError, DeploymentError, ValidationErrors
from .results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable


class Target(ABC):
    """One env's graph on one target.

    The env's bundle (engine configs + manifests) is read and validated on first use, not on construction, so that
    ``preflight`` can report a broken config as one of its checks instead of failing before it runs.
    """

    kind: ClassVar[str]
    # Whether `gtcdemo up` stops what it started when it fails or is interrupted: True where the graph's processes
    # belong to the command (this machine); on a cluster the DGD stays for `gtcdemo status` / `logs` to diagnose.
    stops_failed_up: ClassVar[bool]

    def __init__(self, env: str) -> None:
        self.env = project.check_env(env)
        self._bundle: Bundle | None = None

    @property
    def bundle(self) -> Bundle:
        """The env's validated bundle, loaded once (raises ConfigError / ValidationErrors when it is invalid)."""
        if self._bundle is None:
            from . import bundle as bundle_mod

            self._bundle = bundle_mod.load(self.env)
        return self._bundle

    def config_check(self, report: CheckReport) -> Bundle | None:
        """Preflight's first row, the same on both targets: the bundle valid, or each problem with its file and fix.

        Returns the bundle, or None when it is invalid (the other checks then have nothing to check)."""
        try:
            b = self.bundle
        except ConfigError as exc:  # each problem with its file, not the count ValidationErrors starts with
            errors = exc.errors if isinstance(exc, ValidationErrors) else [exc]
            report.add("engine configs and manifests", False, "; ".join(str(e).splitlines()[0] for e in errors),
                       "; ".join(dict.fromkeys(e.fix for e in errors if e.fix)))
            return None
        report.add("engine configs and manifests", True, f"{b.name}: {b.expected_pods} pods, "
                   f"{', '.join(b.engine_configs)} configs valid")
        return b

    @property
    @abstractmethod
    def name(self) -> str:
        """How messages name this target (the kube context and namespace, or the local state folder)."""

    @abstractmethod
    def apply(self, bundle: Bundle | None = None) -> ApplyResult:
        """Apply the bundle; the result's ``changed`` says whether anything was created, changed or started."""

    @abstractmethod
    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None) -> ReadyResult:
        """Until every expected pod (process) is ready, or a specific error as soon as one cannot become ready."""

    @abstractmethod
    def is_running(self) -> bool:
        """Whether a graph of this env is deployed here now (ready or not)."""

    @abstractmethod
    def not_running(self, doing: str = "") -> DeploymentError:
        """The error of a command that needs the running graph: what is (not) there, and how to start it."""

    @abstractmethod
    def replicas(self, service: str) -> int:
        """How many replicas ``service`` runs now, asked of the target (a scaling adapter may differ from the file)."""

    @abstractmethod
    def scale(self, service: str, replicas: int) -> ApplyResult:
        """Run ``replicas`` of ``service``; ``changed`` says whether anything changed."""

    @abstractmethod
    def status(self) -> StatusTable: ...

    @abstractmethod
    def demo_status(self) -> Overview: ...

    @abstractmethod
    def preflight(self) -> CheckReport: ...

    @abstractmethod
    def logs(self, service: str | None = None, tail: int = 20) -> dict[str, str]: ...

    @abstractmethod
    def teardown(self) -> ApplyResult:
        """Delete the graph; ``changed`` says whether anything was stopped or deleted."""

    @abstractmethod
    def frontend(self) -> contextlib.AbstractContextManager[str]:
        """The frontend's base URL for the duration of the block (a port-forward on the cluster)."""

    @abstractmethod
    def prometheus(self) -> contextlib.AbstractContextManager[str]:
        """Prometheus' base URL for the duration of the block."""
