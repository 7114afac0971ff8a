"""Between one task's end and the next task's pod, the status commit and the pod create go out together (one round
trip), where a decision that was not stored is decided again the same: a sequential flow. A pod created for a
commit that did not happen (the operator stopped, the API server failed it) is adopted by the decision made
again, also when a kill came meanwhile: that decision is stored first, so the pod is recorded, then killed."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest

from flowpods.core.clock import utcnow
from flowpods.kube.client import Conflict
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import Operator
from flowpods.kube.resources import ANNOTATION_KILL, TASK_CONTAINER
from flowpods.kube.view import pod_essence

KEY = ("ns", "e1")
EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1", "resourceVersion": "1",
                          "creationTimestamp": "2026-11-25T12:00:00Z"},
             "spec": {"flowRef": {"name": "f"}}}  # fmt: skip
LOG = {"type": "Log", "message": "hi"}
SEQUENTIAL = [{"id": "t1", **LOG}, {"id": "t2", **LOG}, {"id": "t3", **LOG}]
PARALLEL = [{"id": "both", "type": "Parallel", "tasks": [
    {"id": "branches", "type": "Sequential", "tasks": [{"id": "a1", **LOG}, {"id": "a2", **LOG}]},
    {"id": "b1", **LOG}]}]  # fmt: skip


def flow(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow",
            "metadata": {"name": "f", "namespace": "ns", "generation": 1},
            "spec": {"id": "f", "namespace": "team", "tasks": tasks}}  # fmt: skip


class FakeKube:
    """An API server with one Execution and its pods. A status PUT waits (up to 1 s) for a create to start, and
    says whether one did meanwhile; `fail_next_put` makes the next PUT fail after that wait, as an API server
    that went away (the pod's create may still have gone through)."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.flow = flow(tasks)
        self.execution = copy.deepcopy(EXECUTION)
        self.pods: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.creating = threading.Event()
        self.creates_during_put: list[bool] = []
        self.fail_next_put: Exception | None = None
        self.version = 1
        self.lock = threading.Lock()

    def _bump(self, body: dict[str, Any]) -> None:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        if plural == "flows":
            return copy.deepcopy(self.flow)
        return copy.deepcopy(self.execution) if name == "e1" else None

    def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        self.creates_during_put.append(self.creating.wait(1.0) if self.execution.get("status") else False)
        with self.lock:
            self.calls.append("PUT")
            if self.fail_next_put is not None:
                failure, self.fail_next_put = self.fail_next_put, None
                raise failure
            if body["metadata"]["resourceVersion"] != self.execution["metadata"]["resourceVersion"]:
                raise Conflict("e1")
            self.execution["status"] = copy.deepcopy(body["status"])
            self._bump(self.execution)
            return copy.deepcopy(self.execution)

    def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, Any]) -> None:
        with self.lock:
            self.execution["metadata"].setdefault("annotations", {}).update(annotations)
            self._bump(self.execution)

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.creating.set()
        with self.lock:
            self.calls.append("POST " + body["metadata"]["name"])
            if body["metadata"]["name"] in self.pods:
                return None
            stored = copy.deepcopy(body)
            self._bump(stored)
            stored["metadata"]["creationTimestamp"] = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
            stored["status"] = {"phase": "Pending"}
            self.pods[body["metadata"]["name"]] = stored
            return copy.deepcopy(stored)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.pods.get(name))

    def delete_pod(self, namespace: str, name: str) -> None:
        with self.lock:
            self.calls.append("DELETE " + name)
            self.pods.pop(name, None)

    def patch_status(self, plural: str, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        with self.lock:  # the Flow triggers' marker: the only patch these executions get
            self.execution["status"]["triggered"] = patch[0]["value"]
            self._bump(self.execution)
            return copy.deepcopy(self.execution)

    def list_objects(self, plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.flow)] if plural == "flows" else []

    def succeed(self, name: str) -> dict[str, Any]:
        """The pod's task ran: what its watch event shows."""
        with self.lock:
            pod = self.pods[name]
            pod["status"] = {"phase": "Succeeded", "containerStatuses": [{"name": TASK_CONTAINER, "state": {
                "terminated": {"exitCode": 0, "message": '{"outputs": {}, "error": null}'}}}]}  # fmt: skip
            self._bump(pod)
            return pod_essence(copy.deepcopy(pod))

    def pod_of(self, task_id: str) -> str:
        (name,) = [n for n, p in self.pods.items() if p["metadata"]["labels"]["flowpods.io/task-id"] == task_id]
        return name

    def task_states(self) -> dict[str, str]:
        return {tr["taskId"]: tr["state"] for tr in self.execution["status"]["taskRuns"]}


async def settle(op: Operator) -> None:
    """Until no reconcile runs and no wake-up is due now (an adopted decision asks for the next pass at once;
    a pending pod's deadline is minutes away)."""
    for _ in range(20):
        await asyncio.gather(*op.loops.values())
        op.loops = {key: task for key, task in op.loops.items() if not task.done()}
        await asyncio.sleep(0.01)
        if not op.loops:
            return
    raise AssertionError("the reconciles did not settle")


