"""Flow triggers on a real control plane: an execution's end starts the flows that listen to it, once, in a
trace of their own linked to the one that triggered them (read back from Jaeger's query API)."""

from __future__ import annotations

from kubernetes import watch

from tests.e2e.harness import GROUP, VERSION, execution_yaml, wait_for_spans, wait_for_state, wait_until
from tests.e2e.test_operator import flow_yaml

WAIT = 180.0  # an upper bound for a loaded machine (shared cores), not a timing assertion


def test_a_success_starts_the_listening_flow_once_linked_to_its_trace_and_a_failed_listener_never(
    operator, apply_yaml, custom_objects, jaeger, namespace
):
    apply_yaml(flow_yaml("upstream", """
        id: upstream
        namespace: company.team
        tasks:
          - id: hello
            type: io.kestra.plugin.core.log.Log
            message: upstream done
    """))  # fmt: skip
    apply_yaml(flow_yaml("on-success", """
        id: on-success
        namespace: company.team
        tasks:
          - id: who
            type: io.kestra.plugin.core.debug.Return
            format: "{{ trigger.executionId }} {{ trigger.flowId }} {{ trigger.state }}"
        triggers:
          - id: after-upstream
            type: io.kestra.plugin.core.trigger.Flow
            conditions:
              - type: io.kestra.plugin.core.condition.ExecutionStatus
                in: [SUCCESS]
              - type: io.kestra.plugin.core.condition.ExecutionFlow
                namespace: company.team
                flowId: upstream
    """))  # fmt: skip
    apply_yaml(flow_yaml("on-failure", """
        id: on-failure
        namespace: company.team
        tasks:
          - id: never
            type: io.kestra.plugin.core.log.Log
            message: must not run
        triggers:
          - id: after-upstream-failed
            type: io.kestra.plugin.core.trigger.Flow
            preconditions:
              id: upstream-failed
              flows:
                - namespace: company.team
                  flowId: upstream
                  states: [FAILED]
    """))  # fmt: skip
    apply_yaml(execution_yaml("upstream-1", "upstream"))
    upstream = wait_for_state(custom_objects, namespace, "upstream-1", timeout=WAIT, operator=operator)
    assert upstream["status"]["state"] == "SUCCESS", upstream["status"].get("message")

    def fired():  # status.triggered is written once every execution the end triggered was created
        body = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "executions", "upstream-1")
        triggered = body["status"].get("triggered")
        return triggered if isinstance(triggered, list) else None

    (started,) = wait_until(fired, WAIT, "upstream-1's Flow triggers to be fired")
    items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "executions")["items"]
    by_flow = sorted((i["spec"]["flowRef"]["name"], i["metadata"]["name"]) for i in items)
    assert by_flow == [("on-success", started), ("upstream", "upstream-1")], "one execution, none of on-failure"

    triggered = wait_for_state(custom_objects, namespace, started, timeout=WAIT, operator=operator)
    assert triggered["status"]["state"] == "SUCCESS", triggered["status"].get("message")
    assert triggered["spec"]["trigger"]["type"] == "flow"
    assert triggered["spec"]["trigger"]["id"] == "after-upstream"
    (who,) = [tr for tr in triggered["status"]["taskRuns"] if tr["taskId"] == "who"]
    assert who["outputs"]["value"] == "upstream-1 upstream SUCCESS"

    upstream_trace = upstream["status"]["traceId"]
    _, _, upstream_run_span, _ = upstream["status"]["traceparent"].split("-")
    assert triggered["status"]["traceId"] != upstream_trace, "a trace of its own"
    trace = wait_for_spans(jaeger, triggered["status"]["traceId"], {"RUN on-success"}, timeout=WAIT)
    (run,) = [s for s in trace["spans"] if s["operationName"] == "RUN on-success"]
    links = [r for r in run.get("references", []) if r.get("refType") != "CHILD_OF"]
    assert [(r["traceID"], r["spanID"]) for r in links] == [(upstream_trace, upstream_run_span)]
    assert not [r for r in run.get("references", []) if r.get("refType") == "CHILD_OF"], "a root, not a child"


def test_where_no_flow_listens_the_end_is_stored_with_nothing_fired(operator, apply_yaml, custom_objects, namespace):
    """No Flow of the namespace has a Flow trigger: the status that stores the end already says nothing
    fired (`triggered: []`), so no marker is patched after it. Every version of the status is read from a
    watch started before the execution: none is terminal and still `pending`."""
    apply_yaml(flow_yaml("alone", """
        id: alone
        namespace: company.team
        tasks:
          - id: hello
            type: io.kestra.plugin.core.log.Log
            message: nobody listens
    """))  # fmt: skip
    listed = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "executions")
    seen: list[tuple[str, object]] = []
    stream = watch.Watch()
    apply_yaml(execution_yaml("alone-1", "alone"))
    for event in stream.stream(custom_objects.list_namespaced_custom_object, GROUP, VERSION, namespace,
                               "executions", resource_version=listed["metadata"]["resourceVersion"],
                               timeout_seconds=int(WAIT)):  # fmt: skip
        body = event["object"]
        if body["metadata"]["name"] != "alone-1":
            continue
        status = body.get("status") or {}
        seen.append((str(status.get("state")), status.get("triggered")))
        if status.get("state") in ("SUCCESS", "FAILED", "KILLED", "WARNING"):
            stream.stop()
    assert seen and seen[-1][0] == "SUCCESS", seen
    assert [triggered for state, triggered in seen if state == "SUCCESS"] == [[]], seen
    assert any(triggered == "pending" for _, triggered in seen), "statuses before the end wait for it"
