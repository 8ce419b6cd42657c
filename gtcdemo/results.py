"""Small result objects: an HTML view for the audience and a deterministic text form for logs and tests."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

ACTION_COLOURS = {"created": "#1b7f3b", "configured": "#b26b00", "unchanged": "#666", "deleted": "#b00020"}
PHASE_COLOURS = {"Running": "#1b7f3b", "Pending": "#b26b00", "CrashLoopBackOff": "#b00020", "Terminating": "#666"}


def _html_table(frame: pd.DataFrame, colour_column: str | None, colours: dict[str, str]) -> str:
    if frame.empty:
        return "<p><i>(none)</i></p>"
    styler = frame.style.hide(axis="index")
    if colour_column in frame:
        styler = styler.map(lambda v: f"color: {colours.get(str(v), 'inherit')}; font-weight: bold",
                            subset=[colour_column])
    return styler.to_html()


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
    """Several titled tables at once (the seed's `demo-status`: nodes, DGD, DGDSAs, pods, PVCs)."""

    title: str
    tables: list[StatusTable]

    def __repr__(self) -> str:
        return "\n\n".join([f"== {self.title} ==", *(repr(t) for t in self.tables)])

    def _repr_html_(self) -> str:
        return f"<h3>{html.escape(self.title)}</h3>" + "".join(t._repr_html_() for t in self.tables)


def live_progress(prefix: str = "") -> Callable[[str], None]:
    """A progress callback that redraws one line in place in a notebook (display handle), or prints outside one."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks extra
        return lambda message: print(f"{prefix}{message}", flush=True)
    if get_ipython() is None:
        return lambda message: print(f"{prefix}{message}", flush=True)
    handle = display(Markdown(f"{prefix}…"), display_id=True)

    def update(message: str) -> None:
        handle.update(Markdown(f"{prefix}{html.escape(message)}"))

    return update


def live_text(prefix: str = "") -> Callable[[str], None]:
    """A callback that appends streamed text in place (a display handle in a notebook, stdout elsewhere)."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        return lambda piece: print(piece, end="", flush=True)
    handle = display(Markdown(prefix or "…"), display_id=True)
    pieces: list[str] = []

    def append(piece: str) -> None:
        pieces.append(piece)
        handle.update(Markdown(f"{prefix}{html.escape(''.join(pieces))}"))

    return append
