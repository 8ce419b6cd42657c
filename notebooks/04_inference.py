# %% [markdown]
# # 04 · Inference
#
# The frontend's models, one chat completion validated field by field, one streamed token by token with its TTFT
# and ITL (AIPerf's definitions: TTFT = request sent → first chunk with content; ITL = (latency − TTFT) /
# (output tokens − 1)), and KV-aware routing made visible: a batch sharing a long system prompt against a batch that
# does not, with the cached tokens reported by the response (`usage`) and by the frontend's
# `dynamo_frontend_cached_tokens` side by side.
#
# Headless: `papermill notebooks/04_inference.ipynb out.ipynb -p env dev -p target local`

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
prompt: str = "In one sentence, what does disaggregated serving change for an LLM?"  # the prompt shown
max_tokens: int = 48  # tokens to generate for the shown completions
kv_requests: int = 6  # requests per batch in the KV-cache demonstration
kv_prompt_tokens: int = 6000  # prompt length of those requests (95% shared in the first batch)

# %%
import json

from IPython.display import display

from gtcdemo import experiments, get_target, inference, params, plots
from gtcdemo.metrics import Metrics
from gtcdemo.results import engine_note, live_text

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
tgt = get_target(target, env)
model = tgt.bundle.served_model_name
with tgt.frontend() as url:
    models = inference.wait_for_model(url, model, timeout_s=120)  # listed AND answering
models

# %%
# NBVAL_CHECK_OUTPUT
print(model in models)

# %% [markdown]
# ## One chat completion, validated

# %%
with tgt.frontend() as url:
    body = inference.chat_completion(url, model, prompt, max_tokens=max_tokens)
print(json.dumps(body, indent=2))
engine_note(tgt.kind)  # on the local target: whose answer this is

# %%
# NBVAL_CHECK_OUTPUT
print(body["object"], body["model"], body["choices"][0]["message"]["role"], body["choices"][0]["finish_reason"] in
      ("stop", "length"), sorted(body["usage"])[:3])

# %% [markdown]
# ## Streaming, token by token

# %%
with tgt.frontend() as url:
    streamed = inference.stream_chat(url, model, prompt, max_tokens=max_tokens, ignore_eos=True,
                                     on_text=live_text("**assistant:** "))
display(streamed)
engine_note(tgt.kind)

# %%
# NBVAL_CHECK_OUTPUT
print(streamed.output_tokens == max_tokens, 0 < streamed.ttft_s < streamed.latency_s)

# %% [markdown]
# ## KV-aware routing: reuse of a shared prefix
#
# The DGD sets `DYN_ROUTER_MODE=kv` on the frontend: the router sends a request to the worker that already holds the
# longest prefix of its prompt in its KV cache, so that part is not computed again. A batch whose prompts share a long
# system prompt (95% of each 6,000-token prompt) reports most of its prompt tokens as cached, and its TTFT drops; a
# batch of unique prompts of the same length reports none. The first request with the system prompt finds it uncached
# and puts it in the cache: it is measured on its own (the line under the table), not in the shared batch. Every run
# draws new prompts, so running this cell again shows the same effect.
#
# Expected: the shared batch's TTFT p50 about half the unique batch's (locally ~80 ms against ~180 ms; the
# simulated engine times prefill like TRT-LLM on an H100, so the cluster shows a gap at least as large). With short
# prompts prefill is a small part of TTFT and the gap shrinks (1,500 tokens: ~80 against ~100 ms).

# %%
with tgt.frontend() as url, tgt.prometheus() as prom:
    kv = experiments.prefix_cache_demo(url, model, Metrics(prom), requests=kv_requests,
                                       prompt_tokens=kv_prompt_tokens)
kv

# %%
plots.show(plots.kv_cache_effect(kv.table), "04_kv_cache_effect")

# %%
# NBVAL_CHECK_OUTPUT
shared, unique = kv.table.loc["shared prefix"], kv.table.loc["unique prompts"]
print("cached: shared > unique:", shared["cached_tokens_per_request"] > unique["cached_tokens_per_request"])
print("server agrees:", shared["server_cached_tokens_per_request"] > unique["server_cached_tokens_per_request"])

# %% [markdown]
# ## Errors a presenter can act on
# A wrong model name is answered with HTTP 4xx; the message says so and what to do (nothing here raises a stack trace
# at the audience).

# %%
with tgt.frontend() as url:
    try:
        inference.chat_completion(url, "no-such-model", "hi", max_tokens=2)
    except inference.InferenceError as exc:
        print(exc)
