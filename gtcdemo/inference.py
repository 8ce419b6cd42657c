"""OpenAI-compatible chat against the Dynamo frontend: unary and streaming, with the JSON checked.

TTFT follows AIPerf: from sending the request to the first chunk carrying non-empty content. One request at a time,
so the stream is read with httpx-sse (the load generator, ``gtcdemo.load``, reads many at once with its own byte-level
reader).
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from . import engine_config, modeldir
from .clock import Deadline
from .engine_config import ContextLimit
from .errors import ConfigError, DeploymentError
from .modeldir import pvc_root


class InferenceError(DeploymentError):
    """The frontend answered with an error, or an invalid body."""


def validate_chat_completion(body: Any) -> dict:
    """Check the fields a client relies on; raise InferenceError naming the first one missing."""
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise InferenceError(f"invalid chat completion: {what}", where="response body",
                                 fix="check the frontend and worker logs (`gtcdemo logs`)")
    need(isinstance(body, dict), "not a JSON object")
    need(isinstance(body.get("id"), str) and body["id"], "no id")
    need(body.get("object") == "chat.completion", f"object is {body.get('object')!r}")
    choices = body.get("choices")
    need(isinstance(choices, list) and choices, "no choices")
    message = choices[0].get("message") or {}
    need(message.get("role") == "assistant", "choices[0].message.role is not assistant")
    need(isinstance(message.get("content"), str), "choices[0].message.content is not text")
    need(choices[0].get("finish_reason") in {"stop", "length"}, f"finish_reason {choices[0].get('finish_reason')!r}")
    usage = body.get("usage") or {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        need(isinstance(usage.get(key), int), f"usage.{key} missing")
    return body


def _request(model: str, prompt: str | list[dict], max_tokens: int, stream: bool, ignore_eos: bool) -> dict:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True  # Dynamo 1.6 takes it at the top level (nvext.ignore_eos is rejected)
    return body


def _raise_for(response: httpx.Response, url: str) -> None:
    if response.status_code >= 400:
        text = response.text[:500] if not response.is_stream_consumed or response.is_closed else ""
        raise InferenceError(f"{url} answered HTTP {response.status_code}: {text}", where=url,
                             fix="4xx: check the model name and request; 5xx: check `gtcdemo logs`")


def check_context(prompt_tokens: int, max_tokens: int, limit: ContextLimit | None, where: str,
                  at_least: bool = False) -> None:
    """Refuse a request whose prompt + output tokens exceed the model's context, before it is sent.

    TRT-LLM refuses such a request on the cluster (its max_seq_len), later Dynamo frontends with HTTP 400 "This
    model's maximum context length is N tokens..." (lib/llm/src/preprocessor.rs, validate_token_count, #6635), and
    the local graph's mocker runs with the same --max-model-len (gtcdemo/local/plan.py)."""
    if limit is None or prompt_tokens + max_tokens <= limit.tokens:
        return
    prompt = f"{'at least ' if at_least else ''}{prompt_tokens} prompt"
    raise ConfigError(f"this request needs {prompt} + {max_tokens} output = {prompt_tokens + max_tokens} tokens, "
                      f"more than the model's context of {limit.tokens} tokens ({limit.source}): the engine refuses "
                      "it", where=where,
                      fix=f"shorten the prompt or lower max_tokens: prompt + output tokens at most {limit.tokens}")


def default_tokenizer_path(model: str) -> Path:
    """The served model's tokenizer.json: the local model folder (as the local graph mounts it)."""
    candidate = pvc_root() / "model-nfs-pvc" / model / "tokenizer.json"
    if candidate.is_file():
        return candidate
    if model == modeldir.SERVED_MODEL_NAME:
        return modeldir.ensure_model_dir() / "tokenizer.json"  # the same small tokenizer the local graph uses
    raise ConfigError(f"no tokenizer.json for model {model!r} (looked in {candidate.parent})",
                      where="LoadSpec.tokenizer", fix="pass LoadSpec(tokenizer='/path/to/tokenizer.json')")


