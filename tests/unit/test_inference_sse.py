"""The chat client's stream reader (httpx-sse), against a real HTTP server on 127.0.0.1 that replies with canned bodies.

An error event and data that is not JSON must each be an InferenceError saying what the server sent, where and what
to do: the hand-written reader before ignored the first and let a JSONDecodeError escape on the second.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gtcdemo import inference, modeldir
from gtcdemo.inference import InferenceError

MODEL = modeldir.SERVED_MODEL_NAME  # its context is known: a short prompt is sent without counting tokens


def _data(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"  # compact, as Dynamo


HI = _data({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]})
THERE = _data({"id": "chatcmpl-1",
               "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "length"}]})
USAGE = _data({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                                                            "prompt_tokens_details": {"cached_tokens": 3}}})
DONE = b"data: [DONE]\n\n"
SSE = "text/event-stream"
# Each scenario is a path prefix (the test's base URL): the content type and body the server answers with.
BODIES: dict[str, tuple[str, bytes]] = {
    "good": (SSE, HI + THERE + USAGE + DONE),
    # Dynamo's own error frame: the text is an SSE comment (lib/llm/src/http/service/disconnect.rs)
    "dynamo-error": (SSE, HI + b"event: error\n: worker gone\n\n" + DONE),
    "error-with-data": (SSE, HI + b'event: error\ndata: {"error":{"message":"worker gone"}}\n\n' + DONE),
    "error-object": (SSE, HI + _data({"error": {"message": "out of KV blocks", "code": 503}}) + DONE),
    "not-json": (SSE, HI + b"data: {not json\n\n" + DONE),
    "not-an-object": (SSE, HI + b"data: [1, 2]\n\n" + DONE),
    "not-a-stream": ("application/json", b'{"object": "chat.completion"}'),
    "unary-not-json": ("text/html", b"<html>a proxy's login page</html>"),
}


class _Canned(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["content-length"]))
        content_type, body = BODIES[self.path.split("/")[1]]
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _stream_error(server: str, scenario: str) -> InferenceError:
    with pytest.raises(InferenceError) as info:
        inference.stream_chat(f"{server}/{scenario}", MODEL, "hello", max_tokens=4, timeout_s=10)
    assert info.value.where == f"{server}/{scenario}/v1/chat/completions"
    return info.value


def test_a_good_stream_is_read_to_the_end(server: str) -> None:
    seen: list[str] = []
    result = inference.stream_chat(f"{server}/good", MODEL, "hello", max_tokens=4, timeout_s=10, on_text=seen.append)
    assert result.text == "hi there" and seen == ["hi", " there"] and result.finish_reason == "length"
    assert (result.output_tokens, result.prompt_tokens, result.cached_tokens) == (2, 7, 3)
    assert 0 < result.ttft_s <= result.latency_s and len(result.chunk_times_s) == 2


def test_dynamos_error_frame_is_an_inference_error(server: str) -> None:
    error = _stream_error(server, "dynamo-error")
    assert error.problem == ("the server sent an error event in the stream without data (Dynamo writes the text as "
                             "an SSE comment)")
    assert "`gtcdemo logs`" in error.fix


@pytest.mark.parametrize("scenario", ["error-with-data", "error-object"])
def test_an_error_in_the_stream_says_what_the_server_said(server: str, scenario: str) -> None:
    error = _stream_error(server, scenario)
    said = "worker gone" if scenario == "error-with-data" else "out of KV blocks"
    assert error.problem.startswith("the server sent an error") and said in error.problem
    assert "`gtcdemo logs`" in error.fix


def test_data_that_is_not_json_is_an_inference_error_quoting_it(server: str) -> None:
    error = _stream_error(server, "not-json")
    assert error.problem.startswith("the stream carried data that is not JSON (") and "'{not json'" in error.problem
    error = _stream_error(server, "not-an-object")
    assert error.problem == "the stream carried data that is not a JSON object: '[1, 2]'"


def test_an_answer_that_is_not_an_event_stream_says_so(server: str) -> None:
    error = _stream_error(server, "not-a-stream")
    assert "did not answer with an event stream" in error.problem and "'application/json'" in error.problem


def test_a_unary_answer_that_is_not_json_is_an_inference_error(server: str) -> None:
    with pytest.raises(InferenceError) as info:
        inference.chat_completion(f"{server}/unary-not-json", MODEL, "hello", max_tokens=4, timeout_s=10)
    assert "with a body that is not JSON: \"<html>a proxy's login page</html>\"" in info.value.problem
