# %% [markdown]
# # NVIDIA Dynamo: disaggregated serving of Llama-3.1-8B, live
#
# One prefill and one decode worker on separate H100s behind Dynamo's KV-aware frontend, deployed as the
# DynamoGraphDeployment `gtc-demo`. Each section below is one call.
#
# *Presenter:* `mode` is `live` (talks to the target), `record` (live, and saves everything shown into `recording`)
# or `replay` (draws a recording: no cluster, no network). Deploy first (`make deploy-dynamo`, or notebooks 02/03).
# Headless: `papermill notebooks/demo.ipynb out.ipynb -p mode live -p target cluster`.

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
mode: str = "replay"  # "live", "record" (live + save into `recording`) or "replay" (from `recording`)
recording: str = ""  # folder to record into or replay from; empty means a new folder, or the committed recording
prompt: str = "Explain disaggregated prefill and decode in two sentences."  # the question on stage
concurrency: int = 16  # concurrent streams during the live dashboard
duration_s: float = 20.0  # how long the dashboard's load runs
kv_requests: int = 6  # requests per batch in the KV-cache section
scale_to: int = 2  # decode workers after scaling
scale_duration_s: float = 10.0  # how long the scaling section's load runs at each size
comparison_minutes: float = 0.0  # time allowed to run the disagg-vs-agg comparison live; too little: saved records
comparison_records: str = ""  # live/record: saved comparison to show (notebook 06's records); empty: the committed one
comparison_preset: str = "prefill-heavy"  # the workload of a live comparison: "prefill-heavy" or "decode-heavy"

# %%
from gtcdemo import params
from gtcdemo.demo import Show

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
show = Show(env, target, mode, recording or None)
show.banner()

# %% [markdown]
# ## What is deployed

# %%
with show.section("status"):
    show.status()

# %% [markdown]
# ## Ask it something

# %%
with show.section("chat"):
    show.chat(prompt)

# %% [markdown]
# ## Under load: TTFT, throughput and requests in flight, live from Prometheus
#
# The dashboard is the frontend's view; the table under it is the client's view of the same requests.

# %%
with show.section("dashboard"):
    show.dashboard(concurrency=concurrency, duration_s=duration_s)

# %% [markdown]
# ## KV-aware routing: a shared system prompt is computed once
#
# Each prompt is 6,000 tokens. In the first batch all start with the same 5,700-token system prompt: the KV router
# sends each request to the worker whose cache holds it, and only the last 300 tokens are computed. The second batch
# is new text from its first token. Expect the shared batch's TTFT p50 about half the unique batch's (locally ~80 ms
# against ~180 ms; the simulated engine times prefill like TRT-LLM on an H100, so the cluster shows a gap at least
# as large). Every run draws new prompts, so the effect is the same on the tenth run as on the first.

# %%
with show.section("kv cache"):
    show.kv_cache(requests=kv_requests)

# %% [markdown]
# ## Scale the decode worker
#
# On the cluster this adds an H100 through the worker's DGDSA; locally, one more simulated decode worker. The same
# load runs before and after: more streams than one decode worker takes at once, so with one worker some wait.

# %%
with show.section("scaling"):
    show.scale_decode(replicas=scale_to, duration_s=scale_duration_s)
with show.section("restore"):
    show.restore()

# %% [markdown]
# ## What we saw

# %%
show.summary()

# %% [markdown]
# ## Optional: why disaggregate? The same two GPUs, aggregated
#
# Disaggregated (1 prefill + 1 decode worker) against aggregated (2 workers doing both) on the same 2 GPUs, swept
# over the same load levels (notebook 06 has the whole story). It draws saved records unless `comparison_minutes`
# allows a live run; a live run takes the graph on stage down, deploys each layout alone, and brings the graph back
# as it was, all within the time allowed.

# %%
with show.section("comparison"):
    show.comparison(comparison_minutes, comparison_records, comparison_preset)
