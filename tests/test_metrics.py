"""Metrics from the real local Prometheus scraping the real Dynamo frontend."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gtcdemo import inference, metrics
from gtcdemo.local import LocalTarget, pick_port

from .support import poll

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def m(graph: LocalTarget) -> metrics.Metrics:
    return metrics.Metrics(graph.prometheus_url())


def test_rate_window_follows_the_scrape_interval(m: metrics.Metrics) -> None:
    assert m.rate_window == "4s"  # 1 s scrapes locally


def _bounds_covering(bounds: list[float], low: float, high: float) -> list[float]:
    """The bounds from the last one at or below ``low`` up to ``high``."""
    finite = [b for b in bounds if 0 < b < float("inf")]
    start = max(b for b in finite if b <= low)
    return [b for b in finite if start <= b <= high * 1.001]


def test_frontend_buckets_are_at_most_ten_percent_apart(graph: LocalTarget, m: metrics.Metrics) -> None:
    with graph.frontend() as url:
        inference.stream_chat(url, graph.bundle.served_model_name, "bucket probe", max_tokens=4)
    poll(lambda: m.query(f"{metrics.ITL}_count"), timeout_s=20, what="ITL histogram in Prometheus")
    ttft = _bounds_covering(m.bucket_bounds(metrics.TTFT), 0.005, 10)
    itl = _bounds_covering(m.bucket_bounds(metrics.ITL), 0.001, 0.2)
    assert ttft[-1] == pytest.approx(10) and itl[-1] == pytest.approx(0.2)
    assert max(metrics.bucket_ratios(ttft)) <= 1.10 + 1e-9
    assert max(metrics.bucket_ratios(itl)) <= 1.10 + 1e-9


def test_run_summary_counts_exactly_the_run(graph: LocalTarget, m: metrics.Metrics) -> None:
    model = graph.bundle.served_model_name
    with graph.frontend() as url:
        inference.chat_completion(url, model, "before", max_tokens=2)
        start = m.settle(time.time())  # a scrape after every earlier request
        client = [inference.stream_chat(url, model, f"run {i} " + "word " * 100, max_tokens=8, ignore_eos=True)
                  for i in range(6)]
    end = m.settle(time.time())  # a scrape after the last one
    summary = m.run_summary(start, end)
    assert summary.requests == 6
    assert summary.output_tokens == 48
    assert 0 < summary.ttft_p50_s <= summary.ttft_p90_s <= summary.ttft_p99_s
    client_mean = sum(r.ttft_s for r in client) / len(client)
    assert summary.ttft_mean_s < client_mean  # the frontend's clock never includes the client's side
    assert summary.itl_mean_s > 0


def test_window_has_every_series(graph: LocalTarget, m: metrics.Metrics) -> None:
    with graph.frontend() as url:
        inference.chat_completion(url, graph.bundle.served_model_name, "window", max_tokens=2)
    end = m.settle(time.time()).timestamp()  # a scrape after the request
    window = m.window(end - 30, end)
    assert set(metrics.series_queries("1s")) <= set(window.columns)
    assert (window["requests_per_s"] > 0).any(), window["requests_per_s"]  # the request just sent
    assert window["inflight"].notna().any()


def test_requests_visible_on_the_local_graph(m: metrics.Metrics) -> None:
    report = m.check_requests_visible()
    assert report.ok, repr(report)
    assert "requests counted" in report.rows[-1]["detail"]


@pytest.fixture
def empty_prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus that scrapes nothing: what a cluster without the Dynamo PodMonitors looks like."""
    port = pick_port(19190, set())
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1s}\nscrape_configs: []\n")
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        poll(ready, timeout_s=30, what="Prometheus ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_scrape_is_diagnosed_from_prometheus_targets(empty_prometheus: str) -> None:
    report = metrics.Metrics(empty_prometheus).check_requests_visible()
    assert not report.ok
    failure = report.failures[0]
    assert "none of its 0 targets is a Dynamo frontend" in failure["detail"]
    assert "PodMonitor" in failure["fix"] and "release" in failure["fix"]


@pytest.mark.unit
def test_unreachable_prometheus_is_a_failed_check_not_a_crash() -> None:
    report = metrics.Metrics("http://127.0.0.1:9", rate_window="4s").check_requests_visible()
    assert not report.ok and report.failures[0]["check"] == "Prometheus reachable"
    assert math.isnan(metrics.histogram_quantile(0.5, []))
