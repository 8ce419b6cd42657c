"""Load generation against an OpenAI-compatible endpoint, measured the way NVIDIA AIPerf measures.

Why our own client and not AIPerf itself: the demo runs on a 2-core machine where the server being measured shares
the CPU, and a notebook needs a result object it can show. So the client is deliberately cheap: one shared
``httpx.AsyncClient`` whose connections come from a free list (httpcore's pool scans every connection per request),
a chunk's JSON is parsed only until the first content arrives, later chunks are only searched as bytes, the final
``usage`` chunk is parsed once, and ``run`` uses uvloop when installed. Definitions (TTFT, ITL, throughput, goodput,
percentiles) are AIPerf's, so numbers compare with the tools people trust:

- TTFT: send -> first chunk with non-empty content. Latency: send -> last chunk.
- ITL: (latency - TTFT) / (output tokens - 1), one mean per request.
- Request / output-token throughput and goodput: counts / duration, duration = first send -> last response.

Closed loop (``concurrency``) and open loop (``request_rate``, Poisson arrivals, optional ``max_concurrency``),
warm-up excluded, synthetic prompts of an exact token length with an optional shared prefix (to make prefix
caching and KV-aware routing visible). Errors are counted, never fatal; Ctrl-C keeps what was measured.

An open loop reports the rate it offered and the rate that reached the server (sends per second), flags a run that
delivered less than 95% of it, and says how many arrivals waited for ``max_concurrency`` and how long. Connections
are AIPerf's: ``pooled`` (kept alive, the least recently used reused first, as aiohttp's pool) or ``never`` (one
new connection per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import html
import json
import math
import numbers
import os
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import numpy as np
import pandas as pd

from .errors import ConfigError, ValidationErrors

# AIPerf's percentile set (numpy's linear interpolation, population std).
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
STAT_KEYS = tuple(f"p{p}" for p in PERCENTILES) + ("mean", "min", "max", "std")
COLUMNS = ["index", "request_id", "start", "ttft_s", "latency_s", "itl_s", "input_tokens", "output_tokens",
           "cached_tokens", "status", "http_status", "error", "wait_s", "send_lag_s", "new_connection"]
# Open loop, per request: wait_s = time its arrival waited for a free in-flight slot (max_concurrency; 0 when one
# was free, NaN without a cap), send_lag_s = due time -> sent, beyond that wait (the client's own lateness);
# both NaN in a closed loop. new_connection: the request opened the connection it went on.
_DELIVERY_COLUMNS = ("wait_s", "send_lag_s", "new_connection")  # absent from results saved before they existed
UNDER_DELIVERED = 0.95  # an open loop that delivered less than this share of its offered rate is flagged
CONNECTION_REUSE = ("pooled", "never")  # AIPerf's --connection-reuse-strategy names
_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens")
# Identity encoding: the stream is read raw (no decompression layer), and SSE is not worth compressing.
_HEADERS = {"content-type": "application/json", "accept": "text/event-stream", "accept-encoding": "identity"}


# --------------------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------------------
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer: closed loop (``concurrency``) or open loop (``request_rate``), and what prompts.

    Stops at ``num_requests`` or ``duration_s``, whichever comes first (requests in flight at the deadline are
    finished). ``warmup_requests`` run first, closed loop at the same concurrency (an open loop's
    ``max_concurrency``, else 1), and are excluded from the results.
    """

    model: str
    concurrency: int | None = None
    request_rate: float | None = None
    max_concurrency: int | None = None
    duration_s: float | None = None
    num_requests: int | None = None
    warmup_requests: int = 0
    input_tokens_mean: int = 200
    input_tokens_std: float = 0.0
    output_tokens: int = 32
    shared_prefix_fraction: float = 0.0
    seed: int = 0
    timeout_s: float = 60.0
    slo_ttft_ms: float | None = None
    slo_itl_ms: float | None = None
    tokenizer: str | None = None  # tokenizer.json; default: the served model's, in the local model folder
    connection_reuse: str = "pooled"  # AIPerf's: "pooled" (kept alive) or "never" (a new connection per request)

    def __post_init__(self) -> None:
        errors = [ConfigError(problem, where="LoadSpec", fix=fix) for problem, fix in self._problems()]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ValidationErrors(errors)

    def _problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not isinstance(self.model, str) or not self.model:
            out.append((f"model must be the served model name, got {self.model!r}",
                        "use the target's bundle.served_model_name (see `gtcdemo models`)"))
        if self.concurrency is None and self.request_rate is None:
            out.append(("give concurrency (closed loop) or request_rate (open loop)",
                        "e.g. LoadSpec(model, concurrency=4, num_requests=100)"))
        if self.concurrency is not None and self.request_rate is not None:
            out.append(("concurrency and request_rate exclude each other",
                        "closed loop: concurrency only; open loop: request_rate (cap it with max_concurrency)"))
        if self.concurrency is not None and not (_is_int(self.concurrency) and self.concurrency >= 1):
            out.append((f"concurrency must be >= 1 (a whole number of requests in flight), got {self.concurrency!r}",
                        "pass e.g. concurrency=1 for the unloaded latency, or more to load the server"))
        if self.request_rate is not None and not (_is_number(self.request_rate) and self.request_rate > 0):
            out.append((f"request_rate must be > 0 requests per second, got {self.request_rate!r}",
                        "pass e.g. request_rate=2.0"))
        if self.max_concurrency is not None:
            if self.request_rate is None:
                out.append(("max_concurrency only caps an open loop (request_rate)",
                            "for a closed loop set concurrency instead"))
            elif not (_is_int(self.max_concurrency) and self.max_concurrency >= 1):
                out.append((f"max_concurrency must be >= 1, got {self.max_concurrency!r}",
                            "pass a whole number, or None for no cap"))
        if self.duration_s is None and self.num_requests is None:
            out.append(("give num_requests or duration_s (or both: the run stops at whichever comes first)",
                        "e.g. num_requests=100 or duration_s=30"))
        if self.duration_s is not None and not (_is_number(self.duration_s) and self.duration_s > 0):
            out.append((f"duration_s must be > 0 s, got {self.duration_s!r}", "pass e.g. duration_s=30"))
        if self.num_requests is not None and not (_is_int(self.num_requests) and self.num_requests >= 1):
            out.append((f"num_requests must be >= 1, got {self.num_requests!r}", "pass e.g. num_requests=100"))
        if not (_is_int(self.warmup_requests) and self.warmup_requests >= 0):
            out.append((f"warmup_requests must be >= 0, got {self.warmup_requests!r}", "pass 0 for no warm-up"))
        if not (_is_int(self.input_tokens_mean) and self.input_tokens_mean >= 1):
            out.append((f"input_tokens_mean must be >= 1 token, got {self.input_tokens_mean!r}",
                        "pass e.g. input_tokens_mean=200"))
        if not (_is_number(self.input_tokens_std) and self.input_tokens_std >= 0):
            out.append((f"input_tokens_std must be >= 0, got {self.input_tokens_std!r}",
                        "pass 0 for prompts of exactly input_tokens_mean tokens"))
        if not (_is_int(self.output_tokens) and self.output_tokens >= 1):
            out.append((f"output_tokens must be >= 1, got {self.output_tokens!r}",
                        "pass e.g. output_tokens=32 (sent as max_tokens with ignore_eos)"))
        if not (_is_number(self.shared_prefix_fraction) and 0 <= self.shared_prefix_fraction <= 1):
            out.append((f"shared_prefix_fraction must be between 0 and 1, got {self.shared_prefix_fraction!r}",
                        "0 = every prompt unique; 0.5 = the first half of every prompt is one shared system prompt"))
        if not _is_int(self.seed):
            out.append((f"seed must be a whole number, got {self.seed!r}", "pass e.g. seed=0"))
        if not (_is_number(self.timeout_s) and self.timeout_s > 0):
            out.append((f"timeout_s must be > 0 s, got {self.timeout_s!r}", "pass e.g. timeout_s=60"))
        for name in ("slo_ttft_ms", "slo_itl_ms"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                out.append((f"{name} must be > 0 ms or None, got {value!r}", f"pass e.g. {name}=100"))
        if self.connection_reuse not in CONNECTION_REUSE:
            out.append((f"connection_reuse must be 'pooled' or 'never', got {self.connection_reuse!r}",
                        "'pooled' keeps connections alive (AIPerf's default); 'never' opens one per request"))
        if self.tokenizer is not None and not isinstance(self.tokenizer, str | Path):
            out.append((f"tokenizer must be the path of a tokenizer.json, got {self.tokenizer!r}",
                        "pass the model's tokenizer.json, or None for the local model folder's"))
        return out

    @property
    def mode(self) -> str:
        """``closed`` (fixed concurrency) or ``open`` (request rate)."""
        return "closed" if self.concurrency is not None else "open"

    @property
    def level(self) -> float:
        """The load level a sweep varies: the concurrency, or the request rate."""
        return float(self.concurrency if self.concurrency is not None else self.request_rate)  # type: ignore[arg-type]

    @property
    def in_flight_limit(self) -> int | None:
        """Most requests in flight at once (None: an uncapped open loop)."""
        return self.concurrency if self.concurrency is not None else self.max_concurrency

    def label(self) -> str:
        new = ", new connection per request" if self.connection_reuse == "never" else ""
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}{new}"
        cap = f", max {self.max_concurrency} in flight" if self.max_concurrency else ""
        return f"rate {self.request_rate:g}/s{cap}{new}"

    def at_level(self, level: float) -> LoadSpec:
        """The same spec at another concurrency (closed loop) or request rate (open loop)."""
        if self.concurrency is not None:
            if not (isinstance(level, numbers.Real) and float(level).is_integer()):
                raise ConfigError(f"concurrency must be >= 1 (a whole number), got sweep level {level!r}",
                                  where="sweep levels", fix="use whole numbers for a closed-loop sweep")
            return dataclasses.replace(self, concurrency=int(level))
        if not isinstance(level, numbers.Real):
            raise ConfigError(f"request_rate must be > 0 requests per second, got sweep level {level!r}",
                              where="sweep levels", fix="use numbers for an open-loop sweep")
        return dataclasses.replace(self, request_rate=float(level))


