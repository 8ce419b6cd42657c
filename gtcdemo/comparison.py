"""Disaggregated vs aggregated serving on the same GPUs: the numbers per layout and load level, and the verdict.

The question every audience asks of disaggregation is what it bought against the same GPUs serving aggregated.
NVIDIA answers it with a frontier of output tokens/s per GPU against output tokens/s per user, one curve per
layout (Dynamo's benchmarks/llm/plot_pareto.py); this module measures both layouts with the same load generator
(``gtcdemo.load``), one after the other on the same GPUs, and derives every number from the records: nothing
about the outcome is written in advance, because it depends on the workload (prefill-heavy or decode-heavy).

Definitions (AIPerf's, as Dynamo's benchmarking scripts read them):

- output tokens/s per GPU: the run's output-token throughput / the GPUs the layout's workers hold
  (plot_pareto.py: ``output_token_throughput / num_gpus``);
- output tokens/s per user: AIPerf's ``output_token_throughput_per_user``, 1 / ITL of each request, averaged over
  the requests (the ``avg`` plot_pareto.py plots). Not 1 / mean ITL: that is the harmonic mean of the per-request
  rates and reads lower whenever ITLs spread; the per-request median is kept beside it;
- goodput: successful requests whose TTFT meets the SLO, per second of the run (AIPerf's goodput with a TTFT SLO).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import load, project
from .args import arg_value, container_args
from .errors import ConfigError, DeploymentError

# -- the H100 floor ------------------------------------------------------------------------------------------------
# A decode step of a dense model reads every weight once, so one step (the ITL of a lone request) cannot be
# faster than the weights' bytes over the memory bandwidth. Llama-3.1-8B: 8.03 B parameters x 2 bytes (BF16);
# H100 SXM: 3.35 TB/s GPU memory bandwidth (NVIDIA H100 Tensor Core GPU datasheet,
# https://www.nvidia.com/en-us/data-center/h100/). 16 GB / 3.35 TB/s = 4.8 ms, i.e. ~209 tokens/s per user.
H100_SXM_BANDWIDTH_BYTES_S = 3.35e12
LLAMA_8B_BF16_WEIGHT_BYTES = 8.03e9 * 2
H100_ITL_FLOOR_MS = LLAMA_8B_BF16_WEIGHT_BYTES / H100_SXM_BANDWIDTH_BYTES_S * 1000
H100_TOKENS_PER_USER_CEILING = 1000 / H100_ITL_FLOOR_MS

# -- workloads -----------------------------------------------------------------------------------------------------
# The default sizes keep one preset of the local comparison (2 layouts x 4 levels) within about two minutes on a
# 2-core machine: each level stops at num_requests or duration_s, whichever comes first. On the cluster pass larger
# ones (e.g. num_requests=200, duration_s=60).
DEFAULT_LEVELS = (1, 2, 4, 8)
DEFAULT_SLO_TTFT_MS = 500.0  # MLPerf Inference's interactive Llama-3.1-8B TTFT limit (its server limit is 2 s)


def prefill_heavy(model: str, *, input_tokens: int = 3000, output_tokens: int = 24, num_requests: int = 40,
                  duration_s: float = 6.0, **spec: Any) -> load.LoadSpec:
    """Long prompts, short answers (summarising, retrieval): the prompt's prefill dominates each request."""
    return load.LoadSpec(model=model, concurrency=1, input_tokens_mean=input_tokens, output_tokens=output_tokens,
                         num_requests=num_requests, duration_s=duration_s, warmup_requests=2, **spec)


def decode_heavy(model: str, *, input_tokens: int = 128, output_tokens: int = 256, num_requests: int = 40,
                 duration_s: float = 6.0, **spec: Any) -> load.LoadSpec:
    """Short prompts, long answers (chat, code generation): the decode steps dominate each request."""
    return load.LoadSpec(model=model, concurrency=1, input_tokens_mean=input_tokens, output_tokens=output_tokens,
                         num_requests=num_requests, duration_s=duration_s, warmup_requests=2, **spec)


