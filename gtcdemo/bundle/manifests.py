"""The YAML files of ``manifests/<env>/``: read (every key once, every document an object) and written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .. import engine_config
from ..errors import ConfigError
from ..files import read_text, shown
from .schema import DGD_KIND


class _LiteralDumper(yaml.SafeDumper):
    """Dump multi-line strings as `|` blocks so the generated ConfigMap reads like the engine configs."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _str_presenter)


def dump_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_LiteralDumper, sort_keys=False, default_flow_style=False, width=120)


def read_manifests(directory: Path) -> list[tuple[Path, dict]]:
    """Every document of the folder's ``*.yaml`` / ``*.yml`` files with its file, in file-name order."""
    docs: list[tuple[Path, dict]] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        text = read_text(path)
        try:
            loaded = [d for d in engine_config.load_yaml_all(text) if d is not None]
        except engine_config.DuplicateKeyError as exc:
            raise exc.config_error(f"{shown(path)}: {exc.path}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"YAML syntax error{line}: {getattr(exc, 'problem', exc)}", where=shown(path),
                              fix="fix the YAML syntax") from None
        for d in loaded:
            if not isinstance(d, dict):
                raise ConfigError(f"a document is a {type(d).__name__}, not a Kubernetes object", where=path.name,
                                  fix="each YAML document must be a mapping with apiVersion, kind and metadata")
        kinds = [d.get("kind") for d in loaded]
        if kinds.count(DGD_KIND) > 1:
            raise ConfigError(f"{kinds.count(DGD_KIND)} DynamoGraphDeployments in one file", where=str(path.name),
                              fix="keep exactly one DGD per env (one file per DGD)")
        docs.extend((path, d) for d in loaded)
    return docs


def dgds(docs: list[tuple[Path, dict]]) -> list[dict]:
    """The DGDs among the documents (an env has exactly one; the callers say so in their own words)."""
    return [d for _, d in docs if d.get("kind") == DGD_KIND]
