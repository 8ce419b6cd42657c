"""The two small experiments the audience sees: KV-cache reuse, and why client and server TTFT differ.

Both run the same load generator as everything else and read the server's side from Prometheus, so each number
on screen has a definition (AIPerf's: TTFT runs from sending the request to the first chunk with content; README,
"Measuring: what the numbers mean") and a source.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import pandas as pd

from . import load
from .inference import stream_chat
from .metrics import Metrics, RunSummary
from .results import Table

# A long shared system prompt makes prefill dominate TTFT, so reusing it shows: on the local graph (the mocker's
# TRT-LLM timing) 6000-token prompts, 95% shared, give a client TTFT p50 about 2x lower with the prefix cached
# (~80 ms against ~180 ms), where 1500-token prompts gave 81 against 103 ms.
DEMO_PROMPT_TOKENS = 6000
DEMO_SHARED_FRACTION = 0.95
# Columns of ``PrefixCacheDemo.table`` (the data: recorded, plotted) and the headers people read.
KV_COLUMNS = {"requests": "requests", "prompt_tokens_per_request": "prompt tokens per request",
              "cached_tokens_per_request": "cached tokens per request (response)",
              "server_cached_tokens_per_request": "cached tokens per request (frontend metric)",
              "ttft_p50_ms": "TTFT p50 (ms, client)"}


@dataclass
class PrefixCacheDemo:
    """A shared-prefix batch against a unique-prompt batch of the same size and length, and the request that
    primed the cache with the shared prefix (measured on its own, outside the shared batch's numbers)."""

    table: pd.DataFrame
    results: dict[str, load.LoadResult]
    priming: dict[str, float] = field(default_factory=dict)  # ttft_ms, cached_tokens, prompt_tokens
    shared_prefix_tokens: int = 0

    @property
    def view(self) -> Table:
        frame = self.table[[c for c in KV_COLUMNS if c in self.table]].rename(columns=KV_COLUMNS)
        return Table("KV-cache reuse: shared prefix vs unique prompts", frame, self.caption())

    def caption(self) -> str:
        """How the batches were measured (one line under the table)."""
        text = ("One request at a time; TTFT on the client's clock (request sent → first token received). "
                f"Shared batch: every prompt starts with the same {self.shared_prefix_tokens:,}-token system prompt")
        if self.priming:
            text += (f"; the request before it found none of it cached ({self.priming['cached_tokens']:.0f} tokens, "
                     f"TTFT {self.priming['ttft_ms']:.0f} ms) and put it in the cache, so it is not in the row")
        return text + ". Unique prompts: new words from the first token on, every run."

    def __repr__(self) -> str:
        return repr(self.view)

    def _repr_html_(self) -> str:
        return self.view._repr_html_()


def _priming_request(base_url: str, spec: load.LoadSpec) -> dict[str, float]:
    """The first request with the run's shared prefix: it finds nothing cached and fills the cache."""
    source = load.PromptSource(spec)
    result = stream_chat(base_url, spec.model, source.messages(0, "priming"), max_tokens=spec.output_tokens,
                         ignore_eos=True)
    return {"ttft_ms": round(result.ttft_s * 1000, 1), "cached_tokens": float(result.cached_tokens),
            "prompt_tokens": float(result.prompt_tokens)}


def prefix_cache_demo(base_url: str, model: str, metrics: Metrics | None = None, *, requests: int = 6,
                      prompt_tokens: int = DEMO_PROMPT_TOKENS, shared_fraction: float = DEMO_SHARED_FRACTION,
                      output_tokens: int = 8, seed: int | None = None) -> PrefixCacheDemo:
    """One request primes the cache with a long shared system prompt; then ``requests`` prompts sharing it, then
    as many unique ones of the same length; compare cached tokens and TTFT.

    Every prompt of a run, the shared system prompt included, is drawn from a new ``seed`` (random unless given),
    so its first block differs from every earlier run's: the tenth run on one graph finds the unique prompts
    uncached, like the first. The priming request is measured on its own and left out of the shared batch's
    numbers, so the shared row shows what the KV router and the engine's prefix cache give every later request.
    Sequential (concurrency 1) so that each shared-prefix request can reuse the blocks already in the cache: the
    KV router sends it to the worker that holds them (why the DGD's Frontend sets DYN_ROUTER_MODE=kv).
    """
    seed = secrets.randbits(31) if seed is None else seed
    rows, results = {}, {}
    priming: dict[str, float] = {}
    for name, fraction in (("shared prefix", shared_fraction), ("unique prompts", 0.0)):
        spec = load.LoadSpec(model=model, concurrency=1, num_requests=requests, input_tokens_mean=prompt_tokens,
                             output_tokens=output_tokens, shared_prefix_fraction=fraction, seed=seed)
        if fraction:
            priming = _priming_request(base_url, spec)
        # Counters are read at scrapes: start after a scrape that follows every earlier request.
        started = metrics.settle(time.time()) if metrics is not None else time.time()
        result = load.run(base_url, spec, progress=False)
        ok = result.records[result.records["status"] == "ok"]
        row = {
            "requests": len(ok),
            "prompt_tokens_per_request": round(float(ok["input_tokens"].mean()), 1) if len(ok) else np.nan,
            "cached_tokens_per_request": round(float(ok["cached_tokens"].mean()), 1) if len(ok) else np.nan,
            "ttft_p50_ms": round(float(ok["ttft_s"].median() * 1000), 1) if len(ok) else np.nan,
        }
        if metrics is not None:
            summary = metrics.run_summary(started, metrics.settle(result.ended_at))
            row["server_cached_tokens_per_request"] = round(summary.cached_tokens / max(summary.requests, 1), 1)
            row["server_ttft_mean_ms"] = round(summary.ttft_mean_s * 1000, 1)
        rows[name], results[name] = row, result
    table = pd.DataFrame(rows).T
    table.index.name = "batch"
    return PrefixCacheDemo(table=table, results=results, priming=priming,
                           shared_prefix_tokens=round(shared_fraction * prompt_tokens))


@dataclass
class ClockComparison:
    """The same requests timed three ways: new connection per request, one kept-alive connection, the frontend."""

    table: pd.DataFrame
    server: dict[str, RunSummary]

    @property
    def view(self) -> Table:
        columns = {"client_ttft_p50_ms": "client TTFT p50 (ms)", "client_ttft_mean_ms": "client TTFT mean (ms)",
                   "server_ttft_mean_ms": "frontend TTFT mean (ms)", "gap_mean_ms": "client − frontend, mean (ms)"}
        return Table("TTFT by clock: the same requests, timed by the client and by the frontend",
                     self.table.rename(columns=columns), "Client: request sent → first token received (AIPerf). "
                     "Frontend: its own histogram, stopped when it has the first token.", decimals=dict.fromkeys(
                         columns.values(), 1))

    def __repr__(self) -> str:
        return repr(self.view)

    def _repr_html_(self) -> str:
        return self.view._repr_html_()


def ttft_clocks(base_url: str, model: str, metrics: Metrics, *, requests: int = 10, prompt_words: int = 200,
                output_tokens: int = 16) -> ClockComparison:
    """Client TTFT with a fresh connection per request vs one kept-alive connection, against the frontend's own.

    What this shows on Dynamo 1.6: the frontend's TTFT clock includes the prefill hop (a fresh connection sees
    the server's number plus a few ms of HTTP), but on a reused connection the first tokens reach the client in
    one burst tens of ms later: the response's small writes wait for the client's delayed TCP ACK (Nagle), and
    the frontend's clock, stopped when it produced the token, cannot see that wait.
    """
    prompt = " ".join(["word"] * prompt_words)
    table, server = {}, {}
    for mode in ("new connection per request", "kept-alive connection"):
        samples = []
        shared = httpx.Client(timeout=60) if mode.startswith("kept") else None
        try:
            if shared is not None:  # open the connection first, as any keep-alive client would have
                stream_chat(base_url, model, "warm", max_tokens=2, client=shared)
            started = metrics.settle(time.time())  # counters start after every earlier request was scraped
            for i in range(requests):
                text = f"{mode[:3]} {i} {prompt}"
                with contextlib.nullcontext(shared) if shared is not None else httpx.Client(timeout=60) as client:
                    result = stream_chat(base_url, model, text, max_tokens=output_tokens, ignore_eos=True,
                                         client=client)
                samples.append(result.ttft_s * 1000)
        finally:
            if shared is not None:
                shared.close()
        summary = metrics.run_summary(started, metrics.settle(time.time()))
        server[mode] = summary
        table[mode] = {"client_ttft_p50_ms": round(float(np.median(samples)), 1),
                       "client_ttft_mean_ms": round(float(np.mean(samples)), 1),
                       "server_ttft_mean_ms": round(summary.ttft_mean_s * 1000, 1)}
    frame = pd.DataFrame(table).T
    frame["gap_mean_ms"] = frame["client_ttft_mean_ms"] - frame["server_ttft_mean_ms"]
    frame.index.name = "client"
    return ClockComparison(table=frame, server=server)
