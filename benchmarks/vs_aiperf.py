"""Our load generator against NVIDIA AIPerf 0.13, on the same local graph and the same load, interleaved.

Run: .venv/bin/python benchmarks/vs_aiperf.py [--rounds 3] [--requests-c1 40] [--requests-c64 320]
                                              [--rates 4,16,32] [--open-seconds 12] [--keep DIR]

Scenarios, each run by both tools in turn, interleaved round by round (ours first in even rounds, AIPerf first in
odd ones) so both see the same graph state:
- closed loop: (a) concurrency 1 and (b) concurrency 64, ~200-token synthetic prompts, 32 output tokens;
- open loop (Poisson arrivals, no concurrency cap in either tool): one scenario per rate in --rates (default 4, 16
  and 32 req/s: well below, half of and near the local graph's capacity of ~36 req/s at this shape, measured at
  concurrency 64), 512-token prompts, 128 output tokens, rate x --open-seconds requests per run.
max_tokens + ignore_eos, the same warm-up count for both tools (excluded from the results). Both tools run as child
processes, so their CPU is measured the same way: getrusage(RUSAGE_CHILDREN) around each run (the whole process
tree: start-up, prompt making, the load, the report), plus the tree's CPU during the measured phase alone, from
/proc samples. TTFT, ITL, request and output-token throughput are AIPerf's definitions in both tools; the delivered
rate is (requests sent - 1) / (last send - first send) in both. Numbers are printed, never asserted; the targets
are printed beside the ratios.

AIPerf is installed only for this benchmark, in its own venv (${GTCDEMO_CACHE:-~/.cache/gtcdemo}/aiperf-venv),
made on the first run. It loads the served model's local tokenizer folder, and only with HF_HUB_OFFLINE unset
(AIPerf 0.13 with HF_HUB_OFFLINE=1 treats a local folder as a hub repo id and fails), so the variable is removed
from its environment. Only loopback addresses are contacted (the first run's pip install excepted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtcdemo.local import LocalTarget, pvc_root

AIPERF_VERSION = "0.13.0"
ROOT = Path(__file__).resolve().parents[1]
INPUT_TOKENS, OUTPUT_TOKENS = 200, 32             # closed-loop scenarios
OPEN_INPUT_TOKENS, OPEN_OUTPUT_TOKENS = 512, 128  # open-loop scenarios (the shape issue 11 measured)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Our load generator in a child process (so its CPU is accounted exactly like AIPerf's): argv = spec JSON, base
# URL, output file. Writes its summary, per-request TTFTs and the measured window (first send -> last response).
OURS_CHILD = r"""
import json, sys
from gtcdemo import load
spec = load.LoadSpec(**json.loads(sys.argv[1]))
result = load.run(sys.argv[2], spec, progress=False)
rec = result.records
ok = rec[rec["status"] == "ok"]
end = rec["start"] + rec["latency_s"].fillna(0.0)
doc = {"summary": result.summary(), "ttft_ms": (ok["ttft_s"] * 1000).tolist(),
       "itl_ms": (ok["itl_s"].dropna() * 1000).tolist(),
       "new_share": float(rec["new_connection"].astype("Float64").mean()) if len(rec) else None,
       "output_tokens": float(ok["output_tokens"].fillna(0).sum()),
       "cached_tokens_mean": result.summary()["cached_tokens_mean"],
       "window": [float(rec["start"].min()), float(end.max())] if len(rec) else None,
       "in_flight": float(rec["latency_s"].fillna(0.0).sum() / (end.max() - rec["start"].min())) if len(rec) else None,
       "errors": rec.loc[rec["status"] != "ok", "error"].head(3).tolist()}
with open(sys.argv[3], "w") as handle:
    json.dump(doc, handle, default=float)
