"""Dynamo 0.8's validating admission webhook for DynamoGraphDeployments, served to the test API server.

The API server calls it (``ValidatingWebhookConfiguration``, HTTPS on 127.0.0.1, our CA in ``caBundle``) on every
CREATE and UPDATE of a DGD, dry runs included, so a refusal reaches gtcdemo the way it does on the cluster:
``admission webhook "vdynamographdeployment.kb.io" denied the request: ...`` with HTTP 403.

Each rule imitates Dynamo at commit cf433e682 (release 0.8) and cites its file:

- ``deploy/operator/internal/webhook/validation/dynamographdeployment_handler.go``: CREATE runs ``Validate``; UPDATE
  skips objects being deleted, then runs ``Validate`` and ``ValidateUpdate`` with the request's user; DELETE passes.
- ``deploy/operator/internal/webhook/validation/dynamographdeployment.go``: ``Validate`` (at least one service, the
  PVC rules, each service through ``SharedSpecValidator``) and ``ValidateUpdate`` (``backendFramework`` immutable;
  ``validateReplicasChanges``: a service whose scaling adapter is not disabled keeps its replicas, default 1,
  unless the user may modify them).
- ``deploy/operator/internal/webhook/validation/shared.go``: ``SharedSpecValidator`` (replicas >= 0, a volume mount
  needs ``mountPoint`` unless ``useAsCompilationCache``). Its ingress / sharedMemory rules are left out: the test
  CRD prunes those fields.
- ``deploy/operator/internal/webhook/common.go``: ``CanModifyDGDReplicas``: only service accounts
  (``system:serviceaccount:<ns>:<name>``) whose name ends in ``-dynamo-operator-controller-manager`` or
  ``planner-serviceaccount``.
- controller-runtime's ``admission.Denied`` (what ``WithCustomValidator`` returns for a plain error): allowed false,
  status code 403, reason Forbidden, the error text as message.
- ``deploy/helm/charts/platform/components/operator/templates/webhook-configuration.yaml`` and its values.yaml: the
  configuration's names, rules, ``failurePolicy: Fail``, ``sideEffects: None``, ``timeoutSeconds: 10``.

Go iterates ``spec.services`` (a map) in random order; here services are visited sorted, so messages are stable.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WEBHOOK_PATH = "/validate-nvidia-com-v1alpha1-dynamographdeployment"
WEBHOOK_NAME = "vdynamographdeployment.kb.io"
# <release>-<chart fullname> as the chart names it: release dynamo-platform, subchart dynamo-operator.
CONFIGURATION_NAME = "dynamo-platform-dynamo-operator-validating"
FAILURE_POLICY = "Fail"  # platform chart values.yaml: dynamo-operator.webhook.failurePolicy
TIMEOUT_S = 10  # platform chart values.yaml: dynamo-operator.webhook.timeoutSeconds
REPLICAS_MODIFIER_SUFFIXES = ("-dynamo-operator-controller-manager", "planner-serviceaccount")  # common.go


# -- the rules -----------------------------------------------------------------------------------------------------
def can_modify_dgd_replicas(username: str) -> bool:
    """common.go CanModifyDGDReplicas: a service account whose name has one of the authorised suffixes."""
    if not username.startswith("system:serviceaccount:"):
        return False
    parts = username.split(":")
    if len(parts) != 4:
        return False
    return any(parts[3].endswith(suffix) for suffix in REPLICAS_MODIFIER_SUFFIXES)


def _services(dgd: dict) -> dict[str, dict]:
    return {name: svc or {} for name, svc in sorted(((dgd.get("spec") or {}).get("services") or {}).items())}


def validate(dgd: dict) -> str | None:
    """dynamographdeployment.go Validate: the first problem found, or None."""
    services = _services(dgd)
    if not services:
        return "spec.services must have at least one service"
    for i, pvc in enumerate((dgd.get("spec") or {}).get("pvcs") or []):  # validatePVC: errors of one PVC joined
        errors = []
        if not pvc.get("name"):
            errors.append(f"spec.pvcs[{i}].name is required")
        if pvc.get("create"):
            if not pvc.get("storageClass"):
                errors.append(f"spec.pvcs[{i}].storageClass is required when create is true")
            if pvc.get("size") in (None, "", 0, "0"):
                errors.append(f"spec.pvcs[{i}].size is required when create is true")
            if not pvc.get("volumeAccessMode"):
                errors.append(f"spec.pvcs[{i}].volumeAccessMode is required when create is true")
        if errors:
            return "\n".join(errors)
    for name, svc in services.items():  # shared.go SharedSpecValidator.Validate, fieldPath spec.services[<name>]
        at = f"spec.services[{name}]"
        if svc.get("replicas") is not None and int(svc["replicas"]) < 0:
            return f"{at}.replicas must be non-negative"
        for i, mount in enumerate(svc.get("volumeMounts") or []):
            if not mount.get("useAsCompilationCache") and not mount.get("mountPoint"):
                return f"{at}.volumeMounts[{i}].mountPoint is required when useAsCompilationCache is false"
    return None


def validate_update(new: dict, old: dict, username: str | None) -> str | None:
    """dynamographdeployment.go ValidateUpdate: immutable fields, then validateReplicasChanges (errors joined)."""
    if (new.get("spec") or {}).get("backendFramework", "") != (old.get("spec") or {}).get("backendFramework", ""):
        return "spec.backendFramework is immutable and cannot be changed after creation"
    if username is not None and can_modify_dgd_replicas(username):
        return None
    old_services = _services(old)
    errors = []
    for name, svc in _services(new).items():
        if (svc.get("scalingAdapter") or {}).get("disable"):
            continue  # adapter disabled: replicas may be changed directly
        if name not in old_services:
            continue  # a new service
        if int(old_services[name].get("replicas", 1)) != int(svc.get("replicas", 1)):
            errors.append(f"spec.services[{name}].replicas cannot be modified directly when scaling adapter is "
                          "enabled; scale or update the related DynamoGraphDeploymentScalingAdapter instead")
    return "\n".join(errors) or None  # errors.Join: one line per error


def review(request: dict) -> dict:
    """dynamographdeployment_handler.go: the AdmissionResponse for one AdmissionRequest (admission.k8s.io/v1)."""
    operation = request.get("operation")
    new, old = request.get("object") or {}, request.get("oldObject") or {}
    error: str | None = None
    if operation == "CREATE":
        error = validate(new)
    elif operation == "UPDATE" and not (new.get("metadata") or {}).get("deletionTimestamp"):
        username = (request.get("userInfo") or {}).get("username")
        error = validate(new) or validate_update(new, old, username)
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": error is None}
    if error is not None:  # controller-runtime admission.Denied
        response["status"] = {"metadata": {}, "code": 403, "reason": "Forbidden", "message": error}
    return response


# -- the server ----------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] != WEBHOOK_PATH:
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        request = body.get("request") or {}
        response = review(request)
        self.server.record(request, response)
        out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # the API server's own log records failures; the reviews are kept in DgdWebhook.reviews


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: DgdWebhook, *args: Any) -> None:
        self.owner = owner
        super().__init__(*args)

    def record(self, request: dict, response: dict) -> None:
        self.owner.reviews.append({
            "operation": request.get("operation"), "name": request.get("name"),
            "username": (request.get("userInfo") or {}).get("username"), "dryRun": bool(request.get("dryRun")),
            "allowed": response["allowed"], "message": (response.get("status") or {}).get("message"),
        })


class DgdWebhook:
    """The webhook server: HTTPS on 127.0.0.1 (a free port), in a thread of this process. A context manager.

    ``reviews`` lists every admission review answered (operation, user, dryRun, allowed, message).
    """

    def __init__(self, cert_file: Path, key_file: Path, host: str = "127.0.0.1") -> None:
        self.cert_file, self.key_file, self.host = cert_file, key_file, host
        self.reviews: list[dict] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the webhook server is not running")
        return f"https://{self.host}:{self._server.server_address[1]}{WEBHOOK_PATH}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> DgdWebhook:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        server = _Server(self, (self.host, 0), _Handler)
        try:
            server.socket = context.wrap_socket(server.socket, server_side=True)
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="dgd-webhook", daemon=True)
            self._thread.start()
        except BaseException:
            server.server_close()
            raise
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            if thread is not None and thread.is_alive():
                server.shutdown()
                thread.join(timeout=10)
            server.server_close()

    def __enter__(self) -> DgdWebhook:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def configuration(self, ca_pem: bytes) -> dict:
        """The ValidatingWebhookConfiguration the platform chart installs for DGDs, pointing at this server."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": CONFIGURATION_NAME, "labels": {
                "app.kubernetes.io/component": "webhook", "app.kubernetes.io/created-by": "dynamo-operator",
                "app.kubernetes.io/part-of": "dynamo-operator"}},
            "webhooks": [{
                "name": WEBHOOK_NAME, "admissionReviewVersions": ["v1"],
                # On the cluster: service <fullname>-webhook-service in dynamo-system; here the URL of this server.
                "clientConfig": {"url": self.url, "caBundle": base64.b64encode(ca_pem).decode()},
                "failurePolicy": FAILURE_POLICY, "sideEffects": "None", "timeoutSeconds": TIMEOUT_S,
                "rules": [{"apiGroups": ["nvidia.com"], "apiVersions": ["v1alpha1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["dynamographdeployments"]}],
            }],
        }

