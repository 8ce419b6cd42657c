"""The disaggregated-vs-aggregated comparison on synthetic records: numbers, verdict and orchestration, no server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.text import Annotation

from gtcdemo import comparison, comparison_run, load
from gtcdemo.errors import ConfigError, DeploymentError

REPO = Path(__file__).resolve().parents[2]


def dgd_services(env: str) -> dict:
    """The services of an env's committed DGD, read as plain YAML (independent of the bundle's validation)."""
    docs = [d for p in sorted((REPO / "manifests" / env).glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return next(d for d in docs if d and d.get("kind") == "DynamoGraphDeployment")["spec"]["services"]


def result(level: int, ttft_ms: list[float], itl_ms: list[float], out: int = 11, failed: int = 0,
           span_s: float = 2.0) -> load.LoadResult:
    """A closed-loop LoadResult: one request per (TTFT, ITL) pair, sent evenly over ``span_s``, all finishing by
    then, plus ``failed`` failed requests."""
    rows = []
    n = len(ttft_ms)
    for i, (ttft, itl) in enumerate(zip(ttft_ms, itl_ms, strict=True)):
        latency = (ttft + itl * (out - 1)) / 1000
        start = (span_s - latency) * i / max(n - 1, 1)
        rows.append((i, f"r{i}", start, ttft / 1000, latency, 100, out, 0, "ok", 200, "", None, None, False))
    for j in range(failed):
        rows.append((n + j, "", 0.0, None, 0.01, None, None, None, "error", 500, "boom", None, None, False))
    spec = load.LoadSpec(model="m", concurrency=level, num_requests=max(n + failed, 1))
    return load.LoadResult(spec=spec, records=load.records_frame(rows), started_at=0.0, ended_at=span_s)


def frame(disagg: dict[int, tuple[float, ...]], agg: dict[int, tuple[float, ...]], failed: int = 0) -> pd.DataFrame:
    """Records of both layouts from {level: (TTFT ms, ITL ms, output tokens/s per GPU[, goodput])} per layout; the
    goodput defaults to tokens per GPU / 100 (requests of 200 output tokens, all within the SLO)."""
    rows = []
    for layout, kind, points in (("dev", "disaggregated", disagg), ("agg", "aggregated", agg)):
        for level, (ttft, itl, per_gpu, *rest) in points.items():
            good = rest[0] if rest else per_gpu / 100
            rows.append({"layout": layout, "serving": kind, "level": float(level), "mode": "closed", "gpus": 2,
                         "requests": 10, "failed": failed if layout == "agg" else 0,
                         "request_throughput": max(per_gpu / 100, good), "output_tokens_per_s": per_gpu * 2,
                         "tokens_per_s_per_gpu": per_gpu, "tokens_per_s_per_user": 1000 / itl,
                         "tokens_per_s_per_user_p50": 1000 / itl, "ttft_ms_p50": ttft * 0.8, "ttft_ms_p95": ttft,
                         "itl_ms_p50": itl, "itl_ms_p95": itl * 1.2, "slo_ttft_ms": 500.0, "goodput": good,
                         "interrupted": False})
    return pd.DataFrame(rows, columns=comparison.COLUMNS)


# -- what a layout holds ---------------------------------------------------------------------------------------------
def test_both_committed_layouts_hold_two_gpus_and_say_how_they_serve() -> None:
    dev, agg = dgd_services("dev"), dgd_services("agg")
    assert comparison.gpu_count(dev) == comparison.gpu_count(agg) == 2
    assert comparison.serving(dev) == "disaggregated" and comparison.serving(agg) == "aggregated"


def test_gpu_count_is_replicas_times_gpus_over_workers_only() -> None:
    services = {
        "Frontend": {"componentType": "frontend", "replicas": 3, "resources": {"limits": {"gpu": "1"}}},
        "Big": {"componentType": "worker", "replicas": 3, "resources": {"limits": {"gpu": "2"}}},
        "Small": {"componentType": "worker", "resources": {"limits": {"gpu": "1"}}},  # replicas default to 1
        "Cpu": {"componentType": "worker", "replicas": 4},
    }
    assert comparison.gpu_count(services) == 7


def test_a_worker_with_only_the_flag_is_disaggregated_in_either_spelling() -> None:
    for args in (["--disaggregation-mode=decode"], ["--disaggregation-mode", "prefill"]):
        worker = {"componentType": "worker", "extraPodSpec": {"mainContainer": {"args": args}}}
        assert comparison.serving({"W": worker}) == "disaggregated"
    agg = {"componentType": "worker", "extraPodSpec": {"mainContainer": {"args": ["--disaggregation-mode", "agg"]}}}
    assert comparison.serving({"W": agg}) == "aggregated"


# -- per layout and level --------------------------------------------------------------------------------------------
def test_tokens_per_user_is_aiperfs_mean_of_per_request_rates_not_one_over_mean_itl() -> None:
    records = result(1, [50.0, 50.0], [5.0, 10.0]).records
    mean, median = comparison.tokens_per_user(records)
    assert mean == pytest.approx((200 + 100) / 2)  # not 1000 / 7.5 = 133.3
    assert median == pytest.approx(150)


def test_goodput_counts_successful_requests_within_the_ttft_slo_per_second() -> None:
    r = result(4, [100.0, 200.0, 300.0, 600.0], [5.0] * 4, failed=2, span_s=2.0)
    duration = r.summary()["duration_s"]
    assert duration == pytest.approx(2.0)
    assert comparison.goodput(r.records, duration, 250.0) == pytest.approx(2 / 2.0)
    assert comparison.goodput(r.records, duration, 1000.0) == pytest.approx(4 / 2.0)  # failed ones never count
    assert comparison.goodput(r.records, 0.0, 1000.0) == 0.0


def test_layout_records_divide_by_the_gpus_and_count_failures() -> None:
    results = [result(1, [50.0] * 4, [5.0] * 4), result(2, [80.0] * 4, [6.0] * 4, failed=1)]
    rows = comparison.layout_records("agg", "aggregated", 2, results, 60.0)
    assert list(rows.columns) == comparison.COLUMNS
    assert list(rows["level"]) == [1.0, 2.0] and list(rows["failed"]) == [0, 1] and list(rows["requests"]) == [4, 5]
    table = load.sweep_table(results)
    assert rows["tokens_per_s_per_gpu"].tolist() == pytest.approx((table["output_token_throughput"] / 2).tolist())
    assert rows["tokens_per_s_per_user"].tolist() == pytest.approx([200.0, 1000 / 6])
    assert rows["goodput"].iloc[0] > 0 and rows["goodput"].iloc[1] == 0.0  # 80 ms misses the 60 ms SLO
    with pytest.raises(ConfigError, match="holds 0 GPUs"):
        comparison.layout_records("agg", "aggregated", 0, results, 60.0)


def test_unfair_records_say_why() -> None:
    fair = frame({1: (100, 5, 300), 2: (120, 6, 500)}, {1: (90, 6, 280), 2: (110, 7, 450)})
    assert comparison.unfair(fair) == []
    fewer = fair.drop(index=fair.index[-1])
    assert "different load levels" in comparison.unfair(fewer)[0]
    more_gpus = fair.assign(gpus=[2, 2, 3, 3])
    assert "different GPU counts" in comparison.unfair(more_gpus)[0]
    failing = frame({1: (1, 5, 1), 2: (1, 5, 1)}, {1: (1, 5, 1), 2: (1, 5, 1)}, failed=1)
    assert comparison.unfair(failing) == ["failed requests: {'agg': 2}"]


# -- the verdict ----------------------------------------------------------------------------------------------------
def test_the_verdict_follows_the_data() -> None:
    disagg_wins = frame({1: (150, 5.0, 100), 8: (300, 6.0, 800)}, {1: (100, 6.5, 100), 8: (450, 8.0, 600)})
    text = comparison.verdict(disagg_wins)
    assert text.startswith("At a TTFT SLO of 500 ms disaggregated reaches 33% more goodput on the same GPUs "
                           "(8.0 requests/s at 8 concurrent vs 6.0 at 8 concurrent)")
    assert "ITL p50 lower for disaggregated at 1, 8 concurrent (6.0 vs 8.0 ms at 8)" in text
    assert "TTFT p95 lower for disaggregated at 8 concurrent (300.0 vs 450.0 ms at 8), for aggregated at 1 " in text

    agg_wins = frame({1: (150, 6.5, 100), 8: (450, 8.0, 600)}, {1: (100, 5.0, 100), 8: (300, 6.0, 800)})
    text = comparison.verdict(agg_wins)
    assert text.startswith("At a TTFT SLO of 500 ms aggregated reaches 33% more goodput")
    assert "ITL p50 lower for aggregated at 1, 8 concurrent" in text


def test_goodput_decides_not_a_p95_on_the_slo_line() -> None:
    """A level whose TTFT p95 is just over the SLO still counts with the requests that met it: the headline does
    not jump when noise moves one level's p95 across the line."""
    over_the_line = frame({1: (100, 5.0, 100), 8: (510, 6.0, 800, 7.5)}, {1: (100, 5.0, 100), 8: (490, 6.0, 800, 7.2)})
    assert comparison.verdict(over_the_line).startswith(
        "At a TTFT SLO of 500 ms both reach about the same goodput (disaggregated 7.5, aggregated 7.2 requests/s)")
    only = frame({1: (100, 5.0, 100, 1.0), 8: (300, 6.0, 800, 7.5)}, {1: (900, 5.0, 100, 0.0), 8: (900, 6, 800, 0.0)})
    assert comparison.verdict(only).startswith(
        "Only disaggregated served requests within a TTFT of 500 ms (7.5/s at 8 concurrent)")
    none = frame({1: (900, 5.0, 100, 0.0)}, {1: (900, 5.0, 100, 0.0)})
    assert comparison.verdict(none).startswith("Neither layout served a request within a TTFT of 500 ms")


