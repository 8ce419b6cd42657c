"""modeldir: the local model directory (Llama-3.1-8B geometry + a small tokenizer with the Llama 3 chat template)."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2.sandbox
import pytest
from tokenizers import Tokenizer

from gtcdemo import modeldir

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return modeldir.ensure_model_dir(tmp_path_factory.mktemp("models") / "m")


@pytest.fixture(scope="module")
def tokenizer(model_dir) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def tokenizer_config(model_dir) -> dict:
    return json.loads((model_dir / "tokenizer_config.json").read_text())


@pytest.fixture(scope="module")
def config(model_dir) -> dict:
    return json.loads((model_dir / "config.json").read_text())


def render(template: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    # The environment transformers uses for chat templates.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, bos_token="<|begin_of_text|>",
                                            add_generation_prompt=add_generation_prompt)


def test_directory_has_the_files_the_mocker_loads(model_dir, tmp_path_factory):
    assert model_dir.name == "m"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / ".gtcdemo-format").read_text() == modeldir.FORMAT_VERSION
    assert not list(model_dir.parent.glob("m.tmp*"))  # the temporary build folder was renamed away


def test_config_has_llama_31_8b_geometry(config):
    assert config["num_hidden_layers"] == 32
    assert config["num_key_value_heads"] == 8
    assert config["head_dim"] == 128
    assert config["torch_dtype"] == "bfloat16"
    assert config["hidden_size"] == 4096
    assert config["num_attention_heads"] == 32
    assert config["hidden_size"] // config["num_attention_heads"] == config["head_dim"]
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["max_position_embeddings"] == 131072


def test_kv_bytes_per_token():
    assert modeldir.kv_bytes_per_token() == 131072
    assert modeldir.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2  # K and V, layers, KV heads, head_dim, bf16 bytes


def test_kv_bytes_per_token_of_the_written_config(config):
    assert modeldir.kv_bytes_per_token(config) == 128 * 1024


def test_vocab_size_matches_the_tokenizer(config, tokenizer):
    assert config["vocab_size"] == tokenizer.get_vocab_size()
    assert 256 < tokenizer.get_vocab_size() <= modeldir.VOCAB_SIZE


def test_special_token_ids_agree_across_files(model_dir, config, tokenizer, tokenizer_config):
    ids = {token: tokenizer.token_to_id(token) for token in SPECIALS}
    assert None not in ids.values(), ids
    assert config["bos_token_id"] == ids["<|begin_of_text|>"]
    assert set(config["eos_token_id"]) == {ids["<|end_of_text|>"], ids["<|eot_id|>"]}
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["bos_token_id"] == config["bos_token_id"]
    assert generation["eos_token_id"] == config["eos_token_id"]
    assert tokenizer_config["bos_token"] == "<|begin_of_text|>"
    assert tokenizer_config["eos_token"] == "<|eot_id|>"


def test_tokenizer_config_has_the_chat_template(tokenizer_config):
    assert tokenizer_config["chat_template"] == modeldir.CHAT_TEMPLATE
    assert "<|start_header_id|>" in tokenizer_config["chat_template"]
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_second_call_does_not_rewrite(model_dir):
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert modeldir.ensure_model_dir(model_dir) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before


def test_stale_format_is_rebuilt(tmp_path):
    path = modeldir.ensure_model_dir(tmp_path / "m")
    (path / ".gtcdemo-format").write_text("0")
    (path / "leftover.txt").write_text("from an older format")
    assert modeldir.ensure_model_dir(path) == path
    assert (path / ".gtcdemo-format").read_text() == modeldir.FORMAT_VERSION
    assert not (path / "leftover.txt").exists()
    assert (path / "tokenizer.json").is_file()


def test_default_model_dir_uses_the_cache_and_model_name(monkeypatch, tmp_path):
    monkeypatch.setenv("GTCDEMO_CACHE", str(tmp_path))
    assert modeldir.default_model_dir() == tmp_path / "model" / "meta-llama--Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("text", [
    "Hello, world!",
    "the model serves requests with prefill and decode workers on separate GPUs",
    "  leading and trailing spaces  \n\tand a tab",
    "naïve café — 世界 🚀",
    "def f(x):\n    return {'a': [1, 2, 3]}\n",
    "",
], ids=["ascii", "corpus-like", "whitespace", "unicode", "code", "empty"])
def test_tokenizer_round_trips_text(tokenizer, text):
    encoding = tokenizer.encode(text)
    assert tokenizer.decode(encoding.ids) == text
    assert all(0 <= i < tokenizer.get_vocab_size() for i in encoding.ids)


def test_tokenizer_compresses_english(tokenizer):
    text = "the model serves requests with prefill and decode workers"
    assert len(tokenizer.encode(text).ids) < len(text.encode()) / 2  # trained merges, not raw bytes


def test_special_tokens_are_single_tokens(tokenizer):
    for token in SPECIALS:
        assert tokenizer.encode(token).ids == [tokenizer.token_to_id(token)]


def test_chat_template_renders_llama3_prompt(tokenizer_config):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  Hi there \n"}]
    prompt = render(tokenizer_config["chat_template"], messages)
    assert prompt == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    no_prompt = render(tokenizer_config["chat_template"], messages, add_generation_prompt=False)
    assert no_prompt.endswith("Hi there<|eot_id|>")


def test_rendered_chat_tokenizes_to_llama3_header_tokens(tokenizer, tokenizer_config):
    prompt = render(tokenizer_config["chat_template"], [{"role": "user", "content": "What is TTFT?"}])
    encoding = tokenizer.encode(prompt)
    tokens, ids = encoding.tokens, encoding.ids
    token_id = tokenizer.token_to_id
    assert ids[0] == token_id("<|begin_of_text|>")
    assert ids[1] == token_id("<|start_header_id|>")
    assert tokens.count("<|start_header_id|>") == 2  # user + assistant
    assert tokens.count("<|end_header_id|>") == 2
    assert tokens.count("<|eot_id|>") == 1
    # The assistant header closes the prompt.
    last_header = len(ids) - 1 - ids[::-1].index(token_id("<|start_header_id|>"))
    assert tokenizer.decode(ids[last_header:], skip_special_tokens=False) == \
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert tokenizer.decode(ids, skip_special_tokens=False) == prompt
    assert tokenizer.decode(ids) == "user\n\nWhat is TTFT?assistant\n\n"  # special tokens skipped by default
