"""The two figures of the disaggregated-vs-aggregated comparison, for a projector (gtcdemo.plots' style).

- ``frontier``: output tokens/s per GPU against output tokens/s per user, one curve per layout, each point labelled
  with its load level; the H100 bandwidth floor as a wall on the per-user axis (no H100 decodes Llama-3.1-8B in
  BF16 faster than ~209 tokens/s per user).
- ``latency_vs_load``: TTFT and ITL p50/p95 against the load level, both layouts on the same axes, with the TTFT
  SLO line, and below them the goodput at that SLO.
- ``overview``: the demo's one figure, the frontier beside TTFT p95 against load with the SLO line.

Both take the records of ``gtcdemo.comparison`` (``run_comparison`` or ``read_records``) and draw nothing that is
not in them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import plots
from .comparison import H100_ITL_FLOOR_MS, H100_TOKENS_PER_USER_CEILING, closed_loop

# One colour and marker per way of serving, the same in both figures (NVIDIA green for disaggregated).
COLOURS = {"disaggregated": "#76b900", "aggregated": "#1f77b4"}
MARKERS = {"disaggregated": "o", "aggregated": "s"}
STYLES = {"p50": "-", "p95": "--"}
FLOOR_COLOUR = "#9e9e9e"
SLO_COLOUR = "#d62728"


def _layouts(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(layout, serving, its rows by level), disaggregated first."""
    order = sorted(frame["layout"].unique(), key=lambda layout: frame.loc[frame["layout"] == layout, "serving"]
                   .iloc[0] != "disaggregated")
    return [(layout, (rows := frame[frame["layout"] == layout].sort_values("level"))["serving"].iloc[0], rows)
            for layout in order]


def _unit(frame: pd.DataFrame) -> str:
    return "concurrent requests" if closed_loop(frame) else "request rate (req/s)"


def _name(layout: str, serving: str, rows: pd.DataFrame) -> str:
    return f"{serving} ({layout}, {int(rows['gpus'].iloc[0])} GPUs)"


def _frontier_panel(ax: Axes, frame: pd.DataFrame, label_size: int = 14) -> None:
    """The curves, their level labels and the H100 wall, on ``ax``."""
    top_x = H100_TOKENS_PER_USER_CEILING
    for i, (layout, serving, rows) in enumerate(_layouts(frame)):
        x, y = rows["tokens_per_s_per_user"].to_numpy(float), rows["tokens_per_s_per_gpu"].to_numpy(float)
        ax.plot(x, y, marker=MARKERS.get(serving, "o"), markersize=11, color=COLOURS.get(serving),
                label=_name(layout, serving, rows))
        # Labels left of the first curve's points and right of the second's, so coinciding curves stay legible.
        side = -1 if i % 2 == 0 else 1
        for level, xi, yi in zip(rows["level"], x, y, strict=True):
            ax.annotate(f"{level:g}", (xi, yi), textcoords="offset points", xytext=(10 * side, 0),
                        fontsize=label_size, fontweight="bold", color=COLOURS.get(serving),
                        ha="right" if side < 0 else "left", va="center")
        top_x = max(top_x, float(np.nanmax(x)) if len(x) else 0.0)
    right = top_x * 1.12
    ax.axvline(H100_TOKENS_PER_USER_CEILING, color=FLOOR_COLOUR, linestyle=":", linewidth=2.5,
               label=f"H100 floor: {H100_ITL_FLOOR_MS:.1f} ms per token\n= {H100_TOKENS_PER_USER_CEILING:.0f} "
                     "tokens/s per user")
    ax.axvspan(H100_TOKENS_PER_USER_CEILING, right, color=FLOOR_COLOUR, alpha=0.15, linewidth=0)
    top_y = float(np.nanmax(frame["tokens_per_s_per_gpu"])) * 1.15 if len(frame) else 1.0
    ax.text((H100_TOKENS_PER_USER_CEILING + right) / 2, top_y * 0.6, "faster than an H100", rotation=90,
            ha="center", va="center", fontsize=12, color="#616161")
    ax.set_xlim(0, right)
    ax.set_ylim(0, top_y)
    ax.set(xlabel="output tokens/s per user (1 / ITL)", ylabel="output tokens/s per GPU")


def frontier(frame: pd.DataFrame, title: str = "Output tokens/s per GPU vs per user, one point per load level"
             ) -> Figure:
    """The frontier: up and to the right is better; a curve that lies above the other wins at that speed per user."""
    with plots.projector():
        fig, ax = plots.new_figure(6.0)
        _frontier_panel(ax, frame)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  title=f"labels: {_unit(frame)}", title_fontsize=13)
        fig.suptitle(title)
    return fig


def overview(frame: pd.DataFrame, slo_ttft_ms: float | None = None,
             title: str = "The same 2 GPUs: disaggregated vs aggregated") -> Figure:
    """One figure for the stage: the frontier beside TTFT p95 against load with the SLO, one legend under both."""
    slo_ttft_ms = float(frame["slo_ttft_ms"].iloc[0]) if slo_ttft_ms is None else slo_ttft_ms
    levels = sorted(frame["level"].unique())
    positions = {level: i for i, level in enumerate(levels)}
    with plots.projector():
        fig, (left, right) = plots.new_figure(6.2, 1, 2)
        _frontier_panel(left, frame, label_size=13)
        left.set_title("per GPU vs per user (labels: load)")
        for layout, serving, rows in _layouts(frame):
            right.plot([positions[level] for level in rows["level"]], rows["ttft_ms_p95"], marker=MARKERS.get(serving),
                       markersize=10, color=COLOURS.get(serving), label=_name(layout, serving, rows))
        right.axhline(slo_ttft_ms, color=SLO_COLOUR, linewidth=2.5, label=f"TTFT SLO {slo_ttft_ms:g} ms")
        right.set_ylim(0, max(float(np.nanmax(frame["ttft_ms_p95"])), slo_ttft_ms) * 1.15)
        right.set_xticks([*positions.values()], [f"{level:g}" for level in levels])
        right.set(xlabel=_unit(frame), ylabel="TTFT p95 (ms)")
        right.set_title("TTFT p95 against load")
        handles, labels = right.get_legend_handles_labels()
        floor = next(h for h in left.get_lines() if h.get_label().startswith("H100"))
        fig.legend([*handles, floor], [*labels, floor.get_label().replace("\n", " ")], loc="outside lower center",
                   ncols=2)
        fig.suptitle(title)
    return fig


