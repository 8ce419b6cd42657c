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


def _one_of(value: str, known: list[str] | tuple[str, ...], what: str, fix: str) -> str:
    """``value`` if it is one of ``known``, else an error listing them."""
    if value not in known:
        raise ConfigError(f"unknown {what} {value!r}; available: {', '.join(known) or '(none)'}", where=what, fix=fix)
    return value


def check_env(env: str) -> str:
    """Return ``env`` if it names a config set, else raise an error listing the ones that exist."""
    envs = available_envs()
    return _one_of(env, envs, "env", f"pass one of {envs} (or add engine-configs/{env}/ and manifests/{env}/)")


def check_target(target: str) -> str:
    """Return ``target`` if known, else raise an error listing the known targets."""
    return _one_of(target, TARGETS, "target",
                   "use target='local' (this machine) or target='cluster' (kube context of the env)")


def state_root() -> Path:
    """Root of the local target's per-deployment state directories."""
    default = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "gtcdemo"
    return Path(os.environ.get("GTCDEMO_STATE", default))
