"""Span derivation: the trace contract, computed from stored status with deterministic ids."""

from __future__ import annotations

from datetime import timedelta

from flowpods.core import engine, export
from flowpods.core.engine import AttemptFinished, AttemptStarted, StartSubflow
from flowpods.core.spans import derive_spans
from flowpods.core.status import RunInfo, State
from tests.core.simulation import RUN, T0, Simulation, log, make_flow


def names(spans) -> list[str]:
    return sorted(record.name for _, record in spans)


def test_a_finished_execution_has_run_executor_and_taskrun_spans_in_one_tree():
    sim = Simulation(make_flow([log("hello", retry={"maxAttempts": 2, "interval": "PT1S"})]))
    action = next(iter(sim.outstanding.values()))
    sim.send(AttemptStarted(at=sim.now, taskRunId=action.work.taskRunId, attempt=1, pod="ex-1-hello-1", node="n"))
    sim.finish("hello", success=False, reason="exit code 1")
    sim.tick_to_wake()
    sim.finish("hello")
    spans = derive_spans(RUN, sim.flow, sim.status)
    records = [record for _, record in spans]
    assert names(spans) == ["EXECUTOR - company.team_f"] * len(sim.status.changes) + [
        "RUN f", "TASKRUN hello", "TASKRUN hello"
    ]  # fmt: skip
    run = next(r for r in records if r.name == "RUN f")
    assert run.parent_span_id is None and run.span_id == engine.run_span_id(RUN)
    assert {r.trace_id for r in records} == {engine.trace_id(RUN)}
    assert all(r.parent_span_id == run.span_id for r in records if r is not run)
    assert run.attributes["cicd.pipeline.result"] == "success"
    assert run.attributes["flowpods.execution_id"] == "ex-1" and run.attributes["flowpods.trigger"] == "kubectl"
    first, second = sorted((r for r in records if r.name == "TASKRUN hello"), key=lambda r: r.start)
    assert first.status == "ERROR" and first.attributes["flowpods.attempt"] == 1
    assert first.attributes["k8s.pod.name"] == "ex-1-hello-1" and first.attributes["k8s.node.name"] == "n"
    assert [e.name for e in first.events] == ["container started", "container terminated"]
    assert second.status == "OK" and second.attributes["cicd.pipeline.task.run.result"] == "success"
    # the TASKRUN span is the one the worker's TRACEPARENT named
    assert second.span_id == engine.attempt_span_id(RUN, second.attributes["flowpods.taskrun_id"], 2)
    assert all(r.start <= r.end for r in records)


def test_ids_are_deterministic_across_derivations():
    sim = Simulation(make_flow([log("a")]))
    sim.finish("a")
    again = Simulation(make_flow([log("a")]))
    again.finish("a")
    ids_once = sorted(r.span_id for _, r in derive_spans(RUN, sim.flow, sim.status))
    ids_twice = sorted(r.span_id for _, r in derive_spans(RUN, again.flow, again.status))
    assert ids_once == ids_twice and len(set(ids_once)) == len(ids_once)


def test_the_watermark_exports_each_span_exactly_once():
    sim = Simulation(make_flow([{"id": "p", "type": "Parallel", "tasks": [log("a"), log("b")]}, log("c")]))
    exported: list[str] = []

    def commit() -> None:
        plan = export.plan(RUN, sim.flow, sim.status)
        if plan is not None:
            exported.extend(r.span_id for r in plan.spans)
            sim.status.exported = export.advance(plan, confirmed=True)

    commit()
    commit()  # nothing new: nothing again
    for task_id in ("b", "a", "c"):
        sim.finish(task_id)
        commit()
    assert sim.status.state == State.SUCCESS
    everything = sorted(r.span_id for _, r in derive_spans(RUN, sim.flow, sim.status))
    assert sorted(exported) == everything


def test_subflow_child_run_hangs_under_the_parent_subflow_executor_span():
    parent = Simulation(make_flow([{"id": "sub", "type": "Subflow", "namespace": "company.team", "flowId": "c"}]))
    (start,) = [a for a in parent.actions if isinstance(a, StartSubflow)]
    child_run = RunInfo(id=start.name, uid="child-uid", namespace="company.team", flowId="c",
                        trigger="subflow", parentTraceparent=start.traceparent, createdAt=T0)  # fmt: skip
    child = Simulation(make_flow([log("x")]), run=child_run)
    child.finish("x")
    parent.send(engine.ChildFinished(at=parent.now, taskRunId=start.taskRunId, state=child.status.state))
    parent_spans = [r for _, r in derive_spans(RUN, parent.flow, parent.status)]
    child_spans = [r for _, r in derive_spans(child_run, child.flow, child.status)]
    subflow_span = next(r for r in parent_spans if r.name == "EXECUTOR - io.kestra.plugin.core.flow.Subflow")
    child_root = next(r for r in child_spans if r.name == "RUN c")
    assert child_root.parent_span_id == subflow_span.span_id
    assert {r.trace_id for r in parent_spans + child_spans} == {engine.trace_id(RUN)}
    assert child_root.attributes["flowpods.trigger"] == "subflow"


def test_nested_task_runs_hang_under_their_flowable():
    sim = Simulation(make_flow([{"id": "each", "type": "ForEach", "values": ["x"], "tasks": [log("item")]}]))
    sim.finish("item")
    records = {r.name: r for _, r in derive_spans(RUN, sim.flow, sim.status)}
    assert (
        records["TASKRUN item [x]"].parent_span_id == records["EXECUTOR - io.kestra.plugin.core.flow.ForEach"].span_id
    )


def test_a_malformed_inbound_traceparent_starts_a_new_trace():
    run = RUN.model_copy(update={"parentTraceparent": "00-zz-not-a-context"})
    sim = Simulation(make_flow([log("a")]), run=run)
    sim.finish("a")
    root = next(r for _, r in derive_spans(run, sim.flow, sim.status) if r.name == "RUN f")
    assert root.parent_span_id is None and root.trace_id == engine.trace_id(RUN)


def test_an_inbound_traceparent_parents_the_run_span():
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    run = RUN.model_copy(update={"parentTraceparent": caller, "trigger": "api"})
    sim = Simulation(make_flow([log("a")]), run=run)
    sim.finish("a")
    records = [r for _, r in derive_spans(run, sim.flow, sim.status)]
    root = next(r for r in records if r.name == "RUN f")
    assert root.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and root.parent_span_id == "00f067aa0ba902b7"
    assert {r.trace_id for r in records} == {"4bf92f3577b34da6a3ce929d0e0e4736"}


def test_failed_run_carries_error_type_and_reason():
    sim = Simulation(make_flow([log("a")]))
    sim.send(AttemptFinished(at=sim.now + timedelta(seconds=1), taskRunId=sim.status.taskRuns[0].id, attempt=1,
                             success=False, reason="timeout: deadline exceeded", timedOut=True))  # fmt: skip
    records = {r.name: r for _, r in derive_spans(RUN, sim.flow, sim.status)}
    assert records["RUN f"].status == "ERROR" and records["RUN f"].attributes["error.type"] == "FAILED"
    assert records["RUN f"].attributes["cicd.pipeline.result"] == "failure"
    assert records["TASKRUN a"].attributes["cicd.pipeline.task.run.result"] == "timeout"
