"""gtcdemo: deploy NVIDIA Dynamo disaggregated serving as a DGD, wait for it, test it, and show its metrics."""

from typing import Any

from .errors import ConfigError, DeploymentError, GtcdemoError

__all__ = ["ConfigError", "DeploymentError", "GtcdemoError", "Target", "get_target"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``gtcdemo.get_target`` / ``gtcdemo.Target`` on first use: importing the package loads neither target."""
    if name in ("get_target", "Target"):
        from . import targets

        return getattr(targets, name)
    raise AttributeError(f"module 'gtcdemo' has no attribute {name!r}")
