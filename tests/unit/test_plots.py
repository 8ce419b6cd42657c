"""Figures an audience reads at a glance: time from the load's start, missing steps marked, legends off the data."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from gtcdemo import plots

T0 = pd.Timestamp("2026-01-01 12:00:00", tz="UTC")
TTFT = ["ttft_p50_s", "ttft_p90_s", "ttft_p95_s", "ttft_p99_s"]


def window(gap: slice | None = None) -> pd.DataFrame:
    """A Prometheus window asked from 5 s before the load (t = 0) to 20 s after, one step per second."""
    times = pd.date_range(T0 - pd.Timedelta(seconds=5), T0 + pd.Timedelta(seconds=20), freq="1s")
    seconds = (times - T0).total_seconds().to_numpy()
    frame = pd.DataFrame({c: 0.05 + 0.001 * seconds for c in TTFT}, index=times)
    frame.loc[seconds < 0, TTFT] = np.nan  # before the load: nothing observed yet
    frame["output_tokens_per_s"], frame["requests_per_s"] = 2000.0, 30.0
    frame["inflight"], frame["queued"] = 16.0, 1.0
    if gap is not None:
        frame.loc[(seconds >= gap.start) & (seconds <= gap.stop), TTFT] = np.nan
    return frame


START, END = T0.timestamp(), (T0 + pd.Timedelta(seconds=20)).timestamp()
KV = pd.DataFrame({"cached_tokens_per_request": [1120.0, 0.0], "ttft_p50_ms": [81.2, 103.0]},
                  index=pd.Index(["shared prefix", "unique prompts"], name="batch"))
# The numbers of the figure where the legend covered the "+32 ms" label.
CLOCKS = pd.DataFrame({"client_ms": [98.0, 112.0, 131.0, 101.0], "server_ms": [66.0, 80.0, 99.0, 69.0]},
                      index=pd.Index(["p50", "p90", "p99", "mean"], name="TTFT"))
SWEEP = pd.DataFrame({"level": [1.0, 4.0, 16.0], "mode": ["closed"] * 3, "ttft_ms_p95": [60.0, 80.0, 190.0],
                      "output_token_throughput": [300.0, 1100.0, 2100.0]})


FIGURES = {
    "ttft_over_time": lambda: plots.ttft_over_time(window(slice(4, 6)), START, END),
    "throughput_over_time": lambda: plots.throughput_over_time(window(), START, END),
    "inflight_over_time": lambda: plots.inflight_over_time(window(), START, END),
    "client_vs_server_ttft": lambda: plots.client_vs_server_ttft(CLOCKS),
    "sweep_curve": lambda: plots.sweep_curve(SWEEP),
    "kv_cache_effect": lambda: plots.kv_cache_effect(KV),
    "dashboard": lambda: plots.dashboard(window(slice(4, 6)), "concurrency 16, 300→64 tokens", START, END),
}


def no_sample_bands(ax) -> list[tuple[float, float]]:
    grey = matplotlib.colors.to_rgb(plots.PALETTE["no_sample"])
    return sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)) for p in ax.patches
                  if isinstance(p, Rectangle) and p.get_facecolor()[:3] == grey)


@pytest.mark.parametrize("make", [
    lambda: plots.ttft_over_time(window(), START, END),
    lambda: plots.throughput_over_time(window(), START, END),
    lambda: plots.inflight_over_time(window(), START, END),
    lambda: plots.dashboard(window(), "t", START, END),
], ids=["ttft", "throughput", "inflight", "dashboard"])
def test_the_time_axis_starts_when_the_load_starts(make) -> None:
    fig = make()
    for ax in fig.axes:
        assert ax.get_xlim() == (0.0, 20.0)
        for line in ax.get_lines():
            assert min(line.get_xdata()) == 0.0, "a point from before the load is drawn"


def test_the_dashboards_panels_share_one_time_axis_and_start_at_zero() -> None:
    fig = plots.dashboard(window(), "t", START, END)
    assert len(fig.axes) == 3
    assert {ax.get_xlim() for ax in fig.axes} == {(0.0, 20.0)}
    assert all(ax.get_ylim()[0] == 0 for ax in fig.axes)


def test_a_rolling_window_starts_where_it_begins() -> None:
    late = window().loc[T0 + pd.Timedelta(seconds=8):]
    fig = plots.dashboard(late, "t", START)
    assert fig.axes[0].get_xlim()[0] == 8.0


def test_a_replayed_window_with_naive_times_is_placed_the_same() -> None:
    naive = window()
    naive.index = naive.index.tz_localize(None)
    fig = plots.ttft_over_time(naive, START, END)
    assert fig.axes[0].get_xlim() == (0.0, 20.0)


@pytest.mark.parametrize("name", ["ttft_over_time", "dashboard"])
def test_steps_without_a_ttft_sample_are_marked_not_left_as_a_gap(name: str) -> None:
    fig: Figure = FIGURES[name]()
    ax = fig.axes[0]
    # Samples at 4, 5, 6 s are missing: the band runs from the last sample before to the first after.
    assert no_sample_bands(ax) == [(3.0, 7.0)]
    assert plots.NO_SAMPLE in [t.get_text() for t in ax.get_legend().get_texts()]


def test_full_data_has_no_band() -> None:
    assert no_sample_bands(plots.ttft_over_time(window(), START, END).axes[0]) == []


@pytest.mark.parametrize("name", list(FIGURES))
def test_legends_cover_no_data_and_no_label(name: str) -> None:
    fig: Figure = FIGURES[name]()
    fig.canvas.draw()  # lays out (constrained layout) so that extents are final
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        own = set(legend.get_texts()) | {legend.get_title()}
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend over the plot area"
        for text in fig.findobj(Text):
            if text in own or not text.get_visible() or not text.get_text().strip():
                continue
            assert not box.overlaps(text.get_window_extent(renderer)), \
                f"{name}: legend covers the text {text.get_text()!r}"


def test_the_gap_labels_are_inside_the_plot_area() -> None:
    fig = plots.client_vs_server_ttft(CLOCKS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().endswith(" ms")]
    assert [t.get_text() for t in labels] == ["+32 ms", "+32 ms", "+32 ms", "+32 ms"]
    area = ax.get_window_extent(renderer)
    for text in labels:
        box = text.get_window_extent(renderer)
        assert area.y0 <= box.y0 and box.y1 <= area.y1, f"{text.get_text()} sticks out of the plot area"


@pytest.mark.parametrize("name", list(FIGURES))
def test_sized_for_a_1280_px_screen_with_large_type(name: str) -> None:
    fig: Figure = FIGURES[name]()
    width, height = struct.unpack(">II", plots.png(fig)[16:24])
    assert 1000 <= width <= 1280 and height <= 720, (width, height)
    for ax in fig.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            assert label.get_fontsize() >= 13


def test_show_outside_a_notebook_saves_and_leaves_nothing_open(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    assert plots.show(plots.kv_cache_effect(KV), "kv", folder=tmp_path) is None
    assert (tmp_path / "kv.png").read_bytes().startswith(b"\x89PNG")
    assert plt.get_fignums() == before  # figures are not registered with pyplot: nothing to leak


def test_projector_leaves_every_other_setting_alone() -> None:
    import matplotlib

    before = matplotlib.is_interactive()
    with plots.projector():
        matplotlib.interactive(not before)  # as IPython's inline backend does when it first loads
    assert matplotlib.is_interactive() is (not before)
    matplotlib.interactive(before)
