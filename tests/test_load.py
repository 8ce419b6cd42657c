"""The load generator: against the real local graph, and against a tiny scripted server for the failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest

from gtcdemo import inference, load
from gtcdemo.errors import ConfigError
from gtcdemo.load import LoadResult, LoadSpec
from gtcdemo.load.progress import progress_bar
from gtcdemo.load.sse import ChatStream
from gtcdemo.load.transport import NEW_CONNECTION, SlotTransport
from gtcdemo.local import LocalTarget

from .support import MODEL, free_port

local = pytest.mark.local


@pytest.fixture(scope="module")
def closed(graph: LocalTarget) -> LoadResult:
    with graph.frontend() as url:
        return load.run(url, LoadSpec(MODEL, concurrency=4, num_requests=20, output_tokens=16, input_tokens_mean=100,
                                      seed=1), progress=False)


# -- against the real graph ------------------------------------------------------------------------------------------
@local
def test_closed_loop_measures_every_request(closed: LoadResult) -> None:
    rec = closed.records
    assert len(rec) == 20 and set(rec["status"]) == {"ok"} and sorted(rec["index"]) == list(range(20))
    assert (rec["output_tokens"] == 16).all()
    assert (rec["ttft_s"] > 0).all() and (rec["ttft_s"] < rec["latency_s"]).all()
    assert ((rec["latency_s"] - rec["ttft_s"]) / 15 - rec["itl_s"]).abs().max() < 1e-12
    assert rec["input_tokens"].nunique() == 1  # prompts of exactly input_tokens_mean tokens (+ the chat template)
    assert rec["request_id"].str.startswith("chatcmpl-").all() and rec["error"].eq("").all()
    s = closed.summary()
    assert s["request_throughput"] > 0 and s["output_token_throughput"] == pytest.approx(16 * s["request_throughput"])
    assert s["error_count"] == 0 and s["concurrency"] == 4 and s["mode"] == "closed" and s["goodput"] is None
    assert s["started_at"] <= rec["start"].min() and s["ended_at"] >= (rec["start"] + rec["latency_s"]).max()
    assert set(s["ttft_ms"]) == {"p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "mean", "min", "max",
                                 "std"}
    assert "concurrency 4: 20 ok, 0 errors" in repr(closed) and "<table>" in closed._repr_html_()


@local
def test_prompt_lengths_are_exact_in_tokens(graph: LocalTarget) -> None:
    spec = LoadSpec(MODEL, concurrency=2, num_requests=6, output_tokens=2, input_tokens_mean=60, input_tokens_std=20,
                    seed=5)
    with graph.frontend() as url:
        result = load.run(url, spec, progress=False)
    prompts = load.PromptSource(spec)
    drawn = [len(m["content"].split(" ")) for i in range(6) for m in prompts.messages(i)]
    overhead = result.records["input_tokens"] - pd.Series(drawn)[result.records["index"]].to_numpy()
    assert overhead.nunique() == 1 and 0 < overhead.iloc[0] < 30  # only the chat template differs
    assert len(set(drawn)) > 1  # the std varies the lengths


@local
def test_open_loop_at_a_rate(graph: LocalTarget) -> None:
    spec = LoadSpec(MODEL, request_rate=40.0, max_concurrency=4, num_requests=12, output_tokens=4,
                    input_tokens_mean=50, seed=2, slo_ttft_ms=60_000)
    with graph.frontend() as url:
        result = load.run(url, spec, progress=False)
    s = result.summary()
    assert s["ok_count"] == 12 and s["mode"] == "open" and s["request_rate"] == 40.0
    assert s["goodput"] == pytest.approx(s["request_throughput"])  # a generous SLO: every request is good
    assert result.records["start"].is_monotonic_increasing


class SocketWatch(threading.Thread):
    """The kernel's view: every TCP socket connected to 127.0.0.1:port while it watches, by inode (/proc/net/tcp).

    By inode, not port: loopback reuses the ports of connections in TIME_WAIT (net.ipv4.tcp_tw_reuse = 2), and a
    socket keeps its inode for its whole life (a connection lives for a request at least: tens of ms; the table is
    read every ~2 ms)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.remote, self.done = f"0100007F:{port:04X}", threading.Event()
        self.before = self._now()  # e.g. Prometheus' kept-alive scrape connection to the frontend
        self.inodes: set[str] = set()

    def _now(self) -> set[str]:
        rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        return {f[9] for f in rows if f[2] == self.remote and f[9] != "0"}

    def run(self) -> None:
        while not self.done.is_set():
            self.inodes |= self._now() - self.before
            self.done.wait(0.002)

    def __enter__(self) -> SocketWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


