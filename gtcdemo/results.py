"""Small result objects: an HTML view for the audience and a deterministic text form for logs and tests."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

ACTION_COLOURS = {"created": "#1b7f3b", "configured": "#b26b00", "unchanged": "#666", "deleted": "#b00020"}
PHASE_COLOURS = {"Running": "#1b7f3b", "Pending": "#b26b00", "CrashLoopBackOff": "#b00020", "Terminating": "#666"}


def _uuid(*parts: object) -> str:
    """A Styler id from the content: the same table renders to the same HTML (a replay equals its live run), and
    two different tables on one page never share the ids their CSS rules select."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:10]


def _html_table(frame: pd.DataFrame, colour_column: str | None, colours: dict[str, str]) -> str:
    if frame.empty:
        return "<p><i>(none)</i></p>"
    styler = frame.style.hide(axis="index").set_uuid(_uuid(frame.to_csv(), colour_column))
    if colour_column in frame:
        styler = styler.map(lambda v: f"color: {colours.get(str(v), 'inherit')}; font-weight: bold",
                            subset=[colour_column])
    return styler.to_html()


def in_notebook() -> bool:
    """Whether a notebook kernel runs this code, so that IPython's ``display`` reaches the running cell's output."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebooks
        return False
    return get_ipython() is not None


RECORD_MIME = "application/vnd.gtcdemo.record+json"


def record(name: str, values: dict) -> None:
    """Publish ``values`` into the running cell's output under a mimetype nothing renders: the audience sees nothing,
    and tests read them back from the executed notebook (``recorded_values``), so no check runs on stage."""
    if in_notebook():
        from IPython.display import display

        display({RECORD_MIME: {"name": name, "values": values}}, raw=True)


def recorded_values(notebook: dict) -> dict[str, dict]:
    """Every record published by ``record`` in an executed notebook (nbformat JSON), by name (the last one wins)."""
    out: dict[str, dict] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            doc = output.get("data", {}).get(RECORD_MIME)
            if doc is not None:
                out[doc["name"]] = doc["values"]
    return out


def _decimals(values: pd.Series) -> int:
    """Whole numbers (and columns reaching 1,000) without decimals, smaller measurements with one."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty or bool(((numbers % 1) == 0).all()) or float(numbers.abs().max()) >= 1000:
        return 0
    return 1


@dataclass
class Table:
    """A table for people: headers say what and in which unit, integers print as integers, and it fits a 1280 px
    slide; the text form (``repr``) is the same table for logs and terminals."""

    title: str
    frame: pd.DataFrame
    caption: str = ""
    decimals: dict[str, int] = field(default_factory=dict)  # per column; by default from ``_decimals``

    def _flat(self) -> pd.DataFrame:
        """The index, when it names rows, becomes the first column (one header row, no index-name row)."""
        frame = self.frame
        if frame.index.name is not None or not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        return frame

    def _formatters(self, frame: pd.DataFrame) -> dict[str, Callable[[object], str]]:
        out = {}
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
                continue
            places = self.decimals.get(column, _decimals(frame[column]))
            out[column] = (lambda v, p=places: "–" if pd.isna(v) else f"{v:,.{p}f}")
        return out

    @property
    def text_frame(self) -> pd.DataFrame:
        """The table as strings, formatted as shown."""
        frame = self._flat()
        formatters = self._formatters(frame)
        return pd.DataFrame({c: frame[c].map(formatters[c]) if c in formatters else frame[c].astype(str)
                             for c in frame.columns})

    def __repr__(self) -> str:
        body = self.text_frame.to_string(index=False) if not self.frame.empty else "(none)"
        return "\n".join(part for part in (self.title, body, self.caption) if part)

    def _repr_html_(self) -> str:
        if self.frame.empty:
            return f"<h4>{html.escape(self.title)}</h4><p><i>(none)</i></p>"
        frame = self._flat()
        styler = (frame.style.hide(axis="index").format(self._formatters(frame))
                  .set_uuid(_uuid(self.title, frame.to_csv(), self.decimals))
                  .set_table_styles([
                      {"selector": "", "props": "font-size: 1.05em; border-collapse: collapse; max-width: 100%;"},
                      {"selector": "th", "props": "text-align: right; padding: 4px 10px; white-space: normal; "
                                                  "max-width: 11em; vertical-align: bottom;"},
                      {"selector": "td", "props": "text-align: right; padding: 4px 10px; white-space: nowrap;"},
                      {"selector": "th:first-child, td:first-child", "props": "text-align: left;"},
                  ]))
        caption = f"<p style='max-width: 60em'>{html.escape(self.caption)}</p>" if self.caption else ""
        title = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        return title + styler.to_html() + caption


