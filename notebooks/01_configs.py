# %% [markdown]
# # 01 · Engine configs
#
# The TensorRT-LLM engine configs of the **prefill** and **decode** workers
# (`engine-configs/<env>/`). This notebook validates them (every problem reported at once, with the file, the key
# and the fix), shows prefill and decode side by side with their differences highlighted, shows what the local
# target's simulated engine (the Dynamo mocker) makes of them, and renders the ConfigMap `trtllm-engine-configs`
# that the workers mount at `/engine-configs/`.
#
# Headless: `papermill notebooks/01_configs.ipynb out.ipynb -p env dev`

# %% tags=["parameters"]
# Two lines on purpose: IPython runs a one-line cell starting `env:` as its %env magic.
env: str = "dev"  # which engine-configs/ and manifests/ set

# %%
from gtcdemo import bundle, engine_config, params
from gtcdemo.local import plan as localplan

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
configs = engine_config.load(env)  # raises, listing every problem, when a config is invalid
print(f"{env}: {', '.join(sorted(configs))} valid")

# %% [markdown]
# ## Prefill and decode side by side
# Highlighted rows differ: decode batches many more sequences and keeps the overlap scheduler on.

# %%
table = engine_config.side_by_side(configs)
engine_config.highlight_differences(table)

# %%
# NBVAL_CHECK_OUTPUT
print("differ:", ", ".join(table.index[table["differs"]]))

# %% [markdown]
# ## What the local target runs
#
# On this machine each worker is `python -m dynamo.mocker --engine-type trtllm`; the engine config becomes these
# flags. `--num-gpu-blocks-override` is the KV cache a real H100 would hold at this `free_gpu_memory_fraction`
# (80 GB less the 16 GB of BF16 weights and a runtime reserve, at 128 KiB of KV per token). Keys with no mocker
# equivalent (they change how a GPU runs, not what the mocker simulates):
# `moe_expert_parallel_size`, `enable_attention_dp`, `pipeline_parallel_size`, `trust_remote_code`, `backend`,
# `disable_overlap_scheduler`, `print_iter_log`, `max_input_len`, `model`, `cuda_graph_config.*`,
# `cache_transceiver_config.*`, `kv_cache_config.dtype`, `scheduler_config.context_chunking_policy`,
# `scheduler_config.capacity_scheduler_policy (MAX_UTILIZATION, STATIC_BATCH)`.

# %%
localplan.settings_table(configs)

# %% [markdown]
# ## The ConfigMap
# Generated from the engine configs and committed as `manifests/<env>/10-engine-configmap.yaml`; a test fails when the
# two drift.

# %%
b = bundle.load(env)
print(bundle.configmap_text(env, b.configmap))

# %%
# NBVAL_CHECK_OUTPUT
print(b.configmap["metadata"]["name"], sorted(b.configmap["data"]))
