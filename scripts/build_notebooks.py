"""Write the step notebooks from the cell lists below (the reviewable source; `make notebooks`).

A test rebuilds them and fails when the committed .ipynb files differ, so edit here, not in JupyterLab, or
copy JupyterLab edits back here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gtcdemo.localplan import NO_MOCKER_EQUIVALENT  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"
# Not annotated like the others: in IPython, a line starting `env:` runs the %env magic.
ENV = 'env = "dev"  # str: which engine-configs/ and manifests/ set\n'



def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def check(text: str, expect: str) -> nbformat.NotebookNode:
    """A cell whose printed output nbval compares (`--nbval-lax` checks only these): the expected text is stored."""
    cell = code(CHECK + text.strip())
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expect)]
    return cell


def ready_check() -> nbformat.NotebookNode:
    """The same check on either target: the DGD's pods, Running and Ready (locally Prometheus is listed too)."""
    return check("""
pods = ready.status.frame
pods = pods[pods["service"].isin(tgt.bundle.services)]
print("ready:", ready.ready)
print(pods[["service", "role", "phase", "ready"]].sort_values("service").to_string(index=False))
""", "ready: True\n"
         "            service     role   phase ready\n"
         "           Frontend frontend Running   1/1\n"
         " TrtllmDecodeWorker   decode Running   1/1\n"
         "TrtllmPrefillWorker  prefill Running   1/1\n")


def params(text: str) -> nbformat.NotebookNode:
    return code(text, "parameters")


