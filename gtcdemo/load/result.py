"""One load level's per-request records and AIPerf's summary of them: shown, saved, loaded, tabled per sweep."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .spec import LoadSpec
from .stats import UNDER_DELIVERED, delivery, itl_seconds, summarize

COLUMNS = ["index", "request_id", "start", "ttft_s", "latency_s", "itl_s", "input_tokens", "output_tokens",
           "cached_tokens", "status", "http_status", "error", "wait_s", "send_lag_s", "new_connection"]
# Open loop, per request: wait_s = time its arrival waited for a free in-flight slot (max_concurrency; 0 when one
# was free, NaN without a cap), send_lag_s = due time -> sent, beyond that wait (the client's own lateness);
# both NaN in a closed loop. new_connection: the request opened the connection it went on.
_DELIVERY_COLUMNS = ("wait_s", "send_lag_s", "new_connection")  # absent from results saved before they existed
_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens")


def records_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """Rows as the client records them (ITL left out) -> the records DataFrame, with AIPerf's ITL added."""
    base = [c for c in COLUMNS if c != "itl_s"]
    frame = pd.DataFrame.from_records(list(rows), columns=base)
    for name in _TOKEN_COLUMNS:
        frame[name] = pd.array(frame[name], dtype="Int64")
    frame["http_status"] = frame["http_status"].astype("int64")
    frame["index"] = frame["index"].astype("int64")
    for name in ("start", "ttft_s", "latency_s", "wait_s", "send_lag_s"):
        frame[name] = frame[name].astype(float)
    frame["new_connection"] = pd.array(frame["new_connection"], dtype="boolean")
    itl = itl_seconds(frame["latency_s"], frame["ttft_s"],
                      frame["output_tokens"].astype("Float64").to_numpy(dtype=float, na_value=np.nan))
    frame.insert(COLUMNS.index("itl_s"), "itl_s", np.where(frame["status"] == "ok", itl, np.nan))
    return frame.sort_values("start", kind="stable").reset_index(drop=True)


