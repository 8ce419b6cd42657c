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
    "04_inference.ipynb": [
        md("""
# 04 · Inference

The frontend's models, one chat completion validated field by field, one streamed token by token with its TTFT
and ITL (AIPerf's definitions: TTFT = request sent → first chunk with content; ITL = (latency − TTFT) /
(output tokens − 1)), and KV-aware routing made visible: a batch sharing a long system prompt against a batch that
does not, with the cached tokens reported by the response (`usage`) and by the frontend's
`dynamo_frontend_cached_tokens` side by side.

Headless: `papermill notebooks/04_inference.ipynb out.ipynb -p env dev -p target local`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
prompt: str = "In one sentence, what does disaggregated serving change for an LLM?"  # the prompt shown
max_tokens: int = 48  # tokens to generate for the shown completions
kv_requests: int = 6  # requests per batch in the KV-cache demonstration
kv_prompt_tokens: int = 6000  # prompt length of those requests (95% shared in the first batch)
"""),
        code("""
import json

from gtcdemo import experiments, get_target, inference, params, plots
from gtcdemo.metrics import Metrics
from gtcdemo.results import engine_note, live_text

p = params.check(globals(), env=str, target=str, prompt=str, max_tokens=int, kv_requests=int,
                 kv_prompt_tokens=int)
tgt = get_target(target, env)
model = tgt.bundle.served_model_name
with tgt.frontend() as url:
    models = inference.wait_for_model(url, model, timeout_s=120)  # listed AND answering
models
"""),
        check("print(model in models)", "True\n"),
        md("## One chat completion, validated"),
        code("""
with tgt.frontend() as url:
    body = inference.chat_completion(url, model, prompt, max_tokens=max_tokens)
print(json.dumps(body, indent=2))
engine_note(tgt.kind)  # on the local target: whose answer this is
"""),
        check("""
print(body["object"], body["model"], body["choices"][0]["message"]["role"], body["choices"][0]["finish_reason"] in
      ("stop", "length"), sorted(body["usage"])[:3])
""", "chat.completion meta-llama/Llama-3.1-8B-Instruct assistant True "
     "['completion_tokens', 'prompt_tokens', 'prompt_tokens_details']\n"),
        md("## Streaming, token by token"),
        code("""
with tgt.frontend() as url:
    streamed = inference.stream_chat(url, model, prompt, max_tokens=max_tokens, ignore_eos=True,
                                     on_text=live_text("**assistant:** "))
display(streamed)
engine_note(tgt.kind)
"""),
        check("print(streamed.output_tokens == max_tokens, 0 < streamed.ttft_s < streamed.latency_s)",
              "True True\n"),
        md("""
## KV-aware routing: reuse of a shared prefix

The seed sets `DYN_ROUTER_MODE=kv`: the router sends a request to the worker that already holds the longest
prefix of its prompt in its KV cache, so that part is not computed again. A batch whose prompts share a long system
prompt (95% of each 6,000-token prompt) reports most of its prompt tokens as cached, and its TTFT drops; a batch of
unique prompts of the same length reports none. The first request with the system prompt finds it uncached and
puts it in the cache: it is measured on its own (the line under the table), not in the shared batch. Every run
draws new prompts, so running this cell again shows the same effect.

Expected: the shared batch's TTFT p50 about half the unique batch's (locally ~80 ms against ~180 ms; the
simulated engine times prefill like TRT-LLM on an H100, so the cluster shows a gap at least as large). With short
prompts prefill is a small part of TTFT and the gap shrinks (1,500 tokens: ~80 against ~100 ms).
"""),
        code("""
with tgt.frontend() as url, tgt.prometheus() as prom:
    kv = experiments.prefix_cache_demo(url, model, Metrics(prom), requests=kv_requests,
                                       prompt_tokens=kv_prompt_tokens)
kv
"""),
        code('plots.show(plots.kv_cache_effect(kv.table), "04_kv_cache_effect")'),
        check("""
shared, unique = kv.table.loc["shared prefix"], kv.table.loc["unique prompts"]
print("cached: shared > unique:", shared["cached_tokens_per_request"] > unique["cached_tokens_per_request"])
print("server agrees:", shared["server_cached_tokens_per_request"] > unique["server_cached_tokens_per_request"])
""", "cached: shared > unique: True\nserver agrees: True\n"),
        md("## Errors a presenter can act on\nA wrong model name is answered with HTTP 4xx; the message says so and "
           "what to do (nothing here raises a stack trace at the audience)."),
        code("""
with tgt.frontend() as url:
    try:
        inference.chat_completion(url, "no-such-model", "hi", max_tokens=2)
    except inference.InferenceError as exc:
        print(exc)
"""),
    ],
    "05_metrics.ipynb": [
        md("""
# 05 · Metrics: TTFT and throughput from Prometheus

First the validation checklist's last item: is `dynamo_frontend_requests_total` in Prometheus (and if not, why
not, from Prometheus' own targets). Then a load run, and what Prometheus saw during it: TTFT percentiles, mean
TTFT and ITL, requests/s and output tokens/s, requests in flight and queued, cached tokens. Then the client's and
the frontend's TTFT side by side, with what separates them, and a sweep: throughput against TTFT p95.

Every figure is also saved as a PNG beside the executed notebook.

Headless: `papermill notebooks/05_metrics.ipynb out.ipynb -p env dev -p concurrency 16`
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
concurrency: int = 8  # closed-loop concurrency of the load run
num_requests: int = 80  # measured requests (after warm-up)
warmup_requests: int = 4  # excluded from the results
input_tokens: int = 300  # mean prompt length in tokens
output_tokens: int = 64  # fixed output length (max_tokens + ignore_eos)
sweep_levels: list = [1, 4, 16]  # concurrencies for the throughput-vs-TTFT curve
sweep_requests: int = 32  # requests per sweep level
"""),
        code("""
from gtcdemo import experiments, get_target, load, metrics, params, plots
from gtcdemo.results import Table, load_table, sweep_view, window_table

p = params.check(globals(), env=str, target=str, concurrency=int, num_requests=int, warmup_requests=int,
                 input_tokens=int, output_tokens=int, sweep_levels=list, sweep_requests=int)
tgt = get_target(target, env)
model = tgt.bundle.served_model_name
with tgt.prometheus() as prom:
    visible = metrics.Metrics(prom).check_requests_visible()
visible
"""),
        check('print("dynamo_frontend_requests_total visible:", visible.ok)',
              "dynamo_frontend_requests_total visible: True\n"),
        md("## A load run"),
        code("""
spec = load.LoadSpec(model=model, concurrency=concurrency, num_requests=num_requests,
                     warmup_requests=warmup_requests, input_tokens_mean=input_tokens, output_tokens=output_tokens)
with tgt.frontend() as url:
    run = load.run(url, spec, save_to=plots.output_dir() / "05_load")
load_table(run.summary(), f"The load: {spec.label()}, {num_requests} requests of {input_tokens} → {output_tokens} "
           f"tokens: {run.summary()['output_token_throughput']:,.0f} output tokens/s")
"""),
        check('print("ok:", run.summary()["ok_count"] == num_requests, "errors:", run.summary()["error_count"])',
              "ok: True errors: 0\n"),
        md("## What Prometheus saw during the run"),
        code("""
with tgt.prometheus() as prom:
    m = metrics.Metrics(prom)
    settled = m.settle(run.ended_at)
    window = m.window(run.started_at - 5, settled.timestamp() + 5)
    server = m.run_summary(run.started_at, settled)
window_table(window, "What Prometheus saw during the run (the frontend's clock)")
"""),
        code("""
plots.show(plots.ttft_over_time(window, run.started_at, run.ended_at), "05_ttft_over_time")
plots.show(plots.throughput_over_time(window, run.started_at, run.ended_at), "05_throughput_over_time")
plots.show(plots.inflight_over_time(window, run.started_at, run.ended_at), "05_inflight_over_time")
"""),
        check('print("server counted the run:", server.requests >= num_requests)',
              "server counted the run: True\n"),
        md("""
## Client TTFT vs the frontend's TTFT

Both are correct and they are not the same number. The client's clock (AIPerf's definition) runs from sending the
request to receiving the first chunk with content; the frontend's histogram starts when the frontend receives the
request and stops when it has the first token. In disaggregated mode the frontend's clock **does include the
prefill hop** (routing to the prefill worker, prefill, KV hand-over): with a new connection per request the client
sees the frontend's number plus a few ms of HTTP. What it leaves out shows on a **kept-alive connection** (what
AIPerf, browsers and our load generator use): the first tokens then reach the client in one burst about 40 ms later,
because the response's small writes wait for the client's delayed TCP ACK (Nagle; 40 ms is Linux's minimum
delayed-ACK time). The frontend's clock stops before that wait, so it cannot see it. The table below measures
all three on the same graph.
"""),
        code("""
comparison = metrics.client_vs_server(run.summary(), server)
plots.show(plots.client_vs_server_ttft(comparison), "05_client_vs_server_ttft")
with tgt.frontend() as url, tgt.prometheus() as prom:
    clocks = experiments.ttft_clocks(url, model, metrics.Metrics(prom))
display(Table("The load run's TTFT by clock", comparison.rename(columns={
    "client_ms": "client (ms)", "server_ms": "frontend (ms)", "gap_ms": "client − frontend (ms)"})))
clocks
"""),
        md("""
## Open loop: the rate offered, the rate delivered, and which connection a request takes

The run above is a closed loop (a fixed number of requests in flight). An open loop offers requests at a rate,
Poisson arrivals whatever the server does (`LoadSpec(request_rate=...)`), and its result says what reached the
server: offered and delivered rate, flagged UNDER-DELIVERED below 95%. An in-flight cap (`max_concurrency`) is off
unless set; when it binds, the arrivals that find it reached wait for a slot, and the result says how many waited
and for how long.

Which kept-alive connection a request reuses matters, for the reason in the table above: a connection whose last
response ended less than ~40 ms ago is in delayed-ACK mode, so the next first token on it waits for that ACK.
Taking the connection freed last put most open-loop requests there (measured on this graph at 16 req/s, 512 → 128
tokens: TTFT p50 62.7 ms against AIPerf's 44.0 ms; requests on a connection idle under 40 ms ~80 ms, idle longer
~45 ms). The load generator takes the connection idle longest, as AIPerf's pool (aiohttp) does: 44.8 ms, and within
5% of AIPerf since (`benchmarks/vs_aiperf.py`). `connection_reuse="never"`, AIPerf's other policy, opens a new
connection per request (44.2 ms there). Both policies at the same rate, TTFT split by whether the request's
connection was new:
"""),
        code("""
import pandas as pd

open_runs = {}
with tgt.frontend() as url:
    for policy in ("pooled", "never"):
        open_spec = load.LoadSpec(model=model, request_rate=8.0, num_requests=40, warmup_requests=2,
                                  input_tokens_mean=input_tokens, output_tokens=output_tokens, connection_reuse=policy)
        open_runs[policy] = load.run(url, open_spec, progress=False)
rows = {}
for policy, result in open_runs.items():
    s, ok = result.summary(), result.records[result.records["status"] == "ok"]
    fresh = ok["new_connection"].fillna(False).astype(bool)
    rows[policy] = {"offered (req/s)": s["offered_rate"], "delivered (req/s)": s["delivered_rate"],
                    "on a new connection": int(fresh.sum()), "TTFT p50 (ms)": s["ttft_ms"]["p50"],
                    "TTFT p50, new connection (ms)": ok.loc[fresh, "ttft_s"].median() * 1000,
                    "TTFT p50, reused connection (ms)": ok.loc[~fresh, "ttft_s"].median() * 1000}
display(*open_runs.values())
Table("Open loop at 8 req/s: AIPerf's two connection policies", pd.DataFrame(rows).T.rename_axis("policy"),
      "pooled: kept-alive connections, the one idle longest first; never: a new connection per request")
"""),
        check('print("never: a new connection per request:", bool(open_runs["never"].records["new_connection"].all()))',
              "never: a new connection per request: True\n"),
        md("## Throughput vs TTFT p95 (a sweep over concurrency)"),
        code("""
sweep_spec = load.LoadSpec(model=model, concurrency=sweep_levels[0], num_requests=sweep_requests, warmup_requests=2,
                           input_tokens_mean=input_tokens, output_tokens=output_tokens)
with tgt.frontend() as url:
    results = load.sweep(url, sweep_spec, sweep_levels, progress=False)
sweep = load.sweep_table(results)
plots.show(plots.sweep_curve(sweep), "05_sweep_curve")
sweep_view(sweep)
"""),
        check('print("levels:", [int(level) for level in sweep["level"]], "all ok:", int(sweep["errors"].sum()) == 0)',
              "levels: [1, 4, 16] all ok: True\n"),
    ],
    "demo.ipynb": [
        md("""
# NVIDIA Dynamo: disaggregated serving of Llama-3.1-8B, live

One prefill and one decode worker on separate H100s behind Dynamo's KV-aware frontend, deployed as the
DynamoGraphDeployment `gtc-demo`. Each section below is one call.

*Presenter:* `mode` is `live` (talks to the target), `record` (live, and saves everything shown into `recording`)
or `replay` (draws a recording: no cluster, no network). Deploy first (`make deploy-dynamo`, or notebooks 02/03).
Headless: `papermill notebooks/demo.ipynb out.ipynb -p mode live -p target cluster`.
"""),
        params(ENV + """
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
mode: str = "replay"  # "live", "record" (live + save into `recording`) or "replay" (from `recording`)
recording: str = ""  # folder to record into or replay from; empty means a new folder, or the committed recording
prompt: str = "Explain disaggregated prefill and decode in two sentences."  # the question on stage
concurrency: int = 16  # concurrent streams during the live dashboard
duration_s: float = 20.0  # how long the dashboard's load runs
kv_requests: int = 6  # requests per batch in the KV-cache section
scale_to: int = 2  # decode workers after scaling
scale_duration_s: float = 10.0  # how long the scaling section's load runs at each size
"""),
        code("""
from gtcdemo import params
from gtcdemo.demo import Show

p = params.check(globals(), env=str, target=str, mode=str, recording=str, prompt=str, concurrency=int,
                 duration_s=float, kv_requests=int, scale_to=int, scale_duration_s=float)
show = Show(env, target, mode, recording or None)
show.banner()
"""),
        md("## What is deployed"),
        code("""
with show.section("status"):
    show.status()
"""),
        md("## Ask it something"),
        code("""
with show.section("chat"):
    show.chat(prompt)
"""),
        md("""
## Under load: TTFT, throughput and requests in flight, live from Prometheus

The dashboard is the frontend's view; the table under it is the client's view of the same requests.
"""),
        code("""
with show.section("dashboard"):
    show.dashboard(concurrency=concurrency, duration_s=duration_s)
"""),
        md("""
## KV-aware routing: a shared system prompt is computed once

Each prompt is 6,000 tokens. In the first batch all start with the same 5,700-token system prompt: the KV router
sends each request to the worker whose cache holds it, and only the last 300 tokens are computed. The second batch
is new text from its first token. Expect the shared batch's TTFT p50 about half the unique batch's (locally ~80 ms
against ~180 ms; the simulated engine times prefill like TRT-LLM on an H100, so the cluster shows a gap at least
as large). Every run draws new prompts, so the effect is the same on the tenth run as on the first.
"""),
        code("""
with show.section("kv cache"):
    show.kv_cache(requests=kv_requests)
"""),
        md("""
## Scale the decode worker

On the cluster this adds an H100 through the worker's DGDSA; locally, one more simulated decode worker. The same
load runs before and after: more streams than one decode worker takes at once, so with one worker some wait.
"""),
        code("""
with show.section("scaling"):
    show.scale_decode(replicas=scale_to, duration_s=scale_duration_s)
with show.section("restore"):
    show.restore()
"""),
        md("## What we saw"),
        code("show.summary()"),
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
