"""Where the project's files live, and which environments (config sets) exist."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

ROOT = Path(os.environ.get("GTCDEMO_ROOT", Path(__file__).resolve().parents[1]))
ENGINE_CONFIGS = ROOT / "engine-configs"
MANIFESTS = ROOT / "manifests"
NOTEBOOKS = ROOT / "notebooks"
TARGETS = ("local", "cluster")


def available_envs() -> list[str]:
    """Envs that have both an engine-configs/<env>/ and a manifests/<env>/ folder."""
    if not ENGINE_CONFIGS.is_dir() or not MANIFESTS.is_dir():
        return []
    configs = {p.name for p in ENGINE_CONFIGS.iterdir() if p.is_dir()}
    return sorted(configs & {p.name for p in MANIFESTS.iterdir() if p.is_dir()})


def check_env(env: str) -> str:
    """Return ``env`` if it names a config set, else raise an error listing the ones that exist."""
    envs = available_envs()
    if env not in envs:
        raise ConfigError(
            f"unknown env {env!r}; available: {', '.join(envs) or '(none)'}",
            where="env",
            fix=f"pass one of {envs} (or add engine-configs/{env}/ and manifests/{env}/)",
        )
    return env


def check_target(target: str) -> str:
    """Return ``target`` if known, else raise an error listing the known targets."""
    if target not in TARGETS:
        raise ConfigError(
            f"unknown target {target!r}; available: {', '.join(TARGETS)}",
            where="target",
            fix="use target='local' (this machine) or target='cluster' (kube context of the env)",
        )
    return target


def state_root() -> Path:
    """Root of the local target's per-deployment state directories."""
    default = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "gtcdemo"
    return Path(os.environ.get("GTCDEMO_STATE", default))
