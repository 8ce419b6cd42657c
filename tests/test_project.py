"""The project's own consistency: one source of dependencies, reviewable notebooks, parameters declared."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import papermill
import pytest
import yaml

from gtcdemo import project, workbook

pytestmark = pytest.mark.unit
ROOT = project.ROOT
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_package_from_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert pip_section == ['-e ".[all]"'], "environment.yml must only install the package: deps live in pyproject"
    assert "all" in extras
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_design_card_packages_are_dependencies() -> None:
    declared = " ".join(PYPROJECT["project"]["dependencies"]
                        + [d for ds in PYPROJECT["project"]["optional-dependencies"].values() for d in ds])
    for package in ("jupyterlab", "papermill", "kubernetes", "pyyaml", "httpx", "pandas", "matplotlib",
                    "prometheus-api-client", "nbval"):
        assert package in declared, f"{package} missing from pyproject.toml"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_clean_and_declare_parameters(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "# NBVAL_CHECK_OUTPUT" not in "".join(cell["source"]):
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit notebooks without outputs"
    declared = papermill.inspect_notebook(str(path))
    assert "env" in declared and declared["env"]["help"], "each notebook takes a documented `env`"
    parameters_cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = [line for line in "".join(parameters_cell["source"]).splitlines() if " = " in line]
    assert len(declared) == len(assigned), f"papermill could not parse every parameter of {path.name}"
    assert all(p["help"] for p in declared.values()), "document every parameter with a trailing comment"
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" not in
                      c.get("metadata", {}).get("tags", []))
    assert "params.check(globals()" in "".join(first_code["source"]), "validate parameters in the first code cell"


WALKTHROUGH = ["00_preflight.ipynb", "01_configs.ipynb", "02_deploy.ipynb", "03_wait.ipynb", "04_inference.ipynb",
               "05_metrics.ipynb", "99_teardown.ipynb"]


def test_step_notebooks_are_numbered_in_order() -> None:
    """The walkthrough's order: each step needs only the ones before it (`make demo` and nbval run them in this
    order); a step added in between keeps preflight first and teardown last."""
    names = [p.name for p in workbook.step_notebooks()]
    assert [name for name in names if name in WALKTHROUGH] == WALKTHROUGH, names
    assert names[0] == WALKTHROUGH[0] and names[-1] == WALKTHROUGH[-1], names


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


# What running the project writes: checkpoints, outputs, the venv, caches, JupyterLab's user settings.
GENERATED = ("notebooks/.ipynb_checkpoints/demo-checkpoint.ipynb", "out/figures/ttft.png", "out/browser/demo.png",
             ".venv/bin/python", "gtcdemo/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/cache/nodeids",
             ".ruff_cache/CACHEDIR.TAG", "jupyter/lab/workspaces/default.jupyterlab-workspace",
             "gtcdemo.egg-info/PKG-INFO")


def test_what_running_the_project_writes_is_ignored_and_untracked() -> None:
    checked = git("check-ignore", *GENERATED)  # exit 0: at least one path ignored; 1: none
    assert checked.returncode in (0, 1), checked.stderr
    assert sorted(GENERATED) == sorted(checked.stdout.splitlines()), \
        f"not ignored by .gitignore: {sorted(set(GENERATED) - set(checked.stdout.splitlines()))}"
    tracked = git("ls-files", "-z").stdout.split("\0")
    generated = [p for p in tracked if any(part in (".ipynb_checkpoints", "__pycache__", ".venv", "out")
                                           for part in Path(p).parts[:-1]) or p.endswith(".pyc")]
    assert generated == [], f"tracked although generated: {generated}"
