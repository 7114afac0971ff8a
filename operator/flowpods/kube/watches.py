"""The watches of worker pods and Executions, without kopf: list, then watch from the list's version, each event
handed on in order.

These are nearly all of the operator's watch events (a pod is created, scheduled, started, ended, deleted; an
Execution changes with each commit and span watermark), and kopf ran each through machinery made for handlers
they do not have: per-object worker tasks and queues, progress and diff-base storage, cause detection, error
throttling. That was a fifth of the operator's CPU in the bench's throughput phase (docs/benchmarks.md), for
events the operator only records in its view. Here one thread per kind and namespace (or for the cluster) reads
the watch stream and hands each event, reduced to what the view keeps (`Watched.keep`), to `deliver`; the
operator passes them to its event loop. Flows stay kopf's (their change handlers validate them).

As any watch client: a list first (its resourceVersion is where the watch starts, so nothing is missed or
repeated), bookmarks to move that version on while nothing changes, a list again when the API server says
the version is too old (410 Gone), and retries with a back-off while the API server is away, resuming from
the last version seen. The listed objects are handed on as kopf did (event type None); one handed on before
that a new list no longer holds was deleted meanwhile, and is handed on as DELETED (kopf never said so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from flowpods.kube.client import Kube
from flowpods.kube.resources import GROUP, LABEL_EXECUTION, VERSION
from flowpods.kube.view import pod_essence, without_managed_fields

log = logging.getLogger("flowpods.kube.watches")

WATCH_SECONDS = 300
"""How long one watch request lasts before it is made again (as kopf's `server_timeout` was set)."""
RETRY_FIRST, RETRY_MAX = 0.5, 10.0
"""Seconds before the first retry after an error, doubling up to the most."""

Body = dict[str, Any]
Deliver = Callable[[str | None, Body], None]


@dataclass(frozen=True)
class Watched:
    """What one watch follows: the objects at `path(namespace)` (every namespace's when None) that the label
    selector matches, kept as `keep` reduces them; a list's items lack `apiVersion` and `kind`, set from here."""

    api_version: str
    kind: str
    path: Callable[[str | None], str]
    label_selector: str
    keep: Callable[[Body], Body]


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


PODS = Watched("v1", "Pod", Kube.pods_path, LABEL_EXECUTION, pod_essence)
"""The worker pods (labelled with their execution)."""
EXECUTIONS = Watched(f"{GROUP}/{VERSION}", "Execution", Kube.executions_path, "", without_managed_fields)


class Watch:
    """The threads that watch one kind of object in `namespaces` (all when empty)."""

    def __init__(self, kube: Kube, watched: Watched, namespaces: Sequence[str], deliver: Deliver):
        self.kube, self.watched, self.deliver = kube, watched, deliver
        self._stopping = threading.Event()
        self._failing: set[str] = set()  # the paths whose last request failed (logged once until one answers)
        where: list[str | None] = [*namespaces] or [None]
        self._threads = [
            threading.Thread(target=self._run, args=(ns,), name=f"watch {watched.kind} {ns or 'all'}", daemon=True)
            for ns in where
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Deliver nothing more. A thread waiting for the next event ends with it (or with its request)."""
        self._stopping.set()

    def _run(self, namespace: str | None) -> None:
        path = self.watched.path(namespace)
        version: str | None = None
        delay = RETRY_FIRST
        alive: dict[tuple[str, str], Body] = {}  # the objects handed on and not deleted (`_stub`s)
        while not self._stopping.is_set():
            try:
                if version is None:
                    items, version = self.kube.list_versioned(path, self.watched.label_selector)
                    self._answered(path)
                    listed = {_key(item) for item in items}
                    for key in [key for key in alive if key not in listed]:
                        self._hand_on("DELETED", alive.pop(key), alive)
                    for item in items:
                        self._hand_on(None, {"apiVersion": self.watched.api_version, "kind": self.watched.kind,
                                             **item}, alive)  # fmt: skip
                version = self.follow(path, version, alive)
                delay = RETRY_FIRST
            except Expired:
                log.info("watch of %s: its version is too old, listing again", path)
                version = None
            except Exception as exc:  # the thread must go on: without it, the operator would see no more of the kind
                if path not in self._failing:
                    expected = isinstance(exc, (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError))
                    log.warning("watch of %s failed (retrying every %.1f-%.0f s): %s", path, RETRY_FIRST, RETRY_MAX,
                                _brief(exc), exc_info=not expected)  # fmt: skip
                self._failing.add(path)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def follow(self, path: str, version: str, alive: dict[tuple[str, str], Body]) -> str:
        """Hand on the events of one watch request from `version`; the version to go on from."""
        try:
            for event in self.kube.watch(path, self.watched.label_selector, version, WATCH_SECONDS):
                if self._stopping.is_set():
                    break
                self._answered(path)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired
                    raise ValueError(f"watch error: {obj.get('message') or obj}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self._hand_on(kind, obj, alive)
        except ApiException as exc:
            if exc.status == 410:
                raise Expired from None
            raise
        return version

    def _hand_on(self, kind: str | None, body: Body, alive: dict[tuple[str, str], Body]) -> None:
        kept = self.watched.keep(body)
        if kind == "DELETED":
            alive.pop(_key(kept), None)
        else:
            alive[_key(kept)] = _stub(kept)
        if not self._stopping.is_set():
            self.deliver(kind, kept)

    def _answered(self, path: str) -> None:
        if path in self._failing:
            self._failing.discard(path)
            log.info("watch of %s: the API server answers again", path)


def _key(body: Body) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


STUB_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences")


def _stub(body: Body) -> Body:
    """What is kept of an object to say it was deleted (its owner is poked): not its whole status, which the
    view holds already."""
    meta = body.get("metadata") or {}
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": {k: meta[k] for k in STUB_METADATA if k in meta}}  # fmt: skip


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
