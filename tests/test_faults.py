"""Faults survived on the real local graph (Dynamo frontend, mocker workers, Prometheus, the supervisor).

Every fault is real: processes are SIGKILLed, the supervisor is frozen (SIGSTOP) to hold a process down long
enough to look at the damage, Ctrl-C is a real SIGINT to a real CLI / load / papermill process, ports are taken by
real sockets. Every wait is a poll with a deadline. The figures (requests sent, failed, kept, restarts) are printed
with ``-s`` for the closing note.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gtcdemo import inference, metrics
from gtcdemo.clock import Deadline
from gtcdemo.errors import DeploymentError
from gtcdemo.load import LoadResult, LoadSpec
from gtcdemo.load import run as load_run
from gtcdemo.local import LocalTarget, alive, pick_port, port_state

from .support import CLI, MODEL, REPO, children_of, fake_program, free_port, mentioning, poll, running_graph, take_port

pytestmark = pytest.mark.local
REDEPLOYED: dict[str, int] = {}  # the frontend port the stale-state test's redeploy moved away from


# -- helpers ----------------------------------------------------------------------------------------------------------
def proc(target: LocalTarget, role: str) -> dict:
    return next(p for p in target.processes() if p["role"] == role)


def row(target: LocalTarget, role: str) -> dict:
    frame = target.status().frame
    return frame[frame["role"] == role].iloc[0].to_dict()


def served(frontend: str, status: str = "success") -> float:
    """The frontend's own request counter (its /metrics), summed over models and request types."""
    try:
        text = httpx.get(f"{frontend}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("dynamo_frontend_requests_total{") and f'status="{status}"' in line)


def completes(target: LocalTarget) -> bool:
    try:
        inference.chat_completion(target.frontend_url(), MODEL, "still there?", max_tokens=2, timeout_s=10)
        return True
    except (DeploymentError, httpx.HTTPError):
        return False


def recovered(target: LocalTarget, role: str, restarts: int) -> bool:
    r = row(target, role)
    return r["phase"] == "Running" and r["ready"] == "1/1" and r["restarts"] == restarts


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` (e.g. the supervisor, so a killed process stays down while we look), always SIGCONT."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def read_until(stream: int, pattern: bytes, timeout_s: float, what: str) -> bytes:
    """Read a child's pipe until ``pattern`` appears (a poll on its output, with a deadline)."""
    seen = b""
    deadline = Deadline(timeout_s)
    while not re.search(pattern, seen):
        assert not deadline.expired, \
            f"timed out waiting for {what}; output so far:\n{seen.decode(errors='replace')[-2000:]}"
        ready, _, _ = select.select([stream], [], [], min(deadline.remaining, 1.0))
        if ready:
            piece = os.read(stream, 65536)
            assert piece, f"the process ended before {what}:\n{seen.decode(errors='replace')[-2000:]}"
            seen += piece
    return seen


def supervisors_of(state_dir: Path) -> list[int]:
    return sorted(pid for pid, command in mentioning(state_dir).items() if "gtcdemo.local.supervisor" in command)


# -- one graph for the faults, started while the ports it would get are taken ---------------------------------------
@pytest.fixture(scope="module")
def taken_ports() -> Iterator[dict[str, int]]:
    """The ports the frontend and Prometheus would get next (8000 and 9090 on an idle machine; above them when
    another graph runs), taken by listening sockets of this test process for the module."""
    sockets = {role: poll(lambda preferred=preferred: take_port(pick_port(preferred, set())), timeout_s=10,
                          what=f"a free port from {preferred} to take")
               for role, preferred in (("frontend", 8000), ("prometheus", 9090))}
    try:
        yield {role: sock.getsockname()[1] for role, sock in sockets.items()}
    finally:
        for sock in sockets.values():
            sock.close()


@pytest.fixture(scope="module")
def fault_graph(taken_ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    with running_graph(tmp_path_factory.mktemp("faults-state")) as target:
        yield target


def test_taken_ports_move_the_graph_and_it_works(fault_graph: LocalTarget, taken_ports: dict[str, int]) -> None:
    frontend, prometheus = proc(fault_graph, "frontend"), proc(fault_graph, "prometheus")
    assert frontend["ports"]["http"] > taken_ports["frontend"] and prometheus["ports"]["http"] > \
        taken_ports["prometheus"], f"the graph did not move past the taken ports {taken_ports}"
    for port in taken_ports.values():
        assert port_state(os.getpid(), port) == "own", f"our socket on {port} lost its port"
    used = {port for p in fault_graph.processes() for port in p["ports"].values()}
    assert used.isdisjoint(taken_ports.values()), used
    assert set(fault_graph.status().frame["ready"]) == {"1/1"}
    assert completes(fault_graph)
    assert httpx.get(f"{fault_graph.prometheus_url()}/-/ready", timeout=5).status_code == 200
    print(f"\n[faults] ports taken: {taken_ports}; graph moved to frontend {frontend['ports']['http']}, "
          f"prometheus {prometheus['ports']['http']}")


def test_ctrl_c_during_wait_stops_cleanly_and_leaves_the_graph_alone(fault_graph: LocalTarget) -> None:
    frontend = proc(fault_graph, "frontend")
    graph_pids = sorted(p["pid"] for p in fault_graph.processes())
    env = {**os.environ, "GTCDEMO_STATE": str(fault_graph.dir.parent)}
    with frozen(frontend["pid"]):  # a frontend that does not answer keeps `wait` waiting
        cli = subprocess.Popen([*CLI, "wait", "--timeout", "300"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            seen = read_until(cli.stderr.fileno(), rb"waiting for frontend-0", 60, "wait's progress")
            cli.send_signal(signal.SIGINT)
            out, err = cli.communicate(timeout=30)
        finally:
            if cli.poll() is None:
                cli.kill()
        err = seen + err
        assert cli.returncode == 130, err.decode()
        assert b"interrupted" in err and b"Traceback" not in err
        assert children_of(cli.pid) == [] and not Path(f"/proc/{cli.pid}").exists()
        # `wait` did not start the graph, so it does not stop it either.
        assert sorted(p["pid"] for p in fault_graph.processes()) == graph_pids
    fault_graph.wait(timeout_s=60)


def test_decode_worker_killed_mid_load_run(fault_graph: LocalTarget) -> None:
    """The run finishes and keeps every record; failures are counted; the worker is restarted (counted) and later
    requests succeed — inside the same run and after it."""
    url = fault_graph.frontend_url()
    before = proc(fault_graph, "decode")
    restarts = before["restarts"]
    n = 160
    spec = LoadSpec(MODEL, request_rate=20.0, max_concurrency=8, num_requests=n, output_tokens=16,
                    input_tokens_mean=50, timeout_s=20, seed=6)
    box: dict = {}
    base = served(url)
    runner = threading.Thread(target=lambda: box.setdefault("result", load_run(url, spec, progress=False)))
    runner.start()
    try:
        poll(lambda: served(url) >= base + 15, timeout_s=60, interval_s=0.05, what="15 requests served")
        killed_at = time.time()
        kill_group(before["pid"])
    finally:
        runner.join(timeout=180)
    assert not runner.is_alive(), "the load run did not finish"
    result: LoadResult = box["result"]
    rec = result.records
    s = result.summary()
    # Every request is accounted for: nothing lost, nothing silently dropped.
    assert len(rec) == n and sorted(rec["index"]) == list(range(n)) and not result.interrupted
    assert s["ok_count"] + s["error_count"] == n
    failed = rec[rec["status"] != "ok"]
    assert len(failed) >= 1, "killing the decode worker mid-run failed no request"
    assert failed["error"].str.len().gt(0).all()
    assert failed["error"].str.contains(r"HTTP 5\d\d|error event|connection lost|timed out").all(), \
        failed["error"].value_counts()
    ok_after = rec[(rec["status"] == "ok") & (rec["start"] > killed_at)]
    assert (rec[rec["start"] < killed_at]["status"] == "ok").any()
    assert len(ok_after) >= 1, "no request succeeded after the kill within the run: the graph did not recover"
    # The supervisor restarted the worker (counted, like a pod's restarts) and status shows it.
    poll(lambda: recovered(fault_graph, "decode", restarts + 1), timeout_s=60, what="decode Running again")
    after = proc(fault_graph, "decode")
    assert after["pid"] != before["pid"] and after["last_exit_code"] == -signal.SIGKILL
    assert poll(lambda: completes(fault_graph), timeout_s=30, what="a completion after the restart")
    print(f"\n[faults] decode SIGKILLed mid-run: {n} requests sent, {len(rec)} records kept, "
          f"{s['error_count']} failed (counted), {len(ok_after)} ok after the kill in the same run, "
          f"restarts {restarts} -> {after['restarts']}")


def test_frontend_killed_metrics_explain_what_is_missing(fault_graph: LocalTarget) -> None:
    m = metrics.Metrics(fault_graph.prometheus_url())
    assert completes(fault_graph)
    poll(lambda: m.query(metrics.REQUESTS), timeout_s=30, what="the request counter in Prometheus")
    frontend = proc(fault_graph, "frontend")
    restarts = frontend["restarts"]
    start = time.time()
    with frozen(fault_graph.supervisor_pid()):  # hold the frontend down while we look
        kill_group(frontend["pid"])

        def explained() -> dict | None:
            report = m.check_requests_visible()
            return None if report.ok else report.failures[0]
        failure = poll(explained, timeout_s=30, what="check_requests_visible to notice")
        assert failure["check"] == metrics.REQUESTS
        assert "the frontend target(s) are down" in failure["detail"]
        assert "check the frontend pod/process" in failure["fix"]
        # The other metrics calls answer (empty or NaN where data is missing) instead of raising. (What a run
        # summary across the dead frontend counts: test_a_run_summary_across_a_dead_frontend_counts_no_negative.)
        window = m.window(start - 30, time.time())
        assert set(metrics.series_queries("1s")) <= set(window.columns)
        m.run_summary(start - 30, time.time())
        m.settle(time.time(), timeout_s=10)  # Prometheus keeps scraping (and failing on) the dead frontend
        # The client side explains too, and status shows the frontend not ready.
        with pytest.raises(DeploymentError, match=r"(?s)cannot reach the frontend.*gtcdemo status"):
            inference.chat_completion(fault_graph.frontend_url(), MODEL, "anyone?", max_tokens=2, timeout_s=5)
        assert row(fault_graph, "frontend")["ready"] == "0/1"
    poll(lambda: recovered(fault_graph, "frontend", restarts + 1), timeout_s=60, what="frontend Running again")
    assert poll(lambda: completes(fault_graph), timeout_s=60, what="a completion after the frontend restart")
    assert poll(lambda: m.check_requests_visible().ok, timeout_s=30, what="requests visible again")


def test_prometheus_killed_metrics_explain_what_is_missing(fault_graph: LocalTarget) -> None:
    url = fault_graph.prometheus_url()
    prom = proc(fault_graph, "prometheus")
    restarts = prom["restarts"]

    def refused() -> bool:
        try:
            httpx.get(f"{url}/-/ready", timeout=1)
            return False
        except httpx.HTTPError:
            return True

    with frozen(fault_graph.supervisor_pid()):
        kill_group(prom["pid"])
        poll(refused, timeout_s=30, what="Prometheus to stop answering")
        m = metrics.Metrics(url)  # constructing against a dead Prometheus does not raise either
        now = time.time()
        calls = {"check_requests_visible": lambda mm: mm.check_requests_visible(),
                 "window": lambda mm: mm.window(now - 30, now), "run_summary": lambda mm: mm.run_summary(now - 30, now),
                 "bucket_bounds": lambda mm: mm.bucket_bounds(), "settle": lambda mm: mm.settle(now, timeout_s=1)}
        with ThreadPoolExecutor(len(calls)) as pool:  # each call waits out the client's retries: run them together
            futures = {name: pool.submit(call, metrics.Metrics(url, rate_window=m.rate_window))
                       for name, call in calls.items()}
        report = futures.pop("check_requests_visible").result()
        assert not report.ok
        failure = report.failures[0]
        assert failure["check"] == "Prometheus reachable" and url in failure["detail"]
        assert "is Prometheus running? `gtcdemo status`" in failure["fix"]
        for name, future in futures.items():
            error = future.exception()
            assert isinstance(error, DeploymentError), f"{name}: {error!r}"
            assert f"Prometheus at {url} did not answer" in str(error) and "Fix: is Prometheus running?" in \
                str(error), f"{name}: {error}"
        assert row(fault_graph, "prometheus")["ready"] == "0/1"
        assert completes(fault_graph)  # serving does not depend on Prometheus
    poll(lambda: recovered(fault_graph, "prometheus", restarts + 1), timeout_s=60, what="Prometheus again")
    assert poll(lambda: metrics.Metrics(url, rate_window="4s").check_requests_visible().ok, timeout_s=60,
                what="requests visible after the Prometheus restart (its data survived)")


def test_wait_reports_ready_after_recovered_crashes(fault_graph: LocalTarget) -> None:
    if not sum(fault_graph.status().frame["restarts"]):  # run alone: crash one process here
        decode = proc(fault_graph, "decode")
        kill_group(decode["pid"])
        poll(lambda: recovered(fault_graph, "decode", decode["restarts"] + 1), timeout_s=60, what="decode again")
    ready = fault_graph.wait(timeout_s=60)  # every earlier crash was survived: wait must not fail on them
    assert ready.ready and set(ready.status.frame["ready"]) == {"1/1"}


def test_a_run_summary_across_a_dead_frontend_counts_no_negative_requests(fault_graph: LocalTarget) -> None:
    m = metrics.Metrics(fault_graph.prometheus_url(), rate_window="4s")
    assert completes(fault_graph)  # the counter exists and is > 0 at the run's start
    start = m.settle(time.time())
    assert completes(fault_graph)  # one request in the run
    m.settle(time.time())
    frontend = proc(fault_graph, "frontend")
    with frozen(fault_graph.supervisor_pid()):  # hold the frontend down while we look
        kill_group(frontend["pid"])
        poll(lambda: not m.query(metrics.REQUESTS), timeout_s=30, what="the dead frontend's series to go stale")
        requests = m.run_summary(start, time.time()).requests
    poll(lambda: recovered(fault_graph, "frontend", frontend["restarts"] + 1), timeout_s=60,
         what="frontend Running again")
    assert math.isnan(requests) or requests >= 1, f"{requests} requests in a run that sent one"


@pytest.mark.unit
def test_a_dead_prometheus_is_explained_promptly() -> None:
    m = metrics.Metrics(f"http://127.0.0.1:{free_port()}", rate_window="4s")  # nothing listens there
    deadline = Deadline(60)
    report = m.check_requests_visible()
    assert not report.ok and report.failures[0]["check"] == "Prometheus reachable"
    # Promptly: a refused connection answers in milliseconds, where connection retries with back-off would wait
    # 3 s or more (3 retries at back-off factor 0.5: 0 + 1 + 2 s) before the notebook cell could explain.
    assert deadline.elapsed < 1.0, f"{deadline.elapsed:.1f} s to explain a refused connection: retried?"


CTRL_C_LOAD = """
import json, sys
from gtcdemo.load import LoadSpec, run
spec = LoadSpec(sys.argv[2], concurrency=2, num_requests=10**6, output_tokens=8, input_tokens_mean=20)
result = run(sys.argv[1], spec, progress=False, save_to=sys.argv[3])
print(json.dumps({"records": len(result.records), "ok": result.summary()["ok_count"],
                  "interrupted": result.interrupted, "cancelled": result.cancelled_requests}))
"""


def test_ctrl_c_during_a_load_run_saves_the_partial_result(fault_graph: LocalTarget, tmp_path: Path) -> None:
    url = fault_graph.frontend_url()
    base = served(url)
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_LOAD, url, MODEL, str(tmp_path / "partial")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        poll(lambda: served(url) >= base + 5 or child.poll() is not None, timeout_s=60, interval_s=0.05,
             what="5 requests served by the load run")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err[-2000:]
    report = json.loads(out)
    assert report["interrupted"] and report["ok"] >= 5 and report["cancelled"] <= 2  # at most what was in flight
    saved = LoadResult.load(tmp_path / "partial")
    assert saved.interrupted and len(saved.records) == report["records"]
    assert saved.summary()["ok_count"] == report["ok"] and saved.records["latency_s"].notna().all()
    assert children_of(child.pid) == []
    assert completes(fault_graph)
    print(f"\n[faults] Ctrl-C mid load run: {report['records']} records saved ({report['ok']} ok), "
          f"{report['cancelled']} in flight cancelled, marked interrupted")


def test_stale_state_from_a_crashed_run_then_up_works(fault_graph: LocalTarget) -> None:
    """The supervisor and every process SIGKILLed (a machine crash, an OOM kill): their state files stay behind
    claiming a running graph; `gtcdemo up` must start a fresh one."""
    old_supervisor = fault_graph.supervisor_pid()
    old_port = proc(fault_graph, "frontend")["ports"]["http"]
    victims = [(p["pid"], p["starttime"]) for p in fault_graph.processes()]
    os.kill(old_supervisor, signal.SIGKILL)
    for pid, _ in victims:
        kill_group(pid)
    poll(lambda: not any(alive(pid, st) for pid, st in victims) and not fault_graph.is_running(), timeout_s=30,
         what="the crashed graph to be gone")
    for name in ("supervisor.json", "state.json", "plan.json"):
        assert (fault_graph.dir / name).exists(), f"{name} should be left behind by the crash"
    assert json.loads((fault_graph.dir / "state.json").read_text())["processes"]  # still claims processes
    env = {**os.environ, "GTCDEMO_STATE": str(fault_graph.dir.parent)}
    # And meanwhile something else takes the old frontend port (once the killed frontend's socket is gone: in a
    # full run the kernel sometimes had not released it yet when the process was already reported dead).
    taken = poll(lambda: take_port(old_port), timeout_s=30, what=f"port {old_port} free to take")
    try:
        up = subprocess.run([*CLI, "up", "--timeout", "180"], env=env, capture_output=True, text=True, timeout=240)
    finally:
        taken.close()
    assert up.returncode == 0, up.stderr[-3000:]
    assert "graph started" in up.stdout and "READY" in up.stdout
    assert proc(fault_graph, "frontend")["ports"]["http"] != old_port
    REDEPLOYED["from_port"] = old_port
    assert fault_graph.supervisor_pid() not in (None, old_supervisor)
    assert supervisors_of(fault_graph.dir) == [fault_graph.supervisor_pid()]
    assert set(fault_graph.status().frame["ready"]) == {"1/1"}
    assert completes(fault_graph)


def test_metrics_settle_after_a_redeploy_on_a_new_port(fault_graph: LocalTarget) -> None:
    """After a redeploy whose frontend has another address (locally a new port when the old one is taken; on the
    cluster always, a new pod IP), the old address' series stays in Prometheus' 5-minute lookback: settle (notebooks
    04 and 05) must still answer."""
    if "from_port" not in REDEPLOYED:  # run alone: redeploy here, the old port taken meanwhile
        old_port = proc(fault_graph, "frontend")["ports"]["http"]
        fault_graph.teardown()
        taken = take_port(old_port)
        try:
            fault_graph.apply()
        finally:
            if taken is not None:
                taken.close()
        fault_graph.wait(timeout_s=180)
        REDEPLOYED["from_port"] = old_port
    assert proc(fault_graph, "frontend")["ports"]["http"] != REDEPLOYED["from_port"]
    m = metrics.Metrics(fault_graph.prometheus_url(), rate_window="4s")
    m.settle(time.time(), timeout_s=10)  # raises when the old address' series holds it back


# -- Ctrl-C under papermill, and two commands at once: each on its own deployment --------------------------------
def test_ctrl_c_during_a_notebook_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while 02_deploy waits: papermill stops, the executed notebook keeps what ran, no kernel is left, and the
    graph the notebook started is stopped by a later teardown with nothing left over."""
    state = tmp_path / "state"
    monkeypatch.setenv("GTCDEMO_STATE", str(state))
    # A Prometheus that never gets ready: the wait cell keeps waiting until interrupted.
    fake = fake_program(tmp_path / "bin", "prometheus", "#!/bin/sh\nexec sleep 600\n")
    out = tmp_path / "02_deploy.ipynb"
    env = {**os.environ, "TQDM_DISABLE": "1", "PATH": f"{fake}:{os.environ['PATH']}"}
    paper = subprocess.Popen([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "02_deploy.ipynb"),
                              str(out), "-p", "env", "dev"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    target = LocalTarget("dev")
    kernels: list[int] = []
    output = b""

    def applied() -> bool:  # papermill saves the notebook after each cell: the apply cell has finished
        with contextlib.suppress(OSError, ValueError):
            return "dynamographdeployment/gtc-demo created" in json.dumps(json.loads(out.read_text())["cells"])
        return False

    try:
        poll(applied, timeout_s=120, what="the notebook's apply cell to finish")
        assert len(target.processes()) == 4
        kernels = [pid for pid in children_of(paper.pid) if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert kernels, "no kernel found under papermill"
        os.killpg(paper.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground job
        output, _ = paper.communicate(timeout=60)
        text = output.decode(errors="replace")
        assert paper.returncode not in (0, None), text[-2000:]
        # papermill's clean abort. (On the way out ipykernel may log a ZMQError from a socket papermill already
        # closed; nothing of gtcdemo's may appear in a traceback.)
        assert "Aborted!" in text and "/gtcdemo/" not in text, text[-3000:]
        # Partial results saved: the executed notebook, with what ran before the interrupt.
        nb = json.loads(out.read_text())
        assert nb["metadata"]["papermill"]["parameters"] == {"env": "dev"}
        assert "dynamographdeployment/gtc-demo created" in json.dumps(nb["cells"])
        poll(lambda: not any(Path(f"/proc/{k}").exists() for k in kernels), timeout_s=30, what="the kernel to exit")
    finally:
        if paper.poll() is None:
            os.killpg(paper.pid, signal.SIGKILL)
            paper.wait()
        target.teardown()
    assert target.leftover_pids() == []


def test_two_ups_at_once_make_one_graph_then_up_again_is_unchanged_and_down_twice_is_harmless(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "GTCDEMO_STATE": str(state)}
    ups = [subprocess.Popen([*CLI, "up", "--timeout", "180"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
    target = LocalTarget("dev", state_dir=state / "dev-gtc-demo")
    try:
        results = [p.communicate(timeout=240) for p in ups]
        assert [p.returncode for p in ups] == [0, 0], [r[1][-2000:] for r in results]
        outs = [r[0] for r in results]
        assert sum("graph started" in o for o in outs) == 1, outs
        assert sum("already running" in o for o in outs) == 1, outs
        state_json = json.loads((target.dir / "state.json").read_text())  # parses: never half-written
        assert len(state_json["processes"]) == 4
        assert supervisors_of(target.dir) == [target.supervisor_pid()]
        pids = [p["pid"] for p in target.processes()]
        assert len(set(pids)) == 4 and all(pids)
        assert all(port_state(p["pid"], port) == "own" for p in target.processes() for port in p["ports"].values())
        # Deploy twice: the second is unchanged everywhere and keeps the graph.
        again = subprocess.run([*CLI, "up", "--timeout", "60"], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        applied = re.findall(r"^\w+/\S+ (\w+)$", again.stdout, flags=re.M)
        assert applied == ["unchanged"] * 3 and "already running" in again.stdout, again.stdout
        assert [p["pid"] for p in target.processes()] == pids
        # Teardown twice: no error, the second has nothing to do.
        downs = [subprocess.run([*CLI, "down"], env=env, capture_output=True, text=True, timeout=120)
                 for _ in range(2)]
        assert [d.returncode for d in downs] == [0, 0], [d.stderr for d in downs]
        assert "dynamographdeployment/gtc-demo deleted" in downs[0].stdout
        assert downs[1].stdout.strip().endswith(": nothing") and "Traceback" not in downs[1].stderr
    finally:
        target.teardown()
    assert target.leftover_pids() == []
