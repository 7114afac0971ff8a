"""The executor as a pure state machine: worked examples, then properties over generated flows and event orders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowpods.core.engine import (
    Admit,
    AttemptFinished,
    AttemptStarted,
    ChildFinished,
    Kill,
    RunTask,
    Start,
    StartSubflow,
    Tick,
    advance,
    attempt_span_id,
    pending_actions,
    trace_id,
)
from flowpods.core.model import Flow, parse_flow
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0, Simulation, log, make_flow

# --- worked examples -----------------------------------------------------------------------------------


def test_sequential_tasks_pass_outputs_and_end_in_success():
    flow = make_flow(
        [{"id": "a", "type": "Return", "format": "{{ inputs.x }}!"}, log("b", message="got {{ outputs.a.value }}")],
        inputs=[{"id": "x", "type": "STRING"}],
        outputs=[{"id": "result", "value": "{{ outputs.a.value }}"}],
    )
    sim = Simulation(flow, {"x": "hi"})
    assert sim.status.state == State.RUNNING and sim.running() == ["a"]
    first = sim.finish("a", outputs={"value": "hi!"})
    assert first.work.task["format"] == "hi!"
    assert first.traceparent == f"00-{trace_id(RUN)}-{attempt_span_id(RUN, first.work.taskRunId, 1)}-01"
    second = sim.finish("b")
    assert second.work.task["message"] == "got hi!"
    assert sim.status.state == State.SUCCESS
    assert sim.status.outputs == {"result": "hi!"}
    assert [t.state for t in sim.status.history] == [State.CREATED, State.RUNNING, State.SUCCESS]
    assert [c.n for c in sim.status.changes] == [1, 2, 3]


def test_retry_creates_new_attempts_after_the_interval_and_stops_at_the_maximum():
    flow = make_flow([log("flaky", retry={"maxAttempts": 3, "interval": "PT10S"})])
    sim = Simulation(flow)
    sim.finish("flaky", success=False)
    assert sim.running() == [] and sim.taskruns("flaky")[0].state == State.RETRYING
    assert sim.wake == sim.now + timedelta(seconds=10)
    sim.send(Tick(at=sim.now))
    assert sim.running() == []  # not yet due
    sim.tick_to_wake()
    assert sim.running() == ["flaky"]
    sim.finish("flaky", success=False)
    sim.tick_to_wake()
    sim.finish("flaky", success=False)
    (tr,) = sim.taskruns("flaky")
    assert [a.number for a in tr.attempts] == [1, 2, 3]
    assert tr.state == State.FAILED and sim.status.state == State.FAILED
    assert "task 'flaky' failed" in (sim.status.error or "")


def test_errors_run_when_a_task_fails_and_finally_runs_always():
    flow = make_flow([log("a"), log("never")], errors=[log("on-error")], **{"finally": [log("cleanup")]})
    sim = Simulation(flow)
    sim.finish("a", success=False, reason="exit code 3")
    assert sim.running() == ["on-error"]
    sim.finish("on-error")
    assert sim.running() == ["cleanup"]
    sim.finish("cleanup")
    assert sim.status.state == State.FAILED
    assert sim.taskruns("never") == []
    assert sim.status.error == "task 'a' failed: exit code 3"


def test_allow_failure_gives_warning_and_continues():
    sim = Simulation(make_flow([log("a", allowFailure=True), log("b")]))
    sim.finish("a", success=False)
    assert sim.taskruns("a")[0].state == State.WARNING
    sim.finish("b")
    assert sim.status.state == State.WARNING


def test_parallel_respects_concurrency_and_joins():
    flow = make_flow(
        [{"id": "p", "type": "Parallel", "concurrency": 2, "tasks": [log("x"), log("y"), log("z")]}, log("after")]
    )
    sim = Simulation(flow)
    assert sim.running() == ["x", "y"]
    sim.finish("y")
    assert sim.running() == ["x", "z"]
    sim.finish("z")
    sim.finish("x")
    assert sim.taskruns("p")[0].state == State.SUCCESS and sim.running() == ["after"]


def test_if_switch_and_foreach():
    flow = make_flow(
        [
            {"id": "cond", "type": "If", "condition": "{{ inputs.go }}", "then": [log("yes")], "else": [log("no")]},
            {"id": "sw", "type": "Switch", "value": "{{ inputs.colour }}", "cases": {"red": [log("r")]},
             "defaults": [log("other")]},
            {"id": "each", "type": "ForEach", "values": '["a", "b", "c"]', "concurrencyLimit": 2,
             "tasks": [log("item", message="{{ taskrun.value }}")]},
        ],
        inputs=[{"id": "go", "type": "BOOLEAN"}, {"id": "colour", "type": "STRING"}],
    )  # fmt: skip
    sim = Simulation(flow, {"go": "false", "colour": "blue"})
    assert sim.running() == ["no"]
    sim.finish("no")
    assert sim.running() == ["other"]
    sim.finish("other")
    messages = sorted(a.work.task["message"] for a in sim.outstanding.values())
    assert messages == ["a", "b"]
    sim.finish("item")
    sim.finish("item")
    sim.finish("item")
    assert sim.status.state == State.SUCCESS
    assert sorted(tr.value for tr in sim.taskruns("item")) == ["a", "b", "c"]


def test_flow_outputs_take_their_declared_type():
    flow = make_flow(
        [{"id": "a", "type": "Return", "format": "12"}],
        outputs=[{"id": "n", "type": "INT", "value": "{{ outputs.a.value }}"}, {"id": "s", "value": "x"}],
    )
    sim = Simulation(flow)
    sim.finish("a", outputs={"value": "12"})
    assert sim.status.outputs == {"n": 12, "s": "x"}
    bad = Simulation(make_flow([log("a")], outputs=[{"id": "n", "type": "INT", "value": "twelve"}]))
    bad.finish("a")
    assert bad.status.state == State.FAILED and bad.status.error == "flow output: 'twelve' is not a valid INT"


def test_switch_outputs_the_value_it_switched_on():
    flow = make_flow([{"id": "sw", "type": "Switch", "value": "blue", "cases": {"red": [log("r")]},
                       "defaults": [log("other")]}])  # fmt: skip
    sim = Simulation(flow)
    assert sim.taskruns("sw")[0].outputs == {"value": "blue"} and sim.running() == ["other"]


def test_undefined_variable_fails_the_task_naming_the_expression():
    sim = Simulation(make_flow([log("a", message="{{ outputs.missing.value }}")]))
    assert sim.status.state == State.FAILED
    assert "cannot render '{{ outputs.missing.value }}'" in (sim.status.error or "")
    assert not [a for a in sim.actions if isinstance(a, RunTask)]


def test_bad_inputs_fail_the_execution_with_a_reason():
    sim = Simulation(make_flow([log("a")], inputs=[{"id": "need", "type": "INT"}]), {"need": "many"})
    assert sim.status.state == State.FAILED
    assert sim.status.error == "invalid inputs: input 'need': 'many' is not a valid INT"
    assert sim.actions == []


def test_subflow_waits_for_the_child_and_transmits_failure():
    flow = make_flow([{"id": "child", "type": "Subflow", "namespace": "n", "flowId": "c", "inputs": {"k": "v"}}])
    sim = Simulation(flow)
    (start,) = [a for a in sim.actions if isinstance(a, StartSubflow)]
    assert start.inputs == {"k": "v"}
    assert start.traceparent.split("-")[1] == trace_id(RUN)
    sim.send(ChildFinished(at=sim.now, taskRunId=start.taskRunId, state=State.FAILED))
    assert sim.status.state == State.FAILED


def test_kill_stops_attempts_and_children_and_ends_killed():
    flow = make_flow(
        [{"id": "p", "type": "Parallel", "tasks": [log("a"), {"id": "c", "type": "Subflow", "namespace": "n",
                                                              "flowId": "x"}]}],
        **{"finally": [log("cleanup")]},
    )  # fmt: skip
    sim = Simulation(flow)
    sim.send(Kill(at=sim.now))
    kinds = sorted(type(a).__name__ for a in sim.actions)
    assert kinds == ["KillSubflow", "RunTask", "StartSubflow", "StopTask"]
    assert sim.status.state == State.KILLED
    assert all(tr.state == State.KILLED for tr in sim.status.taskRuns)
    assert sim.taskruns("cleanup") == []


def test_replaying_an_event_changes_nothing():
    sim = Simulation(make_flow([log("a"), log("b")]))
    action = next(iter(sim.outstanding.values()))
    event = AttemptFinished(at=sim.now, taskRunId=action.work.taskRunId, attempt=1, success=True)
    once = advance(sim.flow, RUN, sim.status, [event], sim.now)
    twice = advance(sim.flow, RUN, once.status, [event], sim.now)
    assert once.changed and not twice.changed
    assert twice.actions == [] and twice.status == once.status


def test_a_rerendered_attempt_sees_the_same_attempt_count():
    flow = make_flow([log("a", message="{{ taskrun.attemptsCount }}", retry={"maxAttempts": 3, "interval": "PT1S"})])
    sim = Simulation(flow)
    sim.finish("a", success=False)
    sim.tick_to_wake()
    (second,) = sim.outstanding.values()
    (again,) = pending_actions(sim.flow, RUN, sim.status, sim.now)
    assert second.work.task["message"] == again.work.task["message"] == "1"


def test_a_queued_execution_runs_once_admitted():
    flow = make_flow([log("a")], concurrency={"limit": 1})
    queued = advance(flow, RUN, None, [Start(at=T0, queued=True)], T0)
    assert queued.status.state == State.QUEUED and queued.actions == []
    admitted = advance(flow, RUN, queued.status, [Admit(at=T0)], T0)
    assert admitted.status.state == State.RUNNING
    assert [a.work.taskId for a in admitted.actions] == ["a"]
    assert [t.state for t in admitted.status.history] == [State.CREATED, State.QUEUED, State.RUNNING]


def test_pending_actions_recreate_what_is_under_way():
    sim = Simulation(make_flow([{"id": "p", "type": "Parallel", "tasks": [log("a"), log("b")]}]))
    again = pending_actions(sim.flow, RUN, sim.status, sim.now)
    assert sorted((a.work.taskId, a.work.attempt) for a in again) == [("a", 1), ("b", 1)]
    assert {a.traceparent for a in again} == {a.traceparent for a in sim.outstanding.values()}


def test_attempt_started_marks_the_task_run_running():
    sim = Simulation(make_flow([log("a")]))
    action = next(iter(sim.outstanding.values()))
    sim.send(AttemptStarted(at=sim.now, taskRunId=action.work.taskRunId, attempt=1, pod="p-1", node="n1"))
    (tr,) = sim.taskruns("a")
    assert tr.state == State.RUNNING and tr.attempts[0].pod == "p-1" and tr.attempts[0].node == "n1"


# --- properties over generated flows and event orders --------------------------------------------------


def _task_id() -> str:
    return "placeholder"  # renumbered per flow, so that the same draws give the same ids


def _renumber(document: dict) -> None:
    counter = iter(range(10**6))

    def walk(tasks: list[dict]) -> None:
        for task in tasks:
            task["id"] = f"t{next(counter)}"
            for key in ("tasks", "then", "else"):
                walk(task.get(key, []))

    for section in ("tasks", "errors", "finally"):
        walk(document.get(section, []))


@st.composite
def tasks_strategy(draw, depth: int = 0) -> dict:
    kinds = ["worker"] * 4 + (["parallel", "sequential", "if", "foreach", "subflow"] if depth < 2 else ["subflow"])
    kind = draw(st.sampled_from(kinds))
    task_id = _task_id()
    common: dict[str, Any] = {}
    if draw(st.booleans()):
        common["allowFailure"] = True
    if kind == "worker":
        if draw(st.booleans()):
            common["retry"] = {"maxAttempts": draw(st.integers(1, 3)), "interval": "PT1S"}
        return log(task_id, **common)
    if kind == "subflow":
        return {"id": task_id, "type": "Subflow", "namespace": "n", "flowId": "child",
                "wait": draw(st.booleans()), "transmitFailed": draw(st.booleans()), **common}  # fmt: skip
    children = draw(st.lists(tasks_strategy(depth + 1), min_size=1, max_size=3))
    if kind == "parallel":
        return {"id": task_id, "type": "Parallel", "concurrency": draw(st.integers(0, 2)), "tasks": children, **common}
    if kind == "sequential":
        return {"id": task_id, "type": "Sequential", "tasks": children, **common}
    if kind == "if":
        other = draw(st.lists(tasks_strategy(depth + 1), max_size=2))
        return {"id": task_id, "type": "If", "condition": draw(st.sampled_from(["true", "false"])),
                "then": children, "else": other, **common}  # fmt: skip
    values = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=3, unique=True))
    return {"id": task_id, "type": "ForEach", "values": values, "concurrencyLimit": draw(st.integers(0, 2)),
            "tasks": children, **common}  # fmt: skip


@st.composite
def flows_strategy(draw) -> Flow:
    document: dict[str, Any] = {
        "id": "f",
        "namespace": "company.team",
        "tasks": draw(st.lists(tasks_strategy(), min_size=1, max_size=3)),
    }
    if draw(st.booleans()):
        document["errors"] = draw(st.lists(tasks_strategy(1), min_size=1, max_size=2))
    if draw(st.booleans()):
        document["finally"] = draw(st.lists(tasks_strategy(1), min_size=1, max_size=2))
    _renumber(document)
    return parse_flow(document)


def _top_level_ids(tasks) -> set[str]:
    return {task.id for task in tasks}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows_strategy(), data=st.data())
def test_every_execution_terminates_consistently(flow: Flow, data):
    sim = Simulation(flow)
    started: set[tuple[str, int]] = set()
    for action in sim.actions:
        if isinstance(action, RunTask):
            started.add((action.work.taskRunId, action.work.attempt))
    kill_at = data.draw(st.one_of(st.none(), st.integers(0, 30)), label="kill at step")
    for step in range(500):
        if sim.status.state.terminal:
            break
        if kill_at is not None and step == kill_at:
            sim.send(Kill(at=sim.now))
            continue
        pending = sorted(sim.outstanding) + sorted(("child", tr) for tr in sim.children)
        if not pending:
            # nothing is under way: only a retry wait may be left
            assert sim.wake is not None, "an execution with nothing under way must be waiting for a retry"
            sim.tick_to_wake()
        else:
            choice = data.draw(st.sampled_from(pending), label="next to finish")
            if choice[0] == "child":
                del sim.children[choice[1]]
                state = data.draw(st.sampled_from([State.SUCCESS, State.FAILED, State.WARNING]), label="child")
                sim.send(ChildFinished(at=sim.now, taskRunId=choice[1], state=state))
            else:
                action = sim.outstanding.pop(choice)
                success = data.draw(st.booleans(), label="success")
                sim.send(AttemptFinished(at=sim.now, taskRunId=choice[0], attempt=choice[1], success=success))
        before = len(started)
        new = [(a.work.taskRunId, a.work.attempt) for a in sim.actions if isinstance(a, RunTask)]
        started = set(new)
        # no task-run attempt is ever started twice
        assert len(new) == len(started) >= before
    status = sim.status
    assert status.state.terminal, "every execution terminates"
    assert all(tr.state.terminal for tr in status.taskRuns), "no task run is left behind"

    tasks = {task.id: task for task in flow.all_tasks()}
    for tr in status.taskRuns:
        retry = tasks[tr.taskId].retry
        assert len(tr.attempts) <= (retry.maxAttempts if retry else 1), "retries stop at the maximum"
        assert [a.number for a in tr.attempts] == list(range(1, len(tr.attempts) + 1))
        children = [c for c in status.taskRuns if c.parentId == tr.id]
        if tr.state in (State.SUCCESS, State.WARNING):
            assert all(c.state.terminal for c in children), "branches join before the flowable ends"
        if tr.state == State.SUCCESS:
            assert not any(c.state.failed for c in children), "a flowable succeeds only if its branches did"

    top = {tr.taskId: tr for tr in status.taskRuns if tr.parentId is None}
    main_failed = any(top[t].state.failed for t in _top_level_ids(flow.tasks) if t in top)
    errors_ran = any(t in top for t in _top_level_ids(flow.errors))
    finally_ran = any(t in top for t in _top_level_ids(flow.finally_))
    killed = status.state == State.KILLED
    if not killed:
        assert errors_ran == (main_failed and bool(flow.errors)), "errors run exactly when a task failed"
        if flow.finally_:
            assert finally_ran, "finally runs whenever the execution was not killed"
        assert status.state.failed == (main_failed or any(top[t].state.failed for t in _top_level_ids(flow.finally_)
                                                          if t in top))  # fmt: skip
    assert [c.n for c in status.changes] == list(range(1, len(status.changes) + 1))


@settings(max_examples=100, deadline=None)
@given(flow=flows_strategy())
def test_the_same_events_give_the_same_status(flow: Flow):
    first, second = Simulation(flow), Simulation(flow)
    assert first.status == second.status
    assert [a.model_dump() for a in first.actions] == [a.model_dump() for a in second.actions]


def test_status_survives_a_json_round_trip():
    sim = Simulation(make_flow([{"id": "each", "type": "ForEach", "values": [1, {"a": 2}], "tasks": [log("x")]}]))
    sim.finish("x")
    stored = ExecutionStatus.model_validate_json(sim.status.model_dump_json())
    assert stored == sim.status
    assert sorted(tr.value for tr in stored.taskRuns if tr.value) == ["1", '{"a":2}']
