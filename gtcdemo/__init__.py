"""gtcdemo: deploy NVIDIA Dynamo disaggregated serving as a DGD, wait for it, test it, and show its metrics."""

from .errors import ConfigError, DeploymentError, GtcdemoError
from .target import Target, get_target

__all__ = ["ConfigError", "DeploymentError", "GtcdemoError", "Target", "get_target"]
__version__ = "0.1.0"
