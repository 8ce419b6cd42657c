"""Watching the DGD, its pods and their events: one thread per kind feeding one queue, so a waiter sees every change
the moment the API server sends it (no polling) and can still re-check its time bounds between changes."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import DeploymentError
from .apierrors import api_message
from .kube import Kube
from .names import DGD_PLURAL, GROUP, VERSION

# What a waiter receives: (kind, event type, object). Besides the API server's ADDED / MODIFIED / DELETED, a kind
# sends RELISTED with the full list (at the start, and after an expired watch) and ERROR with the exception that
# ended its watch.
Event = tuple[str, str, Any]
RESOURCES = {"pod": "pods", "dgd": f"{DGD_PLURAL}.{GROUP}", "event": "events"}


def listed(answer: Any) -> tuple[list, str | None]:
    """Items and resourceVersion of a list answer (a typed V1*List, or a dict for custom objects)."""
    if isinstance(answer, dict):
        return answer.get("items") or [], (answer.get("metadata") or {}).get("resourceVersion")
    return list(answer.items or []), answer.metadata.resource_version


def watch(stop: threading.Event, events: queue.Queue[Event], kind: str, list_fn: Callable, **kwargs: Any) -> None:
    """List, then stream watch events of one kind into ``events`` until ``stop`` is set.

    A watch whose resourceVersion has expired (410 Gone) re-lists and resumes from the list's resourceVersion,
    as the kubernetes client documents for ``Watch.stream``; any other error (403: no RBAC to list/watch, a
    lost API server) is handed to the waiter as ``ERROR`` and ends this watch: the waiter fails at once.
    """
    from kubernetes import watch as kube_watch
    from kubernetes.client.exceptions import ApiException

    resource_version = None
    while not stop.is_set():
        w = kube_watch.Watch()
        try:
            if resource_version is None:
                items, resource_version = listed(list_fn(**kwargs))
                events.put((kind, "RELISTED", items))
            for event in w.stream(list_fn, resource_version=resource_version, timeout_seconds=5, **kwargs):
                events.put((kind, event["type"], event["object"]))
                if stop.is_set():
                    break
            resource_version = w.resource_version or resource_version
        except ApiException as exc:
            if exc.status != 410:
                events.put((kind, "ERROR", exc))
                return
            resource_version = None  # expired: list again, then watch from there
        except Exception as exc:
            events.put((kind, "ERROR", exc))
            return
        finally:
            w.stop()


@contextlib.contextmanager
def watching(kube: Kube, namespace: str, dgd: str, selector: str) -> Iterator[queue.Queue[Event]]:
    """The changes of the DGD, of the pods ``selector`` selects and of pod events in ``namespace``, until the block
    ends (the threads are daemons and stop within one watch timeout)."""
    events: queue.Queue[Event] = queue.Queue()
    stop = threading.Event()
    kinds: list[tuple[str, Callable, dict]] = [
        ("pod", kube.core.list_namespaced_pod, {"namespace": namespace, "label_selector": selector}),
        ("dgd", kube.custom.list_namespaced_custom_object,
         {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": DGD_PLURAL,
          "field_selector": f"metadata.name={dgd}"}),
        ("event", kube.core.list_namespaced_event,
         {"namespace": namespace, "field_selector": "involvedObject.kind=Pod"}),
    ]
    for kind, list_fn, kwargs in kinds:
        threading.Thread(target=watch, args=(stop, events, kind, list_fn), kwargs=kwargs, daemon=True).start()
    try:
        yield events
    finally:
        stop.set()


def watch_error(kind: str, exc: Exception, context: str, namespace: str) -> DeploymentError:
    """A watch that cannot go on: say which, why, and what permission or connection it needs."""
    from kubernetes.client.exceptions import ApiException

    resource = RESOURCES[kind]
    if isinstance(exc, ApiException):
        fix = (f"your credentials need get, list and watch on {resource} in {namespace} (a Role; check "
               f"with `kubectl auth can-i watch {resource} -n {namespace}`)" if exc.status in (401, 403)
               else "check the API server: `gtcdemo preflight --target cluster`")
        return DeploymentError(f"watching {resource} in {namespace} failed: HTTP {exc.status} "
                               f"{exc.reason}: {api_message(exc)}", where=f"{context}/{namespace}", fix=fix)
    return DeploymentError(f"watching {resource} in {namespace} failed: cannot reach the API server of "
                           f"{context}: {type(exc).__name__}: {exc}", where=context,
                           fix=f"check your network/VPN and `kubectl --context {context} get nodes`")
