"""The open loop's schedule: when each request is due."""

from __future__ import annotations

import random

import numpy as np


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