def test_the_verdict_compares_only_common_levels_and_names_failures() -> None:
    records = frame({1: (100, 5.0, 100), 2: (100, 5.0, 100)}, {1: (100, 5.1, 100), 4: (100, 9.0, 999)}, failed=3)
    text = comparison.verdict(records)
    assert "999" not in text  # level 4 ran on one layout only
    assert "ITL p50 equal within 10% at every level" in text and text.endswith("; failed requests: aggregated 3.")
    apart = frame({1: (100, 5.0, 100)}, {2: (100, 5.0, 100)})
    assert comparison.verdict(apart) == "the two layouts share no load level: nothing to compare"
    with pytest.raises(ConfigError, match="one disaggregated and one aggregated"):
        comparison.verdict(records.assign(serving="aggregated"))


def test_the_h100_floor_is_the_weights_over_the_bandwidth() -> None:
    floor_ms, ceiling = comparison.H100_ITL_FLOOR_MS, comparison.H100_TOKENS_PER_USER_CEILING
    assert floor_ms == pytest.approx(16.06e9 / 3.35e12 * 1000) == pytest.approx(4.79, abs=0.01)
    assert ceiling == pytest.approx(208.6, abs=0.1)
    note = comparison.floor_note(frame({1: (100, 4.5, 1)}, {1: (100, 6.0, 1)}))
    assert "disaggregated (dev) 4.5 ms (0.94x, below the floor: simulated timing)" in note
    assert "aggregated (agg) 6.0 ms (1.25x)" in note