def _prompt_tokens(model: str, prompt: str | list[dict]) -> int | None:
    """Tokens of the prompt's text with the model's tokenizer (the local model folder's, which the local frontend
    uses; the chat template adds a few more). None when no tokenizer is at hand."""
    text = prompt if isinstance(prompt, str) else "".join(str(m.get("content", "")) for m in prompt)
    try:
        path = default_tokenizer_path(model)
    except ConfigError:
        return None
    return len(_tokenizer(str(path)).encode(text, add_special_tokens=False).ids)


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def refuse_beyond_context(model: str, prompt: str | list[dict], max_tokens: int, limit: ContextLimit | None,
                          where: str = "prompt / max_tokens") -> None:
    """Refuse a chat request beyond ``limit`` (default: the model's own context), counting the prompt's tokens
    only when its bytes could exceed it."""
    limit = limit or engine_config.context_limit(None, model)
    if limit is None:
        return
    text = prompt if isinstance(prompt, str) else "".join(str(m.get("content", "")) for m in prompt)
    if len(text.encode()) + max_tokens <= limit.tokens:
        return  # a token is at least one byte: it fits, no need to count
    tokens = _prompt_tokens(model, prompt)
    check_context(tokens or 0, max_tokens, limit, where=where, at_least=tokens is not None)


def chat_completion(base_url: str, model: str, prompt: str | list[dict], *, max_tokens: int = 32,
                    timeout_s: float = 60.0, ignore_eos: bool = False,
                    context_limit: ContextLimit | None = None) -> dict:
    """One unary chat completion, validated. A request beyond ``context_limit`` (default: the model's own
    context) is refused before it is sent."""
    refuse_beyond_context(model, prompt, max_tokens, context_limit)
    url = f"{base_url}/v1/chat/completions"
    try:
        response = httpx.post(url, json=_request(model, prompt, max_tokens, False, ignore_eos), timeout=timeout_s)
    except httpx.TimeoutException:
        raise InferenceError(f"no answer from {url} within {timeout_s:.0f} s", where=url,
                             fix="workers overloaded or stuck? `gtcdemo status` and `gtcdemo logs`") from None
    except httpx.HTTPError as exc:
        raise InferenceError(f"cannot reach the frontend at {url}: {exc}", where=url,
                             fix="is the graph up? `gtcdemo status` (cluster: is the port-forward alive?)") from None
    _raise_for(response, url)
    return validate_chat_completion(_json(response, url))


def _json(response: httpx.Response, url: str) -> Any:
    """The body as JSON; a body that is not JSON is an InferenceError quoting its start."""
    try:
        return response.json()
    except ValueError:
        raise InferenceError(f"{url} answered HTTP {response.status_code} with a body that is not JSON: "
                             f"{response.text[:200]!r}", where=url,
                             fix="is this the Dynamo frontend's address? check `gtcdemo status` and `gtcdemo logs`"
                             ) from None


def _chunk(event: ServerSentEvent, url: str) -> dict | None:
    """One server-sent event as a chat chunk; None when it carries none (``[DONE]``, an event without data).

    An error event, or data that is not a JSON object, is an InferenceError quoting what the server sent. Dynamo
    writes an error's text as an SSE comment (``Event::default().event("error").comment(..)``, lib/llm/src/http/
    service/disconnect.rs), which SSE readers drop by the spec: then the message says so and the logs tell the cause.
    """
    fix = "the cause is in the worker and frontend logs: `gtcdemo logs`"
    if event.event == "error":
        said = f": {event.data[:300]}" if event.data else " without data (Dynamo writes the text as an SSE comment)"
        raise InferenceError(f"the server sent an error event in the stream{said}", where=url, fix=fix)
    if not event.data or event.data == "[DONE]":
        return None
    try:
        chunk = event.json()
    except ValueError as exc:
        raise InferenceError(f"the stream carried data that is not JSON ({exc}): {event.data[:200]!r}",
                             where=url, fix=fix) from None
    if not isinstance(chunk, dict):
        raise InferenceError(f"the stream carried data that is not a JSON object: {event.data[:200]!r}",
                             where=url, fix=fix)
    if chunk.get("error"):  # an OpenAI-style error object, sent without ``event: error``
        raise InferenceError(f"the server sent an error in the stream: {event.data[:300]}", where=url, fix=fix)
    return chunk


