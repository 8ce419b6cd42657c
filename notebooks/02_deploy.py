# %% [markdown]
# # 02 · Deploy the DynamoGraphDeployment
#
# Render and validate the bundle (model PVC, ConfigMap, DGD `gtc-demo`), show it, apply it to
# the target and show what changed, then wait until a real chat completion succeeds.
# `target="local"` runs the same graph on this machine (real Dynamo frontend, mocker workers, Prometheus);
# `target="cluster"` applies it to the kube context of the env.
#
# Headless: `papermill notebooks/02_deploy.ipynb out.ipynb -p env dev`

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)
wait_timeout_s: float = 600.0  # how long to wait for the graph to answer a chat completion

# %%
from gtcdemo import bundle as bundle_mod
from gtcdemo import get_target, params

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
b = bundle_mod.load(env)  # validated: nothing is applied when this raises
b

# %%
# NBVAL_CHECK_OUTPUT
print(b.name, b.namespace, b.dynamo_namespace, b.expected_pods, b.served_model_name)

# %% [markdown]
# ### The DGD exactly as applied

# %%
print(bundle_mod.dump_yaml(b.dgd))

# %% [markdown]
# ## Apply

# %%
tgt = get_target(target, env)
result = tgt.apply(b)
result

# %% [markdown]
# ## Wait until it answers

# %%
ready = tgt.wait(timeout_s=wait_timeout_s)
ready

# %%
# NBVAL_CHECK_OUTPUT
pods = ready.status.frame
pods = pods[pods["service"].isin(tgt.bundle.services)]
print("ready:", ready.ready)
print(pods[["service", "role", "phase", "ready"]].sort_values("service").to_string(index=False))
