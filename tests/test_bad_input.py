"""Bad input is refused before anything changes, and the refusal says what is wrong, where, and what to do.

ONE table (``CASES``) spans engine configs, manifests, parameters (CLI and notebooks) and cluster preconditions.
Each row breaks one input in a private copy of the project (or on the test API server), feeds it through the entry
point a user would use (`gtcdemo validate/up/render/...`, a notebook's parameter check or papermill itself,
``LocalTarget``/``ClusterTarget``), and asserts on the MESSAGE: its problem, its location and its fix, never only on
the exception type. Then it checks that nothing changed: no local state folder, no process, the project copy
untouched; for cluster rows every object on the real kube-apiserver keeps its resourceVersion.

The non-cluster rows run here. The cluster rows need the API server fixtures, which pytest only shows to
``tests/cluster/``: ``tests/cluster/test_cluster_bad_input.py`` runs them from this same table.

These rows complement (and do not repeat) the ~75 validator-level tables in ``tests/unit/test_engine_config.py``
(BAD_CONFIGS) and ``tests/unit/test_bundle.py`` (BAD_DGDS): the inputs here are different ones, and they go through
the user's entry points, which is where "nothing was applied" can be checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gtcdemo.errors import GtcdemoError
from tests.support import REPO, copy_project, mentioning, poll

FAKE_TOKEN = "hf_GTCDEMO_FAKE_BADINPUT_0123456789abcdef"
DGD = "manifests/dev/20-dgd-gtc-demo.yaml"
CM = "manifests/dev/10-engine-configmap.yaml"
PVC = "manifests/dev/00-model-nfs-pvc.yaml"
DECODE = "engine-configs/dev/decode.yaml"
PREFILL = "engine-configs/dev/prefill.yaml"
AT = "manifests/dev DGD gtc-demo.spec.services"  # where DGD problems are located


# -- the context a row runs in -----------------------------------------------------------------------------------
@dataclass
class Ctx:
    root: Path                     # private copy of engine-configs/ and manifests/ (GTCDEMO_ROOT)
    state: Path                    # GTCDEMO_STATE: must still be empty afterwards
    tmp: Path
    api: Any = None                # kubernetes ApiClient of the test API server (cluster rows)
    kubeconfig: Path | None = None  # its kubeconfig (cluster rows; a row may swap in a broken copy)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for subprocesses


def make_ctx(tmp: Path, monkeypatch: pytest.MonkeyPatch, kube: Any = None) -> Ctx:
    """Copy the project's inputs and point gtcdemo (in-process and in subprocesses) at the copy."""
    root = copy_project(tmp / "repo", monkeypatch)
    state = tmp / "state"
    monkeypatch.setenv("GTCDEMO_STATE", str(state))
    monkeypatch.delenv("GTCDEMO_KUBE_CONTEXT", raising=False)
    if kube is None:
        return Ctx(root=root, state=state, tmp=tmp)
    return Ctx(root=root, state=state, tmp=tmp, api=kube.api_client, kubeconfig=Path(kube.kubeconfig),
               env={"KUBECONFIG": str(kube.kubeconfig)})


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def stop_anything(state_root: Path) -> None:
    """Stop whatever a row that wrongly went ahead started (without loading the bundle, which may be broken)."""
    from gtcdemo.local import alive

    if not state_root.is_dir():
        return
    from gtcdemo.local import release_claims

    for folder in state_root.iterdir():
        recorded = []
        with contextlib.suppress(OSError, ValueError):
            recorded.append((json.loads((folder / "supervisor.json").read_text()), os.kill))
        with contextlib.suppress(OSError, ValueError):
            recorded += [(p, os.killpg) for p in json.loads((folder / "state.json").read_text())["processes"].values()]
        for record, kill in recorded:
            if alive(record.get("pid"), record.get("starttime")):
                with contextlib.suppress(ProcessLookupError):
                    kill(record["pid"], signal.SIGKILL)
        release_claims(folder)


# What a running graph's supervisor and processes write on their own; everything else in the state folder only a
# command changes.
VOLATILE = ("state.json", "supervisor.log", "logs", "prometheus", "discovery")


def local_state(state: Path) -> dict[str, Any]:
    """The local target's footprint: state files a command writes, port claims and processes of this state root."""
    from gtcdemo.local import PORT_CLAIMS, alive

    files = {}
    for path in sorted(state.rglob("*")) if state.exists() else []:
        rel = path.relative_to(state)
        if any(part in VOLATILE or part.startswith(".") for part in rel.parts[1:]):
            continue
        files[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    claims = {}
    for path in sorted(PORT_CLAIMS.glob("*")) if PORT_CLAIMS.exists() else []:
        with contextlib.suppress(OSError):
            if path.read_text().startswith(str(state)):
                claims[path.name] = path.read_text()
    processes = set()
    for folder in state.iterdir() if state.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            for p in json.loads((folder / "state.json").read_text())["processes"].values():
                if alive(p.get("pid"), p.get("starttime")):
                    processes.add((p["pid"], p["name"]))
    for pid, command in mentioning(state).items():  # whatever names the state folder (supervisors, Prometheus...)
        processes.add((pid, command.rsplit(" ", 1)[-1][-60:]))
    return {"files": files, "port claims": claims, "processes": processes}


def start_graph(ctx: Ctx) -> None:
    """A running dev graph in the row's state folder (what `gtcdemo up` leaves)."""
    from gtcdemo.local import LocalTarget

    target = LocalTarget("dev")
    target.apply()
    target.wait(timeout_s=180)


def kill_supervisor(ctx: Ctx) -> None:
    """The running graph's supervisor killed with SIGKILL, as the OOM killer would; its children must follow."""
    from gtcdemo.local import LocalTarget, alive

    start_graph(ctx)
    target = LocalTarget("dev")
    children = [p for p in json.loads((target.dir / "state.json").read_text())["processes"].values()]
    os.kill(target.supervisor_pid(), signal.SIGKILL)
    poll(lambda: not any(alive(p["pid"], p["starttime"]) for p in children), timeout_s=20,
         what="the graph's processes to stop after their supervisor was killed (they keep serving, orphaned)")


# -- how a row breaks its input ------------------------------------------------------------------------------------
def text_edit(rel: str, old: str, new: str, count: int = 1) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}: the committed file changed, update this row"
        path.write_text(text.replace(old, new, count))
    return setup


def write(rel: str, content: str | bytes) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.root / rel
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def append(rel: str, content: bytes) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        with open(ctx.root / rel, "ab") as handle:
            handle.write(content)
    return setup