"""


@dataclass(frozen=True)
class Scenario:
    key: str
    requests: int
    warmup: int
    concurrency: int | None = None  # closed loop
    rate: float | None = None       # open loop (Poisson, uncapped)

    @property
    def input_tokens(self) -> int:
        return INPUT_TOKENS if self.rate is None else OPEN_INPUT_TOKENS

    @property
    def output_tokens(self) -> int:
        return OUTPUT_TOKENS if self.rate is None else OPEN_OUTPUT_TOKENS

    def load(self) -> str:
        return f"concurrency {self.concurrency}" if self.rate is None else f"rate {self.rate:g} req/s (open loop)"

    def label(self) -> str:
        return (f"({self.key}) {self.load()}, {self.requests} requests (+{self.warmup} warm-up), "
                f"{self.input_tokens} input tokens, {self.output_tokens} output tokens")


@dataclass
class Run:
    tool: str
    round: int
    ok: int
    errors: int
    duration_s: float
    output_tokens: float
    ttft_ms: list[float]
    itl_ms: list[float]    # per request: (latency - TTFT) / (output tokens - 1)
    delivered: float | None  # (requests sent - 1) / (last send - first send)
    new_share: float | None  # share of measured requests on a connection opened for them
    ttft_p50: float        # as the tool itself reports it
    ttft_p99: float
    request_throughput: float
    output_token_throughput: float
    cached_mean: float | None
    cpu_s: float           # the whole child process tree (getrusage)
    cpu_measured_s: float | None  # the tree's CPU between first send and last response (/proc samples)
    wall_s: float
    in_flight: float | None = None  # mean requests in flight over the measured window: sum(latency) / duration
    lag_ms: tuple[float, float] | None = None  # AIPerf: credit issued -> sent; ours (open loop): due -> sent
    note: str = ""


# --------------------------------------------------------------------------------------------------------------
# AIPerf's own venv
# --------------------------------------------------------------------------------------------------------------
def cache_root() -> Path:
    return Path(os.environ.get("GTCDEMO_CACHE") or Path.home() / ".cache" / "gtcdemo").expanduser()


def installed_aiperf(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "bin" / "aiperf").exists():
        return None
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('aiperf'))"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def _fail_install(step: str, proc: subprocess.CompletedProcess, venv: Path) -> None:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if not line.startswith("WARNING: Location")]  # this machine's pip config lists absent local indexes
    print("\n".join(lines[-40:]), file=sys.stderr)
    sys.exit(f"\nERROR: could not install AIPerf for this benchmark: `{step}` exited with {proc.returncode} "
             f"(output above). AIPerf lives only in {venv}; fix the cause (network to PyPI? disk space?), or remove "
             f"that folder, and run the benchmark again.")


def ensure_aiperf() -> Path:
    """The aiperf executable of AIPerf's own venv, created (python3 -m venv + pip install) on the first run."""
    venv = cache_root() / "aiperf-venv"
    if installed_aiperf(venv) == AIPERF_VERSION:
        return venv / "bin" / "aiperf"
    print(f"installing aiperf=={AIPERF_VERSION} into its own venv {venv} (first run only, a few minutes)...",
          flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        python3 = shutil.which("python3") or sys.executable
        cmd = [python3, "-m", "venv", str(venv)]
        made = subprocess.run(cmd, capture_output=True, text=True)
        if made.returncode != 0:
            _fail_install(shlex.join(cmd), made, venv)
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", f"aiperf=={AIPERF_VERSION}"]
    t0 = time.perf_counter()
    pip = subprocess.run(cmd, capture_output=True, text=True)
    if pip.returncode != 0:
        _fail_install(shlex.join(cmd), pip, venv)
    version = installed_aiperf(venv)
    if version != AIPERF_VERSION:
        sys.exit(f"ERROR: pip succeeded but {venv} has aiperf {version!r}, not {AIPERF_VERSION}; remove that folder "
                 "and run the benchmark again.")
    print(f"aiperf {version} installed in {time.perf_counter() - t0:.0f} s", flush=True)
    return venv / "bin" / "aiperf"


# --------------------------------------------------------------------------------------------------------------
# Child processes: CPU accounting and clean stops
# --------------------------------------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds of the process plus its reaped children), for every process on the machine."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()  # after "pid (comm) ": state ppid ... utime stime cutime cstime
        table[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK_TCK)
    return table


class TreeSampler(threading.Thread):
    """Samples the CPU of a process tree every 0.1 s (a reaped child's time moves into its parent's cutime)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def sample(self) -> None:
        table = _proc_table()
        if self.root not in table:
            return
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        total, todo = 0.0, [self.root]
        while todo:
            pid = todo.pop()
            total += table[pid][1]
            todo.extend(children.get(pid, ()))
        self.samples.append((time.time(), total))

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def cpu_between(self, t0: float, t1: float) -> float | None:
        """CPU seconds the tree used between two epoch times (linear between samples); None without samples."""
        if len(self.samples) < 2 or t1 <= t0:
            return None
        times = np.array([s[0] for s in self.samples])
        cpu = np.array([s[1] for s in self.samples])
        return float(np.interp(t1, times, cpu) - np.interp(t0, times, cpu))


def stop_group(proc: subprocess.Popen, name: str) -> None:
    """Stop the child's whole process group (AIPerf's services and workers too), gently first."""
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Group members that outlived the leader (orphans, not reaped by it, so not in RUSAGE_CHILDREN either).
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    print(f"  note: {name} left processes in its group after exiting; killing them", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_child(cmd: list[str], log: Path, env: dict[str, str], name: str) -> tuple[int, float, float, TreeSampler]:
    """Run ``cmd`` in its own session -> (exit code, CPU s of its tree, wall s, CPU sampler)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        code = proc.wait()
    finally:
        sampler.stop()
        stop_group(proc, name)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, cpu, wall, sampler


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------------------------
# The two tools
# --------------------------------------------------------------------------------------------------------------
def run_ours(base: str, model: str, sc: Scenario, rnd: int, seed: int, work: Path) -> Run:
    out = work / f"ours-{sc.key}-{rnd}.json"
    log = work / f"ours-{sc.key}-{rnd}.log"
    spec = {"model": model, "concurrency": sc.concurrency, "request_rate": sc.rate, "num_requests": sc.requests,
            "warmup_requests": sc.warmup, "input_tokens_mean": sc.input_tokens, "output_tokens": sc.output_tokens,
            "seed": seed}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    code, cpu, wall, sampler = run_child([sys.executable, "-c", OURS_CHILD, json.dumps(spec), base, str(out)],
                                         log, env, "our load generator")
    if code != 0 or not out.exists():
        raise RuntimeError(f"our load generator exited with {code}; its output:\n{_tail(log)}")
    doc = json.loads(out.read_text())
    s = doc["summary"]
    window = doc["window"]
    lag = (s["send_lag_ms"]["p50"], s["send_lag_ms"]["p99"])
    return Run(tool="ours", round=rnd, ok=s["ok_count"], errors=s["error_count"], duration_s=s["duration_s"],
               output_tokens=doc["output_tokens"], ttft_ms=doc["ttft_ms"], itl_ms=doc["itl_ms"],
               delivered=s["delivered_rate"], new_share=doc["new_share"], ttft_p50=s["ttft_ms"]["p50"],
               ttft_p99=s["ttft_ms"]["p99"], request_throughput=s["request_throughput"],
               output_token_throughput=s["output_token_throughput"], cached_mean=doc["cached_tokens_mean"],
               cpu_s=cpu, cpu_measured_s=sampler.cpu_between(*window) if window else None, wall_s=wall,
               in_flight=doc["in_flight"], lag_ms=lag if None not in lag else None, note="; ".join(doc["errors"]))


