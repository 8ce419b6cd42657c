"""Time as the tables show it (ages) and waiting with a deadline (never a bare sleep loop)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


def age(seconds: float) -> str:
    """kubectl's short age: ``45s``, ``12m``, ``3h`` (whole units, like ``kubectl get pods``)."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def seconds_since(timestamp: datetime | str | None, now: datetime) -> float:
    """Seconds from ``timestamp`` (a datetime or RFC 3339 text as the API server sends it) to ``now``; 0 if unknown."""
    if timestamp is None:
        return 0.0
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (now - timestamp).total_seconds()


class Deadline:
    """A point in (monotonic) time to stop waiting at."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.start = time.monotonic()
        self.end = self.start + timeout_s

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def sleep(self, interval_s: float) -> bool:
        """Sleep ``interval_s`` (less if the deadline comes first); False once the deadline has passed."""
        if self.expired:
            return False
        time.sleep(min(interval_s, self.remaining))
        return True


def wait_until(check: Callable[[], T], timeout_s: float, interval_s: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy and return that; at the deadline, return its last answer.

    ``check`` is called at least once, and once more at the deadline, so a condition that became true while we slept
    is never reported as a timeout.
    """
    deadline = Deadline(timeout_s)
    value = check()
    while not value and deadline.sleep(interval_s):
        value = check()
    return value