NB: dict[str, list] = {
    "00_preflight.ipynb": [
        md("""
# 00 · Preflight

Everything the deployment needs, checked before anything is applied; each failed check says how to fix it.
On the cluster: the API server, the namespace, the DGD and DGDSA CRDs, the Dynamo operator, GPU nodes with the
seed's label, taint and enough allocatable `nvidia.com/gpu`, the RuntimeClass `nvidia`, the model PVC Bound, the
secret `hf-token` (its metadata only, never its data), the Prometheus service and a server-side dry run of the
whole bundle. On the local target: Dynamo and Prometheus installed, ports, the model folder.

Headless: `papermill notebooks/00_preflight.ipynb out.ipynb -p env dev -p target cluster`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
"""),
        code("""
from gtcdemo import get_target, params

p = params.check(globals(), env=str, target=str)
tgt = get_target(target, env)
report = tgt.preflight()
report
"""),
        check('print("preflight ok:", report.ok)', "preflight ok: True\n"),
    ],
    "01_configs.ipynb": [
        md("""
# 01 · Engine configs

Step 1 of the plan: the TensorRT-LLM engine configs of the **prefill** and **decode** workers
(`engine-configs/<env>/`). This notebook validates them (every problem reported at once, with the file, the key
and the fix), shows prefill and decode side by side with their differences highlighted, shows what the local
target's simulated engine (the Dynamo mocker) makes of them, and renders the ConfigMap `trtllm-engine-configs`
that the workers mount at `/engine-configs/`.

Headless: `papermill notebooks/01_configs.ipynb out.ipynb -p env dev`
"""),
        params(ENV),
        code("""
from gtcdemo import bundle, engine_config, localplan, params

p = params.check(globals(), env=str)
configs = engine_config.load(env)  # raises, listing every problem, when a config is invalid
print(f"{env}: {', '.join(sorted(configs))} valid")
"""),
        md("## Prefill and decode side by side\nHighlighted rows differ: decode batches many more sequences and "
           "keeps the overlap scheduler on."),
        code("""
table = engine_config.side_by_side(configs)
engine_config.highlight_differences(table)
"""),
        check('print("differ:", ", ".join(table.index[table["differs"]]))',
              "differ: max_batch_size, disable_overlap_scheduler, cuda_graph_config.max_batch_size\n"),
        md(f"""
## What the local target runs

On this machine each worker is `python -m dynamo.mocker --engine-type trtllm`; the engine config becomes these
flags. `--num-gpu-blocks-override` is the KV cache a real H100 would hold at this `free_gpu_memory_fraction`
(80 GB less the 16 GB of BF16 weights and a runtime reserve, at 128 KiB of KV per token). Keys with no mocker
equivalent (they change how a GPU runs, not what the mocker simulates):
{", ".join(f"`{k}`" for k in NO_MOCKER_EQUIVALENT)}.
"""),
        code("localplan.settings_table(configs)"),
        md("## The ConfigMap\nGenerated from the engine configs and committed as "
           "`manifests/<env>/10-engine-configmap.yaml`; a test fails when the two drift."),
        code("""
b = bundle.load(env)
print(bundle.configmap_text(env, b.configmap))
"""),
        check('print(b.configmap["metadata"]["name"], sorted(b.configmap["data"]))',
              "trtllm-engine-configs ['decode.yaml', 'prefill.yaml']\n"),
    ],
    "02_deploy.ipynb": [
        md("""
# 02 · Deploy the DynamoGraphDeployment

Step 2 of the plan: render and validate the bundle (model PVC, ConfigMap, DGD `gtc-demo`), show it, apply it to
the target and show what changed, then wait until a real chat completion succeeds.
`target="local"` runs the same graph on this machine (real Dynamo frontend, mocker workers, Prometheus);
`target="cluster"` applies it to the kube context of the env.

Headless: `papermill notebooks/02_deploy.ipynb out.ipynb -p env dev`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
wait_timeout_s: float = 600.0  # how long to wait for the graph to answer a chat completion
"""),
        code("""
from gtcdemo import bundle as bundle_mod
from gtcdemo import get_target, params

p = params.check(globals(), env=str, target=str, wait_timeout_s=float)
b = bundle_mod.load(env)  # validated: nothing is applied when this raises
b
"""),
        check("print(b.name, b.namespace, b.dynamo_namespace, b.expected_pods, b.served_model_name)",
              "gtc-demo dynamo-workload dynamo-workload-gtc-demo 3 meta-llama/Llama-3.1-8B-Instruct\n"),
        md("### The DGD exactly as applied"),
        code("print(bundle_mod.dump_yaml(b.dgd))"),
        md("## Apply"),
        code("""
tgt = get_target(target, env)
result = tgt.apply(b)
result
"""),
        md("## Wait until it answers"),
        code("""
ready = tgt.wait(timeout_s=wait_timeout_s)
ready
"""),
        ready_check(),
    ],
    "03_wait.ipynb": [
        md("""
# 03 · Wait for the graph

Step 3 of the plan. On the cluster: a watch (not a 15 s poll) on the pods labelled
`nvidia.com/dynamo-graph-deployment-name=<dgd>` — the operator's label; the seed's script selected
`nvidia.com/dynamo-graph-deployment`, which the operator never sets — until the expected number (from the DGD's
replicas: 3 for dev) is Running and Ready and the DGD reports `successful`. It fails at once, with a diagnosis, on
states that will not heal (image pulls, crash loops, unschedulable pods, missing volumes, gated pods), and prints
the pods, their events and their last log lines. On the local target: every process healthy and a real chat
completion answered.

Headless: `papermill notebooks/03_wait.ipynb out.ipynb -p env dev -p timeout_s 900`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
timeout_s: float = 600.0  # give up after this long (TRT-LLM loading 8B from NFS takes ~5 min the first time)
"""),
        code("""
from gtcdemo import get_target, params
from gtcdemo.results import live_progress

p = params.check(globals(), env=str, target=str, timeout_s=float)
tgt = get_target(target, env)
ready = tgt.wait(timeout_s=timeout_s, progress=live_progress("**waiting:** "))
ready
"""),
        ready_check(),
        md("## Everything at a glance (the seed's `demo-status`)"),
        code("tgt.demo_status()"),
    ],
    "99_teardown.ipynb": [
        md("""
# 99 · Teardown

Deletes the DGD and its ConfigMap (the model PVC stays) and waits until its processes or pods are gone.
Safe to run twice.

Headless: `papermill notebooks/99_teardown.ipynb out.ipynb -p env dev`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
"""),
        code("""
from gtcdemo import get_target, params

p = params.check(globals(), env=str, target=str)
tgt = get_target(target, env)
tgt.teardown()
"""),
        check('print("left running:", len(tgt.status().frame))', "left running: 0\n"),
    ],
}


def build() -> dict[str, str]:
    out = {}
    for name, cells in NB.items():
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        nb.metadata["language_info"] = {"name": "python"}
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{Path(name).stem}-{i:02d}"
        out[name] = nbformat.writes(nb) + "\n"
    return out


def main() -> int:
    for name, text in build().items():
        (NOTEBOOKS / name).write_text(text)
        print(f"wrote notebooks/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
