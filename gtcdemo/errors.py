"""Errors a presenter can act on: each says what is wrong, where, and what to do."""

from __future__ import annotations


class GtcdemoError(Exception):
    """Base error: ``str()`` is the whole actionable message (problem, location, fix)."""

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.problem, self.where, self.fix = problem, where, fix
        parts = [f"{where}: {problem}" if where else problem]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))


class ConfigError(GtcdemoError):
    """An engine config, manifest or parameter is invalid; nothing has been applied."""


class ValidationErrors(ConfigError):
    """Several problems found at once, so the user fixes them in one go."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        body = "\n".join(f"- {e}".replace("\n", "\n  ") for e in errors)
        super().__init__(f"{len(errors)} problem(s) found, nothing was applied:\n{body}")


class MissingDependencyError(GtcdemoError):
    """A program the local target needs is not installed."""


class DeploymentError(GtcdemoError):
    """The deployment failed to start, became unhealthy, or was not found."""
