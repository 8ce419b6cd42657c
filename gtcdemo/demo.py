"""The live-presented demo: one story, each section one call, in three modes.

- ``live``: talks to the target.
- ``record``: live, and saves everything it shows (status snapshots, the streamed answer, load records,
  Prometheus range data, tables) into a folder.
- ``replay``: draws the same sections from such a folder, with no cluster and no network, under a banner.

On stage nothing prints a stack trace: a failing section shows one red line with the fix, the detail goes to the
log file, and the next section still runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from . import experiments, load, metrics, plots, project
from .errors import ConfigError, GtcdemoError
from .inference import StreamResult, stream_chat
from .results import StatusTable, live_text

MODES = ("live", "record", "replay")
FIXTURE = project.ROOT / "notebooks" / "recordings" / "local-dev"
REFRESH_S = 1.5
DASHBOARD_WINDOW_S = 60

log = logging.getLogger("gtcdemo.demo")


def _display(obj: Any, **kwargs: Any) -> Any:
    try:
        from IPython.display import display

        return display(obj, **kwargs)
    except ImportError:  # pragma: no cover - outside a notebook
        print(repr(obj))
        return None


class Message:
    """A short coloured line for the audience (errors, banners)."""

    def __init__(self, text: str, colour: str = "#b00020", size: str = "1.3em", background: str = "#fdecee") -> None:
        self.text, self.colour, self.size, self.background = text, colour, size, background

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return (f"<div style='padding:0.6em 1em;border-radius:6px;background:{self.background};"
                f"color:{self.colour};font-size:{self.size};font-weight:bold'>{html.escape(self.text)}</div>")


def _figure_png(fig: Any) -> Any:
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return Image(buffer.getvalue())


def dashboard_figure(window: pd.DataFrame, title: str) -> Any:
    """Three panels for the projector: TTFT p50/p95, output tokens/s, requests in flight."""
    with plots.projector():
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        x = (window.index - window.index[0]).total_seconds() if len(window) else []
        ttft, tokens, inflight = axes
        for column, label, colour in (("ttft_p50_s", "p50", plots.PALETTE["p50"]),
                                      ("ttft_p95_s", "p95", plots.PALETTE["p99"])):
            ttft.plot(x, window.get(column, pd.Series(dtype=float)) * 1000, label=label, color=colour)
        ttft.set(title="TTFT", xlabel="s", ylabel="ms")
        ttft.legend(loc="upper left")
        tokens.plot(x, window.get("output_tokens_per_s", pd.Series(dtype=float)), color=plots.PALETTE["tokens"])
        tokens.set(title="output tokens/s", xlabel="s", ylabel="tokens/s")
        inflight.plot(x, window.get("inflight", pd.Series(dtype=float)), color=plots.PALETTE["inflight"])
        inflight.set(title="requests in flight", xlabel="s", ylabel="requests")
        for ax in axes:
            ax.set_ylim(bottom=0)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


class Show:
    """One presentation of ``env`` on ``target``; every section answers the same in all three modes."""

    def __init__(self, env: str = "dev", target: str = "local", mode: str = "live", folder: str | Path | None = None,
                 log_file: str | Path | None = None) -> None:
        project.check_env(env)
        project.check_target(target)
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}", where="mode", fix=f"use one of {', '.join(MODES)}")
        self.env, self.target_name, self.mode = env, target, mode
        if mode == "replay":
            self.folder = Path(folder) if folder else FIXTURE
            if not (self.folder / "meta.json").is_file():
                raise ConfigError(f"no recording in {self.folder}", where="folder",
                                  fix="record one with mode='record' (or use the committed fixture: folder='')")
            self.meta = json.loads((self.folder / "meta.json").read_text())
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.folder = Path(folder) if folder else plots.output_dir() / f"recording-{env}-{target}-{stamp}"
            self.meta = {"env": env, "target": target, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.log_file = Path(log_file) if log_file else plots.output_dir() / "demo.log"
        self.sections: dict[str, str] = {}
        self._target: Any = None
        if mode == "record":
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "meta.json").write_text(json.dumps(self.meta, indent=2) + "\n")

    # -- plumbing ------------------------------------------------------------------------------------------------
    @property
    def target(self) -> Any:
        if self.mode == "replay":
            raise ConfigError("replay never talks to a target", fix="use mode='live' or 'record'")
        if self._target is None:
            from .target import get_target

            self._target = get_target(self.target_name, self.env)
        return self._target

    @property
    def model(self) -> str:
        if self.mode == "replay":
            return self.meta.get("model", "")
        return self.target.bundle.served_model_name

    def _path(self, name: str) -> Path:
        return self.folder / name

    def _save_json(self, name: str, data: Any) -> None:
        if self.mode == "record":
            self._path(f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")

    def _load_json(self, name: str) -> Any:
        return json.loads(self._path(f"{name}.json").read_text())

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Run one section; on failure show one red line with the fix and log the detail, never a traceback."""
        try:
            yield
            self.sections[name] = "ok"
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the audience must never see a traceback
            self.sections[name] = "failed"
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a") as handle:
                handle.write(f"--- {datetime.now(UTC).isoformat()} section {name!r} failed\n")
                handle.write("".join(traceback.format_exception(exc)))
            if isinstance(exc, GtcdemoError):
                text = f"{name}: {exc.problem}" + (f" — fix: {exc.fix}" if exc.fix else "")
            elif isinstance(exc, KeyboardInterrupt):
                text = f"{name}: interrupted"
            else:
                text = f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _display(Message(f"⚠ {text}  (details: {self.log_file})"))

    def banner(self) -> Message:
        if self.mode == "replay":
            return Message(f"REPLAY: recorded {self.meta['recorded_at']} on {self.meta['target']} "
                           f"(env {self.meta['env']}) — no cluster, no network", colour="#5b2a86",
                           background="#efe7f7", size="1.6em")
        where = f"{self.env} on {self.target_name}"
        if self.mode == "record":
            return Message(f"LIVE: {where} — recording to {self.folder}", colour="#1b7f3b", background="#e8f5e9")
        return Message(f"LIVE: {where}", colour="#1b7f3b", background="#e8f5e9", size="1.6em")

    # -- sections ------------------------------------------------------------------------------------------------
    def status(self) -> StatusTable:
        """What is deployed: the pods (or local processes) of the DGD."""
        if self.mode == "replay":
            doc = self._load_json("status")
            return StatusTable(doc["title"], pd.DataFrame(doc["rows"]))
        table = self.target.status()
        self.meta["model"] = self.model
        self._save_json("status", {"title": table.title, "rows": table.frame.to_dict(orient="records")})
        self._save_meta()
        return table

    def chat(self, prompt: str, max_tokens: int = 48) -> StreamResult:
        """A chat answer streaming in, with its TTFT and ITL."""
        show = live_text("**assistant:** ")
        if self.mode == "replay":
            doc = self._load_json("chat")
            for piece in doc.pop("pieces"):
                show(piece)
            return StreamResult(**doc)
        pieces: list[str] = []

        def on_text(piece: str) -> None:
            pieces.append(piece)
            show(piece)

        with self.target.frontend() as url:
            result = stream_chat(url, self.model, prompt, max_tokens=max_tokens, ignore_eos=True, on_text=on_text)
        self._save_json("chat", {**dataclasses.asdict(result), "pieces": pieces})
        return result

    def dashboard(self, concurrency: int = 16, duration_s: float = 20.0, input_tokens: int = 300,
                  output_tokens: int = 64, name: str = "dashboard") -> load.LoadResult:
        """Load runs while TTFT p50/p95, tokens/s and requests in flight redraw in place every 1.5 s."""
        handle = _display(Message("dashboard starting…", colour="#666", background="#f4f4f4"), display_id=True)
        title = f"concurrency {concurrency}, {input_tokens}→{output_tokens} tokens"
        if self.mode == "replay":
            window = pd.read_csv(self._path(f"{name}-window.csv"), index_col="time", parse_dates=["time"])
            for end in (len(window) // 3, 2 * len(window) // 3, len(window)):  # redraw as it was seen, instantly
                if handle is not None and end:
                    handle.update(_figure_png(dashboard_figure(window.iloc[:end], title)))
            return load.LoadResult.load(self._path(name))
        spec = load.LoadSpec(model=self.model, concurrency=concurrency, duration_s=duration_s, warmup_requests=2,
                             input_tokens_mean=input_tokens, output_tokens=output_tokens)
        box: dict[str, Any] = {}
        with self.target.frontend() as url, self.target.prometheus() as prom:
            m = metrics.Metrics(prom)

            def run() -> None:
                try:
                    box["result"] = load.run(url, spec, progress=False)
                except BaseException as exc:  # handed to the presenting thread
                    box["error"] = exc

            worker = threading.Thread(target=run, name="gtcdemo-demo-load", daemon=True)
            started = time.time()
            worker.start()
            while worker.is_alive():
                worker.join(timeout=REFRESH_S)  # the refresh cadence
                now = time.time()
                window = m.window(max(started - 5, now - DASHBOARD_WINDOW_S), now)
                if handle is not None and len(window):
                    handle.update(_figure_png(dashboard_figure(window, title)))
            if "error" in box:
                raise box["error"]
            result: load.LoadResult = box["result"]
            settled = m.settle(result.ended_at)
            window = m.window(started - 5, settled.timestamp())
        if handle is not None and len(window):
            handle.update(_figure_png(dashboard_figure(window, title)))
        if self.mode == "record":
            result.save(self._path(name))
            window.to_csv(self._path(f"{name}-window.csv"))
        return result

    def kv_cache(self, requests: int = 6, prompt_tokens: int = 1500) -> experiments.PrefixCacheDemo:
        """Shared prefix vs unique prompts: cached tokens up, TTFT down."""
        if self.mode == "replay":
            table = pd.read_csv(self._path("kv_cache.csv"), index_col="batch")
        else:
            with self.target.frontend() as url, self.target.prometheus() as prom:
                table = experiments.prefix_cache_demo(url, self.model, metrics.Metrics(prom), requests=requests,
                                                      prompt_tokens=prompt_tokens).table
            if self.mode == "record":
                table.to_csv(self._path("kv_cache.csv"))
        _display(_figure_png(plots.kv_cache_effect(table)))
        return experiments.PrefixCacheDemo(table=table, results={})

    def scale_decode(self, replicas: int = 2, concurrency: int = 48, duration_s: float = 10.0,
                     service: str = "TrtllmDecodeWorker") -> pd.DataFrame:
        """One more decode worker (its DGDSA on the cluster, one more mocker locally): throughput before/after."""
        if self.mode == "replay":
            table = pd.read_csv(self._path("scale.csv"), index_col="decode workers")
        else:
            spec = load.LoadSpec(model=self.model, concurrency=concurrency, duration_s=duration_s, warmup_requests=4,
                                 input_tokens_mean=200, output_tokens=128)
            rows = {}
            before = self._replicas(service)
            with self.target.frontend() as url:
                rows[before] = load.run(url, spec, progress=False).summary()
            _display(Message(f"scaling {service} from {before} to {replicas}…", colour="#666", background="#f4f4f4"))
            self.target.scale(service, replicas)
            self.target.wait(timeout_s=600)
            with self.target.frontend() as url:
                rows[replicas] = load.run(url, spec, progress=False).summary()
            table = pd.DataFrame({n: {"output tokens/s": s["output_token_throughput"],
                                      "requests/s": s["request_throughput"], "TTFT p50 (ms)": s["ttft_ms"]["p50"],
                                      "ITL p50 (ms)": s["itl_ms"]["p50"]} for n, s in rows.items()}).T.round(1)
            table.index.name = "decode workers"
            if self.mode == "record":
                table.to_csv(self._path("scale.csv"))
        return table

    def _replicas(self, service: str) -> int:
        return int(self.target.bundle.services[service].get("replicas", 1))

    def restore(self, service: str = "TrtllmDecodeWorker", replicas: int = 1) -> None:
        """Put the deployment back as it was (after scaling on stage)."""
        if self.mode != "replay":
            self.target.scale(service, replicas)

    def summary(self, result: load.LoadResult | None, kv: pd.DataFrame | None,
                scale: pd.DataFrame | None) -> pd.DataFrame:
        """The closing table: the numbers the audience saw."""
        rows = []
        if result is not None:
            s = result.summary()
            rows += [("load: requests", f"{s['ok_count']} ok, {s['error_count']} errors"),
                     ("load: TTFT p50 / p95", f"{s['ttft_ms']['p50']:.0f} / {s['ttft_ms']['p95']:.0f} ms"),
                     ("load: output tokens/s", f"{s['output_token_throughput']:.0f}")]
        if kv is not None and len(kv) == 2:
            shared, unique = kv.iloc[0]["cached_tokens_per_request"], kv.iloc[1]["cached_tokens_per_request"]
            rows.append(("KV cache: cached tokens per request (shared / unique)", f"{shared:.0f} / {unique:.0f}"))
            rows.append(("KV cache: TTFT p50 (shared / unique)",
                         f"{kv.iloc[0]['ttft_p50_ms']:.0f} / {kv.iloc[1]['ttft_p50_ms']:.0f} ms"))
        if scale is not None and len(scale) == 2:
            first, last = scale.iloc[0]["output tokens/s"], scale.iloc[-1]["output tokens/s"]
            rows.append((f"scaling decode {scale.index[0]} → {scale.index[-1]}: output tokens/s",
                         f"{first:.0f} → {last:.0f} ({(last / first - 1) * 100:+.0f}%)" if first else f"→ {last:.0f}"))
        rows.append(("sections", f"{sum(v == 'ok' for v in self.sections.values())}/{len(self.sections)} ok"))
        frame = pd.DataFrame(rows, columns=["what", "value"]).set_index("what")
        return frame

    def _save_meta(self) -> None:
        if self.mode == "record":
            (self.folder / "meta.json").write_text(json.dumps(self.meta, indent=2) + "\n")
