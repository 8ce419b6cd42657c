"""The release-compatibility checks (tests/release_compat_checks.py) inside a private network namespace.

Dynamo 0.8's response-stream server binds to the address of the machine's default route, with no setting to change
it (lib/runtime/src/pipeline/network/tcp/server.rs, ``local_ip()``; with no such address it falls back to
127.0.0.1), and 0.8's frontend would ask the model hub if a model card ever named it. In a network namespace that
has only a loopback interface, every socket of the 0.8 graph is loopback and nothing can leave, by construction.
The inner run starts its own graphs (the 0.8.1 one and a 1.6.1 one for the bucket comparison) and stops them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.local
CHECKS = Path(__file__).with_name("release_compat_checks.py")


def netns_command() -> list[str] | None:
    """`unshare` into a fresh network namespace (as root; otherwise inside a user namespace), loopback up."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return None
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--net", *user, "--", "sh", "-c", 'ip link set lo up && exec "$@"', "netns"]


def test_release_compat_inside_a_loopback_only_network_namespace(tmp_path: Path) -> None:
    command = netns_command()
    probe = subprocess.run([*(command or ["false"]), "true"], capture_output=True, text=True, timeout=30)
    if command is None or probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here ({probe.stderr.strip() or 'no unshare/ip'}): run as "
                    "root or enable unprivileged user namespaces")
    inner = subprocess.run(
        [*command, sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
         f"--basetemp={tmp_path / 'inner'}"],
        cwd=CHECKS.parents[1], capture_output=True, text=True, timeout=900)
    lines = inner.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    print("release compatibility checks, inside the namespace:", summary)
    assert inner.returncode == 0, inner.stdout[-8000:] + inner.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"skipped|failed|error", summary), summary
