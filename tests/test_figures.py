"""Every figure appears in the cell that made it, as image/png, in a real kernel (nbclient, as papermill runs it).

A cell is executed a second time in the same kernel too: a presenter re-runs cells, and figures used to go missing
after the first one a kernel drew (the inline backend's ``interactive`` flag was reset by ``plots.projector``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from gtcdemo import project
from gtcdemo.local import LocalTarget

from .support import free_port

SYNTHETIC = """
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from gtcdemo import plots

times = pd.date_range("2026-01-01 12:00:00", periods=30, freq="1s", tz="UTC")
window = pd.DataFrame({c: np.linspace(0.05, 0.2, 30) for c in
                       ("ttft_p50_s", "ttft_p90_s", "ttft_p95_s", "ttft_p99_s")}, index=times)
window["output_tokens_per_s"], window["requests_per_s"], window["inflight"], window["queued"] = 2000.0, 30.0, 16, 1
start, end = times[5].timestamp(), times[-3].timestamp()
kv = pd.DataFrame({"cached_tokens_per_request": [1120.0, 0.0], "ttft_p50_ms": [81.0, 103.0]},
                  index=["shared prefix", "unique prompts"])
comparison = pd.DataFrame({"client_ms": [98.0, 180.0], "server_ms": [66.0, 150.0]}, index=["p50", "p90"])
sweep = pd.DataFrame({"level": [1.0, 4.0], "mode": ["closed"] * 2, "ttft_ms_p95": [60.0, 90.0],
                      "output_token_throughput": [300.0, 1100.0]})
"""

FIGURE_FUNCTIONS = ("ttft_over_time", "throughput_over_time", "inflight_over_time", "client_vs_server_ttft",
                    "sweep_curve", "kv_cache_effect", "dashboard")
DEMO_FIGURE_SECTIONS = ("dashboard", "kv_cache")  # Show methods that draw one figure each (the dashboard in place)
_CALL = re.compile(r"\b(?:plots\.(?:" + "|".join(FIGURE_FUNCTIONS) + r")|show\.(?:"
                   + "|".join(DEMO_FIGURE_SECTIONS) + r"))\(")


def figures_made_by(source: str) -> int:
    """How many figures a cell's code draws: one per call of a figure function of gtcdemo.plots or demo section."""
    return len(_CALL.findall(source))


def pngs(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def execute_twice(nb: nbformat.NotebookNode, cwd: Path) -> dict[int, tuple[int, int]]:
    """Run every cell once, then every figure cell again in the same kernel: {cell index: (pngs 1st, pngs 2nd)}."""
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}})
    seen: dict[int, tuple[int, int]] = {}
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and figures_made_by(cell.source):
                first = pngs(cell)
                client.execute_cell(cell, index)  # in place: display-handle updates find their cell by index
                seen[index] = (first, pngs(cell))
    return seen


def assert_every_figure_shown(nb: nbformat.NotebookNode, seen: dict[int, tuple[int, int]]) -> None:
    assert seen, "no figure cell found: the notebook no longer calls gtcdemo.plots"
    wrong = [f"cell {index} ({nb.cells[index].source.splitlines()[0]!r}) draws {expected} figure(s) but showed "
             f"{first}, then {second} when re-run"
             for index, (first, second) in seen.items()
             if (first, second) != (expected := figures_made_by(nb.cells[index].source), expected)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.local
@pytest.mark.parametrize(("name", "parameters"), [
    ("04_inference.ipynb", {"kv_requests": 3, "kv_prompt_tokens": 600, "max_tokens": 8}),
    ("05_metrics.ipynb", {"num_requests": 16, "concurrency": 4, "sweep_levels": [1, 4], "sweep_requests": 8}),
])
def test_step_notebook_figures_show_in_their_cells_every_time(graph: LocalTarget, name: str, parameters: dict,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTCDEMO_OUT", str(tmp_path))  # the kernel inherits it: PNGs go here, not into out/
    nb = parameterize_notebook(load_notebook_node(str(project.NOTEBOOKS / name)), parameters, kernel_name="python3")
    seen = execute_twice(nb, tmp_path)
    assert_every_figure_shown(nb, seen)


def test_figures_show_in_their_cells_however_many_a_kernel_drew_before(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTCDEMO_OUT", str(tmp_path))
    cells = [
        SYNTHETIC,
        # The kernel's first figure made inside the projector style loads the inline backend there.
        "with plots.projector():\n    fig, ax = plt.subplots()\n    ax.plot([1, 2])",
        "fig, ax = plt.subplots()\nax.plot([2, 1])",  # a plain pyplot figure afterwards still shows
        'plots.show(plots.ttft_over_time(window, start, end), "ttft")\n'
        'plots.show(plots.throughput_over_time(window, start, end), "throughput")\n'
        'plots.show(plots.inflight_over_time(window, start, end), "inflight")',
        'plots.show(plots.kv_cache_effect(kv), "kv")',
        'plots.show(plots.client_vs_server_ttft(comparison))\nplots.show(plots.sweep_curve(sweep))',
        'plots.show(plots.dashboard(window, "title", start))',
        "print(matplotlib.is_interactive(), plt.get_fignums())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    seen = execute_twice(nb, tmp_path)
    assert_every_figure_shown(nb, seen)
    assert (pngs(nb.cells[1]), pngs(nb.cells[2])) == (1, 1), "pyplot figures went missing after the projector's"
    assert nb.cells[-1].outputs[0]["text"] == "True []\n", "inline backend left non-interactive, or figures open"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["inflight.png", "kv.png", "throughput.png", "ttft.png"]


def test_demo_replay_shows_each_figure_in_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTCDEMO_OUT", str(tmp_path))
    monkeypatch.setenv("GTCDEMO_STATE", str(tmp_path / "no-state"))
    nb = load_notebook_node(str(project.NOTEBOOKS / "demo.ipynb"))  # replays the committed recording by default
    seen = execute_twice(nb, tmp_path)
    assert len(seen) == len(DEMO_FIGURE_SECTIONS)
    assert_every_figure_shown(nb, seen)


def test_load_progress_in_a_notebook_is_one_line_redrawn_not_stderr(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Jupyter shows stderr in a pink box that reads as an error: the progress bar must not write there."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the notebooks' conftest may have set it for nbval
    port = free_port()  # nothing listens there: every request fails fast, and is counted
    source = ("from gtcdemo import load, modeldir\n"
              "spec = load.LoadSpec(modeldir.SERVED_MODEL_NAME, concurrency=1, num_requests=3)\n"
              f"result = load.run('http://127.0.0.1:{port}', spec)\n"
              "print(result.summary()['error_count'])")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o for o in outputs if o.get("name") == "stderr"] == []
    lines = [o["data"]["text/plain"] for o in outputs if o.output_type == "display_data"]
    assert len(lines) == 1 and "3/3" in lines[0], lines  # one line, updated in place to the end
    assert outputs[-1]["text"] == "3\n"
