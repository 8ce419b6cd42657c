"""run_load against the floor: a minimal sequential streaming client, on the same local graph, interleaved.

Run: .venv/bin/python benchmarks/load_vs_floor.py [rounds] [memory_requests]
At concurrency 1 with ~200-token prompts and 32 output tokens, both clients should see the same TTFT (target:
p50 within 2 ms); the CPU each spends per request shows the client's own cost on this 2-core machine, where the
server shares the cores. Then run_load's resident memory over 10,000 short requests at high concurrency: it
should grow by the records only. Numbers are printed, never asserted.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from gtcdemo import load
from gtcdemo.load import LoadSpec
from gtcdemo.local import LocalTarget

PER_BLOCK = 15
HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def floor_block(client: httpx.Client, url: str, prompts: load.PromptSource, first: int) -> list[float]:
    """The simplest correct client: one request after the other, TTFT at the first non-empty content."""
    ttfts = []
    for i in range(first, first + PER_BLOCK):
        body = prompts.body(i)
        start = time.perf_counter()
        ttft = None
        with client.stream("POST", url, content=body, headers=HEADERS) as response:
            for piece in response.iter_raw():
                if ttft is None:
                    at = piece.find(b'"content":"')
                    if at >= 0 and piece[at + 11:at + 12] != b'"':
                        ttft = time.perf_counter() - start
        ttfts.append(ttft if ttft is not None else float("nan"))
    return ttfts


def compare(base: str, model: str, rounds: int) -> None:
    spec = LoadSpec(model, concurrency=1, num_requests=PER_BLOCK, input_tokens_mean=200, output_tokens=32)
    url = f"{base}/v1/chat/completions"
    floor_prompts = load.PromptSource(LoadSpec(model, concurrency=1, num_requests=1, input_tokens_mean=200,
                                               output_tokens=32, seed=10_000))
    floor: list[float] = []
    ours: list[float] = []
    cpu = {"floor": 0.0, "run_load": 0.0}
    with httpx.Client(timeout=60) as client:
        floor_block(client, url, floor_prompts, 10**6)  # warm both paths (connections, caches, imports)
        load.run(base, LoadSpec(model, concurrency=1, num_requests=5, seed=99), progress=False)
        for r in range(rounds):
            # ABBA order, so a drift in the server's speed lands on both clients alike.
            order = ("floor", "run_load") if r % 2 == 0 else ("run_load", "floor")
            for who in order:
                c0 = time.process_time()
                if who == "floor":
                    floor += floor_block(client, url, floor_prompts, r * PER_BLOCK)
                else:
                    result = load.run(base, dataclasses.replace(spec, seed=r), progress=False)
                    assert result.summary()["error_count"] == 0, result.errors
                    ours += list(result.records["ttft_s"])
                cpu[who] += time.process_time() - c0
    c0 = time.process_time()
    load.run(base, dataclasses.replace(spec, num_requests=1, seed=123), progress=False)
    setup_ms = (time.process_time() - c0) * 1000
    n = rounds * PER_BLOCK
    f50, o50 = np.percentile(floor, 50) * 1000, np.percentile(ours, 50) * 1000
    f90, o90 = np.percentile(floor, 90) * 1000, np.percentile(ours, 90) * 1000
    print(f"\n== TTFT at concurrency 1, 200-token prompts, 32 output tokens: {n} requests each, interleaved "
          f"in {rounds} rounds ==")
    print(f"floor (sequential httpx.Client) TTFT p50 {f50:8.2f} ms   p90 {f90:8.2f} ms")
    print(f"run_load                        TTFT p50 {o50:8.2f} ms   p90 {o90:8.2f} ms")
    print(f"difference run_load - floor     p50 {o50 - f50:+8.2f} ms   p90 {o90 - f90:+8.2f} ms   "
          f"(target: p50 within 2 ms -> {'met' if abs(o50 - f50) <= 2 else 'NOT met'})")
    print(f"client CPU per request: floor {cpu['floor'] / n * 1000:.2f} ms, run_load {cpu['run_load'] / n * 1000:.2f}"
          f" ms (ratio {cpu['run_load'] / cpu['floor']:.2f}x); run_load's includes its per-run setup (event loop, "
          f"client, result frame), {setup_ms:.0f} ms CPU for a whole 1-request run, once per {PER_BLOCK}-request run")


def memory(base: str, model: str, requests: int) -> None:
    peak = {"rss": rss_bytes()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak["rss"] = max(peak["rss"], rss_bytes())

    def one(n: int) -> tuple[float, float, float, load.LoadResult]:
        spec = LoadSpec(model, concurrency=64, num_requests=n, input_tokens_mean=16, output_tokens=2, seed=7)
        before = rss_bytes()
        peak["rss"] = before
        c0, t0 = time.process_time(), time.perf_counter()
        result = load.run(base, spec, progress=False)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        s = result.summary()
        print(f"{n:>6} requests at concurrency 64 (16-token prompts, max_tokens 2): {s['ok_count']} ok, "
              f"{s['error_count']} errors in {wall:.1f} s ({s['request_throughput']:.0f} req/s); client CPU "
              f"{cpu / n * 1000:.2f} ms/request; RSS before {before / 2**20:.1f} MiB, peak {peak['rss'] / 2**20:.1f}"
              f" MiB, after {rss_bytes() / 2**20:.1f} MiB; records frame "
              f"{result.records.memory_usage(deep=True).sum() / 2**20:.2f} MiB")
        return before, peak["rss"], rss_bytes(), result

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    print("\n== run_load memory (RSS of this process, sampled every 0.2 s) ==")
    try:
        small = one(requests // 10)
        big = one(requests)
    finally:
        stop.set()
        thread.join()
    growth_small = small[1] - small[0]
    growth_big = big[1] - big[0]
    per_record = big[3].records.memory_usage(deep=True).sum() / max(len(big[3].records), 1)
    print(f"peak growth: {growth_small / 2**20:.1f} MiB at {requests // 10} requests, {growth_big / 2**20:.1f} MiB at "
          f"{requests} requests (ratio {growth_big / max(growth_small, 1):.1f}x for 10x the requests); "
          f"records take {per_record:.0f} bytes each in the frame")
    print(f"process peak RSS over the whole benchmark (getrusage): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


def main(rounds: int = 10, memory_requests: int = 10_000) -> None:
    print("command:", shlex.join([sys.executable, *sys.argv]), f"(cwd {os.getcwd()})")
    with tempfile.TemporaryDirectory(prefix="gtcdemo-load-bench-") as state:
        target = LocalTarget("dev", state_dir=Path(state) / "dev-gtc-demo")
        try:
            t0 = time.perf_counter()
            target.apply()
            target.wait(timeout_s=180)
            print(f"local graph ready in {time.perf_counter() - t0:.1f} s "
                  f"({os.cpu_count()} cores shared by the graph and this client)")
            with target.frontend() as base:
                model = target.bundle.served_model_name
                compare(base, model, rounds)
                memory(base, model, memory_requests)
        finally:
            target.teardown()
            print(f"graph torn down; leftover processes: {target.leftover_pids()}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
