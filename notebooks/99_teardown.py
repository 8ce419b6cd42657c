# %% [markdown]
# # 99 · Teardown
#
# Deletes the DGD and its ConfigMap (the model PVC stays) and waits until its processes or pods are gone.
# Safe to run twice.
#
# Headless: `papermill notebooks/99_teardown.ipynb out.ipynb -p env dev`

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)

# %%
from gtcdemo import get_target, params

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
tgt = get_target(target, env)
tgt.teardown()

# %%
# NBVAL_CHECK_OUTPUT
print("left running:", len(tgt.status().frame))
