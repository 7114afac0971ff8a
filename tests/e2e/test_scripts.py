"""Script tasks in images without flowpods, on the real node: Debian's dash alone (no coreutils, no Python),
and Debian's Python with the OpenTelemetry SDK. Both images are built by tests/testenv/images.py."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from tests import testenv
from tests.e2e.harness import (
    assert_each_span_once_but_for_kills,
    execution_yaml,
    list_pods,
    parent_id,
    settle,
    spans_by_name,
    tags,
    wait_for_spans,
    wait_for_state,
    wait_until,
)
from tests.testenv.images import PYTHON_OTEL_IMAGE, SHELL_ONLY_IMAGE


@pytest.fixture
def real(testenv_info) -> testenv.EnvInfo:
    if not testenv_info.real_node:
        pytest.fail("script tasks in their own images need the real node; the environment runs the node agent",
                    pytrace=False)  # fmt: skip
    return testenv_info


def flow_yaml(name: str, tasks: str) -> str:
    body = textwrap.indent(textwrap.dedent(tasks).strip(), "    ")
    return (
        f"apiVersion: flowpods.io/v1alpha1\nkind: Flow\nmetadata:\n  name: {name}\nspec:\n  id: {name}\n"
        f"  namespace: company.team\n  tasks:\n{body}\n"
    )


def run_flow(apply_yaml, custom_objects, namespace, operator, name: str, tasks: str, timeout: float = 90) -> dict:
    apply_yaml(flow_yaml(name, tasks))
    apply_yaml(execution_yaml(f"{name}-1", name))
    return wait_for_state(custom_objects, namespace, f"{name}-1", timeout=timeout, operator=operator)["status"]


def attempt_of(status: dict, task_id: str) -> dict:
    run = next(t for t in status["taskRuns"] if t["taskId"] == task_id)
    return run["attempts"][-1]


def test_outputs_on_both_streams_the_outputs_file_and_before_commands_in_an_image_with_only_sh(
    real, operator, apply_yaml, custom_objects, core_v1, namespace
) -> None:
    status = run_flow(apply_yaml, custom_objects, namespace, operator, "sh-only", rf"""
        - id: first
          type: io.kestra.plugin.scripts.shell.Commands
          containerImage: {SHELL_ONLY_IMAGE}
          beforeCommands:
            - 'PREFIX=before'
            - 'read -r data < in.txt || [ -n "$data" ]'
          env:
            WHO: "it's me"
          inputFiles:
            in.txt: the input
          commands:
            - echo '::{{"outputs":{{"fromStdout":"out"}}}}::'
            - echo '::{{"outputs":{{"fromStderr":"err"}}}}::' >&2
            - printf '{{"fromFile":"%s %s %s"}}' "$PREFIX" "$WHO" "$data" > "$FLOWPODS_OUTPUTS"
            - echo "a log line" && echo "a warning" >&2
            - 'if command -v cat; then echo "::{{\"outputs\":{{\"cat\":true}}}}::"; fi'
        - id: second
          type: io.kestra.plugin.scripts.shell.Script
          containerImage: {SHELL_ONLY_IMAGE}
          script: |
            a="{{{{ outputs.first.vars.fromStdout }}}}" b="{{{{ outputs.first.vars.fromFile }}}}"
            echo "::{{\"outputs\":{{\"seen\":\"$a-$b\"}}}}::"
        - id: lib
          type: io.kestra.plugin.scripts.python.Script
          script: |
            from kestra import Kestra
            Kestra.outputs({{"from": "the kestra package in the worker image"}})
    """)  # fmt: skip
    assert status["state"] == "SUCCESS", status.get("message")
    first = next(t for t in status["taskRuns"] if t["taskId"] == "first")
    assert first["outputs"] == {
        "exitCode": 0,
        "vars": {"fromStdout": "out", "fromStderr": "err", "fromFile": "before it's me the input"},
    }  # fmt: skip  (and no `cat`: the image has nothing but dash)
    second = next(t for t in status["taskRuns"] if t["taskId"] == "second")
    assert second["outputs"]["vars"] == {"seen": "out-before it's me the input"}
    lib = next(t for t in status["taskRuns"] if t["taskId"] == "lib")
    assert lib["outputs"]["vars"] == {"from": "the kestra package in the worker image"}
    pod = next(
        p for p in list_pods(core_v1, namespace, "sh-only-1") if p.metadata.labels["flowpods.io/task-id"] == "first"
    )
    (task,) = pod.spec.containers
    assert task.image == SHELL_ONLY_IMAGE and task.command == ["/bin/sh", "/flowpods/launch.sh"]
    log = core_v1.read_namespaced_pod_log(pod.metadata.name, namespace, container="worker")
    assert " INFO [trace_id=" in log and "first: a log line" in log
    assert " WARN [trace_id=" in log and "first: a warning" in log
    assert "::{" not in log


def test_a_failing_command_and_a_timeout_keep_their_reasons(
    real, operator, apply_yaml, custom_objects, namespace
) -> None:
    status = run_flow(apply_yaml, custom_objects, namespace, operator, "failures", f"""
        - id: parallel
          type: io.kestra.plugin.core.flow.Parallel
          tasks:
            - id: fails
              type: io.kestra.plugin.scripts.shell.Commands
              containerImage: {SHELL_ONLY_IMAGE}
              commands:
                - 'echo "connecting" && echo "ERROR: no such table: orders" >&2'
                - exit 3
            - id: spins
              type: io.kestra.plugin.scripts.shell.Commands
              containerImage: {SHELL_ONLY_IMAGE}
              timeout: PT2S
              commands:
                - echo "about to spin" >&2
                - 'while :; do :; done'
    """)  # fmt: skip
    assert status["state"] == "FAILED"
    assert attempt_of(status, "fails")["reason"] == (
        "Command failed with exit code 3; the last lines of stderr:\nERROR: no such table: orders"
    )
    spins = attempt_of(status, "spins")
    assert (
        spins["reason"]
        == "timeout: timed out after 2s; the task's processes were killed; the last lines of stderr:\nabout to spin"
    )


def test_kill_stops_a_script_in_its_own_image(real, operator, apply_yaml, custom_objects, core_v1, namespace,
                                              kubectl) -> None:  # fmt: skip
    apply_yaml(flow_yaml("spin", f"""
        - id: spin
          type: io.kestra.plugin.scripts.shell.Commands
          containerImage: {SHELL_ONLY_IMAGE}
          commands: ['while :; do :; done']
    """))  # fmt: skip
    apply_yaml(execution_yaml("spin-1", "spin"))
    wait_until(
        lambda: [p for p in list_pods(core_v1, namespace, "spin-1") if p.status.phase == "Running"], 60,
        "the script's pod to run",
    )  # fmt: skip
    kubectl("annotate", "execution", "spin-1", "flowpods.io/kill=true", "-n", namespace)
    status = wait_for_state(custom_objects, namespace, "spin-1", timeout=30, operator=operator)["status"]
    assert status["state"] == "KILLED" and status["taskRuns"][0]["state"] == "KILLED"
    # the launcher passes SIGTERM on: the pod goes well within its 30 s grace period
    wait_until(lambda: not list_pods(core_v1, namespace, "spin-1"), 20, "the killed pod to be deleted")


INSTRUMENTED = """
import os
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "user-program"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP)
parent = extract({"traceparent": os.environ["TRACEPARENT"]})
with provider.get_tracer("orders").start_as_current_span("load orders", context=parent) as span:
    span.set_attribute("orders.count", 3)
    print('::{"outputs": {"orders": 3}}::')
