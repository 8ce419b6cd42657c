"""Figures for a projector: large fonts, one palette, units on every axis, legends outside the data.

Figures are built with matplotlib's object API (``Figure``, never pyplot), so drawing one leaves the notebook's
pyplot state alone and nothing stays open; ``show`` puts each into the output of the cell that made it (image/png,
in the browser and in papermill's output) and saves it as a PNG beside the executed notebook.

Time series are drawn from the start of the load (x = 0) to its end. A step where the TTFT series have no value
(no request got its first token within the ``rate`` window) is shaded and labelled as such, so it does not read
as an outage.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import project
from .results import in_notebook

PALETTE = {"p50": "#76b900", "p90": "#f2a900", "p95": "#d62728", "p99": "#d62728", "mean": "#1f77b4",
           "client": "#5b2a86", "server": "#76b900", "requests": "#1f77b4", "tokens": "#76b900",
           "inflight": "#f2a900", "queued": "#d62728", "shared": "#76b900", "unique": "#8c8c8c",
           "no_sample": "#9e9e9e"}
# ~1050 px wide at DPI: shown at full size in JupyterLab's output area on a 1280 px screen, and still at ~85% of
# it (tick labels ~16 px) with the file browser open.
WIDTH_IN, DPI = 10.5, 100
STYLE = {
    "font.size": 15, "axes.titlesize": 17, "axes.labelsize": 15, "legend.fontsize": 14, "xtick.labelsize": 14,
    "ytick.labelsize": 14, "figure.titlesize": 19, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 2.5, "legend.frameon": False,
}
NO_SAMPLE = "no TTFT sample:\nno first token\nin the rate window"


@contextlib.contextmanager
def projector() -> Iterator[None]:
    """The projector style for figures made inside, restoring only the keys it set.

    Not ``matplotlib.rc_context``: that restores *every* rcParam on exit, including ``interactive``, which
    IPython's inline backend turns on when it first loads. A backend first loaded inside it left the rest of the
    kernel non-interactive, and every later pyplot figure undisplayed and open.
    """
    saved = {key: matplotlib.rcParams[key] for key in STYLE}
    matplotlib.rcParams.update(STYLE)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def new_figure(height_in: float, nrows: int = 1, ncols: int = 1, **subplots: Any) -> tuple[Figure, Any]:
    """A figure of projector width and its axes (call inside ``projector()``); constrained layout, Agg canvas."""
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True, **subplots)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, at the size it was made for."""
    buffer = io.BytesIO()
    with projector():
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def output_dir() -> Path:
    """Beside the executed notebook under papermill (GTCDEMO_OUT), else out/figures in the repo."""
    folder = Path(os.environ.get("GTCDEMO_OUT") or project.ROOT / "out" / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def image(fig: Figure) -> Any:
    """An IPython Image of the figure (what a display handle shows and updates)."""
    from IPython.display import Image

    return Image(data=png(fig), format="png")


def show(fig: Figure, name: str | None = None, folder: Path | None = None) -> None:
    """Show ``fig`` in the output of the running cell and save it as ``<name>.png`` (in ``output_dir()``).

    Returns nothing, so a cell ending with it shows the figure only (not a path). Outside IPython it only saves.
    """
    data = png(fig)
    if name:
        (folder or output_dir()).joinpath(f"{name}.png").write_bytes(data)
    if in_notebook():
        from IPython.display import Image, display

        display(Image(data=data, format="png"))


# -- time axis -------------------------------------------------------------------------------------------------
def _timestamp(value: float | datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value, unit="s", tz="UTC") if isinstance(value, int | float) else pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def since_start(window: pd.DataFrame, start: float | datetime | None = None,
                end: float | datetime | None = None) -> tuple[pd.DataFrame, np.ndarray, tuple[float, float]]:
    """The window cut to [start, end], its times in s since ``start``, and the x range to draw.

    ``start``/``end`` are when the load started and ended (epoch s or datetimes; default: the window's own ends):
    the time axis begins when the load does (x = 0), not where the window asked of Prometheus begins, unless that
    window begins later (a rolling dashboard).
    """
    if window.empty:
        return window, np.array([]), (0.0, 1.0)
    index = pd.DatetimeIndex(window.index)
    index = index.tz_localize("UTC") if index.tz is None else index
    first = _timestamp(start) if start is not None else index[0]
    last = _timestamp(end) if end is not None else index[-1]
    keep = (index >= first) & (index <= last)
    x = np.asarray((index[keep] - first).total_seconds(), dtype=float)
    left = max(0.0, (index[0] - first).total_seconds())
    right = max((last - first).total_seconds(), float(x[-1]) if len(x) else 0.0, left + 1.0)
    return window[keep], x, (left, right)


def mark_no_samples(ax: Axes, x: np.ndarray, values: pd.DataFrame,
                    xrange: tuple[float, float]) -> list[tuple[float, float]]:
    """Shade the steps where every column of ``values`` is NaN (no TTFT observed); returns the shaded intervals.

    A band runs from the last sample with a value to the next one (or the axis' ends), so the line's break is
    covered by a band that says why, and does not read as an outage.
    """
    if not len(x):
        return []
    missing = values.isna().all(axis=1).to_numpy() if len(values.columns) else np.ones(len(x), dtype=bool)
    bands: list[tuple[float, float]] = []
    i = 0
    while i < len(x):
        if not missing[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(x) and missing[j + 1]:
            j += 1
        lo = float(x[i - 1]) if i > 0 else xrange[0]
        hi = float(x[j + 1]) if j + 1 < len(x) else xrange[1]
        bands.append((lo, hi))
        i = j + 1
    for k, (lo, hi) in enumerate(bands):
        ax.axvspan(lo, hi, color=PALETTE["no_sample"], alpha=0.3, linewidth=0, label=NO_SAMPLE if k == 0 else None)
    return bands


def _legend_outside(ax: Axes) -> Any:
    """The legend right of the plot area, top-aligned: never over data or labels (constrained layout makes room)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _time_axis(ax: Axes, xrange: tuple[float, float]) -> None:
    ax.set_xlim(*xrange)
    ax.set_xlabel("seconds since the load started")


def _series(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column] if column in frame else pd.Series(np.nan, index=frame.index, dtype=float)


# -- figures ---------------------------------------------------------------------------------------------------
def ttft_panel(ax: Axes, window: pd.DataFrame, x: np.ndarray, xrange: tuple[float, float],
               quantiles: tuple[str, ...] = ("p50", "p90", "p99"), who: str = "") -> None:
    """TTFT quantiles in ms on ``ax``, steps without a sample shaded; y from 0."""
    columns = [f"ttft_{q}_s" for q in quantiles]
    for q, column in zip(quantiles, columns, strict=True):
        ax.plot(x, _series(window, column) * 1000, label=f"{who}TTFT {q}", color=PALETTE[q])
    mark_no_samples(ax, x, window.reindex(columns=columns), xrange)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("TTFT (ms)")


def ttft_over_time(window: pd.DataFrame, start: float | datetime | None = None, end: float | datetime | None = None,
                   title: str = "Time to first token, frontend's histogram") -> Figure:
    """TTFT p50/p90/p99 over time, in ms, from ``Metrics.window()``; x = 0 when the load started."""
    cut, x, xrange = since_start(window, start, end)
    with projector():
        fig, ax = new_figure(5.2)
        ttft_panel(ax, cut, x, xrange)
        _time_axis(ax, xrange)
        fig.suptitle(title)
        _legend_outside(ax)
    return fig


def throughput_over_time(window: pd.DataFrame, start: float | datetime | None = None,
                         end: float | datetime | None = None, title: str = "Throughput, from the frontend") -> Figure:
    """Output tokens/s and requests/s over time, one panel each (one y axis per panel reads at a glance)."""
    cut, x, xrange = since_start(window, start, end)
    with projector():
        fig, (tokens, requests) = new_figure(6.0, 2, 1, sharex=True)
        tokens.plot(x, _series(cut, "output_tokens_per_s"), color=PALETTE["tokens"])
        tokens.set(ylabel="output tokens/s")
        requests.plot(x, _series(cut, "requests_per_s"), color=PALETTE["requests"])
        requests.set(ylabel="requests/s")
        for ax in (tokens, requests):
            ax.set_ylim(bottom=0)
        _time_axis(requests, xrange)
        fig.suptitle(title)
    return fig


def inflight_over_time(window: pd.DataFrame, start: float | datetime | None = None,
                       end: float | datetime | None = None,
                       title: str = "Requests in flight and queued, at the frontend") -> Figure:
    cut, x, xrange = since_start(window, start, end)
    with projector():
        fig, ax = new_figure(4.6)
        ax.plot(x, _series(cut, "inflight"), color=PALETTE["inflight"], label="in flight")
        ax.plot(x, _series(cut, "queued"), color=PALETTE["queued"], label="queued")
        ax.set(ylabel="requests")
        ax.set_ylim(bottom=0)
        _time_axis(ax, xrange)
        fig.suptitle(title)
        _legend_outside(ax)
    return fig


def client_vs_server_ttft(frame: pd.DataFrame, title: str = "TTFT: client clock vs frontend clock") -> Figure:
    """Bars of the same statistics from both clocks (``metrics.client_vs_server``), the gap written on top."""
    keys = list(frame.index)
    xs = np.arange(len(keys))
    width = 0.38
    with projector():
        fig, ax = new_figure(5.2)
        ax.bar(xs - width / 2, frame["client_ms"], width, color=PALETTE["client"],
               label="client clock:\nsent → first content")
        ax.bar(xs + width / 2, frame["server_ms"], width, color=PALETTE["server"],
               label="frontend clock:\nits histogram")
        tops = frame[["client_ms", "server_ms"]].max(axis=1)
        for x, key in zip(xs, keys, strict=True):
            gap = frame.loc[key, "client_ms"] - frame.loc[key, "server_ms"]
            ax.annotate(f"{gap:+.0f} ms", (x, tops[key]), xytext=(0, 4), textcoords="offset points",
                        ha="center", va="bottom", fontsize=15, fontweight="bold")
        ax.set_xticks(xs, keys)
        ax.set(ylabel="TTFT (ms)")
        ax.set_ylim(0, float(np.nanmax(tops.to_numpy())) * 1.18 if len(tops) else 1)  # room for the labels
        fig.suptitle(title)
        _legend_outside(ax)
    return fig


def sweep_curve(table: pd.DataFrame, title: str = "Throughput vs TTFT p95, one point per load level") -> Figure:
    """One point per load level (``load.sweep_table``): output tokens/s against client TTFT p95, labelled."""
    xs, ys = table["ttft_ms_p95"].to_numpy(float), table["output_token_throughput"].to_numpy(float)
    unit = "concurrent" if "mode" not in table or (table["mode"] == "closed").all() else "req/s"
    with projector():
        fig, ax = new_figure(5.2)
        ax.plot(xs, ys, marker="o", markersize=11, color=PALETTE["tokens"])
        for level, x, y in zip(table["level"], xs, ys, strict=True):
            ax.annotate(f"{level:g} {unit}", (x, y), textcoords="offset points", xytext=(10, -6), fontsize=14,
                        va="top")
        ax.set(xlabel="TTFT p95, client clock (ms)", ylabel="output tokens/s")
        ax.set_xlim(0, float(np.nanmax(xs)) * 1.25 if len(xs) else 1)  # room for the last label
        ax.set_ylim(0, float(np.nanmax(ys)) * 1.12 if len(ys) else 1)
        fig.suptitle(title)
    return fig


def kv_cache_effect(table: pd.DataFrame, title: str = "KV-aware routing: shared prefix vs unique prompts") -> Figure:
    """Cached tokens per request and TTFT p50 for the shared-prefix batch against the unique batch."""
    names = [str(i) for i in table.index]
    colours = [PALETTE["shared"] if "shared" in name else PALETTE["unique"] for name in names]
    with projector():
        fig, (left, right) = new_figure(5.0, 1, 2)
        for ax, column, label, unit in ((left, "cached_tokens_per_request", "cached prompt tokens per request", ""),
                                        (right, "ttft_p50_ms", "TTFT p50", " ms")):
            values = table[column].to_numpy(float)
            bars = ax.bar(names, values, color=colours)
            ax.bar_label(bars, [f"{v:.0f}{unit}" for v in values], padding=4, fontsize=15, fontweight="bold")
            top = float(np.nanmax(values)) if len(values) and not math.isnan(np.nanmax(values)) else 0.0
            ax.set_ylim(0, top * 1.18 or 1)
            ax.set_title(label)
            ax.grid(axis="x", visible=False)
        left.set_ylabel("tokens")
        right.set_ylabel("ms")
        fig.suptitle(title)
    return fig


def dashboard(window: pd.DataFrame, title: str, start: float | datetime | None = None,
              end: float | datetime | None = None) -> Figure:
    """The live dashboard: TTFT p50/p95, output tokens/s and requests in flight, stacked on one time axis."""
    cut, x, xrange = since_start(window, start, end)
    with projector():
        fig, (ttft, tokens, inflight) = new_figure(5.6, 3, 1, sharex=True)
        ttft_panel(ttft, cut, x, xrange, ("p50", "p95"), "frontend ")
        tokens.plot(x, _series(cut, "output_tokens_per_s"), color=PALETTE["tokens"])
        tokens.set(ylabel="output tok/s")
        inflight.plot(x, _series(cut, "inflight"), color=PALETTE["inflight"])
        inflight.set(ylabel="in flight")
        for ax in (ttft, tokens, inflight):
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # short panels: still 3-4 labels
        _time_axis(inflight, xrange)
        fig.suptitle(title)
        _legend_outside(ttft)
    return fig
