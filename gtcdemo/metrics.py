"""Dynamo's frontend metrics from Prometheus, as tidy DataFrames (through prometheus-api-client).

Two kinds of numbers come out of here and they are never mixed up:
- time series over a window (``rate`` over a short window: what a dashboard shows while load runs), and
- the summary of one load run, computed by differencing the histogram counters at the run's start and end
  (no ``rate`` extrapolation), with quantiles interpolated inside buckets exactly as ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from .clock import wait_until
from .errors import DeploymentError
from .results import CheckReport

TTFT = "dynamo_frontend_time_to_first_token_seconds"
ITL = "dynamo_frontend_inter_token_latency_seconds"
REQUESTS = "dynamo_frontend_requests_total"
OUTPUT_TOKENS = "dynamo_frontend_output_tokens_total"
CACHED = "dynamo_frontend_cached_tokens"
INFLIGHT = "dynamo_frontend_inflight_requests"
QUEUED = "dynamo_frontend_queued_requests"


def _ts(value: float | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, tz=UTC)


def frontend_targets(targets: list[dict]) -> list[dict]:
    """The Dynamo frontends among Prometheus' targets, chosen by what is true on both targets.

    On the cluster the frontend is scraped through the platform chart's PodMonitor ``dynamo-frontend``
    (deploy/helm/charts/platform/components/operator/templates/prometheus.yaml): port ``http``, and a relabeling
    that copies the pod label ``nvidia.com/dynamo-namespace`` into ``dynamo_namespace``. prometheus-operator puts
    the port name into ``endpoint`` and sets ``job="<namespace>/dynamo-frontend"`` (pkg/prometheus/promcfg.go), so
    the bare ``job="dynamo-frontend"`` never exists there. The local Prometheus labels its targets the same way.
    """
    return [t for t in targets
            if t["labels"].get("endpoint") == "http" and t["labels"].get("dynamo_namespace")]


def scrape_targets(url: str, timeout_s: float = 5.0) -> list[dict]:
    """Prometheus' active scrape targets (``/api/v1/targets``), each with its labels, health and last scrape.

    The one reader of that endpoint: an unreachable Prometheus or an answer of another shape is a DeploymentError.
    """
    try:
        return httpx.get(f"{url}/api/v1/targets", params={"state": "active"},
                         timeout=timeout_s).json()["data"]["activeTargets"]
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        raise DeploymentError(f"Prometheus at {url} did not answer /api/v1/targets: {exc}",
                              fix="is Prometheus running? `gtcdemo status` (cluster: its port-forward)") from None


def series_queries(window: str) -> dict[str, str]:
    """The PromQL behind each time series the notebooks plot (``window`` is the rate window, e.g. "5s")."""
    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (rate({TTFT}_bucket[{window}])))"
    return {
        "ttft_p50_s": quantile(0.50),
        "ttft_p90_s": quantile(0.90),
        "ttft_p95_s": quantile(0.95),
        "ttft_p99_s": quantile(0.99),
        "ttft_mean_s": f"sum(rate({TTFT}_sum[{window}])) / sum(rate({TTFT}_count[{window}]))",
        "itl_mean_s": f"sum(rate({ITL}_sum[{window}])) / sum(rate({ITL}_count[{window}]))",
        "requests_per_s": f'sum(rate({REQUESTS}{{status="success"}}[{window}]))',
        "output_tokens_per_s": f"sum(rate({OUTPUT_TOKENS}[{window}]))",
        "cached_tokens_per_s": f"sum(rate({CACHED}_sum[{window}]))",
        "inflight": f"sum({INFLIGHT})",
        "queued": f"sum({QUEUED})",
    }


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on (upper bound, cumulative count) pairs: linear inside the bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound  # the quantile lies above the last finite bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return buckets[-1][0]


def bucket_ratios(bounds: list[float]) -> list[float]:
    """Ratios of adjacent finite bucket bounds: how coarse a histogram is (2.0 = each bucket twice the last)."""
    finite = sorted(b for b in bounds if b > 0 and not math.isinf(b))
    return [b / a for a, b in zip(finite, finite[1:], strict=False)]


@dataclass
class RunSummary:
    """Server-side figures for one load run: counter differences between its start and end."""

    start: datetime
    end: datetime
    requests: float
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    itl_mean_s: float
    output_tokens: float
    cached_tokens: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def client_vs_server(client: dict, server: RunSummary) -> pd.DataFrame:
    """The same run's TTFT from both clocks, in ms: client = AIPerf's definition, server = the frontend histogram."""
    ttft = client["ttft_ms"]
    rows = {
        "p50": (ttft["p50"], server.ttft_p50_s * 1000), "p90": (ttft["p90"], server.ttft_p90_s * 1000),
        "p99": (ttft["p99"], server.ttft_p99_s * 1000), "mean": (ttft["mean"], server.ttft_mean_s * 1000),
    }
    frame = pd.DataFrame(rows, index=["client_ms", "server_ms"]).T
    frame["gap_ms"] = frame["client_ms"] - frame["server_ms"]
    frame.index.name = "TTFT"
    return frame.round(1)


class Metrics:
    """Queries against one Prometheus (local, or port-forwarded from the cluster)."""

    def __init__(self, url: str, rate_window: str | None = None) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url = url.rstrip("/")
        # No connection retries: a dead Prometheus must be explained at once, not after ~6 s of back-off per call.
        retry = Retry(total=3, connect=0, backoff_factor=0.5, status_forcelist=[408, 429, 500, 502, 503, 504])
        self.prom = PrometheusConnect(url=self.url, disable_ssl=True, retry=retry)
        self.rate_window = rate_window or self._auto_window()

    def _auto_window(self) -> str:
        """Four scrape intervals: the shortest window ``rate`` answers reliably in."""
        try:
            config = httpx.get(f"{self.url}/api/v1/status/config", timeout=5).json()["data"]["yaml"]
            interval = next((line.split(":", 1)[1].strip() for line in config.splitlines()
                             if line.strip().startswith("scrape_interval:")), "15s")
        except (httpx.HTTPError, KeyError, ValueError):
            interval = "15s"
        seconds = pd.Timedelta(interval).total_seconds()
        return f"{max(4, math.ceil(4 * seconds))}s"

    # -- instant and range queries -------------------------------------------------------------------------------
    def query(self, promql: str, at: float | datetime | None = None) -> list[dict]:
        params = {"time": _ts(at).timestamp()} if at is not None else None
        try:
            return self.prom.custom_query(promql, params=params)
        except Exception as exc:  # requests' connection errors, Prometheus' 4xx
            raise DeploymentError(f"Prometheus at {self.url} did not answer {promql!r}: {exc}",
                                  fix="is Prometheus running? `gtcdemo status` (cluster: the port-forward)") from None

    def range(self, promql: str, start: float | datetime, end: float | datetime, step: str = "1s") -> pd.DataFrame:
        """A tidy frame: one row per (time, series) with the series' labels as columns."""
        try:
            result = self.prom.custom_query_range(promql, start_time=_ts(start), end_time=_ts(end), step=step)
        except Exception as exc:
            raise DeploymentError(f"Prometheus at {self.url} did not answer a range query: {exc}",
                                  fix="is Prometheus running? `gtcdemo status`") from None
        rows = []
        for series in result:
            labels = series.get("metric", {})
            for ts, value in series.get("values", []):
                rows.append({"time": pd.Timestamp(float(ts), unit="s", tz="UTC"), "value": float(value), **labels})
        return pd.DataFrame(rows, columns=["time", "value", *sorted({k for s in result for k in s.get("metric", {})})])

    def window(self, start: float | datetime, end: float | datetime, step: str = "1s") -> pd.DataFrame:
        """Every dashboard series over [start, end] as one wide frame indexed by time (NaN where no data)."""
        frames = {}
        for name, promql in series_queries(self.rate_window).items():
            frame = self.range(promql, start, end, step)
            frames[name] = frame.set_index("time")["value"] if not frame.empty else pd.Series(dtype=float)
        wide = pd.DataFrame(frames)
        wide.index.name = "time"
        return wide.sort_index()

    # -- one run -----------------------------------------------------------------------------------------------
    def _buckets(self, metric: str, at: datetime) -> list[tuple[float, float]]:
        result = self.query(f"sum by (le) ({metric}_bucket)", at=at)
        return [(float(r["metric"]["le"]), float(r["value"][1])) for r in result]  # "+Inf" -> inf

    def _scalar(self, promql: str, at: datetime, missing: float = 0.0) -> float:
        result = self.query(promql, at=at)
        return float(result[0]["value"][1]) if result else missing

    def run_summary(self, start: float | datetime, end: float | datetime) -> RunSummary:
        """Server-side TTFT/ITL/throughput of one run from counter differences (end - start)."""
        start, end = _ts(start), _ts(end)

        def diff_buckets(metric: str) -> list[tuple[float, float]]:
            before = dict(self._buckets(metric, start))
            return [(le, count - before.get(le, 0.0)) for le, count in self._buckets(metric, end)]

        def diff(promql: str) -> float:
            # A counter absent at the start had not counted yet (0); absent at the end, its series went stale (the
            # frontend down): unknown, not 0, which would make the run's count negative.
            return self._scalar(promql, end, missing=math.nan) - self._scalar(promql, start)

        ttft = diff_buckets(TTFT)
        count = diff(f"sum({TTFT}_count)")
        itl_count = diff(f"sum({ITL}_count)")
        return RunSummary(
            start=start, end=end, requests=diff(f'sum({REQUESTS}{{status="success"}})'),
            ttft_mean_s=diff(f"sum({TTFT}_sum)") / count if count else math.nan,
            ttft_p50_s=histogram_quantile(0.5, ttft), ttft_p90_s=histogram_quantile(0.9, ttft),
            ttft_p99_s=histogram_quantile(0.99, ttft),
            itl_mean_s=diff(f"sum({ITL}_sum)") / itl_count if itl_count else math.nan,
            output_tokens=diff(f"sum({OUTPUT_TOKENS})"), cached_tokens=diff(f"sum({CACHED}_sum)"))

    def settle(self, after: float | datetime, timeout_s: float = 120.0) -> datetime:
        """Until every frontend target was scraped after ``after``; returns that scrape time.

        Counters read before that scrape would miss the end of a run.
        """
        after = _ts(after)
        scraped = wait_until(lambda: self._scraped_since(after), timeout_s=timeout_s, interval_s=0.25)
        if scraped is None:
            raise DeploymentError(f"Prometheus has not scraped the frontend since {after:%H:%M:%S}",
                                  fix="check its targets (`check_requests_visible`) and scrape interval")
        return scraped

    def _scraped_since(self, after: datetime) -> datetime | None:
        """The oldest last scrape of the frontend targets when every one of them is at or after ``after``."""
        # The active targets, not `up` series: after a redeploy the old address' series stays visible for
        # Prometheus' 5-minute lookback and would never be scraped again.
        frontends = frontend_targets(self.targets())  # a Prometheus that does not answer is reported at once
        scrapes = [datetime.fromisoformat(t["lastScrape"].replace("Z", "+00:00")) for t in frontends
                   if not t["lastScrape"].startswith("0001")]
        if frontends and len(scrapes) == len(frontends) and min(scrapes) >= after:
            return min(scrapes)
        return None

    def targets(self) -> list[dict]:
        """Prometheus' active scrape targets (``/api/v1/targets``)."""
        return scrape_targets(self.url)

    def bucket_bounds(self, metric: str = TTFT) -> list[float]:
        return sorted(le for le, _ in self._buckets(metric, datetime.now(UTC)))

    # -- the checklist's last item -------------------------------------------------------------------------------
    def check_requests_visible(self) -> CheckReport:
        """Is `dynamo_frontend_requests_total` in Prometheus? If not, why not (from Prometheus' own targets)."""
        report = CheckReport(f"metrics in Prometheus ({self.url})")
        try:
            series = self.query(REQUESTS)
        except DeploymentError as exc:
            report.add("Prometheus reachable", False, exc.problem, exc.fix or "")
            return report
        report.add("Prometheus reachable", True, self.url)
        if series:
            total = sum(float(s["value"][1]) for s in series)
            report.add(REQUESTS, True, f"{len(series)} series, {total:.0f} requests counted")
            return report
        targets = self.targets()
        frontend = frontend_targets(targets)
        if not frontend:
            report.add(REQUESTS, False, f"not in Prometheus, and none of its {len(targets)} targets is a Dynamo "
                       "frontend: nothing scrapes it",
                       "the dynamo-frontend PodMonitor is missing or not selected: it exists only if the Prometheus "
                       "Operator CRDs were installed before the Dynamo platform chart, and kube-prometheus-stack "
                       "selects only monitors with its `release` label (kubectl get podmonitors -A)")
        elif all(t["health"] != "up" for t in frontend):
            errors = "; ".join(sorted({t.get("lastError", "") for t in frontend}))
            report.add(REQUESTS, False, f"the frontend target(s) are down: {errors}",
                       "check the frontend pod/process and that its metrics port is reachable")
        else:
            report.add(REQUESTS, False, "the frontend is scraped but has counted no request yet",
                       "send one: `gtcdemo test-inference`, then look again")
        return report
