"""The demo's optional comparison section: disaggregated vs aggregated on the same GPUs, as one figure and a verdict.

By default it draws saved records, in every mode, and deploys nothing: in ``replay`` the recording's, in ``live``
and ``record`` those notebook 06 saved (``records``) or the committed recording's. It runs the comparison live only
when the presenter allows the time it takes (``minutes``, against the expected time computed from the sweep and the
target's start-up time). A live run needs the GPUs of the graph on stage, so it takes that graph down, deploys each
layout alone in turn, and then brings back every graph it found running with the replicas each service had (a
scaled service is scaled again; ``comparison_run.restore``): the presenter's graph is left as it was, and that time
is in the estimate.

In ``record`` mode the records shown and the notes under them are saved into the recording's ``comparison/``
folder, and a replay draws them from there: a replay shows what the recording run showed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import comparison, comparison_plots, plots
from . import comparison_run as run
from .results import Message, Note

SUBFOLDER = "comparison"  # inside a recording
VERDICT_STYLE = {"colour": "#1b5e20", "background": "#eef7e4", "size": "1.15em"}


def section(mode: str, folder: Path, target_name: str, *, minutes: float, records: str, preset: str,
            fallback: Path, display: Callable[..., Any], levels: Sequence[float] = comparison.DEFAULT_LEVELS,
            sizes: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, dict]:
    """Show the comparison (see the module's docstring); return its records and the values it showed. ``levels``
    and ``sizes`` are a live run's (the presets' defaults unless given)."""
    saved = folder / SUBFOLDER
    if mode == "replay":
        notes = run.read_about(saved).get("notes", [])
        for text in notes:
            display(Note(text))
        source = saved
    else:
        source, notes = _live(target_name, minutes, records, (preset, levels, dict(sizes or {})), fallback,
                              saved if mode == "record" else None, display)
    frame = run.read_records(source)  # drawn from the saved file in every mode: a replay draws the same numbers
    about = run.read_about(source)
    slo = float(frame["slo_ttft_ms"].iloc[0])
    text = comparison.verdict(frame)
    display(plots.image(comparison_plots.overview(frame, slo)))
    display(Message(text, **VERDICT_STYLE))
    display(Note(comparison.floor_note(frame)))
    facts = comparison.facts(frame)
    return frame, {"preset": about.get("preset"), "measured_on": about.get("target"),
                   "recorded_at": about.get("recorded_at"), "verdict": text, "notes": notes,
                   "levels": {k: v["levels"] for k, v in facts.items()},
                   "gpus": {k: v["gpus"] for k, v in facts.items()},
                   "failed": {k: v["failed"] for k, v in facts.items()}}


def _live(target_name: str, minutes: float, records: str, workload: tuple[str, Sequence[float], dict[str, Any]],
          fallback: Path, save_to: Path | None, display: Callable[..., Any]) -> tuple[Path, list[str]]:
    """The records to draw and the notes over them: a live run when ``minutes`` allow it, else saved records."""
    from .targets import get_target

    preset, levels, sizes = workload
    targets = [get_target(target_name, env) for env in comparison.DEFAULT_LAYOUTS]
    spec = comparison.preset_spec(preset, targets[0].bundle.served_model_name, **sizes)
    running = [t for t in targets if t.is_running()]
    expected = run.expected_seconds(spec, levels, target_name, restarts=len(running))
    back = f", then bringing back {' and '.join(t.env for t in running)} as it runs now" if running else ""
    if minutes * 60 < expected:
        source = Path(records) if records else fallback / SUBFOLDER
        run.read_records(source)  # no records there: say where and how to make them, before showing anything
        about = run.read_about(source)
        notes = [f"Recorded {about.get('recorded_at', '(date unknown)')} on {about.get('target', '?')}, workload "
                 f"{about.get('preset', '?')}. Not run now: a live run here takes about "
                 f"{run.duration_text(expected)}{back} (allow it with comparison_minutes={math.ceil(expected / 60)})."]
        for text in notes:
            display(Note(text))
        if save_to is None:
            return source, notes
        run.save_records(run.read_records(source), save_to, {**about, "notes": notes})
        return save_to, notes
    handle = display(Message(f"running the comparison live on {target_name}: about {run.duration_text(expected)}"
                             f"{back}…", colour="#666", background="#f4f4f4", size="1.1em"), display_id=True)
    out = save_to or plots.output_dir() / f"comparison-{target_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.monotonic()
    run.run_comparison(target_name, comparison.DEFAULT_LAYOUTS, preset, levels, sizes=sizes, folder=out,
                       progress=False, found_running="restore")
    about = run.read_about(out)
    notes = [f"Measured live on {target_name} ({about['recorded_at']}), workload {preset}, in "
             f"{run.duration_text(time.monotonic() - started)}{'; ' + about['restored'] if about['restored'] else ''}."]
    run.save_records(run.read_records(out), out, {**about, "notes": notes})
    if handle is not None:
        handle.update(Note(notes[0]))
    return out, notes


__all__ = ["SUBFOLDER", "section"]
