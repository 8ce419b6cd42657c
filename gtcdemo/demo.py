"""The live-presented demo: one story, each section one call, in three modes.

- ``live``: talks to the target.
- ``record``: live, and saves everything it shows (status snapshots, the streamed answer, load records,
  Prometheus range data, tables) into a folder.
- ``replay``: draws the same sections from such a folder, with no cluster and no network, under a banner.

On stage nothing prints a stack trace: a failing section shows one red line with the fix, the detail goes to the
log file, and the next section still runs. A live section that finds no graph says so and changes nothing (it never
deploys). Nothing of the tests is on stage either: each section publishes the values it showed under a mimetype no
frontend renders (``results.record``), and the tests read them back from the executed notebook. Live and replay
draw through the same code from the same data, so a replay shows what its recording run showed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import demo_comparison, experiments, load, metrics, plots, project
from .args import arg_value, container_args
from .errors import ConfigError, DeploymentError, GtcdemoError
from .inference import StreamResult, stream_chat
from .results import Message, Note, StatusTable, Table, engine_note, live_text, load_table, record

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
        self.values: dict[str, dict] = {}  # what each section showed, published for tests (results.record)
        self._scaled: tuple[str, int] | None = None  # (service, replicas before) until the scaling is undone
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
            from .targets import get_target

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
        """Run one section; on failure show one red line with the fix and log the detail, never a traceback.

        Either way the section's values are published invisibly (``results.record``) for the tests to assert.
        """
        try:
            yield
            self.sections[name] = "ok"
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the audience must never see a traceback
            self.sections[name] = "failed"
            self._report(name, exc)
        record(name, {"status": self.sections[name], **self.values.get(name, {})})

    def _report(self, name: str, exc: BaseException) -> None:
        """The red line for the audience; the traceback into the log file."""
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

    def _require_graph(self) -> None:
        """Live sections need a deployed graph: with none, say so and change nothing (never deploy by surprise)."""
        target = self.target
        if not target.is_running():
            raise DeploymentError(f"no graph is running for {self.env} on {self.target_name}", where=target.name,
                                  fix=f"deploy it first: gtcdemo up --env {self.env} --target {self.target_name} "
                                      "(or notebooks 02 and 03), then run this cell again")

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
            table = StatusTable(doc["title"], pd.DataFrame(doc["rows"]))
        else:
            self._require_graph()
            table = self.target.status()
            self.meta["model"] = self.model
            self._save_json("status", {"title": table.title, "rows": table.frame.to_dict(orient="records")})
            self._save_json("meta", self.meta)
        self.values["status"] = {"processes": len(table.frame)}
        _display(table)
        return table

    @property
    def _recorded_target(self) -> str:
        return self.meta["target"] if self.mode == "replay" else self.target_name

    def chat(self, prompt: str, max_tokens: int = 48) -> StreamResult:
        """A chat answer streaming in, with its TTFT and ITL; on the local target labelled as the simulated engine's."""
        if self.mode != "replay":
            self._require_graph()
        note = engine_note(self._recorded_target)
        if note is not None:
            _display(note)
        show = live_text("**assistant:** ")
        if self.mode == "replay":
            doc = self._load_json("chat")
            for piece in doc.pop("pieces"):
                show(piece)
            result = StreamResult(**doc)
        else:
            pieces: list[str] = []

            def on_text(piece: str) -> None:
                pieces.append(piece)
                show(piece)

            with self.target.frontend() as url:
                result = stream_chat(url, self.model, prompt, max_tokens=max_tokens, ignore_eos=True,
                                     on_text=on_text)
            self._save_json("chat", {**dataclasses.asdict(result), "pieces": pieces})
        self.values["chat"] = {"simulated_engine_note": note is not None, **result.summary()}
        _display(result)
        return result

    def dashboard(self, concurrency: int = 16, duration_s: float = 20.0, input_tokens: int = 300,
                  output_tokens: int = 64, name: str = "dashboard") -> load.LoadResult:
        """Load runs while TTFT p50/p95, tokens/s and requests in flight redraw in place every 1.5 s."""
        if self.mode != "replay":
            self._require_graph()
        handle = _display(Message("dashboard starting…", colour="#666", background="#f4f4f4"), display_id=True)
        title = f"concurrency {concurrency}, {input_tokens}→{output_tokens} tokens"
        if self.mode == "replay":
            window = pd.read_csv(self._path(f"{name}-window.csv"), index_col="time", parse_dates=["time"])
            recorded = load.LoadResult.load(self._path(name))
            spec = recorded.spec  # the recorded load, whatever this cell's parameters say
            title = f"concurrency {spec.concurrency}, {spec.input_tokens_mean}→{spec.output_tokens} tokens"
            for end in (len(window) // 3, 2 * len(window) // 3, len(window)):  # redraw as it was seen, instantly
                if handle is not None and end:
                    last = recorded.ended_at if end == len(window) else None
                    handle.update(plots.image(plots.dashboard(window.iloc[:end], title, recorded.started_at, last)))
            return self._client_view(recorded)
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
                    handle.update(plots.image(plots.dashboard(window, title, started)))
            if "error" in box:
                raise box["error"]
            result: load.LoadResult = box["result"]
            settled = m.settle(result.ended_at)
            window = m.window(started - 5, settled.timestamp())
        if handle is not None and len(window):
            handle.update(plots.image(plots.dashboard(window, title, result.started_at, result.ended_at)))
        if self.mode == "record":
            result.save(self._path(name))
            window.to_csv(self._path(f"{name}-window.csv"))
        return self._client_view(result)

    def _client_view(self, result: load.LoadResult) -> load.LoadResult:
        """Under the dashboard: the load it ran, and the client's numbers with the two clocks told apart."""
        s, spec = result.summary(), result.spec
        title = (f"The load: {spec.concurrency} concurrent streams for {spec.duration_s:g} s, "
                 f"{spec.input_tokens_mean}-token prompts → {spec.output_tokens} output tokens each: "
                 f"{s['output_token_throughput']:,.0f} output tokens/s, {s['ok_count']} requests, "
                 f"{s['error_count']} errors")
        caption = ("Two clocks. The dashboard shows the frontend's TTFT (its Prometheus histogram: from the request's "
                   "arrival to the first token it produced). This table is the client's clock (request sent → first "
                   "token received, AIPerf's definition): it adds the HTTP path, about 40 ms on kept-alive "
                   "connections because of delayed TCP ACKs (README, \"Measuring\").")
        _display(load_table(s, title, caption))
        self.values["dashboard"] = {
            "concurrency": spec.concurrency, "duration_s": spec.duration_s, "requests_ok": s["ok_count"],
            "errors": s["error_count"], "output_tokens_per_s": round(s["output_token_throughput"], 1),
            "client_ttft_p50_ms": round(s["ttft_ms"]["p50"] or 0, 1), "title": title}
        return result

    def kv_cache(self, requests: int = 6, prompt_tokens: int = experiments.DEMO_PROMPT_TOKENS
                 ) -> experiments.PrefixCacheDemo:
        """Shared prefix vs unique prompts: cached tokens up, TTFT down; new prompts on every run."""
        if self.mode == "replay":
            table = pd.read_csv(self._path("kv_cache.csv"), index_col="batch")
            doc = self._load_json("kv_cache")
            demo = experiments.PrefixCacheDemo(table=table, results={}, priming=doc["priming"],
                                               shared_prefix_tokens=doc["shared_prefix_tokens"])
        else:
            self._require_graph()
            with self.target.frontend() as url, self.target.prometheus() as prom:
                demo = experiments.prefix_cache_demo(url, self.model, metrics.Metrics(prom), requests=requests,
                                                     prompt_tokens=prompt_tokens)
            if self.mode == "record":
                demo.table.to_csv(self._path("kv_cache.csv"))
            self._save_json("kv_cache", {"priming": demo.priming, "shared_prefix_tokens": demo.shared_prefix_tokens})
        _display(demo)
        _display(plots.image(plots.kv_cache_effect(demo.table)))
        shared, unique = demo.table.loc["shared prefix"], demo.table.loc["unique prompts"]
        self.values["kv cache"] = {
            "shared_prefix_tokens": demo.shared_prefix_tokens, "priming": demo.priming,
            "shared_cached_tokens_per_request": float(shared["cached_tokens_per_request"]),
            "unique_cached_tokens_per_request": float(unique["cached_tokens_per_request"]),
            "shared_ttft_p50_ms": float(shared["ttft_p50_ms"]), "unique_ttft_p50_ms": float(unique["ttft_p50_ms"]),
            "table_html": demo._repr_html_()}
        return demo

    def scale_decode(self, replicas: int = 2, concurrency: int | None = None, duration_s: float = 10.0,
                     service: str = "TrtllmDecodeWorker") -> pd.DataFrame:
        """One more decode worker (its DGDSA on the cluster, one more mocker locally): the same load before/after.

        The load (by default 1.5x the decode worker's ``max_batch_size`` concurrent streams) is more than one worker
        decodes at once, so requests wait for a slot with one worker and not with two: the step shows on both
        targets. The replicas before are asked of the target, and ``restore`` goes back to them.
        """
        if self.mode == "replay":
            doc = self._load_json("scale")
            table = pd.read_csv(self._path("scale.csv"), index_col="decode workers")
            _display(Note(doc["load"]))
            _display(Message(doc["note"], colour="#666", background="#f4f4f4", size="1.1em"))
        else:
            slots = self._decode_slots(service)
            self._require_graph()
            before = self.target.replicas(service)
            if before == replicas:
                raise DeploymentError(f"{service} already runs {replicas} replica(s): no step to show",
                                      fix="run the restore cell first, or choose another scale_to")
            concurrency = concurrency or slots * 3 // 2
            spec = load.LoadSpec(model=self.model, concurrency=concurrency, duration_s=duration_s, warmup_requests=4,
                                 input_tokens_mean=200, output_tokens=128)
            doc = {"load": (f"The load (not the dashboard's): {concurrency} concurrent streams, 200-token prompts → "
                            f"128 output tokens, {duration_s:g} s at each size. One decode worker decodes at most "
                            f"{slots} sequences at once (max_batch_size in its engine config), so with "
                            f"{concurrency} streams some wait for a slot.")}
            _display(Note(doc["load"]))
            rows = {}
            with self.target.frontend() as url:
                rows[before] = load.run(url, spec, progress=False).summary()
            note = _display(Message(f"scaling {service} from {before} to {replicas}…", colour="#666",
                                    background="#f4f4f4", size="1.1em"), display_id=True)
            started = time.monotonic()
            self._scaled = (service, before)  # from here on, restore has something to undo
            self.target.scale(service, replicas)
            self.target.wait(timeout_s=600)
            doc["note"] = f"scaled {service} from {before} to {replicas} in {time.monotonic() - started:.0f} s"
            if note is not None:
                note.update(Message(doc["note"], colour="#666", background="#f4f4f4", size="1.1em"))
            with self.target.frontend() as url:
                rows[replicas] = load.run(url, spec, progress=False).summary()
            table = pd.DataFrame({n: {"output tokens/s": s["output_token_throughput"],
                                      "requests/s": s["request_throughput"], "TTFT p50 (ms)": s["ttft_ms"]["p50"],
                                      "ITL p50 (ms)": s["itl_ms"]["p50"]} for n, s in rows.items()}).T.round(1)
            table.index.name = "decode workers"
            if self.mode == "record":
                table.to_csv(self._path("scale.csv"))
            self._save_json("scale", doc)
        view = Table("Scaling the decode worker: the same load before and after", table,
                     _scale_caption(table, self._recorded_target))
        _display(view)
        self.values["scaling"] = {"step": [int(n) for n in table.index],
                                  "output_tokens_per_s": [float(v) for v in table["output tokens/s"]],
                                  "caption": view.caption, "table_html": view._repr_html_()}
        return table

    def _decode_slots(self, service: str) -> int:
        """Sequences ``service`` decodes at once (its max_batch_size). Without it (agg: each worker prefills and decodes
        its own requests) refused, not another worker scaled: decode growing alone is what disaggregation allows."""
        services = self.target.bundle.services
        if service not in services:
            workers = ", ".join(name for name, svc in services.items() if svc.get("componentType") == "worker")
            raise DeploymentError(f"{self.env} has no {service} to scale: its workers ({workers}) each prefill and "
                                  "decode their own requests, so decode cannot grow on its own",
                                  where=f"manifests/{self.env}", fix="show this section with env='dev' "
                                  "(disaggregated); `gtcdemo scale` scales an aggregated worker")
        config = Path(arg_value(container_args(services[service]), "--extra-engine-args") or "decode").stem
        return int(self.target.bundle.engine_configs[config].get("max_batch_size", 64))

    def restore(self) -> None:
        """Put the deployment back as the scaling section found it (and wait until it is ready again)."""
        if self.mode == "replay":
            text = self._load_json("restore")["note"]
        elif self._scaled is None:
            text = "nothing to restore: the scaling section changed nothing"
        else:
            self._require_graph()
            service, before = self._scaled
            if self.target.replicas(service) != before:
                self.target.scale(service, before)
                self.target.wait(timeout_s=600)
            self._scaled = None
            text = f"restored {service} to {before} replica(s), as before the scaling section"
        self._save_json("restore", {"note": text})
        self.values["restore"] = {"note": text}
        _display(Note(text))

    def comparison(self, minutes: float = 0.0, records: str = "", preset: str = "prefill-heavy", **live: Any
                   ) -> pd.DataFrame:
        """Optional: disagg vs agg as one figure and its verdict; a live run only if ``minutes`` allow it, leaving the
        graph on stage as it was (``live``: its levels, sizes; ``gtcdemo.demo_comparison``)."""
        frame, self.values["comparison"] = demo_comparison.section(
            self.mode, self.folder, self._recorded_target, minutes=minutes, records=records, preset=preset,
            fallback=FIXTURE, display=_display, **live)
        return frame

    def summary(self) -> Table:
        """The closing table: the numbers the audience saw."""
        rows = []
        dash, kv, scale = self.values.get("dashboard"), self.values.get("kv cache"), self.values.get("scaling")
        if dash:
            rows += [("load: requests (errors)", f"{dash['requests_ok']} ({dash['errors']})"),
                     ("load: client TTFT p50", f"{dash['client_ttft_p50_ms']:.0f} ms"),
                     ("load: output tokens/s", f"{dash['output_tokens_per_s']:,.0f}")]
        if kv:
            shared, unique = kv["shared_cached_tokens_per_request"], kv["unique_cached_tokens_per_request"]
            rows.append(("KV cache: cached tokens per request, shared / unique", f"{shared:,.0f} / {unique:,.0f}"))
            rows.append(("KV cache: client TTFT p50, shared / unique",
                         f"{kv['shared_ttft_p50_ms']:.0f} / {kv['unique_ttft_p50_ms']:.0f} ms"))
        if scale and len(scale["step"]) == 2:
            (a, b), (first, last) = scale["step"], scale["output_tokens_per_s"]
            change = f" ({(last / first - 1) * 100:+.0f}%)" if first else ""
            rows.append((f"decode workers {a} → {b}: output tokens/s", f"{first:,.0f} → {last:,.0f}{change}"))
        frame = pd.DataFrame(rows, columns=["", "value"]).set_index("")
        table = Table("What we saw", frame)
        record("summary", {"sections": dict(self.sections), "rows": dict(rows)})
        return table


def _scale_caption(table: pd.DataFrame, target: str) -> str:
    """What the scaling table shows, in words computed from it (so text and numbers never disagree)."""
    if len(table) != 2:
        return ""
    (a, b), tokens, ttft = table.index, table["output tokens/s"], table["TTFT p50 (ms)"]
    change = (tokens.iloc[1] / tokens.iloc[0] - 1) * 100 if tokens.iloc[0] else float("nan")
    text = (f"{a} → {b} decode workers: output tokens/s {tokens.iloc[0]:,.0f} → {tokens.iloc[1]:,.0f} "
            f"({change:+.0f}%), TTFT p50 {ttft.iloc[0]:,.0f} → {ttft.iloc[1]:,.0f} ms (client clock).")
    if target == "local":
        text += " Locally both workers are simulated on the same CPU cores as everything else in this graph."
    return text
