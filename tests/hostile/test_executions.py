"""Hostile Flows and Executions in the operator, with the cluster replaced by a fake: each one ends with a
reason on its own status (and an Event), and nothing it holds can stop the operator or retry forever."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowpods.core.executor.rules import child_failure
from flowpods.core.status import State
from flowpods.kube import resources
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import RECURSION_LIMIT, Operator
from tests.hostile.corpus import nested_ifs_document

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FLOW_SPEC = {"id": "greet", "namespace": "team", "tasks": [{"id": "t", "type": "Log", "message": "hi"}]}


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_list(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture(autouse=True)
def recursion_limit_of_the_operator() -> Any:
    """`flowpods operator` raises the limit at start-up (kopf must decode what the API server admits)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    yield
    sys.setrecursionlimit(before)


def flow_resource(spec: dict[str, Any], name: str = "greet") -> dict[str, Any]:
    return {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow",
            "metadata": {"name": name, "namespace": "ns", "generation": 1}, "spec": spec}  # fmt: skip


def execution(name: str = "e1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flowpods.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": "ns", "uid": "u-" + name, "resourceVersion": "1",
                     "creationTimestamp": "2026-11-25T12:00:00Z"},
        "spec": {"flowRef": {"name": "greet"}, **spec},
    }  # fmt: skip


