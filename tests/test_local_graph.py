"""The local target on real parts: the Dynamo frontend, two mocker workers and Prometheus."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gtcdemo import inference, metrics
from gtcdemo.errors import DeploymentError, MissingDependencyError
from gtcdemo.local import LocalTarget, checks, port_free

from .support import poll

pytestmark = pytest.mark.local
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DECODE = "TrtllmDecodeWorker"


def test_status_is_a_pod_table_of_four_ready_processes(graph: LocalTarget) -> None:
    status = graph.status()
    frame = status.frame
    assert list(frame.columns) == ["name", "service", "role", "replica", "pid", "phase", "ready", "restarts", "age",
                                   "ports"]
    assert sorted(frame["role"]) == ["decode", "frontend", "prefill", "prometheus"]
    assert set(frame["phase"]) == {"Running"} and set(frame["ready"]) == {"1/1"}
    assert set(frame["restarts"]) == {0}
    assert "Running" in status._repr_html_() and "trtllmdecodeworker-0" in repr(status)


def test_unary_chat_completion_is_valid_json(graph: LocalTarget) -> None:
    with graph.frontend() as url:
        body = inference.chat_completion(url, MODEL, "Hello GTC", max_tokens=12, ignore_eos=True)
    assert body["model"] == MODEL
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 12
    assert body["usage"]["prompt_tokens"] > 3


def test_streaming_chat_completion_reports_ttft_and_tokens(graph: LocalTarget) -> None:
    seen: list[str] = []
    with graph.frontend() as url:
        result = inference.stream_chat(url, MODEL, "Stream to the audience", max_tokens=8, ignore_eos=True,
                                       on_text=seen.append)
    assert result.output_tokens == 8
    assert 0 < result.ttft_s <= result.latency_s
    assert result.itl_s is not None and result.itl_s > 0
    assert "".join(seen) == result.text and len(seen) >= 2
    assert result.finish_reason == "length"


def test_models_lists_the_served_name(graph: LocalTarget) -> None:
    with graph.frontend() as url:
        assert inference.list_models(url) == [MODEL]


def test_prometheus_sees_frontend_requests(graph: LocalTarget) -> None:
    with graph.frontend() as url:
        inference.chat_completion(url, MODEL, "count me", max_tokens=2)

    def total() -> float:
        with graph.prometheus() as prom:
            data = httpx.get(f"{prom}/api/v1/query", params={"query": "sum(dynamo_frontend_requests_total)"}).json()
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    assert poll(lambda: total() >= 2, timeout_s=30, what="dynamo_frontend_requests_total in Prometheus")
    with graph.prometheus() as prom:
        targets = httpx.get(f"{prom}/api/v1/targets").json()["data"]["activeTargets"]
    # As prometheus-operator labels the platform chart's PodMonitors' series on the cluster.
    assert {t["labels"]["job"] for t in targets} == {"dynamo-system/dynamo-frontend", "dynamo-system/dynamo-worker"}
    assert [t["labels"]["pod"] for t in metrics.frontend_targets(targets)] == ["frontend-0"]
    assert all(t["scrapeUrl"].startswith("http://127.0.0.1:") for t in targets)


def test_second_apply_is_unchanged_and_keeps_the_graph(graph: LocalTarget) -> None:
    pid = graph.supervisor_pid()
    result = LocalTarget("dev", state_dir=graph.dir).apply()
    assert {r["action"] for r in result.rows} == {"unchanged"}
    assert "already running" in result.note
    assert graph.supervisor_pid() == pid


def test_logs_have_each_process(graph: LocalTarget) -> None:
    logs = graph.logs()
    assert set(logs) == {"frontend-0", "trtllmprefillworker-0", "trtllmdecodeworker-0", "prometheus"}
    # the whole log: the graph is shared by the whole run, so its start line may be far from the tail
    assert "gtcdemo: starting frontend-0" in graph.logs("Frontend", tail=10**9)["frontend-0"]


def test_down_stops_everything_and_is_idempotent(make_local) -> None:
    target = make_local()
    target.apply()
    target.wait(timeout_s=120)
    ports = [p["ports"] for p in target.processes()]
    first = target.teardown()
    assert {(r["kind"], r["action"]) for r in first.rows} == {("ConfigMap", "deleted"),
                                                             ("DynamoGraphDeployment", "deleted")}
    assert target.leftover_pids() == [] and not target.is_running()
    for port_map in ports:
        for port in port_map.values():
            assert port_free(port), f"port {port} still bound after down"
    assert target.teardown().rows == []  # second teardown: no error, nothing to do


def test_down_works_after_the_starting_process_died(state_dir: Path) -> None:
    """A notebook kernel that started the graph and then died must not leave it unreachable."""
    code = "from gtcdemo.local import LocalTarget; t = LocalTarget('dev'); t.apply(); t.wait(timeout_s=120)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "GTCDEMO_STATE": str(state_dir)},
                   timeout=180)
    target = LocalTarget("dev")
    assert target.is_running() and len(target.leftover_pids()) == 5
    target.teardown()
    assert target.leftover_pids() == []


def test_down_after_supervisor_was_killed_stops_orphans(make_local) -> None:
    target = make_local()
    target.apply()
    target.wait(timeout_s=120)
    children = [p["pid"] for p in target.processes()]
    os.kill(target.supervisor_pid(), signal.SIGKILL)
    poll(lambda: not target.is_running(), timeout_s=10, what="supervisor to die")
    assert all(Path(f"/proc/{pid}").exists() for pid in children)  # orphans still running
    target.teardown()
    assert target.leftover_pids() == []
    poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout_s=10, what="orphans to go")


def test_scale_is_kept_by_the_target_not_the_bundle_and_apply_says_what_it_started(make_local) -> None:
    """`scale` leaves the env's bundle as its files say; the count lives in the state folder, so any LocalTarget
    (another process, a notebook) sees it and a later `apply` keeps it. `apply` says what it started: a graph
    whose supervisor died is started again even though no object changed."""
    target = make_local()
    first = target.apply()
    assert {(r["kind"], r["action"]) for r in first.rows if r["kind"] == "Process"} == {("Process", "started")}
    target.wait(timeout_s=120)
    scaled = target.scale(DECODE, 2)
    assert scaled.changed and {"kind": "Process", "name": "trtllmdecodeworker-1", "action": "started"} in scaled.rows
    assert target.bundle.services[DECODE]["replicas"] == 1  # the env's bundle: what its files say
    other = LocalTarget("dev")
    assert other.replicas(DECODE) == 2 and other.replicas("TrtllmPrefillWorker") == 1
    again = other.apply()
    assert not again.changed and {r["action"] for r in again.rows} == {"unchanged"}, again
    assert f"{DECODE}: kept its 2 scaled replicas (the manifest says 1)" in again.note
    target.wait(timeout_s=120)
    assert sorted(p["name"] for p in target.processes() if p["service"] == DECODE) == [
        "trtllmdecodeworker-0", "trtllmdecodeworker-1"]
    os.kill(target.supervisor_pid(), signal.SIGKILL)
    poll(lambda: not target.is_running(), timeout_s=10, what="supervisor to die")
    assert target.replicas(DECODE) == 0  # nothing runs
    restarted = LocalTarget("dev").apply()
    assert {r["action"] for r in restarted.rows if r["kind"] != "Process"} == {"unchanged"}
    assert restarted.changed and len([r for r in restarted.rows if r["action"] == "started"]) == 5, restarted
    assert target.replicas(DECODE) == 2
    target.teardown()
    assert LocalTarget("dev").state.scaled() == {}  # the next `up` runs what the manifest says


def test_process_exiting_at_startup_fails_wait_at_once_with_its_log(make_local, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "prometheus"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'boom: cannot open storage' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    target = make_local()
    target.apply()
    with pytest.raises(DeploymentError) as info:
        target.wait(timeout_s=300)
    message = str(info.value)
    assert "prometheus exited with code 3 during start-up" in message
    assert "boom: cannot open storage" in message


def test_taken_port_moves_the_frontend(make_local) -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            blocker.bind(("127.0.0.1", 8000))
            blocker.listen()
        except OSError:
            pass  # already taken by something else: the point stands
        target = make_local()
        target.apply()
        target.wait(timeout_s=120)
        assert target.frontend_url() != "http://127.0.0.1:8000"


def test_missing_prometheus_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"apt-get install -y prometheus"):
        checks.check_dependencies()


def test_cli_up_status_down(state_dir: Path) -> None:
    env = {**os.environ, "GTCDEMO_STATE": str(state_dir)}
    cli = [sys.executable, "-m", "gtcdemo"]
    up = subprocess.run([*cli, "up", "--timeout", "120"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    assert "dynamographdeployment/gtc-demo created" in up.stdout and "READY" in up.stdout
    again = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=180)
    assert "already running" in again.stdout
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.stdout.count("Running") == 4
    inference_out = subprocess.run([*cli, "test-inference", "--max-tokens", "4"], env=env, capture_output=True,
                                   text=True, timeout=60)
    assert json.loads(inference_out.stdout)["object"] == "chat.completion"
    down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "dynamographdeployment/gtc-demo deleted" in down.stdout
    assert LocalTarget("dev").leftover_pids() == []


def test_ctrl_c_during_up_leaves_nothing_running(state_dir: Path, tmp_path: Path) -> None:
    # A Prometheus that never becomes ready keeps `up` waiting until it is interrupted.
    fake = tmp_path / "bin" / "prometheus"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    env = {**os.environ, "GTCDEMO_STATE": str(state_dir), "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-m", "gtcdemo", "up", "--timeout", "300"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = LocalTarget("dev")
    try:
        poll(lambda: len(target.processes()) == 4, timeout_s=60, what="processes to start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "stopping what was started" in err
    assert target.leftover_pids() == []
