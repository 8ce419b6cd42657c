"""Install what pip cannot resolve: ai-dynamo without its unbuildable requirement, Debian's Prometheus, and the
Dynamo release each env's DGD names (its image tags) in its own venv when it is not the local default.

Versions and package names come from ``[tool.gtcdemo]`` in pyproject.toml, the single source of dependencies, and
the releases from manifests/<env>/ (so a new image tag there installs, and the tests check, that release).
``python -m gtcdemo.install`` does all three (what ``make setup`` runs); ``--releases`` only the last one.
Each step does nothing when already done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from . import release


def settings() -> dict:
    """pyproject.toml's ``[tool.gtcdemo]``."""
    return release.settings()["tool"]["gtcdemo"]


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


def apt_installed(package: str) -> bool:
    """Whether dpkg has ``package`` installed (by package name: chromium-driver's program is chromedriver)."""
    if shutil.which("dpkg-query") is None:
        return shutil.which(package) is not None
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True).stdout
    return status.split()[-1:] == ["installed"]  # "install ok installed"; not "... config-files" / "not-installed"


def install_apt() -> None:
    packages = [p for p in settings()["apt"] if not apt_installed(p)]
    if not packages:
        return
    command = ["apt-get", "install", "-y", "-q", *packages]
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {packages}; run: sudo apt-get update && sudo {' '.join(command)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def install_releases() -> list[str]:
    """The DGDs' releases other than the local default, each in its own venv; returns every release installed."""
    wanted = sorted(set(release.manifest_releases().values()) - {release.default_version()})
    for version in wanted:
        release.ensure_venv(version)
    return [release.default_version(), *wanted]


def main(argv: list[str]) -> None:
    if argv not in ([], ["--releases"]):
        sys.exit("usage: python -m gtcdemo.install [--releases]")
    if not argv:
        install_dynamo()
        install_apt()
    installed = install_releases()
    debian = "" if argv else f" and Debian's {', '.join(settings()['apt'])}"
    print(f"gtcdemo: ai-dynamo {', '.join(installed)}{debian} installed")


if __name__ == "__main__":
    main(sys.argv[1:])
