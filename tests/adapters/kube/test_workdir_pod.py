"""A WorkingDirectory's pod as data: one container per step, in order, sharing one emptyDir; and the pod's
container statuses read back into the steps' reports."""

from __future__ import annotations

import json

from flowpods.core.engine import AttemptFinished
from flowpods.core.executor import StepReported
from flowpods.core.status import Attempt
from flowpods.kube.resources import build_pod, observe
from tests.adapters.kube.test_resources import CONFIG, EXECUTION
from tests.core.simulation import RUN, T0, Simulation, make_flow

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def workdir_action(*commands: str, **step: object):
    tasks = [{"id": f"s{i}", "type": SHELL, "commands": [command], **step} for i, command in enumerate(commands)]
    flow = make_flow([{"id": "dir", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": tasks}])
    (action,) = Simulation(flow).outstanding.values()
    return action


def test_each_step_is_a_container_in_order_sharing_the_working_directory_and_non_root():
    action = workdir_action("echo a > f", "cat f {{ secret('TOKEN') }}", "true", timeout="PT10S")
    pod = build_pod(CONFIG, EXECUTION, RUN, "f", action)
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["step-0", "step-1"]
    assert [c["name"] for c in spec["containers"]] == ["step-2"]
    assert pod["metadata"]["labels"]["flowpods.io/task-id"] == "dir"
    assert {"name": "workdir", "emptyDir": {}} in spec["volumes"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 30 + 3 * 5  # the steps' timeouts, each with its grace
    for index, container in enumerate([*spec["initContainers"], *spec["containers"]]):
        step = action.steps[index]
        env = {e["name"]: e for e in container["env"]}
        assert container["command"] == ["flowpods", "worker", "--step"]
        assert container["workingDir"] == "/workdir" and container["securityContext"]["runAsNonRoot"] is True
        assert {"name": "workdir", "mountPath": "/workdir"} in container["volumeMounts"]
        assert env["TRACEPARENT"]["value"] == step.traceparent  # the step's own TASKRUN span
        assert f"cicd.pipeline.task.name=s{index}" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        assert json.loads(env["FLOWPODS_STEP"]["value"])["index"] == index
        assert "FLOWPODS_TASKRUN" not in env
        assert ("FLOWPODS_SECRET_TOKEN" in env) == (index == 1)


def status(*containers: tuple[str, dict], phase: str = "Pending", reason: str | None = None) -> dict:
    statuses = [{"name": name, "state": state} for name, state in containers]
    return {
        "metadata": {"name": "ex-1-dir-1", "labels": {"flowpods.io/taskrun-id": "dirrun", "flowpods.io/attempt": "1"}},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase, "reason": reason, "initContainerStatuses": statuses[:-1],
                   "containerStatuses": statuses[-1:]},
    }  # fmt: skip


def ended(code: int, message: dict) -> dict:
    return {"terminated": {"exitCode": code, "message": json.dumps(message), "startedAt": "2026-01-01T00:00:01Z",
                           "finishedAt": "2026-01-01T00:00:02Z"}}  # fmt: skip


def test_the_steps_that_ran_are_reported_in_order_then_the_pods_end():
    attempt = Attempt(number=1, createdAt=T0)
    running = status(("step-0", {"running": {"startedAt": "2026-01-01T00:00:01Z"}}), ("step-1", {"waiting": {}}))
    (started,) = observe(running, attempt, T0, steps=True)
    assert isinstance(started, StepReported) and started.step == 0 and started.finished is None
    assert started.taskRunId == "dirrun" and started.node == "node-1"
    done = status(("step-0", ended(0, {"outputs": {"vars": {"x": 1}}})), ("step-1", ended(3, {"error": "boom"})),
                  phase="Failed")  # fmt: skip
    first, second, pod = observe(done, attempt, T0, steps=True)
    assert isinstance(first, StepReported) and first.finished is not None and first.finished.success
    assert first.finished.outputs == {"vars": {"x": 1}}
    assert isinstance(second, StepReported) and second.finished is not None
    assert not second.finished.success and second.finished.reason == "boom" and second.finished.exitCode == 3
    assert isinstance(pod, AttemptFinished) and not pod.success and pod.taskRunId == "dirrun"


def test_a_step_its_allow_failure_let_pass_still_reports_its_failure():
    attempt = Attempt(number=1, createdAt=T0)
    done = status(("step-0", ended(0, {"error": "tolerated"})), ("step-1", ended(0, {})), phase="Succeeded")
    first, _, pod = observe(done, attempt, T0, steps=True)
    assert isinstance(first, StepReported) and first.finished is not None and not first.finished.success
    assert isinstance(pod, AttemptFinished) and pod.success


def test_an_image_that_cannot_be_pulled_ends_the_pod():
    attempt = Attempt(number=1, createdAt=T0)
    stuck = status(("step-0", {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}), ("step-1", {}))
    (pod,) = observe(stuck, attempt, T0, steps=True)
    assert isinstance(pod, AttemptFinished) and pod.imageUnavailable and "ImagePullBackOff" in (pod.reason or "")
