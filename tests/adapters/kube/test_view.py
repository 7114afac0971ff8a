"""The operator's in-memory view (flowpods.kube.view): what each watch event records and whom it concerns."""

from __future__ import annotations

from typing import Any

from flowpods.core.status import State
from flowpods.kube.view import View


def body(name: str, version: int, owner: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "team", "resourceVersion": str(version)}
    if owner:
        meta["ownerReferences"] = [{"kind": "Execution", "name": owner}]
    return {"metadata": meta, **extra}


class TestExecutions:
    def test_an_execution_concerns_itself_and_a_child_also_its_parent(self) -> None:
        view = View()
        assert view.saw_execution("ADDED", body("ex", 1)) == [("team", "ex")]
        assert view.saw_execution("ADDED", body("child", 2, owner="ex")) == [("team", "ex"), ("team", "child")]
        assert view.children[("team", "ex")]["child"]["metadata"]["name"] == "child"

    def test_an_older_version_never_replaces_a_newer_one(self) -> None:
        view = View()
        view.saw_execution("MODIFIED", body("ex", 5, status={"state": "RUNNING"}))
        view.saw_execution("MODIFIED", body("ex", 4, status={"state": "CREATED"}))
        assert view.executions[("team", "ex")]["status"]["state"] == "RUNNING"

    def test_a_deleted_execution_forgets_its_pods_and_leaves_its_parent(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("child", 1, owner="ex"))
        view.saw_pod("ADDED", body("child-pod", 2, owner="child"))
        assert view.saw_execution("DELETED", body("child", 3, owner="ex")) == []
        assert ("team", "child") not in view.executions and ("team", "child") not in view.pods
        assert view.children[("team", "ex")] == {}

    def test_the_queued_executions_of_a_flow_are_found_without_the_others(self) -> None:
        view = View()

        def execution(name: str, version: int, flow: str, state: str | None) -> dict[str, Any]:
            return body(name, version, spec={"flowRef": {"name": flow}}, status={"state": state} if state else {})

        view.saw_execution("ADDED", execution("q1", 1, "limited", "QUEUED"))
        view.saw_execution("ADDED", execution("q2", 2, "limited", "QUEUED"))
        view.saw_execution("ADDED", execution("other", 3, "elsewhere", "QUEUED"))
        view.saw_execution("ADDED", execution("new", 4, "limited", None))  # not started: admitted by its reconcile
        view.saw_execution("ADDED", execution("run", 5, "limited", "RUNNING"))
        assert sorted(view.queued_of("team", "limited")) == ["q1", "q2"]
        assert view.queued_of("elsewhere", "limited") == []  # another Kubernetes namespace
        view.saw_execution("MODIFIED", execution("q1", 6, "limited", "RUNNING"))  # admitted meanwhile
        view.saw_execution("DELETED", execution("q2", 7, "limited", "QUEUED"))
        assert view.queued_of("team", "limited") == []
        assert view.queued == {("team", "other")}  # the index keeps only what still waits

    def test_an_execution_dropped_from_the_view_directly_is_not_woken(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("q", 1, spec={"flowRef": {"name": "f"}}, status={"state": "QUEUED"}))
        view.executions.pop(("team", "q"))  # as the operator does for an execution whose read found it gone
        assert view.queued_of("team", "f") == [] and view.queued == set()