# -- workloads ------------------------------------------------------------------------------------------------------
def test_presets_are_prefill_heavy_and_decode_heavy() -> None:
    prefill = comparison.preset_spec("prefill-heavy", "m")
    decode = comparison.preset_spec("decode-heavy", "m", output_tokens=300, slo_ttft_ms=100)
    assert prefill.input_tokens_mean > 10 * prefill.output_tokens
    assert decode.output_tokens == 300 > decode.input_tokens_mean and decode.slo_ttft_ms == 100
    with pytest.raises(ConfigError, match="unknown workload preset 'chat'"):
        comparison.preset_spec("chat", "m")
    with pytest.raises(ConfigError, match="unknown workload size 'num_request'\nFix: did you mean 'num_requests'?"):
        comparison.preset_spec("decode-heavy", "m", num_request=10)
    with pytest.raises(ConfigError, match="unknown workload size 'concurrency'"):  # the sweep's levels set it
        comparison.preset_spec("decode-heavy", "m", concurrency=4)


def test_the_expected_time_is_start_up_plus_the_sweep_per_layout() -> None:
    spec = comparison.preset_spec("decode-heavy", "m", num_requests=8, duration_s=5.0)
    request_s = comparison_run.ESTIMATE_TTFT_S + 256 * comparison_run.ESTIMATE_ITL_S  # 1.892 s
    # Level 1: 2 warm-up requests, 8 requests would take 15 s so the 5 s deadline ends it, 1 request in flight.
    # Level 8: 1 warm-up wave, 1 wave of 8 (under 5 s), 1 in flight.
    assert comparison_run.sweep_seconds(spec, [1, 8]) == pytest.approx((2 + 1) * request_s + 5 + 3 * request_s)
    sweep = comparison_run.sweep_seconds(spec, [1, 8])
    assert comparison_run.expected_seconds(spec, [1, 8], "cluster", restarts=1) == pytest.approx(
        2 * (300 + 30 + sweep) + 300)
    assert comparison_run.duration_text(45) == "45 s" and comparison_run.duration_text(700) == "12 min"
    note = comparison_run.timing_note(comparison.preset_spec("prefill-heavy", "m"), [1, 4, 16, 32], "local")
    assert "on local, about 12 min on the cluster" in note and "load the model from NFS (~5 min" in note