def _latency_panel(ax: Axes, frame: pd.DataFrame, positions: dict[float, int], metric: str, label: str) -> None:
    for layout, serving, rows in _layouts(frame):
        x = [positions[level] for level in rows["level"]]
        for q, style in STYLES.items():
            ax.plot(x, rows[f"{metric}_ms_{q}"], linestyle=style, marker=MARKERS.get(serving, "o"), markersize=8,
                    color=COLOURS.get(serving), label=f"{serving} ({layout}) {q}")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{label} (ms)")


def latency_vs_load(frame: pd.DataFrame, slo_ttft_ms: float | None = None,
                    title: str = "Latency and goodput against load, both layouts") -> Figure:
    """TTFT and ITL p50 (solid) / p95 (dashed) per load level with the TTFT SLO and the ITL floor, and goodput.

    The SLO line defaults to the SLO the goodput was measured against (the records' ``slo_ttft_ms``); the goodput
    panel always names that one, so a different line drawn for discussion never relabels the measured goodput.
    """
    slo_ttft_ms = float(frame["slo_ttft_ms"].iloc[0]) if slo_ttft_ms is None else slo_ttft_ms
    levels = sorted(frame["level"].unique())
    positions = {level: i for i, level in enumerate(levels)}
    ticks = ([*positions.values()], [f"{level:g}" for level in levels])
    with plots.projector():
        fig, axes = plots.new_figure(8.4, 2, 2)
        ttft, itl = axes[0]
        for ax in axes[1]:
            ax.remove()
        goodput = fig.add_subplot(axes[0, 0].get_gridspec()[1, :])
        _latency_panel(ttft, frame, positions, "ttft", "TTFT")
        ttft.axhline(slo_ttft_ms, color=SLO_COLOUR, linewidth=2.5)
        ttft.set_ylim(0, max(float(np.nanmax(frame["ttft_ms_p95"])), slo_ttft_ms) * 1.15)
        _latency_panel(itl, frame, positions, "itl", "ITL")
        itl.axhline(H100_ITL_FLOOR_MS, color=FLOOR_COLOUR, linestyle=":", linewidth=3)
        itl.set_ylim(0, max(float(np.nanmax(frame["itl_ms_p95"])), H100_ITL_FLOOR_MS) * 1.2)
        _goodput_panel(goodput, frame, positions)
        for ax in (ttft, itl, goodput):
            ax.set_xticks(*ticks)
        goodput.set_xlabel(_unit(frame))
        handles = [Line2D([], [], color=COLOURS.get(serving), marker=MARKERS.get(serving, "o"), markersize=9,
                          linewidth=3, label=_name(layout, serving, rows)) for layout, serving, rows in _layouts(frame)]
        handles += [Line2D([], [], color="#333", linestyle=style, label=q) for q, style in STYLES.items()]
        handles += [Line2D([], [], color=SLO_COLOUR, linewidth=2.5, label=f"TTFT SLO {slo_ttft_ms:g} ms"),
                    Line2D([], [], color=FLOOR_COLOUR, linestyle=":", linewidth=3,
                           label=f"ITL floor of an H100\n{H100_ITL_FLOOR_MS:.1f} ms")]
        itl.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        fig.suptitle(title)
    return fig


def _goodput_panel(ax: Axes, frame: pd.DataFrame, positions: dict[float, int]) -> None:
    """Requests/s within the TTFT SLO (filled) out of all requests/s (outline), one bar per layout and level; the
    share within the SLO is written on the bars that miss it for some requests (a full bar needs no label)."""
    layouts = _layouts(frame)
    width = 0.8 / max(len(layouts), 1)
    for i, (_layout, serving, rows) in enumerate(layouts):
        x = np.array([positions[level] for level in rows["level"]]) + (i - (len(layouts) - 1) / 2) * width
        colour = COLOURS.get(serving)
        ax.bar(x, rows["request_throughput"], width * 0.92, fill=False, edgecolor=colour, linewidth=2)
        bars = ax.bar(x, rows["goodput"], width * 0.92, color=colour, alpha=0.85)
        share = np.divide(rows["goodput"], rows["request_throughput"], out=np.zeros(len(rows)),
                          where=rows["request_throughput"].to_numpy(float) > 0)
        ax.bar_label(bars, [f"{s:.0%}" if s < 0.995 else "" for s in share], padding=3, fontsize=13)
    ax.set_ylim(0, float(np.nanmax(frame["request_throughput"])) * 1.2 if len(frame) else 1)
    slos = "/".join(f"{v:g}" for v in sorted(frame["slo_ttft_ms"].unique()))
    ax.set_title(f"Goodput at TTFT ≤ {slos} ms (filled) of all requests (outline)")
    ax.set_ylabel("requests/s")
    ax.grid(axis="x", visible=False)


__all__ = ["frontier", "latency_vs_load", "overview"]