def aiperf_command(exe: Path, base: str, model: str, tokenizer: Path, sc: Scenario, seed: int,
                   artifacts: Path) -> list[str]:
    return [
        str(exe), "profile",
        "--model", model, "--tokenizer", str(tokenizer),
        "--endpoint-type", "chat", "--streaming", "--url", base,
        *(["--concurrency", str(sc.concurrency)] if sc.rate is None else ["--request-rate", f"{sc.rate:g}"]),
        "--request-count", str(sc.requests), "--warmup-request-count", str(sc.warmup),
        # One dataset entry per request: by default AIPerf makes request-count entries and its warm-up re-sends the
        # first ones in the measured phase, where they hit the prefix cache (lower TTFT than fresh prompts).
        "--num-dataset-entries", str(sc.requests + sc.warmup),
        "--synthetic-input-tokens-mean", str(sc.input_tokens), "--synthetic-input-tokens-stddev", "0",
        "--output-tokens-mean", str(sc.output_tokens),
        "--extra-inputs", "ignore_eos:true",  # top level: Dynamo 1.6 rejects nvext.ignore_eos
        "--use-legacy-max-tokens",            # max_tokens, as ours sends (not max_completion_tokens)
        "--use-server-token-count",           # output tokens from `usage`, as ours counts them
        "--random-seed", str(seed),
        "--artifact-dir", str(artifacts),
        "--ui-type", "none",
        "--no-server-metrics", "--no-gpu-telemetry",  # no /metrics scraping, no DCGM probing: only the load
    ]


