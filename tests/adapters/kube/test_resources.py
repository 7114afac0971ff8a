"""Kubernetes shapes as data: worker pods, what pods say back, Flow status and child executions."""

from __future__ import annotations

import json

import pytest

from flowpods.core import engine
from flowpods.core.engine import AttemptFinished, AttemptStarted, StartSubflow
from flowpods.core.status import Attempt, State
from flowpods.kube.config import OperatorConfig
from flowpods.kube.resources import (
    child_execution,
    child_finished,
    flow_status,
    label_value,
    observe_pod,
    run_info,
    status_body,
)
from flowpods.telemetry.otlp_settings import TraceLevel
from tests.core.simulation import RUN, T0, Simulation, log, make_flow

EXECUTION = {
    "apiVersion": "flowpods.io/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "ex-1", "namespace": "team", "uid": "uid-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"flowRef": {"name": "f"}},
}
CONFIG = OperatorConfig(worker_image="flowpods:test", worker_otlp_endpoint="http://collector:4317")


def first_action(**task):
    sim = Simulation(make_flow([log("a", **task)]))
    return next(iter(sim.outstanding.values()))


def pod_for(action, config=CONFIG):
    from flowpods.kube.resources import build_pod

    return build_pod(config, EXECUTION, RUN, "f", action)


def test_the_worker_pod_carries_the_trace_context_and_runs_non_root():
    action = first_action(timeout="PT10S")
    pod = pod_for(action)
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert pod["metadata"]["name"] == f"ex-1-{action.work.taskRunId}-1"
    assert env["TRACEPARENT"] == action.traceparent
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert env["OTEL_SERVICE_NAME"] == "flowpods-worker"
    assert "k8s.pod.name=$(FLOWPODS_POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert "cicd.pipeline.run.id=ex-1" in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert json.loads(env["FLOWPODS_TASKRUN"])["task"]["message"] == "a"
    assert container["command"] == ["flowpods", "worker"] and container["image"] == "flowpods:test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["activeDeadlineSeconds"] == 15
    labels = pod["metadata"]["labels"]
    assert labels["flowpods.io/execution"] == "ex-1" and labels["flowpods.io/attempt"] == "1"
    assert labels["flowpods.io/task-id"] == "a" and labels["flowpods.io/taskrun-id"] == action.work.taskRunId
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    trace_id, span_id = action.traceparent.split("-")[1:3]
    assert pod["metadata"]["annotations"] == {"flowpods.io/trace-id": trace_id, "flowpods.io/span-id": span_id}


def test_disabled_tracing_sends_no_context_to_the_pod():
    pod = pod_for(first_action(), OperatorConfig(traces=TraceLevel.DISABLED, worker_otlp_endpoint="http://c:4317"))
    names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "TRACEPARENT" not in names and "OTEL_EXPORTER_OTLP_ENDPOINT" not in names


def test_a_script_task_in_its_own_image_runs_it_unchanged_beside_the_worker():
    flow = make_flow([{"id": "s", "type": "io.kestra.plugin.scripts.shell.Commands", "commands": ["echo"],
                       "containerImage": "debian:bookworm-slim", "timeout": "PT10S"}])  # fmt: skip
    action = next(iter(Simulation(flow).outstanding.values()))
    pod = pod_for(action)
    spec = pod["spec"]
    prepare, worker = spec["initContainers"]
    (task,) = spec["containers"]
    # flowpods' part comes from the flowpods image: an init container and a native sidecar
    assert prepare["image"] == worker["image"] == "flowpods:test"
    assert prepare["command"] == ["flowpods", "worker", "--prepare", "/flowpods"] and "restartPolicy" not in prepare
    assert worker["command"] == ["flowpods", "worker", "--relay", "/flowpods"] and worker["restartPolicy"] == "Always"
    # the user's image, unchanged, runs the launcher with its own /bin/sh
    assert task["name"] == "task" and task["image"] == "debian:bookworm-slim"
    assert task["command"] == ["/bin/sh", "/flowpods/launch.sh"] and task["workingDir"] == "/flowpods/work"
    for container in (prepare, worker, task):
        assert {"name": "flowpods", "mountPath": "/flowpods"} in container["volumeMounts"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        }  # fmt: skip
    task_env = {e["name"]: e.get("value") for e in task["env"]}
    assert "FLOWPODS_TASKRUN" not in task_env and task_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert json.loads({e["name"]: e.get("value") for e in worker["env"]}["FLOWPODS_TASKRUN"])["taskId"] == "s"
    assert spec["shareProcessNamespace"] is True  # the worker kills the user's processes on a timeout
    assert spec["activeDeadlineSeconds"] == 40  # the backstop leaves time for two containers before the task
    assert {"name": "flowpods", "emptyDir": {}} in spec["volumes"]
    assert spec["securityContext"]["runAsUser"] == 65532 and spec["restartPolicy"] == "Never"
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "worker"


