# %% [markdown]
# # 03 · Wait for the graph
#
# On the cluster: a watch (not a 15 s poll) on the pods labelled
# `nvidia.com/dynamo-graph-deployment-name=<dgd>` — the label the operator sets (not
# `nvidia.com/dynamo-graph-deployment`, which it never sets) — until the expected number (from the DGD's
# replicas: 3 for dev) is Running and Ready and the DGD reports `successful`. It fails at once, with a diagnosis, on
# states that will not heal (image pulls, crash loops, unschedulable pods, missing volumes, gated pods), and prints
# the pods, their events and their last log lines. On the local target: every process healthy and a real chat
# completion answered.
#
# Headless: `papermill notebooks/03_wait.ipynb out.ipynb -p env dev -p timeout_s 900`

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
timeout_s: float = 600.0  # give up after this long (TRT-LLM loading 8B from NFS takes ~5 min the first time)

# %%
from gtcdemo import get_target, params
from gtcdemo.results import live_progress

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
tgt = get_target(target, env)
ready = tgt.wait(timeout_s=timeout_s, progress=live_progress("**waiting:** "))
ready

# %%
# NBVAL_CHECK_OUTPUT
pods = ready.status.frame
pods = pods[pods["service"].isin(tgt.bundle.services)]
print("ready:", ready.ready)
print(pods[["service", "role", "phase", "ready"]].sort_values("service").to_string(index=False))

# %% [markdown]
# ## Everything at a glance (`make demo-status`)

# %%
tgt.demo_status()
