"""The local graph's ports: free ones picked and claimed machine-wide, and who listens on them.

Every deployment on this machine (the CLI, notebooks, tests running side by side) picks its ports here: the usual
ones when free, else the next free port above, each claimed for the deployment until it is torn down.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path

import psutil

from ..errors import DeploymentError
from .state import StateFolder

LOOPBACK = "127.0.0.1"
PREFERRED_PORTS = {"frontend": 8000, "prometheus": 9090, "worker": 9091, "nats": 4222, "nats-monitor": 8222}
PORT_RANGE = 200  # ports tried above each preferred one (pick_port)
PORT_CLAIMS = Path(tempfile.gettempdir()) / "gtcdemo-ports"


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on the loopback address now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _claim(port: int, owner: Path) -> bool:
    """Claim ``port`` for the deployment in ``owner`` until it is torn down, machine-wide.

    A free port is not enough: two deployments starting at the same moment could pick the same one before
    either binds it (and the frontend binds with SO_REUSEPORT, so both would succeed and split the traffic).
    A claim whose owner's supervisor is gone is stale and taken over.
    """
    PORT_CLAIMS.mkdir(exist_ok=True)
    path = PORT_CLAIMS / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = Path(path.read_text())
            except OSError:
                continue
            if holder == owner:
                return True
            if StateFolder(holder).supervisor_pid():
                return False
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < 60:
                    return False  # claimed moments ago: its deployment is starting (no supervisor yet)
            path.unlink(missing_ok=True)  # stale: its deployment is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(owner))
        return True
    return False


def claims_of(owner: Path) -> set[str]:
    """The ports (claim file names) held for the deployment in ``owner``."""
    held = set()
    for path in PORT_CLAIMS.glob("*") if PORT_CLAIMS.exists() else []:
        with contextlib.suppress(OSError):
            if Path(path.read_text()) == owner:
                held.add(path.name)
    return held


def release_claims(owner: Path, keep: set[str] | frozenset[str] = frozenset()) -> None:
    """Drop the deployment's port claims (but those in ``keep``: a running graph's, when a change failed)."""
    for name in claims_of(owner) - set(keep):
        with contextlib.suppress(OSError):
            (PORT_CLAIMS / name).unlink()


def pick_port(preferred: int, taken: set[int], owner: Path | None = None) -> int:
    """``preferred`` when free (and, with ``owner``, claimed for it), else the next such port above it."""
    for port in range(preferred, preferred + PORT_RANGE):
        if port not in taken and port_free(port) and (owner is None or _claim(port, owner)):
            taken.add(port)
            return port
    raise DeploymentError(f"no free port in {preferred}-{preferred + PORT_RANGE - 1} on 127.0.0.1",
                          fix="stop other deployments (`gtcdemo down`) or free ports in that range")


def listeners() -> dict[int, set[int | None]]:
    """Each listening TCP port on this machine and the pids holding a socket on it (None: another user's process).

    One look at every socket (psutil reads /proc/net/tcp* and maps sockets to processes, ~20 ms here), shared by
    all the port checks of one moment."""
    held: dict[int, set[int | None]] = {}
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN:
            held.setdefault(conn.laddr.port, set()).add(conn.pid)
    return held


def port_state(pid: int, port: int, listening: dict[int, set[int | None]] | None = None) -> str:
    """"own" when only ``pid`` listens on ``port``; "shared" when another process listens there too (the Dynamo
    frontend binds with SO_REUSEPORT, so two deployments started at once could share a port and split the
    traffic); "none" when ``pid`` does not listen there (a health check would reach someone else).

    ``listening``: a ``listeners()`` taken for several checks at once."""
    holders = (listeners() if listening is None else listening).get(port, set())
    if pid not in holders:
        return "none"
    return "own" if holders == {pid} else "shared"
