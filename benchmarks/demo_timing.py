"""The demo notebook end to end, headless: live on the local graph (up + demo + down) and replayed.

Run: .venv/bin/python benchmarks/demo_timing.py
Figures to reach (issue 5): live <= 120 s with the default demo sizes; replay <= 15 s. Printed, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gtcdemo import project
from gtcdemo.local import LocalTarget

DEMO = project.NOTEBOOKS / "demo.ipynb"


def papermill(out: Path, *params: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", str(DEMO), str(out), "-k", "python3", *params],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gtcdemo-demo-bench-") as tmp:
        os.environ["GTCDEMO_STATE"] = str(Path(tmp) / "state")
        target = LocalTarget("dev")
        start = time.perf_counter()
        try:
            target.apply()
            target.wait(timeout_s=120)
            up = time.perf_counter() - start
            demo = papermill(Path(tmp) / "live.ipynb", "-p", "mode", "record", "-p", "recording",
                             str(Path(tmp) / "recording"))
        finally:
            target.teardown()
        live = time.perf_counter() - start
        replay = papermill(Path(tmp) / "replay.ipynb", "-p", "mode", "replay", "-p", "recording",
                           str(Path(tmp) / "recording"))
        committed = papermill(Path(tmp) / "replay-fixture.ipynb")
    print(f"command: {sys.executable} benchmarks/demo_timing.py")
    print(f"live on the local graph, default sizes: {live:.1f} s end to end (up {up:.1f} s, demo notebook "
          f"{demo:.1f} s, down {live - up - demo:.1f} s); target <= 120 s: {120 / live:.1f}x headroom")
    print(f"replay of that recording: {replay:.1f} s; of the committed recording: {committed:.1f} s; "
          f"target <= 15 s: {15 / max(replay, committed):.1f}x headroom")


if __name__ == "__main__":
    main()
