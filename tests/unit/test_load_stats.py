"""The load generator's statistics, on hand-made records: AIPerf's definitions, no server."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gtcdemo import load
from gtcdemo.errors import ConfigError
from gtcdemo.load import LoadResult, LoadSpec
from gtcdemo.load.result import _DELIVERY_COLUMNS


def row(index: int, start: float, ttft: float | None, latency: float, out: int | None, status: str = "ok",
        http: int = 200, error: str = "", wait: float | None = None, lag: float | None = None,
        new: bool | None = None) -> tuple:
    """A record as the client keeps it: (index, id, start, ttft, latency, in, out, cached, status, http, error,
    cap wait, send lag, new connection)."""
    return (index, f"chatcmpl-{index}", start, ttft, latency, 10 if out else None, out, 0 if out else None, status,
            http, error, wait, lag, new)


def test_distribution_matches_numpy_and_has_aiperfs_keys() -> None:
    values = np.random.default_rng(3).lognormal(size=1001)
    stats = load.distribution(values)
    assert list(stats) == ["p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "mean", "min", "max", "std"]
    for p in (1, 5, 10, 25, 50, 75, 90, 95, 99):
        assert stats[f"p{p}"] == pytest.approx(np.percentile(values, p), rel=1e-12)
    assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(values.std(ddof=0))
    assert stats["min"] == values.min() and stats["max"] == values.max()


def test_distribution_interpolates_linearly_and_ignores_nan() -> None:
    stats = load.distribution([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert stats["p50"] == 2.5 and stats["p25"] == 1.75 and stats["p99"] == pytest.approx(3.97)
    assert stats["std"] == pytest.approx(math.sqrt(1.25))


def test_distribution_of_nothing_is_all_none() -> None:
    assert set(load.distribution([]).values()) == {None}
    assert set(load.distribution([float("nan")]).values()) == {None}


def test_itl_is_latency_after_the_first_token_over_the_remaining_tokens() -> None:
    itl = load.itl_seconds([1.0, 0.5, 0.3, 0.2], [0.1, 0.1, 0.3, 0.1], [10, 2, 1, 0])
    assert itl[0] == pytest.approx(0.9 / 9) and itl[1] == pytest.approx(0.4)
    assert np.isnan(itl[2]) and np.isnan(itl[3])  # fewer than 2 tokens: no gap to measure


def test_duration_runs_from_first_send_to_last_response() -> None:
    # Sent at 100.0, 100.5 and 101.0; the one sent first finishes last (at 103.0), a failed one counts too.
    assert load.run_duration([100.0, 100.5, 101.0], [3.0, 0.5, 1.0]) == pytest.approx(3.0)
    assert load.run_duration([101.0, 100.0], [0.5, 0.1]) == pytest.approx(1.5)
    assert load.run_duration([], []) == 0.0
    assert load.per_second(10, 2.0) == 5.0 and load.per_second(0, 0.0) == 0.0


def test_goodput_counts_requests_meeting_every_slo() -> None:
    ttft = [0.05, 0.15, 0.05, 0.05]
    itl = [0.005, 0.005, 0.02, float("nan")]
    assert list(load.meets_slos(ttft, itl, 100, 10)) == [True, False, False, True]
    assert list(load.meets_slos(ttft, itl, 100, None)) == [True, False, True, True]
    assert list(load.meets_slos(ttft, itl, None, 10)) == [True, True, False, True]
    assert load.meets_slos(ttft, itl, 100, 10).dtype == bool


def test_summary_of_a_mixed_run() -> None:
    rows = [
        row(0, 100.0, 0.05, 1.05, 11),     # ITL 0.1 s
        row(1, 100.5, 0.20, 0.70, 6),      # ITL 0.1 s, TTFT above the SLO
        row(2, 101.0, None, 3.00, None, "error", 0, "timed out"),  # the last response: 104.0
        row(3, 101.5, 0.10, 0.60, 1),      # one token: no ITL
    ]
    frame = load.records_frame(rows)
    assert list(frame.columns) == load.COLUMNS
    s = load.summarize(frame, slo_ttft_ms=100, slo_itl_ms=150)
    assert s["duration_s"] == pytest.approx(4.0)
    assert s["ok_count"] == 3 and s["error_count"] == 1 and s["requests"] == 4
    assert s["request_throughput"] == pytest.approx(3 / 4.0)
    assert s["output_token_throughput"] == pytest.approx((11 + 6 + 1) / 4.0)
    assert s["goodput"] == pytest.approx(2 / 4.0)  # request 1 misses the TTFT SLO
    assert s["ttft_ms"]["p50"] == pytest.approx(100.0) and s["ttft_ms"]["max"] == pytest.approx(200.0)
    assert s["itl_ms"]["mean"] == pytest.approx(100.0) and s["itl_ms"]["min"] == pytest.approx(100.0)
    assert s["latency_ms"]["max"] == pytest.approx(1050.0)  # the failed request is not in the distributions
    assert load.summarize(frame)["goodput"] is None  # no SLO, no goodput


def test_all_error_and_empty_runs() -> None:
    errors = load.records_frame([row(i, 100.0 + i, None, 0.01, None, "error", 503, "HTTP 503") for i in range(3)])
    s = load.summarize(errors, slo_ttft_ms=100)
    assert s["error_count"] == 3 and s["ok_count"] == 0 and s["request_throughput"] == 0.0
    assert s["goodput"] == 0.0 and s["ttft_ms"]["p99"] is None and s["duration_s"] == pytest.approx(2.01)
    empty = load.records_frame([])
    assert list(empty.columns) == load.COLUMNS and len(empty) == 0
    s = load.summarize(empty)
    assert s["duration_s"] == 0.0 and s["request_throughput"] == 0.0 and s["itl_ms"]["p50"] is None


def test_result_repr_is_deterministic_and_round_trips(tmp_path) -> None:
    spec = LoadSpec("m", concurrency=2, num_requests=2, slo_ttft_ms=100)
    frame = load.records_frame([row(0, 100.0, 0.05, 1.05, 11), row(1, 100.5, None, 0.5, None, "error", 0, "x")])
    result = LoadResult(spec=spec, records=frame, started_at=100.0, ended_at=101.2)
    text = repr(result)
    assert text == repr(LoadResult(spec=spec, records=frame.copy(), started_at=100.0, ended_at=101.2))
    assert text.startswith("LoadResult(concurrency 2: 1 ok, 1 errors in 1.05 s;") and "goodput 0.95 req/s" in text
    assert "<table>" in result._repr_html_() and "ttft_ms" in result._repr_html_()
    again = LoadResult.load(result.save(tmp_path / "r"))
    pd.testing.assert_frame_equal(again.records, result.records, check_dtype=False)
    assert again.summary() == result.summary() and repr(again) == text
    assert list(result.errors["error"]) == ["x"]


def test_sweep_levels_follow_the_loop_kind() -> None:
    closed = LoadSpec("m", concurrency=1, num_requests=1)
    assert closed.at_level(8).concurrency == 8 and closed.at_level(np.int64(2)).concurrency == 2
    opened = LoadSpec("m", request_rate=1.0, max_concurrency=4, num_requests=1)
    assert opened.at_level(2.5).request_rate == 2.5 and opened.at_level(2.5).max_concurrency == 4
    assert opened.mode == "open" and closed.mode == "closed" and opened.label() == "rate 1/s, max 4 in flight"


# -- open loop: offered vs delivered, the in-flight cap, the schedule -------------------------------------------------
def _open(rate: float, starts: list[float], waits: list[float] | None = None, cap: int | None = None) -> LoadResult:
    waits = waits or [0.0] * len(starts)
    frame = load.records_frame([row(i, s, 0.05, 0.5, 8, wait=w, lag=0.001, new=i == 0)
                                for i, (s, w) in enumerate(zip(starts, waits, strict=True))])
    spec = LoadSpec("m", request_rate=rate, max_concurrency=cap, num_requests=len(starts))
    return LoadResult(spec=spec, records=frame, started_at=starts[0], ended_at=starts[-1] + 0.5)


def test_offered_and_delivered_rates_are_in_every_view_and_a_shortfall_is_flagged() -> None:
    starts = [100.0 + 0.1 * i for i in range(11)]  # 10 intervals of 0.1 s: 10 req/s reached the server
    on_rate = _open(10.0, starts).summary()
    assert on_rate["offered_rate"] == 10.0 and on_rate["delivered_rate"] == pytest.approx(10.0)
    assert on_rate["delivered_ratio"] == pytest.approx(1.0) and on_rate["under_delivered"] is False
    assert _open(10.5, starts).summary()["under_delivered"] is False  # 0.952x: within 5%
    short = _open(11.0, starts)  # 10 of 11 req/s: 0.909x
    s = short.summary()
    assert s["delivered_ratio"] == pytest.approx(10 / 11) and s["under_delivered"] is True
    assert "offered 11 req/s, delivered 10.00 req/s (0.91x)" in repr(short)
    assert "UNDER-DELIVERED" in repr(short) and "UNDER-DELIVERED" in short._repr_html_()
    assert "UNDER-DELIVERED" not in repr(_open(10.0, starts)) + _open(10.0, starts)._repr_html_()
    # A closed loop offers no rate: nothing to compare, nothing flagged, its text as before.
    closed = LoadResult(spec=LoadSpec("m", concurrency=2, num_requests=11), records=short.records,
                        started_at=100.0, ended_at=101.5)
    c = closed.summary()
    assert c["offered_rate"] is None and c["delivered_ratio"] is None and c["under_delivered"] is False
    assert c["delivered_rate"] == pytest.approx(10.0) and "offered" not in repr(closed)


def test_a_binding_cap_is_counted_with_how_long_arrivals_waited() -> None:
    starts = [100.0, 100.1, 100.45, 100.7, 100.8]
    bound = _open(10.0, starts, waits=[0.0, 0.0, 0.2, 0.4, 0.0], cap=2)
    s = bound.summary()
    assert s["max_concurrency"] == 2 and s["cap_waits"] == 2
    assert s["cap_wait_ms"]["p50"] == pytest.approx(300.0) and s["cap_wait_ms"]["max"] == pytest.approx(400.0)
    text = "2 of 5 arrivals waited for the in-flight cap of 2 (p50 300 ms, max 400 ms)"
    assert text in repr(bound) and text in bound._repr_html_()
    free = _open(10.0, starts, cap=8)
    assert free.summary()["cap_waits"] == 0 and "in-flight cap of 8 never reached" in repr(free)
    uncapped = _open(10.0, starts).summary()
    assert uncapped["cap_waits"] is None and uncapped["cap_wait_ms"] == {"p50": None, "max": None}


def test_arrivals_are_poisson_at_exactly_the_offered_rate() -> None:
    at = load.arrival_offsets(16.0, 2000, None, seed=3)
    assert len(at) == 2000 and (np.diff(at) > 0).all() and at[0] == 0
    assert 1999 / at[-1] == pytest.approx(16.0, rel=1e-12)  # the draw itself carries the offered rate, exactly
    gaps = np.diff(at)
    assert 0.9 < gaps.std() / gaps.mean() < 1.1  # exponential gaps: coefficient of variation 1
    assert list(load.arrival_offsets(16.0, 50, None, seed=3)) == list(load.arrival_offsets(16.0, 50, None, seed=3))
    assert list(load.arrival_offsets(16.0, 50, None, seed=3)) != list(load.arrival_offsets(16.0, 50, None, seed=4))
    assert len(load.arrival_offsets(4.0, None, 10.0, seed=0)) == 40  # a duration: rate x duration arrivals
    assert list(load.arrival_offsets(4.0, 1, None, seed=0)) == [0.0]
    assert len(load.arrival_offsets(4.0, 25, 10.0, seed=0)) == 25  # whichever comes first
    assert len(load.arrival_offsets(4.0, 100, 10.0, seed=0)) == 40


def test_results_saved_before_the_delivery_columns_still_load(tmp_path: Path) -> None:
    # As saved before: no wait_s / send_lag_s / new_connection columns, no connection_reuse in the spec.
    folder = _open(10.0, [100.0, 100.1, 100.2]).save(tmp_path / "old")
    pd.read_csv(folder / "records.csv").drop(columns=list(_DELIVERY_COLUMNS)).to_csv(folder / "records.csv",
                                                                                      index=False)
    doc = json.loads((folder / "summary.json").read_text())
    del doc["spec"]["connection_reuse"]
    (folder / "summary.json").write_text(json.dumps(doc))
    old = LoadResult.load(folder)
    s = old.summary()
    assert s["delivered_rate"] == pytest.approx(10.0) and s["new_connections"] is None and s["cap_waits"] is None
    assert list(old.records.columns) == load.COLUMNS and s["ok_count"] == 3 and old.spec.connection_reuse == "pooled"


def test_connection_reuse_takes_aiperfs_policy_names() -> None:
    assert LoadSpec("m", concurrency=1, num_requests=1).connection_reuse == "pooled"
    never = LoadSpec("m", request_rate=2.0, num_requests=1, connection_reuse="never")
    assert "new connection per request" in never.label()
    with pytest.raises(ConfigError, match="connection_reuse must be 'pooled' or 'never'"):
        LoadSpec("m", concurrency=1, num_requests=1, connection_reuse="sticky")
    assert dataclasses.replace(never, request_rate=4.0).connection_reuse == "never"
