"""The progress line of a load run: tqdm, drawn in place inside a notebook."""

from __future__ import annotations

import html
import os
from typing import Any

from .spec import LoadSpec


class _NotebookLine:
    """A file for tqdm inside a Jupyter kernel: its line redrawn in place (a display handle), not on stderr.

    Jupyter shows stderr in a pink box that reads as an error; tqdm.auto needs ipywidgets, whose widgets papermill's
    output does not render. Plain text/HTML shows the same in the browser and in papermill's output.
    """

    encoding = "utf-8"  # tqdm draws unicode blocks only on a file that says so

    def __init__(self) -> None:
        self.handle: Any = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "\n").strip().splitlines()
        if not line:
            return
        from IPython.display import display

        bundle = {"text/plain": line[-1], "text/html": f"<pre style='margin:0'>{html.escape(line[-1])}</pre>"}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)

    def flush(self) -> None:
        pass


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill), not in a terminal IPython or a script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def progress_bar(spec: LoadSpec, progress: bool) -> Any:
    """tqdm over the spec's requests; off when ``progress`` is False or TQDM_DISABLE is set."""
    from tqdm import tqdm

    disabled = not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}
    where = {"file": _NotebookLine(), "ncols": 100, "mininterval": 0.5} if _in_kernel() and not disabled else {}
    return tqdm(total=spec.num_requests, desc=spec.label(), unit="req", disable=disabled, leave=True, **where)
