"""Kestra's WorkingDirectory on the real node: its tasks run one after the other in ONE pod, sharing its
directory, and each is still its own task run with its own TASKRUN and WORKER spans in Jaeger."""

from __future__ import annotations

import pytest

from tests import testenv
from tests.e2e.harness import list_pods, parent_id, spans_by_name, tags, wait_for_spans
from tests.e2e.test_scripts import run_flow

SHELL = "io.kestra.plugin.scripts.shell.Commands"


@pytest.fixture
def real(testenv_info) -> testenv.EnvInfo:
    if not testenv_info.real_node:
        pytest.fail("a WorkingDirectory's pod needs the real node; the environment runs the node agent", pytrace=False)
    return testenv_info


def test_two_tasks_share_a_file_in_one_pod_each_with_its_task_run_and_spans(
    real, operator, apply_yaml, custom_objects, core_v1, jaeger, namespace
) -> None:
    status = run_flow(apply_yaml, custom_objects, namespace, operator, "shared", f"""
        - id: dir
          type: io.kestra.plugin.core.flow.WorkingDirectory
          tasks:
            - id: write
              type: {SHELL}
              commands:
                - echo "made by write" > shared.txt
            - id: read
              type: {SHELL}
              commands:
                - 'echo "::{{\\"outputs\\":{{\\"content\\":\\"$(cat shared.txt)\\"}}}}::"'
    """)  # fmt: skip
    assert status["state"] == "SUCCESS", status.get("error")
    runs = {tr["taskId"]: tr for tr in status["taskRuns"]}
    assert {key: runs[key]["state"] for key in ("dir", "write", "read")} == dict.fromkeys(
        ("dir", "write", "read"), "SUCCESS"
    )
    assert runs["read"]["outputs"]["vars"] == {"content": "made by write"}
    pods = list_pods(core_v1, namespace, "shared-1")
    assert [p.metadata.labels["flowpods.io/task-id"] for p in pods] == ["dir"]  # ONE pod for the two tasks
    (pod,) = pods
    assert [c.name for c in pod.spec.init_containers] == ["step-0"] and [c.name for c in pod.spec.containers] == [
        "step-1"
    ]
    directory_span = "EXECUTOR - io.kestra.plugin.core.flow.WorkingDirectory"
    expected = {"TASKRUN write": 1, "TASKRUN read": 1, f"WORKER - {SHELL}": 2, directory_span: 1}
    spans = spans_by_name(wait_for_spans(jaeger, status["traceId"], expected))
    (directory,) = spans[directory_span]
    for task_id in ("write", "read"):
        (taskrun,) = spans[f"TASKRUN {task_id}"]
        assert parent_id(taskrun) == directory["spanID"]
        assert tags(taskrun)["k8s.pod.name"] == pod.metadata.name
        (worker,) = [w for w in spans[f"WORKER - {SHELL}"] if tags(w)["flowpods.task_id"] == task_id]
        assert parent_id(worker) == taskrun["spanID"]


def test_a_failing_task_fails_the_directory_and_the_next_one_never_runs(
    real, operator, apply_yaml, custom_objects, core_v1, namespace
) -> None:
    status = run_flow(apply_yaml, custom_objects, namespace, operator, "stops", f"""
        - id: dir
          type: io.kestra.plugin.core.flow.WorkingDirectory
          tasks:
            - id: tolerated
              type: {SHELL}
              allowFailure: true
              commands: ['exit 2']
            - id: fails
              type: {SHELL}
              commands: ['echo "no such file" >&2', 'exit 3']
            - id: never
              type: {SHELL}
              commands: ['echo never']
          errors:
            - id: handler
              type: io.kestra.plugin.core.debug.Return
              format: "handled {{{{ task.id }}}}"
    """)  # fmt: skip
    assert status["state"] == "FAILED"
    runs = {tr["taskId"]: tr for tr in status["taskRuns"]}
    assert runs["tolerated"]["state"] == "WARNING" and runs["fails"]["state"] == "FAILED"
    assert runs["fails"]["attempts"][-1]["reason"] == (
        "Command failed with exit code 3; the last lines of stderr:\nno such file"
    )
    assert "never" not in runs
    assert runs["dir"]["state"] == "FAILED" and runs["handler"]["state"] == "SUCCESS"
    tasks = sorted(p.metadata.labels["flowpods.io/task-id"] for p in list_pods(core_v1, namespace, "stops-1"))
    assert tasks == ["dir", "handler"]
