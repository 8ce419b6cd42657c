"""What load to offer (``LoadSpec``), checked so that a bad spec fails before anything is sent."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from .. import engine_config
from ..engine_config import ContextLimit
from ..errors import ConfigError, ValidationErrors
from ..inference import check_context as check_request

CONNECTION_REUSE = ("pooled", "never")  # AIPerf's --connection-reuse-strategy names


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer: closed loop (``concurrency``) or open loop (``request_rate``), and what prompts.

    Stops at ``num_requests`` or ``duration_s``, whichever comes first (requests in flight at the deadline are
    finished). ``warmup_requests`` run first, closed loop at the same concurrency (an open loop's
    ``max_concurrency``, else 1), and are excluded from the results.
    """

    model: str
    concurrency: int | None = None
    request_rate: float | None = None
    max_concurrency: int | None = None
    duration_s: float | None = None
    num_requests: int | None = None
    warmup_requests: int = 0
    input_tokens_mean: int = 200
    input_tokens_std: float = 0.0
    output_tokens: int = 32
    shared_prefix_fraction: float = 0.0
    seed: int = 0
    timeout_s: float = 60.0
    slo_ttft_ms: float | None = None
    slo_itl_ms: float | None = None
    tokenizer: str | None = None  # tokenizer.json; default: the served model's, in the local model folder
    connection_reuse: str = "pooled"  # AIPerf's: "pooled" (kept alive) or "never" (a new connection per request)

    def __post_init__(self) -> None:
        # Checked here, not with pydantic: its model-level checks run only once every field has passed, so
        # LoadSpec("", concurrency=0) could not also say that num_requests is missing, and its own messages name
        # neither the fix nor the value to pass (each would need our text again, in a table: no shorter).
        errors = [ConfigError(problem, where="LoadSpec", fix=fix) for problem, fix in self._problems()]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ValidationErrors(errors)

    def _problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not isinstance(self.model, str) or not self.model:
            out.append((f"model must be the served model name, got {self.model!r}",
                        "use the target's bundle.served_model_name (see `gtcdemo models`)"))
        if self.concurrency is None and self.request_rate is None:
            out.append(("give concurrency (closed loop) or request_rate (open loop)",
                        "e.g. LoadSpec(model, concurrency=4, num_requests=100)"))
        if self.concurrency is not None and self.request_rate is not None:
            out.append(("concurrency and request_rate exclude each other",
                        "closed loop: concurrency only; open loop: request_rate (cap it with max_concurrency)"))
        if self.concurrency is not None and not (_is_int(self.concurrency) and self.concurrency >= 1):
            out.append((f"concurrency must be >= 1 (a whole number of requests in flight), got {self.concurrency!r}",
                        "pass e.g. concurrency=1 for the unloaded latency, or more to load the server"))
        if self.request_rate is not None and not (_is_number(self.request_rate) and self.request_rate > 0):
            out.append((f"request_rate must be > 0 requests per second, got {self.request_rate!r}",
                        "pass e.g. request_rate=2.0"))
        if self.max_concurrency is not None:
            if self.request_rate is None:
                out.append(("max_concurrency only caps an open loop (request_rate)",
                            "for a closed loop set concurrency instead"))
            elif not (_is_int(self.max_concurrency) and self.max_concurrency >= 1):
                out.append((f"max_concurrency must be >= 1, got {self.max_concurrency!r}",
                            "pass a whole number, or None for no cap"))
        if self.duration_s is None and self.num_requests is None:
            out.append(("give num_requests or duration_s (or both: the run stops at whichever comes first)",
                        "e.g. num_requests=100 or duration_s=30"))
        if self.duration_s is not None and not (_is_number(self.duration_s) and self.duration_s > 0):
            out.append((f"duration_s must be > 0 s, got {self.duration_s!r}", "pass e.g. duration_s=30"))
        if self.num_requests is not None and not (_is_int(self.num_requests) and self.num_requests >= 1):
            out.append((f"num_requests must be >= 1, got {self.num_requests!r}", "pass e.g. num_requests=100"))
        if not (_is_int(self.warmup_requests) and self.warmup_requests >= 0):
            out.append((f"warmup_requests must be >= 0, got {self.warmup_requests!r}", "pass 0 for no warm-up"))
        if not (_is_int(self.input_tokens_mean) and self.input_tokens_mean >= 1):
            out.append((f"input_tokens_mean must be >= 1 token, got {self.input_tokens_mean!r}",
                        "pass e.g. input_tokens_mean=200"))
        if not (_is_number(self.input_tokens_std) and self.input_tokens_std >= 0):
            out.append((f"input_tokens_std must be >= 0, got {self.input_tokens_std!r}",
                        "pass 0 for prompts of exactly input_tokens_mean tokens"))
        if not (_is_int(self.output_tokens) and self.output_tokens >= 1):
            out.append((f"output_tokens must be >= 1, got {self.output_tokens!r}",
                        "pass e.g. output_tokens=32 (sent as max_tokens with ignore_eos)"))
        if not (_is_number(self.shared_prefix_fraction) and 0 <= self.shared_prefix_fraction <= 1):
            out.append((f"shared_prefix_fraction must be between 0 and 1, got {self.shared_prefix_fraction!r}",
                        "0 = every prompt unique; 0.5 = the first half of every prompt is one shared system prompt"))
        if not _is_int(self.seed):
            out.append((f"seed must be a whole number, got {self.seed!r}", "pass e.g. seed=0"))
        if not (_is_number(self.timeout_s) and self.timeout_s > 0):
            out.append((f"timeout_s must be > 0 s, got {self.timeout_s!r}", "pass e.g. timeout_s=60"))
        for name in ("slo_ttft_ms", "slo_itl_ms"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                out.append((f"{name} must be > 0 ms or None, got {value!r}", f"pass e.g. {name}=100"))
        if self.connection_reuse not in CONNECTION_REUSE:
            out.append((f"connection_reuse must be 'pooled' or 'never', got {self.connection_reuse!r}",
                        "'pooled' keeps connections alive (AIPerf's default); 'never' opens one per request"))
        if self.tokenizer is not None and not isinstance(self.tokenizer, str | Path):
            out.append((f"tokenizer must be the path of a tokenizer.json, got {self.tokenizer!r}",
                        "pass the model's tokenizer.json, or None for the local model folder's"))
        return out

    @property
    def mode(self) -> str:
        """``closed`` (fixed concurrency) or ``open`` (request rate)."""
        return "closed" if self.concurrency is not None else "open"

    @property
    def level(self) -> float:
        """The load level a sweep varies: the concurrency, or the request rate."""
        return float(self.concurrency if self.concurrency is not None else self.request_rate)  # type: ignore[arg-type]

    @property
    def longest_prompt(self) -> int:
        """The most prompt tokens a request can draw: the mean + 5 standard deviations (``PromptSource`` caps there)."""
        return max(1, int(math.ceil(self.input_tokens_mean + 5 * self.input_tokens_std)))

    @property
    def in_flight_limit(self) -> int | None:
        """Most requests in flight at once (None: an uncapped open loop)."""
        return self.concurrency if self.concurrency is not None else self.max_concurrency

    def label(self) -> str:
        new = ", new connection per request" if self.connection_reuse == "never" else ""
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}{new}"
        cap = f", max {self.max_concurrency} in flight" if self.max_concurrency else ""
        return f"rate {self.request_rate:g}/s{cap}{new}"

    def at_level(self, level: float) -> LoadSpec:
        """The same spec at another concurrency (closed loop) or request rate (open loop)."""
        if self.concurrency is not None:
            if not (isinstance(level, numbers.Real) and float(level).is_integer()):
                raise ConfigError(f"concurrency must be >= 1 (a whole number), got sweep level {level!r}",
                                  where="sweep levels", fix="use whole numbers for a closed-loop sweep")
            return dataclasses.replace(self, concurrency=int(level))
        if not isinstance(level, numbers.Real):
            raise ConfigError(f"request_rate must be > 0 requests per second, got sweep level {level!r}",
                              where="sweep levels", fix="use numbers for an open-loop sweep")
        return dataclasses.replace(self, request_rate=float(level))


def check_context(spec: LoadSpec, limit: ContextLimit | None = None,
                  where: str = "LoadSpec.input_tokens_mean") -> None:
    """Refuse, before anything is sent, a spec whose longest prompt + output exceeds the model's context (``limit``;
    default the model's own), which the engine would refuse request by request."""
    limit = limit or engine_config.context_limit(None, spec.model)
    check_request(spec.longest_prompt, spec.output_tokens, limit, where)
