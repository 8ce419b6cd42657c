"""Running the disaggregated-vs-aggregated comparison: how long it takes, each layout deployed alone in turn, and
its records on disk (what a replay and the closing verdicts read back).

The numbers and the verdict are ``gtcdemo.comparison``'s; the figures ``gtcdemo.comparison_plots``'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import load, project
from .comparison import (
    COLUMNS,
    DEFAULT_LAYOUTS,
    DEFAULT_LEVELS,
    DEFAULT_SLO_TTFT_MS,
    PRESETS,
    gpu_count,
    layout_records,
    preset_spec,
    serving,
    verdict,
)
from .errors import ConfigError, DeploymentError
from .results import Table
from .target import Target

# -- how long it takes ---------------------------------------------------------------------------------------------
# Bringing one layout up (apply -> a completion succeeds) and down again, per target. Local: 6.3-6.9 s up, 0.5 s
# down (measured, both layouts, on this 2-core machine). Cluster: the TRT-LLM workers load Llama-3.1-8B from the NFS
# volume, ~5 min on a first start (README, troubleshooting: "Slow model load from NFS"), and deleting the DGD waits
# until its pods are gone (~30 s of graceful shutdown).
STARTUP_S = {"local": 7.0, "cluster": 300.0}
TEARDOWN_S = {"local": 0.5, "cluster": 30.0}
# A request's duration for the estimate: TTFT ~0.1 s (75-140 ms measured locally at 3,000-token prompts) plus its
# output tokens at 7 ms each (ITL p50 measured locally at 1-16 concurrent: 4.6-9.8 ms; the H100 floor is 4.8 ms).
ESTIMATE_TTFT_S, ESTIMATE_ITL_S = 0.1, 0.007


def sweep_seconds(spec: load.LoadSpec, levels: Sequence[float]) -> float:
    """Expected time of one layout's sweep (closed loop): per level the warm-up, then the measured requests until
    ``num_requests`` or ``duration_s``, then the requests still in flight at the deadline."""
    request_s = ESTIMATE_TTFT_S + spec.output_tokens * ESTIMATE_ITL_S
    total = 0.0
    for level in levels:
        waves = math.ceil((spec.num_requests or math.inf) / level) * request_s
        measured = min(waves, spec.duration_s) if spec.duration_s else waves
        total += math.ceil(spec.warmup_requests / level) * request_s + measured + request_s
    return total


def expected_seconds(spec: load.LoadSpec, levels: Sequence[float], target_name: str, layouts: int = 2,
                     restarts: int = 0) -> float:
    """Expected time of the whole comparison on ``target_name``: each layout brought up, swept and taken down, plus
    ``restarts`` graphs brought back afterwards (those found running)."""
    return (layouts * (STARTUP_S[target_name] + TEARDOWN_S[target_name] + sweep_seconds(spec, levels))
            + restarts * STARTUP_S[target_name])


def duration_text(seconds: float) -> str:
    """``45 s``, ``12 min``: how long, for a sentence."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def timing_note(spec: load.LoadSpec, levels: Sequence[float], target_name: str, restarts: int = 0) -> str:
    """How long the comparison takes here and on the cluster, and where that time goes; ``restarts``: graphs found
    running that are brought back afterwards."""
    sweep = 2 * sweep_seconds(spec, levels)
    here = f"about {duration_text(expected_seconds(spec, levels, target_name, restarts=restarts))} on {target_name}"
    if target_name != "cluster":
        here += f", about {duration_text(expected_seconds(spec, levels, 'cluster', restarts=restarts))} on the cluster"
    back = f"; then the graph found running is brought back ({restarts})" if restarts else ""
    return (f"Expected time: {here}. On the cluster each layout's workers load the model from NFS "
            f"(~{STARTUP_S['cluster'] / 60:.0f} min on a first start) and are deleted afterwards "
            f"(~{TEARDOWN_S['cluster']:.0f} s); the load itself takes about {duration_text(sweep)} "
            f"({len(levels)} levels x 2 layouts, each level at most {spec.duration_s:g} s or "
            f"{spec.num_requests} requests){back}.")