def _aiperf_export(artifacts: Path) -> Path:
    top = artifacts / "profile_export_aiperf.json"
    if top.exists():
        return top
    found = sorted(artifacts.rglob("profile_export_aiperf.json"), key=lambda p: ("warmup" in p.parts, len(p.parts)))
    if not found:
        raise FileNotFoundError(f"no profile_export_aiperf.json under {artifacts}")
    return found[0]


def run_aiperf(exe: Path, base: str, model: str, tokenizer: Path, sc: Scenario, rnd: int, seed: int,
               work: Path) -> tuple[Run, list[str]]:
    artifacts = work / f"aiperf-{sc.key}-{rnd}"
    log = work / f"aiperf-{sc.key}-{rnd}.log"
    cmd = aiperf_command(exe, base, model, tokenizer, sc, seed, artifacts)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", NO_COLOR="1", COLUMNS="160")
    code, cpu, wall, sampler = run_child(cmd, log, env, "AIPerf")
    try:
        export = json.loads(_aiperf_export(artifacts).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"AIPerf exited with {code} and no readable JSON export ({exc}); its output:\n"
                           f"{_tail(log)}") from None
    if code != 0:
        print(f"  note: AIPerf exited with {code} (its JSON export was read anyway)", flush=True)

    def metric(name: str, key: str = "avg") -> float | None:
        value = export.get(name)
        return value.get(key) if isinstance(value, dict) else None

    # Per-request TTFTs and the measured window, from the per-record export (profiling phase only).
    ttfts: list[float] = []
    itls: list[float] = []
    reused: list[float] = []
    starts: list[int] = []
    ends: list[int] = []
    errors = 0
    records = artifacts / "profile_export.jsonl"
    for line in records.read_text().splitlines() if records.exists() else []:
        rec = json.loads(line)
        meta = rec.get("metadata", {})
        if meta.get("benchmark_phase") != "profiling":
            continue
        starts.append(meta["request_start_ns"])
        ends.append(meta.get("request_end_ns") or meta["request_start_ns"])
        metrics = rec.get("metrics") or {}
        ttft = metrics.get("time_to_first_token")
        if "http_req_connection_reused" in metrics:
            reused.append(float(metrics["http_req_connection_reused"]["value"]))
        if rec.get("error") or ttft is None:
            errors += 1
        else:
            ttfts.append(float(ttft["value"]))
            if "inter_token_latency" in metrics:
                itls.append(float(metrics["inter_token_latency"]["value"]))
    window = (min(starts) / 1e9, max(ends) / 1e9) if starts else None
    in_flight = (sum(e - s for s, e in zip(starts, ends, strict=True)) / (max(ends) - min(starts))
                 if starts and max(ends) > min(starts) else None)
    lag = (metric("credit_to_start_latency", "p50"), metric("credit_to_start_latency", "p99"))
    ok = int(metric("request_count") or len(ttfts))
    errors = max(errors, int(metric("error_request_count") or 0))
    span = (max(starts) - min(starts)) / 1e9 if len(starts) >= 2 else 0.0
    run = Run(tool="aiperf", round=rnd, ok=ok, errors=errors, duration_s=metric("benchmark_duration") or 0.0,
              output_tokens=metric("total_output_tokens") or 0.0, ttft_ms=ttfts, itl_ms=itls,
              delivered=(len(starts) - 1) / span if span > 0 else None,
              new_share=1 - float(np.mean(reused)) if reused else None,
              ttft_p50=metric("time_to_first_token", "p50"), ttft_p99=metric("time_to_first_token", "p99"),
              request_throughput=metric("request_throughput") or 0.0,
              output_token_throughput=metric("output_token_throughput") or 0.0,
              cached_mean=metric("usage_prompt_cache_read_tokens"), cpu_s=cpu,
              cpu_measured_s=sampler.cpu_between(*window) if window else None, wall_s=wall,
              in_flight=in_flight, lag_ms=lag if None not in lag else None,
              note="; ".join(str(e)[:200] for e in export.get("error_summary") or [])[:300])
    return run, cmd


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Pooled:
    ok: int
    errors: int
    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    request_throughput: float
    output_token_throughput: float
    delivered: float | None  # mean over runs, req/s
    new_share: float | None  # mean over runs
    cpu_s: float           # mean per run
    cpu_measured_s: float | None
    cpu_ms_per_request: float
    in_flight: float | None


