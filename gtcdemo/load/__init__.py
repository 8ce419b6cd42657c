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

One concern per module, imports pointing one way (as AIPerf keeps transport, parsing, timing and metrics apart):

- ``spec``: ``LoadSpec`` (what load to offer) and its checks, ``check_context``.
- ``prompts``: ``PromptSource``, synthetic prompts of an exact token length.       (uses spec)
- ``arrivals``: ``arrival_offsets``, the open loop's Poisson schedule.
- ``stats``: AIPerf's statistics as pure functions of the records.
- ``result``: ``LoadResult`` (records, summary, save/load) and ``sweep_table``.     (uses spec, stats)
- ``sse``: the hand-written byte-level stream reader (``ChatStream``).
- ``transport``: the connections (``SlotTransport``), on httpx and httpcore only.
- ``progress``: the progress line, drawn in place in a notebook.
- ``runner``: ``run``, ``run_load``, ``sweep``: the loops, on one shared client.   (uses all of the above)
"""

from __future__ import annotations

from .arrivals import arrival_offsets
from .prompts import PromptSource
from .result import COLUMNS, LoadResult, records_frame, sweep_table
from .runner import run, run_load, sweep
from .spec import LoadSpec, check_context
from .stats import delivery, distribution, itl_seconds, meets_slos, per_second, run_duration, summarize

__all__ = ["COLUMNS", "LoadResult", "LoadSpec", "PromptSource", "arrival_offsets", "check_context", "delivery",
           "distribution", "itl_seconds", "meets_slos", "per_second", "records_frame", "run", "run_duration",
           "run_load", "summarize", "sweep", "sweep_table"]