def remove(rel: str) -> Callable[[Ctx], None]:
    return lambda ctx: (ctx.root / rel).unlink()


def dgd_edit(mutate: Callable[[dict], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.root / DGD
        dgd = yaml.safe_load(path.read_text())
        mutate(dgd)
        path.write_text(yaml.safe_dump(dgd, sort_keys=False))
    return setup


def svc(dgd: dict, name: str) -> dict:
    return dgd["spec"]["services"][name]


def main_container(dgd: dict, name: str) -> dict:
    return svc(dgd, name)["extraPodSpec"]["mainContainer"]


def set_arg(service: str, flag: str, value: str) -> Callable[[dict], None]:
    def mutate(dgd: dict) -> None:
        args = svc(dgd, service)["extraPodSpec"]["mainContainer"]["args"]
        args[args.index(flag) + 1] = value
    return mutate


def both(*setups: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)
    return setup


def render_write(ctx: Ctx) -> None:
    """Regenerate the committed ConfigMap in the copy (what `gtcdemo render --write` does), so no drift masks."""
    from gtcdemo import bundle

    bundle.write_configmap("dev")


# -- how a row feeds it to the product ----------------------------------------------------------------------------
def run_cli(ctx: Ctx, *args: str, rc: int = 2, timeout_s: float = 120) -> str:
    """`gtcdemo ARGS` as a user runs it; it must exit with ``rc`` (2: refused) and no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "GTCDEMO_KUBE_CONTEXT"}
    env.update(GTCDEMO_ROOT=str(ctx.root), GTCDEMO_STATE=str(ctx.state), **ctx.env)
    proc = subprocess.run([sys.executable, "-m", "gtcdemo", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, cwd=ctx.tmp)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, f"`gtcdemo {' '.join(args)}` crashed instead of explaining:\n{output}"
    assert proc.returncode == rc, f"`gtcdemo {' '.join(args)}` exited {proc.returncode}, not {rc}:\n{output}"
    return output


def cli(*args: str, rc: int = 2) -> Callable[[Ctx], str]:
    return lambda ctx: run_cli(ctx, *args, rc=rc)


def refused(call: Callable[[], object]) -> str:
    """The message of the GtcdemoError ``call`` raises; any other outcome (accepted, crashed) fails the row."""
    try:
        result = call()
    except GtcdemoError as exc:
        return str(exc)
    except Exception as exc:
        raise AssertionError(f"crashed with {type(exc).__name__}: {exc} (expected an explained error)") from exc
    raise AssertionError(f"accepted instead of refused: {result!r}")


def in_process(act: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
    """Marks an entry point that runs in the test's process (no CLI, kernel or graph): such rows are fast."""
    act.in_process = True  # type: ignore[attr-defined]
    return act


@in_process
def local_apply(ctx: Ctx) -> str:
    from gtcdemo.local import LocalTarget

    return refused(lambda: LocalTarget("dev").apply())


def notebook_parameters(notebook: str, **overrides: Any) -> Callable:
    """The check a step notebook's first code cell runs, on the namespace papermill + IPython leave behind: the
    parameters cell's defaults (and their annotations), then papermill's injected ``# Parameters`` cell (also in
    the kernel's ``In``)."""
    def act(ctx: Ctx) -> str:
        from gtcdemo import params

        cells = json.loads((REPO / "notebooks" / notebook).read_text())["cells"]
        defaults = "".join(next(c["source"] for c in cells if "parameters" in c["metadata"].get("tags", [])))
        injected = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in overrides.items())
        namespace: dict[str, Any] = {}
        exec(defaults, namespace)  # noqa: S102 - the notebook's own parameters cell
        exec(injected, namespace)  # noqa: S102 - what papermill injects
        namespace["In"] = ["", defaults, injected]
        return refused(lambda: params.check(namespace))
    return in_process(act)


def papermill_cli(notebook: str, *args: str) -> Callable[[Ctx], str]:
    """`papermill notebooks/NB out.ipynb ARGS` (the README's headless run): it must fail in the parameter check."""
    def act(ctx: Ctx) -> str:
        out = ctx.tmp / f"out-{notebook}"
        env = {**os.environ, "GTCDEMO_ROOT": str(ctx.root), "GTCDEMO_STATE": str(ctx.state), "TQDM_DISABLE": "1"}
        proc = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / notebook), str(out),
                               *args], env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
        assert proc.returncode != 0, f"papermill ran {notebook} to the end with {args}:\n{proc.stderr[-2000:]}"
        errors = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert errors and errors[0]["ename"] == "ConfigError", f"failed otherwise: {errors or proc.stderr[-2000:]}"
        return f"{errors[0]['ename']}: {errors[0]['evalue']}"
    return act


def run_notebook_api(notebook: str, parameters: dict) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        from gtcdemo import workbook

        return refused(lambda: workbook.run_notebook(REPO / "notebooks" / notebook, ctx.tmp / "nb-out", parameters))
    return in_process(act)


# -- cluster rows (run by tests/cluster/test_cluster_bad_input.py with the real API server) ----------------------
def cluster_apply(ctx: Ctx) -> str:
    from gtcdemo.cluster import ClusterTarget

    return refused(lambda: ClusterTarget("dev", kubeconfig=str(ctx.kubeconfig)).apply())


