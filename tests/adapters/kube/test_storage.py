"""kopf's diff-base is built only for Flows (the one kind with change handlers), not for every pod and
Execution event."""

from __future__ import annotations

import kopf

from flowpods.kube.storage import ChangeHandledOnly

STORAGE = ChangeHandledOnly(prefix="flowpods.io", key="last-handled-configuration")


def body(kind: str) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "v1", "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"},
                     "annotations": {"flowpods.io/last-handled-configuration": '{"spec": {"old": true}}'}},
        "spec": {"id": "x", "tasks": [{"id": "t"}]},
        "status": {"phase": "Running"},
    })  # fmt: skip


def test_a_flow_gets_kopfs_own_diff_base_without_its_status() -> None:
    essence = STORAGE.build(body=body("Flow"))
    assert essence["spec"] == {"id": "x", "tasks": [{"id": "t"}]}
    assert "status" not in essence
    assert STORAGE.fetch(body=body("Flow")) == {"spec": {"old": True}}


def test_pods_and_executions_get_an_empty_one_so_kopf_sees_no_change() -> None:
    for kind in ("Pod", "Execution"):
        assert STORAGE.build(body=body(kind)) == {}
        assert STORAGE.fetch(body=body(kind)) == {}
