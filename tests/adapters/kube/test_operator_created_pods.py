"""A pod the operator created is in its view from the create's answer: the reconcile that the echo of its own status
write starts (often before the pod's watch event) does not read the pod again from the API server."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from flowpods.core.clock import utcnow
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import Operator
from flowpods.kube.view import pod_essence

KEY = ("ns", "e1")
FLOW = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow", "metadata": {"name": "greet", "namespace": "ns",
        "generation": 1}, "spec": {"id": "greet", "namespace": "team", "tasks": [{"id": "t", "type": "Log",
                                                                                  "message": "hi"}]}}  # fmt: skip
EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1", "resourceVersion": "1",
                          "creationTimestamp": "2026-11-25T12:00:00Z"},
             "spec": {"flowRef": {"name": "greet"}}}  # fmt: skip


class FakeKube:
    """The API server as a start needs it; pods are created (409 for a name taken) and counted when read."""

    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.pods: dict[str, dict[str, Any]] = {}
        self.pod_reads = 0
        self.version = 1

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(FLOW) if plural == "flows" and name == "greet" else None

    def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.writes.append(stored)
        return copy.deepcopy(stored)

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        if body["metadata"]["name"] in self.pods:
            return None
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        stored["metadata"]["creationTimestamp"] = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        stored["status"] = {"phase": "Pending"}
        self.pods[body["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.pod_reads += 1
        return copy.deepcopy(self.pods.get(name))


async def settle(op: Operator) -> None:
    while op.loops:
        await asyncio.gather(*op.loops.values())
        op.loops = {key: task for key, task in op.loops.items() if not task.done()}


def test_the_reconcile_after_a_create_finds_the_pod_in_view_without_reading_it() -> None:
    kube = FakeKube()
    op = Operator(OperatorConfig.from_env({}), kube, None)  # type: ignore[arg-type]

    async def scenario() -> None:
        op.saw_execution("ADDED", EXECUTION)
        await settle(op)
        (pod,) = kube.pods.values()
        assert op.view.pods[KEY][pod["metadata"]["name"]]["status"] == {"phase": "Pending"}
        assert "spec" not in op.view.pods[KEY][pod["metadata"]["name"]]  # its essence, as a watch event's
        assert KEY in op.timers  # its pending deadline, though no watch event of the pod came
        assert not op.view.saw_pod("ADDED", pod_essence(pod))  # and its own, the same progress, pokes nothing
        op.saw_execution("MODIFIED", kube.writes[-1])  # the status write's watch event, before the pod's
        assert KEY in op.poked
        await settle(op)

    asyncio.run(scenario())
    assert kube.pod_reads == 0
    assert len(kube.writes) == 1 and len(kube.pods) == 1  # nothing more to do: no write, no second create