# -- running it -----------------------------------------------------------------------------------------------------
class FakeTarget:
    """Records what the comparison asks of each layout's target, and fails where told to."""

    deployed: set[str] = set()
    services: dict[str, dict] = {}  # env -> services instead of the committed DGD's

    def __init__(self, env: str, log: list[str], fail_on: str | None) -> None:
        self.env, self.name, self.log, self.fail_on = env, f"fake-{env}", log, fail_on
        services = self.services.get(env) or dgd_services(env.rstrip("2"))
        self.bundle = type("B", (), {"services": services, "served_model_name": "m", "name": f"dgd-{env}"})()
        self.scaled: dict[str, int] = {}

    def replicas(self, service: str) -> int:
        return self.scaled.get(service, int(self.bundle.services[service].get("replicas", 1)))

    def scale(self, service: str, replicas: int) -> None:
        self.log.append(f"scale {self.env} {service} {replicas}")
        self.scaled[service] = replicas

    def is_running(self) -> bool:
        return self.env in self.deployed

    def apply(self) -> None:
        assert not self.deployed, f"{self.env} deployed while {self.deployed} still is"  # never both at once
        self.log.append(f"apply {self.env}")
        self.deployed.add(self.env)
        if self.fail_on == f"apply {self.env}":
            raise DeploymentError("apply failed")

    def wait(self, timeout_s: float) -> object:
        return type("R", (), {"ready": True})()

    @contextlib.contextmanager
    def frontend(self) -> Iterator[str]:
        yield f"http://{self.env}"

    def teardown(self) -> None:
        self.log.append(f"teardown {self.env}")
        self.deployed.discard(self.env)
        self.scaled = {}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """Fake targets and a fake sweep: ``state["fail_on"]`` makes one step raise (an error, or Ctrl-C)."""
    from gtcdemo import targets

    state: dict = {"log": [], "fail_on": None, "interrupt": None, "made": {}}
    FakeTarget.deployed = set()

    def get_target(name: str, env: str) -> FakeTarget:  # one object per env, as a deployment outlives its handles
        return state["made"].setdefault(env, FakeTarget(env, state["log"], state["fail_on"]))

    monkeypatch.setattr(targets, "get_target", get_target)

    def sweep(url: str, spec: load.LoadSpec, levels: list, progress: bool, save_to: Path) -> list:
        state["log"].append(f"sweep {url}")
        if state["fail_on"] == f"sweep {url}":
            raise state["interrupt"] or RuntimeError("sweep failed")
        results = [result(int(lv), [100.0, 120.0], [5.0, 6.0]) for lv in levels]
        results[-1].interrupted = state.get("interrupted_in") == url  # Ctrl-C inside the load: a partial result
        return results

    monkeypatch.setattr(load, "sweep", sweep)
    state["folder"] = tmp_path / "out"
    return state


