"""Every name the DGD's objects will get, checked as the API server checks it, derived names included.

The 0.8 operator and Grove derive (deploy/operator/internal/dynamo/graph.go at cf433e682):
- pod labels nvidia.com/dynamo-graph-deployment-name=<dgd>, nvidia.com/dynamo-component=<service> and
  nvidia.com/dynamo-namespace=<namespace>-<dgd> (generateLabels, getDynamoNamespace): label values;
- per service the Service, DGDSA and label nvidia.com/selector ``<dgd>-<service lowercased>``
  (GetDynamoComponentName, GenerateComponentService): a Service name is a DNS-1035 label;
- the Grove PodCliqueSet ``<dgd>``, PodClique ``<dgd>-0-<service lowercased>`` and its pods with a 5-character
  suffix, which Grove's webhook bounds by len(PodCliqueSet) + len(PodClique) <= 45 (ai-dynamo/grove
  operator/internal/webhook/admission/pcs/validation, validatePodNameConstraints).
"""

from __future__ import annotations

import re
from typing import Any

from ..args import mapping
from ..errors import ConfigError
from .schema import Problems

# Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation/validation.go), as the API server applies them.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_RULE = "a label value is at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
DNS1035_RULE = ("a DNS-1035 label of at most 63 characters (lowercase letters, digits and '-', starting with a "
                "letter, ending with a letter or digit)")
SUBDOMAIN_RULE = ("a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or "
                  "digit, at most 253 characters)")
GROVE_MAX_COMBINED = 45  # Grove's webhook: len(PodCliqueSet) + len(PodClique) <= 45, so pod names fit 63 characters


def _fits(pattern: re.Pattern, value: str, limit: int) -> bool:
    return len(value) <= limit and pattern.fullmatch(value) is not None


def check_names(dgd: dict, where: str = "DGD") -> list[ConfigError]:
    """Every name the DGD's objects will get (this module's docstring lists how each is derived)."""
    errors = Problems()
    meta, spec = mapping(dgd.get("metadata")), mapping(dgd.get("spec"))
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return errors  # validate_dgd says it is missing
    _check_dgd_name(name, namespace, f"{where}.metadata.name", where, errors)
    for pvc in spec.get("pvcs") or []:
        pvc_name = mapping(pvc).get("name")
        if isinstance(pvc_name, str):
            errors.check(_fits(_DNS1123_SUBDOMAIN, pvc_name, 253), f"PVC name {pvc_name!r} is not {SUBDOMAIN_RULE}",
                         f"{where}.spec.pvcs", "rename the claim")
    for service, svc in mapping(spec.get("services")).items():
        _check_service_names(name, service, f"{where}.spec.services.{service}", f"{where}.metadata.name", errors)
        _check_labels(service, mapping(mapping(svc).get("labels")), f"{where}.spec.services.{service}", errors)
    return errors


def _check_dgd_name(name: str, namespace: Any, at_name: str, where: str, errors: Problems) -> None:
    """The DGD's own name, its namespace, and the runtime namespace the operator makes of the two."""
    errors.check(_fits(_DNS1123_SUBDOMAIN, name, 253), f"DGD name {name!r} ({len(name)} characters) is not "
                 f"{SUBDOMAIN_RULE}", at_name, "rename the DGD, e.g. gtc-demo")
    errors.check(_fits(_LABEL_VALUE, name, 63), f"label nvidia.com/dynamo-graph-deployment-name={name!r} "
                 f"({len(name)} characters), which the operator puts on every pod (graph.go generateLabels), is not "
                 f"valid: {LABEL_RULE}", at_name, f"shorten metadata.name to at most 63 characters (now {len(name)})")
    if not isinstance(namespace, str) or not namespace:
        return
    errors.check(_fits(_DNS1123_LABEL, namespace, 63), f"namespace {namespace!r} ({len(namespace)} characters) "
                 "is not a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)",
                 f"{where}.metadata.namespace", "use a valid namespace name, e.g. dynamo-workload")
    runtime = f"{namespace}-{name}"
    errors.check(_fits(_LABEL_VALUE, runtime, 63), f"label nvidia.com/dynamo-namespace={runtime!r} "
                 f"({len(runtime)} characters), the runtime namespace the operator derives as <namespace>-<name> "
                 f"(graph.go getDynamoNamespace), is not valid: {LABEL_RULE}", at_name,
                 f"shorten metadata.name (or the namespace): together at most 62 characters (now {len(runtime) - 1})")


def _check_service_names(name: str, service: Any, at: str, at_name: str, errors: Problems) -> None:
    """The names derived from ``<dgd>-<service>``, blaming whichever of the two is longer."""
    lowered = str(service).lower()
    derived = f"{name}-{lowered}"
    blame, fix = ((at_name, f"shorten metadata.name ({len(name)} characters)") if len(name) > len(lowered)
                  else (at, f"shorten the service name ({len(lowered)} characters)"))
    errors.check(_fits(_LABEL_VALUE, str(service), 63), f"label nvidia.com/dynamo-component={service!r} "
                 f"({len(str(service))} characters), which the operator puts on the service's pods, is not valid: "
                 f"{LABEL_RULE}", at, "rename the service")
    if not re.fullmatch(r"[a-z0-9-]*", lowered):
        blame, fix = at, "rename the service with letters, digits and '-' only (the operator lowercases it)"
    errors.check(_fits(_DNS1035_LABEL, derived, 63), f"the operator names {service}'s Service and scaling "
                 f"adapter {derived!r} ({len(derived)} characters), after graph.go GetDynamoComponentName: a Service "
                 f"name must be {DNS1035_RULE}", blame, f"{fix}; <name>-<service> must fit 63 characters")
    combined = len(name) + len(lowered)
    pod = f"{name}-0-{lowered}-xxxxx"
    errors.check(combined <= GROVE_MAX_COMBINED, f"Grove names {service}'s pods {pod!r} ({len(pod)} "
                 f"characters): combined resource name length {combined} exceeds {GROVE_MAX_COMBINED} (PodCliqueSet "
                 f"{name!r} + PodClique {lowered!r}), and Grove's webhook refuses the PodCliqueSet "
                 "(validatePodNameConstraints)", blame,
                 f"{fix}: metadata.name + service name at most {GROVE_MAX_COMBINED} characters")


def _check_labels(service: Any, labels: dict, at: str, errors: Problems) -> None:
    """The service's own pod labels: qualified keys and valid values."""
    for key, value in labels.items():
        qualified = str(key).rsplit("/", 1)
        errors.check(_fits(_LABEL_VALUE, qualified[-1], 63) and bool(qualified[-1])
                     and (len(qualified) == 1 or _fits(_DNS1123_SUBDOMAIN, qualified[0], 253)),
                     f"label key {key!r} on {service}'s pods is not a qualified name ([prefix/]name, name at most 63 "
                     "characters)", f"{at}.labels", "rename the label")
        errors.check(isinstance(value, str) and _fits(_LABEL_VALUE, value, 63),
                     f"label {key}={value!r} ({len(str(value))} characters) on {service}'s pods is not valid: "
                     f"{LABEL_RULE}", f"{at}.labels.{key}", "quote it as a string and shorten it")
