"""TRT-LLM engine configs (``engine-configs/<env>/<role>.yaml``): load, validate, compare.

Validation happens before anything runs or is applied, and reports every problem at once with the file, the
key path and the fix, so a typo is caught at the desk rather than as a crash-looping pod on stage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import modeldir, project
from .errors import ConfigError, ValidationErrors
from .files import read_text, shown

REQUIRED_ROLES = ("prefill", "decode")  # a disaggregated env: one config per worker role
# An aggregated env (every worker runs prefill and decode) has this one config instead of REQUIRED_ROLES.
AGGREGATED_ROLE = "agg"
PARALLELISM_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "moe_expert_parallel_size",
                    "enable_attention_dp")

Check = Callable[[Any], str | None]


def _int(minimum: int = 1) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {type(value).__name__} {value!r}"
        return None if value >= minimum else f"must be >= {minimum}, got {value}"
    return check


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _fraction(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {type(value).__name__} {value!r}"
    return None if 0 < value <= 1 else f"must be in (0, 1], got {value}"


def _choice(*options: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}, got {value!r}"
    return check


def _int_list(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    return None if ok else f"must be a list of integers >= 1, got {value!r}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"


# The keys this project knows (those engine-configs/dev/ sets, plus common TRT-LLM LlmArgs a tuner reaches for). A
# key outside this table is far more often a typo than a new option; add it here when it is real.
SCHEMA: dict[str, Any] = {
    "tensor_parallel_size": _int(),
    "pipeline_parallel_size": _int(),
    "moe_expert_parallel_size": _int(),
    "enable_attention_dp": _bool,
    "max_num_tokens": _int(),
    "max_batch_size": _int(),
    "max_seq_len": _int(),
    "max_input_len": _int(),
    "trust_remote_code": _bool,
    "backend": _choice("pytorch", "_autodeploy"),
    "enable_chunked_prefill": _bool,
    "disable_overlap_scheduler": _bool,
    "print_iter_log": _bool,
    "kv_cache_config": {
        "free_gpu_memory_fraction": _fraction,
        "enable_block_reuse": _bool,
        "max_tokens": _int(),
        "dtype": _choice("auto", "fp8", "bfloat16", "float16"),
        "tokens_per_block": _int(),
    },
    "cuda_graph_config": {
        "max_batch_size": _int(),
        "batch_sizes": _int_list,
        "enable_padding": _bool,
    },
    "cache_transceiver_config": {
        "backend": _choice("DEFAULT", "UCX", "NIXL", "MPI"),
        "max_tokens_in_buffer": _int(),
    },
    "scheduler_config": {
        "capacity_scheduler_policy": _choice("GUARANTEED_NO_EVICT", "MAX_UTILIZATION", "STATIC_BATCH"),
        "context_chunking_policy": _choice("FIRST_COME_FIRST_SERVED", "EQUAL_PROGRESS"),
    },
    "model": _string,
}


@dataclass(frozen=True)
class EngineConfig:
    """One role's engine config: its file, raw text (what the ConfigMap carries) and parsed values."""

    role: str
    path: Path
    text: str
    values: dict[str, Any]

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _where(path: Path, key: str) -> str:
    return f"{shown(path)}: {key}" if key else shown(path)