@dataclass
class StreamResult:
    """A streamed completion with the client-side timings of AIPerf."""

    text: str
    ttft_s: float
    latency_s: float
    output_tokens: int
    prompt_tokens: int
    cached_tokens: int
    finish_reason: str | None
    chunk_times_s: list[float] = field(default_factory=list, repr=False)

    @property
    def itl_s(self) -> float | None:
        """(latency - TTFT) / (output tokens - 1): AIPerf's per-request inter-token latency."""
        if self.output_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)

    def summary(self) -> dict:
        return {"ttft_ms": round(self.ttft_s * 1000, 1), "itl_ms": round((self.itl_s or 0) * 1000, 2),
                "latency_ms": round(self.latency_s * 1000, 1), "output_tokens": self.output_tokens,
                "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens}

    def _repr_html_(self) -> str:
        s = self.summary()
        return (f"<blockquote>{html.escape(self.text)}</blockquote><p>TTFT <b>{s['ttft_ms']} ms</b> · "
                f"ITL <b>{s['itl_ms']} ms</b> · {s['output_tokens']} tokens in {s['latency_ms']} ms</p>")


def stream_chat(base_url: str, model: str, prompt: str | list[dict], *, max_tokens: int = 32,
                timeout_s: float = 60.0, ignore_eos: bool = False,
                on_text: Callable[[str], None] | None = None, client: httpx.Client | None = None,
                context_limit: ContextLimit | None = None) -> StreamResult:
    """One streaming chat completion; ``on_text`` sees each piece of text as it arrives.

    With ``client`` the request reuses its kept-alive connection; without, it opens a new one. A request beyond
    ``context_limit`` (default: the model's own context) is refused before it is sent.
    """
    refuse_beyond_context(model, prompt, max_tokens, context_limit)
    url = f"{base_url}/v1/chat/completions"
    pieces: list[str] = []
    chunk_times: list[float] = []
    usage: dict = {}
    finish = None
    ttft = None
    start = time.perf_counter()
    try:
        with (client or httpx).stream("POST", url, json=_request(model, prompt, max_tokens, True, ignore_eos),
                          timeout=timeout_s) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response, url)
            for event in EventSource(response).iter_sse():  # read to the end: a kept-alive connection is reusable
                chunk = _chunk(event, url)
                if chunk is None:
                    continue
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter() - start
                        ttft = now if ttft is None else ttft
                        chunk_times.append(now)
                        pieces.append(content)
                        if on_text:
                            on_text(content)
                    finish = choice.get("finish_reason") or finish
    except SSEError as exc:  # an httpx.TransportError: before the generic branch below
        raise InferenceError(f"{url} did not answer with an event stream: {exc}", where=url,
                             fix="is this the Dynamo frontend's address? check `gtcdemo status`") from None
    except httpx.TimeoutException:
        raise InferenceError(f"stream from {url} stalled for {timeout_s:.0f} s", where=url,
                             fix="check `gtcdemo status` and `gtcdemo logs`") from None
    except httpx.HTTPError as exc:
        raise InferenceError(f"cannot reach the frontend at {url}: {exc}", where=url,
                             fix="is the graph up? `gtcdemo status`") from None
    latency = time.perf_counter() - start
    if ttft is None:
        raise InferenceError("the stream carried no content", where=url, fix="check `gtcdemo logs` of the workers")
    return StreamResult(
        text="".join(pieces), ttft_s=ttft, latency_s=latency,
        output_tokens=int(usage.get("completion_tokens", len(pieces))),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        finish_reason=finish, chunk_times_s=chunk_times)


def wait_for_model(base_url: str, model: str, timeout_s: float = 60.0) -> list[str]:
    """Until ``model`` is listed AND answers a completion (it can be listed before it is routable)."""
    deadline = Deadline(timeout_s)
    while True:
        try:
            models = list_models(base_url)
            if model in models:
                chat_completion(base_url, model, "ping", max_tokens=1, timeout_s=10)
                return models
            last: Exception = InferenceError(f"{model} not listed yet (listed: {models})")
        except InferenceError as exc:
            last = exc
        if not deadline.sleep(0.5):
            raise InferenceError(f"{model} did not become available within {timeout_s:.0f} s: {last}",
                                 where=base_url,
                                 fix="check that the workers registered: `gtcdemo status` and `gtcdemo logs`")


def list_models(base_url: str, timeout_s: float = 5.0) -> list[str]:
    try:
        response = httpx.get(f"{base_url}/v1/models", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise InferenceError(f"cannot reach the frontend at {base_url}: {exc}", where=base_url,
                             fix="is the graph up? `gtcdemo status`") from None
    _raise_for(response, base_url)
    return [m["id"] for m in _json(response, base_url).get("data", [])]
