"""One interface, two targets: notebooks and the CLI never branch on where the graph runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from . import project
from .bundle import Bundle
from .results import ApplyResult, CheckReport, Overview, ReadyResult, StatusTable


class BundleHolder:
    """The env's bundle, loaded (and validated) once on first use; shared by both targets."""

    env: str
    _bundle: Bundle | None = None

    @property
    def bundle(self) -> Bundle:
        if self._bundle is None:
            from . import bundle as bundle_mod

            self._bundle = bundle_mod.load(self.env)
        return self._bundle


@runtime_checkable
class Target(Protocol):
    """What every target answers: apply / wait / status / logs / scale / teardown, and access to its endpoints."""

    kind: str
    env: str

    @property
    def name(self) -> str: ...
    @property
    def bundle(self) -> Bundle: ...
    def apply(self, bundle: Bundle | None = None) -> ApplyResult: ...
    def wait(self, timeout_s: float = 600.0, progress: Callable[[str], None] | None = None) -> ReadyResult: ...
    def status(self) -> StatusTable: ...
    def demo_status(self) -> Overview: ...
    def preflight(self) -> CheckReport: ...
    def logs(self, service: str | None = None, tail: int = 20) -> dict[str, str]: ...
    def scale(self, service: str, replicas: int) -> ApplyResult: ...
    def teardown(self) -> ApplyResult: ...
    def frontend(self) -> contextlib.AbstractContextManager[str]: ...
    def prometheus(self) -> contextlib.AbstractContextManager[str]: ...


def get_target(target: str = "local", env: str = "dev", *, context: str | None = None) -> Target:
    """The target named ``target`` for config set ``env`` (validated, with the choices listed on error).

    ``context`` deliberately overrides the env's kube context (cluster target only).
    """
    project.check_target(target)
    project.check_env(env)
    if target == "local":
        from .local import LocalTarget

        return LocalTarget(env)
    from .cluster import ClusterTarget

    return ClusterTarget(env, context=context)