def test_layouts_that_do_not_compare_are_refused_before_anything_is_deployed(fake: dict,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="the layouts serve {'agg': 'aggregated', 'agg2': 'aggregated'}"):
        comparison_run.run_comparison("local", ["agg", "agg2"], levels=(1,), folder=fake["folder"], progress=False)
    three = dgd_services("agg")
    three["TrtllmWorker"]["replicas"] = 3
    monkeypatch.setattr(FakeTarget, "services", {"agg": three})
    fake["made"].clear()
    with pytest.raises(ConfigError, match="different GPU counts: {'dev': 2, 'agg': 3}"):
        comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False)
    assert fake["log"] == []


def test_each_layout_is_deployed_alone_swept_and_torn_down(fake: dict) -> None:
    records = comparison_run.run_comparison("local", levels=(1, 2), folder=fake["folder"], progress=False)
    assert fake["log"] == ["apply dev", "sweep http://dev", "teardown dev", "apply agg", "sweep http://agg",
                           "teardown agg"]
    assert comparison.unfair(records) == []
    assert list(records["layout"]) == ["dev", "dev", "agg", "agg"] and set(records["gpus"]) == {2}
    assert comparison_run.read_records(fake["folder"]).equals(records)
    about = comparison_run.read_about(fake["folder"])
    assert about["preset"] == "prefill-heavy" and about["target"] == "local" and about["layouts"] == ["dev", "agg"]
    assert comparison.facts(records) == {
        "dev": {"serving": "disaggregated", "levels": [1.0, 2.0], "gpus": [2], "requests": 4, "failed": 0,
                "interrupted": False},
        "agg": {"serving": "aggregated", "levels": [1.0, 2.0], "gpus": [2], "requests": 4, "failed": 0,
                "interrupted": False}}
    assert list(comparison.records_table(records).frame.columns)[:5] == [
        "layout", "serving", "concurrent", "requests", "failed"]


@pytest.mark.parametrize("step", ["apply dev", "sweep http://dev", "sweep http://agg"])
@pytest.mark.parametrize("interrupt", [None, KeyboardInterrupt()])
def test_a_failure_or_ctrl_c_still_tears_down_and_deploys_nothing_more(fake: dict, step: str,
                                                                       interrupt: BaseException | None) -> None:
    fake["fail_on"], fake["interrupt"] = step, interrupt
    with pytest.raises(KeyboardInterrupt if interrupt and step.startswith("sweep") else (RuntimeError,
                                                                                        DeploymentError)):
        comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False)
    layout = step.rsplit("/", 1)[-1] if step.startswith("sweep") else step.split()[-1]
    assert fake["log"][-1] == f"teardown {layout}" and not FakeTarget.deployed
    assert not any(e.startswith("apply") for e in fake["log"][fake["log"].index(f"teardown {layout}"):])


