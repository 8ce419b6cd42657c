"""Install what pip cannot resolve: ai-dynamo without its unbuildable requirement, and Debian's Prometheus.

Versions and package names come from ``[tool.gtcdemo]`` in pyproject.toml, the single source of dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

from .project import ROOT


def settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["gtcdemo"]


def install_dynamo() -> None:
    wanted = settings()["no-deps"]
    import importlib.metadata as md

    missing = []
    for req in wanted:
        name, version = req.split("==")
        try:
            if md.version(name) == version:
                continue
        except md.PackageNotFoundError:
            pass
        missing.append(req)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *missing], check=True)


def install_apt() -> None:
    packages = [p for p in settings()["apt"] if shutil.which(p) is None]
    if not packages:
        return
    command = ["apt-get", "install", "-y", "-q", *packages]
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {packages}; run: sudo apt-get update && sudo {' '.join(command)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    install_dynamo()
    install_apt()
    print("gtcdemo: ai-dynamo and Prometheus are installed")