def _pct(values: list[list[float]], q: float) -> float:
    arr = np.concatenate([np.asarray(v, dtype=float) for v in values]) if values else np.array([])
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def _mean(values: list[float | None]) -> float | None:
    return float(np.mean(values)) if values and None not in values else None


def pool(runs: list[Run]) -> Pooled:
    """All rounds of one tool in one scenario: percentiles over every request, rates over the summed durations."""
    duration = sum(r.duration_s for r in runs)
    ok = sum(r.ok for r in runs)
    return Pooled(ok=ok, errors=sum(r.errors for r in runs),
                  ttft_p50=_pct([r.ttft_ms for r in runs], 50), ttft_p99=_pct([r.ttft_ms for r in runs], 99),
                  itl_p50=_pct([r.itl_ms for r in runs], 50),
                  request_throughput=ok / duration if duration else 0.0,
                  output_token_throughput=sum(r.output_tokens for r in runs) / duration if duration else 0.0,
                  delivered=_mean([r.delivered for r in runs]), new_share=_mean([r.new_share for r in runs]),
                  cpu_s=float(np.mean([r.cpu_s for r in runs])),
                  cpu_measured_s=_mean([r.cpu_measured_s for r in runs]),
                  cpu_ms_per_request=sum(r.cpu_s for r in runs) / max(ok, 1) * 1000,
                  in_flight=(sum(r.in_flight * r.duration_s for r in runs) / duration
                             if duration and all(r.in_flight is not None for r in runs) else None))


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt)


HEADER = (f"{'tool':<8}{'run':<8}{'ok':>5}{'err':>5}{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>9}{'sent':>8}"
          f"{'req/s':>8}{'out tok/s':>11}{'in':>7}{'new':>6}{'CPU s':>8}{'CPU s':>9}{'wall s':>8}")
HEADER2 = (f"{'':<8}{'':<8}{'':>5}{'':>5}{'ms':>10}{'ms':>10}{'ms':>9}{'req/s':>8}{'':>8}{'':>11}{'flight':>7}"
           f"{'conn':>6}{'(all)':>8}{'(meas.)':>9}{'':>8}")


def print_row(r: Run) -> None:
    itl = float(np.median(r.itl_ms)) if r.itl_ms else None
    print(f"{r.tool:<8}{'round ' + str(r.round + 1):<8}{r.ok:>5}{r.errors:>5}{_f(r.ttft_p50, '.2f'):>10}"
          f"{_f(r.ttft_p99, '.2f'):>10}{_f(itl, '.2f'):>9}{_f(r.delivered, '.2f'):>8}{r.request_throughput:>8.2f}"
          f"{r.output_token_throughput:>11.1f}{_f(r.in_flight, '.1f'):>7}{_f(r.new_share, '.2f'):>6}"
          f"{r.cpu_s:>8.2f}{_f(r.cpu_measured_s, '.2f'):>9}{r.wall_s:>8.1f}"
          + (f"   errors: {r.note}" if r.note else ""))


def print_pooled(tool: str, p: Pooled) -> None:
    print(f"{tool:<8}{'all':<8}{p.ok:>5}{p.errors:>5}{p.ttft_p50:>10.2f}{p.ttft_p99:>10.2f}{p.itl_p50:>9.2f}"
          f"{_f(p.delivered, '.2f'):>8}{p.request_throughput:>8.2f}{p.output_token_throughput:>11.1f}"
          f"{_f(p.in_flight, '.1f'):>7}{_f(p.new_share, '.2f'):>6}{p.cpu_s:>8.2f}{_f(p.cpu_measured_s, '.2f'):>9}"
          f"{'':>8}   (CPU: mean per run; {p.cpu_ms_per_request:.1f} ms/request)")


def ratio_line(what: str, ours: float | None, theirs: float | None, target: str | None = None,
               met: bool | None = None) -> None:
    if ours is None or theirs is None or not theirs or np.isnan(ours) or np.isnan(theirs):
        print(f"  {what:<44} n/a")
        return
    verdict = f"   (target {target}: {'met' if met else 'NOT met'})" if target else ""
    print(f"  {what:<44} {ours / theirs:6.3f}{verdict}")


