"""Flow triggers (flowpods.core.flowtriggers): Kestra's matching, the trigger.* variables, the started execution."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowpods.core import ids
from flowpods.core.flowtriggers import Ended, execution_name, firings, limitations, matches, trigger_variables
from flowpods.core.model import FlowTrigger, parse_flow
from flowpods.core.spans import derive_spans
from flowpods.core.status import ExecutionStatus, RunInfo, State, TaskRun, Transition
from tests.core.simulation import T0

UPSTREAM = parse_flow({"id": "extract", "namespace": "company.team", "labels": {"team": "data"},
                       "tasks": [{"id": "hello", "type": "Log", "message": "hi"}]})  # fmt: skip


def ended(state: State = State.SUCCESS, flow_id: str = "extract", namespace: str = "company.team",
          outputs: dict[str, Any] | None = None) -> Ended:  # fmt: skip
    flow = UPSTREAM.model_copy(update={"id": flow_id, "namespace": namespace})
    run = RunInfo(id="extract-1", uid="uid-up", namespace=namespace, flowId=flow_id, flowRevision=3,
                  labels={"env": "prod"}, createdAt=T0)  # fmt: skip
    end = T0 + timedelta(seconds=5)
    task = TaskRun(id="tr1", taskId="hello", state=state, outputs={"value": "v1"},
                   history=[Transition(state=State.RUNNING, at=T0), Transition(state=state, at=end)])  # fmt: skip
    status = ExecutionStatus(state=state, history=[Transition(state=State.RUNNING, at=T0),
                             Transition(state=state, at=end)], taskRuns=[task], outputs=outputs or {})  # fmt: skip
    return Ended(flow, run, status)


def listener(*triggers: dict[str, Any], flow_id: str = "transform", **extra: Any):
    return parse_flow({"id": flow_id, "namespace": "company.team", "tasks": [{"id": "t", "type": "Log",
                       "message": "{{ trigger.executionId }}"}], "triggers": list(triggers), **extra})  # fmt: skip


def flow_trigger(**fields: Any) -> dict[str, Any]:
    return {"id": "on-upstream", "type": "io.kestra.plugin.core.trigger.Flow", **fields}


def fires(trigger: dict[str, Any], of: Ended | None = None, **extra: Any) -> bool:
    flow = listener(trigger, **extra)
    (parsed,) = flow.triggers
    assert isinstance(parsed, FlowTrigger)
    return matches(flow, parsed, of or ended())


def condition(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"io.kestra.plugin.core.condition.{kind}", **fields}


class TestStates:
    def test_without_conditions_every_terminal_state_of_every_other_flow_fires(self) -> None:
        assert all(fires(flow_trigger(), ended(state)) for state in (State.SUCCESS, State.FAILED, State.KILLED))

    def test_the_states_shorthand_limits_the_states(self) -> None:
        assert fires(flow_trigger(states=["FAILED", "WARNING"]), ended(State.FAILED))
        assert not fires(flow_trigger(states=["FAILED", "WARNING"]), ended(State.SUCCESS))

    def test_an_execution_that_has_not_ended_fires_nothing(self) -> None:
        assert not fires(flow_trigger(states=["RUNNING"]), ended(State.RUNNING))

    def test_a_flow_never_triggers_itself(self) -> None:
        assert not fires(flow_trigger(), ended(flow_id="transform"))

    def test_a_disabled_trigger_or_flow_never_fires(self) -> None:
        assert not fires(flow_trigger(disabled=True))
        assert not fires(flow_trigger(), disabled=True)


class TestConditions:
    def test_execution_status_in_and_not_in(self) -> None:
        assert fires(flow_trigger(conditions=[condition("ExecutionStatus", **{"in": ["SUCCESS"]})]))
        assert not fires(flow_trigger(conditions=[condition("ExecutionStatusCondition", **{"in": ["FAILED"]})]))
        assert not fires(flow_trigger(conditions=[condition("ExecutionStatus", notIn=["SUCCESS"])]))

    def test_execution_flow_names_the_namespace_and_the_flow(self) -> None:
        same = condition("ExecutionFlow", namespace="company.team", flowId="extract")
        other = condition("ExecutionFlowCondition", namespace="company.team", flowId="load")
        assert fires(flow_trigger(conditions=[same]))
        assert not fires(flow_trigger(conditions=[other]))

    def test_execution_namespace_equals_prefix_and_suffix(self) -> None:
        assert fires(flow_trigger(conditions=[condition("ExecutionNamespace", namespace="company.team")]))
        assert not fires(flow_trigger(conditions=[condition("ExecutionNamespace", namespace="company")]))
        assert fires(flow_trigger(conditions=[condition("ExecutionNamespace", namespace="company", prefix=True)]))
        assert fires(flow_trigger(conditions=[condition("ExecutionNamespace", namespace="company",
                                                        comparison="PREFIX")]))  # fmt: skip
        assert fires(flow_trigger(conditions=[condition("ExecutionNamespace", namespace="team",
                                                        comparison="SUFFIX")]))  # fmt: skip

    def test_an_expression_reads_the_ending_execution(self) -> None:
        yes = condition("Expression", expression="{{ execution.state == 'SUCCESS' and flow.id == 'extract' }}")
        no = condition("Expression", expression="{{ outputs.hello.value == 'other' }}")
        assert fires(flow_trigger(conditions=[yes]))
        assert not fires(flow_trigger(conditions=[no]))

    def test_an_expression_that_cannot_render_is_not_met(self) -> None:
        assert not fires(flow_trigger(conditions=[condition("Expression", expression="{{ nothing.here }}")]))

    def test_labels_not_and_or(self) -> None:
        prod = condition("ExecutionLabels", labels={"env": "prod"})
        dev = condition("ExecutionLabels", labels=[{"key": "env", "value": "dev"}])
        assert fires(flow_trigger(conditions=[prod]))
        assert not fires(flow_trigger(conditions=[dev]))
        assert fires(flow_trigger(conditions=[condition("Not", conditions=[dev])]))
        assert fires(flow_trigger(conditions=[condition("Or", conditions=[dev, prod])]))

    def test_all_conditions_must_hold(self) -> None:
        status = condition("ExecutionStatus", **{"in": ["SUCCESS"]})
        assert not fires(flow_trigger(conditions=[status, condition("ExecutionFlow", namespace="x", flowId="y")]))

    def test_a_condition_type_not_evaluated_never_fires_and_says_so(self) -> None:
        trigger = flow_trigger(conditions=[condition("DayWeek", dayOfWeek="MONDAY")])
        assert not fires(trigger)
        (parsed,) = listener(trigger).triggers
        assert isinstance(parsed, FlowTrigger)
        assert "DayWeek are not evaluated" in limitations(parsed)[0]


class TestPreconditions:
    def test_an_upstream_flow_with_its_states(self) -> None:
        pre = {"id": "p", "flows": [{"namespace": "company.team", "flowId": "extract", "states": ["SUCCESS"]}]}
        assert fires(flow_trigger(preconditions=pre))
        assert not fires(flow_trigger(preconditions=pre), ended(State.FAILED))
        assert not fires(flow_trigger(preconditions=pre), ended(flow_id="load"))

    def test_an_upstream_namespace_without_a_flow_and_its_labels(self) -> None:
        assert fires(flow_trigger(preconditions={"flows": [{"namespace": "company.team", "labels": {"env": "prod"}}]}))
        assert not fires(flow_trigger(preconditions={"flows": [{"namespace": "company.team",
                                                                 "labels": {"env": "dev"}}]}))  # fmt: skip

    @pytest.mark.parametrize(("test", "expected"), [
        ({"field": "NAMESPACE", "type": "STARTS_WITH", "value": "company"}, True),
        ({"field": "NAMESPACE", "type": "ENDS_WITH", "value": "other"}, False),
        ({"field": "FLOW_ID", "type": "EQUAL_TO", "value": "extract"}, True),
        ({"field": "FLOW_ID", "type": "NOT_EQUAL_TO", "value": "extract"}, False),
        ({"field": "STATE", "type": "IN", "values": ["FAILED", "SUCCESS"]}, True),
        ({"field": "STATE", "type": "NOT_IN", "values": ["SUCCESS"]}, False),
        ({"field": "FLOW_ID", "type": "REGEX", "value": "ext.*"}, True),
        ({"field": "FLOW_ID", "type": "REGEX", "value": "ext"}, False),
        ({"field": "FLOW_ID", "type": "CONTAINS", "value": "tra"}, True),
        ({"field": "EXPRESSION", "type": "IS_TRUE", "value": "{{ labels.team == 'data' }}"}, True),
        ({"field": "EXPRESSION", "type": "IS_FALSE", "value": "{{ labels.env == 'prod' }}"}, False),
        ({"field": "LABEL", "type": "EQUAL_TO", "value": "env:prod"}, True),
        ({"field": "LABEL", "type": "IS_NULL", "value": "missing"}, True),
        ({"field": "LABEL", "type": "IS_NOT_NULL", "value": "team"}, True),
    ])  # fmt: skip
    def test_where_filters_with_kestra_comparisons(self, test: dict[str, Any], expected: bool) -> None:
        assert fires(flow_trigger(preconditions={"where": [{"id": "w", "filters": [test]}]})) is expected

    def test_where_or_needs_one_filter(self) -> None:
        filters = [{"field": "FLOW_ID", "type": "EQUAL_TO", "value": "no"},
                   {"field": "NAMESPACE", "type": "EQUAL_TO", "value": "company.team"}]  # fmt: skip
        assert fires(flow_trigger(preconditions={"where": [{"id": "w", "operand": "OR", "filters": filters}]}))
        assert not fires(flow_trigger(preconditions={"where": [{"id": "w", "filters": filters}]}))

    def test_several_preconditions_fire_only_when_this_execution_meets_all_and_say_so(self) -> None:
        pre = {"flows": [{"namespace": "company.team", "flowId": "extract"},
                         {"namespace": "company.team", "flowId": "load"}]}  # fmt: skip
        assert not fires(flow_trigger(preconditions=pre))
        (parsed,) = listener(flow_trigger(preconditions=pre)).triggers
        assert isinstance(parsed, FlowTrigger)
        assert any("several preconditions" in problem for problem in limitations(parsed))


class TestFiring:
    def test_trigger_variables_as_kestra_names_them_with_the_flow_outputs(self) -> None:
        data = trigger_variables(ended(outputs={"date": "2026-01-02"}))
        assert data["executionId"] == "extract-1" and data["namespace"] == "company.team"
        assert data["flowId"] == "extract" and data["flowRevision"] == 3 and data["state"] == "SUCCESS"
        assert data["outputs"] == {"date": "2026-01-02"} and data["lastTaskId"] == "hello"
        assert "outputs" not in trigger_variables(ended())

    def test_one_execution_per_matching_trigger_named_from_the_ending_one_with_inputs_and_a_link(self) -> None:
        up = ended(outputs={"date": "2026-01-02"})
        flow = listener(flow_trigger(inputs={"day": "{{ trigger.outputs.date }}", "from": "{{ outputs.hello.value }}"}),
                        flow_trigger(id="never", states=["FAILED"]))  # fmt: skip
        (firing,) = firings(up, [("transform-resource", flow)])
        assert firing.name == execution_name(up.run, "transform-resource", "on-upstream")
        assert firing.name == firings(up, [("transform-resource", flow)])[0].name, "deterministic"
        assert firing.name != execution_name(up.run, "transform-resource", "never")
        assert firing.inputs == {"day": "2026-01-02", "from": "v1"} and firing.error is None
        assert firing.link == ids.traceparent_of(up.run, ids.run_span_id(up.run))

    def test_inputs_that_cannot_render_start_nothing_and_say_why(self) -> None:
        flow = listener(flow_trigger(inputs={"x": "{{ outputs.missing.value }}"}))
        (firing,) = firings(ended(), [("t", flow)])
        assert firing.error is not None and "invalid inputs" in firing.error

    def test_the_started_run_span_links_to_the_ending_run_span(self) -> None:
        up = ended()
        (firing,) = firings(up, [("t", listener(flow_trigger()))])
        run = RunInfo(id=firing.name, uid="uid-down", namespace="company.team", flowId="transform", trigger="flow",
                      triggerId=firing.trigger_id, triggerData=firing.data, links=[firing.link or ""],
                      createdAt=T0)  # fmt: skip
        status = ExecutionStatus(state=State.SUCCESS, closedIn=1, history=[Transition(state=State.SUCCESS, at=T0)])
        (root,) = [span for _, span in derive_spans(run, None, status) if span.name == "RUN transform"]
        (link,) = root.links
        assert (link.trace_id, link.span_id) == (ids.trace_id(up.run), ids.run_span_id(up.run))
        assert root.trace_id != ids.trace_id(up.run) and root.parent_span_id is None
        assert link.attributes["flowpods.execution_id"] == "extract-1"
        assert root.attributes["flowpods.trigger"] == "flow" and root.attributes["flowpods.trigger_id"] == "on-upstream"
