"""Our load generator against NVIDIA AIPerf 0.13, on the same local graph and the same load, interleaved.

Run: .venv/bin/python benchmarks/vs_aiperf.py [--rounds 4] [--requests-c1 40] [--requests-c64 320] [--keep DIR]

Two scenarios, each run by both tools in turn (ours, aiperf, ours, aiperf...) so both see the same graph state:
(a) concurrency 1 and (b) concurrency 64, ~200-token synthetic prompts, 32 output tokens (max_tokens + ignore_eos),
the same warm-up count for both tools (excluded from the results). Both tools run as child processes, so their CPU
is measured the same way: getrusage(RUSAGE_CHILDREN) around each run (the whole process tree: start-up, prompt
making, the load, the report), plus the tree's CPU during the measured phase alone, from /proc samples.
TTFT, request and output-token throughput are AIPerf's definitions in both tools. Numbers are printed, never
asserted; the targets are printed beside the ratios.

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
INPUT_TOKENS = 200
OUTPUT_TOKENS = 32
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
    concurrency: int
    requests: int
    warmup: int

    def label(self) -> str:
        return (f"({self.key}) concurrency {self.concurrency}, {self.requests} requests (+{self.warmup} warm-up), "
                f"{INPUT_TOKENS} input tokens, {OUTPUT_TOKENS} output tokens")


@dataclass
class Run:
    tool: str
    round: int
    ok: int
    errors: int
    duration_s: float
    output_tokens: float
    ttft_ms: list[float]
    ttft_p50: float        # as the tool itself reports it
    ttft_p99: float
    request_throughput: float
    output_token_throughput: float
    cached_mean: float | None
    cpu_s: float           # the whole child process tree (getrusage)
    cpu_measured_s: float | None  # the tree's CPU between first send and last response (/proc samples)
    wall_s: float
    in_flight: float | None = None  # mean requests in flight over the measured window: sum(latency) / duration
    lag_ms: tuple[float, float] | None = None  # AIPerf: credit issued -> request sent, p50 and p99
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
    spec = {"model": model, "concurrency": sc.concurrency, "num_requests": sc.requests,
            "warmup_requests": sc.warmup, "input_tokens_mean": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
            "seed": seed}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    code, cpu, wall, sampler = run_child([sys.executable, "-c", OURS_CHILD, json.dumps(spec), base, str(out)],
                                         log, env, "our load generator")
    if code != 0 or not out.exists():
        raise RuntimeError(f"our load generator exited with {code}; its output:\n{_tail(log)}")
    doc = json.loads(out.read_text())
    s = doc["summary"]
    window = doc["window"]
    return Run(tool="ours", round=rnd, ok=s["ok_count"], errors=s["error_count"], duration_s=s["duration_s"],
               output_tokens=doc["output_tokens"], ttft_ms=doc["ttft_ms"], ttft_p50=s["ttft_ms"]["p50"],
               ttft_p99=s["ttft_ms"]["p99"], request_throughput=s["request_throughput"],
               output_token_throughput=s["output_token_throughput"], cached_mean=doc["cached_tokens_mean"],
               cpu_s=cpu, cpu_measured_s=sampler.cpu_between(*window) if window else None, wall_s=wall,
               in_flight=doc["in_flight"], note="; ".join(doc["errors"]))


def aiperf_command(exe: Path, base: str, model: str, tokenizer: Path, sc: Scenario, seed: int,
                   artifacts: Path) -> list[str]:
    return [
        str(exe), "profile",
        "--model", model, "--tokenizer", str(tokenizer),
        "--endpoint-type", "chat", "--streaming", "--url", base,
        "--concurrency", str(sc.concurrency), "--request-count", str(sc.requests),
        "--warmup-request-count", str(sc.warmup),
        # One dataset entry per request: by default AIPerf makes request-count entries and its warm-up re-sends the
        # first ones in the measured phase, where they hit the prefix cache (lower TTFT than fresh prompts).
        "--num-dataset-entries", str(sc.requests + sc.warmup),
        "--synthetic-input-tokens-mean", str(INPUT_TOKENS), "--synthetic-input-tokens-stddev", "0",
        "--output-tokens-mean", str(OUTPUT_TOKENS),
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
               work: Path) -> tuple[Run, list[str], float | None]:
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
        ttft = (rec.get("metrics") or {}).get("time_to_first_token")
        if rec.get("error") or ttft is None:
            errors += 1
        else:
            ttfts.append(float(ttft["value"]))
    window = (min(starts) / 1e9, max(ends) / 1e9) if starts else None
    in_flight = (sum(e - s for s, e in zip(starts, ends, strict=True)) / (max(ends) - min(starts))
                 if starts and max(ends) > min(starts) else None)
    lag = (metric("credit_to_start_latency", "p50"), metric("credit_to_start_latency", "p99"))
    ok = int(metric("request_count") or len(ttfts))
    errors = max(errors, int(metric("error_request_count") or 0))
    run = Run(tool="aiperf", round=rnd, ok=ok, errors=errors, duration_s=metric("benchmark_duration") or 0.0,
              output_tokens=metric("total_output_tokens") or 0.0, ttft_ms=ttfts,
              ttft_p50=metric("time_to_first_token", "p50"), ttft_p99=metric("time_to_first_token", "p99"),
              request_throughput=metric("request_throughput") or 0.0,
              output_token_throughput=metric("output_token_throughput") or 0.0,
              cached_mean=metric("usage_prompt_cache_read_tokens"), cpu_s=cpu,
              cpu_measured_s=sampler.cpu_between(*window) if window else None, wall_s=wall,
              in_flight=in_flight, lag_ms=lag if None not in lag else None,
              note="; ".join(str(e)[:200] for e in export.get("error_summary") or [])[:300])
    return run, cmd, metric("http_req_connection_reused")


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Pooled:
    ok: int
    errors: int
    ttft_p50: float
    ttft_p99: float
    request_throughput: float
    output_token_throughput: float
    cpu_s: float           # mean per run
    cpu_measured_s: float | None
    cpu_ms_per_request: float
    in_flight: float | None


def pool(runs: list[Run]) -> Pooled:
    """All rounds of one tool in one scenario: percentiles over every request, rates over the summed durations."""
    ttft = np.concatenate([np.asarray(r.ttft_ms, dtype=float) for r in runs])
    duration = sum(r.duration_s for r in runs)
    ok = sum(r.ok for r in runs)
    measured = [r.cpu_measured_s for r in runs]
    return Pooled(ok=ok, errors=sum(r.errors for r in runs),
                  ttft_p50=float(np.percentile(ttft, 50)) if ttft.size else float("nan"),
                  ttft_p99=float(np.percentile(ttft, 99)) if ttft.size else float("nan"),
                  request_throughput=ok / duration if duration else 0.0,
                  output_token_throughput=sum(r.output_tokens for r in runs) / duration if duration else 0.0,
                  cpu_s=float(np.mean([r.cpu_s for r in runs])),
                  cpu_measured_s=float(np.mean(measured)) if None not in measured else None,
                  cpu_ms_per_request=sum(r.cpu_s for r in runs) / max(ok, 1) * 1000,
                  in_flight=(sum(r.in_flight * r.duration_s for r in runs) / duration
                             if duration and all(r.in_flight is not None for r in runs) else None))


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt)


HEADER = (f"{'tool':<8}{'run':<8}{'ok':>5}{'err':>5}{'TTFT p50':>10}{'TTFT p99':>10}{'req/s':>9}{'out tok/s':>11}"
          f"{'in':>7}{'cached':>8}{'CPU s':>8}{'CPU s':>9}{'wall s':>8}")
HEADER2 = (f"{'':<8}{'':<8}{'':>5}{'':>5}{'ms':>10}{'ms':>10}{'':>9}{'':>11}{'flight':>7}{'tok/req':>8}{'(all)':>8}"
           f"{'(meas.)':>9}{'':>8}")


def print_row(r: Run) -> None:
    print(f"{r.tool:<8}{'round ' + str(r.round + 1):<8}{r.ok:>5}{r.errors:>5}{_f(r.ttft_p50, '.2f'):>10}"
          f"{_f(r.ttft_p99, '.2f'):>10}{r.request_throughput:>9.2f}{r.output_token_throughput:>11.1f}"
          f"{_f(r.in_flight, '.1f'):>7}{_f(r.cached_mean, '.1f'):>8}{r.cpu_s:>8.2f}"
          f"{_f(r.cpu_measured_s, '.2f'):>9}{r.wall_s:>8.1f}"
          + (f"   errors: {r.note}" if r.note else ""))


def print_pooled(tool: str, p: Pooled) -> None:
    print(f"{tool:<8}{'all':<8}{p.ok:>5}{p.errors:>5}{p.ttft_p50:>10.2f}{p.ttft_p99:>10.2f}"
          f"{p.request_throughput:>9.2f}{p.output_token_throughput:>11.1f}{_f(p.in_flight, '.1f'):>7}{'':>8}"
          f"{p.cpu_s:>8.2f}"
          f"{_f(p.cpu_measured_s, '.2f'):>9}{'':>8}   (CPU: mean per run; {p.cpu_ms_per_request:.1f} ms/request)")


def ratio_line(what: str, ours: float | None, theirs: float | None, target: str | None = None,
               met: bool | None = None) -> None:
    if ours is None or theirs is None or not theirs:
        print(f"  {what:<40} n/a")
        return
    verdict = f"   (target {target}: {'met' if met else 'NOT met'})" if target else ""
    print(f"  {what:<40} {ours / theirs:6.3f}{verdict}")


def report(scenarios: list[Scenario], results: dict[str, dict[str, list[Run]]], reuse: dict[str, list[float]],
           commands: dict[str, list[str]]) -> None:
    print("\n" + "=" * 110)
    print("RESULTS (per run as each tool reports it; 'all' = every request of every round, percentiles by numpy)")
    print("CPU s (all): the tool's whole process tree for the run (start-up, prompts, warm-up, load, report), from "
          "getrusage(RUSAGE_CHILDREN).\nCPU s (meas.): the same tree between its first request sent and last "
          "response received (/proc samples every 0.1 s).")
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
          "it effective concurrency).\nAIPerf's lag: credit issued by its timing manager -> request sent by its "
          "worker (a wait inside the client, outside TTFT), p50 / p99 ms per run:")
    for sc in scenarios:
        lags = ", ".join(f"{r.lag_ms[0]:.1f} / {r.lag_ms[1]:.1f}" if r.lag_ms else "n/a"
                         for r in results[sc.key]["aiperf"])
        print(f"  ({sc.key}) {lags}")
    print("\nThe 'all' rows divide by first request sent -> last response received, in both tools (AIPerf's "
          "benchmark_duration);\nAIPerf's own per-run req/s divides by its phase window, which opens a few ms "
          "before its first request, so it reads slightly lower.")
    print("\nRATIOS ours / aiperf (from the 'all' rows)")
    for sc in scenarios:
        o, a = pooled[sc.key]["ours"], pooled[sc.key]["aiperf"]
        print(f" ({sc.key}) concurrency {sc.concurrency}")
        for name, ov, av in (("TTFT p50", o.ttft_p50, a.ttft_p50), ("TTFT p99", o.ttft_p99, a.ttft_p99)):
            ratio_line(name, ov, av, "within ±5%", abs(ov / av - 1) <= 0.05 if av else None)
        if sc.concurrency >= 64:
            ratio_line("request throughput", o.request_throughput, a.request_throughput, ">= 1.0",
                       o.request_throughput >= a.request_throughput)
        else:
            ratio_line("request throughput", o.request_throughput, a.request_throughput)
        ratio_line("output token throughput", o.output_token_throughput, a.output_token_throughput)
        ratio_line("CPU, whole run (start-up included)", o.cpu_s, a.cpu_s, "<= 0.33", o.cpu_s <= 0.33 * a.cpu_s)
        ratio_line("CPU, measured phase only (informative)", o.cpu_measured_s, a.cpu_measured_s)

    print("\nCONNECTIONS (both keep connections alive)")
    print("  ours:   httpx, one shared AsyncClient; one keep-alive connection per in-flight slot (so at most "
          "`concurrency` connections),\n          opened during the warm-up and reused for every later request "
          "(gtcdemo.load._SlotTransport).")
    for sc in scenarios:
        values = reuse.get(sc.key) or []
        shown = ", ".join(_f(v, ".3f") for v in values) or "n/a"
        print(f"  aiperf: ({sc.key}) aiohttp connection pool ('--connection-reuse-strategy pooled', the default); "
              f"share of measured requests on a reused connection, per run: {shown}")
    for key, cmd in commands.items():
        print(f"\nAIPerf command, scenario ({key}), round 1:\n  {shlex.join(cmd)}")


# --------------------------------------------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per scenario (each: ours, then aiperf)")
    parser.add_argument("--requests-c1", type=int, default=40, help="measured requests at concurrency 1")
    parser.add_argument("--requests-c64", type=int, default=320, help="measured requests at concurrency 64")
    parser.add_argument("--keep", type=Path, help="keep the runs' logs, outputs and AIPerf artifacts in this folder")
    args = parser.parse_args()

    print("command:", shlex.join([sys.executable, *sys.argv]), f"(cwd {os.getcwd()})", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the graph and AIPerf like Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIGINT ignored)
    exe = ensure_aiperf()
    scenarios = [Scenario("a", 1, args.requests_c1, 4), Scenario("b", 64, args.requests_c64, 64)]
    t_start = time.perf_counter()
    results: dict[str, dict[str, list[Run]]] = {sc.key: {"ours": [], "aiperf": []} for sc in scenarios}
    reuse: dict[str, list[float]] = {}
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
                    ours = run_ours(base, model, sc, rnd, seed, work)
                    results[sc.key]["ours"].append(ours)
                    print(f"  round {rnd + 1} ours:   TTFT p50 {_f(ours.ttft_p50, '.2f')} ms, "
                          f"{ours.request_throughput:.2f} req/s, CPU {ours.cpu_s:.2f} s, wall {ours.wall_s:.1f} s",
                          flush=True)
                    theirs, cmd, reused = run_aiperf(exe, base, model, tokenizer, sc, rnd, seed + 50, work)
                    results[sc.key]["aiperf"].append(theirs)
                    reuse.setdefault(sc.key, []).append(reused)
                    commands.setdefault(sc.key, cmd)
                    print(f"  round {rnd + 1} aiperf: TTFT p50 {_f(theirs.ttft_p50, '.2f')} ms, "
                          f"{theirs.request_throughput:.2f} req/s, CPU {theirs.cpu_s:.2f} s, "
                          f"wall {theirs.wall_s:.1f} s", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the graph", file=sys.stderr)
            return 130
        finally:
            target.teardown()
            left = target.leftover_pids()
            if left:
                print(f"WARNING: graph processes still alive after teardown: {left}", file=sys.stderr)
    report(scenarios, results, reuse, commands)
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s (graph start-up and teardown included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