def test_the_process_runner_keeps_a_script_in_the_worker_container():
    flow = make_flow([{"id": "s", "type": "Shell", "commands": ["echo"], "containerImage": "ubuntu",
                       "taskRunner": {"type": "io.kestra.plugin.core.runner.Process"}}])  # fmt: skip
    pod = pod_for(next(iter(Simulation(flow).outstanding.values())))
    assert "initContainers" not in pod["spec"] and pod["spec"]["containers"][0]["image"] == "flowpods:test"


def pod_status(phase, state, reason=None, labels=None):
    return {
        "metadata": {
            "name": "ex-1-x-1",
            "labels": labels or {"flowpods.io/taskrun-id": "x", "flowpods.io/attempt": "1"},
        },
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": phase,
            "reason": reason,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}],
            "containerStatuses": [{"name": "task", "state": state}],
        },
    }


ATTEMPT = Attempt(number=1, createdAt=T0)


def test_a_running_pod_starts_the_attempt():
    event = observe_pod(pod_status("Running", {"running": {"startedAt": "2026-01-01T00:00:02Z"}}), ATTEMPT, T0)
    assert isinstance(event, AttemptStarted)
    assert (event.taskRunId, event.attempt, event.node) == ("x", 1, "node-1")
    assert event.scheduledAt.second == 1 and event.at.second == 2


def test_a_succeeded_pod_returns_its_outputs():
    terminated = {"exitCode": 0, "message": '{"outputs": {"value": 42}}', "startedAt": "2026-01-01T00:00:02Z",
                  "finishedAt": "2026-01-01T00:00:05Z"}  # fmt: skip
    event = observe_pod(pod_status("Succeeded", {"terminated": terminated}), ATTEMPT, T0)
    assert isinstance(event, AttemptFinished) and event.success
    assert event.outputs == {"value": 42} and event.exitCode == 0


