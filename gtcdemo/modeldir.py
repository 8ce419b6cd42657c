"""The model directory the mocker needs: Llama-3.1-8B geometry and a small tokenizer made here.

The real Llama tokenizer is gated and cannot be downloaded on this machine, and the mocker only needs a
tokenizer (to count and detokenise tokens) and ``config.json`` (to size the KV cache). So the package trains a
small byte-level BPE tokenizer from text it ships and writes the 8B model's real geometry, which keeps KV block
sizes and cache capacity realistic. The generated text is meaningless; timings and metrics are real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SERVED_MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct"
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
VOCAB_SIZE = 4096
# Bumped whenever the files written below change, so stale directories are rebuilt.
FORMAT_VERSION = "2"

# Llama-3.1-8B-Instruct's config.json, less the vocabulary (sized to the local tokenizer so every token the
# mocker emits can be decoded). 32 layers x 8 KV heads x head_dim 128 x bf16 = 128 KiB of KV per token.
LLAMA_31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": [1, 4],
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": VOCAB_SIZE,
}

# Llama 3's chat template, shortened to the parts a chat completion uses (system, user, assistant turns).
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def kv_bytes_per_token(config: dict = LLAMA_31_8B_CONFIG) -> int:
    """Bytes of KV cache one token occupies (K and V, every layer, bf16)."""
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * config["head_dim"] * 2


def _training_corpus() -> list[str]:
    """Docstrings shipped with Python: deterministic, English-like and available offline."""
    import importlib

    corpus = [
        "the model serves requests with prefill and decode workers on separate GPUs; time to first token "
        "and throughput are measured by the frontend and scraped by Prometheus. Kubernetes schedules pods."
    ]
    for module_name in ("json", "pathlib", "argparse", "subprocess", "asyncio", "collections", "logging"):
        module = importlib.import_module(module_name)
        for value in [module, *(getattr(module, name) for name in dir(module) if not name.startswith("_"))]:
            doc = getattr(value, "__doc__", None)
            if isinstance(doc, str) and doc.strip():
                corpus.append(doc)
    return corpus


def default_model_dir() -> Path:
    """Where the model directory lives: shared by every deployment on this machine."""
    cache = Path(os.environ.get("GTCDEMO_CACHE", Path.home() / ".cache" / "gtcdemo"))
    return cache / "model" / SERVED_MODEL_NAME.replace("/", "--")


def pvc_root() -> Path:
    """Local stand-ins for the cluster's PVCs, shared by all deployments (the model folder is made once)."""
    return default_model_dir().parents[1] / "pvc"


def ensure_model_dir(path: Path | None = None) -> Path:
    """Create (once) the tokenizer + config directory the mocker loads; return its path."""
    path = path or default_model_dir()
    stamp = path / ".gtcdemo-format"
    if stamp.exists() and stamp.read_text() == FORMAT_VERSION:
        return path
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    config = dict(LLAMA_31_8B_CONFIG, vocab_size=tokenizer.get_vocab_size())

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(tmp / "tokenizer.json"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|begin_of_text|>",
                "eos_token": "<|eot_id|>",
                "chat_template": CHAT_TEMPLATE,
                "model_max_length": 131072,
                "tokenizer_class": "PreTrainedTokenizerFast",
                "clean_up_tokenization_spaces": True,
            },
            indent=2,
        )
    )
    (tmp / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": [1, 4], "do_sample": True}, indent=2)
    )
    (tmp / ".gtcdemo-format").write_text(FORMAT_VERSION)
    # Swap in atomically so a concurrent reader never sees half a directory.
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path
