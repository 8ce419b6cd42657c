"""Faults on the real local graph, measured: each process SIGKILLed in the middle of an open-loop load run.

For each of the decode worker, the prefill worker and the frontend: offer 20 requests/s for 10 s, kill the process
after 1.5 s of served traffic, and report what the run kept (every request has a record), how many failed, how long
until the first request succeeded again, and the restart the supervisor counted. Printed, never asserted (the
assertions are in tests/test_faults.py).

Run: .venv/bin/python benchmarks/faults.py [rounds]
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from gtcdemo.inference import chat_completion
from gtcdemo.load import LoadSpec
from gtcdemo.load import run as load_run
from gtcdemo.local import LocalTarget

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
RATE, REQUESTS = 20.0, 200


def one(target: LocalTarget, role: str) -> dict:
    victim = next(p for p in target.processes() if p["role"] == role)
    url = target.frontend_url()
    spec = LoadSpec(MODEL, request_rate=RATE, max_concurrency=16, num_requests=REQUESTS, output_tokens=16,
                    input_tokens_mean=50, timeout_s=20, seed=11)
    box: dict = {}
    runner = threading.Thread(target=lambda: box.setdefault("r", load_run(url, spec, progress=False)))
    runner.start()
    time.sleep(1.5)  # a benchmark schedule, not synchronisation: the kill lands at a fixed point of the run
    killed_at = time.time()
    os.killpg(victim["pid"], signal.SIGKILL)
    runner.join()
    rec = box["r"].records
    after = rec[(rec["start"] > killed_at) & (rec["status"] == "ok")]
    failed = rec[rec["status"] != "ok"]
    first_ok = float(after["start"].min() - killed_at) if len(after) else float("nan")
    deadline = time.monotonic() + 120
    while True:  # the supervisor restarts it with back-off; the run above may end before it is ready again
        rows = {p["role"]: p for p in target.processes()}
        if rows[role]["phase"] == "Running" and rows[role]["restarts"] == victim["restarts"] + 1:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{role} was not restarted")
        time.sleep(0.2)
    return {"role": role, "records": len(rec), "failed": len(failed), "first_ok_after_s": first_ok,
            "restarts": rows[role]["restarts"]}


def main(rounds: int = 1) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="gtcdemo-faults-") as state:
        target = LocalTarget("dev", state_dir=Path(state) / "dev-gtc-demo")
        try:
            target.apply()
            target.wait(timeout_s=180)
            for _ in range(rounds):
                for role in ("decode", "prefill", "frontend"):
                    results.append(one(target, role))
                    deadline = time.monotonic() + 60
                    while True:  # serving again before the next fault (not LocalTarget.wait: it refuses after a
                        # past crash, see test_wait_reports_ready_after_recovered_crashes)
                        try:
                            chat_completion(target.frontend_url(), MODEL, "ok?", max_tokens=2, timeout_s=5)
                            break
                        except Exception:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(0.2)
        finally:
            target.teardown()
    print(f"command: {sys.executable} benchmarks/faults.py {rounds}")
    print(f"load: {REQUESTS} requests at {RATE:g}/s (open loop), the process SIGKILLed after 1.5 s")
    for role in ("decode", "prefill", "frontend"):
        rows = [r for r in results if r["role"] == role]
        lost = sum(REQUESTS - r["records"] for r in rows)
        print(f"{role:9s}: records kept {sum(r['records'] for r in rows)}/{REQUESTS * len(rows)} (lost {lost}), "
              f"failed {statistics.mean(r['failed'] for r in rows):.0f} per run, first success after the kill "
              f"{statistics.median(r['first_ok_after_s'] for r in rows):.2f} s (median), restarts counted "
              f"{[r['restarts'] for r in rows]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
