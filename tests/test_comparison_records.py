"""The disaggregated-vs-aggregated sweep as notebook 06 recorded it: the notebook publishes its records
(``results.record``), these tests assert them. A fair comparison ran the same load levels on both layouts, on the same
number of GPUs, with no failed request; the notebook runs here on the local target at small sizes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import papermill
import pytest

from gtcdemo import project
from gtcdemo.local import LocalTarget
from gtcdemo.results import recorded_values

LEVELS = [1, 2]


def unfair(recorded: dict) -> list[str]:
    """What is wrong with the recorded comparison (empty when it compares like with like), from the raw values the
    notebook recorded: not from ``comparison.unfair``, which the notebook itself uses."""
    layouts = recorded["layouts"]
    problems = []
    if sorted(f["serving"] for f in layouts.values()) != ["aggregated", "disaggregated"]:
        problems.append(f"not one disaggregated and one aggregated layout: {layouts}")
    levels = {name: f["levels"] for name, f in layouts.items()}
    if len({tuple(v) for v in levels.values()}) != 1:
        problems.append(f"different load levels: {levels}")
    gpus = {name: f["gpus"] for name, f in layouts.items()}
    if len({tuple(v) for v in gpus.values()}) != 1 or any(len(v) != 1 or v[0] < 1 for v in gpus.values()):
        problems.append(f"different GPU counts: {gpus}")
    failed = {name: f["failed"] for name, f in layouts.items() if f["failed"]}
    if failed:
        problems.append(f"failed requests: {failed}")
    if any(f["requests"] < 1 or f["interrupted"] for f in layouts.values()):
        problems.append(f"a layout measured nothing or was interrupted: {layouts}")
    return problems


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, Path]]:
    """Notebook 06 run once on the local target at small sizes, in a state folder of its own; nothing left running."""
    root = tmp_path_factory.mktemp("comparison-notebook")
    out = root / "out"
    out.mkdir()
    with pytest.MonkeyPatch.context() as env:  # the kernel inherits this process's environment
        env.setenv("GTCDEMO_STATE", str(root / "state"))
        env.setenv("GTCDEMO_OUT", str(out))
        papermill.execute_notebook(
            str(project.NOTEBOOKS / "06_disagg_vs_agg.ipynb"), str(out / "06.ipynb"), kernel_name="python3",
            progress_bar=False, cwd=str(project.NOTEBOOKS),
            parameters={"levels": LEVELS, "sizes": {"num_requests": 8, "duration_s": 2.0},
                        "records": str(root / "records")})
    yield recorded_values(json.loads((out / "06.ipynb").read_text())), root
    for env_name, dgd in (("dev", "gtc-demo"), ("agg", "gtc-demo-agg")):
        target = LocalTarget(env_name, state_dir=root / "state" / f"{env_name}-{dgd}")
        assert not target.is_running() and target.leftover_pids() == [], f"notebook 06 left {env_name} running"


@pytest.mark.local
@pytest.mark.timeout(300)  # two layouts deployed and swept one after the other, in a notebook kernel
def test_both_layouts_ran_the_same_levels_on_the_same_gpus_without_a_failed_request(executed: tuple) -> None:
    values, root = executed
    recorded = values["comparison"]
    assert unfair(recorded) == []
    assert recorded["layouts"]["dev"]["levels"] == recorded["layouts"]["agg"]["levels"] == [float(v) for v in LEVELS]
    assert recorded["layouts"]["dev"]["gpus"] == recorded["layouts"]["agg"]["gpus"] == [2]
    assert recorded["verdict"] and recorded["floor"].startswith("best ITL p50 against the H100 floor")
    for figure in ("06_frontier.png", "06_latency_vs_load.png"):
        assert (root / "out" / figure).stat().st_size > 10_000, figure
    assert (root / "records" / "comparison.csv").is_file()


FAIR = {"preset": "prefill-heavy", "layouts": {
    "dev": {"serving": "disaggregated", "levels": [1.0, 2.0], "gpus": [2], "requests": 16, "failed": 0,
            "interrupted": False},
    "agg": {"serving": "aggregated", "levels": [1.0, 2.0], "gpus": [2], "requests": 16, "failed": 0,
            "interrupted": False}}}


def broken(layout: str, key: str, value: object) -> dict:
    record = copy.deepcopy(FAIR)
    record["layouts"][layout][key] = value
    return record


@pytest.mark.unit
@pytest.mark.parametrize(("record", "problem"), [
    (broken("agg", "levels", [1.0, 4.0]), "different load levels"),
    (broken("agg", "levels", [1.0]), "different load levels"),
    (broken("dev", "gpus", [3]), "different GPU counts"),
    (broken("agg", "gpus", [2, 3]), "different GPU counts"),
    (broken("agg", "failed", 1), "failed requests: {'agg': 1}"),
    (broken("dev", "interrupted", True), "interrupted"),
    (broken("dev", "serving", "aggregated"), "not one disaggregated and one aggregated"),
], ids=["other-levels", "fewer-levels", "more-gpus", "gpus-changed", "a-failed-request", "interrupted", "two-aggs"])
def test_a_broken_record_is_caught(record: dict, problem: str) -> None:
    assert unfair(FAIR) == []
    assert any(problem in text for text in unfair(record)), unfair(record)