def _walk(values: dict, schema: dict, path: Path, prefix: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            near = difflib.get_close_matches(str(key), list(schema), n=1)
            fix = f"did you mean {prefix + near[0]!r}?" if near else f"remove it; known keys: {', '.join(schema)}"
            errors.append(ConfigError(f"unknown key {dotted!r}", where=_where(path, dotted), fix=fix))
            continue
        rule = schema[key]
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                errors.append(ConfigError(f"must be a mapping, got {value!r}", where=_where(path, dotted),
                                          fix=f"write {dotted} as a nested block of keys: {', '.join(rule)}"))
            else:
                errors.extend(_walk(value, rule, path, dotted + "."))
        elif (problem := rule(value)) is not None:
            errors.append(ConfigError(problem, where=_where(path, dotted),
                                      fix=f"change {dotted}: it {problem.split(', got')[0]}"))
    return errors


def validate_values(values: dict, path: Path) -> list[ConfigError]:
    """Problems in one parsed engine config (empty list when valid)."""
    errors = _walk(values, SCHEMA, path, "")
    cuda_max = values.get("cuda_graph_config", {}).get("max_batch_size") if isinstance(
        values.get("cuda_graph_config"), dict) else None
    batch = values.get("max_batch_size")
    if isinstance(cuda_max, int) and isinstance(batch, int) and not errors and cuda_max > batch:
        errors.append(ConfigError(
            f"cuda_graph_config.max_batch_size ({cuda_max}) exceeds max_batch_size ({batch})",
            where=_where(path, "cuda_graph_config.max_batch_size"),
            fix=f"lower it to at most {batch}, or raise max_batch_size"))
    if path.stem != AGGREGATED_ROLE and "cache_transceiver_config" not in values:  # no hand-over when aggregated
        errors.append(ConfigError(
            "missing cache_transceiver_config: disaggregated workers cannot hand KV cache over without it",
            where=_where(path, "cache_transceiver_config"),
            fix="add `cache_transceiver_config: {backend: DEFAULT}`"))
    return errors


# -- YAML and TOML with every key once -------------------------------------------------------------------------
class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice: PyYAML would keep the second value and drop the first silently."""

    def __init__(self, key: Any, path: str, first_line: int, second_line: int) -> None:
        self.key, self.path, self.first_line, self.second_line = key, path, first_line, second_line
        super().__init__(f"key {key!r} is written twice in one mapping (lines {first_line} and {second_line})")

    def config_error(self, where: str) -> ConfigError:
        return ConfigError(f"{self}: YAML would keep only the second value, silently", where=where,
                           fix=f"keep one of the two lines (line {self.first_line} or {self.second_line})")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (a merge key `<<` may still be overridden)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._document = node  # to name the key path of a duplicate
        self._duplicates: list[DuplicateKeyError] = []
        data = super().construct_document(node)
        if self._duplicates:  # the one a reader meets first, whatever order the mappings were built in
            raise min(self._duplicates, key=lambda d: (d.second_line, d.first_line))
        return data

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
            self.flatten_mapping(node)  # puts the merged keys first; the mapping's own keys may override them
            seen: dict[Any, int] = {}
            for key_node, _ in node.value[len(node.value) - own:]:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool):
                    continue
                if key in seen:
                    path = ".".join([*self._path_to(node), str(key)]).replace(".[", "[")
                    self._duplicates.append(DuplicateKeyError(key, path, seen[key], key_node.start_mark.line + 1))
                else:
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def _path_to(self, target: yaml.Node) -> list[str]:
        def walk(node: yaml.Node, path: list[str]) -> list[str] | None:
            if node is target:
                return path
            if isinstance(node, yaml.MappingNode):
                children = [(str(k.value), v) for k, v in node.value]
            elif isinstance(node, yaml.SequenceNode):
                children = [(f"[{i}]", v) for i, v in enumerate(node.value)]
            else:
                return None
            for name, child in children:
                if (found := walk(child, [*path, name])) is not None:
                    return found
            return None
        return walk(getattr(self, "_document", target), []) or []


def load_yaml(text: str) -> Any:
    """yaml.safe_load, refusing duplicate keys (DuplicateKeyError, a yaml.YAMLError)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(text: str) -> list[Any]:
    """yaml.safe_load_all, refusing duplicate keys."""
    return list(yaml.load_all(text, Loader=UniqueKeyLoader))  # noqa: S506 - a SafeLoader subclass


_TOML_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_.-]+|\"[^\"]*\"|'[^']*')\s*=")


def duplicate_toml_keys(text: str) -> list[tuple[str, int, int]]:
    """(key, first line, second line) of each key a flat TOML file sets twice in one table.

    tomllib refuses such a file but names only the second line ("Cannot overwrite a value (at line N ...)"); this
    finds the first one too. Covers ``key = value`` lines and ``[table]`` headers (what cluster.toml uses)."""
    seen: dict[str, int] = {}
    out = []
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _TOML_TABLE.match(line):
            table = header.group(1).strip() + "."
            continue
        if key := _TOML_KEY.match(line):
            name = table + key.group(1).strip("\"'")
            if name in seen:
                out.append((name, seen[name], number))
            else:
                seen[name] = number
    return out


