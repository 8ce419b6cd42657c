"""Synthetic prompts of an exact token length, reproducible from (seed, phase, index)."""

from __future__ import annotations

import functools
import json
import math
import random
from pathlib import Path

from ..errors import ConfigError
from ..inference import default_tokenizer_path
from .spec import LoadSpec


@functools.lru_cache(maxsize=4)
def single_token_words(tokenizer_path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Words that are exactly one token after a space, and those that are one token also at the start of a text.

    A text made of such words is exactly as many tokens as words, so prompt lengths are exact without encoding
    each prompt. Sorted, so the same seed gives the same prompts on every machine.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    pieces = tok.decode_batch([[i] for i in range(tok.get_vocab_size())], skip_special_tokens=True)
    candidates = sorted({p[1:] for p in pieces if len(p) >= 3 and p[0] == " " and p[1:].isascii()
                         and p[1:].isalpha()})
    spaced = [w for w, e in zip(candidates, tok.encode_batch([" " + w for w in candidates],
                                                             add_special_tokens=False), strict=True)
              if len(e.ids) == 1]
    first = [w for w, e in zip(spaced, tok.encode_batch(spaced, add_special_tokens=False), strict=True)
             if len(e.ids) == 1]
    if len(spaced) < 50 or not first:
        raise ConfigError(f"{tokenizer_path} has too few whole-word tokens ({len(spaced)}) to build prompts from",
                          where="LoadSpec.tokenizer", fix="pass the served model's own tokenizer.json")
    return tuple(spaced), tuple(first)


class PromptSource:
    """Request bodies with prompts of a given token length, reproducible from (seed, phase, index).

    With ``shared_prefix_fraction`` f, the first f of each prompt's tokens is a system prompt cut from one long
    shared text (so every request shares it, block for block); the rest is a user message unique to the request.
    """

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        path = spec.tokenizer or str(default_tokenizer_path(spec.model))
        if not Path(path).is_file():
            raise ConfigError(f"tokenizer file {path} does not exist", where="LoadSpec.tokenizer",
                              fix="pass the served model's tokenizer.json, or None for the local model folder's")
        self.words, self.first_words = single_token_words(str(path))
        self.max_len = spec.longest_prompt
        rng = random.Random(f"gtcdemo-load:{spec.seed}:prefix")
        shared_len = int(math.ceil(spec.shared_prefix_fraction * self.max_len))
        self._shared = [rng.choice(self.first_words)] + [" " + w for w in rng.choices(self.words, k=shared_len)]
        self._head = (f'{{"model":{json.dumps(spec.model)},"max_tokens":{spec.output_tokens},"ignore_eos":true,'
                      f'"stream":true,"stream_options":{{"include_usage":true}},"messages":')

    def length(self, rng: random.Random) -> int:
        if self.spec.input_tokens_std == 0:
            return self.spec.input_tokens_mean
        return min(self.max_len, max(1, round(rng.gauss(self.spec.input_tokens_mean, self.spec.input_tokens_std))))

    def messages(self, index: int, phase: str = "run") -> list[dict[str, str]]:
        """The chat messages of request ``index``: their content is exactly the drawn number of tokens."""
        rng = random.Random(f"gtcdemo-load:{self.spec.seed}:{phase}:{index}")
        n = self.length(rng)
        n_shared = min(n, round(self.spec.shared_prefix_fraction * n))
        out = []
        if n_shared:
            out.append({"role": "system", "content": "".join(self._shared[:n_shared])})
        if n - n_shared:
            words = rng.choices(self.words, k=n - n_shared - 1)
            out.append({"role": "user", "content": rng.choice(self.first_words) + "".join(" " + w for w in words)})
        return out

    def body(self, index: int, phase: str = "run") -> bytes:
        """The JSON request body (ignore_eos at the top level: Dynamo 1.6 rejects nvext.ignore_eos)."""
        return (self._head + json.dumps(self.messages(index, phase)) + "}").encode()
