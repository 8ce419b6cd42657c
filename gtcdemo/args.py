"""A container's command-line arguments, read the way the program reading them does.

argparse (dynamo.trtllm, dynamo.frontend, the mocker) takes both ``--flag value`` and ``--flag=value``; every reader
of a DGD's args goes through here so that both spellings mean the same thing everywhere.
"""

from __future__ import annotations

from typing import Any


def mapping(value: Any) -> dict:
    """``value`` when it is a mapping, else {} (a YAML key left empty is None)."""
    return value if isinstance(value, dict) else {}


def container_args(service: dict) -> list[str]:
    """The main container's args of one DGD service (``extraPodSpec.mainContainer.args``), as strings."""
    args = mapping(mapping(mapping(service).get("extraPodSpec")).get("mainContainer")).get("args")
    return [str(a) for a in args] if isinstance(args, list) else []


def arg_value(args: list[str], flag: str) -> str | None:
    """The value given to ``flag`` (``--flag value`` or ``--flag=value``; the last one wins, as in argparse)."""
    found: str | None = None
    for i, word in enumerate(args):
        if word == flag and i + 1 < len(args):
            found = str(args[i + 1])
        elif isinstance(word, str) and word.startswith(flag + "="):
            found = word.split("=", 1)[1]
    return found


def has_flag(args: list[str], flag: str) -> bool:
    """Whether ``flag`` is given at all, in either spelling."""
    return any(w == flag or (isinstance(w, str) and w.startswith(flag + "=")) for w in args)
