"""Secrets and exposure: the HF token never reaches an output, and every server the product starts is loopback-only.

A recognisable fake token is planted in the environment (HF_TOKEN and HUGGING_FACE_HUB_TOKEN) of every command
and notebook kernel; then every output is scanned for it (raw, base64 and base64url): stdout/stderr of every CLI
command, every executed notebook (all of its JSON, metadata and parameters included), every figure and record the
notebooks save, and every file under the state folder (logs, state.json, plan.json, Prometheus' data). The cluster
side (the token in the `hf-token` Secret of a real API server) is in tests/cluster/test_cluster_bad_input.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gtcdemo import workbook
from gtcdemo.local import LocalTarget

from .support import CLI, REPO, fake_program, group_members

pytestmark = pytest.mark.local
TOKEN = "hf_GTCDEMO_FAKE_7Qx2mV9pL4sK8dN3wR6tY1uZ5bC0eFa"
FORMS = (TOKEN.encode(), base64.b64encode(TOKEN.encode()).rstrip(b"="),
         base64.urlsafe_b64encode(TOKEN.encode()).rstrip(b"="))


def token_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN, "TQDM_DISABLE": "1", **extra}


def leaks(data: bytes | str) -> bool:
    raw = data.encode(errors="replace") if isinstance(data, str) else data
    return any(form in raw for form in FORMS)


def scan_tree(root: Path) -> tuple[int, list[str]]:
    """(files scanned, files holding the token) under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    found = []
    for path in files:
        with contextlib.suppress(OSError):
            if leaks(path.read_bytes()):
                found.append(str(path))
    return len(files), found


def gtcdemo(env: dict[str, str], *args: str, rc: int | None = 0, timeout_s: float = 240) -> str:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout_s)
    output = proc.stdout + proc.stderr
    if rc is not None:
        assert proc.returncode == rc, f"`gtcdemo {' '.join(args)}` exited {proc.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    return output


# -- /proc helpers --------------------------------------------------------------------------------------------------
def _address(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) of every TCP socket in LISTEN, IPv4 and IPv6 (from /proc/net/tcp*)."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    hexaddr, hexport = fields[1].rsplit(":", 1)
                    out[fields[9]] = (_address(hexaddr), int(hexport, 16))
    return out


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


ZMTP_SIGNATURE = (b"\xff", b"\x7f")  # ZMTP 3 greeting: 0xFF, 8 padding bytes, 0x7F


def speaks_zmtp(port: int) -> bool:
    """A ZMQ socket greets every new connection with the ZMTP signature before anything else."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.settimeout(3)
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < 10:
                piece = conn.recv(10 - len(data))
                if not piece:
                    break
                data += piece
    return len(data) == 10 and data[:1] == ZMTP_SIGNATURE[0] and data[9:10] == ZMTP_SIGNATURE[1]


# -- a fake kubectl for port-forwards -----------------------------------------------------------------------------
FAKE_KUBECTL = '''#!{python}
"""Stands in for `kubectl port-forward`: logs its argv and pid, then serves a tiny Dynamo frontend on the address
and local port it was given (kubectl's default address is localhost)."""
import http.server, json, os, sys

argv = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "pid": os.getpid()}}) + "\\n")
if "port-forward" not in argv:
    sys.exit("fake kubectl: only port-forward is played")