def _within(o: float, a: float, tolerance: float) -> bool:
    return bool(a) and abs(o / a - 1) <= tolerance


def report(scenarios: list[Scenario], results: dict[str, dict[str, list[Run]]], commands: dict[str, list[str]]) -> None:
    print("\n" + "=" * 118)
    print("RESULTS (per run as each tool reports it; 'all' = every request of every round, percentiles by numpy)")
    print("sent req/s: (requests sent - 1) / (last send - first send). new conn: share of requests on a connection "
          "opened for them.\nCPU s (all): the tool's whole process tree for the run (start-up, prompts, warm-up, "
          "load, report), from getrusage(RUSAGE_CHILDREN).\nCPU s (meas.): the same tree between its first request "
          "sent and last response received (/proc samples every 0.1 s).")
    pooled: dict[str, dict[str, Pooled]] = {}
    for sc in scenarios:
        print(f"\n{sc.label()}")
        print(HEADER)
        print(HEADER2)
        pooled[sc.key] = {}
        for tool in ("ours", "aiperf"):
            for r in results[sc.key][tool]:
                print_row(r)
        for tool in ("ours", "aiperf"):
            pooled[sc.key][tool] = pool(results[sc.key][tool])
            print_pooled(tool, pooled[sc.key][tool])

    print("\nin flight: mean requests in flight over the measured window, sum(latency) / duration (AIPerf calls "
          "it effective concurrency).\nLag inside the client, p50 / p99 ms per run: AIPerf's credit issued by its "
          "timing manager -> request sent by its worker;\nours (open loop): an arrival's due time -> request sent "
          "(event loop, CPU). Both are outside TTFT.")
    for sc in scenarios:
        for tool in ("ours", "aiperf"):
            lags = ", ".join(f"{r.lag_ms[0]:.1f} / {r.lag_ms[1]:.1f}" if r.lag_ms else "n/a"
                             for r in results[sc.key][tool])
            print(f"  ({sc.key}) {tool:<7}{lags}")
    print("\nThe 'all' rows divide by first request sent -> last response received, in both tools (AIPerf's "
          "benchmark_duration);\nAIPerf's own per-run req/s divides by its phase window, which opens a few ms "
          "before its first request, so it reads slightly lower.")
    print("\nRATIOS ours / aiperf (from the 'all' rows)")
    for sc in scenarios:
        o, a = pooled[sc.key]["ours"], pooled[sc.key]["aiperf"]
        print(f" ({sc.key}) {sc.load()}")
        if sc.rate is not None:
            for tool, p in (("ours", o), ("aiperf", a)):
                share = None if p.delivered is None else p.delivered / sc.rate
                target = ("  (target >= 0.98: " + ("met)" if share is not None and share >= 0.98 else "NOT met)")
                          if tool == "ours" else "  (informative: its Poisson draw is not conditioned on its count)")
                print(f"  {'delivered / offered, ' + tool:<44} {_f(share, '6.3f')}{target}")
        for name, ov, av in (("TTFT p50", o.ttft_p50, a.ttft_p50), ("TTFT p99", o.ttft_p99, a.ttft_p99)):
            ratio_line(name, ov, av, "within ±5%", _within(ov, av, 0.05))
        ratio_line("ITL p50", o.itl_p50, a.itl_p50, "within ±3%" if sc.rate is not None else None,
                   _within(o.itl_p50, a.itl_p50, 0.03))
        if sc.concurrency is not None and sc.concurrency >= 64:
            ratio_line("request throughput", o.request_throughput, a.request_throughput, ">= 1.0",
                       o.request_throughput >= a.request_throughput)
        else:
            ratio_line("request throughput", o.request_throughput, a.request_throughput)
        ratio_line("output token throughput", o.output_token_throughput, a.output_token_throughput)
        ratio_line("CPU, whole run (start-up included)", o.cpu_s, a.cpu_s, "<= 0.33", o.cpu_s <= 0.33 * a.cpu_s)
        ratio_line("CPU, measured phase only (informative)", o.cpu_measured_s, a.cpu_measured_s)

    print("\nCONNECTIONS (both keep connections alive)")
    print("  ours:   httpx, one shared AsyncClient; kept-alive connections in a free list, the least recently used "
          "taken first (aiohttp's order);\n          one per request in flight at most, opened during the warm-up or "
          "when every open one is busy (gtcdemo.load.transport.SlotTransport).")
    print("  aiperf: aiohttp connection pool ('--connection-reuse-strategy pooled', the default), least recently used "
          "first (TCPConnector._get).")
    print("  share of measured requests on a new connection, mean per run (ours / aiperf):")
    for sc in scenarios:
        o, a = pooled[sc.key]["ours"], pooled[sc.key]["aiperf"]
        print(f"  ({sc.key}) {_f(o.new_share, '.3f')} / {_f(a.new_share, '.3f')}")
    for key, cmd in commands.items():
        print(f"\nAIPerf command, scenario ({key}), round 1:\n  {shlex.join(cmd)}")


