"""A YAML slip (an empty key, a list where a map belongs) is a located error, never a crash."""

from __future__ import annotations

import copy

import pytest

from gtcdemo import bundle
from gtcdemo.errors import ConfigError


def _with(dgd: dict, path: str, value) -> dict:
    dgd = copy.deepcopy(dgd)
    node = dgd
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return dgd


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("spec.services.TrtllmDecodeWorker.resources", None, "does not tolerate"),
    ("spec.services.TrtllmDecodeWorker.extraPodSpec", None, "no --served-model-name"),
    ("spec.services.TrtllmDecodeWorker.volumeMounts", ["model-nfs-pvc"], "volumeMounts[0] is 'model-nfs-pvc'"),
    ("metadata", None, "metadata.name and namespace are required"),
    ("spec.services.TrtllmDecodeWorker.extraPodSpec.mainContainer.command", None, "has args but no command"),
    ("spec.services.TrtllmPrefillWorker.extraPodSpec.mainContainer.command", [], "has args but no command"),
    ("spec.services.TrtllmPrefillWorker.extraPodSpec.mainContainer.command", [["python3"]], "not a list of strings"),
], ids=["empty-resources", "null-extraPodSpec", "mount-as-string", "null-metadata", "null-command", "empty-command",
        "nested-command"])
def test_null_or_misshapen_fields_are_located_errors(dev_bundle, path, value, expected):
    dgd = _with(dev_bundle.dgd, path, value)
    if path == "spec.services.TrtllmDecodeWorker.resources":
        # An empty resources block means no GPU: then the missing toleration is fine; drop it to prove no crash.
        dgd["spec"]["services"]["TrtllmDecodeWorker"]["resources"] = {"limits": None}
        dgd["spec"]["services"]["TrtllmDecodeWorker"]["extraPodSpec"]["tolerations"] = []
        assert bundle.validate_dgd(dgd, dev_bundle.configmap) == []
        return
    errors = bundle.validate_dgd(dgd, dev_bundle.configmap)
    assert any(expected in str(e) for e in errors), [str(e) for e in errors]


def test_wildcard_toleration_tolerates_the_gpu_taint(dev_bundle):
    dgd = _with(dev_bundle.dgd, "spec.services.TrtllmDecodeWorker.extraPodSpec.tolerations", [{"operator": "Exists"}])
    assert bundle.validate_dgd(dgd, dev_bundle.configmap) == []


def test_toleration_for_another_effect_does_not_count(dev_bundle):
    dgd = _with(dev_bundle.dgd, "spec.services.TrtllmDecodeWorker.extraPodSpec.tolerations",
                [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}])
    errors = bundle.validate_dgd(dgd, dev_bundle.configmap)
    assert any("does not tolerate" in str(e) for e in errors)


def test_manifest_document_that_is_a_list_is_rejected(project_copy):
    (project_copy / "manifests" / "dev" / "30-extra.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"30-extra.yaml: a document is a list, not a Kubernetes object"):
        bundle.load("dev")