def check_context(spec: LoadSpec, limit: Any = None, where: str = "LoadSpec.input_tokens_mean") -> None:
    """Refuse, before anything is sent, a spec whose longest prompt + output exceeds the model's context (``limit``:
    an engine_config.ContextLimit; default the model's own), which the engine would refuse request by request."""
    from .engine_config import context_limit
    from .inference import check_context as check_request

    longest = max(1, int(math.ceil(spec.input_tokens_mean + 5 * spec.input_tokens_std)))  # as PromptSource draws
    check_request(longest, spec.output_tokens, limit or context_limit(None, spec.model), where)


# --------------------------------------------------------------------------------------------------------------
# Synthetic prompts
# --------------------------------------------------------------------------------------------------------------
def default_tokenizer_path(model: str) -> Path:
    """The served model's tokenizer.json: the local model folder (as the local graph mounts it)."""
    from . import modeldir
    from .local import pvc_root

    candidate = pvc_root() / "model-nfs-pvc" / model / "tokenizer.json"
    if candidate.is_file():
        return candidate
    if model == modeldir.SERVED_MODEL_NAME:
        return modeldir.ensure_model_dir() / "tokenizer.json"  # the same small tokenizer the local graph uses
    raise ConfigError(f"no tokenizer.json for model {model!r} (looked in {candidate.parent})",
                      where="LoadSpec.tokenizer", fix="pass LoadSpec(tokenizer='/path/to/tokenizer.json')")


