"""Notebook parameters: checked in each notebook's first code cell, before anything runs.

papermill only warns about a parameter the notebook does not declare, so a misspelt ``-p evn dev`` would
silently run with the default. Here the injected-parameters cell (found in the kernel's input history) is
parsed, and any name the notebook does not declare is refused with the closest declared name.
"""

from __future__ import annotations

import ast
import difflib
from typing import Any

from . import project
from .errors import ConfigError

INJECTED_MARKER = "# Parameters"


def injected_names(namespace: dict) -> list[str]:
    """Names assigned by papermill's injected-parameters cell, if this kernel ran one."""
    for source in reversed(namespace.get("In") or []):
        if isinstance(source, str) and source.lstrip().startswith(INJECTED_MARKER):
            tree = ast.parse(source)
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def check(namespace: dict, **declared: type) -> dict[str, Any]:
    """Validate the declared parameters found in ``namespace``; return them as a dict.

    Checks: no undeclared injected names; each value has its declared type; ``env`` and ``target`` name real
    choices; every ``*_s`` (a duration) and every count is > 0.
    """
    for name in injected_names(namespace):
        if name not in declared:
            near = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"this notebook takes: {', '.join(declared)}"
            raise ConfigError(f"unknown parameter {name!r} (papermill only warns; this notebook refuses it)",
                              where="notebook parameters", fix=hint)
    values: dict[str, Any] = {}
    for name, kind in declared.items():
        if name not in namespace:
            raise ConfigError(f"parameter {name!r} is not defined", where="notebook parameters",
                              fix="run the `parameters` cell first")
        value = namespace[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__} {value!r}",
                              where="notebook parameters", fix=f"pass e.g. -p {name} <{kind.__name__}>")
        if kind in (int, float) and value <= 0 and (name.endswith("_s") or name in COUNT_PARAMETERS):
            raise ConfigError(f"parameter {name!r} must be > 0, got {value}", where="notebook parameters",
                              fix=f"pass a positive value for {name}")
        values[name] = value
    if "env" in values:
        project.check_env(values["env"])
    if "target" in values:
        project.check_target(values["target"])
    return values


COUNT_PARAMETERS = {"concurrency", "requests", "num_requests", "max_tokens", "replicas_max", "tail"}
