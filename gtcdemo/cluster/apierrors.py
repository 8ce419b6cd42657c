"""The API server's refusals in the user's terms: its own message, the permission missing, the command to check."""

from __future__ import annotations

import contextlib
import json

from ..errors import DeploymentError


def _body(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")


def api_message(exc: Exception) -> str:
    """The API server's own message (the ``message`` of its Status body), else the body, else the error itself.

    Errors of the typed and of the dynamic client alike (the dynamic client's ``str()`` carries headers and a
    traceback: its ``summary()`` is used instead)."""
    body = _body(exc)
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(body).get("message") or body)
        return body
    summary = getattr(exc, "summary", None)
    return str(summary() if callable(summary) else exc)


def status_details(exc: Exception) -> dict:
    """``details`` of the API server's Status body (``name`` is set when the object, not its kind, is missing)."""
    with contextlib.suppress(ValueError, AttributeError):
        return json.loads(_body(exc) or "{}").get("details") or {}
    return {}


def refusal(exc: Exception, verb: str, resource: str, namespace: str | None = None) -> tuple[str, str] | None:
    """(detail, fix) of an API error other than 404: what permission is missing (403/401), else the server's word."""
    status = getattr(exc, "status", None)
    if status == 404:
        return None
    scope = f"in namespace {namespace}" if namespace else "cluster-scoped"
    if status in (401, 403):
        can_i = f"kubectl auth can-i {verb} {resource}" + (f" -n {namespace}" if namespace else "")
        grant = f"a Role in {namespace}" if namespace else "a ClusterRole (bound with a ClusterRoleBinding)"
        return (f"forbidden: your credentials may not {verb} {resource} ({scope}): {api_message(exc)}",
                f"ask the cluster admin for {grant} allowing {verb} on {resource} (check: `{can_i}`), or run "
                "preflight with the platform admin's kubeconfig")
    return f"HTTP {status}: {api_message(exc)}", "check the API server (`kubectl get --raw /readyz`)"


def api_error(exc: Exception, what: str, context: str) -> DeploymentError:
    """``what`` failed: the API server's refusal, or no API server reachable at all."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return DeploymentError(f"{what}: HTTP {exc.status} {exc.reason}: {api_message(exc)}",
                               fix="check the message above; `gtcdemo preflight --target cluster` checks the "
                                   "platform")
    return DeploymentError(f"{what}: cannot reach the API server of {context}: {exc}",
                           fix=f"check your network/VPN and `kubectl --context {context} get nodes`")
