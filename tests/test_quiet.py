"""`make demo` prints what the user needs: no library warning once per notebook (issue 10 item 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat


def test_running_a_notebook_prints_no_kernel_warning(tmp_path: Path) -> None:
    """ipykernel warned "Kernel is running over TCP without encryption" on stderr for every notebook `make demo` ran:
    the runner's kernel manager now provisions CurveZMQ keys (jupyter/jupyter_config.py), so nothing is printed."""
    notebook = tmp_path / "tiny.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)
    script = ("import sys; from pathlib import Path; from gtcdemo import workbook; "
              "workbook.run_notebook(Path(sys.argv[1]), Path(sys.argv[2]), {})")
    run = subprocess.run([sys.executable, "-c", script, str(notebook), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)  # the kernel inherits this stderr
    assert run.returncode == 0, run.stderr
    assert "hello" in (tmp_path / "out" / "tiny.ipynb").read_text()
    assert run.stderr == "" and run.stdout == ""