@local
def test_cli_open_loop_is_not_capped_unless_asked(graph: LocalTarget, tmp_path: Path) -> None:
    # The CLI as a user runs it (the graph fixture's GTCDEMO_STATE is inherited): --rate alone caps nothing.
    cli = [str(Path(sys.executable).with_name("gtcdemo")), "load", "--input-tokens", "20", "--output-tokens", "2",
           "--warmup", "0", "--requests", "6", "--rate", "50"]
    out = subprocess.run([*cli, "--out", str(tmp_path / "free")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads((tmp_path / "free" / "summary.json").read_text())
    assert doc["spec"]["max_concurrency"] is None and doc["summary"]["cap_waits"] is None
    assert doc["summary"]["offered_rate"] == 50.0 and doc["summary"]["delivered_rate"] > 0
    assert "offered 50 req/s, delivered" in out.stdout
    capped = subprocess.run([*cli, "--concurrency", "2", "--out", str(tmp_path / "capped")], capture_output=True,
                            text=True, timeout=120)
    assert capped.returncode == 0, capped.stderr[-2000:]
    assert json.loads((tmp_path / "capped" / "summary.json").read_text())["spec"]["max_concurrency"] == 2
    assert "in-flight cap of 2" in capped.stdout


@local
@pytest.mark.parametrize("policy", ["pooled", "never"])
def test_connection_reuse_policy_is_what_the_kernel_sees(graph: LocalTarget, policy: str) -> None:
    """AIPerf's policies: 'pooled' reuses kept-alive connections, 'never' opens one per request (and closes it)."""
    port = int(graph.frontend_url().rsplit(":", 1)[1])
    spec = LoadSpec(MODEL, request_rate=20.0, num_requests=12, output_tokens=4, input_tokens_mean=30, seed=8,
                    connection_reuse=policy)
    with SocketWatch(port) as watch:  # the frontend's own sockets have the port as local, not remote, address
        result = load.run(graph.frontend_url(), spec, progress=False)
    rec = result.records
    assert set(rec["status"]) == {"ok"} and result.summary()["new_connections"] == int(rec["new_connection"].sum())
    if policy == "never":
        assert rec["new_connection"].all() and len(watch.inodes) == 12
    else:
        assert 1 <= len(watch.inodes) == int(rec["new_connection"].sum()) < 12  # reused connections are not new


@local
def test_duration_stops_the_run_first(graph: LocalTarget) -> None:
    spec = LoadSpec(MODEL, concurrency=2, num_requests=100_000, duration_s=0.3, output_tokens=2,
                    input_tokens_mean=20)
    with graph.frontend() as url:
        result = load.run(url, spec, progress=False)
    assert 0 < len(result.records) < 100_000 and not result.interrupted
    assert result.records["start"].max() - result.started_at < 0.3 + 0.05


@local
def test_shared_prefix_is_served_from_the_cache(graph: LocalTarget) -> None:
    spec = LoadSpec(MODEL, concurrency=1, num_requests=4, output_tokens=2, input_tokens_mean=400,
                    shared_prefix_fraction=0.5, seed=987)
    with graph.frontend() as url:
        rec = load.run(url, spec, progress=False).records
    assert rec["cached_tokens"].iloc[0] < 200  # a new prefix
    assert (rec["cached_tokens"].iloc[1:] >= 160).all()  # 200 shared tokens = 6 full blocks of 32 at least


@local
def test_warmup_is_sent_but_excluded(graph: LocalTarget) -> None:
    # The warm-up shares the run's system prompt: if it reached the server, the first measured request finds the
    # prefix cached (the frontend's request counter would also see other clients of the graph, this cannot).
    spec = LoadSpec(MODEL, concurrency=1, num_requests=3, warmup_requests=2, output_tokens=2, input_tokens_mean=400,
                    shared_prefix_fraction=0.5, seed=4242)
    with graph.frontend() as url:
        result = load.run(url, spec, progress=False)
    assert sorted(result.records["index"]) == [0, 1, 2] and result.warmup_requests_done == 2
    assert result.records["cached_tokens"].iloc[0] >= 160
    assert result.summary()["warmup_requests"] == 2 and result.summary()["requests"] == 3


@local
def test_unknown_model_is_counted_as_http_error(graph: LocalTarget) -> None:
    spec = LoadSpec("no-such-model", concurrency=1, num_requests=2,
                    tokenizer=str(inference.default_tokenizer_path(MODEL)))
    with graph.frontend() as url:
        result = load.run(url, spec, progress=False)
    assert list(result.records["status"]) == ["error", "error"] and set(result.records["http_status"]) == {404}
    assert result.records["error"].str.startswith("HTTP 404").all() and result.summary()["error_count"] == 2


@local
def test_sweep_runs_each_level(graph: LocalTarget, tmp_path: Path) -> None:
    spec = LoadSpec(MODEL, concurrency=1, num_requests=3, output_tokens=2, input_tokens_mean=20)
    with graph.frontend() as url:
        results = load.sweep(url, spec, [1, 2], progress=False, save_to=tmp_path)
    assert [r.spec.concurrency for r in results] == [1, 2]
    assert all(r.summary()["ok_count"] == 3 for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["concurrency-1", "concurrency-2"]
    table = load.sweep_table(results)
    assert list(table["level"]) == [1.0, 2.0] and (table["ttft_ms_p95"] > 0).all()  # what plots.sweep_curve reads


@local
def test_save_and_load_round_trip(closed: LoadResult, tmp_path: Path) -> None:
    closed.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["records.csv", "summary.json"]
    again = LoadResult.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.records, closed.records, check_dtype=False)
    assert again.spec == closed.spec and again.summary() == closed.summary() and repr(again) == repr(closed)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]["ok_count"] == 20


def test_loading_a_missing_result_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read a load result"):
        LoadResult.load(tmp_path)


CTRL_C_SCRIPT = """
import asyncio, json, sys
from gtcdemo.load import LoadSpec, run
spec = LoadSpec(sys.argv[2], concurrency=2, num_requests=10**6, output_tokens=8, input_tokens_mean=20)
if sys.argv[3] == "notebook":  # a loop already runs in the main thread, as in Jupyter: run() uses a worker thread
    async def cell():
        return run(sys.argv[1], spec, save_to=sys.argv[4])
    result = asyncio.new_event_loop().run_until_complete(cell())
else:
    result = run(sys.argv[1], spec, save_to=sys.argv[4])
print(json.dumps({"ok": result.summary()["ok_count"], "interrupted": result.interrupted}))
"""


@local
@pytest.mark.parametrize("where", ["script", "notebook"])
def test_ctrl_c_returns_and_saves_the_partial_result(graph: LocalTarget, tmp_path: Path, where: str) -> None:
    # The progress bar tells when requests have completed (TQDM_DISABLE may be set by the notebook tests' conftest).
    env = {**{k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}, "TQDM_MININTERVAL": "0"}
    with graph.frontend() as url:
        proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, url, MODEL, where, str(tmp_path / "partial")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        seen = b""
        deadline = time.monotonic() + 60
        while not re.search(rb"\| *[3-9]/1000000", seen):
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                pytest.fail(f"no progress within 60 s: {seen.decode(errors='replace')[-2000:]}")
            piece = os.read(proc.stderr.fileno(), 4096)
            assert piece, f"the run ended before 3 requests: {seen.decode(errors='replace')[-2000:]}"
            seen += piece
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    report = json.loads(out)
    assert report["interrupted"] and report["ok"] >= 3
    saved = LoadResult.load(tmp_path / "partial")
    assert saved.interrupted and len(saved.records) >= 3 and saved.summary()["ok_count"] == report["ok"]


# -- errors are counted, never raised ----------------------------------------------------------------------------------
def test_dead_port_counts_errors_without_raising() -> None:
    result = load.run(f"http://127.0.0.1:{free_port()}", LoadSpec(MODEL, concurrency=2, num_requests=3),
                      progress=False)
    s = result.summary()
    assert s["error_count"] == 3 and s["ok_count"] == 0 and s["request_throughput"] == 0.0
    assert result.records["error"].str.contains("cannot connect").all()
    assert set(result.records["http_status"]) == {0} and s["ttft_ms"]["p50"] is None


def test_run_inside_a_running_loop_uses_a_thread() -> None:
    """As in Jupyter, where an event loop already runs in the main thread."""
    async def notebook_cell() -> LoadResult:
        return load.run(f"http://127.0.0.1:{free_port()}", LoadSpec(MODEL, concurrency=1, num_requests=2),
                        progress=False)

    assert asyncio.run(notebook_cell()).summary()["error_count"] == 2


def test_progress_bar_honours_tqdm_disable(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LoadSpec(MODEL, concurrency=1, num_requests=1)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(spec, True).disable
    monkeypatch.delenv("TQDM_DISABLE")
    assert progress_bar(spec, False).disable


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"  # compact, as Dynamo


CONTENT = _sse({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]})
TOKEN = _sse({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"content": " there"}}]})
USAGE = _sse({"id": "chatcmpl-fake", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                                                              "prompt_tokens_details": {"cached_tokens": 3}}})
DONE = b"data: [DONE]\n\n"


