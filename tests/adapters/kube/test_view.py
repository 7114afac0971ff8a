"""The operator's in-memory view (flowpods.kube.view): what each watch event records and whom it concerns."""

from __future__ import annotations

from typing import Any

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


class TestFlows:
    def test_the_flow_resource_is_found_by_its_kestra_namespace_and_id(self) -> None:
        view = View()
        view.saw_flow("ADDED", {"kind": "Flow", "metadata": {"name": "child-flow", "namespace": "team"},
                                "spec": {"id": "child", "namespace": "company", "tasks": []}})  # fmt: skip
        assert view.flow_resource_for("team", "company", "child") == "child-flow"
        assert view.flow_resource_for("other", "company", "child") is None
        view.saw_flow("DELETED", {"metadata": {"name": "child-flow", "namespace": "team"}})
        assert view.flow_resource_for("team", "company", "child") is None