def test_failed_pods_keep_their_reason():
    def reason_of(phase, state, pod_reason=None):
        event = observe_pod(pod_status(phase, state, pod_reason), ATTEMPT, T0)
        assert isinstance(event, AttemptFinished) and not event.success
        return event

    worker_error = {"terminated": {"exitCode": 1, "message": '{"error": "boom"}'}}
    assert reason_of("Failed", worker_error).reason == "boom"
    assert reason_of("Failed", {"terminated": {"exitCode": 3, "message": ""}}).exitCode == 3
    deadline = reason_of("Failed", {"terminated": {"exitCode": 137}}, "DeadlineExceeded")
    assert deadline.timedOut and deadline.reason.startswith("timeout: deadline exceeded")
    oom = reason_of("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    assert oom.reason.startswith("OOMKilled")
    pull = reason_of("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}})
    assert pull.reason == "image pull error: ImagePullBackOff: no such image"
    assert pull.imageUnavailable and not deadline.imageUnavailable and not oom.imageUnavailable
    # what containerd says of an image without flowpods: longer than any cut, kept whole
    runtime = (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
        'failed: unable to start container process: exec: "flowpods": executable file not found in $PATH: unknown'
    )
    start = reason_of("Failed", {"terminated": {"exitCode": 128, "reason": "StartError", "message": runtime}})
    assert start.reason == f"container did not start (StartError, exit code 128): {runtime}"


def test_flow_status_names_the_problem():
    resource = {"metadata": {"name": "bad", "namespace": "team", "generation": 3},
                "spec": {"tasks": [{"id": "a", "type": "Log", "mesage": "x"}]}}  # fmt: skip
    status, flow, problem = flow_status(resource, T0)
    assert flow is None and status["conditions"][0]["status"] == "False"
    assert "task 'a' (Log): unknown field 'mesage'" in problem and status["revision"] == 3
    resource["spec"] = {"tasks": [{"id": "a", "type": "Log", "message": "x"}],
                        "triggers": [{"id": "s", "type": "Schedule", "cron": "@daily"}]}  # fmt: skip
    status, flow, problem = flow_status(resource, T0)
    assert problem is None and flow.namespace == "team" and flow.id == "bad"
    assert status["conditions"][0]["status"] == "True" and status["taskCount"] == 1 and status["triggers"] == "Schedule"


def test_run_info_reads_an_inbound_traceparent_and_ignores_a_malformed_one():
    flow = make_flow([log("a")])
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with_parent = {
        **EXECUTION,
        "metadata": {**EXECUTION["metadata"], "annotations": {"flowpods.io/traceparent": caller}},
    }
    assert run_info(with_parent, flow, 1, T0).parentTraceparent == caller
    broken = {**EXECUTION, "metadata": {**EXECUTION["metadata"], "annotations": {"flowpods.io/traceparent": "nope"}}}
    assert run_info(broken, flow, 1, T0).parentTraceparent is None


def test_status_body_has_what_printer_columns_read():
    sim = Simulation(make_flow([log("a")]))
    sim.finish("a")
    body = status_body(RUN, sim.status, {"id": "f"}, 2)
    assert body["state"] == "SUCCESS" and body["traceId"] == engine.trace_id(RUN)
    assert body["duration"].endswith("s") and body["startDate"].endswith("Z") and body["flowRevision"] == 2


def test_child_execution_is_owned_and_carries_the_subflow_span():
    action = StartSubflow(taskRunId="t1", name="child-abc", namespace="company.team", flowId="c", inputs={"k": 1},
                          labels={}, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")  # fmt: skip
    child = child_execution(EXECUTION, action, "c-flow")
    assert child["metadata"]["ownerReferences"][0]["name"] == "ex-1"
    assert child["metadata"]["annotations"]["flowpods.io/traceparent"] == action.traceparent
    assert child["spec"]["flowRef"] == {"name": "c-flow"} and child["spec"]["trigger"]["type"] == "subflow"
    assert child_finished({"status": {"state": "RUNNING"}}, "t1", T0) is None
    done = child_finished({"status": {"state": "FAILED", "outputs": {"o": 1}}}, "t1", T0)
    assert done.state == State.FAILED and done.outputs == {"o": 1}


def test_label_values_stay_valid():
    assert label_value("My_Task.1") == "My_Task.1"
    long = label_value("x" * 100)
    assert len(long) <= 63 and long != label_value("x" * 99)


def test_baggage_goes_from_the_execution_to_its_pods_and_children():
    flow = make_flow([log("a")])
    annotated = {**EXECUTION, "metadata": {**EXECUTION["metadata"], "annotations": {"flowpods.io/baggage": "t=1"}}}
    run = run_info(annotated, flow, 1, T0)
    assert run.baggage == "t=1"
    sim = Simulation(flow, run=run)
    (action,) = sim.outstanding.values()
    env = {e["name"]: e.get("value") for e in pod_for(action)["spec"]["containers"][0]["env"]}
    assert env["BAGGAGE"] == "t=1"
    start = StartSubflow(taskRunId="t1", name="c", namespace="n", flowId="c", inputs={}, labels={},
                         traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")  # fmt: skip
    assert child_execution(annotated, start, "c")["metadata"]["annotations"]["flowpods.io/baggage"] == "t=1"


def test_a_short_webhook_key_keeps_the_flow_ready_with_a_warning():
    resource = {"metadata": {"name": "hooked", "namespace": "team", "generation": 1},
                "spec": {"tasks": [{"id": "a", "type": "Log", "message": "x"}],
                         "triggers": [{"id": "hook", "type": "Webhook", "key": "short"}]}}  # fmt: skip
    status, flow, problem = flow_status(resource, T0)
    condition = status["conditions"][0]
    assert problem is None and flow is not None
    assert (condition["status"], condition["reason"]) == ("True", "ValidWithWarnings")
    assert "trigger 'hook': the webhook key has 5 characters" in condition["message"]


def test_the_pod_receives_secrets_by_reference_never_their_value():
    action = first_action(message="token {{ secret('API_TOKEN') }}")
    env = {e["name"]: e for e in pod_for(action)["spec"]["containers"][0]["env"]}
    ref = env["FLOWPODS_SECRET_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "flowpods-secrets", "key": "API_TOKEN", "optional": True}
    assert "[[flowpods-secret:API_TOKEN]]" in env["FLOWPODS_TASKRUN"]["value"]


def test_a_flow_trigger_execution_records_the_trigger_and_links_to_the_ending_run():
    from flowpods.core.flowtriggers import Ended, firings
    from flowpods.core.model import parse_flow
    from flowpods.kube.resources import TRIGGERS_PENDING, triggered_execution

    sim = Simulation(make_flow([log("a")]))
    sim.finish("a")
    listener = parse_flow({"id": "g", "namespace": "company.team", "tasks": [log("b")],
                           "triggers": [{"id": "after-f", "type": "Flow", "states": ["SUCCESS"]}]})  # fmt: skip
    (firing,) = firings(Ended(make_flow([log("a")]), RUN, sim.status), [("g-flow", listener)])
    body = triggered_execution("team", firing)
    assert body["metadata"]["name"] == firing.name and body["spec"]["flowRef"] == {"name": "g-flow"}
    assert body["spec"]["trigger"] == {"type": "flow", "id": "after-f", "data": firing.data}
    assert body["metadata"]["annotations"]["flowpods.io/link"] == firing.link

    created = {**body, "metadata": {**body["metadata"], "uid": "uid-2", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    run = run_info(created, listener, 1, T0)
    assert run.trigger == "flow" and run.triggerId == "after-f" and run.links == [firing.link]
    assert run.triggerData["executionId"] == RUN.id
    broken = {**created, "metadata": {**created["metadata"], "annotations": {"flowpods.io/link": "nope"}}}
    assert run_info(broken, listener, 1, T0).links == []
    assert status_body(run, sim.status, {"id": "g"}, 1)["triggered"] == TRIGGERS_PENDING


def test_the_view_keeps_of_a_pod_what_observing_it_reads():
    """The view holds `pod_essence` of each pod: observing it says what observing the whole pod says."""
    from flowpods.kube.view import pod_essence

    pod = pod_for(first_action())
    managed = [{"manager": "flowpods", "fieldsV1": {"f:spec": {"f:containers": {}}}}]
    pod["metadata"].update(
        uid="u-1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z", managedFields=managed
    )
    pod["spec"]["nodeName"] = "node-1"
    terminated = {"exitCode": 0, "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:03Z",
                  "message": json.dumps({"outputs": {"a": 1}, "error": None})}  # fmt: skip
    for phase, state in (("Running", {"running": {"startedAt": "2026-01-01T00:00:02Z"}}),
                         ("Succeeded", {"terminated": terminated})):  # fmt: skip
        pod["status"] = pod_status(phase, state)["status"]
        essence = pod_essence(pod)
        assert observe_pod(essence, ATTEMPT, T0) == observe_pod(pod, ATTEMPT, T0) is not None
        assert "managedFields" not in essence["metadata"] and essence["spec"] == {"nodeName": "node-1"}
        assert essence["metadata"]["labels"] == pod["metadata"]["labels"]
        assert len(json.dumps(essence)) < len(json.dumps(pod)) / 2


def test_a_flow_snapshot_is_parsed_once_for_every_execution_that_holds_it() -> None:
    from flowpods.core.model import FlowError
    from flowpods.kube.resources import SNAPSHOT_KEPT_BYTES, stored_flow

    snapshot = {"id": "f", "namespace": "team", "tasks": [{"id": "a", "type": "Log", "message": "x"}]}
    one = stored_flow({**EXECUTION, "status": {"flow": snapshot, "flowRevision": 2}})
    other = stored_flow({**EXECUTION, "status": {"flow": json.loads(json.dumps(snapshot)), "flowRevision": 2}})
    assert one is not None and other is not None and one[1] == 2
    assert one[0] is other[0], "the same document: one parse, shared"
    edited = {**snapshot, "tasks": [{"id": "b", "type": "Log", "message": "x"}]}
    again = stored_flow({**EXECUTION, "status": {"flow": edited}})
    assert again is not None and [t.id for t in again[0].tasks] == ["b"], "an edited snapshot is parsed anew"
    large = {**snapshot, "description": "x" * SNAPSHOT_KEPT_BYTES}
    first, second = (stored_flow({**EXECUTION, "status": {"flow": large}}) for _ in range(2))
    assert first is not None and second is not None and first[0] is not second[0], "a large snapshot is not kept"
    broken = {**EXECUTION, "status": {"flow": {"id": "f", "namespace": "team", "tasks": [{"id": "a"}]}}}
    for _ in range(2):  # refused each time: a snapshot that does not parse is not kept
        with pytest.raises(FlowError):
            stored_flow(broken)