@dataclass
class StatusTable:
    """A titled table (pods, checks, nodes...)."""

    title: str
    frame: pd.DataFrame

    def __repr__(self) -> str:
        body = self.frame.to_string(index=False) if not self.frame.empty else "(none)"
        return f"{self.title}\n{body}"

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>" + _html_table(self.frame, "phase", PHASE_COLOURS)


@dataclass
class ApplyResult:
    """What applying (or deleting) did to each object, like kubectl's `created` / `configured` / `unchanged`."""

    target: str
    rows: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["kind", "name", "action"])

    @property
    def changed(self) -> bool:
        return any(r["action"] != "unchanged" for r in self.rows)

    def __repr__(self) -> str:
        lines = [f"{r['kind'].lower()}/{r['name']} {r['action']}" for r in self.rows]
        if self.note:
            lines.append(self.note)
        return "\n".join([f"apply to {self.target}:", *lines]) if lines else f"apply to {self.target}: nothing"

    def _repr_html_(self) -> str:
        note = f"<p><i>{html.escape(self.note)}</i></p>" if self.note else ""
        return (f"<h4>Applied to {html.escape(self.target)}</h4>" + _html_table(self.frame, "action", ACTION_COLOURS)
                + note)


@dataclass
class ReadyResult:
    """The outcome of waiting for a deployment."""

    target: str
    ready: bool
    elapsed_s: float
    status: StatusTable
    details: list[StatusTable] = field(default_factory=list)

    def __repr__(self) -> str:
        word = "READY" if self.ready else "NOT READY"
        extra = "".join(f"\n{d!r}" for d in self.details)
        return f"{self.target}: {word} after {self.elapsed_s:.1f} s\n{self.status!r}{extra}"

    def _repr_html_(self) -> str:
        colour = "#1b7f3b" if self.ready else "#b00020"
        word = "READY" if self.ready else "NOT READY"
        return (f"<h3 style='color:{colour}'>{html.escape(self.target)}: {word} after {self.elapsed_s:.1f} s</h3>"
                + self.status._repr_html_() + "".join(d._repr_html_() for d in self.details))


CHECK_COLOURS = {"PASS": "#1b7f3b", "WARN": "#b26b00", "FAIL": "#b00020"}