def test_bad_sizes_and_levels_are_refused_before_anything_is_deployed(fake: dict) -> None:
    for levels, sizes, message in (((1, 2.5), {}, "whole number"), ((), {}, "at least one load level"),
                                   ((1,), {"output_tokens": 0}, "output_tokens must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            comparison_run.run_comparison("local", levels=levels, sizes=sizes, folder=fake["folder"], progress=False)
    assert fake["log"] == []


def test_a_layout_already_running_is_refused_stopped_or_brought_back(fake: dict) -> None:
    FakeTarget.deployed = {"agg"}
    with pytest.raises(DeploymentError, match="agg is already deployed on fake-agg"):
        comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False)
    with pytest.raises(ConfigError, match="found_running is 'keep'"):
        comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False,
                                      found_running="keep")
    assert fake["log"] == []
    comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False, found_running="stop")
    assert fake["log"][:2] == ["teardown agg", "apply dev"] and FakeTarget.deployed == set()
    fake["log"].clear()
    FakeTarget.deployed = {"agg"}
    fake["made"]["agg"].scaled = {"TrtllmWorker": 1}
    comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False,
                                  found_running="restore")
    assert fake["log"][-2:] == ["apply agg", "scale agg TrtllmWorker 1"] and FakeTarget.deployed == {"agg"}
    assert comparison_run.read_about(fake["folder"])["restored"] == (
        "agg brought back as it was (Frontend x1, TrtllmWorker x1)")


@pytest.mark.parametrize("step", ["apply agg", "sweep http://agg"])
def test_a_graph_found_running_is_brought_back_also_when_the_comparison_fails(fake: dict, step: str) -> None:
    FakeTarget.deployed = {"dev"}
    fake["fail_on"] = step
    with pytest.raises((RuntimeError, DeploymentError)):
        comparison_run.run_comparison("local", levels=(1,), folder=fake["folder"], progress=False,
                                      found_running="restore")
    assert fake["log"][-2:] == ["teardown agg", "apply dev"] and FakeTarget.deployed == {"dev"}


def test_an_interrupted_sweep_ends_the_comparison_with_what_was_measured(fake: dict) -> None:
    fake["interrupted_in"] = "http://dev"
    records = comparison_run.run_comparison("local", levels=(1, 2), folder=fake["folder"], progress=False)
    assert fake["log"] == ["apply dev", "sweep http://dev", "teardown dev"]
    assert list(records["layout"]) == ["dev", "dev"] and list(records["interrupted"]) == [False, True]


# -- the figures ----------------------------------------------------------------------------------------------------
def test_the_figures_draw_the_records_the_floor_and_the_slo() -> None:
    from gtcdemo import comparison_plots

    records = frame({1: (150, 5.0, 100), 8: (300, 6.0, 800)}, {1: (100, 6.5, 100), 8: (450, 8.0, 600)})
    ax = comparison_plots.frontier(records).axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()}
    assert list(curves["disaggregated (dev, 2 GPUs)"].get_xdata()) == pytest.approx([200, 1000 / 6])
    assert list(curves["aggregated (agg, 2 GPUs)"].get_ydata()) == [100, 600]
    floor = next(line for label, line in curves.items() if label.startswith("H100 floor"))
    assert list(floor.get_xdata()) == pytest.approx([comparison.H100_TOKENS_PER_USER_CEILING] * 2)
    labels = sorted(t.get_text() for t in ax.texts if isinstance(t, Annotation))
    assert labels == ["1", "1", "8", "8"]  # every point labelled with its level

    ttft, itl, goodput = comparison_plots.latency_vs_load(records, 400).axes
    assert [list(line.get_ydata()) for line in ttft.get_lines()][-1] == [400, 400]  # the SLO line asked for
    assert [list(line.get_ydata()) for line in itl.get_lines()][-1] == pytest.approx([comparison.H100_ITL_FLOOR_MS] * 2)
    assert goodput.get_title().startswith("Goodput at TTFT ≤ 500 ms")  # the SLO the goodput was measured at
    ttft = comparison_plots.latency_vs_load(records).axes[0]
    assert [list(line.get_ydata()) for line in ttft.get_lines()][-1] == [500, 500]


