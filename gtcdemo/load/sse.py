"""The load generator's reader of a streamed chat completion: raw bytes in, what the records need out.

Hand-written for speed (AIPerf parses its streams by hand too, ``AsyncSSEStreamReader``): JSON is parsed only until
the first content arrives, later chunks are only searched as bytes (C speed), and the final ``usage`` chunk is parsed
once. ``gtcdemo.inference`` reads one stream at a time and uses httpx-sse instead.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque


def _first_content(lines: list[bytes]) -> tuple[int, str, dict | None, str]:
    """Scan complete SSE lines: (index of the line with the first non-empty content or -1, id, usage, error)."""
    rid, usage, error = "", None, ""
    for i, line in enumerate(lines):
        if line.startswith(b"event:") and b"error" in line:
            error = error or line.decode(errors="replace").strip()
            continue
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            return -1, rid, usage, f"error event: {json.dumps(chunk['error'])[:300]}"
        rid = rid or chunk.get("id") or ""
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                return i, rid, usage, error
    return -1, rid, usage, error


def _stream_error(piece: bytes) -> str:
    """An error event inside a stream piece (called only when the bytes mention 'error'), else ''."""
    event_error = False
    for line in piece.split(b"\n"):
        if line.startswith(b"event:"):
            event_error = b"error" in line
        elif line.startswith(b"data:") and (event_error or b"error" in line):
            with contextlib.suppress(ValueError):
                chunk = json.loads(line[5:])
                if isinstance(chunk, dict) and chunk.get("error"):
                    return f"error event: {json.dumps(chunk['error'])[:300]}"
            if event_error:
                return f"error event: {line[5:].decode(errors='replace').strip()[:300]}"
    return "error event in the stream" if event_error else ""


def _final_usage(tail: bytes) -> dict | None:
    """The ``usage`` object of the last chunk that carries one (parsed once, at the end of the stream)."""
    pos = tail.rfind(b'"usage":')
    if pos < 0:
        return None
    start = tail.rfind(b"data:", 0, pos)
    end = tail.find(b"\n", pos)
    if start < 0:
        return None
    try:
        return json.loads(tail[start + 5:end if end >= 0 else len(tail)]).get("usage")
    except (ValueError, AttributeError):
        return None


class ChatStream:
    """What the records need from one streamed chat completion, fed the raw bytes piece by piece.

    Until the first non-empty content, complete lines are parsed as JSON (the id, a usage, an error event); after
    it, a piece is only searched as bytes: its content chunks counted and, when it mentions 'error', an error event
    looked for. The last pieces are kept for ``end``, which finds ``[DONE]`` and the final ``usage``.
    """

    def __init__(self) -> None:
        self.started = False  # the first non-empty content has arrived
        self.request_id = ""
        self.usage: dict | None = None
        self.error = ""  # an error event's text: the caller stops reading
        self.content_chunks = 0  # chunks with non-empty content (the output tokens when no usage arrives)
        self._head = b""  # an incomplete line, until the first content
        self._tail: deque[bytes] = deque(maxlen=6)  # the last pieces after it (the usage chunk is among them)

    def feed(self, piece: bytes) -> bool:
        """Read the next piece; True when it carried the first content (the caller's TTFT is now)."""
        if self.started:  # afterwards only byte searches (C speed), no JSON
            self._tail.append(piece)
            self.content_chunks += piece.count(b'"content":"') - piece.count(b'"content":""')
            if b"error" in piece:
                self.error = _stream_error(piece)
            return False
        head = self._head + piece
        cut = head.rfind(b"\n") + 1
        lines = head[:cut].split(b"\n")
        at, rid, usage, self.error = _first_content(lines)
        self.request_id, self.usage = self.request_id or rid, usage or self.usage
        if self.error or at < 0:
            self._head = head[cut:]
            return False
        rest = b"\n".join(lines[at + 1:]) + b"\n" + head[cut:]
        self._tail.append(rest)
        self.content_chunks += 1 + rest.count(b'"content":"') - rest.count(b'"content":""')
        self._head, self.started = b"", True
        return True

    def end(self) -> bool:
        """At the end of the stream: read the final usage; True when ``[DONE]`` arrived."""
        last = b"".join(self._tail) if self.started else self._head
        self.usage = _final_usage(last) or self.usage
        return b"[DONE]" in last