class TestPods:
    def test_a_pod_concerns_the_execution_that_owns_it(self) -> None:
        view = View()
        assert view.saw_pod("ADDED", body("p", 1, owner="ex")) == [("team", "ex")]
        assert view.saw_pod("ADDED", body("stray", 1)) == []

    def test_a_deleted_pod_is_remembered_as_deleted(self) -> None:
        view = View()
        view.saw_pod("ADDED", body("p", 1, owner="ex"))
        view.saw_pod("DELETED", body("p", 2, owner="ex"))
        assert view.pods[("team", "ex")] == {} and view.deleted_pods[("team", "ex")] == {"p"}

    def test_a_pod_pokes_its_execution_when_first_seen_and_when_its_progress_changes(self) -> None:
        view = View()
        ex = [("team", "ex")]

        def pod(version: int, **status: Any) -> dict[str, Any]:
            return body("p", version, owner="ex", status=status)

        def waiting(reason: str) -> list[dict[str, Any]]:
            return [{"name": "task", "state": {"waiting": {"reason": reason}}}]

        assert view.saw_pod("ADDED", pod(1, phase="Pending")) == ex  # first seen: its pending deadline starts
        scheduled = pod(2, phase="Pending", conditions=[{"type": "PodScheduled", "status": "True"}])
        assert view.saw_pod("MODIFIED", scheduled) == []
        assert view.pods[ex[0]]["p"]["status"]["conditions"]  # recorded all the same
        assert view.saw_pod("MODIFIED", pod(3, phase="Pending", containerStatuses=waiting("ContainerCreating"))) == ex
        assert view.saw_pod("MODIFIED", pod(4, phase="Pending", containerStatuses=waiting("ContainerCreating"),
                                            podIP="10.0.0.7")) == []  # fmt: skip
        assert view.saw_pod("MODIFIED", pod(5, phase="Pending", containerStatuses=waiting("ErrImagePull"))) == ex
        running = [{"name": "task", "state": {"running": {"startedAt": "2026-11-26T12:00:00Z"}}}]
        assert view.saw_pod("MODIFIED", pod(6, phase="Running", containerStatuses=running)) == ex
        done = [{"name": "task", "state": {"terminated": {"exitCode": 0}}}]
        assert view.saw_pod("MODIFIED", pod(7, phase="Running", containerStatuses=done)) == ex
        assert view.saw_pod("MODIFIED", pod(8, phase="Succeeded", containerStatuses=done)) == ex
        assert view.saw_pod("MODIFIED", pod(9, phase="Failed", reason="DeadlineExceeded",
                                            containerStatuses=done)) == ex  # fmt: skip
        assert view.saw_pod("DELETED", pod(10, phase="Failed", reason="DeadlineExceeded", containerStatuses=done)) == ex

    def test_a_step_of_a_working_directory_s_pod_is_progress(self) -> None:
        view = View()
        steps = [{"name": "step-0", "state": {"terminated": {"exitCode": 0}}},
                 {"name": "step-1", "state": {"waiting": {"reason": "PodInitializing"}}}]  # fmt: skip
        view.saw_pod("ADDED", body("p", 1, owner="ex", status={"phase": "Pending", "initContainerStatuses": steps}))
        steps = [steps[0], {"name": "step-1", "state": {"running": {}}}]
        started = body("p", 2, owner="ex", status={"phase": "Pending", "initContainerStatuses": steps})
        assert view.saw_pod("MODIFIED", started) == [("team", "ex")]

    def test_a_pod_the_operator_created_is_in_view_before_its_watch_event(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("ex", 1))
        view.created_pod(("team", "ex"), body("p", 2, owner="ex", status={"phase": "Pending"}))
        assert view.pods[("team", "ex")]["p"]["status"] == {"phase": "Pending"}
        view.saw_pod("MODIFIED", body("p", 3, owner="ex", status={"phase": "Running"}))
        assert view.pods[("team", "ex")]["p"]["status"] == {"phase": "Running"}

    def test_what_the_watch_said_wins_over_a_create_s_answer(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("ex", 1))
        view.saw_pod("MODIFIED", body("p", 3, owner="ex", status={"phase": "Running"}))  # came first
        view.created_pod(("team", "ex"), body("p", 2, owner="ex", status={"phase": "Pending"}))
        assert view.pods[("team", "ex")]["p"]["status"] == {"phase": "Running"}
        view.saw_pod("DELETED", body("p", 4, owner="ex"))
        view.created_pod(("team", "ex"), body("p", 2, owner="ex", status={"phase": "Pending"}))
        assert view.pods[("team", "ex")] == {} and view.deleted_pods[("team", "ex")] == {"p"}

    def test_a_create_s_answer_does_not_bring_back_a_deleted_execution(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("ex", 1))
        view.saw_execution("DELETED", body("ex", 2))
        view.created_pod(("team", "ex"), body("p", 2, owner="ex"))
        assert ("team", "ex") not in view.pods and ("team", "ex") not in view.deleted_pods


