"""The pure export logic (core/export.py): what is sent given the stored status and its confirmed watermark,
and where the watermark goes after an export that was, or was not, confirmed."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from flowpods.core import export
from flowpods.core.engine import AttemptFinished
from flowpods.core.records import SpanRecord
from flowpods.core.spans import derive_spans
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, Simulation, log, make_flow


def flow_of_three() -> Simulation:
    return Simulation(make_flow([{"id": "p", "type": "Parallel", "tasks": [log("a"), log("b")]}, log("c")]))


def stored(status: ExecutionStatus) -> ExecutionStatus:
    """What a restarted process reads back: the status through a JSON round trip."""
    return ExecutionStatus.model_validate_json(status.model_dump_json())


def all_span_ids(sim: Simulation) -> list[str]:
    return sorted(record.span_id for _, record in derive_spans(RUN, sim.flow, sim.status))


def test_nothing_is_pending_when_the_watermark_is_at_the_last_change() -> None:
    sim = flow_of_three()
    sim.status.exported = sim.status.changes[-1].n
    assert not export.pending(sim.status) and export.plan(RUN, sim.flow, sim.status) is None


def test_a_plan_holds_exactly_the_spans_of_the_changes_above_the_watermark() -> None:
    sim = flow_of_three()
    sim.finish("a")
    sim.status.exported = 1
    plan = export.plan(RUN, sim.flow, sim.status)
    assert plan is not None and (plan.stored, plan.since, plan.upto) == (1, 1, 2)
    expected = sorted(r.span_id for closed_in, r in derive_spans(RUN, sim.flow, sim.status) if closed_in == 2)
    assert sorted(r.span_id for r in plan.spans) == expected
    assert {r.name for r in plan.spans} == {"EXECUTOR - company.team_f", "TASKRUN a"}


def test_a_failed_export_leaves_the_watermark_and_the_retry_sends_the_same_spans() -> None:
    sim = flow_of_three()
    sim.finish("a")
    plan = export.plan(RUN, sim.flow, sim.status)
    assert plan is not None
    sim.status.exported = export.advance(plan, confirmed=False)
    assert sim.status.exported == 0 and export.pending(sim.status)
    again = export.plan(RUN, sim.flow, stored(sim.status))
    assert again == plan, "the same spans, with the same ids, are sent again"
    sim.status.exported = export.advance(again, confirmed=True)
    assert sim.status.exported == sim.status.changes[-1].n and not export.pending(sim.status)


def test_a_restart_after_a_commit_whose_export_did_not_happen_sends_those_spans() -> None:
    """The operator committed changes (pods created even) and died before exporting: a new process reading the
    stored status sends every span of those changes, and the whole trace ends up sent exactly once."""
    sim = flow_of_three()
    sent: Counter[str] = Counter()

    def export_now(status: ExecutionStatus) -> ExecutionStatus:
        plan = export.plan(RUN, sim.flow, status)
        if plan is not None:
            sent.update(r.span_id for r in plan.spans)
            status.exported = export.advance(plan, confirmed=True)
        return status

    sim.status = export_now(sim.status)
    sim.finish("b")  # committed; the process dies before its export
    sim.finish("a")  # (another change committed by nobody's export either)
    restarted = stored(sim.status)
    assert restarted.exported == 1
    sim.status = export_now(restarted)
    sim.finish("c")
    sim.status = export_now(sim.status)
    assert sim.status.state == State.SUCCESS
    assert sorted(sent) == all_span_ids(sim) and set(sent.values()) == {1}


def test_a_kill_between_the_export_and_its_record_resends_only_the_pending_changes() -> None:
    sim = flow_of_three()
    sent: Counter[str] = Counter()
    plan = export.plan(RUN, sim.flow, sim.status)
    assert plan is not None
    sim.status.exported = export.advance(plan, True)
    sent.update(r.span_id for r in plan.spans)
    sim.finish("a")
    plan = export.plan(RUN, sim.flow, sim.status)
    assert plan is not None
    sent.update(r.span_id for r in plan.spans)  # confirmed by the exporter ... and the process dies here
    restarted = stored(sim.status)
    again = export.plan(RUN, sim.flow, restarted)
    assert again == plan
    sent.update(r.span_id for r in again.spans)
    restarted.exported = export.advance(again, True)
    twice = {span_id for span_id, n in sent.items() if n == 2}
    assert twice == {r.span_id for r in plan.spans} and len(twice) == 2, "one change's spans, nothing more"


def test_a_confirmed_export_whose_watermark_could_not_be_stored_is_not_sent_again_by_the_same_process() -> None:
    sim = flow_of_three()
    first = export.plan(RUN, sim.flow, sim.status)
    assert first is not None
    confirmed = export.advance(first, confirmed=True)  # sent; storing the watermark failed (API server away)
    sim.finish("a")
    plan = export.plan(RUN, sim.flow, sim.status, confirmed=confirmed)
    assert plan is not None and (plan.stored, plan.since, plan.upto) == (0, 1, 2)
    assert {r.name for r in plan.spans} == {"EXECUTOR - company.team_f", "TASKRUN a"}, "only the new change"
    assert export.watermark_patch(plan.stored, plan.upto)[0] == {"op": "test", "path": "/status/exported", "value": 0}
    # all confirmed already: an empty plan that only stores the watermark
    sim.status.exported = 0
    only_store = export.plan(RUN, sim.flow, sim.status, confirmed=2)
    assert only_store is not None and only_store.spans == () and export.advance(only_store, True) == 2


def test_the_watermark_patch_only_moves_it_from_the_value_read() -> None:
    sim = flow_of_three()
    sim.finish("a")
    sim.status.exported = 1
    plan = export.plan(RUN, sim.flow, sim.status)
    assert plan is not None
    assert export.watermark_patch(plan.stored, plan.upto) == [
        {"op": "test", "path": "/status/exported", "value": 1},
        {"op": "replace", "path": "/status/exported", "value": 2},
    ]


def test_worker_spans_handed_back_leave_with_the_change_that_recorded_the_attempt() -> None:
    sim = Simulation(make_flow([log("a")]))
    tr = sim.status.taskRuns[0]
    worker = SpanRecord(
        name="WORKER - io.kestra.plugin.core.log.Log", trace_id="0" * 31 + "1", span_id="00000000000000aa",
        parent_span_id="00000000000000bb", start=sim.now, end=sim.now + timedelta(seconds=1),
    )  # fmt: skip
    sim.status.exported = sim.status.changes[-1].n
    finished = AttemptFinished(
        at=sim.now + timedelta(seconds=1), taskRunId=tr.id, attempt=1, success=True, pod="ex-1-a-1", spans=[worker]
    )
    sim.send(finished)
    plan = export.plan(RUN, sim.flow, stored(sim.status))
    assert plan is not None
    (handed,) = [r for r in plan.spans if r.span_id == worker.span_id]
    assert handed.service == "flowpods-worker" and handed.resource["k8s.pod.name"] == "ex-1-a-1"
    assert handed.resource["cicd.pipeline.task.run.id"] == tr.id
    assert handed.model_copy(update={"service": None, "resource": {}}) == worker
    assert {r.name for r in plan.spans} >= {"TASKRUN a", "RUN f"}