@dataclass
class CheckReport:
    """Preflight checks: each with PASS / WARN / FAIL, what was found, and the fix when it failed."""

    title: str
    rows: list[dict] = field(default_factory=list)

    def add(self, check: str, ok: bool | None, detail: str, fix: str = "") -> None:
        """``ok`` True = PASS, False = FAIL, None = WARN (works, but worth knowing)."""
        result = "PASS" if ok else "WARN" if ok is None else "FAIL"
        self.rows.append({"check": check, "result": result, "detail": detail, "fix": "" if ok else fix})

    @property
    def ok(self) -> bool:
        return all(r["result"] != "FAIL" for r in self.rows)

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if r["result"] == "FAIL"]

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["check", "result", "detail", "fix"])

    def __repr__(self) -> str:
        verdict = "all checks passed" if self.ok else f"{len(self.failures)} check(s) failed"
        lines = [f"{self.title}: {verdict}"]
        lines += [f"[{r['result']}] {r['check']}: {r['detail']}" + (f"\n       fix: {r['fix']}" if r["fix"] else "")
                  for r in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        verdict = "all checks passed" if self.ok else f"{len(self.failures)} check(s) failed"
        colour = CHECK_COLOURS["PASS" if self.ok else "FAIL"]
        return (f"<h4>{html.escape(self.title)}: <span style='color:{colour}'>{verdict}</span></h4>"
                + _html_table(self.frame, "result", CHECK_COLOURS))


@dataclass
class Overview:
    """Several titled tables at once (`gtcdemo demo-status`: nodes, DGD, DGDSAs, pods, PVCs)."""

    title: str
    tables: list[StatusTable]

    def __repr__(self) -> str:
        return "\n\n".join([f"== {self.title} ==", *(repr(t) for t in self.tables)])

    def _repr_html_(self) -> str:
        return f"<h3>{html.escape(self.title)}</h3>" + "".join(t._repr_html_() for t in self.tables)


def live_progress(prefix: str = "") -> Callable[[str], None]:
    """A progress callback that redraws one line in place in a notebook (display handle), or prints outside one."""
    if not in_notebook():
        return lambda message: print(f"{prefix}{message}", flush=True)
    from IPython.display import Markdown, display

    handle = display(Markdown(f"{prefix}…"), display_id=True)

    def update(message: str) -> None:
        handle.update(Markdown(f"{prefix}{html.escape(message)}"))

    return update


def live_text(prefix: str = "") -> Callable[[str], None]:
    """A callback that appends streamed text in place (a display handle in a notebook, stdout elsewhere)."""
    if not in_notebook():
        return lambda piece: print(piece, end="", flush=True)
    from IPython.display import Markdown, display

    handle = display(Markdown(prefix or "…"), display_id=True)
    pieces: list[str] = []

    def append(piece: str) -> None:
        pieces.append(piece)
        handle.update(Markdown(f"{prefix}{html.escape(''.join(pieces))}"))

    return append


SIMULATED_ENGINE = ("Local target: Dynamo's simulated engine (the mocker) answers here. Its timing is modelled on "
                    "TRT-LLM on an H100; it has no weights, so the text is meaningless.")


@dataclass
class Note:
    """One quiet line under an output (what it is, where it comes from)."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<p style='color:#555;font-style:italic;margin:0.3em 0'>{html.escape(self.text)}</p>"


@dataclass
class Message:
    """A short coloured line for the audience (errors, banners)."""

    text: str
    colour: str = "#b00020"
    size: str = "1.3em"
    background: str = "#fdecee"

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return (f"<div style='padding:0.6em 1em;border-radius:6px;background:{self.background};"
                f"color:{self.colour};font-size:{self.size};font-weight:bold'>{html.escape(self.text)}</div>")


def engine_note(kind: str) -> Note | None:
    """The label for the local engine's output; None on the cluster, where the real model answers."""
    return Note(SIMULATED_ENGINE) if kind == "local" else None


# What each series of ``Metrics.window`` is, in people's units: (label with unit, factor from the stored unit).
SERIES = {
    "ttft_p50_s": ("TTFT p50 (ms)", 1000), "ttft_p90_s": ("TTFT p90 (ms)", 1000),
    "ttft_p95_s": ("TTFT p95 (ms)", 1000), "ttft_p99_s": ("TTFT p99 (ms)", 1000),
    "ttft_mean_s": ("TTFT mean (ms)", 1000), "itl_mean_s": ("ITL mean (ms)", 1000),
    "requests_per_s": ("requests/s", 1), "output_tokens_per_s": ("output tokens/s", 1),
    "cached_tokens_per_s": ("cached prompt tokens/s", 1), "inflight": ("requests in flight", 1),
    "queued": ("requests queued", 1),
}


def window_table(window: pd.DataFrame, title: str, caption: str = "") -> Table:
    """Mean and maximum of every Prometheus series over a window, in ms / per second / requests."""
    rows = {label: {"mean": window[name].mean() * factor, "max": window[name].max() * factor}
            for name, (label, factor) in SERIES.items() if name in window}
    frame = pd.DataFrame(rows).T
    frame.index.name = "series (frontend)"
    return Table(title, frame, caption, decimals={"mean": 1, "max": 1})


def sweep_view(sweep: pd.DataFrame, title: str = "Throughput against TTFT, one row per load level") -> Table:
    """``load.sweep_table`` for people: the load level, what it delivered, and the client's latencies."""
    level = "concurrency" if (sweep.get("mode") == "closed").all() else "requests/s offered"
    columns = {"level": level, "ok": "requests ok", "errors": "errors", "request_throughput": "requests/s",
               "output_token_throughput": "output tokens/s", "ttft_ms_p50": "TTFT p50 (ms)",
               "ttft_ms_p95": "TTFT p95 (ms)", "itl_ms_p50": "ITL p50 (ms)", "latency_ms_p95": "latency p95 (ms)"}
    frame = sweep[list(columns)].rename(columns=columns)
    return Table(title, frame, "TTFT, ITL and latency on the client's clock (request sent → first token received).",
                 decimals={"requests/s": 1, "TTFT p50 (ms)": 1, "TTFT p95 (ms)": 1, "ITL p50 (ms)": 2,
                           "latency p95 (ms)": 0})


def load_table(summary: dict, title: str, caption: str = "") -> Table:
    """A load run's client-side latencies (``LoadResult.summary()``): TTFT, ITL and latency percentiles in ms."""
    keys = ("p50", "p90", "p95", "p99", "mean")
    rows = {label: {k: summary[metric][k] for k in keys}
            for metric, label in (("ttft_ms", "TTFT (ms)"), ("itl_ms", "ITL (ms)"), ("latency_ms", "latency (ms)"))}
    frame = pd.DataFrame(rows).T.astype(float)
    frame.index.name = "client clock"
    return Table(title, frame, caption, decimals=dict.fromkeys(keys, 1))
