"""Local graph: time from `up` to the first successful completion, and the memory of its processes.

Run: .venv/bin/python benchmarks/local_startup.py [runs]
Figures to reach (issue 2): <= 15 s to the first completion, <= 2 GiB total memory. Printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gtcdemo.inference import chat_completion
from gtcdemo.local import LocalTarget


def group_rss_bytes(pids: list[int]) -> int:
    """Resident memory of the given processes and every process in their process groups."""
    groups = {os.getpgid(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) not in groups:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ProcessLookupError):
            continue
    return total


def main(runs: int = 3) -> None:
    up_times, rss = [], []
    with tempfile.TemporaryDirectory(prefix="gtcdemo-bench-") as state:
        for _ in range(runs):
            target = LocalTarget("dev", state_dir=Path(state) / "dev-gtc-demo")
            start = time.perf_counter()
            try:
                target.apply()
                target.wait(timeout_s=120)
                up_times.append(time.perf_counter() - start)
                with target.frontend() as url:  # warm, so memory includes a served request
                    for _ in range(20):
                        chat_completion(url, target.bundle.served_model_name, "warm up " * 50, max_tokens=32)
                rss.append(group_rss_bytes(target.leftover_pids()))
            finally:
                target.teardown()
    print(f"command: {sys.executable} benchmarks/local_startup.py {runs}")
    print(f"up -> first completion: median {statistics.median(up_times):.2f} s, max {max(up_times):.2f} s "
          f"over {runs} runs (target <= 15 s: {15 / max(up_times):.1f}x headroom)")
    print(f"memory of all processes (RSS, after 20 requests): median {statistics.median(rss) / 2**20:.0f} MiB, "
          f"max {max(rss) / 2**20:.0f} MiB (target <= 2048 MiB: {2**31 / max(rss):.1f}x headroom)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
