"""Issue 12 on real processes: the graph dies with its supervisor, `status` says what happened, and the local graph
enforces the model's context as the engine on the cluster does.

The supervisor tests run the real ``python -m gtcdemo.local.supervisor`` on a small plan (``sleep`` directly, and
through the 0.8 release launcher ``python -m gtcdemo.release``, which execs its program), so they need no Dynamo; the
bad-input table kills the supervisor of a real Dynamo graph (``state-status-after-the-supervisor-was-killed``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gtcdemo import load, modeldir
from gtcdemo.local import LocalTarget, alive, proc_starttime, write_json
from tests.support import poll

pytestmark = pytest.mark.local


def _proc(name: str, argv: list[str], state: Path) -> dict:
    return {"name": name, "service": "Frontend" if name.startswith("frontend") else "TrtllmDecodeWorker",
            "role": "frontend" if name.startswith("frontend") else "decode", "replica": 0, "ports": {"http": 1},
            "health": "http://127.0.0.1:1/health", "digest": name, "log": str(state / "logs" / f"{name}.log"),
            "argv": argv, "env": {}}


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[LocalTarget, subprocess.Popen, list[dict]]]:
    """A supervisor running two processes: `sleep` itself, and `sleep` exec'd by the 0.8 release launcher."""
    state = tmp_path / "dev-gtc-demo"
    state.mkdir()
    procs = [_proc("frontend-0", ["/bin/sleep", "600"], state),
             _proc("trtllmdecodeworker-0", [sys.executable, "-m", "gtcdemo.release", "--", "/bin/sleep", "601"], state)]
    write_json(state / "plan.json", {"procs": procs, "prometheus_config": None})
    supervisor = subprocess.Popen([sys.executable, "-m", "gtcdemo.local.supervisor", str(state)],
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = LocalTarget("dev", state_dir=state)
    try:
        running = poll(lambda: [p for p in target.processes() if p["pid"]] if len(
            [p for p in target.processes() if p["pid"]]) == 2 else None, timeout_s=30, what="both processes")
        poll(lambda: all(Path(f"/proc/{p['pid']}/cmdline").read_bytes().startswith(b"/bin/sleep") for p in running),
             timeout_s=30, what="the launcher to exec sleep")
        yield target, supervisor, running
    finally:
        with contextlib.suppress(ProcessLookupError):
            supervisor.kill()
        supervisor.wait()
        for p in running if "running" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGKILL)


def test_the_processes_die_with_their_supervisor_even_when_it_is_sigkilled(supervised) -> None:
    target, supervisor, running = supervised
    supervisor.send_signal(signal.SIGKILL)  # as the OOM killer would: no chance to stop anything itself
    supervisor.wait()
    poll(lambda: not any(alive(p["pid"], p["starttime"]) for p in running), timeout_s=10,
         what="the supervisor's processes to die with it (PR_SET_PDEATHSIG), the launcher's exec'd one included")
    status = target.status()
    assert status.title == (f"dev-gtc-demo (local): not running: its supervisor (pid {supervisor.pid}) was killed or "
                            "crashed; its 2 processes stopped with it")
    assert target.not_running().fix == "start it: gtcdemo up --env dev"


def test_status_names_the_processes_a_dead_supervisor_left_running(tmp_path: Path) -> None:
    """A graph started before children died with their owner (or whose child escaped): status says what still
    runs, with pids and ports, instead of 'not running' while the ports answer; `down` stops them."""
    state = tmp_path / "dev-gtc-demo"
    state.mkdir()
    gone = subprocess.Popen(["true"])
    gone_start = proc_starttime(gone.pid)
    gone.wait()
    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        write_json(state / "supervisor.json", {"pid": gone.pid, "starttime": gone_start or 1})
        record = dict(_proc("frontend-0", ["sleep"], state), pid=orphan.pid, starttime=proc_starttime(orphan.pid),
                      phase="Running", restarts=0, created_at=0, last_exit_code=None, ports={"http": 8000})
        write_json(state / "state.json", {"supervisor": {"pid": gone.pid}, "processes": {"frontend-0": record}})
        target = LocalTarget("dev", state_dir=state)
        status = target.status()
        assert status.title == (f"dev-gtc-demo (local): not running: its supervisor (pid {gone.pid}) was killed or "
                                f"crashed; still running without it: frontend-0 (pid {orphan.pid}, http:8000)")
        assert target.not_running().fix == "stop them: gtcdemo down --env dev; then start it: gtcdemo up --env dev"
        assert list(status.frame["phase"]) == ["Orphaned"] and list(status.frame["pid"]) == [orphan.pid]
        target.teardown()
        # Stopped by `down`, and cleanly: SIGTERM first (wait raises TimeoutExpired if it is still running).
        assert orphan.wait(timeout=10) == -signal.SIGTERM
    finally:
        with contextlib.suppress(ProcessLookupError):
            orphan.kill()
        orphan.wait()


def test_the_local_graph_enforces_the_models_context(graph: LocalTarget) -> None:
    """TRT-LLM serves at most max_seq_len tokens (default: the model's max_position_embeddings, 131072 for
    Llama-3.1-8B): the mocker gets the same --max-model-len, so the rehearsal refuses what the stage refuses."""
    workers = [p for p in json.loads((graph.dir / "plan.json").read_text())["procs"] if "system" in p["ports"]]
    assert all(p["argv"][p["argv"].index("--max-model-len") + 1] == "131072" for p in workers)
    url = graph.frontend_url() + "/v1/chat/completions"

    def body(prompt_tokens: int, output_tokens: int) -> dict:
        spec = load.LoadSpec(model=modeldir.SERVED_MODEL_NAME, concurrency=1, num_requests=1,
                             input_tokens_mean=prompt_tokens, output_tokens=output_tokens)
        request = {**json.loads(load.PromptSource(spec).body(0)), "stream": False}
        request.pop("stream_options")
        return request

    over = httpx.post(url, json=body(140000, 1), timeout=120)
    assert over.status_code >= 400, over.text[:300]  # today: 200, a 140014-token prompt served
    # Prompt + output beyond the context: the engine stops at the limit (finish_reason length).
    near = httpx.post(url, json=body(131000, 100), timeout=120).json()
    assert near["usage"]["total_tokens"] <= 131072 and near["choices"][0]["finish_reason"] == "length"
