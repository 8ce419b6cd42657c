"""Sending the load: closed and open loops on one shared client, and running them from sync code and notebooks."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError
from .arrivals import arrival_offsets
from .progress import progress_bar
from .prompts import PromptSource
from .result import LoadResult, records_frame
from .spec import LoadSpec, check_context
from .sse import ChatStream
from .transport import NEW_CONNECTION, SlotTransport

# Identity encoding: the stream is read raw (no decompression layer), and SSE is not worth compressing.
_HEADERS = {"content-type": "application/json", "accept": "text/event-stream", "accept-encoding": "identity"}


class _Runner:
    """Sends requests on one shared client and keeps one tuple per request (nothing per token)."""

    def __init__(self, client: httpx.AsyncClient, url: str, spec: LoadSpec, prompts: PromptSource,
                 bar: Any) -> None:
        self.client, self.url, self.spec, self.prompts, self.bar = client, url, spec, prompts, bar
        self.rows: list[tuple] = []
        self.errors = 0
        self.cancelled = 0  # in flight when the run was interrupted
        self.t0_perf = time.perf_counter()
        self.t0_epoch = time.time()

    async def one(self, index: int, phase: str, due: float | None = None, waited: float | None = None) -> tuple:
        """One streamed request -> (index, id, start, ttft, latency, in, out, cached, status, http, error, wait,
        send lag, new connection). ``due``: its arrival time (open loop); ``waited``: for a free in-flight slot.

        The clock starts after the body is made and before a connection is taken (a new one's TCP handshake is
        inside TTFT), as AIPerf's ``AioHttpClient._request`` starts it before ``session.request``.
        """
        body = self.prompts.body(index, phase)
        stream = ChatStream()
        ttft: float | None = None
        code, error, done, new_conn = 0, "", False, None
        t_send = time.perf_counter()
        t_last = t_send
        try:
            async with asyncio.timeout(self.spec.timeout_s), \
                    self.client.stream("POST", self.url, content=body, headers=_HEADERS) as resp:
                code = resp.status_code
                new_conn = resp.extensions.get(NEW_CONNECTION)
                if code >= 400:
                    text = (await resp.aread())[:300].decode(errors="replace").strip()
                    error = f"HTTP {code}: {text}"
                else:
                    async for piece in resp.aiter_raw():
                        t_last = time.perf_counter()
                        if stream.feed(piece):
                            ttft = t_last - t_send
                        if stream.error:
                            break
                    error = stream.error
                    done = not error and stream.end()
        except TimeoutError:
            t_last = time.perf_counter()
            where = "before the first token" if ttft is None else "after the first token"
            error = f"timed out after {self.spec.timeout_s:g} s {where}"
        except httpx.TimeoutException as exc:
            t_last = time.perf_counter()
            error = f"timed out ({type(exc).__name__}) after {self.spec.timeout_s:g} s"
        except httpx.ConnectError as exc:
            t_last = time.perf_counter()
            error = f"cannot connect to {self.url}: {exc}"
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            t_last = time.perf_counter()
            stage = "before the first token" if ttft is None else "mid-stream"
            error = f"connection lost {stage}: {type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except Exception as exc:  # never fatal to the run: an invalid body, a protocol surprise...
            t_last = time.perf_counter()
            error = f"{type(exc).__name__}: {exc}"[:300]
        if not error:
            if ttft is None:
                error = "the stream carried no content"
            elif not done:
                error = "the stream ended before [DONE]"
        usage = stream.usage or {}
        out_tokens = usage.get("completion_tokens", stream.content_chunks if ttft is not None else None)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        status = "error" if error else "ok"
        lag = None if due is None else t_send - due - (waited or 0.0)
        return (index, stream.request_id, self.t0_epoch + (t_send - self.t0_perf), ttft, t_last - t_send,
                usage.get("prompt_tokens"), out_tokens, cached if cached is not None else (0 if usage else None),
                status, code, error, waited, lag, new_conn)

    def _keep(self, row: tuple, keep: bool) -> None:
        if keep:
            self.rows.append(row)
            if row[8] != "ok":
                self.errors += 1
                self.bar.set_postfix_str(f"{self.errors} errors", refresh=False)
        self.bar.update(1)

    async def closed(self, total: int | None, concurrency: int, deadline: float | None, phase: str,
                     keep: bool) -> None:
        """``concurrency`` workers, each sending its next request as soon as the previous one finished."""
        counter = iter(range(total)) if total is not None else iter(int, 1)  # int() == 0 forever: no cap
        state = {"next": 0}

        async def worker() -> None:
            for _ in counter:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                index = state["next"]
                state["next"] += 1
                self._keep(await self.one(index, phase), keep)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def open(self, total: int | None, deadline: float | None) -> None:
        """Poisson arrivals at ``request_rate`` (``arrival_offsets``), each on its own due time.

        With ``max_concurrency``, an arrival that finds every slot taken waits for one (in arrival order) and the
        wait is recorded; no other arrival moves. AIPerf 0.13 instead skips the tick (``RequestRateStrategy.
        execute_phase``: ``try_issue_credit`` returns None, the request goes at the next tick that finds a slot),
        which lowers the rate just the same and reports only the lower rate; a wait per arrival says how much the
        cap held back, and every request still goes out as early as the cap allows.
        """
        spec = self.spec
        offsets = arrival_offsets(spec.request_rate, total, spec.duration_s, spec.seed)  # type: ignore[arg-type]
        cap = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        tasks: set[asyncio.Task] = set()

        async def send(index: int, due: float) -> None:
            held, waited = False, None
            try:
                if cap is not None:
                    t_wait = time.perf_counter() if cap.locked() else None
                    await cap.acquire()
                    held = True
                    waited = 0.0 if t_wait is None else time.perf_counter() - t_wait
                self._keep(await self.one(index, "run", due, waited), True)
            finally:
                if held:
                    cap.release()  # type: ignore[union-attr]

        origin = time.perf_counter()
        try:
            for index, offset in enumerate(offsets.tolist()):
                due = origin + offset
                if deadline is not None and due >= deadline:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(index, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in list(tasks):
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


async def run_load(base_url: str, spec: LoadSpec, progress: bool = True,
                   save_to: str | Path | None = None) -> LoadResult:
    """Offer the load ``spec`` describes to ``base_url`` and measure every request.

    Errors are counted in the records, never raised. On cancellation (Ctrl-C under ``asyncio.run`` or ``run``)
    the requests completed so far are returned, marked ``interrupted`` (and saved when ``save_to`` is given).
    """
    if not isinstance(spec, LoadSpec):
        raise ConfigError(f"spec must be a LoadSpec, got {type(spec).__name__}", fix="pass LoadSpec(model, ...)")
    check_context(spec)
    prompts = PromptSource(spec)
    url = base_url.rstrip("/") + "/v1/chat/completions"
    limit = spec.in_flight_limit
    timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
    # Plain http needs no CA store; https gets one context, shared by every connection.
    verify = httpx.create_ssl_context(verify=url.startswith("https:"))
    interrupted = False
    started_at = time.time()
    bar = progress_bar(spec, progress)
    runner: _Runner | None = None
    warmups = 0
    try:
        transport = SlotTransport(verify, spec.connection_reuse)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            runner = _Runner(client, url, spec, prompts, bar)
            try:
                if spec.warmup_requests:
                    bar.reset(total=spec.warmup_requests)
                    bar.set_description_str(f"{spec.label()} (warm-up)")
                    await runner.closed(spec.warmup_requests, limit or 1, None, "warmup", keep=False)
                    warmups = spec.warmup_requests
                    bar.reset(total=spec.num_requests)
                    bar.set_description_str(spec.label())
                started_at = time.time()
                deadline = time.perf_counter() + spec.duration_s if spec.duration_s else None
                if spec.concurrency is not None:
                    await runner.closed(spec.num_requests, spec.concurrency, deadline, "run", keep=True)
                else:
                    await runner.open(spec.num_requests, deadline)
            except (asyncio.CancelledError, KeyboardInterrupt):
                interrupted = True
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # we return what was measured instead of propagating
    finally:
        bar.close()
    rows = runner.rows if runner else []
    cancelled = runner.cancelled if runner else 0
    result = LoadResult(spec=spec, records=records_frame(rows), started_at=started_at, ended_at=time.time(),
                        interrupted=interrupted, cancelled_requests=cancelled, warmup_requests_done=warmups,
                        base_url=base_url)
    if save_to is not None:
        result.save(save_to)
    return result


def run(base_url: str, spec: LoadSpec, progress: bool = True, save_to: str | Path | None = None) -> LoadResult:
    """``run_load`` from synchronous code; inside Jupyter (a loop already running) it runs on a worker thread.

    Ctrl-C (or the notebook's interrupt) stops the load and returns the partial result, marked ``interrupted``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=_new_loop) as runner:  # Ctrl-C cancels the run: partial result
            return runner.run(run_load(base_url, spec, progress, save_to))
    return _run_on_thread(base_url, spec, progress, save_to)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with Dynamo): ~15% less client CPU per streamed chunk than asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_on_thread(base_url: str, spec: LoadSpec, progress: bool, save_to: str | Path | None) -> LoadResult:
    loop = _new_loop()
    task = loop.create_task(run_load(base_url, spec, progress, save_to))
    box: dict[str, Any] = {}
    finished = threading.Event()  # not Thread.join: a join interrupted by Ctrl-C can return early afterwards

    def target() -> None:
        try:
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            loop.close()
            finished.set()

    threading.Thread(target=target, name="gtcdemo-load", daemon=True).start()
    try:
        finished.wait()
    except KeyboardInterrupt:  # the notebook's interrupt arrives in this (the main) thread
        with contextlib.suppress(RuntimeError):  # the loop may have just finished
            loop.call_soon_threadsafe(task.cancel)
        finished.wait()
    if "error" in box:
        raise box["error"]
    return box["result"]


def sweep(base_url: str, spec: LoadSpec, levels: Sequence[int | float], progress: bool = True,
          save_to: str | Path | None = None) -> list[LoadResult]:
    """One run per level: concurrencies for a closed-loop spec, request rates for an open-loop one.

    Stops after an interrupted level (its partial result is the last one returned). With ``save_to``, each level
    is saved in its own sub-folder (``concurrency-4``, ``rate-2.5``).
    """
    if not levels:
        raise ConfigError("sweep needs at least one level", where="sweep levels", fix="pass e.g. [1, 2, 4, 8]")
    specs = [spec.at_level(level) for level in levels]  # validate every level before sending anything
    results: list[LoadResult] = []
    for s in specs:
        name = f"concurrency-{s.concurrency}" if s.concurrency is not None else f"rate-{s.request_rate:g}"
        result = run(base_url, s, progress, Path(save_to) / name if save_to is not None else None)
        results.append(result)
        if result.interrupted:
            break
    return results
