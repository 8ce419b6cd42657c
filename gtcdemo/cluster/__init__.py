"""The cluster target: the bundle applied to the env's Kubernetes cluster with the official Python client.

One concern a module, imported in this order (each only from those before it):

- ``names``: what Dynamo 0.8 and its platform call things (API group, plurals, the operator's labels);
- ``settings``: ``manifests/<env>/cluster.toml`` (kube context, operator namespace, Prometheus, GPU nodes);
- ``apierrors``: the API server's refusals in the user's terms;
- ``access``: what needs a kubelet (pod logs, port-forwards), behind a protocol tests replace;
- ``diagnosis`` and ``tables``: pure readings of API objects (states that will not heal; `kubectl get` tables);
- ``kube``: the clients of the env's kube context, and the reads every concern shares;
- ``apply``: the server-side dry run and apply;
- ``preflight``: the checks, each written once for preflight's report and apply's refusal;
- ``watch``: the watches a waiter reads from;
- ``target``: ``ClusterTarget``, the ``gtcdemo.target.Target`` contract on a cluster.
"""

from __future__ import annotations

from .access import KubectlAccess, KubeletAccess
from .settings import ClusterSettings, load_settings
from .target import ClusterTarget

__all__ = ["ClusterSettings", "ClusterTarget", "KubectlAccess", "KubeletAccess", "load_settings"]
