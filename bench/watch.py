"""Our own watches: the time (time.monotonic) this process saw each event, read as raw JSON lines.

The same code observes the operator's pods and the floor's pods, so both sides of the comparison are
measured the same way: a pod's 'terminated' time is when our watch delivered its first MODIFIED event
with phase Succeeded/Failed (the node agent writes the terminated container state and the phase in one
status update), and a pod's 'added' time is when our watch delivered its ADDED event.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

GROUP, VERSION = "flowpods.io", "v1alpha1"
TERMINAL = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"}


@dataclass
class Seen:
    labels: dict[str, str] = field(default_factory=dict)
    added: float | None = None  # our watch's ADDED
    terminated: float | None = None  # our watch's first event with a final phase / state
    state: str | None = None
    body: dict[str, Any] | None = None


class Watcher(threading.Thread):
    """Watches pods or executions of one namespace from 'now' and records when each event arrived."""

    def __init__(self, api: client.ApiClient, namespace: str, kind: str = "pods"):
        super().__init__(daemon=True, name=f"watch {kind} {namespace}")
        self.namespace, self.kind = namespace, kind
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.seen: dict[str, Seen] = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.response: Any = None
        self.error: BaseException | None = None
        self.resource_version = json.loads(self._call(watch=False).data)["metadata"]["resourceVersion"]

    def _call(self, watch: bool, **kwargs: Any) -> Any:
        if self.kind == "pods":
            return self.core.list_namespaced_pod(self.namespace, watch=watch, _preload_content=False, **kwargs)
        return self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.kind, watch=watch, _preload_content=False, **kwargs
        )

    def run(self) -> None:
        try:
            while not self.stopping:
                self.response = self._call(
                    watch=True, resource_version=self.resource_version, timeout_seconds=900, allow_watch_bookmarks=True
                )
                for line in iter_resp_lines(self.response):
                    now = time.monotonic()
                    if not line:
                        continue
                    event = json.loads(line)
                    self._record(event["type"], event["object"], now)
        except Exception as exc:  # closed by stop(), or a real failure
            if not self.stopping:
                self.error = exc
        finally:
            with self.cond:
                self.cond.notify_all()

    def _record(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.resource_version = meta["resourceVersion"]
        if kind in ("BOOKMARK", "ERROR"):
            return
        with self.cond:
            seen = self.seen.setdefault(meta["name"], Seen(labels=meta.get("labels") or {}))
            if kind == "ADDED" and seen.added is None:
                seen.added = now
            if seen.terminated is None:
                if self.kind == "pods":
                    final = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                    seen.state = (obj.get("status") or {}).get("phase")
                else:
                    seen.state = (obj.get("status") or {}).get("state")
                    final = seen.state in TERMINAL
                if final:
                    seen.terminated = now
                    if self.kind != "pods":
                        seen.body = obj
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        """Until predicate(self.seen) holds; TimeoutError names what it waited for."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.seen):
                if self.error is not None:
                    raise RuntimeError(f"watch {self.kind} {self.namespace} failed: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.cond.wait(min(left, 1.0))

    def count(self, final: bool = False, prefix: str = "") -> int:
        with self.cond:
            return sum(
                1
                for name, s in self.seen.items()
                if name.startswith(prefix) and (s.terminated is not None if final else s.added is not None)
            )

    def stop(self) -> None:
        self.stopping = True
        if self.response is not None:
            try:
                self.response.shutdown()
            except Exception:
                with contextlib.suppress(Exception):
                    self.response.close()
        self.join(5)
