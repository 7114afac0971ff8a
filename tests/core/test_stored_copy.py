"""The executor's copy of a status: deep where the step may change it, shared where nothing changes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flowpods.core.records import SpanRecord
from flowpods.core.status import Attempt, ExecutionStatus, FrozenSpan, State, TaskRun, Transition

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def status() -> ExecutionStatus:
    live = TaskRun(
        id="a1",
        taskId="a",
        state=State.RUNNING,
        history=[Transition(state=State.RUNNING, at=AT)],
        attempts=[Attempt(number=1, state=State.RUNNING, createdAt=AT)],
        outputs={"rows": [{"n": 1}], "when": AT},
    )
    compacted = TaskRun(id="b1", taskId="b", state=State.SUCCESS, compact=True, attemptCount=1)
    span = SpanRecord(trace_id="1" * 32, span_id="2" * 16, name="RUN f", start=AT, end=AT + timedelta(seconds=1))
    return ExecutionStatus(
        state=State.RUNNING,
        inputs={"amount": Decimal("1.5"), "list": [1, 2], "after": timedelta(seconds=3)},
        taskRuns=[compacted, live],
        frozen=[FrozenSpan(closedIn=1, span=span)],
    )


def test_a_copy_is_equal_and_changing_it_leaves_the_original_as_it_was():
    original = status()
    before = original.model_dump(mode="json")
    copy = original.copied()
    assert copy == original and copy.model_dump(mode="json") == before
    copy.taskRuns[1].attempts[0].state = State.SUCCESS
    copy.taskRuns[1].outputs["rows"][0]["n"] = 2
    copy.taskRuns[1].history.append(Transition(state=State.SUCCESS, at=AT))
    copy.taskRuns.append(TaskRun(id="c1", taskId="c"))
    copy.inputs["list"].append(3)
    copy.frozen[0].span.name = "changed"
    assert original.model_dump(mode="json") == before


def test_compacted_task_runs_are_shared_and_the_task_run_index_is_rebuilt_for_the_copy():
    original = status()
    assert original.taskrun("a1") is original.taskRuns[1]  # the index is built on the original
    copy = original.copied()
    assert copy.taskRuns[0] is original.taskRuns[0]
    assert copy.taskrun("a1") is copy.taskRuns[1] and copy.taskrun("a1") is not original.taskRuns[1]
    assert copy.model_fields_set == original.model_fields_set
