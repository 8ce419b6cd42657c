"""Pick a target by name: the one place that knows both implementations."""

from __future__ import annotations

from . import project
from .cluster import ClusterTarget
from .local import LocalTarget
from .target import Target


def get_target(target: str = "local", env: str = "dev", *, context: str | None = None) -> Target:
    """The target named ``target`` for config set ``env`` (validated, with the choices listed on error).

    ``context`` deliberately overrides the env's kube context (cluster target only).
    """
    project.check_target(target)
    project.check_env(env)
    if target == "local":
        return LocalTarget(env)
    return ClusterTarget(env, context=context)


__all__ = ["ClusterTarget", "LocalTarget", "Target", "get_target"]
