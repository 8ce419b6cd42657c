"""The two small experiments the audience sees: KV-cache reuse, and why client and server TTFT differ.

Both run the same load generator as everything else and read the server's side from Prometheus, so each number
on screen has a definition (see measuring.md: AIPerf's) and a source.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd

from . import load
from .inference import stream_chat
from .metrics import Metrics, RunSummary

DEMO_PROMPT_TOKENS = 1500


@dataclass
class PrefixCacheDemo:
    """A shared-prefix batch against a unique-prompt batch of the same size and length."""

    table: pd.DataFrame
    results: dict[str, load.LoadResult]

    def __repr__(self) -> str:
        return "KV-cache reuse: shared prefix vs unique prompts\n" + self.table.to_string()

    def _repr_html_(self) -> str:
        return "<h4>KV-cache reuse: shared prefix vs unique prompts</h4>" + self.table.to_html()


def prefix_cache_demo(base_url: str, model: str, metrics: Metrics | None = None, *, requests: int = 8,
                      prompt_tokens: int = DEMO_PROMPT_TOKENS, shared_fraction: float = 0.9,
                      output_tokens: int = 8, seed: int = 7) -> PrefixCacheDemo:
    """Send ``requests`` prompts sharing a long system prompt, then as many unique ones; compare cache and TTFT.

    Sequential (concurrency 1) so that each shared-prefix request can reuse the blocks the previous one left in
    the cache: the KV router sends it to the worker that holds them (why the seed sets DYN_ROUTER_MODE=kv).
    """
    rows, results = {}, {}
    for name, fraction in (("shared prefix", shared_fraction), ("unique prompts", 0.0)):
        spec = load.LoadSpec(model=model, concurrency=1, num_requests=requests, input_tokens_mean=prompt_tokens,
                             output_tokens=output_tokens, shared_prefix_fraction=fraction, seed=seed)
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
    return PrefixCacheDemo(table=table, results=results)


@dataclass
class ClockComparison:
    """The same requests timed three ways: new connection per request, one kept-alive connection, the frontend."""

    table: pd.DataFrame
    server: dict[str, RunSummary]

    def __repr__(self) -> str:
        return "TTFT by clock (ms)\n" + self.table.to_string()

    def _repr_html_(self) -> str:
        return "<h4>TTFT by clock (ms)</h4>" + self.table.to_html()


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