class TestFlows:
    def test_the_flow_resource_is_found_by_its_kestra_namespace_and_id(self) -> None:
        view = View()
        view.saw_flow("ADDED", {"kind": "Flow", "metadata": {"name": "child-flow", "namespace": "team"},
                                "spec": {"id": "child", "namespace": "company", "tasks": []}})  # fmt: skip
        assert view.flow_resource_for("team", "company", "child") == "child-flow"
        assert view.flow_resource_for("other", "company", "child") is None
        view.saw_flow("DELETED", {"metadata": {"name": "child-flow", "namespace": "team"}})
        assert view.flow_resource_for("team", "company", "child") is None


class TestWhatMetricsRead:
    def test_each_execution_gives_its_flow_and_state_the_flow_from_its_snapshot_else_its_reference(self) -> None:
        view = View()
        view.saw_execution("ADDED", body("new", 1, spec={"flowRef": {"name": "orders-resource"}}))
        view.saw_execution("ADDED", body("queued", 2, spec={"flowRef": {"name": "orders-resource"}},
                                         status={"state": "QUEUED", "flow": {"id": "orders"}}))  # fmt: skip
        assert sorted(view.run_states(), key=str) == sorted(
            [("orders-resource", None), ("orders", State.QUEUED)], key=str
        )

    def test_pods_in_view_give_their_phases_and_deleted_ones_none(self) -> None:
        view = View()
        view.saw_pod("ADDED", body("a", 1, owner="ex", status={"phase": "Running"}))
        view.saw_pod("ADDED", body("b", 2, owner="ex", status={"phase": "Succeeded"}))
        view.saw_pod("ADDED", body("c", 3, owner="ex"))
        view.saw_pod("DELETED", body("c", 4, owner="ex"))
        assert sorted(view.pod_phases()) == ["Running", "Succeeded"]


def test_the_view_drops_managed_fields_and_keeps_the_rest():
    from flowpods.kube.view import without_managed_fields

    execution = body("ex", 3, status={"state": "RUNNING"})
    execution["metadata"]["managedFields"] = [{"manager": "flowpods", "operation": "Update"}]
    kept = without_managed_fields(execution)
    assert "managedFields" not in kept["metadata"] and "managedFields" in execution["metadata"]
    assert kept["status"] == execution["status"] and kept["metadata"]["resourceVersion"] == "3"
    assert without_managed_fields(kept) is kept


def test_neither_an_event_nor_a_writes_answer_puts_managed_fields_in_the_view():
    view = View()
    managed = [{"manager": "flowpods", "operation": "Update"}]
    event = body("ex", 3, status={"state": "RUNNING"})
    event["metadata"]["managedFields"] = managed
    child = body("child", 4, owner="ex")
    child["metadata"]["managedFields"] = managed
    view.saw_execution("MODIFIED", event)
    view.saw_execution("ADDED", child)
    assert "managedFields" not in view.executions[("team", "ex")]["metadata"]
    assert "managedFields" not in view.children[("team", "ex")]["child"]["metadata"]
    answer = body("ex", 5, status={"state": "SUCCESS"})
    answer["metadata"]["managedFields"] = managed
    view.remember(("team", "ex"), answer)
    kept = view.executions[("team", "ex")]
    assert "managedFields" not in kept["metadata"] and kept["status"]["state"] == "SUCCESS"
