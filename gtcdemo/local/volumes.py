"""The DGD's volumes on this machine: each PVC a folder under ``<cache>/pvc/``, each ConfigMap its keys as files.

A container path under a mount point maps to the same path under the volume's local folder, so the processes read
the engine configs and the model folder where the DGD's args name them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import modeldir
from ..args import arg_value, container_args
from ..modeldir import pvc_root

if TYPE_CHECKING:
    from ..bundle import Bundle


class Mounts:
    """Container paths -> local folders, for one service."""

    def __init__(self, pairs: list[tuple[str, Path]]) -> None:
        # Longest mount point first, so /models/x wins over /models.
        self.pairs = sorted(pairs, key=lambda p: -len(p[0]))

    def local(self, container_path: str) -> str:
        for mount, local in self.pairs:
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                return str(local / container_path[len(mount):].lstrip("/"))
        return container_path


def service_mounts(service: dict, pvc_root: Path, configmap_root: Path) -> Mounts:
    """The mounts of one DGD service: its PVC ``volumeMounts`` and the ConfigMap volumes of its main container."""
    pairs = [(m["mountPoint"], pvc_root / m["name"]) for m in service.get("volumeMounts") or []]
    pod = service.get("extraPodSpec") or {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for m in pod.get("mainContainer", {}).get("volumeMounts") or []:
        volume = volumes.get(m["name"], {})
        if "configMap" in volume:
            pairs.append((m["mountPath"], configmap_root / volume["configMap"]["name"]))
    return Mounts(pairs)


def materialise(b: Bundle, state_dir: Path) -> None:
    """Write the ConfigMap's keys as files in the deployment's ``configmaps/``, and make the model folder."""
    cm = b.configmap
    folder = state_dir / "configmaps" / cm["metadata"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    for key, text in cm["data"].items():
        (folder / key).write_text(text)
    materialise_model(b, state_dir)


def materialise_model(b: Bundle, state_dir: Path) -> None:
    """Make the model folder (tokenizer + config) where a worker's ``--model-path`` points, inside its PVC's folder."""
    for svc in b.services.values():
        model_path = arg_value(container_args(svc), "--model-path")
        if model_path:
            mounts = service_mounts(svc, pvc_root(), state_dir / "configmaps")
            modeldir.ensure_model_dir(Path(mounts.local(model_path)))