class FakeKube:
    """The API server as far as one reconcile needs it; every write is recorded."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in objects}
        self.writes: list[dict[str, Any]] = []
        self.deleted_pods: list[str] = []
        self.annotated: list[tuple[str, dict[str, str]]] = []
        self.created: list[dict[str, Any]] = []

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        kind = {"flows": "Flow", "executions": "Execution"}[plural]
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        json.dumps(body)  # what the real client would send must be JSON
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)
        self.objects[("Execution", stored["metadata"]["name"])] = stored
        self.writes.append(stored)
        return copy.deepcopy(stored)

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.created.append(body)
        return {**copy.deepcopy(body), "status": {"phase": "Pending"}}

    def create(self, plural: str, body: dict[str, Any]) -> bool:
        self.created.append(body)
        return True

    def delete_pod(self, namespace: str, name: str) -> None:
        self.deleted_pods.append(name)

    def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotated.append((name, annotations))

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def list_objects(self, plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        kind = {"flows": "Flow", "executions": "Execution"}[plural]
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]


def operator(kube: FakeKube) -> Operator:
    return Operator(OperatorConfig.from_env({}), kube, None)  # type: ignore[arg-type]


# (name, Execution spec fields, words of the reason on its status)
BAD_EXECUTION_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("inputs-990-deep", {"inputs": {"x": deep(990)}}, "spec.inputs is nested more than 128 levels deep"),
    ("inputs-5000-deep", {"inputs": {"x": deep(5000)}}, "spec.inputs is nested more than 128 levels deep"),
    ("inputs-list-990-deep", {"inputs": {"x": deep_list(990)}}, "spec.inputs is nested"),
    ("inputs-too-many-values", {"inputs": {"x": list(range(300_000))}}, "spec.inputs holds more than 200000 values"),
    ("trigger-data-990-deep", {"trigger": {"type": "webhook", "data": deep(990)}}, "spec.trigger.data is nested"),
    ("labels-deep", {"labels": deep(500)}, "spec.labels is nested"),
    ("undeclared-input", {"inputs": {"nope": 1}}, "input 'nope' is not declared"),
]


@pytest.mark.parametrize(("name", "spec", "expect"), BAD_EXECUTION_SPECS, ids=[c[0] for c in BAD_EXECUTION_SPECS])
def test_an_execution_whose_spec_cannot_run_ends_failed_with_the_reason(name: str, spec: dict[str, Any],
                                                                        expect: str) -> None:  # fmt: skip
    kube = FakeKube(flow_resource(FLOW_SPEC))
    outcome = operator(kube).reconcile(("ns", "e1"), execution(**spec))
    (written,) = kube.writes
    assert written["status"]["state"] == "FAILED" and expect in written["status"]["error"]
    assert outcome.events[0][0] == "Warning" and expect in outcome.events[0][2]
    assert kube.created == []  # no pod


# (name, Flow spec, words of the Flow's Invalid condition)
BAD_FLOW_RESOURCES: list[tuple[str, dict[str, Any], str]] = [
    ("thousand-nested-ifs", nested_ifs_document(1000), "the flow is nested more than 128 levels deep"),
    (
        "validator-redos-default",
        {**FLOW_SPEC, "inputs": [{"id": "x", "validator": "(a+)+$", "defaults": "a" * 40 + "!"}]},
        "the default value is invalid",
    ),
    ("validator-invalid", {**FLOW_SPEC, "inputs": [{"id": "x", "validator": "("}]}, "not a valid regular expression"),
    (
        "retry-out-of-range",
        {
            **FLOW_SPEC,
            "tasks": [
                {"id": "t", "type": "Log", "message": "x", "retry": {"interval": "P999999999D", "maxAttempts": 3}}
            ],
        },
        "cannot be longer than 366 days",
    ),
    (
        "negative-timeout",
        {**FLOW_SPEC, "tasks": [{"id": "t", "type": "Log", "message": "x", "timeout": "-PT5S"}]},
        "must be longer than zero",
    ),
]


@pytest.mark.parametrize(("name", "spec", "expect"), BAD_FLOW_RESOURCES, ids=[c[0] for c in BAD_FLOW_RESOURCES])
def test_a_bad_flow_is_invalid_and_its_executions_fail_with_the_reason(name: str, spec: dict[str, Any],
                                                                       expect: str) -> None:  # fmt: skip
    resource = flow_resource(spec)
    status, flow, problem = resources.flow_status(resource, NOW)
    assert flow is None and problem is not None and expect in problem
    assert status["conditions"][0]["reason"] == "Invalid"
    kube = FakeKube(resource)
    operator(kube).reconcile(("ns", "e1"), execution())
    assert kube.writes[-1]["status"]["state"] == "FAILED" and expect in kube.writes[-1]["status"]["error"]


def running(name: str = "e1", **status: Any) -> dict[str, Any]:
    body = execution(name)
    body["status"] = {"state": "RUNNING", "flow": FLOW_SPEC, "traceId": "ab" * 16,
                      "history": [{"state": "RUNNING", "at": "2026-11-25T12:00:00Z"}], **status}  # fmt: skip
    return body


def run_error(op: Operator, body: dict[str, Any], exc: Exception) -> Any:
    async def main() -> Any:
        outcome = await op._on_error(("ns", body["metadata"]["name"]), body, exc)
        for timer in op.timers.values():
            timer.cancel()
        return outcome

    return asyncio.run(main())


def test_an_error_handling_an_execution_ends_it_failed_once_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    body = running()
    kube = FakeKube(flow_resource(FLOW_SPEC), body)
    op = operator(kube)
    running_pod, done_pod = {"status": {"phase": "Running"}}, {"status": {"phase": "Succeeded"}}
    op.view.pods[("ns", "e1")] = {"e1-a-1": running_pod, "e1-b-1": done_pod}
    running_child, done_child = {"status": {"state": "RUNNING"}}, {"status": {"state": "SUCCESS"}}
    op.view.children[("ns", "e1")] = {"child": running_child, "done": done_child}
    with caplog.at_level(logging.ERROR, logger="flowpods.kube.operator"):
        outcome = run_error(op, body, OverflowError("date value out of range"))
        again = run_error(op, kube.get("executions", "ns", "e1") or {}, OverflowError("date value out of range"))
    (written,) = kube.writes  # the second error finds it FAILED and writes nothing
    status = written["status"]
    assert status["state"] == "FAILED"
    assert status["error"] == "the operator cannot go on: OverflowError: date value out of range"
    assert status["flow"] == FLOW_SPEC and status["traceId"] == "ab" * 16
    assert outcome.finished and outcome.events == [("Warning", "Failed", status["error"])]
    assert again.body is None and again.events == []
    assert kube.deleted_pods == ["e1-a-1"] and kube.annotated == [("child", {"flowpods.io/kill": "true"})]
    assert len([r for r in caplog.records if "cannot go on" in r.getMessage()]) == 1  # logged once
    assert resources.stored_status(written) is not None  # the next reconcile reads it as a finished execution


def test_a_transient_api_error_is_retried_with_one_event_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    body = running()
    kube = FakeKube(flow_resource(FLOW_SPEC), body)
    op = operator(kube)
    busy = ApiException(status=503, reason="Service Unavailable")
    with caplog.at_level(logging.WARNING, logger="flowpods.kube.operator"):
        first = run_error(op, body, busy)
        second = run_error(op, body, busy)
    assert kube.writes == []  # nothing is failed for an API server that is busy
    assert first.events == [
        ("Warning", "Retrying", "the Kubernetes API refused a request (503): Service Unavailable; retrying")
    ]
    assert second.events == []
    assert op.error_retries[("ns", "e1")] == 2
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 1


def test_garbage_in_status_history_ends_the_execution_failed_naming_the_field() -> None:
    body = running(history=[{"state": "RUNNING", "at": "yesterday-ish"}])
    kube = FakeKube(flow_resource(FLOW_SPEC), body)
    op = operator(kube)
    with pytest.raises(ValueError) as caught:
        op.reconcile(("ns", "e1"), body)
    run_error(op, body, caught.value)
    assert "history.0.at" in kube.writes[-1]["status"]["error"]
    assert kube.writes[-1]["status"]["state"] == "FAILED"


def test_a_pod_the_api_server_refuses_fails_the_execution_with_the_api_servers_message() -> None:
    body = running()
    kube = FakeKube(flow_resource(FLOW_SPEC), body)
    refused = ApiException(status=422, reason="Unprocessable Entity")
    refused.body = json.dumps({"message": 'Pod "e1-x-1" is invalid: metadata.annotations: Too long: must have at '
                                          "most 262144 bytes"})  # fmt: skip
    run_error(operator(kube), body, refused)
    assert kube.writes[-1]["status"]["error"] == (
        'the operator cannot go on: the Kubernetes API refused a request (422): Pod "e1-x-1" is invalid: '
        "metadata.annotations: Too long: must have at most 262144 bytes"
    )


def test_errors_are_described_in_one_bounded_line() -> None:
    assert resources.describe_error(RecursionError()) == "a value in this execution is nested too deeply to handle"
    assert len(resources.describe_error(ValueError("x\n" * 5000))) <= resources.MAX_REASON + 3
    assert "\n" not in resources.describe_error(ValueError("a\nb"))
    assert resources.is_transient(ApiException(status=429)) and resources.is_transient(ConnectionResetError())
    assert not resources.is_transient(ApiException(status=422)) and not resources.is_transient(KeyError("x"))


def test_a_create_refused_by_an_admission_policy_or_quota_is_retried_but_an_invalid_spec_is_not() -> None:
    refused = ApiException(status=422)
    refused.body = '{"message":"pods \\"p\\" is forbidden: ValidatingAdmissionPolicy \'x\' denied request: no"}'
    quota = ApiException(status=403)
    quota.body = '{"message":"pods \\"p\\" is forbidden: exceeded quota: compute"}'
    invalid = ApiException(status=422)
    invalid.body = '{"message":"Pod \\"p\\" is invalid: spec.containers[0].image: Required value"}'
    assert resources.is_transient(refused) and resources.is_transient(quota)
    assert not resources.is_transient(invalid)


def test_a_child_whose_state_was_edited_to_garbage_does_not_stop_its_parent() -> None:
    assert resources.child_finished({"status": {"state": "ALMOST"}}, "tr", NOW) is None
    failed = {"status": {"state": "FAILED", "error": "task 'x' failed: boom"}}
    finished = resources.child_finished(failed, "tr", NOW)
    assert finished is not None and finished.error == "task 'x' failed: boom"


def test_a_parents_reason_quotes_its_childs_reason_bounded() -> None:
    assert child_failure("c-1", State.FAILED, "task 'x' failed: boom") == (
        "subflow execution c-1 ended FAILED: task 'x' failed: boom"
    )
    assert child_failure("c-1", State.KILLED, None) == "subflow execution c-1 ended KILLED"
    assert len(child_failure("c", State.FAILED, "r" * 10_000)) < 600


def chain(length: int) -> list[dict[str, Any]]:
    """Executions e0 (the root) .. e<length>, each the verified child of the one before: owned by it, and
    listed in its stored status."""
    bodies = [running("e0")]
    for i in range(1, length + 1):
        child = execution(f"e{i}")
        parent = bodies[-1]
        child["metadata"]["ownerReferences"] = [{"kind": "Execution", "name": parent["metadata"]["name"],
                                                 "uid": parent["metadata"]["uid"]}]  # fmt: skip
        child["metadata"]["labels"] = {resources.LABEL_ROOT: "e0"}
        parent["status"]["taskRuns"] = [{"id": "t", "taskId": "sub", "child": child["metadata"]["name"]}]
        child["status"] = copy.deepcopy(running()["status"])
        bodies.append(child)
    del bodies[-1]["status"]  # the last one is starting
    return bodies


def start_last(bodies: list[dict[str, Any]], **config: str) -> FakeKube:
    kube = FakeKube(flow_resource(FLOW_SPEC))
    op = Operator(OperatorConfig.from_env(config), kube, None)  # type: ignore[arg-type]
    for body in bodies:
        op.view.executions[("ns", body["metadata"]["name"])] = body
    last = bodies[-1]
    op.reconcile(("ns", last["metadata"]["name"]), last)
    return kube


def test_subflow_depth_comes_from_the_parents_stored_status_not_the_annotation() -> None:
    bodies = chain(11)
    bodies[-1]["metadata"]["annotations"] = {"flowpods.io/subflow-depth": "-5"}  # edited to lift the limit
    kube = start_last(bodies)
    assert kube.writes[-1]["status"]["error"] == "subflows nest deeper than 10"
    assert kube.created == []


def test_a_forged_parent_does_not_count_and_a_forged_depth_does_not_stop_an_execution() -> None:
    bodies = chain(1)
    child = bodies[-1]
    child["metadata"]["annotations"] = {"flowpods.io/subflow-depth": "99"}
    bodies[0]["status"]["taskRuns"] = []  # the claimed parent never started it
    kube = start_last(bodies)
    assert kube.writes[-1]["status"]["state"] == "RUNNING" and len(kube.created) == 1


def test_a_root_may_start_a_bounded_number_of_executions() -> None:
    bodies = chain(1)
    for i in range(3):  # three more children of the same root, already in the view
        extra = execution(f"x{i}")
        extra["metadata"]["labels"] = {resources.LABEL_ROOT: "e0"}
        bodies.insert(1, extra)
    kube = start_last(bodies, FLOWPODS_MAX_EXECUTIONS_PER_ROOT="3")
    assert kube.writes[-1]["status"]["error"] == (
        "the root execution 'e0' has started 3 subflow executions; the limit is 3"
    )
    assert start_last(bodies, FLOWPODS_MAX_EXECUTIONS_PER_ROOT="4").writes[-1]["status"]["state"] == "RUNNING"


def pending_pod(name: str, minutes_ago: float, unscheduled: bool = True) -> dict[str, Any]:
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    status: dict[str, Any] = {"phase": "Pending"}
    if unscheduled:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/1 nodes are available: 1 Insufficient memory."}]  # fmt: skip
    else:
        status["containerStatuses"] = [{"name": "task", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    return {"metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "labels": {"flowpods.io/attempt": "1"}}, "status": status}  # fmt: skip


def started_with_one_pod(spec: dict[str, Any], **config: str) -> tuple[Operator, FakeKube, dict[str, Any], str]:
    kube = FakeKube(flow_resource(spec))
    op = Operator(OperatorConfig.from_env(config), kube, None)  # type: ignore[arg-type]
    op.reconcile(("ns", "e1"), execution())
    (pod,) = kube.created
    return op, kube, kube.writes[-1], pod["metadata"]["name"]


@pytest.mark.parametrize(
    ("spec", "config", "minutes", "reason"),
    [
        (FLOW_SPEC, {}, 6, "pending timeout: not started after 300s: Unschedulable: 0/1 nodes are available"),
        (FLOW_SPEC, {"FLOWPODS_PENDING_TIMEOUT": "30"}, 1, "not started after 30s: Unschedulable"),
        (
            {**FLOW_SPEC, "tasks": [{"id": "t", "type": "Log", "message": "hi", "pendingTimeout": "PT10S"}]},
            {},
            0.5,
            "not started after 10s: Unschedulable",
        ),
    ],
    ids=["default", "operator-setting", "task-override"],
)
def test_a_pod_pending_too_long_fails_its_attempt_with_the_pods_reason(
    spec: dict[str, Any], config: dict[str, str], minutes: float, reason: str
) -> None:
    op, kube, body, pod = started_with_one_pod(spec, **config)
    op.view.pods[("ns", "e1")] = {pod: pending_pod(pod, minutes)}
    op.reconcile(("ns", "e1"), body)
    (run,) = kube.writes[-1]["status"]["taskRuns"]
    assert run["state"] == "FAILED" and reason in run["attempts"][-1]["reason"]
    assert kube.writes[-1]["status"]["state"] == "FAILED"
    assert kube.deleted_pods == [pod]


def test_a_pod_pending_within_its_limit_waits_and_a_wake_up_is_set_for_the_deadline() -> None:
    op, kube, body, pod = started_with_one_pod(FLOW_SPEC)
    waiting = pending_pod(pod, 1, unscheduled=False)
    op.view.pods[("ns", "e1")] = {pod: waiting}
    writes = len(kube.writes)
    outcome = op.reconcile(("ns", "e1"), body)
    assert len(kube.writes) == writes and kube.deleted_pods == []  # nothing changed yet
    assert outcome.wake_at is not None
    assert outcome.wake_at == resources.parse_time(waiting["metadata"]["creationTimestamp"]) + timedelta(minutes=5)
    attempt = resources.Attempt(number=1, createdAt=datetime.now(UTC))
    late = resources.pending_expired(pending_pod(pod, 6, False), "t", attempt, timedelta(minutes=5), datetime.now(UTC))
    assert late is not None and late.reason == "pending timeout: not started after 300s: ContainerCreating"


def test_a_status_too_large_for_etcd_ends_the_execution_failed_instead_of_retrying() -> None:
    body = running()
    kube = FakeKube(flow_resource(FLOW_SPEC), body)
    too_large = ApiException(status=500, reason="Internal Server Error")
    too_large.body = json.dumps({"message": "etcdserver: request is too large"})
    assert not resources.is_transient(too_large)
    run_error(operator(kube), body, too_large)
    assert kube.writes[-1]["status"]["state"] == "FAILED"
    assert kube.writes[-1]["status"]["error"].endswith("(500): etcdserver: request is too large")


def test_a_task_run_too_large_for_a_pod_fails_its_execution_before_any_pod_is_created() -> None:
    spec = {**FLOW_SPEC, "tasks": [{"id": "t", "type": "Log", "message": "x" * 600_000}]}
    kube = FakeKube(flow_resource(spec), execution())
    op = operator(kube)
    with pytest.raises(resources.TooLarge) as caught:
        op.reconcile(("ns", "e1"), execution())
    assert kube.created == []
    run_error(op, execution(), caught.value)
    assert kube.writes[-1]["status"]["state"] == "FAILED"
    assert kube.writes[-1]["status"]["error"].startswith(
        "the operator cannot go on: task 't': the rendered task run is 600"
    )


def test_a_status_over_the_limit_is_refused_before_it_is_sent() -> None:
    with pytest.raises(resources.TooLarge, match="the status of execution e1 would be 1500"):
        resources.check_status_size({"taskRuns": ["x" * 1_500_000]}, "e1")
    resources.check_status_size({"taskRuns": ["x" * 1000]}, "e1")
