"""Reading the project's text files with errors that say which file and what to do."""

from __future__ import annotations

from pathlib import Path

from . import project
from .errors import ConfigError


def shown(path: Path) -> str:
    """``path`` relative to the project when inside it (how README and errors name files)."""
    path = Path(path)
    inside = path.is_absolute() and path.is_relative_to(project.ROOT)
    return str(path.relative_to(project.ROOT)) if inside else str(path)


def read_text(path: Path, where: str | None = None) -> str:
    """The file's text as UTF-8; a missing or non-UTF-8 file is a ConfigError naming the file and the fix."""
    path = Path(path)
    where = where or shown(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", where=where, fix=f"create {shown(path)} or check the env name") from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a file", where=where, fix="point at a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at position {exc.start}",
                          where=where, fix="save the file as UTF-8") from None
