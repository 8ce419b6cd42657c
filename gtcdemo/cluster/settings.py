"""``manifests/<env>/cluster.toml``: how to reach an env's cluster and what its platform looks like."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields

from .. import engine_config, project
from ..errors import ConfigError
from ..files import read_text


@dataclass(frozen=True)
class ClusterSettings:
    """One env's cluster: its kube context, and where the platform keeps what the demo needs."""

    kube_context: str
    operator_namespace: str = "dynamo-system"
    prometheus: str = "monitoring/kube-prometheus-stack-prometheus:9090"
    gpu_node_label: str = "doks.digitalocean.com/gpu-brand=nvidia"
    gpu_taint: str = "nvidia.com/gpu:NoSchedule"
    runtime_class: str = "nvidia"
    pending_bound_s: float = 300.0

    @property
    def prometheus_service(self) -> tuple[str, str, int]:
        """``prometheus`` as (namespace, Service name, port)."""
        namespace, rest = self.prometheus.split("/", 1)
        name, port = rest.rsplit(":", 1)
        return namespace, name, int(port)


def load_settings(env: str) -> ClusterSettings:
    """The env's cluster settings; a missing file, a key written twice or an unknown key is a ConfigError."""
    path = project.MANIFESTS / project.check_env(env) / "cluster.toml"
    if not path.is_file():
        raise ConfigError(f"no cluster settings for env {env!r}", where=str(path),
                          fix="create it with kube_context = \"<context>\" (see manifests/dev/cluster.toml)")
    text = read_text(path, where=str(path))
    for key, first, second in engine_config.duplicate_toml_keys(text)[:1]:  # tomllib names only the second line
        raise ConfigError(f"key {key!r} is written twice (lines {first} and {second})", where=str(path),
                          fix=f"keep one of the two lines (line {first} or {second})")
    try:
        return ClusterSettings(**tomllib.loads(text))
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ConfigError(f"invalid cluster settings: {exc}", where=str(path),
                          fix="keys: " + ", ".join(f.name for f in fields(ClusterSettings))) from None