# -- what is compared ----------------------------------------------------------------------------------------------
def layouts_table(targets: Sequence[Target]) -> Table:
    """One row per layout: its DGD, how it serves, its workers with replicas, GPUs and batch size, the GPUs in all."""
    rows = []
    for target in targets:
        bundle = target.bundle
        workers = []
        for name, svc in bundle.services.items():
            if svc.get("componentType") != "worker":
                continue
            gpus = ((svc.get("resources") or {}).get("limits") or {}).get("gpu", 0)
            workers.append(f"{name} x{svc.get('replicas', 1)} ({gpus} GPU each)")
        rows.append({"env": target.env, "DGD": bundle.name, "serving": serving(bundle.services),
                     "workers": ", ".join(workers), "GPUs": gpu_count(bundle.services)})
    return Table("The two layouts: the same model and Frontend, the same GPUs", pd.DataFrame(rows))


def check_comparable(targets: Sequence[Target]) -> None:
    """Refuse, before anything is deployed, layouts that would not compare disaggregated with aggregated serving on
    the same number of GPUs."""
    kinds = {t.env: serving(t.bundle.services) for t in targets}
    if sorted(kinds.values()) != ["aggregated", "disaggregated"]:
        raise ConfigError(f"the layouts serve {kinds}", where="layouts",
                          fix="compare one disaggregated env (e.g. dev) with one aggregated env (e.g. agg)")
    gpus = {t.env: gpu_count(t.bundle.services) for t in targets}
    if len(set(gpus.values())) != 1:
        raise ConfigError(f"the layouts hold different GPU counts: {gpus}", where="layouts",
                          fix="give both layouts' workers the same GPUs in all (replicas x resources.limits.gpu)")


# -- the records on disk -------------------------------------------------------------------------------------------
RECORDS_FILE, ABOUT_FILE = "comparison.csv", "comparison.json"


def default_folder(target_name: str, preset: str) -> Path:
    return project.ROOT / "out" / "comparison" / f"{target_name}-{preset}"


def save_records(frame: pd.DataFrame, folder: str | Path, about: Mapping[str, Any] | None = None) -> Path:
    """Write the records as ``comparison.csv`` (what a replay reads back) and ``about`` (where, when, which preset)
    as ``comparison.json`` beside them."""
    path = Path(folder) / RECORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    if about is not None:
        (path.parent / ABOUT_FILE).write_text(json.dumps(dict(about), indent=2, default=str) + "\n")
    return path


def read_records(folder: str | Path) -> pd.DataFrame:
    """The records ``save_records`` wrote, for a replay without a deployment."""
    path = Path(folder) / RECORDS_FILE
    if not path.is_file():
        raise ConfigError(f"no comparison records at {path}", where=str(folder),
                          fix="run the comparison first (notebook 06_disagg_vs_agg), or pass the folder it saved to")
    return pd.read_csv(path)[COLUMNS]


def read_about(folder: str | Path) -> dict[str, Any]:
    """What ``save_records`` wrote beside the records (empty when nothing was)."""
    path = Path(folder) / ABOUT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def verdicts(target_name: str, this: tuple[str, pd.DataFrame] | None = None) -> Table:
    """The verdict of every preset on ``target_name``: ``this`` run's (preset, records), and each other preset's
    last run saved in its default folder, at the SLO it was measured against; a preset never run says how to."""
    rows = []
    for preset in PRESETS:
        folder = default_folder(target_name, preset)
        if this is not None and this[0] == preset:
            frame, when = this[1], "this run"
        elif (folder / RECORDS_FILE).is_file():
            frame, when = read_records(folder), read_about(folder).get("recorded_at", "earlier")
        else:
            rows.append({"preset": preset, "measured": "not yet",
                         "verdict": f"run this notebook with -p preset {preset} -p target {target_name}"})
            continue
        rows.append({"preset": preset, "measured": when,
                     "verdict": verdict(frame)})
    return Table(f"What the data said on {target_name}", pd.DataFrame(rows),
                 "Each verdict is computed from that run's records, at the TTFT SLO it was measured against.")


# -- running it ----------------------------------------------------------------------------------------------------
FOUND_RUNNING = ("refuse", "stop", "restore")


def restore(targets: Sequence[Target], replicas: Mapping[str, Mapping[str, int]]) -> str:
    """Bring back each graph that ran before, with the replicas each service had; say what was brought back."""
    done = []
    for target in targets:
        target.apply()
        target.wait(timeout_s=900)
        changed = [service for service, n in replicas[target.env].items() if target.replicas(service) != n]
        for service in changed:
            target.scale(service, replicas[target.env][service])
        if changed:
            target.wait(timeout_s=900)
        done.append(f"{target.env} brought back as it was ("
                    + ", ".join(f"{s} x{n}" for s, n in replicas[target.env].items()) + ")")
    return "; ".join(done)


