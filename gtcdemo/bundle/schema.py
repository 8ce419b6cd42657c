"""What a DGD of this project may hold, and the problem list every bundle check adds to.

The checks report every problem at once (a list), each with the field's location and the fix, rather than stopping
at the first: the user fixes a manifest in one go.
"""

from __future__ import annotations

import difflib

from ..errors import ConfigError

DGD_API_VERSION = "nvidia.com/v1alpha1"
DGD_KIND = "DynamoGraphDeployment"

# The DGD fields this project uses: those of the installed v1alpha1 CRD's schema that manifests/dev/ uses, plus a few
# siblings. A field outside these is reported, because the API server would prune it without a word.
SPEC_KEYS = {"backendFramework", "pvcs", "envs", "services"}
SERVICE_KEYS = {
    "dynamoNamespace", "componentType", "subComponentType", "replicas", "scalingAdapter", "envFromSecret",
    "volumeMounts", "resources", "labels", "annotations", "envs", "extraPodSpec", "sharedMemory",
    "livenessProbe", "readinessProbe",
}
COMPONENT_TYPES = {"frontend", "worker", "planner", "main"}
SUB_COMPONENT_TYPES = {"prefill", "decode"}
BACKENDS = {"trtllm", "vllm", "sglang"}
GPU_TOLERATION_KEY = "nvidia.com/gpu"
# The pod label KAI reads the queue from: the operator overwrites it with the queue the DGD annotation names
# (default "dynamo"), deploy/operator/internal/dynamo/grove.go (injectKaiSchedulerIfEnabled, consts.go).
KAI_QUEUE_LABEL = "kai.scheduler/queue"
KAI_QUEUE_ANNOTATION = "nvidia.com/kai-scheduler-queue"
DEFAULT_KAI_QUEUE = "dynamo"


class Problems(list[ConfigError]):
    """The problems found so far; each check adds to it and goes on."""

    def check(self, ok: bool, problem: str, where: str, fix: str) -> bool:
        """Add the problem unless ``ok``; return ``ok`` so a caller can skip what depends on it."""
        if not ok:
            self.append(ConfigError(problem, where=where, fix=fix))
        return ok

    def unknown(self, keys: set, known: set, where: str) -> None:
        """Each key not in ``known``, with the nearest known one as the fix."""
        for key in sorted(keys - known):
            near = difflib.get_close_matches(key, sorted(known), n=1)
            self.append(ConfigError(
                f"unknown field {key!r} (the API server would silently drop it)", where=f"{where}.{key}",
                fix=f"did you mean {near[0]!r}?" if near else f"remove it; known fields: {', '.join(sorted(known))}"))