def test_the_closing_verdicts_quote_this_run_an_earlier_run_and_a_preset_never_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gtcdemo import project

    monkeypatch.setattr(project, "ROOT", tmp_path)
    this = frame({1: (100, 5.0, 100)}, {1: (100, 5.0, 300)})
    table = comparison_run.verdicts("local", ("prefill-heavy", this)).frame.set_index("preset")
    assert table.loc["prefill-heavy", "measured"] == "this run"
    assert table.loc["prefill-heavy", "verdict"].startswith("At a TTFT SLO of 500 ms aggregated reaches 200% more")
    assert table.loc["decode-heavy", "verdict"] == "run this notebook with -p preset decode-heavy -p target local"
    comparison_run.save_records(frame({1: (100, 5.0, 300)}, {1: (100, 5.0, 100)}),
                                comparison_run.default_folder("local", "decode-heavy"),
                                {"recorded_at": "2026-01-02T03:04:05+00:00"})
    table = comparison_run.verdicts("local", ("prefill-heavy", this)).frame.set_index("preset")
    assert table.loc["decode-heavy", "measured"] == "2026-01-02T03:04:05+00:00"
    assert table.loc["decode-heavy", "verdict"].startswith("At a TTFT SLO of 500 ms disaggregated reaches 200% more")


def test_the_overview_puts_the_frontier_beside_ttft_p95_with_the_slo() -> None:
    from gtcdemo import comparison_plots

    records = frame({1: (150, 5.0, 100), 8: (300, 6.0, 800)}, {1: (100, 6.5, 100), 8: (450, 8.0, 600)})
    left, right = comparison_plots.overview(records).axes
    assert [list(line.get_ydata()) for line in left.get_lines()][:2] == [[100, 800], [100, 600]]
    curves = {line.get_label(): list(line.get_ydata()) for line in right.get_lines()}
    assert curves["disaggregated (dev, 2 GPUs)"] == [150, 300] and curves["TTFT SLO 500 ms"] == [500, 500]


# -- the demo's section -------------------------------------------------------------------------------------------
def test_the_demo_section_runs_live_only_with_the_time_and_brings_back_the_graph_as_it_was(fake: dict,
                                                                                             tmp_path: Path) -> None:
    """The presenter's dev graph runs with 2 decode workers: too little time shows saved records and changes
    nothing; enough time runs both layouts alone, then brings dev back with its 2 decode workers."""
    from gtcdemo import demo_comparison
    from gtcdemo.demo import FIXTURE

    shown: list = []
    dev = fake["made"].setdefault("dev", FakeTarget("dev", fake["log"], None))
    FakeTarget.deployed = {"dev"}
    dev.scaled = {"TrtllmDecodeWorker": 2}
    kwargs = {"records": "", "preset": "prefill-heavy", "fallback": FIXTURE, "display": lambda o, **_: shown.append(o),
              "levels": (1, 2), "sizes": {"num_requests": 4}}
    frame_, values = demo_comparison.section("record", tmp_path / "rec", "local", minutes=0.1, **kwargs)
    assert fake["log"] == [] and FakeTarget.deployed == {"dev"}, "it deployed without the time allowed"
    assert values["notes"][0].startswith(f"Recorded {comparison_run.read_about(FIXTURE / 'comparison')['recorded_at']}")
    assert "bringing back dev as it runs now (allow it with comparison_minutes=1)" in values["notes"][0]
    assert comparison_run.read_records(tmp_path / "rec" / "comparison").equals(frame_)  # what a replay draws

    frame_, values = demo_comparison.section("live", tmp_path / "live", "local", minutes=1.0, **kwargs)
    assert fake["log"] == ["teardown dev", "apply dev", "sweep http://dev", "teardown dev", "apply agg",
                           "sweep http://agg", "teardown agg", "apply dev", "scale dev TrtllmDecodeWorker 2"]
    assert FakeTarget.deployed == {"dev"} and dev.replicas("TrtllmDecodeWorker") == 2
    assert "dev brought back as it was (Frontend x1, TrtllmPrefillWorker x1, TrtllmDecodeWorker x2)" in values[
        "notes"][0]
    assert values["levels"] == {"dev": [1.0, 2.0], "agg": [1.0, 2.0]} and values["failed"] == {"dev": 0, "agg": 0}
