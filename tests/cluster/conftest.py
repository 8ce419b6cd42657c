"""Fixtures for tests against a real kube-apiserver + etcd (see envtest.py) with the Dynamo operator played by hand.

- ``envtest`` (session): one API server for the whole session; KUBECONFIG points at it meanwhile (contexts
  ``do-nyc2-gtc-demo``, the current one, and ``other-cluster``), and so does the kubernetes client's default.
- ``kube`` (function): ``.api_client`` (the kubeconfig's admin: to Dynamo's webhook a plain user, like gtcdemo),
  ``.operator`` (FakeOperator for dynamo-workload, acting as the Dynamo operator's service account), ``.kubeconfig``,
  ``.restricted_kubeconfig(rules)``; after the test every object it created in dynamo-workload, dynamo-system and
  monitoring, and every node, PV, RuntimeClass and KAI queue, is deleted (and waited for), so tests do not see each
  other's objects.
- ``platform`` (function): ``kube`` plus what the demo cluster's platform has (nodes, RuntimeClass, PVC, hf-token,
  Dynamo's platform chart with Grove + KAI: the operator Deployment, grove-operator, the KAI queues; Prometheus
  Service). Its ``.platform`` holds the names created.
- ``kubelet`` (function): the FakeKubelet ClusterTarget takes as ``access`` (logs, port-forwards).

Every test in this folder is marked ``cluster``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .envtest import NAMESPACES, EnvTest, delete_new_objects, snapshot_objects
from .operator import FakeKubelet, FakeOperator

FAKE_HF_TOKEN = "hf_FAKE0000000000000000000000000000000"
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def envtest() -> Iterator[EnvTest]:
    from kubernetes.config import kube_config

    env = EnvTest()
    try:
        env.start()
        old_env = os.environ.get("KUBECONFIG")
        # kube_config reads KUBECONFIG once, at import: point its default at the test server too, so code that
        # loads the "default" kubeconfig can never reach a real cluster from this session.
        old_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        os.environ["KUBECONFIG"] = str(env.kubeconfig)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(env.kubeconfig)
        try:
            yield env
        finally:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
            if old_env is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old_env
    finally:
        env.stop()


@dataclass
class Kube:
    """What a cluster test gets: a client, the operator stand-in, the kubeconfig path, and the EnvTest."""

    api_client: Any
    operator: FakeOperator
    kubeconfig: Path
    envtest: EnvTest
    platform: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.operator.namespace

    def restricted_kubeconfig(self, rules: list[dict]) -> Path:
        """A kubeconfig (context do-nyc2-gtc-demo) whose user may only do ``rules`` (RBAC Role rules) inside the
        namespace: e.g. ``envtest.NAMESPACE_ONLY_RULES`` (no nodes), or rules without pods list/watch."""
        return self.envtest.restricted_kubeconfig(rules, self.namespace)


@pytest.fixture
def kube(envtest: EnvTest) -> Iterator[Kube]:
    api = envtest.api_client()
    operator_api = envtest.operator_client()
    before = snapshot_objects(api, NAMESPACES)
    try:
        assert envtest.kubeconfig is not None
        yield Kube(api_client=api, operator=FakeOperator(operator_api), kubeconfig=envtest.kubeconfig,
                   envtest=envtest)
    finally:
        try:
            delete_new_objects(api, before, NAMESPACES)
        finally:
            operator_api.close()
            api.close()


@pytest.fixture
def platform(kube: Kube) -> Kube:
    kube.platform = kube.operator.demo_platform(fake_token=FAKE_HF_TOKEN)
    return kube


@pytest.fixture
def kubelet(kube: Kube) -> FakeKubelet:
    return FakeKubelet(operator=kube.operator)
