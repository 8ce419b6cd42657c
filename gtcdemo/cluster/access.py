"""What needs a kubelet: pod logs and port-forwards, behind ``KubeletAccess`` so that everything else can be tested
against a real API server with no nodes (tests/cluster/operator.py ``FakeKubelet``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any, Protocol

import httpx

from ..clock import Deadline
from ..errors import DeploymentError

PORT_FORWARD_OPEN_S = 20.0


class KubeletAccess(Protocol):
    """Pod logs and port-forwards: served by kubelets, so absent on a test API server."""

    def logs(self, namespace: str, pod: str, tail: int) -> str: ...

    def port_forward(self, namespace: str, service: str, port: int) -> contextlib.AbstractContextManager[str]: ...


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class KubectlAccess:
    """The real thing: logs through the API, port-forwards through `kubectl port-forward` on loopback."""

    def __init__(self, core: Any, context: str, kubeconfig: str | None = None) -> None:
        self.core, self.context, self.kubeconfig = core, context, kubeconfig

    def logs(self, namespace: str, pod: str, tail: int) -> str:
        return self.core.read_namespaced_pod_log(pod, namespace, tail_lines=tail)

    @contextlib.contextmanager
    def port_forward(self, namespace: str, service: str, port: int) -> Iterator[str]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise DeploymentError("kubectl is not installed (needed for port-forwards)",
                                  fix="install kubectl (apt-get install kubernetes-client, or your usual way)")
        local = free_port()
        argv = [kubectl, "--context", self.context, "-n", namespace, "port-forward", f"svc/{service}",
                f"{local}:{port}", "--address", "127.0.0.1"]
        if self.kubeconfig:
            argv[1:1] = ["--kubeconfig", self.kubeconfig]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            deadline = Deadline(PORT_FORWARD_OPEN_S)
            while not _accepts(local):
                if proc.poll() is not None:
                    raise DeploymentError(f"port-forward to svc/{service} in {namespace} exited: "
                                          f"{(proc.stdout.read() if proc.stdout else '').strip()}",
                                          fix=f"check `kubectl -n {namespace} get svc {service}` and its pods")
                if not deadline.sleep(0.1):
                    raise DeploymentError(
                        f"port-forward to svc/{service} did not open within {PORT_FORWARD_OPEN_S:.0f} s",
                        fix="check that its pods are Running and Ready")
            yield f"http://127.0.0.1:{local}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def forward_healthy(access: KubeletAccess, namespace: str, service: str, port: int, health: str) -> Iterator[str]:
    """A port-forward to ``svc/service`` whose ``health`` path answers (below 500) before the URL is handed out."""
    with access.port_forward(namespace, service, port) as url:
        try:
            response = httpx.get(f"{url}{health}", timeout=5)
        except httpx.HTTPError as exc:
            raise DeploymentError(f"svc/{service} is forwarded but does not answer {health}: {exc}",
                                  fix=f"check its pods: `kubectl -n {namespace} get pods`") from None
        if response.status_code >= 500:
            raise DeploymentError(f"svc/{service} answers {health} with HTTP {response.status_code}",
                                  fix="wait until `gtcdemo wait --target cluster` reports ready")
        yield url