class Scripted:
    """A minimal HTTP/1.1 server whose answer to the n-th request is scripted (real sockets, chunked SSE)."""

    def __init__(self, script: Callable[[int, asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.script, self.count, self.url = script, 0, ""
        self.handlers: set[asyncio.Task] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        # A cancelled handler would be logged by asyncio's stream callback, so cancellation ends it quietly.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                await reader.readexactly(length)
                n, self.count = self.count, self.count + 1
                await self.script(n, writer)
                if writer.is_closing():
                    return
        writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self.url
        finally:  # scripted hangs must not outlive the test
            server.close()
            for task in self.handlers:
                task.cancel()
            await asyncio.gather(*self.handlers, return_exceptions=True)


async def _stream(writer: asyncio.StreamWriter, *events: bytes, end: bool = True) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for event in events:
        writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
    if end:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _scripted_run(script: Callable[[int, asyncio.StreamWriter], Awaitable[None]], spec: LoadSpec) -> LoadResult:
    async with Scripted(script).serving() as url:
        return await load.run_load(url, spec, progress=False)


def test_failures_are_classified_and_counted() -> None:
    async def script(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 0:  # a complete, good stream
            await _stream(writer, CONTENT, TOKEN, USAGE, DONE)
        elif n == 1:  # the server dies mid-stream
            await _stream(writer, CONTENT, TOKEN, end=False)
            writer.transport.abort()
        elif n == 2:  # an error event inside a 200 stream, with an OpenAI-style error object
            await _stream(writer, CONTENT, b'event: error\ndata: {"error": {"message": "worker gone"}}\n\n')
        elif n == 3:
            body = b'{"message":"overloaded"}'
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        elif n == 4:  # a stream that never produces content
            await _stream(writer, USAGE, DONE)
        elif n == 5:  # garbage instead of JSON
            await _stream(writer, b"data: {not json\n\n", DONE)
        else:  # Dynamo's own error event: its text is an SSE comment (lib/llm/src/http/service/disconnect.rs)
            await _stream(writer, CONTENT, b"event: error\n: worker gone\n\n", DONE)

    result = asyncio.run(_scripted_run(script, LoadSpec(MODEL, concurrency=1, num_requests=7, timeout_s=10)))
    rec = result.records.set_index("index")
    assert rec.loc[0, "status"] == "ok" and rec.loc[0, "output_tokens"] == 2 and rec.loc[0, "cached_tokens"] == 3
    assert rec.loc[0, "request_id"] == "chatcmpl-fake" and rec.loc[0, "itl_s"] > 0
    assert rec.loc[1, "error"].startswith("connection lost mid-stream")
    assert "worker gone" in rec.loc[2, "error"]
    assert rec.loc[3, "http_status"] == 503 and "overloaded" in rec.loc[3, "error"]
    assert rec.loc[4, "error"] == "the stream carried no content"
    assert "JSONDecodeError" in rec.loc[5, "error"]
    assert rec.loc[6, "error"] == "error event in the stream"
    assert result.summary()["error_count"] == 6 and not result.interrupted


def test_a_binding_cap_is_reported_and_arrivals_keep_their_schedule() -> None:
    # The first response is held long past the whole schedule (6 arrivals at 1000/s: 6 ms), so with one slot every
    # later arrival finds the cap taken. Arrivals wait in order for the slot; none is dropped or moved.
    async def script(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 0:
            await asyncio.sleep(0.5)
        await _stream(writer, CONTENT, TOKEN, USAGE, DONE)

    spec = LoadSpec(MODEL, request_rate=1000.0, max_concurrency=1, num_requests=6, timeout_s=10, seed=3)
    result = asyncio.run(_scripted_run(script, spec))
    rec, s = result.records, result.summary()
    assert list(rec["index"]) == list(range(6)) and set(rec["status"]) == {"ok"}  # sent in arrival order
    assert rec["wait_s"].iloc[0] == 0 and (rec["wait_s"].iloc[1:] > 0).all()
    assert s["cap_waits"] == 5 and 0 < s["cap_wait_ms"]["p50"] <= s["cap_wait_ms"]["max"]
    assert s["under_delivered"] and s["delivered_ratio"] < 0.95
    for view in (repr(result), result._repr_html_()):
        assert "5 of 6 arrivals waited for the in-flight cap of 1" in view and "UNDER-DELIVERED" in view
    # Each arrival's due time (sent - waited - send lag) is the seeded Poisson schedule, to the microsecond.
    due = rec["start"] - rec["wait_s"] - rec["send_lag_s"]
    expected = load.arrival_offsets(1000.0, 6, None, seed=3)
    assert ((due - due.iloc[0]) - (expected - expected[0])).abs().max() < 1e-5


def test_the_pool_reuses_the_connection_idle_longest() -> None:
    """Least recently used first, as aiohttp's pool (AIPerf): a connection freed a moment ago delays the next first
    token by the client's delayed ACK (see gtcdemo.load.transport.SlotTransport), one idle longer does not."""
    served: dict[int, int] = {}  # request number at the server -> client port of the connection it came on
    gates = {0: asyncio.Event(), 1: asyncio.Event()}

    async def script(n: int, writer: asyncio.StreamWriter) -> None:
        served[n] = writer.get_extra_info("peername")[1]
        if n in gates:
            await gates[n].wait()
        await _stream(writer, CONTENT, TOKEN, USAGE, DONE)

    async def main() -> list[bool]:
        async with Scripted(script).serving() as url:
            transport = SlotTransport(httpx.create_ssl_context(verify=False))
            async with httpx.AsyncClient(transport=transport) as client:
                async def request() -> bool:
                    async with client.stream("POST", url + "/v1/chat/completions", content=b"{}") as resp:
                        await resp.aread()
                        return resp.extensions[NEW_CONNECTION]

                first = {asyncio.create_task(request()), asyncio.create_task(request())}
                deadline = time.monotonic() + 10
                while len(served) < 2:  # both requests at the server, on two connections
                    assert time.monotonic() < deadline, "the server did not get two requests"
                    await asyncio.sleep(0.001)
                gates[0].set()  # the connection of request 0 is freed first, then that of request 1
                done, pending = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
                gates[1].set()
                await asyncio.gather(*pending)
                return [t.result() for t in (*done, *pending)] + [await request()]

    new = asyncio.run(main())
    assert new == [True, True, False] and served[0] != served[1]
    assert served[2] == served[0]  # the one idle longest, not the one freed last


KEEP_ALIVE = b": keep-alive\n\n"
CUTS = {  # the same stream in pieces as the server's writes may arrive: (pieces, the one with the first content)
    "one piece per event": ([KEEP_ALIVE, CONTENT, TOKEN, TOKEN, USAGE, DONE], 1),
    "all in one piece": ([KEEP_ALIVE + CONTENT + TOKEN + TOKEN + USAGE + DONE], 0),
    "first content cut twice": ([KEEP_ALIVE + CONTENT[:9], CONTENT[9:30], CONTENT[30:] + TOKEN, TOKEN + USAGE + DONE],
                                2),
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_the_byte_reader_is_the_same_however_the_stream_is_cut(cut: str) -> None:
    """The records' reader (gtcdemo.load.sse): the first content is found in the piece that completes its line, the
    content chunks are counted, the final usage is read, whether a piece holds one event, all, or part of one."""
    pieces, expected = CUTS[cut]
    stream = ChatStream()
    assert [i for i, piece in enumerate(pieces) if stream.feed(piece)] == [expected] and not stream.error
    assert stream.end() and stream.content_chunks == 3 and stream.request_id == "chatcmpl-fake"
    assert stream.usage == {"prompt_tokens": 7, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 3}}
    broken = ChatStream()
    assert [broken.feed(p) for p in (CONTENT, b'event: error\ndata: {"error": {"message": "worker gone"}}\n\n')] == \
        [True, False]
    assert "worker gone" in broken.error


def test_a_stalled_stream_times_out() -> None:
    async def script(n: int, writer: asyncio.StreamWriter) -> None:
        await _stream(writer, CONTENT, end=False)
        await asyncio.Event().wait()  # never finishes

    result = asyncio.run(_scripted_run(script, LoadSpec(MODEL, concurrency=1, num_requests=1, timeout_s=0.3)))
    assert result.records["error"].iloc[0] == "timed out after 0.3 s after the first token"
    assert result.records["ttft_s"].iloc[0] < 0.3 <= result.records["latency_s"].iloc[0]


def test_cancellation_keeps_what_was_measured(tmp_path: Path) -> None:
    stuck = asyncio.Event()

    async def script(n: int, writer: asyncio.StreamWriter) -> None:
        if n < 3:
            await _stream(writer, CONTENT, TOKEN, USAGE, DONE)
        else:
            stuck.set()
            await asyncio.Event().wait()

    async def main() -> LoadResult:
        async with Scripted(script).serving() as url:
            spec = LoadSpec(MODEL, concurrency=1, num_requests=10, timeout_s=30)
            task = asyncio.create_task(load.run_load(url, spec, progress=False, save_to=tmp_path / "partial"))
            await stuck.wait()
            task.cancel()
            return await task

    result = asyncio.run(main())
    assert result.interrupted and result.cancelled_requests == 1
    assert len(result.records) == 3 and set(result.records["status"]) == {"ok"}
    saved = LoadResult.load(tmp_path / "partial")
    assert saved.interrupted and len(saved.records) == 3 and "INTERRUPTED" in repr(saved)


# -- the spec ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"concurrency": 0, "num_requests": 1}, "concurrency must be >= 1"),
    ({"concurrency": 2.5, "num_requests": 1}, "concurrency must be >= 1"),
    ({"num_requests": 1}, "give concurrency (closed loop) or request_rate (open loop)"),
    ({"concurrency": 1, "request_rate": 2.0, "num_requests": 1}, "concurrency and request_rate exclude each other"),
    ({"request_rate": 0, "num_requests": 1}, "request_rate must be > 0"),
    ({"request_rate": float("inf"), "num_requests": 1}, "request_rate must be > 0"),
    ({"concurrency": 1, "max_concurrency": 2, "num_requests": 1}, "max_concurrency only caps an open loop"),
    ({"request_rate": 1.0, "max_concurrency": 0, "num_requests": 1}, "max_concurrency must be >= 1"),
    ({"concurrency": 1}, "give num_requests or duration_s"),
    ({"concurrency": 1, "duration_s": -1}, "duration_s must be > 0"),
    ({"concurrency": 1, "num_requests": 0}, "num_requests must be >= 1"),
    ({"concurrency": 1, "num_requests": 1, "warmup_requests": -1}, "warmup_requests must be >= 0"),
    ({"concurrency": 1, "num_requests": 1, "input_tokens_mean": 0}, "input_tokens_mean must be >= 1"),
    ({"concurrency": 1, "num_requests": 1, "input_tokens_std": -2}, "input_tokens_std must be >= 0"),
    ({"concurrency": 1, "num_requests": 1, "output_tokens": 0}, "output_tokens must be >= 1"),
    ({"concurrency": 1, "num_requests": 1, "shared_prefix_fraction": 1.5}, "shared_prefix_fraction must be between"),
    ({"concurrency": 1, "num_requests": 1, "timeout_s": 0}, "timeout_s must be > 0"),
    ({"concurrency": 1, "num_requests": 1, "slo_ttft_ms": 0}, "slo_ttft_ms must be > 0"),
    ({"concurrency": 1, "num_requests": 1, "slo_itl_ms": -1}, "slo_itl_ms must be > 0"),
])
def test_spec_validation_says_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoadSpec(MODEL, **kwargs)
    assert message in str(info.value) and "Fix:" in str(info.value)


def test_several_spec_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        LoadSpec("", concurrency=0, output_tokens=0)
    text = str(info.value)
    assert "4 problem(s)" in text and "concurrency must be >= 1" in text and "output_tokens must be >= 1" in text
    assert "model must be the served model name" in text and "give num_requests or duration_s" in text


def test_missing_tokenizer_and_bad_sweep_levels_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load.run("http://127.0.0.1:1", LoadSpec(MODEL, concurrency=1, num_requests=1,
                                                tokenizer=str(tmp_path / "tokenizer.json")), progress=False)
    with pytest.raises(ConfigError, match="concurrency must be >= 1"):
        load.sweep("http://127.0.0.1:1", LoadSpec(MODEL, concurrency=1, num_requests=1), [1, 0])
    with pytest.raises(ConfigError, match="at least one level"):
        load.sweep("http://127.0.0.1:1", LoadSpec(MODEL, concurrency=1, num_requests=1), [])


def test_prompts_are_reproducible_and_share_the_prefix() -> None:
    spec = LoadSpec(MODEL, concurrency=1, num_requests=1, input_tokens_mean=100, shared_prefix_fraction=0.3, seed=4)
    a, b = load.PromptSource(spec), load.PromptSource(spec)
    assert a.body(7) == b.body(7) and a.body(7) != a.body(8) and a.body(7, "warmup") != a.body(7)
    first, second = a.messages(0), a.messages(1)
    assert [m["role"] for m in first] == ["system", "user"] and first[0] == second[0]
    body = json.loads(a.body(0))
    assert body["ignore_eos"] is True and body["max_tokens"] == 32 and body["stream_options"] == {"include_usage": True}
    assert "nvext" not in body