provider.shutdown()
"""


def test_an_instrumented_python_program_nests_its_span_under_the_task_run(
    real, operator, apply_yaml, custom_objects, jaeger, namespace
) -> None:
    task = {"id": "load", "type": "io.kestra.plugin.scripts.python.Script", "containerImage": PYTHON_OTEL_IMAGE,
            "script": INSTRUMENTED.strip() + "\n"}  # fmt: skip
    status = run_flow(apply_yaml, custom_objects, namespace, operator, "traced", yaml.safe_dump([task]))
    assert status["state"] == "SUCCESS", status.get("message")
    assert status["taskRuns"][0]["outputs"] == {"exitCode": 0, "vars": {"orders": 3}}
    worker_name = "WORKER - io.kestra.plugin.scripts.python.Script"
    trace = wait_for_spans(jaeger, status["traceId"], {"TASKRUN load", worker_name, "load orders"})
    spans = spans_by_name(trace)
    (taskrun,), (worker,), (mine,) = spans["TASKRUN load"], spans[worker_name], spans["load orders"]
    assert parent_id(worker) == taskrun["spanID"] and parent_id(mine) == worker["spanID"]
    assert tags(mine)["orders.count"] == 3 and tags(worker)["process.exit.code"] == 0
    assert trace["processes"][mine["processID"]]["serviceName"] == "user-program"
    # the WORKER span covers the user's process
    assert worker["startTime"] <= mine["startTime"]
    assert mine["startTime"] + mine["duration"] <= worker["startTime"] + worker["duration"]


def test_operator_killed_while_a_script_runs_in_its_own_image_one_pod_and_each_span_once(
    real, operator, apply_yaml, custom_objects, core_v1, jaeger, namespace
) -> None:
    apply_yaml(flow_yaml("restart", f"""
        - id: slow
          type: io.kestra.plugin.scripts.shell.Commands
          containerImage: {PYTHON_OTEL_IMAGE}
          commands: ['sleep 4', 'echo "::{{\\"outputs\\":{{\\"done\\":true}}}}::"']
    """))  # fmt: skip
    apply_yaml(execution_yaml("restart-1", "restart"))
    wait_until(
        lambda: [p for p in list_pods(core_v1, namespace, "restart-1") if p.status.phase == "Running"], 60,
        "the script's pod to run",
    )  # fmt: skip
    operator.kill()
    operator.start()
    status = wait_for_state(custom_objects, namespace, "restart-1", timeout=90, operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    assert status["taskRuns"][0]["outputs"]["vars"] == {"done": True}
    assert len(list_pods(core_v1, namespace, "restart-1")) == 1
    expected = 1 + 1 + 1 + len(status["changes"])  # RUN, TASKRUN, WORKER, one EXECUTOR per change
    jaeger.wait_for_trace(status["traceId"], min_spans=expected, timeout=30)
    settle(2.0)  # anything sent twice would have arrived by now
    trace = jaeger.trace(status["traceId"])
    assert_each_span_once_but_for_kills(trace, expected, kills=1)
