"""The operator's in-memory view of the cluster, filled by kopf's watch events.

Only a cache: after a restart the watches fill it again, and anything missing is read by name. Each
update says which executions it concerns (a pod concerns its owner, a child execution its parent), so
that the operator can reconcile them; the view itself does no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flowpods.core.model import flow_document
from flowpods.core.status import State
from flowpods.kube.resources import flow_ref

Key = tuple[str, str]  # (Kubernetes namespace, name)
Body = dict[str, Any]


class View:
    def __init__(self) -> None:
        self.executions: dict[Key, Body] = {}
        self.pods: dict[Key, dict[str, Body]] = defaultdict(dict)  # by owner execution, then pod name
        self.deleted_pods: dict[Key, set[str]] = defaultdict(set)
        self.children: dict[Key, dict[str, Body]] = defaultdict(dict)  # by parent execution, then child name
        self.flows: dict[Key, Body] = {}
        # executions whose state in view was QUEUED when stored (checked again when read): the ones an ending
        # execution may have to wake, found without a walk over the whole view at each end
        self.queued: set[Key] = set()

    def saw_execution(self, event_type: str | None, body: Body) -> list[Key]:
        """Record an Execution; the executions it concerns: itself and its parent."""
        body = without_managed_fields(body)
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        parent = owner(body)
        if event_type == "DELETED":
            self.executions.pop(key, None)
            self.pods.pop(key, None)
            self.deleted_pods.pop(key, None)
            if parent:
                self.children[(meta["namespace"], parent)].pop(meta["name"], None)
            return []
        self.remember(key, body)
        if parent is None:
            return [key]
        self.children[(meta["namespace"], parent)][meta["name"]] = body
        return [(meta["namespace"], parent), key]

    def saw_pod(self, event_type: str | None, body: Body) -> list[Key]:
        """Record a worker pod (a deleted one is remembered as deleted); the execution that owns it, unless the
        pod's progress is what the view held (see `progress`)."""
        meta = body["metadata"]
        execution = owner(body)
        if execution is None:
            return []
        key = (meta["namespace"], execution)
        if event_type == "DELETED":
            self.pods[key].pop(meta["name"], None)
            self.deleted_pods[key].add(meta["name"])
            return [key]
        held = self.pods[key].get(meta["name"])
        if newer(body, held):
            self.pods[key][meta["name"]] = body
            if held is not None and progress(held) == progress(body):
                return []
        return [key]

    def created_pod(self, key: Key, body: Body) -> None:
        """Record a pod the operator created, as its create answered: the execution's next reconcile may come
        before the pod's own watch event (the echo of the status write made just before), and would otherwise
        read the pod from the API server (half a pod read per task run in the bench). What the watch said
        already wins: a newer version of the pod, or its deletion."""
        name = body["metadata"]["name"]
        if key not in self.executions or name in self.deleted_pods.get(key, ()):
            return  # the execution or the pod is already gone
        self.pods[key].setdefault(name, body)

    def saw_flow(self, event_type: str | None, body: Body) -> Key:
        """Record a Flow; its key (its schedules may have changed)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.flows.pop(key, None)
        else:
            self.flows[key] = body
        return key

    def remember(self, key: Key, body: Body) -> None:
        """Keep the newer of what the view holds and `body` (a watch event may arrive after a write's answer,
        which carries the managed fields too)."""
        if newer(body, self.executions.get(key)):
            self.executions[key] = without_managed_fields(body)
            if state_of(body) == State.QUEUED.value:
                self.queued.add(key)
            else:
                self.queued.discard(key)

    def queued_of(self, namespace: str, flow: str) -> list[str]:
        """The executions of the Flow resource `namespace/flow` that wait in its queue (QUEUED in view)."""
        found = []
        for key in list(self.queued):
            body = self.executions.get(key)
            if body is None or state_of(body) != State.QUEUED.value:
                self.queued.discard(key)  # ended, started or gone meanwhile
            elif key[0] == namespace and flow_ref(body) == flow:
                found.append(key[1])
        return found

    def run_states(self) -> list[tuple[str, State | None]]:
        """(flow id, state) of every Execution in view; None before its first status (CREATED). Called from the
        metrics endpoint's thread: it reads a copy of the view."""
        found: list[tuple[str, State | None]] = []
        for body in list(self.executions.values()):
            status = body.get("status") or {}
            flow_id = (status.get("flow") or {}).get("id") or flow_ref(body)
            found.append((str(flow_id), State(status["state"]) if status.get("state") else None))
        return found

    def pod_phases(self) -> list[str | None]:
        """The phase of every worker pod in view (a copy, like run_states)."""
        return [
            (pod.get("status") or {}).get("phase") for pods in list(self.pods.values()) for pod in list(pods.values())
        ]

    def flow_resource_for(self, namespace: str, flow_namespace: str, flow_id: str) -> str | None:
        """The Flow resource (in this Kubernetes namespace) holding the Kestra flow namespace.id."""
        for (ns, name), body in self.flows.items():
            document = flow_document(body)
            if ns == namespace and document.get("namespace") == flow_namespace and document.get("id") == flow_id:
                return name
        return None


POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences",
                "creationTimestamp", "deletionTimestamp")  # fmt: skip


def state_of(body: Body) -> Any:
    """The state an Execution's stored status names (None before its first status)."""
    return (body.get("status") or {}).get("state")


def pod_essence(body: Body) -> Body:
    """What the operator reads of a worker pod: its metadata without `managedFields`, its node and its status.
    The view holds every pod of every execution in flight; the rest of a pod (its spec: containers, env,
    volumes; the managed fields) was most of its size and nothing reads it."""
    meta = body.get("metadata") or {}
    essence: Body = {"metadata": {k: meta[k] for k in POD_METADATA if k in meta}, "status": body.get("status") or {}}
    node = (body.get("spec") or {}).get("nodeName")
    if node:
        essence["spec"] = {"nodeName": node}
    return essence


def without_managed_fields(body: Body) -> Body:
    """An object as the view keeps it: `metadata.managedFields` is the API server's bookkeeping, read by
    nobody here, and a status PUT that omits it keeps what is stored."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def owner(body: Body) -> str | None:
    """The Execution that owns this pod or child execution."""
    owners = body["metadata"].get("ownerReferences") or []
    return next((o["name"] for o in owners if o.get("kind") == "Execution"), None)


def progress(pod: Body) -> tuple[Any, ...]:
    """What the observation of a pod's attempt decides on (`resources.observe`): the pod's phase and reason, and
    each container's state (waiting and why, running, terminated). A pod first seen, or whose progress changed,
    pokes its execution; any other change (scheduled, conditions, addresses) tells it nothing new, and was a
    reconcile with nothing to do. The node and the times are read from the pod when a change is observed, and
    a pod's pending deadline runs from its creation (the first sighting's reconcile sets its timer)."""
    status = pod.get("status") or {}
    containers = tuple(
        (c.get("name"), tuple(sorted(state)), (state.get("waiting") or {}).get("reason"))
        for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for state in [c.get("state") or {}]
    )
    return status.get("phase"), status.get("reason"), containers


def newer(body: Body, than: Body | None) -> bool:
    if than is None:
        return True
    try:
        return int(body["metadata"]["resourceVersion"]) >= int(than["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return True