def run_comparison(target_name: str = "local", layouts: Sequence[str] = DEFAULT_LAYOUTS,
                   preset: str = "prefill-heavy", levels: Sequence[float] = DEFAULT_LEVELS, *,
                   slo_ttft_ms: float = DEFAULT_SLO_TTFT_MS, sizes: Mapping[str, Any] | None = None,
                   folder: str | Path | None = None, wait_timeout_s: float = 600.0, progress: bool = True,
                   found_running: str = "refuse") -> pd.DataFrame:
    """Deploy each layout in turn, sweep the same levels with the same workload, tear it down; return the records.

    One layout at a time because both use the same GPUs (the demo cluster has two). A layout found running holds
    them: ``found_running`` says what to do with it: ``refuse`` (nothing changes), ``stop`` (taken down first) or
    ``restore`` (taken down first and brought back afterwards with the replicas each service had, also when the
    comparison fails). Each layout is torn down after its sweep, also when the sweep fails or is interrupted; an
    interrupted sweep stops the comparison with what was measured. The records and each level's requests are
    saved under ``folder`` (default out/comparison/<target>-<preset>), with what was brought back.
    """
    from .targets import get_target

    if found_running not in FOUND_RUNNING:
        raise ConfigError(f"found_running is {found_running!r}", where="found_running",
                          fix=f"use one of {', '.join(FOUND_RUNNING)}")
    targets = [get_target(target_name, layout) for layout in layouts]
    # Every bundle, workload size and level is checked before anything is deployed.
    check_comparable(targets)
    specs = {t.env: preset_spec(preset, t.bundle.served_model_name, **dict(sizes or {})) for t in targets}
    if not levels:
        raise ConfigError("the comparison needs at least one load level", where="levels", fix="pass e.g. [1, 4, 16]")
    for spec in specs.values():
        for level in levels:
            spec.at_level(level)  # raises on a level the loop cannot run (e.g. 2.5 concurrent)
    folder = Path(folder) if folder is not None else default_folder(target_name, preset)
    found = [t for t in targets if t.is_running()]
    if found and found_running == "refuse":
        names = ", ".join(t.env for t in found)
        raise DeploymentError(f"{names} is already deployed on {found[0].name}: the comparison deploys each layout "
                              "alone on the same GPUs", where=found[0].name,
                              fix=f"`gtcdemo down --env {found[0].env}` first, or pass found_running='restore' "
                                  "(brought back afterwards) or 'stop'")
    before = {t.env: {service: t.replicas(service) for service in t.bundle.services} for t in found}
    for target in found:
        target.teardown()
    frames = []
    try:
        for target in targets:
            records, interrupted = _sweep(target, specs[target.env], levels, folder, wait_timeout_s, progress,
                                          slo_ttft_ms)
            frames.append(records)
            if interrupted:
                break
    finally:
        restored = restore(found, before) if found_running == "restore" else ""
    frame = pd.concat(frames, ignore_index=True)
    save_records(frame, folder, {"preset": preset, "target": target_name, "layouts": list(layouts),
                                 "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                 "sizes": dict(sizes or {}), "restored": restored})
    return frame


def _sweep(target: Target, spec: load.LoadSpec, levels: Sequence[float], folder: Path, wait_timeout_s: float,
           progress: bool, slo_ttft_ms: float) -> tuple[pd.DataFrame, bool]:
    """One layout: deploy it alone, sweep, tear it down (also on failure or Ctrl-C); its records, and whether the
    sweep was interrupted."""
    bundle = target.bundle
    try:
        target.apply()
        ready = target.wait(timeout_s=wait_timeout_s)
        if not ready.ready:
            raise DeploymentError(f"{target.env} did not become ready", where=target.name,
                                  fix=f"see `gtcdemo status --env {target.env}` and `gtcdemo logs`")
        with target.frontend() as url:
            results = load.sweep(url, spec, levels, progress=progress, save_to=folder / target.env)
    finally:
        target.teardown()
    return (layout_records(target.env, serving(bundle.services), gpu_count(bundle.services), results, slo_ttft_ms),
            results[-1].interrupted)


__all__ = ["FOUND_RUNNING", "STARTUP_S", "TEARDOWN_S", "check_comparable", "default_folder", "duration_text",
           "expected_seconds", "layouts_table", "read_about", "read_records", "restore", "run_comparison",
           "save_records", "sweep_seconds", "timing_note", "verdicts"]
