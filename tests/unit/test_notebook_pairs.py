"""Each notebook is a pair: notebooks/NAME.py (jupytext percent format, the source) and NAME.ipynb (what papermill,
nbval and JupyterLab run). No kernel here: the pair, the parameters cell and the save hook are read as files."""

from __future__ import annotations

import ast
import json
import runpy
from pathlib import Path

import jupytext
import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from gtcdemo import params, project
from gtcdemo.errors import ConfigError

NOTEBOOKS = project.NOTEBOOKS
# nbval's conftest.py sits beside the notebooks and is not one.
SOURCES = sorted(p for p in NOTEBOOKS.glob("*.py") if p.name != "conftest.py")


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def parameters_cell(path: Path) -> str:
    return next(c.source for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", []))


def test_every_notebook_has_its_source() -> None:
    assert len(SOURCES) >= 8
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in SOURCES], (
        "each notebooks/NAME.ipynb is written from notebooks/NAME.py: add the missing one with "
        "`jupytext --to py:percent` (or `--to ipynb`), then `make notebooks`")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_ipynb_runs_what_its_source_says(source: Path) -> None:
    committed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert cells(committed) == cells(jupytext.read(source)), (
        f"{source.with_suffix('.ipynb').name} differs from {source.name}: run `make notebooks` (or save the notebook "
        "in `make lab`, which writes both)")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_ipython_runs_the_parameters_cell_as_written(source: Path) -> None:
    """A one-line cell `env: str = "dev"` would run IPython's %env magic instead (automagic, one-line cells only)."""
    cell = parameters_cell(source)
    shell = InteractiveShell.instance(config=Config(HistoryManager={"enabled": False}))  # no ~/.ipython history
    assert shell.transform_cell(cell).rstrip() == cell.rstrip()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_parameters_are_annotated_and_only_they_are(source: Path) -> None:
    """params.check takes the kernel's ``__annotations__`` as the declared parameters and their types."""
    nb = jupytext.read(source)
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%"):
            continue
        tree = ast.parse(cell.source)
        annotated = [n for n in tree.body if isinstance(n, ast.AnnAssign)]
        if "parameters" in cell.metadata.get("tags", []):
            assert annotated and all(isinstance(n, ast.AnnAssign) for n in tree.body), (
                f"{source.name}: write each parameter as `name: type = default  # help`")
        else:
            assert not annotated, f"{source.name}: only the parameters cell annotates names (they become parameters)"


def namespace_after(parameters: str, as_text: bool = False, **injected: object) -> dict:
    """What papermill leaves in the kernel: the parameters cell run, then its injected `# Parameters` cell.
    ``as_text``: the annotations kept as text, as under ``from __future__ import annotations`` (this module's)."""
    namespace: dict = {}
    exec(compile(parameters, "parameters", "exec", dont_inherit=not as_text), namespace)  # noqa: S102
    cell = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    exec(cell, namespace)  # noqa: S102 - what papermill injects
    namespace["In"] = ["", parameters, cell]
    return namespace


@pytest.mark.parametrize("as_text", [False, True], ids=["annotations", "annotations-as-text"])
def test_the_types_checked_are_the_parameters_cells_annotations(as_text: bool) -> None:
    cell = parameters_cell(NOTEBOOKS / "03_wait.py")
    assert params.check(namespace_after(cell, as_text, timeout_s=5))["timeout_s"] == 5.0  # an int is a fine float
    with pytest.raises(ConfigError, match=r"parameter 'timeout_s' must be float, got str '10m'"):
        params.check(namespace_after(cell, as_text, timeout_s="10m"))
    retyped = cell.replace("timeout_s: float", "timeout_s: str")
    assert params.check(namespace_after(retyped, as_text, timeout_s="10m"))["timeout_s"] == "10m"
    with pytest.raises(ConfigError, match="did you mean 'timeout_s'"):
        params.check(namespace_after(cell, timeout=5.0))
    with pytest.raises(ConfigError, match="run the `parameters` cell first"):
        params.check({"env": "dev"})


def test_saving_in_jupyterlab_writes_the_committed_form() -> None:
    """jupyter/jupyter_server_config.py's pre-save hook, on what JupyterLab sends after Run All."""
    hook = runpy.run_path(str(project.ROOT / "jupyter" / "jupyter_server_config.py"),
                          init_globals={"get_config": Config})["committed_form"]
    path = NOTEBOOKS / "04_inference.ipynb"
    committed = json.loads(path.read_text())
    ran = json.loads(path.read_text())
    ran["metadata"]["jupytext"] = {"notebook_metadata_filter": "-all"}
    ran["metadata"]["language_info"]["version"] = "3.11.7"
    ran["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    for n, cell in enumerate(ran["cells"]):
        cell["metadata"]["scrolled"] = True
        if cell["cell_type"] == "code":
            cell["execution_count"] = n
            cell["outputs"] = cell["outputs"] or [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
    hook(model={"type": "notebook", "content": ran}, path=path.name)
    assert ran == committed