def kubeconfig_edit(mutate: Callable[[dict], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        assert ctx.kubeconfig is not None
        config = yaml.safe_load(ctx.kubeconfig.read_text())
        mutate(config)
        ctx.kubeconfig = ctx.tmp / "kubeconfig"
        ctx.kubeconfig.write_text(yaml.safe_dump(config))
        ctx.env["KUBECONFIG"] = str(ctx.kubeconfig)
    return setup


def _current(context: str) -> Callable[[dict], None]:
    return lambda config: config.__setitem__("current-context", context)


def _unreachable(config: dict) -> None:
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens on port 1


def delete_secret(ctx: Ctx) -> None:
    from kubernetes import client

    client.CoreV1Api(ctx.api).delete_namespaced_secret("hf-token", "dynamo-workload")


def pvc_pending(ctx: Ctx) -> None:
    from kubernetes import client

    client.CoreV1Api(ctx.api).patch_namespaced_persistent_volume_claim_status(
        "model-nfs-pvc", "dynamo-workload", {"status": {"phase": "Pending"}})


def delete_kai_queue(ctx: Ctx) -> None:
    from kubernetes import client

    client.CustomObjectsApi(ctx.api).delete_cluster_custom_object("scheduling.run.ai", "v2", "queues", "dynamo")


def cluster_deployed(ctx: Ctx) -> None:
    """The bundle applied to the test API server (the objects go with the API server fixture)."""
    from gtcdemo.cluster import ClusterTarget

    ClusterTarget("dev", kubeconfig=str(ctx.kubeconfig)).apply()


DGD_CRD = "dynamographdeployments.nvidia.com"


def delete_dgd_crd(ctx: Ctx) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(ctx.api)
    ext.delete_custom_resource_definition(DGD_CRD)

    def gone() -> bool:
        try:
            ext.read_custom_resource_definition(DGD_CRD)
            return False
        except ApiException as exc:
            return exc.status == 404
    poll(gone, timeout_s=30, what="the DGD CRD to be removed")


def restore_dgd_crd(ctx: Ctx) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(ctx.api)
    crd = yaml.safe_load((REPO / "tests" / "cluster" / "crds" / "dynamographdeployments.yaml").read_text())
    with contextlib.suppress(ApiException):
        ext.create_custom_resource_definition(crd)
    poll(lambda: any(c.type == "Established" and c.status == "True"
                     for c in ext.read_custom_resource_definition(DGD_CRD).status.conditions or []),
         timeout_s=30, what="the DGD CRD to be re-established")


# -- the table -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    area: str                        # engine config | manifest | parameter (CLI|notebook|API) | cluster
    entry: str                       # the entry point the input goes through
    setup: Callable[[Ctx], None] | None
    act: Callable[[Ctx], str]        # returns the message the user sees; fails when accepted or crashed
    what: tuple[str, ...]            # the problem
    where: tuple[str, ...]           # the location (file and key path, parameter, context/namespace...)
    fix: tuple[str, ...]             # what to do
    needs: str = ""                  # the change in gtcdemo/ this row required (all made; kept as the why)
    cleanup: Callable[[Ctx], None] | None = None

    def __post_init__(self) -> None:
        assert self.what and self.where and self.fix, f"{self.id}: every row asserts what, where and what to do"

    @property
    def cluster(self) -> bool:
        return self.area == "cluster"

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        """`local` when the row starts a graph; `unit` (`make unit`) when everything runs in this process."""
        if self.setup in (start_graph, kill_supervisor):
            return [pytest.mark.local]
        return [pytest.mark.unit] if getattr(self.act, "in_process", False) else []


BROKEN_UTF8 = "# r\xe9glage du d\xe9codage (saved as Latin-1 by an editor)\n".encode("latin-1")
SECOND_DGD = "---\n" + (REPO / DGD).read_text().replace("name: gtc-demo", "name: gtc-demo-copy", 1)
SECRET_YAML = (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: hf-token\n  namespace: dynamo-workload\n"
               f"stringData:\n  HF_TOKEN: {FAKE_TOKEN}\n")
NEEDS_CLI_NUMBERS = ("cli.py:build_parser — give --timeout (up, wait, demo) an argparse type that refuses values "
                     "<= 0 and --tail / --max-tokens one that refuses values < 1, e.g. `argument --timeout: must be "
                     "> 0 seconds, got 0 (e.g. --timeout 600)`; today `up --timeout 0` starts the graph and then "
                     "tears it down, and `logs --tail -3` prints lines[3:]")
NEEDS_UNREFERENCED_KEY = ("bundle/validate.py:validate_dgd — report every ConfigMap key that no worker's "
                          "--extra-engine-args "
                          "references (where=<DGD>.spec.services, naming the key, fix: point the worker's "
                          "--extra-engine-args at /engine-configs/<key> or remove engine-configs/<env>/<key>)")

ENVS = sorted(p.name for p in (REPO / "engine-configs").iterdir() if (REPO / "manifests" / p.name).is_dir())
NOT_RUNNING = "dev-gtc-demo (local) is not running"
STATE_FOLDER = "state/dev-gtc-demo"
START_IT = "start it: gtcdemo up --env dev"
LONG_DGD = "gtc-demo-disaggregated-serving-of-llama-3-1-8b-instruct-for-keynote-26"  # 70 characters
LONG_SERVICE = "TrtllmDecodeWorkerForTheGtcKeynoteDemo"  # 38 + len("gtc-demo") = 46 > Grove's 45

CASES: list[Case] = [
    # ---- engine configs -------------------------------------------------------------------------------------------
    Case("engine-unknown-key", "engine config", "gtcdemo validate",
         text_edit(PREFILL, "enable_chunked_prefill: true", "enable_chunked_prefil: true"), cli("validate"),
         ("unknown key 'enable_chunked_prefil'",), (f"{PREFILL}: enable_chunked_prefil",),
         ("did you mean 'enable_chunked_prefill'?",)),
    Case("engine-quoted-int", "engine config", "gtcdemo up",
         text_edit(DECODE, "max_num_tokens: 8192", 'max_num_tokens: "8192"'), cli("up", "--timeout", "60"),
         ("must be an integer, got str '8192'", "nothing was applied"), (f"{DECODE}: max_num_tokens",),
         ("change max_num_tokens",)),
    Case("engine-percent-not-fraction", "engine config", "LocalTarget.apply",
         text_edit(PREFILL, "free_gpu_memory_fraction: 0.85", "free_gpu_memory_fraction: 85"), local_apply,
         ("must be in (0, 1], got 85",), (f"{PREFILL}: kv_cache_config.free_gpu_memory_fraction",),
         ("kv_cache_config.free_gpu_memory_fraction: it must be in (0, 1]",)),
    Case("engine-yaml-unclosed-flow", "engine config", "gtcdemo up",
         text_edit(DECODE, "cuda_graph_config:\n  max_batch_size: 64\n", "cuda_graph_config: {max_batch_size: 64\n"),
         cli("up"), ("YAML syntax error at line",), (DECODE,), ("fix the YAML",)),
    Case("engine-empty-decode", "engine config", "gtcdemo render", write(DECODE, ""), cli("render"),
         ("the file is empty or not a YAML mapping",), (DECODE,), ("`key: value` lines",)),
    Case("engine-missing-decode", "engine config", "gtcdemo up", remove(DECODE), cli("up"),
         ("missing decode.yaml",), ("engine-configs/dev",), ("create decode.yaml",)),
    Case("engine-decode-capitalised", "engine config", "gtcdemo validate",
         lambda ctx: (ctx.root / DECODE).rename(ctx.root / "engine-configs/dev/Decode.yaml"), cli("validate"),
         ("missing decode.yaml",), ("engine-configs/dev",), ("create decode.yaml",)),
    Case("engine-quoted-bool", "engine config", "LocalTarget.apply",
         text_edit(DECODE, "trust_remote_code: true", 'trust_remote_code: "yes"'), local_apply,
         ("must be true or false, got 'yes'",), (f"{DECODE}: trust_remote_code",), ("change trust_remote_code",)),
    Case("engine-choice-lowercase", "engine config", "gtcdemo validate",
         text_edit(DECODE, "  backend: DEFAULT", "  backend: nixl"), cli("validate"),
         ("must be one of DEFAULT, UCX, NIXL, MPI, got 'nixl'",), (f"{DECODE}: cache_transceiver_config.backend",),
         ("change cache_transceiver_config.backend",)),
    Case("engine-two-files-two-problems", "engine config", "gtcdemo up",
         both(text_edit(PREFILL, "max_batch_size: 16", "max_batch_size: -16"),
              text_edit(DECODE, "max_batch_size: 64", "max_batch_sise: 64")), cli("up"),
         ("2 problem(s) found, nothing was applied", "must be >= 1, got -16", "unknown key 'max_batch_sise'"),
         (f"{PREFILL}: max_batch_size", f"{DECODE}: max_batch_sise"), ("did you mean 'max_batch_size'?",)),
    Case("engine-tp-only-in-prefill", "engine config", "LocalTarget.apply",
         text_edit(PREFILL, "tensor_parallel_size: 1", "tensor_parallel_size: 2"), local_apply,
         ("prefill has tensor_parallel_size=2 but decode has 1",), (f"{DECODE}: tensor_parallel_size",),
         ("set the same tensor_parallel_size in prefill.yaml and decode.yaml",)),
    Case("engine-float-seq-len", "engine config", "gtcdemo validate", append(DECODE, b"max_seq_len: 131072.0\n"),
         cli("validate"), ("must be an integer, got float 131072.0",), (f"{DECODE}: max_seq_len",),
         ("change max_seq_len",)),
    Case("engine-not-utf8", "engine config", "gtcdemo validate", append(DECODE, BROKEN_UTF8), cli("validate"),
         ("UTF-8",), (DECODE,), ("UTF-8",),
         needs="engine_config.py:parse — catch UnicodeDecodeError from read_text and raise ConfigError('not UTF-8 "
               "text: byte 0x.. at position N', where=<file>, fix='save the file as UTF-8'); today `gtcdemo "
               "validate` dies with a UnicodeDecodeError traceback"),
    # ---- manifests -----------------------------------------------------------------------------------------------
    Case("manifest-typo-service-field", "manifest", "gtcdemo up",
         dgd_edit(lambda d: svc(d, "Frontend").__setitem__("volumeMount", svc(d, "Frontend").pop("volumeMounts"))),
         cli("up"), ("unknown field 'volumeMount' (the API server would silently drop it)",),
         (f"{AT}.Frontend.volumeMount",), ("did you mean 'volumeMounts'?",)),
    Case("manifest-mount-names-no-pvc", "manifest", "LocalTarget.apply",
         dgd_edit(lambda d: svc(d, "TrtllmDecodeWorker")["volumeMounts"][0].__setitem__("name", "model-pvc")),
         local_apply, ("names PVC 'model-pvc', which is not registered in spec.pvcs ['model-nfs-pvc']",),
         (f"{AT}.TrtllmDecodeWorker.volumeMounts[0].name",), ("add `- name: model-pvc` to spec.pvcs",)),
    Case("manifest-configmap-key-unreferenced", "manifest", "gtcdemo validate",
         both(write("engine-configs/dev/spare.yaml", (REPO / DECODE).read_text()), render_write), cli("validate"),
         ("'spare.yaml'", "referenc"), ("spec.services",), ("--extra-engine-args",), needs=NEEDS_UNREFERENCED_KEY),
    Case("manifest-decode-reads-prefill-config", "manifest", "gtcdemo validate",
         dgd_edit(set_arg("TrtllmDecodeWorker", "--extra-engine-args", "/engine-configs/prefill.yaml")),
         cli("validate"),
         ("'decode.yaml'", "referenc"), ("spec.services",), ("--extra-engine-args",), needs=NEEDS_UNREFERENCED_KEY),
    Case("manifest-worker-without-toleration", "manifest", "gtcdemo up",
         dgd_edit(lambda d: svc(d, "TrtllmPrefillWorker")["extraPodSpec"].pop("tolerations")), cli("up"),
         ("requests a GPU but does not tolerate the GPU nodes' taint nvidia.com/gpu:NoSchedule",),
         (f"{AT}.TrtllmPrefillWorker.extraPodSpec.tolerations",),
         ("add `- {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}`",)),
    Case("manifest-toleration-key-typo", "manifest", "LocalTarget.apply",
         dgd_edit(lambda d: svc(d, "TrtllmDecodeWorker")["extraPodSpec"]["tolerations"][0]
                  .__setitem__("key", "nvidia.com/gpus")), local_apply,
         ("does not tolerate the GPU nodes' taint",), (f"{AT}.TrtllmDecodeWorker.extraPodSpec.tolerations",),
         ("key: nvidia.com/gpu",)),
    Case("manifest-served-model-names-differ", "manifest", "gtcdemo validate",
         dgd_edit(set_arg("TrtllmPrefillWorker", "--served-model-name", "meta-llama/Meta-Llama-3.1-8B-Instruct")),
         cli("validate"), ("workers serve different model names", "'meta-llama/Meta-Llama-3.1-8B-Instruct'"),
         (AT,), ("use one --served-model-name across all workers",)),
    Case("manifest-two-dgds-in-one-file", "manifest", "gtcdemo up", append(DGD, SECOND_DGD.encode()), cli("up"),
         ("2 DynamoGraphDeployments in one file",), ("20-dgd-gtc-demo.yaml",), ("keep exactly one DGD per env",)),
    Case("manifest-yaml-tab", "manifest", "gtcdemo validate",
         text_edit(DGD, "  backendFramework", "\tbackendFramework"), cli("validate"),
         ("YAML syntax error at line",), (DGD,), ("fix the YAML syntax",)),
    Case("manifest-configmap-hand-edited", "manifest", "gtcdemo up",
         text_edit(CM, "    max_batch_size: 64\n", "    max_batch_size: 32\n"), cli("up"),
         ("missing or out of date with engine-configs/dev/",), (CM,), ("gtcdemo render --env dev --write",)),
    Case("manifest-secret-with-token", "manifest", "gtcdemo up", write("manifests/dev/05-hf-token.yaml", SECRET_YAML),
         cli("up"), ("unexpected kind 'Secret'",), ("05-hf-token.yaml",),
         ("holds only PersistentVolumeClaim, ConfigMap, DynamoGraphDeployment",)),
    Case("manifest-service-env-typo", "manifest", "gtcdemo validate",
         text_edit(DGD, "          value: kv", "          valu: kv"), cli("validate"),
         ("value",), (f"{AT}.Frontend.envs[0]",), ("value:",),
         needs="bundle/validate.py:validate_dgd — check spec.services.<svc>.envs entries as spec.envs are (name plus "
               "value or "
               "valueFrom; unknown keys with did-you-mean); today `valu: kv` passes, the API server prunes it and "
               "DYN_ROUTER_MODE is silently empty (no KV-aware routing)"),
    Case("manifest-worker-without-command", "manifest", "gtcdemo validate",
         dgd_edit(lambda d: main_container(d, "TrtllmDecodeWorker").pop("command")), cli("validate"),
         ("worker service has args but no command", "the shell takes '--model-path' for an option"),
         (f"{AT}.TrtllmDecodeWorker.extraPodSpec.mainContainer.command",),
         ("add `command: [python3, -m, dynamo.trtllm]`", "examples/backends/trtllm/deploy/disagg.yaml"),
         needs="bundle/validate.py:validate_dgd — refuse a non-frontend service with args and no command: Dynamo 0.8 "
               "gives it "
               "only `/bin/sh -c` (component_common.go), so the committed workers crash-loop on the cluster"),
    Case("manifest-kai-queue-label", "manifest", "gtcdemo up",
         dgd_edit(lambda d: svc(d, "TrtllmPrefillWorker").__setitem__("labels", {"kai.scheduler/queue": "default"})),
         cli("up"), ("label kai.scheduler/queue is overwritten by the operator", "nothing was applied"),
         (f"{AT}.TrtllmPrefillWorker.labels.kai.scheduler/queue",),
         ("set `metadata.annotations: {nvidia.com/kai-scheduler-queue: <queue>}` on the DGD",),
         needs="bundle/validate.py:validate_dgd — refuse the pod label kai.scheduler/queue, which the operator "
               "overwrites "
               "with the queue of the DGD annotation nvidia.com/kai-scheduler-queue (grove.go)"),
    Case("manifest-worker-program-not-rehearsable", "manifest", "LocalTarget.apply",
         dgd_edit(lambda d: main_container(d, "TrtllmPrefillWorker").__setitem__("command",
                                                                                 ["python3", "-m", "dynamo.vllm"])),
         local_apply, ("runs `python3 -m dynamo.vllm`, which the local target cannot rehearse",),
         ("spec.services.TrtllmPrefillWorker.extraPodSpec.mainContainer.command",),
         ("use `command: [python3, -m, dynamo.trtllm]`",),
         needs="local/plan.py:check_rehearsable — the local target mocks `python3 -m dynamo.trtllm` only; today any "
               "command is silently replaced by the TRT-LLM mocker"),
    Case("manifest-not-utf8", "manifest", "gtcdemo validate", append(DGD, BROKEN_UTF8), cli("validate"),
         ("UTF-8",), ("20-dgd-gtc-demo.yaml",), ("UTF-8",),
         needs="bundle/manifests.py:read_manifests — catch UnicodeDecodeError and raise ConfigError('not UTF-8 text "
               "...', "
               "where=<file>, fix='save the file as UTF-8'); today `gtcdemo validate` dies with a traceback"),
    Case("manifest-pvc-without-storage", "manifest", "gtcdemo validate",
         text_edit(PVC, "  resources:\n    requests:\n      storage: 100Gi\n", ""), cli("validate"),
         ("resources.requests.storage",), ("model-nfs-pvc",), ("storage",),
         needs="bundle/__init__.py:load — validate PersistentVolumeClaim manifests (metadata.name/namespace, "
               "spec.accessModes, "
               "spec.resources.requests.storage) as located ConfigErrors; today Bundle.table raises KeyError "
               "'resources' and `gtcdemo validate` dies with a traceback"),
    # ---- parameters: the command line --------------------------------------------------------------------------
    Case("cli-unknown-env", "parameter (CLI)", "gtcdemo up", None, cli("up", "--env", "prod"),
         (f"unknown env 'prod'; available: {', '.join(ENVS)}",), ("env",), (f"pass one of {ENVS}",)),
    Case("cli-unknown-target", "parameter (CLI)", "gtcdemo up", None, cli("up", "--target", "k8s"),
         ("invalid choice: 'k8s'",), ("--target",), ("choose from", "'cluster'")),
    Case("cli-unknown-command", "parameter (CLI)", "gtcdemo", None, cli("upp"),
         ("invalid choice: 'upp'",), ("gtcdemo",), ("choose from", "'up'")),
    Case("cli-zero-timeout", "parameter (CLI)", "gtcdemo up", None, cli("up", "--timeout", "0"),
         ("must be > 0",), ("--timeout",), ("--timeout 600",), needs=NEEDS_CLI_NUMBERS),
    Case("cli-negative-wait-timeout", "parameter (CLI)", "gtcdemo wait", None, cli("wait", "--timeout", "-5"),
         ("must be > 0",), ("--timeout",), ("--timeout 600",), needs=NEEDS_CLI_NUMBERS),
    Case("cli-negative-tail", "parameter (CLI)", "gtcdemo logs", None, cli("logs", "--tail", "-3"),
         ("-3",), ("--tail",), ("--tail 20",), needs=NEEDS_CLI_NUMBERS),
    Case("cli-zero-max-tokens", "parameter (CLI)", "gtcdemo test-inference", None,
         cli("test-inference", "--max-tokens", "0"), ("0",), ("--max-tokens",), ("--max-tokens 32",),
         needs=NEEDS_CLI_NUMBERS),
    Case("cli-negative-replicas", "parameter (CLI)", "gtcdemo scale", None, cli("scale", "TrtllmDecodeWorker", "-1"),
         ("replicas must be >= 0, got -1",), ("replicas",), ("pass a whole number >= 0",)),
    Case("cli-unknown-service", "parameter (CLI)", "gtcdemo scale", None, cli("scale", "Decoder", "2"),
         ("no service 'Decoder' in gtc-demo",), ("'Decoder'",),
         ("use one of Frontend, TrtllmPrefillWorker, TrtllmDecodeWorker",)),
    # ---- parameters: notebooks ------------------------------------------------------------------------------------
    Case("notebook-misspelt-parameter-papermill", "parameter (notebook)", "papermill 02_deploy -p evn dev", None,
         papermill_cli("02_deploy.ipynb", "-p", "evn", "dev"),
         ("unknown parameter 'evn' (papermill only warns; this notebook refuses it)",), ("notebook parameters",),
         ("did you mean 'env'?",)),
    Case("notebook-misspelt-timeout", "parameter (notebook)", "02_deploy parameter check", None,
         notebook_parameters("02_deploy.ipynb", wait_timeout=900.0),
         ("unknown parameter 'wait_timeout'",), ("notebook parameters",), ("did you mean 'wait_timeout_s'?",)),
    Case("notebook-negative-timeout", "parameter (notebook)", "02_deploy parameter check", None,
         notebook_parameters("02_deploy.ipynb", wait_timeout_s=-5.0),
         ("parameter 'wait_timeout_s' must be > 0, got -5.0",), ("notebook parameters",),
         ("pass a positive value for wait_timeout_s",)),
    Case("notebook-zero-timeout", "parameter (notebook)", "03_wait parameter check", None,
         notebook_parameters("03_wait.ipynb", timeout_s=0),
         ("parameter 'timeout_s' must be > 0, got 0",), ("notebook parameters",), ("pass a positive value",)),
    Case("notebook-timeout-as-text", "parameter (notebook)", "03_wait parameter check", None,
         notebook_parameters("03_wait.ipynb", timeout_s="10m"),
         ("parameter 'timeout_s' must be float, got str '10m'",), ("notebook parameters",),
         ("-p timeout_s <float>",)),
    Case("notebook-unknown-target", "parameter (notebook)", "00_preflight parameter check", None,
         notebook_parameters("00_preflight.ipynb", target="k8s"),
         ("unknown target 'k8s'; available: local, cluster",), ("target",), ("target='local'",)),
    Case("notebook-unknown-env", "parameter (notebook)", "02_deploy parameter check", None,
         notebook_parameters("02_deploy.ipynb", env="prod"),
         (f"unknown env 'prod'; available: {', '.join(ENVS)}",), ("env",), (f"pass one of {ENVS}",)),
    Case("notebook-zero-concurrency", "parameter (notebook)", "05_metrics parameter check", None,
         notebook_parameters("05_metrics.ipynb", concurrency=0),
         ("parameter 'concurrency' must be > 0, got 0",), ("notebook parameters",),
         ("pass a positive value for concurrency",)),
    Case("notebook-runner-drops-misspelt-parameter", "parameter (notebook)", "workbook.run_notebook", None,
         run_notebook_api("01_configs.ipynb", {"evn": "dev"}),
         ("unknown parameter 'evn'",), ("01_configs",), ("did you mean 'env'?",),
         needs="workbook.py:run_notebook — drop only the walkthrough-wide parameters (env, target) the notebook does "
               "not declare; refuse any other undeclared name with ConfigError naming it, the notebook and the "
               "closest declared parameter (today it is silently dropped: the papermill warning, one layer up)"),
    # ---- graph state: every command checks it first and says what to do (issue 12) ------------------------------
    Case("state-logs-unknown-service", "graph state", "gtcdemo logs --service Nope", None,
         cli("logs", "--service", "Nope"), ("no service 'Nope' in gtc-demo",), ("--service",),
         ("use one of Frontend, TrtllmPrefillWorker, TrtllmDecodeWorker",),
         needs="cli.py:cmd_logs — refuse a service the DGD does not have (today: nothing printed, exit 0)"),
    *[Case(f"state-{command}-not-running", "graph state", f"gtcdemo {command}", None, cli(*args, rc=rc),
           (NOT_RUNNING,), (STATE_FOLDER,), (START_IT,),
           needs=f"local.py / cli.py — `{command}` on a stopped graph says it is not running and how to start it")
      for command, args, rc in (("logs", ("logs",), 3), ("status", ("status",), 3), ("wait", ("wait",), 2),
                                ("test-inference", ("test-inference",), 2), ("load", ("load", "--requests", "1"), 2),
                                ("scale", ("scale", "TrtllmDecodeWorker", "1000000000"), 2))],
    Case("state-status-after-the-supervisor-was-killed", "graph state", "gtcdemo status (supervisor SIGKILLed)",
         kill_supervisor, cli("status", rc=3),
         (NOT_RUNNING, "its supervisor (pid ", "was killed or crashed", "its 4 processes stopped with it"),
         (STATE_FOLDER,), (START_IT,),
         needs="local/supervisor.py: children get PR_SET_PDEATHSIG (die with the supervisor); local.py:status says "
               "what "
               "happened (today the 4 processes keep serving, orphaned, and status says only 'not running')"),
    # ---- bounds: counts checked against what the target holds, before anything is claimed (issue 12) ---------
    Case("bounds-manifest-replicas-beyond-the-machine", "bounds", "gtcdemo up",
         dgd_edit(lambda d: svc(d, "TrtllmDecodeWorker").__setitem__("replicas", 500)), cli("up"),
         ("TrtllmDecodeWorker: 500 replicas make the local graph 503 processes", "processes on this machine"),
         (f"{AT}.TrtllmDecodeWorker.replicas",), ("lower the replicas", "cluster target"),
         needs="local/checks.py:check_capacity — refuse before the lock, the state folder and any port claim (today "
               "200 "
               "ports are claimed, then `no free port in 9091-9290`, and files stay in the state folder)"),
    Case("bounds-scale-a-running-graph-beyond-the-machine", "bounds", "gtcdemo scale (running graph)", start_graph,
         cli("scale", "TrtllmDecodeWorker", "1000000000"),
         ("TrtllmDecodeWorker: 1000000000 replicas make the local graph 1000000003 processes",
          "processes on this machine"), ("gtcdemo scale TrtllmDecodeWorker 1000000000",), ("lower the replicas",),
         needs="local/target.py:LocalTarget.scale — the same bound before apply; nothing written, no port claimed, "
               "nothing restarted "
               "(today it claims 200 ports for a minute and rewrites applied/ with 1000000000 replicas)"),
    # ---- names: every name the DGD's objects get, as the API server, the operator and Grove check them -------
    Case("names-dgd-name-too-long-for-derived-names", "names", "gtcdemo validate",
         dgd_edit(lambda d: d["metadata"].__setitem__("name", LONG_DGD)), cli("validate"),
         (f"Service and scaling adapter '{LONG_DGD}-trtllmprefillworker' ({len(LONG_DGD) + 20} characters)",
          "DNS-1035 label of at most 63 characters", f"label nvidia.com/dynamo-namespace="
          f"'dynamo-workload-{LONG_DGD}' ({len(LONG_DGD) + 16} characters)", "combined resource name length"),
         (f"manifests/dev DGD {LONG_DGD}.metadata.name",), ("shorten metadata.name",),
         needs="bundle/names.py:check_names — derived names (graph.go GetDynamoComponentName, getDynamoNamespace, "
               "Grove "
               "validatePodNameConstraints) refused with the name and its length; today `validate` passes"),
    Case("names-service-too-long-for-grove-pods", "names", "gtcdemo validate",
         dgd_edit(lambda d: d["spec"]["services"].__setitem__(LONG_SERVICE, d["spec"]["services"].pop(
             "TrtllmDecodeWorker"))), cli("validate"),
         (f"'gtc-demo-0-{LONG_SERVICE.lower()}-xxxxx'", "combined resource name length 46 exceeds 45"),
         (f"{AT}.{LONG_SERVICE}",), ("shorten the service name",)),
    Case("names-service-with-underscore", "names", "gtcdemo up",
         dgd_edit(lambda d: d["spec"]["services"].__setitem__("Trtllm_Decode", d["spec"]["services"].pop(
             "TrtllmDecodeWorker"))), cli("up"),
         ("'gtc-demo-trtllm_decode'", "DNS-1035 label"), (f"{AT}.Trtllm_Decode",),
         ("letters, digits and '-'",)),
    # ---- duplicate keys: YAML keeps the last one silently; refuse it with both lines (issue 12) ---------------
    Case("duplicate-key-engine-config", "duplicate keys", "gtcdemo validate", append(DECODE, b"max_batch_size: 32\n"),
         cli("validate"), ("key 'max_batch_size' is written twice in one mapping (lines 7 and 18)",),
         (f"{DECODE}: max_batch_size",), ("keep one of the two lines",),
         needs="engine_config.py:UniqueKeyLoader — PyYAML keeps the last value silently"),
    Case("duplicate-key-manifest", "duplicate keys", "gtcdemo up",
         text_edit(DGD, "      subComponentType: decode\n",
                   "      subComponentType: decode\n      subComponentType: prefill\n"), cli("up"),
         ("key 'subComponentType' is written twice in one mapping (lines 119 and 120)",),
         ("manifests/dev/20-dgd-gtc-demo.yaml",), ("keep one of the two lines",)),
    Case("duplicate-key-cluster-toml", "duplicate keys", "gtcdemo up --target cluster",
         text_edit("manifests/dev/cluster.toml", "pending_bound_s = 300",
                   "pending_bound_s = 300\npending_bound_s = 60"),
         cli("up", "--target", "cluster"), ("key 'pending_bound_s' is written twice (lines 10 and 11)",),
         ("manifests/dev/cluster.toml",), ("keep one of the two lines",),
         needs="cluster/settings.py:load_settings — tomllib refuses it, naming only the second line"),
    # ---- the model's context: refused before anything is sent, with the limit (issue 12) ---------------------
    Case("context-load-prompt-beyond-the-model", "context limit", "gtcdemo load --input-tokens 400000", None,
         cli("load", "--input-tokens", "400000", "--requests", "1"),
         ("400000 prompt + 32 output = 400032 tokens", "context of 131072 tokens",
          "max_position_embeddings of meta-llama/Llama-3.1-8B-Instruct"), ("--input-tokens",), ("at most 131072",),
         needs="load/spec.py:check_context + cli.py — today the load runs (the mocker has no limit) and completes"),
    Case("context-test-inference-max-tokens-beyond-the-model", "context limit", "gtcdemo test-inference", None,
         cli("test-inference", "--max-tokens", "200000"), ("+ 200000 output", "context of 131072 tokens"),
         ("--max-tokens",), ("at most 131072",)),
    Case("context-engine-max-seq-len", "context limit", "gtcdemo load (max_seq_len: 4096)",
         both(append(DECODE, b"max_seq_len: 4096\n"), render_write),
         cli("load", "--input-tokens", "4000", "--output-tokens", "200", "--requests", "1"),
         ("4000 prompt + 200 output = 4200 tokens", "context of 4096 tokens",
          "max_seq_len in engine-configs/dev/decode.yaml"), ("--input-tokens",), ("at most 4096",)),
    # ---- cluster preconditions (run in tests/cluster/test_cluster_bad_input.py) --------------------------------
    Case("cluster-wrong-current-context", "cluster", "gtcdemo up --target cluster",
         kubeconfig_edit(_current("other-cluster")), cli("up", "--target", "cluster"),
         ("the current kube context is 'other-cluster', but env 'dev' deploys to 'do-nyc2-gtc-demo'",),
         ("kube context",), ("kubectl config use-context do-nyc2-gtc-demo", "GTCDEMO_KUBE_CONTEXT=other-cluster")),
    Case("cluster-unknown-context", "cluster", "gtcdemo up --target cluster --context prod", None,
         cli("up", "--target", "cluster", "--context", "prod"),
         ("kube context 'prod' is not in your kubeconfig (it has: do-nyc2-gtc-demo, other-cluster)",),
         ("kubeconfig",), ("add the prod credentials to your kubeconfig",)),
    Case("cluster-no-kubeconfig", "cluster", "gtcdemo up --target cluster",
         lambda ctx: ctx.env.__setitem__("KUBECONFIG", str(ctx.tmp / "no-such-kubeconfig")),
         cli("up", "--target", "cluster"), ("no usable kubeconfig",), ("no-such-kubeconfig",),
         ("doctl kubernetes cluster kubeconfig save gtc-demo", "target='local'")),
    Case("cluster-missing-namespace", "cluster", "gtcdemo up --target cluster",
         both(text_edit(DGD, "namespace: dynamo-workload", "namespace: dynamo-workloads"),
              text_edit(PVC, "namespace: dynamo-workload", "namespace: dynamo-workloads"), render_write),
         cli("up", "--target", "cluster"),
         ("namespace dynamo-workloads does not exist on do-nyc2-gtc-demo; nothing was applied",), ("dynamo-workloads",),
         ("kubectl create namespace dynamo-workloads",)),
    Case("cluster-missing-crd", "cluster", "ClusterTarget.apply", delete_dgd_crd, cluster_apply,
         ("does not serve DynamoGraphDeployment (nvidia.com/v1alpha1): its CRD is not installed",),
         ("DynamoGraphDeployment",), ("install the Dynamo CRDs",), cleanup=restore_dgd_crd),
    Case("cluster-api-server-unreachable", "cluster", "ClusterTarget.apply", kubeconfig_edit(_unreachable),
         cluster_apply, ("cannot reach the API server of do-nyc2-gtc-demo",), ("reading the namespace",),
         ("kubectl --context do-nyc2-gtc-demo get nodes",)),
    Case("cluster-missing-secret", "cluster", "ClusterTarget.apply", delete_secret, cluster_apply,
         ("secret hf-token",), ("dynamo-workload",),
         ("kubectl -n dynamo-workload create secret generic hf-token",),
         needs="cluster/target.py:ClusterTarget.apply — before the dry run, check (metadata only, "
               "Kube.secret_exists) that every "
               "envFromSecret of the DGD exists and raise DeploymentError naming the secret, the namespace and the "
               "kubectl create secret fix; today the DGD is applied and the pods fail later with "
               "CreateContainerConfigError"),
    Case("cluster-kai-queue-missing", "cluster", "ClusterTarget.apply", delete_kai_queue, cluster_apply,
         ("KAI queue dynamo does not exist", "nothing was applied"), ("nvidia.com/kai-scheduler-queue",),
         ("deploy/helm/charts/platform/templates/kai.yaml", "name an existing queue"),
         needs="cluster/target.py:ClusterTarget.apply — refuse before the dry run when the KAI queue the DGD names "
               "(annotation nvidia.com/kai-scheduler-queue, default dynamo) does not exist: the 0.8 operator refuses "
               "the DGD (grove.go ensureQueueExists) and `wait` would only see it fail"),
    Case("cluster-replicas-beyond-the-gpus", "cluster", "ClusterTarget.apply",
         dgd_edit(lambda d: svc(d, "TrtllmDecodeWorker").__setitem__("replicas", 5)), cluster_apply,
         ("the DGD's pods would request 6 nvidia.com/gpu", "have 3 allocatable", "nothing was applied"),
         ("spec.services.*.replicas",), ("lower the workers' replicas",),
         needs="cluster/preflight.py:gpu_findings — GPUs of the nodes preflight lists, checked before the dry run "
               "(issue 12; today the DGD is applied and 3 worker pods stay Pending)"),
    Case("cluster-scale-beyond-the-gpus", "cluster", "gtcdemo scale --target cluster", cluster_deployed,
         cli("scale", "TrtllmDecodeWorker", "1000", "--target", "cluster"),
         ("would request 1001 nvidia.com/gpu", "have 3 allocatable"), ("gtcdemo scale TrtllmDecodeWorker 1000",),
         ("lower the workers' replicas",)),
    Case("cluster-scale-not-deployed", "cluster", "gtcdemo scale --target cluster", None,
         cli("scale", "TrtllmDecodeWorker", "2", "--target", "cluster"),
         ("DGD gtc-demo does not exist in dynamo-workload", "nothing to scale"), ("dynamo-workload",),
         ("start it: gtcdemo up --env dev --target cluster",)),
    Case("cluster-pvc-not-bound", "cluster", "ClusterTarget.apply", pvc_pending, cluster_apply,
         ("model-nfs-pvc", "Pending"), ("dynamo-workload",), ("Bound",),
         needs="cluster/target.py:ClusterTarget.apply — when the model PVC exists but is not Bound, refuse before "
               "the dry "
               "run with DeploymentError naming the claim, its phase and namespace, fix: bind it to the model's NFS "
               "volume (`kubectl describe pvc model-nfs-pvc`); today the DGD is applied and the workers "
               "stay Pending"),
]


def params_for(cases: list[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


def check_message(case: Case, message: str) -> None:
    """The message names what is wrong, where, and what to do (and never carries a secret)."""
    for label, parts in (("what is wrong", case.what), ("where", case.where), ("what to do", case.fix)):
        for part in parts:
            assert part in message, f"[{case.id}] message does not say {label} ({part!r}):\n{message}"
    assert FAKE_TOKEN not in message


def run_case(case: Case, ctx: Ctx, observe: Callable[[], object] | None = None) -> str:
    """Set the row up, feed it through its entry point, check the message and that nothing changed: the project's
    files, the local state folder, and whatever ``observe`` returns (the API server's objects, for cluster rows)."""
    try:
        if case.setup is not None:
            case.setup(ctx)
        before = _tree_digest(ctx.root)
        observed = observe() if observe is not None else None
        local_before = local_state(ctx.state)
        message = case.act(ctx)
        check_message(case, message)
        assert _tree_digest(ctx.root) == before, f"[{case.id}] the project's files were changed"
        if observe is not None:
            after = observe()
            assert after == observed, f"[{case.id}] the API server changed: {_diff(observed, after)}"
        if not local_before["files"]:  # nothing ran before: nothing at all may be there now
            leftovers = sorted(str(p.relative_to(ctx.state)) for p in ctx.state.rglob("*")) if ctx.state.exists() \
                else []
            assert leftovers == [], f"[{case.id}] something was created before the input was refused: {leftovers}"
        local_after = local_state(ctx.state)
        for what in local_before:  # a running graph's state files, port claims and processes are as they were
            assert local_after[what] == local_before[what], \
                f"[{case.id}] the local {what} changed: {_diff(local_before[what], local_after[what])}"
        return message
    finally:
        stop_anything(ctx.state)
        if case.cleanup is not None:
            case.cleanup(ctx)


def _diff(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
        return (f"created {sorted(after.keys() - before.keys())}, deleted {sorted(before.keys() - after.keys())}, "
                f"changed {sorted(changed)}")
    if isinstance(before, set) and isinstance(after, set):
        return f"started {sorted(after - before)}, gone {sorted(before - after)}"
    return f"{before!r} -> {after!r}"


LOCAL_CASES = [c for c in CASES if not c.cluster]


@pytest.mark.parametrize("case", params_for(LOCAL_CASES))
def test_bad_input_is_refused_with_what_where_and_fix(case: Case, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run_case(case, make_ctx(tmp_path, monkeypatch))

