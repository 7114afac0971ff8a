"""The operator on a real control plane: flows applied with kubectl run as pods, and Jaeger holds their traces.

Pods are run by the test node agent, the environment's stand-in for the kubelet (no images run here).
"""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import datetime

import yaml

from tests.e2e.harness import (
    GROUP,
    VERSION,
    OperatorProcess,
    assert_each_span_once_but_for_kills,
    assert_parent_example_trace,
    example,
    execution_yaml,
    get_execution,
    list_pods,
    parent_id,
    settle,
    spans_by_name,
    tags,
    wait_for_spans,
    wait_for_state,
    wait_until,
)


def flow_yaml(name: str, spec: str) -> str:
    return f"apiVersion: {GROUP}/{VERSION}\nkind: Flow\nmetadata:\n  name: {name}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )


def env_of(pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env if e.value is not None}


def test_hello_world_runs_in_a_pod_and_leaves_one_trace(operator, apply_yaml, custom_objects, core_v1, jaeger,
                                                         namespace, kubectl, testenv_info):  # fmt: skip
    apply_yaml(example("hello-world.yaml"))
    apply_yaml(execution_yaml("hello-1", "hello-world"))
    body = wait_for_state(custom_objects, namespace, "hello-1", operator=operator)
    status = body["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    assert status["duration"] and status["startDate"] and status["traceId"]

    (pod,) = list_pods(core_v1, namespace, "hello-1")
    assert pod.status.phase == "Succeeded"
    assert pod.metadata.labels["flowpods.io/task-id"] == "hello"
    assert pod.metadata.owner_references[0].name == "hello-1"
    assert pod.spec.security_context.run_as_non_root is True and pod.spec.restart_policy == "Never"
    env = env_of(pod)
    _, trace_id, taskrun_span, _ = env["TRACEPARENT"].split("-")
    assert trace_id == status["traceId"]
    assert pod.metadata.annotations["flowpods.io/span-id"] == taskrun_span

    trace = wait_for_spans(jaeger, trace_id, {"RUN hello-world": 1, "TASKRUN hello": 1,
                           "WORKER - io.kestra.plugin.core.log.Log": 1,
                           "EXECUTOR - company.team_hello-world": len(status["changes"])})  # fmt: skip
    spans = spans_by_name(trace)
    assert len({s["spanID"] for s in trace["spans"]}) == len(trace["spans"]), "no span twice"
    (run,) = spans["RUN hello-world"]
    (taskrun,) = spans["TASKRUN hello"]
    (worker,) = spans["WORKER - io.kestra.plugin.core.log.Log"]
    executors = spans["EXECUTOR - company.team_hello-world"]
    assert len(executors) == len(status["changes"]) >= 2
    assert parent_id(run) is None
    assert all(parent_id(s) == run["spanID"] for s in [taskrun, *executors])
    assert taskrun["spanID"] == taskrun_span, "the pod's TRACEPARENT names the TASKRUN span"
    assert parent_id(worker) == taskrun["spanID"]
    assert tags(run)["cicd.pipeline.result"] == "success"
    assert tags(taskrun)["k8s.pod.name"] == pod.metadata.name
    assert tags(taskrun)["k8s.namespace.name"] == namespace
    assert tags(taskrun)["k8s.node.name"] == pod.spec.node_name == testenv_info.node_name

    listing = kubectl("get", "executions", "-n", namespace).stdout
    assert "hello-1" in listing and "SUCCESS" in listing and status["traceId"] in listing


def test_subflow_child_run_hangs_under_the_parent_subflow_span(parent_example, parent_runs, custom_objects, jaeger):
    """On parent-1 of the shared runs of examples/parent.yaml (harness.parent_example: applied with kubectl, in a
    namespace of their own; the run view reads the same runs)."""
    namespace = parent_example["namespace"]
    status = parent_runs[0]["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    sub = next(t for t in status["taskRuns"] if t["taskId"] == "subflow")
    child = get_execution(custom_objects, namespace, sub["child"])
    assert child["status"]["state"] == "SUCCESS"
    assert child["metadata"]["ownerReferences"][0]["name"] == "parent-1"
    assert child["status"]["traceId"] == status["traceId"]

    spans = assert_parent_example_trace(jaeger, status["traceId"])
    assert tags(spans["RUN parent"][0])["flowpods.trigger"] == "kubectl"


def test_inputs_and_outputs_flow_between_tasks(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("io", """
        id: io
        namespace: company.team
        inputs:
          - id: who
            type: STRING
          - id: count
            type: INT
            defaults: 2
        tasks:
          - id: make
            type: Return
            format: "{{ inputs.who }} x{{ inputs.count * 3 }}"
          - id: values
            type: OutputValues
            values:
              echoed: "{{ outputs.make.value }}!"
        outputs:
          - id: final
            value: "{{ outputs.values.values.echoed }}"
    """))  # fmt: skip
    apply_yaml(execution_yaml("io-1", "io", {"who": "ada"}))
    status = wait_for_state(custom_objects, namespace, "io-1", operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    assert status["inputs"] == {"who": "ada", "count": 2}
    assert status["outputs"] == {"final": "ada x6!"}


def test_a_task_that_fails_twice_succeeds_on_the_third_attempt(operator, apply_yaml, custom_objects, core_v1,
                                                                jaeger, namespace):  # fmt: skip
    apply_yaml(flow_yaml("flaky", """
        id: flaky
        namespace: company.team
        tasks:
          - id: flaky
            type: io.kestra.plugin.core.execution.Fail
            condition: "{{ taskrun.attemptsCount < 2 }}"
            errorMessage: not yet
            retry:
              type: constant
              maxAttempts: 3
              interval: PT0.5S
    """))  # fmt: skip
    apply_yaml(execution_yaml("flaky-1", "flaky"))
    status = wait_for_state(custom_objects, namespace, "flaky-1", operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    (taskrun,) = status["taskRuns"]
    assert [a["state"] for a in taskrun["attempts"]] == ["FAILED", "FAILED", "SUCCESS"]
    assert taskrun["attempts"][0]["reason"] == "not yet"
    pods = list_pods(core_v1, namespace, "flaky-1")
    assert sorted(p.metadata.labels["flowpods.io/attempt"] for p in pods) == ["1", "2", "3"]
    expected = 1 + 3 + 3 + len(status["changes"])  # RUN, TASKRUN and WORKER per attempt, EXECUTOR per change
    trace = jaeger.wait_for_trace(status["traceId"], min_spans=expected)
    attempts = spans_by_name(trace)["TASKRUN flaky"]
    assert sorted(tags(s)["flowpods.attempt"] for s in attempts) == [1, 2, 3]
    assert [tags(s)["cicd.pipeline.task.run.result"] for s in sorted(attempts, key=lambda s: s["startTime"])] == [
        "failure", "failure", "success"
    ]  # fmt: skip


def test_a_failing_flow_runs_its_errors_branch(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("failing", """
        id: failing
        namespace: company.team
        tasks:
          - id: boom
            type: Fail
            errorMessage: the order was refused
          - id: never
            type: Log
            message: unreachable
        errors:
          - id: apologise
            type: Log
            message: "sorry"
    """))  # fmt: skip
    apply_yaml(execution_yaml("failing-1", "failing"))
    status = wait_for_state(custom_objects, namespace, "failing-1", operator=operator)["status"]
    assert status["state"] == "FAILED"
    assert status["message"] == "task 'boom' failed: the order was refused"
    states = {t["taskId"]: t["state"] for t in status["taskRuns"]}
    assert states == {"boom": "FAILED", "apologise": "SUCCESS"}


def test_a_task_timeout_fails_the_attempt(operator, apply_yaml, custom_objects, jaeger, namespace):
    apply_yaml(flow_yaml("slow", """
        id: slow
        namespace: company.team
        tasks:
          - id: nap
            type: Sleep
            duration: PT60S
            timeout: PT2S
    """))  # fmt: skip
    apply_yaml(execution_yaml("slow-1", "slow"))
    status = wait_for_state(custom_objects, namespace, "slow-1", timeout=45, operator=operator)["status"]
    assert status["state"] == "FAILED"
    attempt = status["taskRuns"][0]["attempts"][0]
    assert "timed out" in attempt["reason"] or "timeout" in attempt["reason"]
    trace = wait_for_spans(jaeger, status["traceId"], {"RUN slow", "TASKRUN nap"})
    (taskrun,) = spans_by_name(trace)["TASKRUN nap"]
    assert tags(taskrun)["cicd.pipeline.task.run.result"] == "timeout"


def test_kill_deletes_the_running_pod_and_ends_killed(operator, apply_yaml, custom_objects, core_v1, namespace,
                                                       kubectl):  # fmt: skip
    apply_yaml(flow_yaml("long", """
        id: long
        namespace: company.team
        tasks:
          - id: nap
            type: Sleep
            duration: PT120S
    """))  # fmt: skip
    apply_yaml(execution_yaml("long-1", "long"))
    wait_until(
        lambda: [p for p in list_pods(core_v1, namespace, "long-1") if p.status.phase == "Running"],
        60, "the sleeping pod to run",
    )  # fmt: skip
    kubectl("annotate", "execution", "long-1", "flowpods.io/kill=true", "-n", namespace)
    status = wait_for_state(custom_objects, namespace, "long-1", timeout=30, operator=operator)["status"]
    assert status["state"] == "KILLED"
    assert status["taskRuns"][0]["state"] == "KILLED"
    wait_until(lambda: not list_pods(core_v1, namespace, "long-1"), 30, "the killed pod to be deleted")


def test_operator_killed_mid_flow_finishes_with_one_pod_per_attempt_and_each_span_once(
    operator, apply_yaml, custom_objects, core_v1, jaeger, namespace
):
    steps = "\n".join(f"  - id: step{n}\n    type: Sleep\n    duration: PT1S" for n in range(1, 6))
    apply_yaml(flow_yaml("five", f"id: five\nnamespace: company.team\ntasks:\n{steps}\n"))
    apply_yaml(execution_yaml("five-1", "five"))

    def step_running(n: int):
        status = get_execution(custom_objects, namespace, "five-1").get("status") or {}
        return any(t["taskId"] == f"step{n}" for t in status.get("taskRuns", []))

    wait_until(lambda: step_running(2), 60, "step2 to start")
    operator.kill()
    settle(2.0)  # step2's pod finishes while no operator is running
    operator.start()
    status = wait_for_state(custom_objects, namespace, "five-1", timeout=90, operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    assert operator.starts == 2

    pods = list_pods(core_v1, namespace, "five-1")
    assert sorted(p.metadata.labels["flowpods.io/task-id"] for p in pods) == [f"step{n}" for n in range(1, 6)]
    assert all(p.metadata.labels["flowpods.io/attempt"] == "1" for p in pods)

    expected = 1 + 5 + 5 + len(status["changes"])  # RUN, TASKRUN x5, WORKER x5, one EXECUTOR per change
    trace = jaeger.wait_for_trace(status["traceId"], min_spans=expected, timeout=30)
    settle(2.0)  # anything sent twice would have arrived by now
    trace = jaeger.trace(status["traceId"])
    assert_each_span_once_but_for_kills(trace, expected, kills=1)
    spans = spans_by_name(trace)
    assert len({s["spanID"] for s in spans["RUN five"]}) == 1
    assert all(len({s["spanID"] for s in spans[f"TASKRUN step{n}"]}) == 1 for n in range(1, 6))

    def watermark_at_the_end() -> bool:  # stored by a patch of its own once the final export is confirmed
        now = get_execution(custom_objects, namespace, "five-1")["status"]
        return now["exported"] == now["changes"][-1]["n"] == status["changes"][-1]["n"]

    wait_until(watermark_at_the_end, 30, "the span watermark stored at the last change")


def test_a_flow_with_an_unknown_task_field_is_invalid(operator, apply_yaml, custom_objects, namespace, kubectl):
    apply_yaml(flow_yaml("typo", """
        id: typo
        namespace: company.team
        tasks:
          - id: hello
            type: Log
            mesage: hi
    """))  # fmt: skip

    def invalid():
        body = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "flows", "typo")
        conditions = (body.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready" and c["status"] == "False"), None)

    condition = wait_until(invalid, 30, "the Flow to be marked Invalid")
    assert condition["reason"] == "Invalid"
    assert "task 'hello' (Log): unknown field 'mesage'" in condition["message"]
    assert "missing required field 'message'" in condition["message"]
    events = wait_until(
        lambda: [e for e in yaml.safe_load(kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout)["items"]
                 if e["involvedObject"]["name"] == "typo" and e["reason"] == "Invalid"],
        30, "an Invalid event on the Flow",
    )  # fmt: skip
    assert "unknown field 'mesage'" in events[0]["message"]


def test_executions_with_a_missing_flow_or_a_missing_input_fail_with_a_reason(
    operator, apply_yaml, custom_objects, namespace, kubectl
):
    apply_yaml(flow_yaml("needs", """
        id: needs
        namespace: company.team
        inputs:
          - id: order
            type: INT
        tasks:
          - id: hello
            type: Log
            message: "{{ inputs.order }}"
    """))  # fmt: skip
    apply_yaml(execution_yaml("ghost-1", "no-such-flow"))
    apply_yaml(execution_yaml("needs-1", "needs"))
    ghost = wait_for_state(custom_objects, namespace, "ghost-1", operator=operator)["status"]
    assert ghost["state"] == "FAILED"
    assert ghost["message"] == f"flow 'no-such-flow' not found in namespace {namespace}"
    needs = wait_for_state(custom_objects, namespace, "needs-1", operator=operator)["status"]
    assert needs["state"] == "FAILED"
    assert needs["message"] == "invalid inputs: input 'order' is required (INT)"
    assert needs["taskRuns"] == []

    def failed_events():
        items = yaml.safe_load(kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout)["items"]
        return {e["involvedObject"]["name"]: e["message"] for e in items if e["reason"] == "Failed"}

    events = wait_until(lambda: (lambda found: found if len(found) == 2 else None)(failed_events()), 30,
                        "Failed events on both executions")  # fmt: skip
    assert "not found" in events["ghost-1"] and "'order' is required" in events["needs-1"]


def test_a_running_execution_keeps_the_flow_it_started_with(operator, apply_yaml, custom_objects, namespace, kubectl):
    apply_yaml(flow_yaml("edited", """
        id: edited
        namespace: company.team
        tasks:
          - id: wait
            type: Sleep
            duration: PT3S
          - id: say
            type: Return
            format: original
    """))  # fmt: skip
    apply_yaml(execution_yaml("edited-1", "edited"))
    wait_until(
        lambda: (get_execution(custom_objects, namespace, "edited-1").get("status") or {}).get("taskRuns"),
        60, "the execution to start",
    )  # fmt: skip
    apply_yaml(flow_yaml("edited", """
        id: edited
        namespace: company.team
        tasks:
          - id: other
            type: Return
            format: changed
    """))  # fmt: skip
    kubectl("delete", "flow", "edited", "-n", namespace)
    status = wait_for_state(custom_objects, namespace, "edited-1", operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    assert {t["taskId"]: t["outputs"] for t in status["taskRuns"]}["say"] == {"value": "original"}
    assert status["flowRevision"] == 1


def test_a_schedule_starts_executions_each_with_its_own_trace(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("ticker", """
        id: ticker
        namespace: company.team
        triggers:
          - id: every-3s
            type: Schedule
            cron: "* * * * * */3"
        tasks:
          - id: tick
            type: Log
            message: "tick at {{ trigger.date }}"
    """))  # fmt: skip

    def finished_runs():
        items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "executions")["items"]
        done = [i for i in items if (i.get("status") or {}).get("state") == "SUCCESS"]
        return done if len(done) >= 2 else None

    runs = wait_until(finished_runs, 60, "two scheduled executions to succeed")
    assert all(r["spec"]["trigger"]["type"] == "schedule" for r in runs)
    assert len({r["status"]["traceId"] for r in runs}) == len(runs)
    assert all(r["metadata"]["name"].startswith("ticker-every-3s-") for r in runs)


def test_a_concurrency_limit_queues_executions_one_at_a_time(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("single", """
        id: single
        namespace: company.team
        concurrency:
          limit: 1
        tasks:
          - id: nap
            type: Sleep
            duration: PT1S
    """))  # fmt: skip
    for n in range(3):
        apply_yaml(execution_yaml(f"single-{n}", "single"))
    bodies = [wait_for_state(custom_objects, namespace, f"single-{n}", operator=operator) for n in range(3)]
    assert [b["status"]["state"] for b in bodies] == ["SUCCESS"] * 3
    spans = []
    for body in bodies:
        history = body["status"]["history"]
        running = next(h["at"] for h in history if h["state"] == "RUNNING")
        spans.append((running, history[-1]["at"]))
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans
    assert sum("QUEUED" in [h["state"] for h in b["status"]["history"]] for b in bodies) >= 2


def test_a_concurrency_limit_with_cancel_refuses_the_extra_execution(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("only", """
        id: only
        namespace: company.team
        concurrency:
          limit: 1
          behavior: CANCEL
        tasks:
          - id: nap
            type: Sleep
            duration: PT3S
    """))  # fmt: skip
    apply_yaml(execution_yaml("only-1", "only"))
    wait_for_state(custom_objects, namespace, "only-1", {"RUNNING"}, operator=operator)
    apply_yaml(execution_yaml("only-2", "only"))
    refused = wait_for_state(custom_objects, namespace, "only-2", operator=operator)["status"]
    assert refused["state"] == "CANCELLED"
    assert "concurrency limit" in refused["message"]
    assert wait_for_state(custom_objects, namespace, "only-1", operator=operator)["status"]["state"] == "SUCCESS"


def test_fine_traces_add_the_operator_steps_under_each_change(testenv_info, crds, namespace, tmp_path, apply_yaml,
                                                              custom_objects, jaeger):  # fmt: skip
    fine = OperatorProcess(testenv_info, namespace, tmp_path, {"FLOWPODS_TRACES": "FINE"})
    fine.start()
    try:
        apply_yaml(example("hello-world.yaml"))
        apply_yaml(execution_yaml("fine-1", "hello-world"))
        status = wait_for_state(custom_objects, namespace, "fine-1", operator=fine)["status"]
        assert status["state"] == "SUCCESS", status.get("message")
        expected = 3 + len(status["changes"]) * 2  # RUN, TASKRUN, WORKER; per change EXECUTOR + reconcile
        trace = jaeger.wait_for_trace(status["traceId"], min_spans=expected, timeout=45)
        spans = spans_by_name(trace)
        executors = {s["spanID"] for s in spans["EXECUTOR - company.team_hello-world"]}
        reconciles = spans["operator reconcile"]
        assert {parent_id(s) for s in reconciles} <= executors and len(reconciles) >= len(status["changes"]) - 1
        (create,) = spans["kubernetes create_pod"]
        assert parent_id(create) in {s["spanID"] for s in reconciles}
    finally:
        fine.stop()


def test_dag_waitfor_and_pause_run_in_pods_as_kestra_runs_them(operator, apply_yaml, custom_objects, namespace):
    apply_yaml(flow_yaml("flowables", """
        id: flowables
        namespace: company.team
        tasks:
          - id: dag
            type: io.kestra.plugin.core.flow.Dag
            tasks:
              - task: {id: first, type: Return, format: one}
              - task: {id: second, type: Return, format: "{{ outputs.first.value }}-two"}
                dependsOn: [first]
          - id: wait
            type: io.kestra.plugin.core.flow.WaitFor
            condition: "{{ outputs.count['values'].counter == '2' }}"
            checkFrequency: {interval: PT0.1S}
            tasks:
              - id: count
                type: OutputValues
                values: {counter: "{{ outputs.wait.iterationCount + 1 }}"}
          - id: pause
            type: io.kestra.plugin.core.flow.Pause
            pauseDuration: PT1S
    """))  # fmt: skip
    apply_yaml(execution_yaml("flowables-1", "flowables", {}))
    status = wait_for_state(custom_objects, namespace, "flowables-1", operator=operator)["status"]
    assert status["state"] == "SUCCESS", (status.get("message"), json.dumps(status["taskRuns"]))
    runs: dict[str, list] = {}
    for tr in status["taskRuns"]:
        runs.setdefault(tr["taskId"], []).append(tr)
    assert runs["second"][0]["outputs"] == {"value": "one-two"}

    def at(transition: dict) -> datetime:
        return datetime.fromisoformat(transition["at"].replace("Z", "+00:00"))

    assert at(runs["second"][0]["history"][0]) >= at(runs["first"][0]["history"][-1]), "second starts once first ended"
    assert [tr["iteration"] for tr in runs["count"]] == [0, 1]
    assert [t["state"] for t in runs["pause"][0]["history"]][:3] == ["CREATED", "RUNNING", "PAUSED"]
    assert "PAUSED" in [t["state"] for t in status["history"]]


def test_a_secret_reaches_the_pod_by_reference_and_is_masked_everywhere(
    operator, apply_yaml, custom_objects, core_v1, namespace, kubectl
):
    kubectl("create", "secret", "generic", "flowpods-secrets", "--from-literal=API_TOKEN=tok-3x4mpl3", "-n", namespace)
    apply_yaml(flow_yaml("secretive", """
        id: secretive
        namespace: company.team
        tasks:
          - id: use
            type: Shell
            commands:
              - echo "calling with $TOKEN"
              - echo '::{"outputs":{"seen":"'"$TOKEN"'"}}::'
            env:
              TOKEN: "{{ secret('API_TOKEN') }}"
          - id: missing
            type: Log
            message: "{{ secret('NOT_THERE') }}"
    """))  # fmt: skip
    apply_yaml(execution_yaml("secretive-1", "secretive"))
    execution = wait_for_state(custom_objects, namespace, "secretive-1", operator=operator)
    status = execution["status"]
    assert status["state"] == "FAILED"
    assert "secret 'NOT_THERE' is not available" in status["message"]
    use = next(tr for tr in status["taskRuns"] if tr["taskId"] == "use")
    assert use["state"] == "SUCCESS" and use["outputs"]["vars"] == {"seen": "******"}
    assert "tok-3x4mpl3" not in json.dumps(execution)
    pod = next(
        p for p in list_pods(core_v1, namespace, "secretive-1") if p.metadata.labels["flowpods.io/task-id"] == "use"
    )
    ref = next(e for e in pod.spec.containers[0].env if e.name == "FLOWPODS_SECRET_API_TOKEN").value_from.secret_key_ref
    assert (ref.name, ref.key) == ("flowpods-secrets", "API_TOKEN")
    assert "tok-3x4mpl3" not in json.dumps(core_v1.api_client.sanitize_for_serialization(pod))