@dataclass(eq=False)
class LoadResult:
    """Per-request records of one load level, and AIPerf's summary of them."""

    spec: LoadSpec
    records: pd.DataFrame
    started_at: float          # epoch s when the measured phase began
    ended_at: float            # epoch s when it ended
    interrupted: bool = False  # Ctrl-C / cancellation: the records are what was measured until then
    cancelled_requests: int = 0  # in flight when interrupted (not in the records)
    warmup_requests_done: int = 0
    base_url: str = ""
    _summary: dict | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """AIPerf's per-run numbers, plus the load level and when the run happened."""
        if self._summary is None:
            s = self.spec
            self._summary = {
                "mode": s.mode, "concurrency": s.concurrency, "request_rate": s.request_rate,
                "max_concurrency": s.max_concurrency, "connection_reuse": s.connection_reuse,
                **summarize(self.records, s.slo_ttft_ms, s.slo_itl_ms),
                **delivery(self.records, s.request_rate, s.max_concurrency),
                "slo_ttft_ms": s.slo_ttft_ms, "slo_itl_ms": s.slo_itl_ms,
                "started_at": self.started_at, "ended_at": self.ended_at, "interrupted": self.interrupted,
                "cancelled_requests": self.cancelled_requests, "warmup_requests": self.warmup_requests_done,
            }
        return self._summary

    @property
    def errors(self) -> pd.DataFrame:
        """The failed requests (status, HTTP status and error text)."""
        return self.records[self.records["status"] != "ok"]

    def save(self, folder: str | Path) -> Path:
        """Write records.csv and summary.json (with the spec, so ``LoadResult.load`` restores everything)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.records.to_csv(folder / "records.csv", index=False)
        meta = {"base_url": self.base_url, "interrupted": self.interrupted,
                "cancelled_requests": self.cancelled_requests, "warmup_requests_done": self.warmup_requests_done,
                "started_at": self.started_at, "ended_at": self.ended_at}
        doc = {"summary": self.summary(), "spec": dataclasses.asdict(self.spec), "meta": meta}
        tmp = folder / "summary.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
        tmp.replace(folder / "summary.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LoadResult:
        """Read a result written by ``save``."""
        folder = Path(folder)
        try:
            doc = json.loads((folder / "summary.json").read_text())
            records = pd.read_csv(folder / "records.csv", keep_default_na=False, na_values=[""],
                                  dtype={"request_id": str, "status": str, "error": str})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read a load result from {folder}: {exc}", where=str(folder),
                              fix="pass a folder written by LoadResult.save (records.csv + summary.json)") from None
        for name in ("request_id", "error"):
            records[name] = records[name].fillna("")
        for name in _TOKEN_COLUMNS:
            records[name] = pd.array(records[name], dtype="Int64")
        for name in _DELIVERY_COLUMNS:
            if name not in records:  # saved before these columns existed
                records[name] = np.nan
        records["new_connection"] = pd.array(records["new_connection"], dtype="boolean")
        meta = doc["meta"]
        return cls(spec=LoadSpec(**doc["spec"]), records=records[COLUMNS], started_at=meta["started_at"],
                   ended_at=meta["ended_at"], interrupted=meta["interrupted"],
                   cancelled_requests=meta["cancelled_requests"], warmup_requests_done=meta["warmup_requests_done"],
                   base_url=meta["base_url"])

    def _headline(self) -> str:
        s = self.summary()
        flag = ", INTERRUPTED" if self.interrupted else ""
        return (f"{self.spec.label()}: {s['ok_count']} ok, {s['error_count']} errors in {s['duration_s']:.2f} s"
                f"{flag}; {s['request_throughput']:.2f} req/s, {s['output_token_throughput']:.1f} output tok/s"
                + (f", goodput {s['goodput']:.2f} req/s" if s["goodput"] is not None else ""))

    def delivery_note(self) -> str:
        """Open loop: offered vs delivered, flagged below 95%, and what the in-flight cap did; '' for a closed loop."""
        s = self.summary()
        if s["offered_rate"] is None:
            return ""
        delivered = "n/a" if s["delivered_rate"] is None else f"{s['delivered_rate']:.2f} req/s"
        ratio = "" if s["delivered_ratio"] is None else f" ({s['delivered_ratio']:.2f}x)"
        note = f"offered {s['offered_rate']:g} req/s, delivered {delivered}{ratio}"
        if s["under_delivered"]:
            note += f" UNDER-DELIVERED (below {UNDER_DELIVERED:.2f}x of the offered rate)"
        if s["cap_waits"]:
            wait = s["cap_wait_ms"]
            note += (f"; {s['cap_waits']} of {s['requests']} arrivals waited for the in-flight cap of "
                     f"{s['max_concurrency']} (p50 {wait['p50']:.0f} ms, max {wait['max']:.0f} ms)")
        elif s["cap_waits"] == 0:
            note += f"; in-flight cap of {s['max_concurrency']} never reached"
        return note

    def __repr__(self) -> str:
        s = self.summary()

        def fmt(metric: str, key: str) -> str:
            value = s[metric][key]
            return "n/a" if value is None else f"{value:.2f}"

        note = self.delivery_note()
        return (f"LoadResult({self._headline()}; " + (f"{note}; " if note else "")
                + f"TTFT p50 {fmt('ttft_ms', 'p50')} ms p99 {fmt('ttft_ms', 'p99')} ms; "
                f"ITL p50 {fmt('itl_ms', 'p50')} ms; latency p50 {fmt('latency_ms', 'p50')} ms)")

    def _repr_html_(self) -> str:
        s = self.summary()
        keys = ("p50", "p90", "p95", "p99", "mean", "min", "max")
        head = "".join(f"<th>{k}</th>" for k in keys)
        rows = []
        for metric in ("ttft_ms", "itl_ms", "latency_ms"):
            cells = "".join("<td>–</td>" if s[metric][k] is None else f"<td>{s[metric][k]:.2f}</td>" for k in keys)
            rows.append(f"<tr><th>{metric}</th>{cells}</tr>")
        note = self.delivery_note()
        colour = "#b00020" if s["under_delivered"] or s["cap_waits"] else "#333"
        note_html = f"<p style='color:{colour}'>{html.escape(note)}</p>" if note else ""
        return (f"<div><p><b>{html.escape(self._headline())}</b></p>{note_html}<table><tr><th></th>{head}</tr>"
                f"{''.join(rows)}</table></div>")


def sweep_table(results: Sequence[LoadResult]) -> pd.DataFrame:
    """One row per level: the load, throughputs, errors, offered vs delivered (open loop) and TTFT / ITL / latency
    p50, p90, p95, p99 (for plots)."""
    rows = []
    for r in results:
        s = r.summary()
        row = {"level": r.spec.level, "mode": s["mode"], "ok": s["ok_count"], "errors": s["error_count"],
               "request_throughput": s["request_throughput"], "output_token_throughput": s["output_token_throughput"],
               "goodput": s["goodput"], "offered_rate": s["offered_rate"], "delivered_rate": s["delivered_rate"],
               "delivered_ratio": s["delivered_ratio"], "under_delivered": s["under_delivered"],
               "cap_waits": s["cap_waits"]}
        for metric in ("ttft_ms", "itl_ms", "latency_ms"):
            for key in ("p50", "p90", "p95", "p99"):
                row[f"{metric}_{key}"] = s[metric][key]
        rows.append(row)
    return pd.DataFrame(rows)