@functools.lru_cache(maxsize=4)
def single_token_words(tokenizer_path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Words that are exactly one token after a space, and those that are one token also at the start of a text.

    A text made of such words is exactly as many tokens as words, so prompt lengths are exact without encoding
    each prompt. Sorted, so the same seed gives the same prompts on every machine.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    pieces = tok.decode_batch([[i] for i in range(tok.get_vocab_size())], skip_special_tokens=True)
    candidates = sorted({p[1:] for p in pieces if len(p) >= 3 and p[0] == " " and p[1:].isascii()
                         and p[1:].isalpha()})
    spaced = [w for w, e in zip(candidates, tok.encode_batch([" " + w for w in candidates],
                                                             add_special_tokens=False), strict=True)
              if len(e.ids) == 1]
    first = [w for w, e in zip(spaced, tok.encode_batch(spaced, add_special_tokens=False), strict=True)
             if len(e.ids) == 1]
    if len(spaced) < 50 or not first:
        raise ConfigError(f"{tokenizer_path} has too few whole-word tokens ({len(spaced)}) to build prompts from",
                          where="LoadSpec.tokenizer", fix="pass the served model's own tokenizer.json")
    return tuple(spaced), tuple(first)


class PromptSource:
    """Request bodies with prompts of a given token length, reproducible from (seed, phase, index).

    With ``shared_prefix_fraction`` f, the first f of each prompt's tokens is a system prompt cut from one long
    shared text (so every request shares it, block for block); the rest is a user message unique to the request.
    """

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        path = spec.tokenizer or str(default_tokenizer_path(spec.model))
        if not Path(path).is_file():
            raise ConfigError(f"tokenizer file {path} does not exist", where="LoadSpec.tokenizer",
                              fix="pass the served model's tokenizer.json, or None for the local model folder's")
        self.words, self.first_words = single_token_words(str(path))
        self.max_len = max(1, int(math.ceil(spec.input_tokens_mean + 5 * spec.input_tokens_std)))
        rng = random.Random(f"gtcdemo-load:{spec.seed}:prefix")
        shared_len = int(math.ceil(spec.shared_prefix_fraction * self.max_len))
        self._shared = [rng.choice(self.first_words)] + [" " + w for w in rng.choices(self.words, k=shared_len)]
        self._head = (f'{{"model":{json.dumps(spec.model)},"max_tokens":{spec.output_tokens},"ignore_eos":true,'
                      f'"stream":true,"stream_options":{{"include_usage":true}},"messages":')

    def length(self, rng: random.Random) -> int:
        if self.spec.input_tokens_std == 0:
            return self.spec.input_tokens_mean
        return min(self.max_len, max(1, round(rng.gauss(self.spec.input_tokens_mean, self.spec.input_tokens_std))))

    def messages(self, index: int, phase: str = "run") -> list[dict[str, str]]:
        """The chat messages of request ``index``: their content is exactly the drawn number of tokens."""
        rng = random.Random(f"gtcdemo-load:{self.spec.seed}:{phase}:{index}")
        n = self.length(rng)
        n_shared = min(n, round(self.spec.shared_prefix_fraction * n))
        out = []
        if n_shared:
            out.append({"role": "system", "content": "".join(self._shared[:n_shared])})
        if n - n_shared:
            words = rng.choices(self.words, k=n - n_shared - 1)
            out.append({"role": "user", "content": rng.choice(self.first_words) + "".join(" " + w for w in words)})
        return out

    def body(self, index: int, phase: str = "run") -> bytes:
        """The JSON request body (ignore_eos at the top level: Dynamo 1.6 rejects nvext.ignore_eos)."""
        return (self._head + json.dumps(self.messages(index, phase)) + "}").encode()


# --------------------------------------------------------------------------------------------------------------
# The open-loop schedule
# --------------------------------------------------------------------------------------------------------------
def arrival_offsets(rate: float, num_requests: int | None, duration_s: float | None, seed: int) -> np.ndarray:
    """When each open-loop request is due, in seconds from the start: Poisson arrivals at exactly ``rate``.

    The first is due at once; the n - 1 gaps are AIPerf's (seeded exponential draws, ``aiperf/timing/
    intervals.py``), rescaled to add up to (n - 1) / rate: a Poisson process conditioned on its count over that
    span (the arrivals between the first and the last are sorted uniform draws). Why: unconditioned, 200 arrivals
    miss their rate by +-7% (1/sqrt(n)) by chance alone, which would read as the client under- or over-delivering;
    so a client that keeps this schedule delivers exactly ``rate`` = (requests - 1) / (last send - first send).
    n is ``num_requests``, or rate x ``duration_s`` when that is fewer. The schedule never depends on the server:
    an arrival that waits for a free in-flight slot moves no other arrival.
    """
    counts = [num_requests] if num_requests is not None else []
    if duration_s is not None:
        counts.append(max(1, round(rate * duration_s)))
    n = min(counts)
    rng = random.Random(f"gtcdemo-load:{seed}:arrivals")
    ends = np.cumsum([0.0] + [rng.expovariate(1.0) for _ in range(n - 1)])
    return ends * ((n - 1) / rate / ends[-1]) if n > 1 else ends


# --------------------------------------------------------------------------------------------------------------
# Pure statistics (unit-tested without a server)
# --------------------------------------------------------------------------------------------------------------
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


def records_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """Rows as the client records them (ITL left out) -> the records DataFrame, with AIPerf's ITL added."""
    base = [c for c in COLUMNS if c != "itl_s"]
    frame = pd.DataFrame.from_records(list(rows), columns=base)
    for name in _TOKEN_COLUMNS:
        frame[name] = pd.array(frame[name], dtype="Int64")
    frame["http_status"] = frame["http_status"].astype("int64")
    frame["index"] = frame["index"].astype("int64")
    for name in ("start", "ttft_s", "latency_s", "wait_s", "send_lag_s"):
        frame[name] = frame[name].astype(float)
    frame["new_connection"] = pd.array(frame["new_connection"], dtype="boolean")
    itl = itl_seconds(frame["latency_s"], frame["ttft_s"],
                      frame["output_tokens"].astype("Float64").to_numpy(dtype=float, na_value=np.nan))
    frame.insert(COLUMNS.index("itl_s"), "itl_s", np.where(frame["status"] == "ok", itl, np.nan))
    return frame.sort_values("start", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class LoadResult:
    """Per-request records of one load level, and AIPerf's summary of them."""

    spec: LoadSpec
    records: pd.DataFrame
    started_at: float          # epoch s when the measured phase began
    ended_at: float            # epoch s when it ended
    interrupted: bool = False  # Ctrl-C / cancellation: the records are what was measured until then
    cancelled_requests: int = 0  # in flight when interrupted (not in the records)
    warmup_requests_done: int = 0
    base_url: str = ""
    _summary: dict | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """AIPerf's per-run numbers, plus the load level and when the run happened."""
        if self._summary is None:
            s = self.spec
            self._summary = {
                "mode": s.mode, "concurrency": s.concurrency, "request_rate": s.request_rate,
                "max_concurrency": s.max_concurrency, "connection_reuse": s.connection_reuse,
                **summarize(self.records, s.slo_ttft_ms, s.slo_itl_ms),
                **delivery(self.records, s.request_rate, s.max_concurrency),
                "slo_ttft_ms": s.slo_ttft_ms, "slo_itl_ms": s.slo_itl_ms,
                "started_at": self.started_at, "ended_at": self.ended_at, "interrupted": self.interrupted,
                "cancelled_requests": self.cancelled_requests, "warmup_requests": self.warmup_requests_done,
            }
        return self._summary

    @property
    def errors(self) -> pd.DataFrame:
        """The failed requests (status, HTTP status and error text)."""
        return self.records[self.records["status"] != "ok"]

    def save(self, folder: str | Path) -> Path:
        """Write records.csv and summary.json (with the spec, so ``LoadResult.load`` restores everything)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.records.to_csv(folder / "records.csv", index=False)
        meta = {"base_url": self.base_url, "interrupted": self.interrupted,
                "cancelled_requests": self.cancelled_requests, "warmup_requests_done": self.warmup_requests_done,
                "started_at": self.started_at, "ended_at": self.ended_at}
        doc = {"summary": self.summary(), "spec": dataclasses.asdict(self.spec), "meta": meta}
        tmp = folder / "summary.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
        tmp.replace(folder / "summary.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LoadResult:
        """Read a result written by ``save``."""
        folder = Path(folder)
        try:
            doc = json.loads((folder / "summary.json").read_text())
            records = pd.read_csv(folder / "records.csv", keep_default_na=False, na_values=[""],
                                  dtype={"request_id": str, "status": str, "error": str})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read a load result from {folder}: {exc}", where=str(folder),
                              fix="pass a folder written by LoadResult.save (records.csv + summary.json)") from None
        for name in ("request_id", "error"):
            records[name] = records[name].fillna("")
        for name in _TOKEN_COLUMNS:
            records[name] = pd.array(records[name], dtype="Int64")
        for name in _DELIVERY_COLUMNS:
            if name not in records:  # saved before these columns existed
                records[name] = np.nan
        records["new_connection"] = pd.array(records["new_connection"], dtype="boolean")
        meta = doc["meta"]
        return cls(spec=LoadSpec(**doc["spec"]), records=records[COLUMNS], started_at=meta["started_at"],
                   ended_at=meta["ended_at"], interrupted=meta["interrupted"],
                   cancelled_requests=meta["cancelled_requests"], warmup_requests_done=meta["warmup_requests_done"],
                   base_url=meta["base_url"])

    def _headline(self) -> str:
        s = self.summary()
        flag = ", INTERRUPTED" if self.interrupted else ""
        return (f"{self.spec.label()}: {s['ok_count']} ok, {s['error_count']} errors in {s['duration_s']:.2f} s"
                f"{flag}; {s['request_throughput']:.2f} req/s, {s['output_token_throughput']:.1f} output tok/s"
                + (f", goodput {s['goodput']:.2f} req/s" if s["goodput"] is not None else ""))

    def delivery_note(self) -> str:
        """Open loop: offered vs delivered, flagged below 95%, and what the in-flight cap did; '' for a closed loop."""
        s = self.summary()
        if s["offered_rate"] is None:
            return ""
        delivered = "n/a" if s["delivered_rate"] is None else f"{s['delivered_rate']:.2f} req/s"
        ratio = "" if s["delivered_ratio"] is None else f" ({s['delivered_ratio']:.2f}x)"
        note = f"offered {s['offered_rate']:g} req/s, delivered {delivered}{ratio}"
        if s["under_delivered"]:
            note += f" UNDER-DELIVERED (below {UNDER_DELIVERED:.2f}x of the offered rate)"
        if s["cap_waits"]:
            wait = s["cap_wait_ms"]
            note += (f"; {s['cap_waits']} of {s['requests']} arrivals waited for the in-flight cap of "
                     f"{s['max_concurrency']} (p50 {wait['p50']:.0f} ms, max {wait['max']:.0f} ms)")
        elif s["cap_waits"] == 0:
            note += f"; in-flight cap of {s['max_concurrency']} never reached"
        return note

    def __repr__(self) -> str:
        s = self.summary()

        def fmt(metric: str, key: str) -> str:
            value = s[metric][key]
            return "n/a" if value is None else f"{value:.2f}"

        note = self.delivery_note()
        return (f"LoadResult({self._headline()}; " + (f"{note}; " if note else "")
                + f"TTFT p50 {fmt('ttft_ms', 'p50')} ms p99 {fmt('ttft_ms', 'p99')} ms; "
                f"ITL p50 {fmt('itl_ms', 'p50')} ms; latency p50 {fmt('latency_ms', 'p50')} ms)")

    def _repr_html_(self) -> str:
        s = self.summary()
        keys = ("p50", "p90", "p95", "p99", "mean", "min", "max")
        head = "".join(f"<th>{k}</th>" for k in keys)
        rows = []
        for metric in ("ttft_ms", "itl_ms", "latency_ms"):
            cells = "".join("<td>–</td>" if s[metric][k] is None else f"<td>{s[metric][k]:.2f}</td>" for k in keys)
            rows.append(f"<tr><th>{metric}</th>{cells}</tr>")
        note = self.delivery_note()
        colour = "#b00020" if s["under_delivered"] or s["cap_waits"] else "#333"
        note_html = f"<p style='color:{colour}'>{html.escape(note)}</p>" if note else ""
        return (f"<div><p><b>{html.escape(self._headline())}</b></p>{note_html}<table><tr><th></th>{head}</tr>"
                f"{''.join(rows)}</table></div>")


# --------------------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------------------
def _first_content(lines: list[bytes]) -> tuple[int, str, dict | None, str]:
    """Scan complete SSE lines: (index of the line with the first non-empty content or -1, id, usage, error)."""
    rid, usage, error = "", None, ""
    for i, line in enumerate(lines):
        if line.startswith(b"event:") and b"error" in line:
            error = error or line.decode(errors="replace").strip()
            continue
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            return -1, rid, usage, f"error event: {json.dumps(chunk['error'])[:300]}"
        rid = rid or chunk.get("id") or ""
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                return i, rid, usage, error
    return -1, rid, usage, error


def _stream_error(piece: bytes) -> str:
    """An error event inside a stream piece (called only when the bytes mention 'error'), else ''."""
    event_error = False
    for line in piece.split(b"\n"):
        if line.startswith(b"event:"):
            event_error = b"error" in line
        elif line.startswith(b"data:") and (event_error or b"error" in line):
            with contextlib.suppress(ValueError):
                chunk = json.loads(line[5:])
                if isinstance(chunk, dict) and chunk.get("error"):
                    return f"error event: {json.dumps(chunk['error'])[:300]}"
            if event_error:
                return f"error event: {line[5:].decode(errors='replace').strip()[:300]}"
    return "error event in the stream" if event_error else ""


def _final_usage(tail: bytes) -> dict | None:
    """The ``usage`` object of the last chunk that carries one (parsed once, at the end of the stream)."""
    pos = tail.rfind(b'"usage":')
    if pos < 0:
        return None
    start = tail.rfind(b"data:", 0, pos)
    end = tail.find(b"\n", pos)
    if start < 0:
        return None
    try:
        return json.loads(tail[start + 5:end if end >= 0 else len(tail)]).get("usage")
    except (ValueError, AttributeError):
        return None


class _Released(httpx.AsyncByteStream):
    """A response stream that hands its connection slot back when closed (no extra layer per chunk)."""

    def __init__(self, stream: httpx.AsyncByteStream, owner: _SlotTransport, slot: httpx.AsyncHTTPTransport) -> None:
        self._stream, self._owner, self._slot = stream, owner, slot

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # the inner iterator itself: nothing added per chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._slot is not None:
                slot, self._slot = self._slot, None
                await self._owner.release(slot)


NEW_CONNECTION = "gtcdemo.new_connection"  # response extension: True when the request opened its connection


class _Protocol(asyncio.Protocol):
    """One connection's bytes as the event loop delivers them: a queue of received pieces and who waits for them."""

    def __init__(self) -> None:
        self.pieces: deque[bytes] = deque()
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.drained: asyncio.Future | None = None  # set while the transport's write buffer is full

    def _wake(self, future: asyncio.Future | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self._wake(self.waiter)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake(self.waiter)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof, self.error = True, exc
        self._wake(self.waiter)
        self._wake(self.drained)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake(self.drained)
        self.drained = None


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's network stream on an asyncio transport, without a timeout scope per read or write.

    Why: httpcore's default (anyio) stream enters a cancel scope and an exception map for every read, one read per
    streamed token: that was ~30% of the client's CPU at 32 req/s here (4.3-5.1 s -> 3.4 s per 384 requests of 128
    tokens). The request as a whole runs under ``asyncio.timeout(timeout_s)`` instead, and the connect keeps its own
    timeout. Errors are httpcore's, so httpx maps them as before (ConnectError, ReadError, WriteError).
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        while not p.pieces:
            if p.eof:
                if p.error is not None:
                    raise httpcore.ReadError(f"{type(p.error).__name__}: {p.error}")
                return b""
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                await p.waiter
            finally:
                p.waiter = None
        piece = p.pieces.popleft()
        if len(piece) > max_bytes:
            p.pieces.appendleft(piece[max_bytes:])
            piece = piece[:max_bytes]
        return piece

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if self._protocol.drained is not None:
            await self._protocol.drained

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport = await asyncio.get_running_loop().start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        return _Stream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection that is readable was closed by the server
            return bool(self._protocol.pieces) or self._protocol.eof
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return self._transport.get_extra_info(names[info]) if info in names else None


class _Backend(httpcore.AsyncNetworkBackend):
    """Opens ``_Stream`` connections (TCP_NODELAY, as asyncio and uvloop set on every TCP connection)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await asyncio.get_running_loop().create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(transport, protocol)  # type: ignore[arg-type]

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the load generator connects over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = _Backend()


class _SlotTransport(httpx.AsyncBaseTransport):
    """The shared client's connections, each in its own one-connection pool, lent to one request at a time.

    Why slots: httpcore's pool (1.0.x) scans every connection, polling each idle socket, whenever a request starts
    or ends. At 64 connections that cost ~10 ms of client CPU per request here, 5x the requests themselves, and made
    the 2-core client the bottleneck (~80 req/s instead of ~350). A free list is O(1) and keeps connections alive.

    Why least recently used first (``pooled``, aiohttp's order: ``TCPConnector._get`` pops the oldest idle
    connection, so AIPerf's default pool does this): a connection that received its last response less than ~40 ms
    ago (Linux's minimum delayed-ACK time) is in delayed-ACK mode once the client sends on it again, and the
    frontend's next small writes then wait for that ACK (Nagle: the frontend serves with ``axum::serve`` on a plain
    tokio listener, no TCP_NODELAY, ``lib/llm/src/http/service/service_v2.rs``): its first token arrives up to
    40 ms late. Taking the most recently freed connection did that to most open-loop requests (TTFT p50 62 ms
    against AIPerf's 44 ms at 16 req/s); the oldest one has cooled down (45 ms). A closed loop reuses the
    connection its previous request just freed either way (both tools see those 40 ms). ``never`` opens a new
    connection per request and closes it after the response (AIPerf's ``never``).
    """

    def __init__(self, verify: ssl.SSLContext, reuse: str = "pooled") -> None:
        self._free: deque[httpx.AsyncHTTPTransport] = deque()
        self._all: set[httpx.AsyncHTTPTransport] = set()
        self._last: dict[httpx.AsyncHTTPTransport, object] = {}  # slot -> the network stream it last used
        self._verify = verify  # one SSL context for all: making one loads the CA store (~35 ms)
        self._reuse = reuse

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._free:
            slot = self._free.popleft()
        else:
            slot = httpx.AsyncHTTPTransport(verify=self._verify, limits=httpx.Limits(max_connections=1))
            slot._pool = httpcore.AsyncConnectionPool(ssl_context=self._verify, max_connections=1,  # our streams
                                                      network_backend=_BACKEND)
            self._all.add(slot)
        try:
            response = await slot.handle_async_request(request)
        except BaseException:
            await self.release(slot)
            raise
        stream = response.extensions.get("network_stream")  # a reconnect inside the slot is a new stream
        response.extensions[NEW_CONNECTION] = stream is not self._last.get(slot)
        self._last[slot] = stream
        response.stream = _Released(response.stream, self, slot)  # type: ignore[arg-type]
        return response

    async def release(self, slot: httpx.AsyncHTTPTransport) -> None:
        """Back to the free list (``pooled``), or closed (``never``: the client closes, as AIPerf's force_close)."""
        if self._reuse == "pooled":
            self._free.append(slot)
            return
        self._all.discard(slot)
        self._last.pop(slot, None)
        with contextlib.suppress(Exception):
            await slot.aclose()

    async def aclose(self) -> None:
        for slot in list(self._all):
            await slot.aclose()
        self._all.clear()
        self._free.clear()
        self._last.clear()


class _Runner:
    """Sends requests on one shared client and keeps one tuple per request (nothing per token)."""

    def __init__(self, client: httpx.AsyncClient, url: str, spec: LoadSpec, prompts: PromptSource,
                 bar: Any) -> None:
        self.client, self.url, self.spec, self.prompts, self.bar = client, url, spec, prompts, bar
        self.rows: list[tuple] = []
        self.errors = 0
        self.cancelled = 0  # in flight when the run was interrupted
        self.t0_perf = time.perf_counter()
        self.t0_epoch = time.time()

    async def one(self, index: int, phase: str, due: float | None = None, waited: float | None = None) -> tuple:
        """One streamed request -> (index, id, start, ttft, latency, in, out, cached, status, http, error, wait,
        send lag, new connection). ``due``: its arrival time (open loop); ``waited``: for a free in-flight slot.

        The clock starts after the body is made and before a connection is taken (a new one's TCP handshake is
        inside TTFT), as AIPerf's ``AioHttpClient._request`` starts it before ``session.request``.
        """
        body = self.prompts.body(index, phase)
        ttft: float | None = None
        code, rid, error, usage, done, n_content, new_conn = 0, "", "", None, False, 0, None
        t_send = time.perf_counter()
        t_last = t_send
        try:
            async with asyncio.timeout(self.spec.timeout_s), \
                    self.client.stream("POST", self.url, content=body, headers=_HEADERS) as resp:
                code = resp.status_code
                new_conn = resp.extensions.get(NEW_CONNECTION)
                if code >= 400:
                    text = (await resp.aread())[:300].decode(errors="replace").strip()
                    error = f"HTTP {code}: {text}"
                else:
                    head = b""
                    tail: deque[bytes] = deque(maxlen=6)
                    async for piece in resp.aiter_raw():
                        t_last = time.perf_counter()
                        if ttft is None:  # parse JSON only until the first content
                            head += piece
                            cut = head.rfind(b"\n") + 1
                            lines = head[:cut].split(b"\n")
                            at, rid_, usage_, error = _first_content(lines)
                            rid, usage = rid or rid_, usage_ or usage
                            if error:
                                break
                            if at >= 0:
                                ttft = t_last - t_send
                                rest = b"\n".join(lines[at + 1:]) + b"\n" + head[cut:]
                                tail.append(rest)
                                n_content += 1 + rest.count(b'"content":"') - rest.count(b'"content":""')
                                head = b""
                            else:
                                head = head[cut:]
                        else:  # afterwards only byte searches (C speed), no JSON
                            tail.append(piece)
                            n_content += piece.count(b'"content":"') - piece.count(b'"content":""')
                            if b"error" in piece:
                                error = _stream_error(piece)
                                if error:
                                    break
                    if not error:
                        joined = b"".join(tail) if ttft is not None else head
                        done = b"[DONE]" in joined
                        usage = _final_usage(joined) or usage
        except TimeoutError:
            t_last = time.perf_counter()
            where = "before the first token" if ttft is None else "after the first token"
            error = f"timed out after {self.spec.timeout_s:g} s {where}"
        except httpx.TimeoutException as exc:
            t_last = time.perf_counter()
            error = f"timed out ({type(exc).__name__}) after {self.spec.timeout_s:g} s"
        except httpx.ConnectError as exc:
            t_last = time.perf_counter()
            error = f"cannot connect to {self.url}: {exc}"
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            t_last = time.perf_counter()
            stage = "before the first token" if ttft is None else "mid-stream"
            error = f"connection lost {stage}: {type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except Exception as exc:  # never fatal to the run: an invalid body, a protocol surprise...
            t_last = time.perf_counter()
            error = f"{type(exc).__name__}: {exc}"[:300]
        if not error:
            if ttft is None:
                error = "the stream carried no content"
            elif not done:
                error = "the stream ended before [DONE]"
        usage = usage or {}
        out_tokens = usage.get("completion_tokens", n_content if ttft is not None else None)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        status = "error" if error else "ok"
        lag = None if due is None else t_send - due - (waited or 0.0)
        return (index, rid, self.t0_epoch + (t_send - self.t0_perf), ttft, t_last - t_send,
                usage.get("prompt_tokens"), out_tokens, cached if cached is not None else (0 if usage else None),
                status, code, error, waited, lag, new_conn)

    def _keep(self, row: tuple, keep: bool) -> None:
        if keep:
            self.rows.append(row)
            if row[8] != "ok":
                self.errors += 1
                self.bar.set_postfix_str(f"{self.errors} errors", refresh=False)
        self.bar.update(1)

    async def closed(self, total: int | None, concurrency: int, deadline: float | None, phase: str,
                     keep: bool) -> None:
        """``concurrency`` workers, each sending its next request as soon as the previous one finished."""
        counter = iter(range(total)) if total is not None else iter(int, 1)  # int() == 0 forever: no cap
        state = {"next": 0}

        async def worker() -> None:
            for _ in counter:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                index = state["next"]
                state["next"] += 1
                self._keep(await self.one(index, phase), keep)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def open(self, total: int | None, deadline: float | None) -> None:
        """Poisson arrivals at ``request_rate`` (``arrival_offsets``), each on its own due time.

        With ``max_concurrency``, an arrival that finds every slot taken waits for one (in arrival order) and the
        wait is recorded; no other arrival moves. AIPerf 0.13 instead skips the tick (``RequestRateStrategy.
        execute_phase``: ``try_issue_credit`` returns None, the request goes at the next tick that finds a slot),
        which lowers the rate just the same and reports only the lower rate; a wait per arrival says how much the
        cap held back, and every request still goes out as early as the cap allows.
        """
        spec = self.spec
        offsets = arrival_offsets(spec.request_rate, total, spec.duration_s, spec.seed)  # type: ignore[arg-type]
        cap = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        tasks: set[asyncio.Task] = set()

        async def send(index: int, due: float) -> None:
            held, waited = False, None
            try:
                if cap is not None:
                    t_wait = time.perf_counter() if cap.locked() else None
                    await cap.acquire()
                    held = True
                    waited = 0.0 if t_wait is None else time.perf_counter() - t_wait
                self._keep(await self.one(index, "run", due, waited), True)
            finally:
                if held:
                    cap.release()  # type: ignore[union-attr]

        origin = time.perf_counter()
        try:
            for index, offset in enumerate(offsets.tolist()):
                due = origin + offset
                if deadline is not None and due >= deadline:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(index, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in list(tasks):
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


class _NotebookLine:
    """A file for tqdm inside a Jupyter kernel: its line redrawn in place (a display handle), not on stderr.

    Jupyter shows stderr in a pink box that reads as an error; tqdm.auto needs ipywidgets, whose widgets papermill's
    output does not render. Plain text/HTML shows the same in the browser and in papermill's output.
    """

    encoding = "utf-8"  # tqdm draws unicode blocks only on a file that says so

    def __init__(self) -> None:
        self.handle: Any = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "\n").strip().splitlines()
        if not line:
            return
        from IPython.display import display

        bundle = {"text/plain": line[-1], "text/html": f"<pre style='margin:0'>{html.escape(line[-1])}</pre>"}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)

    def flush(self) -> None:
        pass


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill), not in a terminal IPython or a script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _progress_bar(spec: LoadSpec, progress: bool) -> Any:
    from tqdm import tqdm

    disabled = not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}
    where = {"file": _NotebookLine(), "ncols": 100, "mininterval": 0.5} if _in_kernel() and not disabled else {}
    return tqdm(total=spec.num_requests, desc=spec.label(), unit="req", disable=disabled, leave=True, **where)


async def run_load(base_url: str, spec: LoadSpec, progress: bool = True,
                   save_to: str | Path | None = None) -> LoadResult:
    """Offer the load ``spec`` describes to ``base_url`` and measure every request.

    Errors are counted in the records, never raised. On cancellation (Ctrl-C under ``asyncio.run`` or ``run``)
    the requests completed so far are returned, marked ``interrupted`` (and saved when ``save_to`` is given).
    """
    if not isinstance(spec, LoadSpec):
        raise ConfigError(f"spec must be a LoadSpec, got {type(spec).__name__}", fix="pass LoadSpec(model, ...)")
    check_context(spec)
    prompts = PromptSource(spec)
    url = base_url.rstrip("/") + "/v1/chat/completions"
    limit = spec.in_flight_limit
    timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
    # Plain http needs no CA store; https gets one context, shared by every connection.
    verify = httpx.create_ssl_context(verify=url.startswith("https:"))
    interrupted = False
    started_at = time.time()
    bar = _progress_bar(spec, progress)
    runner: _Runner | None = None
    warmups = 0
    try:
        transport = _SlotTransport(verify, spec.connection_reuse)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            runner = _Runner(client, url, spec, prompts, bar)
            try:
                if spec.warmup_requests:
                    bar.reset(total=spec.warmup_requests)
                    bar.set_description_str(f"{spec.label()} (warm-up)")
                    await runner.closed(spec.warmup_requests, limit or 1, None, "warmup", keep=False)
                    warmups = spec.warmup_requests
                    bar.reset(total=spec.num_requests)
                    bar.set_description_str(spec.label())
                started_at = time.time()
                deadline = time.perf_counter() + spec.duration_s if spec.duration_s else None
                if spec.concurrency is not None:
                    await runner.closed(spec.num_requests, spec.concurrency, deadline, "run", keep=True)
                else:
                    await runner.open(spec.num_requests, deadline)
            except (asyncio.CancelledError, KeyboardInterrupt):
                interrupted = True
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # we return what was measured instead of propagating
    finally:
        bar.close()
    rows = runner.rows if runner else []
    cancelled = runner.cancelled if runner else 0
    result = LoadResult(spec=spec, records=records_frame(rows), started_at=started_at, ended_at=time.time(),
                        interrupted=interrupted, cancelled_requests=cancelled, warmup_requests_done=warmups,
                        base_url=base_url)
    if save_to is not None:
        result.save(save_to)
    return result


def run(base_url: str, spec: LoadSpec, progress: bool = True, save_to: str | Path | None = None) -> LoadResult:
    """``run_load`` from synchronous code; inside Jupyter (a loop already running) it runs on a worker thread.

    Ctrl-C (or the notebook's interrupt) stops the load and returns the partial result, marked ``interrupted``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=_new_loop) as runner:  # Ctrl-C cancels the run: partial result
            return runner.run(run_load(base_url, spec, progress, save_to))
    return _run_on_thread(base_url, spec, progress, save_to)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with Dynamo): ~15% less client CPU per streamed chunk than asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_on_thread(base_url: str, spec: LoadSpec, progress: bool, save_to: str | Path | None) -> LoadResult:
    loop = _new_loop()
    task = loop.create_task(run_load(base_url, spec, progress, save_to))
    box: dict[str, Any] = {}
    finished = threading.Event()  # not Thread.join: a join interrupted by Ctrl-C can return early afterwards

    def target() -> None:
        try:
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            loop.close()
            finished.set()

    threading.Thread(target=target, name="gtcdemo-load", daemon=True).start()
    try:
        finished.wait()
    except KeyboardInterrupt:  # the notebook's interrupt arrives in this (the main) thread
        with contextlib.suppress(RuntimeError):  # the loop may have just finished
            loop.call_soon_threadsafe(task.cancel)
        finished.wait()
    if "error" in box:
        raise box["error"]
    return box["result"]


def sweep(base_url: str, spec: LoadSpec, levels: Sequence[int | float], progress: bool = True,
          save_to: str | Path | None = None) -> list[LoadResult]:
    """One run per level: concurrencies for a closed-loop spec, request rates for an open-loop one.

    Stops after an interrupted level (its partial result is the last one returned). With ``save_to``, each level
    is saved in its own sub-folder (``concurrency-4``, ``rate-2.5``).
    """
    if not levels:
        raise ConfigError("sweep needs at least one level", where="sweep levels", fix="pass e.g. [1, 2, 4, 8]")
    specs = [spec.at_level(level) for level in levels]  # validate every level before sending anything
    results: list[LoadResult] = []
    for s in specs:
        name = f"concurrency-{s.concurrency}" if s.concurrency is not None else f"rate-{s.request_rate:g}"
        result = run(base_url, s, progress, Path(save_to) / name if save_to is not None else None)
        results.append(result)
        if result.interrupted:
            break
    return results


def sweep_table(results: Sequence[LoadResult]) -> pd.DataFrame:
    """One row per level: the load, throughputs, errors, offered vs delivered (open loop) and TTFT / ITL / latency
    p50, p90, p95, p99 (for plots)."""
    rows = []
    for r in results:
        s = r.summary()
        row = {"level": r.spec.level, "mode": s["mode"], "ok": s["ok_count"], "errors": s["error_count"],
               "request_throughput": s["request_throughput"], "output_token_throughput": s["output_token_throughput"],
               "goodput": s["goodput"], "offered_rate": s["offered_rate"], "delivered_rate": s["delivered_rate"],
               "delivered_ratio": s["delivered_ratio"], "under_delivered": s["under_delivered"],
               "cap_waits": s["cap_waits"]}
        for metric in ("ttft_ms", "itl_ms", "latency_ms"):
            for key in ("p50", "p90", "p95", "p99"):
                row[f"{metric}_{key}"] = s[metric][key]
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["LoadResult", "LoadSpec", "PromptSource", "arrival_offsets", "delivery", "distribution", "itl_seconds",
           "meets_slos", "per_second", "run", "run_duration", "run_load", "summarize", "sweep", "sweep_table"]