# --------------------------------------------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated request rates, got {text!r} (e.g. 4,32)") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be > 0 req/s, got {text!r} (e.g. 4,32)")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (each: ours and aiperf)")
    parser.add_argument("--requests-c1", type=int, default=40, help="measured requests at concurrency 1")
    parser.add_argument("--requests-c64", type=int, default=320, help="measured requests at concurrency 64")
    parser.add_argument("--rates", type=_rates, default=[4.0, 16.0, 32.0], help="open-loop rates, req/s")
    parser.add_argument("--open-seconds", type=float, default=12.0,
                        help="open loop: rate x this many measured requests per run")
    parser.add_argument("--keep", type=Path, help="keep the runs' logs, outputs and AIPerf artifacts in this folder")
    args = parser.parse_args()

    print("command:", shlex.join([sys.executable, *sys.argv]), f"(cwd {os.getcwd()})", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the graph and AIPerf like Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIGINT ignored)
    exe = ensure_aiperf()
    scenarios = [Scenario("a", args.requests_c1, 4, concurrency=1),
                 Scenario("b", args.requests_c64, 64, concurrency=64)]
    scenarios += [Scenario(chr(ord("c") + i), max(2, round(rate * args.open_seconds)), 4, rate=rate)
                  for i, rate in enumerate(args.rates)]
    t_start = time.perf_counter()
    results: dict[str, dict[str, list[Run]]] = {sc.key: {"ours": [], "aiperf": []} for sc in scenarios}
    commands: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="gtcdemo-vs-aiperf-") as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp) / "runs"
        work.mkdir(parents=True, exist_ok=True)
        target = LocalTarget("dev", state_dir=Path(tmp) / "dev-gtc-demo")
        try:
            t0 = time.perf_counter()
            target.apply()
            target.wait(timeout_s=180)
            base = target.frontend_url()
            model = target.bundle.served_model_name
            tokenizer = pvc_root() / "model-nfs-pvc" / model
            if not (tokenizer / "tokenizer.json").is_file():
                raise RuntimeError(f"the served model's tokenizer folder {tokenizer} has no tokenizer.json")
            print(f"local graph ready in {time.perf_counter() - t0:.1f} s at {base} ({os.cpu_count()} cores shared "
                  f"by the graph and the tool under test); model {model}; tokenizer folder {tokenizer}", flush=True)
            for i, sc in enumerate(scenarios):
                print(f"\n{sc.label()}", flush=True)
                for rnd in range(args.rounds):
                    seed = 100 * i + rnd
                    order = ("ours", "aiperf") if rnd % 2 == 0 else ("aiperf", "ours")
                    for tool in order:
                        if tool == "ours":
                            r = run_ours(base, model, sc, rnd, seed, work)
                        else:
                            r, cmd = run_aiperf(exe, base, model, tokenizer, sc, rnd, seed + 50, work)
                            commands.setdefault(sc.key, cmd)
                        results[sc.key][tool].append(r)
                        print(f"  round {rnd + 1} {tool + ':':<7} TTFT p50 {_f(r.ttft_p50, '.2f')} ms, "
                              f"sent {_f(r.delivered, '.2f')} req/s, {r.request_throughput:.2f} req/s done, "
                              f"CPU {r.cpu_s:.2f} s, wall {r.wall_s:.1f} s", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the graph", file=sys.stderr)
            return 130
        finally:
            target.teardown()
            left = target.leftover_pids()
            if left:
                print(f"WARNING: graph processes still alive after teardown: {left}", file=sys.stderr)
    report(scenarios, results, commands)
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s (graph start-up and teardown included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
