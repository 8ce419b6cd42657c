"""What Dynamo 0.8 and its platform call things on the cluster: API coordinates, the labels the operator sets.

Pods are selected by the label the operator really sets, ``nvidia.com/dynamo-graph-deployment-name``
(deploy/operator/internal/consts/consts.go). The first wait script of this demo selected on
``nvidia.com/dynamo-graph-deployment``, which the operator never sets: it would have waited forever on zero pods.
"""

from __future__ import annotations

GROUP, VERSION = "nvidia.com", "v1alpha1"
DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
DGD_LABEL = "nvidia.com/dynamo-graph-deployment-name"
COMPONENT_LABEL = "nvidia.com/dynamo-component"
COMPONENT_TYPE_LABEL = "nvidia.com/dynamo-component-type"
SUB_TYPE_LABEL = "nvidia.com/dynamo-sub-component-type"
FIELD_MANAGER = "gtcdemo"
# The Dynamo operator's Deployment as the platform chart labels it
# (deploy/helm/charts/platform/components/operator/templates/deployment.yaml, _helpers.tpl selectorLabels). The chart
# also installs `grove-operator` when Grove is on: a name containing "operator" proves nothing.
OPERATOR_SELECTOR = "app.kubernetes.io/name=dynamo-operator,control-plane=controller-manager"
# KAI's Queue, which the operator looks up before it deploys with Grove + KAI (deploy/operator/internal/consts/
# consts.go QueueGVR; deploy/operator/internal/dynamo/grove.go ensureQueueExists). Cluster-scoped.
KAI_GROUP, KAI_VERSION, KAI_QUEUES = "scheduling.run.ai", "v2", "queues"
# The scheduler's GPU resource, as nodes report it allocatable and pods request it.
GPU_RESOURCE = "nvidia.com/gpu"