mapping = next(a for a in argv[argv.index("port-forward") + 1:] if ":" in a and a.split(":")[0].isdigit())
local, remote = mapping.split(":")
address = argv[argv.index("--address") + 1] if "--address" in argv else "localhost"
address = "127.0.0.1" if address == "localhost" else address


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer({{"status": "healthy"}})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.answer({{"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": request["model"],
                     "choices": [{{"index": 0, "message": {{"role": "assistant", "content": "hello"}},
                                  "finish_reason": "length"}}],
                     "usage": {{"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}}})


server = http.server.ThreadingHTTPServer((address, int(local)), Handler)
print(f"Forwarding from {{address}}:{{local}} -> {{remote}}", flush=True)
server.serve_forever()
'''


def fake_kubectl(folder: Path) -> tuple[Path, Path]:
    """Write the fake `kubectl` into ``folder`` (put it first on PATH); returns (its folder, its argv log)."""
    return fake_program(folder, "kubectl", FAKE_KUBECTL.format(python=sys.executable)), folder / "kubectl-calls.jsonl"


def kubectl_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_port_forward_asks_kubectl_for_loopback_and_gets_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gtcdemo.cluster import KubectlAccess

    folder, log = fake_kubectl(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    access = KubectlAccess(core=None, context="do-nyc2-gtc-demo", kubeconfig="/tmp/kc")
    with access.port_forward("dynamo-workload", "gtc-demo-frontend", 8000) as url:
        (call,) = kubectl_calls(log)
        argv = call["argv"]
        i = argv.index("--address")
        assert argv[i + 1] == "127.0.0.1"
        assert argv[:5] == ["--kubeconfig", "/tmp/kc", "--context", "do-nyc2-gtc-demo", "-n"]
        assert "port-forward" in argv and "svc/gtc-demo-frontend" in argv
        local = int(url.rsplit(":", 1)[1])
        assert url == f"http://127.0.0.1:{local}" and f"{local}:8000" in argv
        table = listening()
        bound = [table[i] for i in socket_inodes(call["pid"]) if i in table]
        assert bound == [("127.0.0.1", local)], bound
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert not Path(f"/proc/{call['pid']}").exists(), "the port-forward outlived its `with` block"


# -- one graph started by `gtcdemo up` with the token in its environment ---------------------------------------------
@pytest.fixture(scope="class")
def token_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTarget, dict, list[str]]]:
    root = tmp_path_factory.mktemp("secret-state")
    env = token_env(GTCDEMO_STATE=str(root))
    outputs = [gtcdemo(env, "up", "--timeout", "180")]
    target = LocalTarget("dev", state_dir=root / "dev-gtc-demo")
    try:
        yield target, env, outputs
    finally:
        target.teardown()
    assert target.leftover_pids() == []


class TestWhileTheGraphRuns:
    def test_every_cli_command_keeps_the_token_out(self, token_graph) -> None:
        target, env, outputs = token_graph
        assert "READY" in outputs[0]
        outputs += [
            gtcdemo(env, "validate"), gtcdemo(env, "render"), gtcdemo(env, "status"), gtcdemo(env, "demo-status"),
            gtcdemo(env, "logs", "--tail", "1000"), gtcdemo(env, "test-inference", "--max-tokens", "4"),
            gtcdemo(env, "preflight"), gtcdemo(env, "up", "--timeout", "60"),
            # an error path prints a message too
            gtcdemo({**env, "KUBECONFIG": "/nonexistent/kubeconfig"}, "preflight", "--target", "cluster", rc=2),
        ]
        assert "already running" in outputs[8] and json.loads(outputs[6])["object"] == "chat.completion"
        assert "==> trtllmdecodeworker-0 <==" in outputs[5] and "no usable kubeconfig" in outputs[9]
        leaked = [o[:200] for o in outputs if leaks(o)]
        assert leaked == [], f"the token appears in {len(leaked)} command output(s): {leaked}"
        print(f"\n[secrets] {len(outputs)} CLI outputs scanned: no token")

    def test_state_folder_keeps_the_token_out(self, token_graph) -> None:
        target, _, _ = token_graph
        scanned, found = scan_tree(target.dir)
        assert scanned >= 10 and (target.dir / "logs" / "frontend-0.log").exists()
        assert found == [], f"the token is in {found}"
        print(f"\n[secrets] {scanned} files under the state folder scanned: no token")

    def test_graph_processes_do_not_receive_the_token(self, token_graph) -> None:
        target, _, _ = token_graph
        pids = [target.supervisor_pid()] + [m for p in target.processes() for m in group_members(p["pid"])]
        assert len(pids) >= 5
        holders = [pid for pid in pids if leaks(Path(f"/proc/{pid}/environ").read_bytes())]
        names = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80].decode() for pid in holders]
        assert holders == [], f"the token is in the environment of {names}"

    def test_servers_listen_on_loopback_only(self, token_graph) -> None:
        """The HTTP servers (frontend, worker system ports, Prometheus) bind 127.0.0.1. The only other listeners
        allowed are Dynamo 1.6's KV-event ZMQ publishers, which bind 0.0.0.0 (hard-coded; the advertised address
        is 127.0.0.1) — each one is identified by its ZMTP greeting, and the README documents them."""
        target, _, _ = token_graph
        table = listening()
        found = []
        for p in target.processes():
            for pid in group_members(p["pid"]):
                found += [(p["name"], p["role"], *table[i]) for i in socket_inodes(pid) if i in table]
        found += [("supervisor", "supervisor", *table[i]) for i in socket_inodes(target.supervisor_pid()) if i in table]
        http = {port: p["name"] for p in target.processes() for port in p["ports"].values()}
        for port, name in http.items():
            bound = [(n, a) for n, _, a, pt in found if pt == port]
            assert bound and all(n == name and a == "127.0.0.1" for n, a in bound), (port, bound)
        others = [f for f in found if not is_loopback(f[2])]
        logs = target.logs(tail=100_000)
        for name, role, address, port in others:
            assert role in ("prefill", "decode"), f"{name} listens on {address}:{port}"
            assert port not in http and speaks_zmtp(port), f"{name} listens on {address}:{port}, not a ZMQ publisher"
            announced = [line for line in logs[name].splitlines() if f"tcp://0.0.0.0:{port}" in line]
            assert announced and "ZMQ PUB transport bound" in announced[0], f"{name}: {port} is not Dynamo's publisher"
        readme = (REPO / "README.md").read_text()
        assert "ZMQ" in readme and "0.0.0.0" in readme, "the ZMQ publishers' 0.0.0.0 binding must be documented"
        assert not any(role in ("frontend", "prometheus", "supervisor") for _, role, _, _ in others)
        print(f"\n[secrets] {len(found)} listening sockets: {len(http)} HTTP servers on 127.0.0.1, "
              f"{len(found) - len(http) - len(others)} other loopback, {len(others)} ZMQ publishers on 0.0.0.0 "
              "(Dynamo 1.6, documented)")

    def test_down_twice_keeps_the_token_out(self, token_graph) -> None:
        target, env, _ = token_graph
        downs = [gtcdemo(env, "down"), gtcdemo(env, "down")]
        assert "dynamographdeployment/gtc-demo deleted" in downs[0] and downs[1].strip().endswith(": nothing")
        assert not any(leaks(d) for d in downs)
        assert target.leftover_pids() == []
        assert scan_tree(target.dir)[1] == []


# -- the walkthrough, twice in a row, with the token in every kernel's environment ---------------------------------
LIGHT = {"env": "dev", "target": "local", "max_tokens": 8, "kv_requests": 2, "kv_prompt_tokens": 300,
         "concurrency": 2, "num_requests": 6, "warmup_requests": 1, "input_tokens": 60, "output_tokens": 8,
         "sweep_levels": [1, 2], "sweep_requests": 3, "wait_timeout_s": 180.0, "timeout_s": 180.0,
         "levels": [1, 2], "sizes": {"num_requests": 8, "duration_s": 2.0}}  # 06's comparison, small


@pytest.mark.timeout(360)  # every step notebook, twice: ~2 min on 2 cores (the default allows 180 s)
def test_walkthrough_twice_in_a_row_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step notebook, 00 to 99, twice in a row, each run with a state folder of its own, scanned after it."""
    for key, value in token_env().items():
        monkeypatch.setenv(key, value)
    notebooks = workbook.step_notebooks()
    names = [nb.name for nb in notebooks]
    assert names[0] in ("00_preflight.ipynb", "01_configs.ipynb") and names[-1] == "99_teardown.ipynb"
    assert "02_deploy.ipynb" in names
    for run in (1, 2):
        state = tmp_path / f"state-{run}"
        monkeypatch.setenv("GTCDEMO_STATE", str(state))
        target = LocalTarget("dev")
        out = tmp_path / f"run-{run}"
        try:
            for nb in notebooks:
                declared = workbook.declared_parameters(nb)
                workbook.run_notebook(nb, out, {k: v for k, v in LIGHT.items() if k in declared})
            assert target.leftover_pids() == [], f"run {run}: 99_teardown left processes running"
        finally:
            target.teardown()
        assert target.leftover_pids() == []
        executed = [json.loads((out / name).read_text()) for name in names]
        errors = [o for nb in executed for c in nb["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert errors == []
        assert all(nb["metadata"]["papermill"]["parameters"]["env"] == "dev" for nb in executed)
        assert "dynamographdeployment/gtc-demo created" in json.dumps(executed[names.index("02_deploy.ipynb")])
        assert "dynamographdeployment/gtc-demo deleted" in json.dumps(executed[names.index("99_teardown.ipynb")])
        scanned, found = scan_tree(out)
        assert found == [], f"run {run}: the token is in {found}"
        state_scanned, state_found = scan_tree(state)
        assert state_found == [], f"run {run}: the token is in {state_found}"
        print(f"\n[secrets] walkthrough run {run}: {len(names)} notebooks, {scanned} output files and "
              f"{state_scanned} state files scanned: no token")
