# %% [markdown]
# # 00 · Preflight
#
# Everything the deployment needs, checked before anything is applied; each failed check says how to fix it. On the
# cluster: the API server, the namespace, the DGD and DGDSA CRDs, the Dynamo operator, GPU nodes with the env's label,
# the taint the workers tolerate and enough allocatable `nvidia.com/gpu`, the RuntimeClass `nvidia`, the model PVC
# Bound, the secret `hf-token` (its metadata only, never its data), the Prometheus service and a server-side dry run of
# the whole bundle. On the local target: Dynamo and Prometheus installed, ports, the model folder.
#
# Headless: `papermill notebooks/00_preflight.ipynb out.ipynb -p env dev -p target cluster`

# %% tags=["parameters"]
env: str = "dev"  # which engine-configs/ and manifests/ set
target: str = "local"  # "local" (this machine) or "cluster" (the env's kube context)

# %%
from gtcdemo import get_target, params

params.check(globals())  # refuses unknown names, wrong types (the annotations above), bad values
tgt = get_target(target, env)
report = tgt.preflight()
report

# %%
# NBVAL_CHECK_OUTPUT
print("preflight ok:", report.ok)
