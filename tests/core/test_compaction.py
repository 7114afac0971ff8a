"""Compaction of the status (core/compaction.py): it never changes what the executor decides nor the spans
exported, across failed exports and restarts; and it keeps a 10,000-value ForEach and a flow of 1,000 tasks
under 1 MiB at every commit, each span derived once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowpods.core import compaction, export, metrics
from flowpods.core.engine import AttemptFinished, ChildFinished, Decision, Kill, RunTask, Start, Tick, advance
from flowpods.core.executor import Resume
from flowpods.core.model import Flow
from flowpods.core.records import SpanRecord
from flowpods.core.spans import derive_spans
from flowpods.core.status import COMPACT_KEY, ExecutionStatus, State
from tests.core.simulation import RUN, T0, log, make_flow
from tests.core.test_executor import flows_strategy

MIB = 1024 * 1024


def stored(status: ExecutionStatus) -> ExecutionStatus:
    """What the next reconcile (of this process or a restarted one) reads back."""
    return ExecutionStatus.model_validate_json(status.model_dump_json())


class Committed:
    """An execution as the operator keeps it: each decision compacted and committed (through JSON), then its
    spans exported under the watermark, with exports that may fail and crashes after a confirmed export."""

    def __init__(self, flow: Flow, full_taskruns: int = 0, full_changes: int = 0):
        self.flow, self.full = flow, (full_taskruns, full_changes)
        self.status = ExecutionStatus()
        self.sent: Counter[str] = Counter()
        self.records: dict[str, SpanRecord] = {}
        self.resent_allowed: set[str] = set()
        self.sizes: list[int] = []

    def commit(self, decision: Decision) -> None:
        compacted = compaction.compact(self.flow, decision.status, *self.full)
        text = compacted.model_dump_json()
        self.sizes.append(len(text))
        self.status = ExecutionStatus.model_validate_json(text)

    def export(self, confirmed: bool = True, crash_before_watermark: bool = False) -> None:
        plan = export.plan(RUN, self.flow, self.status)
        if plan is None or not confirmed:
            return
        for record in plan.spans:
            if self.sent[record.span_id]:
                assert record.span_id in self.resent_allowed, f"{record.name} sent twice without a crash"
            assert self.records.setdefault(record.span_id, record) == record, "a span is re-sent unchanged"
            self.sent[record.span_id] += 1
        if crash_before_watermark:  # the exporter confirmed, the process died before storing the watermark
            self.resent_allowed |= {record.span_id for record in plan.spans}
            return
        self.status.exported = export.advance(plan, confirmed=True)


def rows(status: ExecutionStatus) -> list[tuple[Any, ...]]:
    """What the executor, the API and kubectl read of the task runs."""
    return [(tr.id, tr.taskId, tr.parentId, tr.value, tr.iteration, tr.state, tr.attempt_count, tr.error, tr.child)
            for tr in status.taskRuns]  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows_strategy(), data=st.data())
def test_compaction_changes_no_decision_and_every_span_is_exported_once(flow: Flow, data: st.DataObject) -> None:
    """Two runs of the same flow with the same events: one keeps its status in full, the other is compacted at
    every commit (thresholds 0), read back through JSON, exported with failures and crashes drawn at each step.
    They decide the same actions, states and wake-ups, and the compacted one sends exactly the spans the full
    one derives, once each (twice only for a plan confirmed just before a crash)."""
    full_status = ExecutionStatus()
    twin = Committed(flow)
    now = T0
    outstanding: dict[tuple[str, int], RunTask] = {}
    children: set[str] = set()
    wake: list[Any] = [None]

    def step(events: list[Any]) -> None:
        nonlocal full_status
        plain = advance(flow, RUN, full_status if full_status.history else None, events, now)
        compacted = advance(flow, RUN, twin.status if twin.status.history else None, events, now)
        assert [a.model_dump() for a in compacted.actions] == [a.model_dump() for a in plain.actions]
        assert (compacted.wakeAt, compacted.changed) == (plain.wakeAt, plain.changed)
        assert (compacted.status.state, compacted.status.error, compacted.status.outputs) == (
            plain.status.state, plain.status.error, plain.status.outputs)  # fmt: skip
        assert rows(compacted.status) == rows(plain.status)
        assert compacted.status.last_change == plain.status.last_change
        full_status, wake[0] = plain.status, plain.wakeAt
        for action in plain.actions:
            if isinstance(action, RunTask):
                outstanding[(action.work.taskRunId, action.work.attempt)] = action
            elif action.kind == "start-subflow":
                children.add(action.taskRunId)
            elif action.kind == "stop-task":
                outstanding.pop((action.taskRunId, action.attempt), None)
            elif action.kind == "kill-subflow":
                children.discard(action.taskRunId)
        if plain.changed or export.pending(twin.status):
            twin.commit(compacted)
            twin.export(
                confirmed=data.draw(st.booleans(), label="export confirmed"),
                crash_before_watermark=data.draw(st.integers(0, 5), label="crash") == 0,
            )

    step([Start(at=T0, inputs={})])
    kill_at = data.draw(st.one_of(st.none(), st.integers(0, 30)), label="kill at step")
    for n in range(500):
        if full_status.state.terminal:
            break
        now += timedelta(seconds=1)
        if kill_at == n:
            step([Kill(at=now)])
            continue
        pending = sorted(outstanding) + sorted(("child", tr) for tr in children)
        if not pending and wake[0] is None and any(tr.state == State.PAUSED for tr in full_status.taskRuns):
            step([Resume(at=now, value=str(n))])  # a Pause without duration waits for a resume
            continue
        if not pending:
            assert wake[0] is not None, "nothing under way: a retry or a pause is due later"
            now = max(now, wake[0])
            step([Tick(at=now)])
            continue
        choice = data.draw(st.sampled_from(pending), label="next to finish")
        if choice[0] == "child":
            children.discard(choice[1])
            state = data.draw(st.sampled_from([State.SUCCESS, State.FAILED, State.WARNING]), label="child")
            step([ChildFinished(at=now, taskRunId=choice[1], state=state)])
        else:
            outstanding.pop(choice)
            outputs = {"n": n} if data.draw(st.booleans(), label="outputs") else {}
            success = data.draw(st.booleans(), label="success")
            step([AttemptFinished(at=now, taskRunId=choice[0], attempt=choice[1], success=success, outputs=outputs)])
    assert full_status.state.terminal
    while export.pending(twin.status):  # the last exports, as the operator retries them after the end
        twin.export()
    expected = {record.span_id: record for _, record in derive_spans(RUN, flow, full_status)}
    assert twin.records == expected, "the compacted execution sent exactly the spans of the full one"
    assert all(count == 1 or span_id in twin.resent_allowed for span_id, count in twin.sent.items())


def test_a_small_status_is_kept_in_full() -> None:
    flow = make_flow([log("a"), log("b")])
    decision = advance(flow, RUN, None, [Start(at=T0, inputs={})], T0)
    decision.status.exported = decision.status.last_change
    assert compaction.compact(flow, decision.status) is decision.status


def compacted_first_task(second: str) -> tuple[ExecutionStatus, str]:
    flow = make_flow([log("a"), log("b", message=second)])
    status = advance(flow, RUN, None, [Start(at=T0, inputs={})], T0).status
    (tr,) = status.taskRuns
    finished = AttemptFinished(at=T0, taskRunId=tr.id, attempt=1, success=True, outputs={"x": 1})
    status = advance(flow, RUN, status, [finished], T0).status
    status.exported = status.last_change
    return compaction.compact(flow, status, 0, 0), tr.id


def test_a_compacted_task_run_is_stored_as_one_short_list_and_read_back() -> None:
    small, taskrun_id = compacted_first_task("{{ taskrun.id }}")
    dumped = small.model_dump(mode="json")
    assert dumped["taskRuns"][0] == {COMPACT_KEY: ["a", None, [[taskrun_id, None, "SUCCESS", 1]]]}, "outputs unread"
    assert dumped["changes"] == [] and dumped["folded"] == {"changes": 2, "lastChange": 2, "created": 2,
                                                            "taskRuns": 1}  # fmt: skip
    assert stored(small) == small
    assert compaction.task_run_rows(dumped)[0] == {
        "id": taskrun_id,
        "taskId": "a",
        "value": None,
        "state": "SUCCESS",
        "attempts": 1,
        "error": None,
        "child": None,
    }
    kept, _ = compacted_first_task("{{ outputs.a.x }}")
    assert kept.model_dump(mode="json")["taskRuns"][0][COMPACT_KEY][2][0][4] == {"outputs": {"x": 1}}


class TestReferencedOutputs:
    def test_named_outputs_are_the_ones_kept(self) -> None:
        flow = make_flow([log("a", message="{{ outputs.b.x }} {{ outputs['c'].y }} {{ outputs[\"d\"] }}")])
        assert compaction.referenced_outputs(flow) == {"b", "c", "d"}

    def test_outputs_read_as_a_whole_or_by_a_computed_key_keep_all(self) -> None:
        assert compaction.referenced_outputs(make_flow([log("a", message="{{ outputs | json }}")])) is None
        assert compaction.referenced_outputs(make_flow([log("a", message="{{ outputs[taskrun.value] }}")])) is None

    def test_text_without_templates_refers_to_nothing(self) -> None:
        assert compaction.referenced_outputs(make_flow([log("a", message="the outputs of b")])) == frozenset()


def run_to_the_end(flow: Flow, results: Any, full: int | None = None) -> Committed:
    """Drive an execution as the operator does, every attempt under way finishing at each step, compacting
    and exporting at each commit."""
    twin = Committed(flow, *((full, full) if full else (compaction.FULL_TASKRUNS, compaction.FULL_CHANGES)))
    now = T0
    decision = advance(flow, RUN, None, [Start(at=now, inputs={})], now)
    while True:
        twin.commit(decision)
        twin.export()
        under_way = [a for a in decision.actions if isinstance(a, RunTask)]
        pending = {(a.work.taskRunId, a.work.attempt) for a in under_way}
        if twin.status.state.terminal:
            return twin
        now += timedelta(seconds=1)
        events = [AttemptFinished(at=now, taskRunId=trid, attempt=attempt, success=True, outputs=results(trid))
                  for trid, attempt in sorted(pending)]  # fmt: skip
        decision = advance(flow, RUN, twin.status, events, now)


def test_a_foreach_of_10000_values_succeeds_under_1_mib_at_every_commit_with_each_span_once() -> None:
    values = [f"value-{n}" for n in range(10_000)]
    flow = make_flow([{"id": "each", "type": "ForEach", "values": values, "concurrencyLimit": 200,
                       "tasks": [log("work")]}, log("after")])  # fmt: skip
    twin = run_to_the_end(flow, lambda _: {"done": True})
    assert twin.status.state == State.SUCCESS
    assert max(twin.sizes) < MIB, f"the largest status was {max(twin.sizes)} bytes"
    changes = twin.status.last_change
    # RUN, the ForEach's EXECUTOR span, a TASKRUN per value and for `after`, an EXECUTOR span per change
    assert sum(twin.sent.values()) == len(twin.sent) == 1 + 1 + 10_000 + 1 + changes
    print(
        f"\n10,000-value ForEach: {changes} changes, largest status {max(twin.sizes)} bytes, "
        f"closing status {twin.sizes[-1]} bytes ({twin.sizes[-1] / 10_000:.0f} per task run)"
    )


def test_a_flow_of_1000_tasks_succeeds_under_1_mib_with_each_span_once() -> None:
    flow = make_flow([log(f"task-{n}") for n in range(1000)])
    twin = run_to_the_end(flow, lambda _: {})
    assert twin.status.state == State.SUCCESS
    assert max(twin.sizes) < MIB
    assert sum(twin.sent.values()) == len(twin.sent) == 1 + 1000 + twin.status.last_change
    full = make_flow([log(f"task-{n}") for n in range(100)])
    uncompacted = run_to_the_end(full, lambda _: {}, full=10**6)
    print(
        f"\n1,000 tasks: largest status {max(twin.sizes)} bytes, closing {twin.sizes[-1]}; "
        f"100 tasks kept in full: {uncompacted.sizes[-1]} bytes ({uncompacted.sizes[-1] / 100:.0f} per task run)"
    )


def test_metrics_of_a_commit_after_compaction_measure_the_first_task_once() -> None:
    """The change that created the first task run is folded away: a later commit does not measure it again."""
    flow = make_flow([log("a"), log("b")])
    first = advance(flow, RUN, None, [Start(at=T0, inputs={})], T0).status
    assert [m.name for m in metrics.committed(RUN, flow, None, first)].count(metrics.FIRST_TASK_DELAY) == 1
    (tr,) = first.taskRuns
    first.exported = first.last_change
    before = compaction.compact(flow, first, 0, 0)
    finished = AttemptFinished(at=T0, taskRunId=tr.id, attempt=1, success=True)
    after = compaction.compact(flow, advance(flow, RUN, before, [finished], T0).status, 0, 0)
    assert before.changes == [] and after.changes[0].created == ["b", "b#1"]
    assert metrics.FIRST_TASK_DELAY not in [m.name for m in metrics.committed(RUN, flow, before, after)]
