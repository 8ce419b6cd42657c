"""Every notebook under papermill: declared and validated parameters, the error banner on bad ones, the demo live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from gtcdemo import project
from gtcdemo.local import LocalTarget
from gtcdemo.results import RECORD_MIME, recorded_values

NOTEBOOKS = sorted(project.NOTEBOOKS.glob("*.ipynb"))


def my_kernels() -> set[int]:
    """Jupyter kernels started by this test process (other processes on the machine may run their own)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()
            if "ipykernel_launcher" in line and int(line.split()[1]) == os.getpid()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_misspelt_parameter_fails_with_papermills_banner(path: Path, tmp_path: Path) -> None:
    out = tmp_path / path.name
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(path), str(out), parameters={"evn": "dev"}, kernel_name="python3",
                                   progress_bar=False, cwd=str(tmp_path))
    assert "unknown parameter 'evn'" in str(info.value.evalue) and "did you mean 'env'?" in str(info.value.evalue)
    executed = json.loads(out.read_text())
    assert any("papermill-error-cell-tag" in c.get("metadata", {}).get("tags", []) for c in executed["cells"])
    assert my_kernels() == set(), "papermill left a kernel running"


@pytest.mark.parametrize(("parameters", "message"), [
    ({"target": "kubernetes"}, "unknown target 'kubernetes'; available: local, cluster"),
    ({"env": "prod"}, "unknown env 'prod'; available: agg, dev"),
], ids=["target", "env"])
def test_a_bad_value_is_refused_before_anything_runs(parameters: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(project.NOTEBOOKS / "02_deploy.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters=parameters, kernel_name="python3", progress_bar=False)
    assert message in str(info.value.evalue)


def test_wrong_type_and_nonpositive_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(papermill.PapermillExecutionError, match="must be > 0"):
        papermill.execute_notebook(str(project.NOTEBOOKS / "05_metrics.ipynb"), str(tmp_path / "a.ipynb"),
                                   parameters={"concurrency": 0}, kernel_name="python3", progress_bar=False)
    with pytest.raises(papermill.PapermillExecutionError, match="must be float"):
        papermill.execute_notebook(str(project.NOTEBOOKS / "03_wait.ipynb"), str(tmp_path / "b.ipynb"),
                                   parameters={"timeout_s": "soon"}, kernel_name="python3", progress_bar=False)


SECTIONS = ("status", "chat", "dashboard", "kv cache", "scaling", "restore")


def shown(notebook: dict) -> list[tuple[str, str]]:
    """What the audience saw after the banner, in order: (mimetype, content) of every output of the Show's cells."""
    out = []
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    first = next(i for i, c in enumerate(cells) if "show.banner()" in "".join(c["source"]))
    for cell in cells[first + 1:]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                out.append((f"stream:{output['name']}", output["text"] if isinstance(output["text"], str)
                            else "".join(output["text"])))
                continue
            data = output.get("data", {})
            kind = next(k for k in (RECORD_MIME, "image/png", "text/html", "text/markdown", "text/plain") if k in data)
            value = data[kind]
            out.append((kind, json.dumps(value, sort_keys=True) if kind == RECORD_MIME else
                        value if isinstance(value, str) else "".join(value)))
    return out


def test_the_demo_shows_no_test_checks_to_the_audience() -> None:
    source = (project.NOTEBOOKS / "demo.ipynb").read_text()
    assert "NBVAL_CHECK_OUTPUT" not in source and "sections ok" not in source


def test_demo_replays_the_committed_recording_without_any_target(tmp_path: Path) -> None:
    out = tmp_path / "demo.ipynb"
    env = {**os.environ, "GTCDEMO_STATE": str(tmp_path / "no-state"), "KUBECONFIG": str(tmp_path / "none")}
    subprocess.run([sys.executable, "-m", "papermill", str(project.NOTEBOOKS / "demo.ipynb"), str(out),
                    "-k", "python3", "--cwd", str(tmp_path)], check=True, env=env, capture_output=True, timeout=300)
    executed = json.loads(out.read_text())
    assert "REPLAY: recorded" in out.read_text()
    values = recorded_values(executed)
    assert {name: values[name]["status"] for name in SECTIONS} == dict.fromkeys(SECTIONS, "ok")
    assert values["summary"]["sections"] == dict.fromkeys(SECTIONS, "ok")
    assert values["kv cache"]["unique_cached_tokens_per_request"] <= 32 < values["kv cache"][
        "shared_cached_tokens_per_request"], "the committed recording must show the KV-cache effect"
    assert values["scaling"]["step"] == [1, 2] and values["chat"]["simulated_engine_note"]
    assert not (tmp_path / "no-state").exists(), "replay must not touch a deployment"


@pytest.mark.local
def test_demo_live_on_the_local_graph_records_what_it_shows_and_replays_it(own_graph: LocalTarget,
                                                                           tmp_path: Path) -> None:
    """Takes a graph of its own: the demo's scaling section changes it (and scales back)."""
    recording = tmp_path / "recording"
    out = tmp_path / "demo.ipynb"
    papermill.execute_notebook(
        str(project.NOTEBOOKS / "demo.ipynb"), str(out), kernel_name="python3", progress_bar=False,
        parameters={"mode": "record", "recording": str(recording), "duration_s": 4.0, "concurrency": 4,
                    "kv_requests": 3, "scale_to": 2, "scale_duration_s": 3.0})
    live = json.loads(out.read_text())
    values = recorded_values(live)
    assert "LIVE: dev on local" in out.read_text()
    assert values["summary"]["sections"] == dict.fromkeys(SECTIONS, "ok")
    assert values["scaling"]["step"] == [1, 2] and values["restore"]["status"] == "ok"
    for name in ("meta.json", "status.json", "chat.json", "dashboard/records.csv", "dashboard-window.csv",
                 "kv_cache.csv", "kv_cache.json", "scale.csv", "scale.json", "restore.json"):
        assert (recording / name).is_file(), name
    assert len([p for p in own_graph.processes() if p["role"] == "decode"]) == 1  # restored after the scaling section
    replay = tmp_path / "replay.ipynb"
    papermill.execute_notebook(str(project.NOTEBOOKS / "demo.ipynb"), str(replay), kernel_name="python3",
                               progress_bar=False, parameters={"mode": "replay", "recording": str(recording)})
    replayed = json.loads(replay.read_text())
    assert "REPLAY: recorded" in replay.read_text()
    # Replay equals live: every table, figure (PNG bytes), streamed text, note and recorded value, in order.
    seen, again = shown(live), shown(replayed)
    assert [kind for kind, _ in seen] == [kind for kind, _ in again]
    for (kind, a), (_, b) in zip(seen, again, strict=True):
        assert a == b, f"the replay shows a different {kind}"
    assert sum(kind == "image/png" for kind, _ in seen) >= 2 and sum(kind == "text/html" for kind, _ in seen) >= 6