def operator(kube: FakeKube) -> Operator:
    op = Operator(OperatorConfig.from_env({}), kube, None)  # type: ignore[arg-type]
    return op


async def started(op: Operator, kube: FakeKube) -> None:
    op.saw_execution("ADDED", kube.get("executions", *KEY))
    await settle(op)


async def task_ends(op: Operator, kube: FakeKube, task_id: str) -> None:
    op.saw_pod("MODIFIED", kube.succeed(kube.pod_of(task_id)))
    await settle(op)


def test_a_sequential_flow_creates_the_next_pod_while_its_status_is_committed() -> None:
    kube = FakeKube(SEQUENTIAL)
    op = operator(kube)

    async def scenario() -> None:
        await started(op, kube)
        assert kube.creates_during_put == [False]  # the start: committed first, then its pod
        kube.creating.clear()
        await task_ends(op, kube, "t1")
        kube.creating.clear()
        await task_ends(op, kube, "t2")
        kube.creating.clear()
        await task_ends(op, kube, "t3")

    asyncio.run(scenario())
    assert kube.creates_during_put[:3] == [False, True, True]  # t2's and t3's pods created during their commit
    assert kube.execution["status"]["state"] == "SUCCESS"
    assert sorted(kube.task_states().items()) == [("t1", "SUCCESS"), ("t2", "SUCCESS"), ("t3", "SUCCESS")]
    assert len(kube.pods) == 3


def test_with_another_branch_under_way_the_commit_comes_first() -> None:
    """a1 ends while b1 runs: b1's end could change what a2's start is worth (the execution may fail), so a2's pod
    is created only once its status is stored."""
    kube = FakeKube(PARALLEL)
    op = operator(kube)

    async def scenario() -> None:
        await started(op, kube)
        assert {"a1", "b1"} <= {p["metadata"]["labels"]["flowpods.io/task-id"] for p in kube.pods.values()}
        kube.creating.clear()
        kube.calls.clear()
        await task_ends(op, kube, "a1")

    asyncio.run(scenario())
    assert kube.calls[:2] == ["PUT", "POST " + kube.pod_of("a2")]
    assert kube.creates_during_put[-1] is False


@pytest.mark.parametrize("how", ["failed commit", "conflict with a kill"])
def test_a_pod_created_for_a_change_not_stored_is_recorded_then_killed(how: str) -> None:
    """t1 ends; t2's pod is created but its commit fails (the API server went away; or a kill annotation moved
    the Execution, 409). The next pass decides again with the kill: it stores t2's start first (the pod is
    there, it may have run), then kills it. One pod for t2, recorded, KILLED; t3 never starts."""
    kube = FakeKube(SEQUENTIAL)
    op = operator(kube)

    async def scenario() -> None:
        await started(op, kube)
        kube.creating.clear()
        if how == "failed commit":
            kube.fail_next_put = ConnectionError("the API server went away")
            await task_ends(op, kube, "t1")
            assert "t2" not in kube.task_states(), "the commit failed"
            kube.annotate("executions", *KEY, {ANNOTATION_KILL: "true"})
            op.timers.pop(KEY).cancel()  # the retry after the error comes at once with the kill's watch event
            op.saw_execution("MODIFIED", kube.get("executions", *KEY))
        else:
            kube.annotate("executions", *KEY, {ANNOTATION_KILL: "true"})  # not in the operator's view yet
            op.saw_pod("MODIFIED", kube.succeed(kube.pod_of("t1")))
        await settle(op)
        op.saw_execution("MODIFIED", kube.get("executions", *KEY))
        await settle(op)

    asyncio.run(scenario())
    t2 = kube.pod_of("t2") if any("t2" in c for c in kube.calls if c.startswith("POST")) else None
    assert t2 is None  # deleted by the kill: kube.pods no longer has it
    posts = [c for c in kube.calls if c.startswith("POST")]
    assert len({c for c in posts}) == 2, posts  # t1's and t2's pods, t2's created once (a second create is a 409)
    assert f"DELETE {posts[-1].split()[1]}" in kube.calls, kube.calls
    assert kube.execution["status"]["state"] == "KILLED"
    states = kube.task_states()
    assert states["t1"] == "SUCCESS" and states["t2"] == "KILLED" and "t3" not in states, states


def test_an_ended_execution_stops_a_running_pod_that_no_attempt_records() -> None:
    kube = FakeKube(SEQUENTIAL)
    op = operator(kube)

    async def scenario() -> None:
        await started(op, kube)
        stray = copy.deepcopy(next(iter(kube.pods.values())))
        stray["metadata"]["name"] = "e1-stray-1"
        kube.pods["e1-stray-1"] = stray
        op.saw_pod("ADDED", pod_essence(copy.deepcopy(stray)))
        kube.annotate("executions", *KEY, {ANNOTATION_KILL: "true"})
        op.saw_execution("MODIFIED", kube.get("executions", *KEY))
        await settle(op)

    asyncio.run(scenario())
    assert kube.execution["status"]["state"] == "KILLED"
    assert "DELETE e1-stray-1" in kube.calls
