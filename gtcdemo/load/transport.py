"""The load generator's HTTP connections: a free list of kept-alive connections over a lean network stream.

Depends on httpx and httpcore only; ``runner.py`` plugs ``SlotTransport`` into one shared ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx

NEW_CONNECTION = "gtcdemo.new_connection"  # response extension: True when the request opened its connection


class _Released(httpx.AsyncByteStream):
    """A response stream that hands its connection slot back when closed (no extra layer per chunk)."""

    def __init__(self, stream: httpx.AsyncByteStream, owner: SlotTransport, slot: httpx.AsyncHTTPTransport) -> None:
        self._stream, self._owner, self._slot = stream, owner, slot

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # the inner iterator itself: nothing added per chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._slot is not None:
                slot, self._slot = self._slot, None
                await self._owner.release(slot)


class _Protocol(asyncio.Protocol):
    """One connection's bytes as the event loop delivers them: a queue of received pieces and who waits for them."""

    def __init__(self) -> None:
        self.pieces: deque[bytes] = deque()
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.drained: asyncio.Future | None = None  # set while the transport's write buffer is full

    def _wake(self, future: asyncio.Future | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self._wake(self.waiter)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake(self.waiter)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof, self.error = True, exc
        self._wake(self.waiter)
        self._wake(self.drained)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake(self.drained)
        self.drained = None


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's network stream on an asyncio transport, without a timeout scope per read or write.

    Why: httpcore's default (anyio) stream enters a cancel scope and an exception map for every read, one read per
    streamed token: that was ~30% of the client's CPU at 32 req/s here (4.3-5.1 s -> 3.4 s per 384 requests of 128
    tokens). The request as a whole runs under ``asyncio.timeout(timeout_s)`` instead, and the connect keeps its own
    timeout. Errors are httpcore's, so httpx maps them as before (ConnectError, ReadError, WriteError).
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        while not p.pieces:
            if p.eof:
                if p.error is not None:
                    raise httpcore.ReadError(f"{type(p.error).__name__}: {p.error}")
                return b""
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                await p.waiter
            finally:
                p.waiter = None
        piece = p.pieces.popleft()
        if len(piece) > max_bytes:
            p.pieces.appendleft(piece[max_bytes:])
            piece = piece[:max_bytes]
        return piece

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if self._protocol.drained is not None:
            await self._protocol.drained

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport = await asyncio.get_running_loop().start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        return _Stream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection that is readable was closed by the server
            return bool(self._protocol.pieces) or self._protocol.eof
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return self._transport.get_extra_info(names[info]) if info in names else None


class _Backend(httpcore.AsyncNetworkBackend):
    """Opens ``_Stream`` connections (TCP_NODELAY, as asyncio and uvloop set on every TCP connection)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await asyncio.get_running_loop().create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(transport, protocol)  # type: ignore[arg-type]

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the load generator connects over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = _Backend()


class SlotTransport(httpx.AsyncBaseTransport):
    """The shared client's connections, each in its own one-connection pool, lent to one request at a time.

    Why slots: httpcore's pool (1.0.x) scans every connection, polling each idle socket, whenever a request starts
    or ends. At 64 connections that cost ~10 ms of client CPU per request here, 5x the requests themselves, and made
    the 2-core client the bottleneck (~80 req/s instead of ~350). A free list is O(1) and keeps connections alive.

    Why least recently used first (``pooled``, aiohttp's order: ``TCPConnector._get`` pops the oldest idle
    connection, so AIPerf's default pool does this): a connection that received its last response less than ~40 ms
    ago (Linux's minimum delayed-ACK time) is in delayed-ACK mode once the client sends on it again, and the
    frontend's next small writes then wait for that ACK (Nagle: the frontend serves with ``axum::serve`` on a plain
    tokio listener, no TCP_NODELAY, ``lib/llm/src/http/service/service_v2.rs``): its first token arrives up to
    40 ms late. Taking the most recently freed connection did that to most open-loop requests (TTFT p50 62 ms
    against AIPerf's 44 ms at 16 req/s); the oldest one has cooled down (45 ms). A closed loop reuses the
    connection its previous request just freed either way (both tools see those 40 ms). ``never`` opens a new
    connection per request and closes it after the response (AIPerf's ``never``).
    """

    def __init__(self, verify: ssl.SSLContext, reuse: str = "pooled") -> None:
        self._free: deque[httpx.AsyncHTTPTransport] = deque()
        self._all: set[httpx.AsyncHTTPTransport] = set()
        self._last: dict[httpx.AsyncHTTPTransport, object] = {}  # slot -> the network stream it last used
        self._verify = verify  # one SSL context for all: making one loads the CA store (~35 ms)
        self._reuse = reuse

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._free:
            slot = self._free.popleft()
        else:
            slot = httpx.AsyncHTTPTransport(verify=self._verify, limits=httpx.Limits(max_connections=1))
            slot._pool = httpcore.AsyncConnectionPool(ssl_context=self._verify, max_connections=1,  # our streams
                                                      network_backend=_BACKEND)
            self._all.add(slot)
        try:
            response = await slot.handle_async_request(request)
        except BaseException:
            await self.release(slot)
            raise
        stream = response.extensions.get("network_stream")  # a reconnect inside the slot is a new stream
        response.extensions[NEW_CONNECTION] = stream is not self._last.get(slot)
        self._last[slot] = stream
        response.stream = _Released(response.stream, self, slot)  # type: ignore[arg-type]
        return response

    async def release(self, slot: httpx.AsyncHTTPTransport) -> None:
        """Back to the free list (``pooled``), or closed (``never``: the client closes, as AIPerf's force_close)."""
        if self._reuse == "pooled":
            self._free.append(slot)
            return
        self._all.discard(slot)
        self._last.pop(slot, None)
        with contextlib.suppress(Exception):
            await slot.aclose()

    async def aclose(self) -> None:
        for slot in list(self._all):
            await slot.aclose()
        self._all.clear()
        self._free.clear()
        self._last.clear()
