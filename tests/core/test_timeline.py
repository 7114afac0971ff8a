"""The run view's timeline and critical path: worked examples on stored statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flowpods.core.critical import Node, critical_path
from flowpods.core.model import parse_flow
from flowpods.core.status import Attempt, ExecutionStatus, State, TaskRun, Transition
from flowpods.core.timeline import ChildRun, PodFacts, attempt_bar, compare, queued_seconds, task_medians, timeline

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(
    tid: str,
    task: str,
    start: float,
    end: float | None,
    *,
    parent: str | None = None,
    attempts: list[Attempt] | None = None,
    child: str | None = None,
    state: State = State.SUCCESS,
) -> TaskRun:
    history = [Transition(state=State.CREATED, at=at(start))]
    if end is not None:
        history.append(Transition(state=state, at=at(end)))
    return TaskRun(
        id=tid,
        taskId=task,
        parentId=parent,
        attempts=attempts or [],
        child=child,
        state=state if end is not None else State.RUNNING,
        history=history,
    )


def attempt(
    n: int,
    created: float,
    scheduled: float | None,
    started: float | None,
    ended: float | None,
    state: State = State.SUCCESS,
) -> Attempt:
    return Attempt(
        number=n,
        createdAt=at(created),
        scheduledAt=at(scheduled) if scheduled is not None else None,
        startedAt=at(started) if started is not None else None,
        endedAt=at(ended) if ended is not None else None,
        state=state,
        pod=f"pod-{n}",
    )


def execution(runs: list[TaskRun], end: float | None, state: State = State.SUCCESS) -> ExecutionStatus:
    history = [Transition(state=State.CREATED, at=at(0)), Transition(state=State.RUNNING, at=at(0.5))]
    if end is not None:
        history.append(Transition(state=state, at=at(end)))
    return ExecutionStatus(state=state if end is not None else State.RUNNING, history=history, taskRuns=runs)


FLOW = parse_flow(
    {
        "id": "f",
        "namespace": "ns",
        "tasks": [
            {"id": "a", "type": "Log", "message": "a"},
            {
                "id": "fan",
                "type": "Parallel",
                "tasks": [
                    {"id": "short", "type": "Log", "message": "s"},
                    {"id": "long", "type": "Log", "message": "l"},
                ],
            },
            {"id": "sub", "type": "Subflow", "namespace": "ns", "flowId": "child"},
            {"id": "later", "type": "Log", "message": "z"},
        ],
    }
)
CHILD = parse_flow({"id": "child", "namespace": "ns", "tasks": [{"id": "hello", "type": "Log", "message": "h"}]})


class TestCriticalPath:
    def test_a_sequence_is_all_on_the_path(self):
        root = Node("run", at(0), at(10), (Node("a", at(0), at(4)), Node("b", at(4), at(10))))
        assert critical_path(root) == ["run", "a", "b"]

    def test_of_parallel_branches_the_last_to_end_is_on_the_path(self):
        fan = Node("fan", at(1), at(9), (Node("short", at(1), at(3)), Node("long", at(1), at(9))))
        root = Node("run", at(0), at(12), (Node("a", at(0), at(1)), fan, Node("z", at(9), at(12))))
        assert critical_path(root) == ["run", "a", "fan", "long", "z"]

    def test_a_gap_does_not_pull_in_work_that_ended_earlier_in_parallel(self):
        root = Node("run", at(0), at(10), (Node("x", at(0), at(2)), Node("y", at(0), at(6)), Node("z", at(6), at(10))))
        assert critical_path(root) == ["run", "y", "z"]

    def test_overlapping_work_is_cut_at_the_cursor(self):
        root = Node("run", at(0), at(10), (Node("x", at(0), at(8)), Node("y", at(5), at(10))))
        assert critical_path(root) == ["run", "x", "y"]

    def test_no_children(self):
        assert critical_path(Node("run", at(0), at(1))) == ["run"]


class TestAttemptPhases:
    def test_every_time_known(self):
        bar = attempt_bar(attempt(1, 0, 1, 3, 7), now=at(100))
        assert [(p.name, p.start, p.end) for p in bar.phases] == [
            ("queued", at(0), at(1)),
            ("starting", at(1), at(3)),
            ("working", at(3), at(7)),
        ]
        assert bar.unknown == []

    def test_running_ends_at_now(self):
        bar = attempt_bar(attempt(1, 0, 1, 2, None, State.RUNNING), now=at(5))
        assert bar.phases[-1].name == "working" and bar.phases[-1].end == at(5)

    def test_pending_is_queued_until_now(self):
        bar = attempt_bar(attempt(1, 0, None, None, None, State.CREATED), now=at(5))
        assert [(p.name, p.end) for p in bar.phases] == [("queued", at(5))] and bar.unknown == []

    def test_unknown_transitions_are_named_not_guessed(self):
        bar = attempt_bar(attempt(1, 0, None, 3, 7), now=at(100))
        assert [p.name for p in bar.phases] == ["queued or starting", "working"]
        assert bar.unknown == ["pod scheduled"]
        ended = attempt_bar(attempt(1, 0, 1, None, 7, State.FAILED), now=at(100))
        assert [p.name for p in ended.phases] == ["queued", "starting or working"]
        assert ended.unknown == ["container started"]

    def test_the_pod_fills_what_the_status_lacks(self):
        bar = attempt_bar(
            attempt(1, 0, None, None, None, State.CREATED), now=at(9), pod=PodFacts(scheduledAt=at(2), startedAt=at(4))
        )
        assert [(p.name, p.start, p.end) for p in bar.phases] == [
            ("queued", at(0), at(2)),
            ("starting", at(2), at(4)),
            ("working", at(4), at(9)),
        ]


def parent_and_child(now_running: bool = False) -> tuple[ExecutionStatus, dict[str, ChildRun]]:
    runs = [
        run("r1", "a", 0.5, 2, attempts=[attempt(1, 0.5, 1, 1.2, 1.5, State.FAILED), attempt(2, 1.6, 1.7, 1.8, 2)]),
        run("r2", "fan", 2, 6),
        run("r3", "short", 2, 3, parent="r2", attempts=[attempt(1, 2, 2.1, 2.2, 3)]),
        run("r4", "long", 2, 6, parent="r2", attempts=[attempt(1, 2, 2.1, 2.2, 6)]),
        run("r5", "sub", 6, None if now_running else 9, child="child-1"),
    ]
    child = ExecutionStatus(
        state=State.SUCCESS,
        history=[Transition(state=State.CREATED, at=at(6.2)), Transition(state=State.SUCCESS, at=at(8.8))],
        taskRuns=[run("c1", "hello", 6.3, 8.7, attempts=[attempt(1, 6.3, 6.5, 7, 8.7)])],
    )
    return execution(runs, None if now_running else 9.5), {"child-1": ChildRun("child-1", child, CHILD)}


class TestTimeline:
    def test_rows_in_tree_order_with_subflow_nested(self):
        status, children = parent_and_child()
        view = timeline("p", at(0), status, FLOW, now=at(100), children=children)
        assert [(r.label, r.depth) for r in view.rows] == [
            ("a", 0),
            ("fan", 0),
            ("short", 1),
            ("long", 1),
            ("sub", 0),
            ("▸ subflow child-1", 1),
            ("hello", 2),
        ]
        a = view.rows[0]
        assert [b.number for b in a.attempts] == [1, 2] and [p.name for p in a.phases] == ["retry wait"]
        assert a.phases[0].start == at(1.5) and a.phases[0].end == at(1.6)

    def test_critical_path_goes_through_the_long_branch_and_the_subflow(self):
        status, children = parent_and_child()
        view = timeline("p", at(0), status, FLOW, now=at(100), children=children)
        assert view.critical == ["p/r1", "p/r2", "p/r4", "p/r5", "child-1/", "child-1/c1"]
        assert {r.label for r in view.rows if r.critical} == {"a", "fan", "long", "sub", "▸ subflow child-1", "hello"}
        assert view.slowest == "p/r4"
        assert view.queuedSeconds == 0.5 and not view.running and view.end == at(9.5)

    def test_a_running_execution_shows_tasks_not_run_yet_and_ends_now(self):
        status, children = parent_and_child(now_running=True)
        view = timeline("p", at(0), status, FLOW, now=at(7), children=children)
        assert view.running and view.end == at(7)
        assert view.rows[-1].label == "later" and view.rows[-1].state == "NOT_RUN" and view.rows[-1].start is None
        sub = next(r for r in view.rows if r.label == "sub")
        assert sub.running and sub.seconds == 1.0

    def test_queue_time_is_unknown_before_it_ran(self):
        status = ExecutionStatus(state=State.QUEUED, history=[Transition(state=State.QUEUED, at=at(0))])
        assert queued_seconds(status, at(0)) is None


class TestMediansAndCompare:
    def test_medians_of_finished_successful_runs(self):
        a, _ = parent_and_child()
        b = execution([run("x", "a", 0, 4)], 4)
        c = execution([run("y", "a", 0, 9, state=State.FAILED)], 9, State.FAILED)
        assert task_medians([a, b, c])["a"] == 2.75

    def test_compare_matches_tasks_by_label(self):
        status, children = parent_and_child()
        one = timeline("p", at(0), status, FLOW, now=at(100), children=children).rows
        two = timeline("q", at(0), execution([run("x", "a", 0, 4), run("y", "extra", 4, 5)], 5), FLOW, at(9)).rows
        rows = {c.label: c for c in compare(one, two)}
        assert rows["a"].a == 1.5 and rows["a"].b == 4.0
        assert rows["extra"].a is None and rows["extra"].b == 1.0
        assert rows["long"].b is None


class TestCriticalSpans:
    def test_decision_and_worker_spans_are_left_out(self):
        from flowpods.core.critical import critical_spans
        from flowpods.core.records import SpanRecord

        def span(sid: str, name: str, parent: str | None, start: float, end: float, **attrs: object) -> SpanRecord:
            hexed = {"r": "1", "c": "2", "a": "3", "w": "4", "b": "5", "x": "6"}
            return SpanRecord(trace_id="a" * 32, span_id=hexed[sid] * 16,
                              parent_span_id=hexed[parent] * 16 if parent else None, name=name, start=at(start),
                              end=at(end), attributes=attrs)  # fmt: skip

        spans = [
            span("r", "RUN f", None, 0, 10),
            span("c", "EXECUTOR - ns_f", "r", 9.5, 10, **{"flowpods.change": 3}),
            span("a", "TASKRUN a", "r", 0, 4, **{"flowpods.taskrun_id": "1"}),
            span("w", "WORKER - Log", "a", 1, 3.9, **{"flowpods.taskrun_id": "1"}).model_copy(
                update={"service": "flowpods-worker"}
            ),
            span("b", "TASKRUN b", "r", 4.2, 9.4, **{"flowpods.taskrun_id": "2"}),
            span("x", "TASKRUN x", "r", 0, 2, **{"flowpods.taskrun_id": "3"}),
        ]
        assert critical_spans(spans) == ["1" * 16, "3" * 16, "5" * 16]
