"""The env's cluster through the official kubernetes client, reached only through the kube context the env names.

``Kube`` holds the typed clients and the dynamic one (server-side apply, dry runs, metadata-only reads), and the
reads every concern of the cluster target shares: the live DGD, its scaling adapters, whether a secret exists.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from ..errors import ConfigError, DeploymentError
from .apierrors import api_error
from .names import DGD_LABEL, DGD_PLURAL, DGDSA_PLURAL, GROUP, VERSION
from .settings import ClusterSettings

OVERRIDE_ENV = "GTCDEMO_KUBE_CONTEXT"
# The API server answers with the object's metadata only (no `data`), so a secret's value never reaches this process.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def _context(settings: ClusterSettings, env: str, context: str | None, kubeconfig: str | None) -> str:
    """The kube context to use: the env's, or a deliberate override; refuses a current context that differs."""
    from kubernetes import config

    override = context or os.environ.get(OVERRIDE_ENV)
    wanted = override or settings.kube_context
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"no usable kubeconfig: {exc}", where=kubeconfig or "~/.kube/config",
                          fix=f"get the credentials of {settings.kube_context} (e.g. `doctl kubernetes "
                              "cluster kubeconfig save gtc-demo`), or use target='local'") from None
    names = [c["name"] for c in contexts]
    if wanted not in names:
        raise ConfigError(f"kube context {wanted!r} is not in your kubeconfig (it has: {', '.join(names)})",
                          where="kubeconfig", fix=f"add the {wanted} credentials to your kubeconfig")
    current_name = (current or {}).get("name")
    if override is None and current_name != wanted:
        raise ConfigError(
            f"the current kube context is {current_name!r}, but env {env!r} deploys to {wanted!r}; "
            "refusing to touch a cluster you may not mean", where="kube context",
            fix=f"`kubectl config use-context {wanted}`, or deliberately override: "
                f"{OVERRIDE_ENV}={current_name} (or `--context {current_name}`)")
    return wanted


class Kube:
    """The clients of one kube context, checked to be the env's (or deliberately overridden) before any call."""

    def __init__(self, settings: ClusterSettings, env: str, *, context: str | None = None,
                 kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        self.context = _context(settings, env, context, self.kubeconfig)
        self.api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @cached_property
    def dynamic(self) -> Any:
        """The dynamic client: any kind by apiVersion/kind, with field manager, dry run and headers per call."""
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api)

    def error(self, exc: Exception, what: str) -> DeploymentError:
        """``what`` failed on this context: the API server's refusal, or no API server reachable."""
        return api_error(exc, what, self.context)

    def resource(self, obj: dict) -> Any:
        """The dynamic client's resource for ``obj``'s kind; a kind the API server does not serve is a clear error."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise DeploymentError(
                f"the API server does not serve {obj['kind']} ({obj['apiVersion']}): its CRD is not installed",
                fix="install the Dynamo CRDs (helm install dynamo-crds ...) and check `kubectl get crd | grep "
                    "nvidia.com`") from None

    def get_dgd(self, namespace: str, name: str) -> dict | None:
        """The live DGD, or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, DGD_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def adapters(self, namespace: str, dgd: str) -> list[dict]:
        """The DGDSAs that exist for the DGD (never assumed from the manifest: CRD versions differ)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, DGDSA_PLURAL,
                                                             label_selector=f"{DGD_LABEL}={dgd}")["items"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Ask for the secret's metadata only (``METADATA_ONLY``), so its data never reaches this process."""
        from kubernetes.dynamic.exceptions import NotFoundError

        secrets = self.dynamic.resources.get(api_version="v1", kind="Secret")
        try:
            secrets.get(name=name, namespace=namespace, header_params={"Accept": METADATA_ONLY})
            return True
        except NotFoundError:
            return False
