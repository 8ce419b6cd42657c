"""Bad input on the cluster target (issue 6), on a real kube-apiserver + etcd (the tests play the operator and kubelet):

- the cluster rows of the bad-input table in tests/test_bad_input.py (one table for every kind of input), each
  checked against the API server: every object keeps its resourceVersion, nothing is created;
- deploy twice (the second is all `unchanged`) and teardown twice (no error), through the `gtcdemo` command;
- the HF token planted in the `hf-token` Secret (and in the environment) never appears in any output of the
  cluster commands, the preflight notebook, or the port-forward's command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support import poll
from tests.test_bad_input import CASES, Ctx, make_ctx, params_for, run_case
from tests.test_secrets import TOKEN, fake_kubectl, kubectl_calls, leaks, scan_tree

from .envtest import CLEANUP_KINDS, NAMESPACES, _rest

NS = "dynamo-workload"
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "gtcdemo"]
WATCHED = (*CLEANUP_KINDS, ("api/v1", "namespaces", False),
           ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False))


def api_objects(api: Any) -> dict[tuple[str, str, str, str], str]:
    """(kind, namespace, name, uid) -> resourceVersion of every object that matters here."""
    out = {}
    for prefix, plural, namespaced in WATCHED:
        try:
            items = _rest(api, "GET", f"/{prefix}/{plural}")["items"]
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        for obj in items:
            meta = obj["metadata"]
            if namespaced and meta.get("namespace") not in NAMESPACES:
                continue
            out[(plural, meta.get("namespace", ""), meta["name"], meta["uid"])] = meta["resourceVersion"]
    return out


CLUSTER_CASES = [c for c in CASES if c.cluster]


@pytest.mark.parametrize("case", params_for(CLUSTER_CASES))
def test_bad_cluster_input_is_refused_and_nothing_changes_on_the_api_server(case, platform, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ctx: Ctx = make_ctx(tmp_path, monkeypatch, kube=platform)
    run_case(case, ctx, observe=lambda: api_objects(platform.api_client))


# -- the command line against the API server -------------------------------------------------------------------------
def in_background(action: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def dgd_exists(op) -> bool:
    try:
        op.get_dgd()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def play_operator_until_ready(op) -> None:
    poll(lambda: dgd_exists(op), timeout_s=60, what="the DGD to be applied")
    op.reconcile()
    op.all_ready()


def play_operator_cleanup(op) -> None:
    poll(op.deletion_requested, timeout_s=60, what="the DGD to be deleted")  # held by the operator's finalizer
    op.delete_dgd_pods()


def cli_env(kube, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GTCDEMO_KUBE_CONTEXT"}
    return {**env, "KUBECONFIG": str(kube.kubeconfig), **extra}


def gtcdemo(env: dict[str, str], *args: str, rc: int = 0, operator: Callable[[], object] | None = None) -> str:
    thread, errors = in_background(operator) if operator else (None, [])
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=180)
    if thread is not None:
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors, errors
    output = proc.stdout + proc.stderr
    assert proc.returncode == rc and "Traceback" not in output, f"`gtcdemo {' '.join(args)}`:\n{output[-3000:]}"
    return output


def actions(output: str) -> list[tuple[str, str]]:
    return re.findall(r"^(\w+)/\S+ (created|configured|unchanged|deleted)$", output, flags=re.M)


def test_deploy_twice_is_unchanged_and_teardown_twice_is_harmless_on_the_cluster(platform) -> None:
    op = platform.operator
    env = cli_env(platform)
    core = client.CoreV1Api(platform.api_client)
    pvc = core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS).metadata.resource_version
    first = gtcdemo(env, "up", "--target", "cluster", "--timeout", "120",
                    operator=lambda: play_operator_until_ready(op))
    assert actions(first) == [("persistentvolumeclaim", "unchanged"), ("configmap", "created"),
                              ("dynamographdeployment", "created")] and "READY" in first
    objects = api_objects(platform.api_client)
    second = gtcdemo(env, "up", "--target", "cluster", "--timeout", "60")
    assert actions(second) == [("persistentvolumeclaim", "unchanged"), ("configmap", "unchanged"),
                               ("dynamographdeployment", "unchanged")] and "READY" in second
    assert api_objects(platform.api_client) == objects  # unchanged means unchanged: no resourceVersion moved
    down = gtcdemo(env, "down", "--target", "cluster", operator=lambda: play_operator_cleanup(op))
    assert actions(down) == [("dynamographdeployment", "deleted"), ("configmap", "deleted")]
    again = gtcdemo(env, "down", "--target", "cluster")
    assert actions(again) == [] and again.strip().endswith(": nothing")
    assert op.dgd_pods() == []
    assert core.read_namespaced_persistent_volume_claim("model-nfs-pvc", NS).metadata.resource_version == pvc


def test_the_hf_token_in_the_cluster_secret_never_reaches_an_output(kube, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gtcdemo import workbook

    op = kube.operator
    op.demo_platform(fake_token=TOKEN)
    folder, log = fake_kubectl(tmp_path / "bin")
    env = cli_env(kube, HF_TOKEN=TOKEN, PATH=f"{folder}:{os.environ['PATH']}", FAKE_KUBECTL_LOG=str(log),
                  GTCDEMO_STATE=str(tmp_path / "state"))
    outputs = [
        gtcdemo(env, "preflight", "--target", "cluster"),
        gtcdemo(env, "validate"), gtcdemo(env, "render"),
        gtcdemo(env, "up", "--target", "cluster", "--timeout", "120", operator=lambda: play_operator_until_ready(op)),
        gtcdemo(env, "status", "--target", "cluster"), gtcdemo(env, "demo-status", "--target", "cluster"),
        gtcdemo(env, "logs", "--target", "cluster"),
        gtcdemo(env, "test-inference", "--target", "cluster", "--max-tokens", "4"),
        gtcdemo(env, "down", "--target", "cluster", operator=lambda: play_operator_cleanup(op)),
    ]
    assert "secret hf-token: present (data not read)" in outputs[0] and "all checks passed" in outputs[0]
    assert '"object": "chat.completion"' in outputs[7] and "==> gtc-demo-0-trtllmdecodeworker-" in outputs[6]
    calls = kubectl_calls(log)
    assert calls and all(c["argv"][c["argv"].index("--address") + 1] == "127.0.0.1" for c in calls)
    for key, value in {"KUBECONFIG": str(kube.kubeconfig), "HF_TOKEN": TOKEN}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GTCDEMO_KUBE_CONTEXT", raising=False)
    notebook = workbook.run_notebook(REPO / "notebooks" / "00_preflight.ipynb", tmp_path / "nb",
                                     {"env": "dev", "target": "cluster"})
    assert "preflight ok: True" in notebook.read_text()
    leaked = [o[:300] for o in outputs if leaks(o)]
    assert leaked == [], f"the token appears in: {leaked}"
    assert not leaks(log.read_bytes())
    scanned, found = scan_tree(tmp_path / "nb")
    assert scanned >= 1 and found == []
    print(f"\n[secrets] cluster: {len(outputs)} command outputs, {len(calls)} kubectl calls and the executed "
          "preflight notebook scanned: no token")


def test_the_api_server_observer_sees_what_a_wrong_apply_would_change(platform) -> None:
    """The "nothing changed" check above can fail: a created object and a patched status both show."""
    core = client.CoreV1Api(platform.api_client)
    before = api_objects(platform.api_client)
    core.patch_namespaced_persistent_volume_claim_status("model-nfs-pvc", NS, {"status": {"phase": "Lost"}})
    patched = api_objects(platform.api_client)
    assert patched != before and patched.keys() == before.keys()
    core.create_namespaced_config_map(NS, {"metadata": {"name": "observer-probe"}})
    assert len(api_objects(platform.api_client)) == len(before) + 1
