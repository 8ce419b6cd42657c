"""The demo's sections as a presenter uses them: rehearse, then present on the same graph.

Every demonstration must show its effect on every run (not only on a fresh graph), and a section that finds no
graph must say so and change nothing. The scaling tests change their graph, so this module runs on a graph of its
own (``own_graph``; the KV test reads from the same one: one start-up either way, and a ``Show`` finds the graph
through GTCDEMO_STATE, which only one graph fixture of a module can set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gtcdemo import project
from gtcdemo.demo import Show
from gtcdemo.errors import DeploymentError
from gtcdemo.local import LocalTarget
from gtcdemo.local import plan as localplan
from gtcdemo.results import recorded_values

from .support import mentioning

SERVICE = "TrtllmDecodeWorker"


def block_size(target: LocalTarget) -> int:
    """The KV block size the workers run with (the engine config's, else TRT-LLM's default)."""
    kv = target.bundle.engine_configs["prefill"].get("kv_cache_config") or {}
    return int(kv.get("tokens_per_block", localplan.TRTLLM_TOKENS_PER_BLOCK))


def decode_workers(target: LocalTarget) -> int:
    return sum(1 for p in target.processes() if p["service"] == SERVICE)


@pytest.mark.local
def test_the_kv_section_shows_its_effect_three_runs_in_a_row(own_graph: LocalTarget, tmp_path: Path) -> None:
    show = Show("dev", "local", "live", tmp_path / "rec", log_file=tmp_path / "demo.log")
    block = block_size(own_graph)
    for run in range(3):
        demo = show.kv_cache(requests=3, prompt_tokens=2000)
        shared, unique = demo.table.loc["shared prefix"], demo.table.loc["unique prompts"]
        assert unique["cached_tokens_per_request"] <= block, f"run {run}: unique prompts found in the cache"
        assert unique["server_cached_tokens_per_request"] <= block, f"run {run}"
        assert shared["cached_tokens_per_request"] >= 0.9 * demo.shared_prefix_tokens, f"run {run}: {demo.table}"
        assert demo.priming["cached_tokens"] <= block, f"run {run}: the priming request found its prefix cached"


@pytest.mark.local
def test_scaling_shows_the_same_step_twice_and_restores(own_graph: LocalTarget, tmp_path: Path) -> None:
    show = Show("dev", "local", "live", tmp_path / "rec", log_file=tmp_path / "demo.log")
    for _ in range(2):
        table = show.scale_decode(replicas=2, concurrency=8, duration_s=2.0)
        assert list(table.index) == [1, 2] and (table["output tokens/s"] > 0).all()
        show.restore()
        assert decode_workers(own_graph) == 1
    show.restore()  # nothing left to undo: changes nothing
    assert decode_workers(own_graph) == 1


@pytest.mark.local
def test_scaling_starts_from_the_replicas_the_target_runs(own_graph: LocalTarget, tmp_path: Path) -> None:
    """Two decode workers already running (a DGDSA, an earlier run): the step is 2 -> 1 and restore returns to 2."""
    own_graph.scale(SERVICE, 2)
    own_graph.wait(timeout_s=120)
    try:
        show = Show("dev", "local", "live", tmp_path / "rec", log_file=tmp_path / "demo.log")
        table = show.scale_decode(replicas=1, concurrency=8, duration_s=2.0)
        assert list(table.index) == [2, 1]
        assert decode_workers(own_graph) == 1
        show.restore()
        assert decode_workers(own_graph) == 2
    finally:
        own_graph.scale(SERVICE, 1)
        own_graph.wait(timeout_s=120)


@pytest.mark.unit
def test_local_scale_refuses_a_graph_that_is_not_running(make_local: Callable[..., LocalTarget],
                                                          state_dir: Path) -> None:
    target = make_local()  # torn down after the test, should scaling have started anything
    before = mentioning(state_dir)
    with pytest.raises(DeploymentError, match="not running: nothing to scale") as info:
        target.scale(SERVICE, 2)
    assert "gtcdemo up" in (info.value.fix or "")
    assert mentioning(state_dir) == before == {}
    assert not state_dir.exists(), "scaling a stopped graph must leave nothing behind"


def test_the_live_demo_without_a_graph_says_so_and_changes_nothing(tmp_path: Path) -> None:
    """Run All with mode=live and no graph: one line per section, and nothing started (restore included)."""
    state, out = tmp_path / "state", tmp_path / "live.ipynb"
    env = {**os.environ, "GTCDEMO_STATE": str(state), "GTCDEMO_OUT": str(tmp_path), "KUBECONFIG": str(tmp_path / "no")}
    subprocess.run([sys.executable, "-m", "papermill", str(project.NOTEBOOKS / "demo.ipynb"), str(out), "-k",
                    "python3", "-p", "mode", "live", "--cwd", str(tmp_path)], check=True, env=env,
                   capture_output=True, timeout=300)
    executed = json.loads(out.read_text())
    values = recorded_values(executed)
    for section in ("status", "chat", "dashboard", "kv cache", "scaling"):
        assert values[section]["status"] == "failed", section
    assert values["restore"] == {"status": "ok", "note": "nothing to restore: the scaling section changed nothing"}
    shown = ["".join(o.get("data", {}).get("text/html", "")) for c in executed["cells"] for o in c.get("outputs", [])]
    assert sum("no graph is running for dev on local" in html for html in shown) == 5  # one line per section
    assert "Traceback" not in out.read_text()
    assert not state.exists() and mentioning(state) == {}, "the demo started something it was not asked to"


@pytest.mark.unit
def test_scaling_on_an_aggregated_graph_is_refused_before_anything_is_asked(state_dir: Path) -> None:
    """agg has no decode worker: its workers prefill and decode their own requests, so decode cannot grow alone."""
    show = Show("agg", "local", "live", state_dir.parent / "rec", log_file=state_dir.parent / "demo.log")
    with pytest.raises(DeploymentError, match=r"agg has no TrtllmDecodeWorker to scale: its workers \(TrtllmWorker\) "
                                              "each prefill and decode their own requests") as info:
        show.scale_decode()
    assert "env='dev'" in (info.value.fix or "")
    assert Show("dev", "local", "live", state_dir.parent / "r")._decode_slots(SERVICE) == 64  # decode.yaml's
    assert not state_dir.exists(), "refusing must not touch a deployment"


@pytest.mark.unit
def test_the_comparison_section_replays_the_committed_recording(tmp_path: Path) -> None:
    show = Show("dev", "local", "replay", log_file=tmp_path / "demo.log")
    with show.section("comparison"):
        frame = show.comparison()
    values = show.values["comparison"]
    assert show.sections["comparison"] == "ok" and values["preset"] == "prefill-heavy"
    assert values["levels"]["dev"] == values["levels"]["agg"] == [1.0, 4.0, 16.0, 32.0]
    assert values["gpus"] == {"dev": [2], "agg": [2]} and values["failed"] == {"dev": 0, "agg": 0}
    assert values["notes"][0].startswith("Measured live on local") and values["verdict"].startswith("At a TTFT SLO")
    assert len(frame) == 8


@pytest.mark.local
@pytest.mark.timeout(420)  # two layouts deployed and swept, then the graph on stage brought back
def test_a_live_comparison_leaves_the_graph_on_stage_as_it_was(own_graph: LocalTarget, tmp_path: Path) -> None:
    """With the time allowed, the section takes the presenter's graph (2 decode workers) down, runs both layouts,
    and brings it back with its 2 decode workers; agg is not left running."""
    own_graph.scale(SERVICE, 2)
    own_graph.wait(timeout_s=120)
    try:
        show = Show("dev", "local", "live", tmp_path / "rec", log_file=tmp_path / "demo.log")
        with show.section("comparison"):
            show.comparison(minutes=5.0, levels=(1, 2), sizes={"num_requests": 6, "duration_s": 2.0})
        assert show.sections["comparison"] == "ok", (tmp_path / "demo.log").read_text()
        values = show.values["comparison"]
        assert values["levels"] == {"dev": [1.0, 2.0], "agg": [1.0, 2.0]} and values["failed"] == {"dev": 0, "agg": 0}
        assert "dev brought back as it was" in values["notes"][0]
        assert own_graph.is_running() and decode_workers(own_graph) == 2
        assert not LocalTarget("agg", state_dir=own_graph.dir.parent / "agg-gtc-demo-agg").is_running()
    finally:
        own_graph.scale(SERVICE, 1)
        own_graph.wait(timeout_s=120)