PRESETS: dict[str, Callable[..., load.LoadSpec]] = {"prefill-heavy": prefill_heavy, "decode-heavy": decode_heavy}


def preset_spec(preset: str, model: str, **sizes: Any) -> load.LoadSpec:
    """The LoadSpec of a named preset, refusing an unknown name with the known ones."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown workload preset {preset!r}", where="preset",
                          fix=f"use one of {', '.join(PRESETS)}")
    return PRESETS[preset](model, **sizes)


# -- what a layout holds -------------------------------------------------------------------------------------------
def _workers(services: Mapping[str, Mapping]) -> list[Mapping]:
    return [s for s in services.values() if isinstance(s, Mapping) and s.get("componentType") == "worker"]


def gpu_count(services: Mapping[str, Mapping]) -> int:
    """GPUs the layout's workers hold: replicas x ``resources.limits.gpu``, summed over worker services."""
    return sum(int(s.get("replicas", 1)) * int(((s.get("resources") or {}).get("limits") or {}).get("gpu", 0))
               for s in _workers(services))


def serving(services: Mapping[str, Mapping]) -> str:
    """``disaggregated`` when a worker runs only prefill or only decode, else ``aggregated``."""
    for svc in _workers(services):
        mode = svc.get("subComponentType") or arg_value(container_args(dict(svc)), "--disaggregation-mode")
        if mode in ("prefill", "decode"):
            return "disaggregated"
    return "aggregated"


# -- per layout and level ------------------------------------------------------------------------------------------
COLUMNS = ["layout", "serving", "level", "mode", "gpus", "requests", "failed", "request_throughput",
           "output_tokens_per_s", "tokens_per_s_per_gpu", "tokens_per_s_per_user", "tokens_per_s_per_user_p50",
           "ttft_ms_p50", "ttft_ms_p95", "itl_ms_p50", "itl_ms_p95", "slo_ttft_ms", "goodput", "interrupted"]


def _ok(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["status"] == "ok"]


def tokens_per_user(records: pd.DataFrame) -> tuple[float, float]:
    """AIPerf's output tokens/s per user (mean over requests of 1 / ITL) and its median; NaN without an ITL."""
    itl = pd.to_numeric(_ok(records)["itl_s"], errors="coerce").to_numpy(dtype=float)
    per_request = 1.0 / itl[np.isfinite(itl) & (itl > 0)]
    if per_request.size == 0:
        return math.nan, math.nan
    return float(per_request.mean()), float(np.median(per_request))


def goodput(records: pd.DataFrame, duration_s: float, slo_ttft_ms: float) -> float:
    """Successful requests with TTFT <= the SLO, per second of the run (0 when nothing ran)."""
    ttft_ms = pd.to_numeric(_ok(records)["ttft_s"], errors="coerce").to_numpy(dtype=float) * 1000
    return float((ttft_ms <= slo_ttft_ms).sum()) / duration_s if duration_s > 0 else 0.0


