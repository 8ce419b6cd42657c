"""Figures for a projector: large fonts, one palette, units on every axis; each saved as a PNG as well."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # headless, matplotlib falls back to Agg by itself
import pandas as pd

from . import project

PALETTE = {"p50": "#76b900", "p90": "#f2a900", "p99": "#d62728", "mean": "#1f77b4", "client": "#5b2a86",
           "server": "#76b900", "requests": "#1f77b4", "tokens": "#76b900", "inflight": "#f2a900",
           "queued": "#d62728", "shared": "#76b900", "unique": "#8c8c8c"}
STYLE = {
    "figure.figsize": (12, 5.5), "figure.dpi": 100, "savefig.dpi": 110, "font.size": 15, "axes.titlesize": 18,
    "axes.labelsize": 15, "legend.fontsize": 13, "xtick.labelsize": 13, "ytick.labelsize": 13,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "lines.linewidth": 2.5,
}


@contextlib.contextmanager
def projector() -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


def output_dir() -> Path:
    """Beside the executed notebook under papermill (GTCDEMO_OUT), else out/figures in the repo."""
    folder = Path(os.environ.get("GTCDEMO_OUT") or project.ROOT / "out" / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save(fig: Any, name: str, folder: Path | None = None) -> Path:
    path = (folder or output_dir()) / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    return path


def _seconds_axis(frame: pd.DataFrame) -> pd.Index:
    if frame.empty:
        return frame.index
    return (frame.index - frame.index[0]).total_seconds()


def ttft_over_time(window: pd.DataFrame, title: str = "Time to first token (server)") -> Any:
    """TTFT p50/p90/p99 over time, in ms, from Metrics.window()."""
    with projector():
        fig, ax = plt.subplots()
        x = _seconds_axis(window)
        for q in ("p50", "p90", "p99"):
            column = f"ttft_{q}_s"
            if column in window:
                ax.plot(x, window[column] * 1000, label=q, color=PALETTE[q])
        ax.set(title=title, xlabel="time since start of window (s)", ylabel="TTFT (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left")
        fig.tight_layout()
    return fig


def throughput_over_time(window: pd.DataFrame, title: str = "Throughput (server)") -> Any:
    """Output tokens/s (left) and requests/s (right) over time."""
    with projector():
        fig, ax = plt.subplots()
        x = _seconds_axis(window)
        ax.plot(x, window.get("output_tokens_per_s", pd.Series(dtype=float)), color=PALETTE["tokens"],
                label="output tokens/s")
        ax.set(title=title, xlabel="time since start of window (s)", ylabel="output tokens/s")
        ax.set_ylim(bottom=0)
        right = ax.twinx()
        right.plot(x, window.get("requests_per_s", pd.Series(dtype=float)), color=PALETTE["requests"],
                   linestyle="--", label="requests/s")
        right.set_ylabel("requests/s")
        right.set_ylim(bottom=0)
        right.grid(False)
        lines = ax.get_lines() + right.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], loc="upper left")
        fig.tight_layout()
    return fig


def client_vs_server_ttft(frame: pd.DataFrame, title: str = "TTFT: client clock vs frontend clock") -> Any:
    """Bars of the same statistics from both clocks (``metrics.client_vs_server``), the gap written on top."""
    keys = list(frame.index)
    with projector():
        fig, ax = plt.subplots()
        xs = range(len(keys))
        width = 0.38
        ax.bar([x - width / 2 for x in xs], frame["client_ms"], width, color=PALETTE["client"],
               label="client: request sent → first content received")
        ax.bar([x + width / 2 for x in xs], frame["server_ms"], width, color=PALETTE["server"],
               label="frontend histogram")
        for x, key in zip(xs, keys, strict=True):
            row = frame.loc[key]
            ax.annotate(f"+{row['client_ms'] - row['server_ms']:.0f} ms", (x, max(row["client_ms"], row["server_ms"])),
                        ha="center", va="bottom", fontsize=13)
        ax.set_xticks(list(xs), keys)
        ax.set(title=title, ylabel="TTFT (ms)")
        ax.legend(loc="upper left")
        fig.tight_layout()
    return fig


def inflight_over_time(window: pd.DataFrame, title: str = "Requests in flight and queued (server)") -> Any:
    with projector():
        fig, ax = plt.subplots(figsize=(12, 4))
        x = _seconds_axis(window)
        ax.plot(x, window.get("inflight", pd.Series(dtype=float)), color=PALETTE["inflight"], label="in flight")
        ax.plot(x, window.get("queued", pd.Series(dtype=float)), color=PALETTE["queued"], label="queued")
        ax.set(title=title, xlabel="time since start of window (s)", ylabel="requests")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left")
        fig.tight_layout()
    return fig


def sweep_curve(table: pd.DataFrame, title: str = "Throughput vs TTFT p95") -> Any:
    """One point per load level (``load.sweep_table``): output tokens/s against client TTFT p95, labelled."""
    with projector():
        fig, ax = plt.subplots()
        xs, ys = table["ttft_ms_p95"].tolist(), table["output_token_throughput"].tolist()
        ax.plot(xs, ys, marker="o", markersize=10, color=PALETTE["tokens"])
        for level, x, y in zip(table["level"], xs, ys, strict=True):
            ax.annotate(f"{level:g}", (x, y), textcoords="offset points", xytext=(8, 6), fontsize=13)
        ax.set(title=title, xlabel="TTFT p95 (ms)", ylabel="output tokens/s")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        fig.tight_layout()
    return fig


def kv_cache_effect(table: pd.DataFrame, title: str = "KV-aware routing: shared prefix vs unique prompts") -> Any:
    """Cached tokens per request and TTFT p50 for the shared-prefix batch against the unique batch."""
    with projector():
        fig, (left, right) = plt.subplots(1, 2)
        colours = [PALETTE["shared"] if "shared" in str(i) else PALETTE["unique"] for i in table.index]
        left.bar(table.index.astype(str), table["cached_tokens_per_request"], color=colours)
        left.set(title="cached prompt tokens", ylabel="tokens per request")
        right.bar(table.index.astype(str), table["ttft_p50_ms"], color=colours)
        right.set(title="TTFT p50", ylabel="ms")
        fig.suptitle(title)
        fig.tight_layout()
    return fig

