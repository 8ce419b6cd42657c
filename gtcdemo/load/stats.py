"""AIPerf's statistics of a run, as pure functions of the per-request records (unit-tested without a server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# AIPerf's percentile set (numpy's linear interpolation, population std).
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
STAT_KEYS = tuple(f"p{p}" for p in PERCENTILES) + ("mean", "min", "max", "std")
UNDER_DELIVERED = 0.95  # an open loop that delivered less than this share of its offered rate is flagged


def distribution(values: Sequence[float] | np.ndarray | pd.Series) -> dict[str, float | None]:
    """AIPerf's statistics of one metric: p1..p99 (linear interpolation), mean, min, max, std (population).

    NaNs are ignored; an empty input gives None for every key.
    """
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return dict.fromkeys(STAT_KEYS)
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, float | None] = {f"p{p}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)}
    out.update(mean=float(arr.mean()), min=float(arr.min()), max=float(arr.max()), std=float(arr.std()))
    return out


def itl_seconds(latency_s: Any, ttft_s: Any, output_tokens: Any) -> np.ndarray:
    """(latency - TTFT) / (output tokens - 1) per request; NaN when fewer than 2 tokens (no gap to measure)."""
    lat = np.asarray(latency_s, dtype=float)
    ttft = np.asarray(ttft_s, dtype=float)
    out = np.asarray(output_tokens, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(out >= 2, (lat - ttft) / (out - 1), np.nan)


def run_duration(start: Any, latency_s: Any) -> float:
    """First request sent -> last response received (every request counts, failed ones too); 0 when empty."""
    s = np.asarray(start, dtype=float)
    lat = np.asarray(latency_s, dtype=float)
    if s.size == 0:
        return 0.0
    end = s + np.nan_to_num(lat, nan=0.0)
    return float(end.max() - s.min())


def per_second(count: float, duration_s: float) -> float:
    """A count over the run duration; 0 when nothing ran (no duration)."""
    return float(count) / duration_s if duration_s > 0 else 0.0


def meets_slos(ttft_s: Any, itl_s: Any, slo_ttft_ms: float | None, slo_itl_ms: float | None) -> np.ndarray:
    """Which requests meet every SLO given (a request with no ITL, i.e. one output token, meets the ITL SLO)."""
    ttft = np.asarray(ttft_s, dtype=float)
    ok = np.ones(ttft.shape, dtype=bool)
    if slo_ttft_ms is not None:
        ok &= ttft * 1000 <= slo_ttft_ms
    if slo_itl_ms is not None:
        itl = np.asarray(itl_s, dtype=float)
        ok &= np.isnan(itl) | (itl * 1000 <= slo_itl_ms)
    return ok


def summarize(records: pd.DataFrame, slo_ttft_ms: float | None = None, slo_itl_ms: float | None = None) -> dict:
    """Per-run numbers from per-request records: distributions over successful requests, rates over the duration.

    Goodput is None when no SLO is given (AIPerf reports it only against SLOs).
    """
    ok = records[records["status"] == "ok"] if len(records) else records
    duration = run_duration(records["start"], records["latency_s"]) if len(records) else 0.0
    out_tokens = float(pd.to_numeric(ok["output_tokens"], errors="coerce").fillna(0).sum()) if len(ok) else 0.0
    goodput = None
    if slo_ttft_ms is not None or slo_itl_ms is not None:
        good = int(meets_slos(ok["ttft_s"], ok["itl_s"], slo_ttft_ms, slo_itl_ms).sum()) if len(ok) else 0
        goodput = per_second(good, duration)

    def col(name: str) -> np.ndarray:
        return pd.to_numeric(ok[name], errors="coerce").to_numpy(dtype=float) if len(ok) else np.array([])

    return {
        "requests": len(records),
        "ok_count": len(ok),
        "error_count": len(records) - len(ok),
        "duration_s": duration,
        "request_throughput": per_second(len(ok), duration),
        "output_token_throughput": per_second(out_tokens, duration),
        "goodput": goodput,
        "ttft_ms": distribution(col("ttft_s") * 1000),
        "itl_ms": distribution(col("itl_s") * 1000),
        "latency_ms": distribution(col("latency_s") * 1000),
        "input_tokens_mean": distribution(col("input_tokens"))["mean"],
        "output_tokens_mean": distribution(col("output_tokens"))["mean"],
        "cached_tokens_mean": distribution(col("cached_tokens"))["mean"],
    }


def delivery(records: pd.DataFrame, offered_rate: float | None, max_concurrency: int | None) -> dict:
    """What reached the server against what was offered, and what the in-flight cap did.

    ``delivered_rate`` counts sends, failed ones too (they reached the server): (requests - 1) / (last send - first
    send). ``cap_waits`` is None without a cap; ``cap_wait_ms`` is over the arrivals that waited. ``send_lag_ms`` is
    the client's own lateness after an arrival's due time (event loop, CPU), beyond any cap wait.
    """
    starts = records["start"].to_numpy(dtype=float) if len(records) else np.array([])
    span = float(starts.max() - starts.min()) if starts.size >= 2 else 0.0
    delivered = (starts.size - 1) / span if span > 0 else None
    ratio = delivered / offered_rate if delivered is not None and offered_rate else None

    def col(name: str) -> np.ndarray:
        if name not in records or not len(records):
            return np.array([])
        return pd.to_numeric(records[name], errors="coerce").to_numpy(dtype=float)

    waits = col("wait_s")
    waited = waits[waits > 0]
    lag = distribution(col("send_lag_s") * 1000)
    new = records["new_connection"].dropna() if "new_connection" in records else pd.Series(dtype=bool)
    return {
        "offered_rate": offered_rate, "delivered_rate": delivered, "delivered_ratio": ratio,
        "under_delivered": bool(ratio is not None and ratio < UNDER_DELIVERED),
        "cap_waits": int(waited.size) if max_concurrency is not None else None,
        "cap_wait_ms": {"p50": float(np.median(waited)) * 1000 if waited.size else None,
                        "max": float(waited.max()) * 1000 if waited.size else None},
        "send_lag_ms": {k: lag[k] for k in ("p50", "p99", "max")},
        "new_connections": int(new.astype(bool).sum()) if len(new) else None,
    }
