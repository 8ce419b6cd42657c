"""Notebook parameters: checked in each notebook's first code cell, before anything runs.

A notebook declares each parameter once, in its `parameters` cell, as an annotated assignment
(``timeout_s: float = 600.0  # help``). Python records those annotations in the kernel's namespace
(``__annotations__``), and they are the types checked here; papermill's ``--help-notebook`` shows the same ones.

papermill only warns about a parameter the notebook does not declare, so a misspelt ``-p evn dev`` would
silently run with the default. Here the injected-parameters cell (found in the kernel's input history) is
parsed, and any name the notebook does not declare is refused with the closest declared name.
"""

from __future__ import annotations

import ast
import difflib
import typing
from typing import Any

from . import project
from .errors import ConfigError

INJECTED_MARKER = "# Parameters"
COUNT_PARAMETERS = {"concurrency", "requests", "num_requests", "max_tokens", "replicas_max", "tail"}


def injected_names(namespace: dict) -> list[str]:
    """Names assigned by papermill's injected-parameters cell, if this kernel ran one."""
    for source in reversed(namespace.get("In") or []):
        if isinstance(source, str) and source.lstrip().startswith(INJECTED_MARKER):
            tree = ast.parse(source)
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def declared(namespace: dict) -> dict[str, type]:
    """The parameters and their types, from the parameters cell's annotations (``list[int]`` is checked as list).

    An annotation kept as text (``from __future__ import annotations`` where the cell ran) is evaluated as Python
    would, in the notebook's own namespace.
    """
    annotations = namespace.get("__annotations__") or {}
    if not annotations:
        raise ConfigError("no notebook parameters are declared", where="notebook parameters",
                          fix="run the `parameters` cell first")
    kinds = {name: eval(kind, namespace) if isinstance(kind, str) else kind  # noqa: S307 - the notebook's own text
             for name, kind in annotations.items()}
    return {name: typing.get_origin(kind) or kind for name, kind in kinds.items()}


def check(namespace: dict) -> dict[str, Any]:
    """Validate the parameters the notebook declares (see :func:`declared`); return them as a dict.

    Checks: no undeclared injected names; each value has its declared type; ``env`` and ``target`` name real
    choices; every ``*_s`` (a duration) and every count is > 0.
    """
    kinds = declared(namespace)
    for name in injected_names(namespace):
        if name not in kinds:
            near = difflib.get_close_matches(name, list(kinds), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"this notebook takes: {', '.join(kinds)}"
            raise ConfigError(f"unknown parameter {name!r} (papermill only warns; this notebook refuses it)",
                              where="notebook parameters", fix=hint)
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
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
