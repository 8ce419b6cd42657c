"""PromQL building and histogram arithmetic (pure)."""

from __future__ import annotations

import math

import pytest

from gtcdemo import metrics


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.4, 40.0), (math.inf, 40.0)]
    assert metrics.histogram_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 10: top of the first bucket
    assert metrics.histogram_quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20: halfway through (0.1, 0.2]
    assert metrics.histogram_quantile(0.875, buckets) == pytest.approx(0.3)
    assert metrics.histogram_quantile(1.0, buckets) == pytest.approx(0.4)


def test_histogram_quantile_edge_cases() -> None:
    assert math.isnan(metrics.histogram_quantile(0.5, []))
    assert math.isnan(metrics.histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert metrics.histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 100.0)]) == 0.1  # above the last finite bound


def test_bucket_ratios() -> None:
    assert metrics.bucket_ratios([0, 0.1, 0.2, 0.4, math.inf]) == pytest.approx([2.0, 2.0])


def test_series_queries_use_the_window_and_the_frontend_metrics() -> None:
    queries = metrics.series_queries("5s")
    assert queries["ttft_p90_s"] == ("histogram_quantile(0.9, sum by (le) "
                                     "(rate(dynamo_frontend_time_to_first_token_seconds_bucket[5s])))")
    assert queries["output_tokens_per_s"] == "sum(rate(dynamo_frontend_output_tokens_total[5s]))"
    assert 'status="success"' in queries["requests_per_s"]
    assert set(queries) >= {"ttft_p50_s", "ttft_p99_s", "ttft_mean_s", "itl_mean_s", "inflight", "queued",
                            "cached_tokens_per_s"}


def _target(**labels: str) -> dict:
    return {"labels": labels, "lastScrape": "2026-11-29T06:00:00Z", "health": "up"}


def test_frontend_targets_are_chosen_as_the_cluster_labels_them() -> None:
    # On the cluster prometheus-operator labels the platform chart's PodMonitor targets job="<ns>/<monitor>",
    # endpoint=<port name>, plus Dynamo's dynamo_namespace relabeling; other pods' targets have no dynamo_namespace.
    frontend = _target(job="dynamo-system/dynamo-frontend", endpoint="http", namespace="dynamo-workload",
                       pod="gtc-demo-0-frontend-abcde", container="main", dynamo_namespace="dynamo-workload-gtc-demo")
    worker = _target(job="dynamo-system/dynamo-worker", endpoint="system", namespace="dynamo-workload",
                     pod="gtc-demo-0-decode-x", container="main", dynamo_namespace="dynamo-workload-gtc-demo")
    grafana = _target(job="monitoring/grafana", endpoint="http", namespace="monitoring", pod="grafana-0")
    assert metrics.frontend_targets([grafana, worker, frontend]) == [frontend]


def _frontend(last_scrape: str) -> dict:
    return {"labels": {"endpoint": "http", "dynamo_namespace": "dynamo-workload-gtc-demo"}, "health": "up",
            "lastScrape": last_scrape}


def test_settle_waits_for_a_scrape_of_every_frontend_after_the_given_time(monkeypatch) -> None:
    from datetime import UTC, datetime

    from gtcdemo.errors import DeploymentError

    m = object.__new__(metrics.Metrics)  # no Prometheus: its targets are scripted below
    answers = iter([[], [_frontend("0001-01-01T00:00:00Z")],
                    [_frontend("2026-01-01T00:00:05Z"), _frontend("2026-01-01T00:00:09Z")]])

    def targets():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(m, "targets", targets)
    assert m.settle(datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC), timeout_s=10) == datetime(2026, 1, 1, 0, 0, 5,
                                                                                        tzinfo=UTC)
    monkeypatch.setattr(m, "targets", lambda: [_frontend("2026-01-01T00:00:05Z")])
    with pytest.raises(DeploymentError, match=r"Prometheus has not scraped the frontend since 00:00:06"):
        m.settle(datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC), timeout_s=0.3)

    def gone():
        raise DeploymentError("Prometheus at http://127.0.0.1:9 did not answer /api/v1/targets")

    monkeypatch.setattr(m, "targets", gone)  # a Prometheus that is not there is said at once, not after the timeout
    with pytest.raises(DeploymentError, match="did not answer"):
        m.settle(datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC), timeout_s=30)