def parse(path: Path, role: str) -> EngineConfig:
    """Read one engine config file, turning YAML syntax errors and duplicate keys into located ConfigErrors."""
    text = read_text(path, where=_where(path, ""))
    try:
        values = load_yaml(text)
    except DuplicateKeyError as exc:
        raise exc.config_error(_where(path, exc.path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"YAML syntax error{line}: {getattr(exc, 'problem', exc)}", where=_where(path, ""),
                          fix="fix the YAML (indentation with spaces, `key: value`)") from None
    if not isinstance(values, dict) or not values:
        raise ConfigError("the file is empty or not a YAML mapping", where=_where(path, ""),
                          fix="write the TRT-LLM engine options as `key: value` lines (see engine-configs/dev/)")
    return EngineConfig(role=role, path=path, text=text, values=values)


def load(env: str, directory: Path | None = None) -> dict[str, EngineConfig]:
    """Load and validate every engine config of ``env``; raise ValidationErrors listing all problems."""
    directory = directory or project.ENGINE_CONFIGS / project.check_env(env)
    errors: list[ConfigError] = []
    configs: dict[str, EngineConfig] = {}
    for role in () if (directory / f"{AGGREGATED_ROLE}.yaml").is_file() else REQUIRED_ROLES:
        if not (directory / f"{role}.yaml").is_file():
            errors.append(ConfigError(f"missing {role}.yaml", where=_where(directory, ""),
                                      fix=f"create {role}.yaml (copy engine-configs/dev/{role}.yaml as a start)"))
    for path in sorted(directory.glob("*.yaml")):
        try:
            config = parse(path, path.stem)
        except ConfigError as exc:
            errors.append(exc)
            continue
        errors.extend(validate_values(config.values, path))
        configs[config.role] = config
    if not errors and {"prefill", "decode"} <= configs.keys():
        prefill, decode = configs["prefill"], configs["decode"]
        for key in PARALLELISM_KEYS:
            if prefill.get(key) != decode.get(key):
                errors.append(ConfigError(
                    f"prefill has {key}={prefill.get(key)!r} but decode has {decode.get(key)!r}",
                    where=_where(decode.path, key),
                    fix=f"set the same {key} in prefill.yaml and decode.yaml (KV cache layouts must match)"))
    if errors:
        raise ValidationErrors(errors)
    return configs


@dataclass(frozen=True)
class ContextLimit:
    """The most tokens (prompt + output) one request may use, and where that number comes from."""

    tokens: int
    source: str


def context_limit(configs: dict[str, EngineConfig] | None, model: str) -> ContextLimit | None:
    """The context the engine enforces: the smallest ``max_seq_len`` of the engine configs (a request passes
    through prefill and decode), else the model's ``max_position_embeddings``, TRT-LLM's default for
    max_seq_len (the model folder's config.json: Llama-3.1-8B's geometry, gtcdemo/modeldir.py). None when
    neither is known (another model)."""
    limits = [(cfg.get("max_seq_len"), cfg.path) for cfg in (configs or {}).values()
              if isinstance(cfg.get("max_seq_len"), int)]
    if limits:
        tokens, path = min(limits, key=lambda item: item[0])
        return ContextLimit(tokens, f"max_seq_len in {_where(path, '')}")
    if model == modeldir.SERVED_MODEL_NAME:
        return ContextLimit(modeldir.LLAMA_31_8B_CONFIG["max_position_embeddings"],
                            f"max_position_embeddings of {model}, TRT-LLM's max_seq_len when the engine config sets "
                            "none")
    return None


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def side_by_side(configs: dict[str, EngineConfig]) -> pd.DataFrame:
    """One row per key path, one column per role, plus whether the roles differ."""
    flat = {role: _flatten(cfg.values) for role, cfg in configs.items()}
    keys = list(dict.fromkeys(k for values in flat.values() for k in values))
    frame = pd.DataFrame({role: [values.get(k, "—") for k in keys] for role, values in flat.items()}, index=keys)
    frame.index.name = "key"
    frame["differs"] = frame.astype(str).nunique(axis=1) > 1
    return frame


def highlight_differences(frame: pd.DataFrame) -> Any:
    """A pandas Styler that highlights the rows where the roles differ (for notebooks)."""
    def colour(row: pd.Series) -> list[str]:
        style = "background-color: #fff3b0; font-weight: bold" if row["differs"] else ""
        return [style] * len(row)
    return frame.style.apply(colour, axis=1)