def layout_records(layout: str, kind: str, gpus: int, results: Sequence[load.LoadResult],
                   slo_ttft_ms: float) -> pd.DataFrame:
    """One row per load level of one layout's sweep (COLUMNS), from ``load.sweep_table`` and the records."""
    if gpus < 1:
        raise ConfigError(f"layout {layout} holds {gpus} GPUs", where=f"manifests/{layout}",
                          fix="give its workers `resources.limits.gpu`")
    table = load.sweep_table(results)
    rows = []
    for result, (_, level) in zip(results, table.iterrows(), strict=True):
        per_user, per_user_p50 = tokens_per_user(result.records)
        duration = float(result.summary()["duration_s"])
        rows.append({
            "layout": layout, "serving": kind, "level": level["level"], "mode": level["mode"], "gpus": gpus,
            "requests": int(level["ok"] + level["errors"]), "failed": int(level["errors"]),
            "request_throughput": level["request_throughput"],
            "output_tokens_per_s": level["output_token_throughput"],
            "tokens_per_s_per_gpu": level["output_token_throughput"] / gpus,
            "tokens_per_s_per_user": per_user, "tokens_per_s_per_user_p50": per_user_p50,
            "ttft_ms_p50": level["ttft_ms_p50"], "ttft_ms_p95": level["ttft_ms_p95"],
            "itl_ms_p50": level["itl_ms_p50"], "itl_ms_p95": level["itl_ms_p95"], "slo_ttft_ms": slo_ttft_ms,
            "goodput": goodput(result.records, duration, slo_ttft_ms), "interrupted": result.interrupted,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def unfair(frame: pd.DataFrame) -> list[str]:
    """Why the records would not compare like with like (empty when they do): each layout must have run the same
    load levels on the same number of GPUs, with no failed request."""
    problems = []
    levels = {layout: sorted(rows["level"]) for layout, rows in frame.groupby("layout")}
    if len({tuple(v) for v in levels.values()}) > 1:
        problems.append(f"the layouts ran different load levels: {levels}")
    gpus = frame.groupby("layout")["gpus"].unique().map(list).to_dict()
    if frame["gpus"].nunique() > 1:
        problems.append(f"the layouts hold different GPU counts: {gpus}")
    failed = frame.groupby("layout")["failed"].sum()
    if failed.any():
        problems.append(f"failed requests: {failed[failed > 0].to_dict()}")
    return problems


# -- the verdict ---------------------------------------------------------------------------------------------------
TIE = 0.05  # within 5% counts as a tie: the local target's run-to-run spread at these sizes


def _unit(frame: pd.DataFrame) -> str:
    return "concurrent" if (frame["mode"] == "closed").all() else "req/s"


def _levels(levels: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in levels)


def _pair(frame: pd.DataFrame) -> tuple[str, str]:
    """(disaggregated layout, aggregated layout), refusing anything but one of each."""
    kinds = frame.drop_duplicates("layout").set_index("layout")["serving"]
    disagg, agg = list(kinds[kinds == "disaggregated"].index), list(kinds[kinds == "aggregated"].index)
    if len(disagg) != 1 or len(agg) != 1:
        raise ConfigError(f"the records hold layouts {dict(kinds)}", where="comparison records",
                          fix="compare one disaggregated and one aggregated layout")
    return disagg[0], agg[0]


def _best_within_slo(rows: pd.DataFrame, slo_ttft_ms: float) -> pd.Series | None:
    """The level with the most tokens/s per GPU among those with TTFT p95 within the SLO and no failed request."""
    ok = rows[(rows["ttft_ms_p95"] <= slo_ttft_ms) & (rows["failed"] == 0)]
    return None if ok.empty else ok.loc[ok["tokens_per_s_per_gpu"].idxmax()]


def _at_slo(frame: pd.DataFrame, names: dict[str, str], slo_ttft_ms: float, unit: str) -> str:
    best = {layout: _best_within_slo(frame[frame["layout"] == layout], slo_ttft_ms) for layout in names}
    met = {layout: row for layout, row in best.items() if row is not None}
    if not met:
        return f"neither layout keeps TTFT p95 within {slo_ttft_ms:g} ms at any level"
    if len(met) == 1:
        (layout, row), = met.items()
        return (f"only {names[layout]} keeps TTFT p95 within {slo_ttft_ms:g} ms "
                f"({row['tokens_per_s_per_gpu']:,.0f} output tokens/s per GPU at {row['level']:g} {unit})")
    (a, ra), (b, rb) = sorted(met.items(), key=lambda kv: -kv[1]["tokens_per_s_per_gpu"])
    gain = ra["tokens_per_s_per_gpu"] / rb["tokens_per_s_per_gpu"] - 1 if rb["tokens_per_s_per_gpu"] else math.inf
    if gain <= TIE:
        return (f"within a TTFT p95 of {slo_ttft_ms:g} ms both serve about the same output tokens/s per GPU "
                f"({ra['tokens_per_s_per_gpu']:,.0f} vs {rb['tokens_per_s_per_gpu']:,.0f})")
    return (f"within a TTFT p95 of {slo_ttft_ms:g} ms {names[a]} serves {gain:.0%} more output tokens/s per GPU "
            f"({ra['tokens_per_s_per_gpu']:,.0f} at {ra['level']:g} {unit} vs {rb['tokens_per_s_per_gpu']:,.0f} at "
            f"{rb['level']:g} {unit})")


def _lower(frame: pd.DataFrame, names: dict[str, str], metric: str, label: str, unit: str) -> str:
    """Which layout has the lower ``metric`` at which common level, ties (within TIE) left out."""
    wide = frame.pivot_table(index="level", columns="layout", values=metric).dropna()
    (a, name_a), (b, name_b) = names.items()
    wins: dict[str, list[float]] = {a: [], b: []}
    for level, row in wide.iterrows():
        low, high = sorted((a, b), key=lambda layout: row[layout])
        if row[high] > row[low] * (1 + TIE):
            wins[low].append(float(level))
    if not wins[a] and not wins[b]:
        return f"{label} equal within {TIE:.0%} at every level"
    parts = []
    for layout, name in ((a, name_a), (b, name_b)):
        if wins[layout]:
            top = wins[layout][-1]
            parts.append(f"{name} at {_levels(wins[layout])} {unit} ({wide.loc[top, layout]:.1f} vs "
                         f"{wide.loc[top, b if layout == a else a]:.1f} ms at {top:g})")
    return f"{label} lower for " + ", for ".join(parts)


def verdict(frame: pd.DataFrame, slo_ttft_ms: float) -> str:
    """One line computed from the records: where disaggregation wins and where it does not.

    Compares the two layouts at the load levels both ran: output tokens/s per GPU at the best level within the
    TTFT SLO (TTFT p95, no failed request), then ITL p50 and TTFT p95 level by level.
    """
    disagg, agg = _pair(frame)
    common = set(frame.loc[frame["layout"] == disagg, "level"]) & set(frame.loc[frame["layout"] == agg, "level"])
    if not common:
        return "the two layouts share no load level: nothing to compare"
    same = frame[frame["level"].isin(common)]
    names, unit = {disagg: "disaggregated", agg: "aggregated"}, _unit(same)
    failed = same.groupby("layout")["failed"].sum()
    note = "" if not failed.any() else "; failed requests: " + ", ".join(
        f"{names[k]} {int(v)}" for k, v in failed.items() if v)
    at_slo = _at_slo(same, names, slo_ttft_ms, unit)
    return (f"{at_slo[0].upper()}{at_slo[1:]}; "
            f"{_lower(same, names, 'itl_ms_p50', 'ITL p50', unit)}; "
            f"{_lower(same, names, 'ttft_ms_p95', 'TTFT p95', unit)}{note}.")


def floor_note(frame: pd.DataFrame) -> str:
    """How close each layout's best ITL p50 comes to the H100 bandwidth floor.

    A value below the floor is said to be one: no H100 decodes faster, so such a number comes from a timing model
    (the local target's mocker), not from a GPU.
    """
    parts = []
    for layout, rows in frame.groupby("layout", sort=False):
        best = rows["itl_ms_p50"].min()
        if np.isfinite(best):
            below = ", below the floor: simulated timing" if best < H100_ITL_FLOOR_MS else ""
            parts.append(f"{rows['serving'].iloc[0]} ({layout}) {best:.1f} ms "
                         f"({best / H100_ITL_FLOOR_MS:.2f}x{below})")
    return (f"best ITL p50 against the H100 floor of {H100_ITL_FLOOR_MS:.1f} ms per decode step: "
            + ", ".join(parts))


# -- running it ----------------------------------------------------------------------------------------------------
RECORDS_FILE = "comparison.csv"


def default_folder(target_name: str, preset: str) -> Path:
    return project.ROOT / "out" / "comparison" / f"{target_name}-{preset}"


def save_records(frame: pd.DataFrame, folder: str | Path) -> Path:
    """Write the records as ``comparison.csv`` (what a replay reads back)."""
    path = Path(folder) / RECORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def read_records(folder: str | Path) -> pd.DataFrame:
    """The records ``save_records`` wrote, for a replay without a deployment."""
    path = Path(folder) / RECORDS_FILE
    if not path.is_file():
        raise ConfigError(f"no comparison records at {path}", where=str(folder),
                          fix="run the comparison first (run_comparison), or pass the folder it saved to")
    return pd.read_csv(path)[COLUMNS]


def run_comparison(target_name: str = "local", layouts: Sequence[str] = ("dev", "agg"),
                   preset: str = "prefill-heavy", levels: Sequence[float] = DEFAULT_LEVELS, *,
                   slo_ttft_ms: float = DEFAULT_SLO_TTFT_MS, sizes: Mapping[str, Any] | None = None,
                   folder: str | Path | None = None, wait_timeout_s: float = 600.0, progress: bool = True,
                   stop_running: bool = False) -> pd.DataFrame:
    """Deploy each layout in turn, sweep the same levels with the same workload, tear it down; return the records.

    One layout at a time because both use the same GPUs (the demo cluster has two): a layout that is already
    running is refused (or, with ``stop_running``, torn down first), and each is torn down after its sweep, also
    when the sweep fails or is interrupted. An interrupted sweep stops the comparison with what was measured.
    The records and each level's requests are saved under ``folder`` (default out/comparison/<target>-<preset>).
    """
    from .targets import get_target

    targets = [get_target(target_name, layout) for layout in layouts]
    # Every bundle, workload size and level is checked before anything is deployed.
    specs = {t.env: preset_spec(preset, t.bundle.served_model_name, **dict(sizes or {})) for t in targets}
    if not levels:
        raise ConfigError("the comparison needs at least one load level", where="levels", fix="pass e.g. [1, 2, 4, 8]")
    for spec in specs.values():
        for level in levels:
            spec.at_level(level)  # raises on a level the loop cannot run (e.g. 2.5 concurrent)
    folder = Path(folder) if folder is not None else default_folder(target_name, preset)
    for target in targets:
        if target.is_running():
            if not stop_running:
                raise DeploymentError(
                    f"{target.env} is already deployed on {target.name}: the comparison deploys each layout alone "
                    "on the same GPUs", where=target.name,
                    fix=f"`gtcdemo down --env {target.env}` first, or pass stop_running=True")
            target.teardown()
    frames = []
    for target in targets:
        bundle = target.bundle
        try:
            target.apply()
            ready = target.wait(timeout_s=wait_timeout_s)
            if not ready.ready:
                raise DeploymentError(f"{target.env} did not become ready", where=target.name,
                                      fix=f"see `gtcdemo status --env {target.env}` and `gtcdemo logs`")
            with target.frontend() as url:
                results = load.sweep(url, specs[target.env], levels, progress=progress, save_to=folder / target.env)
        finally:
            target.teardown()
        frames.append(layout_records(target.env, serving(bundle.services), gpu_count(bundle.services), results,
                                     slo_ttft_ms))
        if results[-1].interrupted:
            break
    frame = pd.concat(frames, ignore_index=True)
    save_records(frame, folder)
    return frame


__all__ = ["COLUMNS", "DEFAULT_LEVELS", "DEFAULT_SLO_TTFT_MS", "H100_ITL_FLOOR_MS", "H100_TOKENS_PER_USER_CEILING",
           "PRESETS", "decode_heavy", "floor_note", "goodput", "gpu_count", "layout_records", "prefill_heavy",
           "preset_spec", "read_records", "run_comparison", "save_records", "serving", "tokens_per_user", "unfair",
           "verdict"]
