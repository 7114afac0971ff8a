"""The executor as a pure state machine: worked examples, then properties over generated flows and event orders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowpods.core import controls
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
from flowpods.core.executor import Restart, Resume
from flowpods.core.model import Flow, Flowable, parse_flow
from flowpods.core.spans import derive_spans
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


def test_an_owned_status_is_changed_in_place_and_decides_as_the_copy_does():
    """The operator hands `advance` a second parse of the stored status (`owned`) instead of letting it copy the
    first: the decision is the same, made on the object given; without `owned`, the status given is untouched."""
    sim = Simulation(make_flow([log("a"), log("b")]))
    (action,) = sim.outstanding.values()
    stored = sim.status.model_dump(mode="json")  # what the operator reads back
    event = AttemptFinished(at=T0 + timedelta(seconds=2), taskRunId=action.work.taskRunId, attempt=1,
                            success=True, outputs={}, exitCode=0)  # fmt: skip
    now = T0 + timedelta(seconds=3)
    kept = ExecutionStatus.model_validate(stored)
    copied = advance(sim.flow, RUN, kept, [event], now)
    assert kept.model_dump(mode="json") == stored, "the status given is not changed"
    given = ExecutionStatus.model_validate(stored)
    owned = advance(sim.flow, RUN, given, [event], now, owned=True)
    assert owned.status is given and given.model_dump(mode="json") != stored
    assert owned.status.model_dump(mode="json") == copied.status.model_dump(mode="json")
    assert owned.actions == copied.actions and owned.changed and owned.wakeAt == copied.wakeAt


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
            for key in ("tasks", "then", "else", "errors", "finally"):
                if task.get("type") == "Dag" and key == "tasks":
                    continue
                walk(task.get(key, []))
            if task.get("type") == "Dag":
                entries = task["tasks"]
                walk([entry["task"] for entry in entries])
                for entry in entries:  # dependsOn holds positions of earlier entries: no cycle
                    entry["dependsOn"] = [entries[int(dep)]["task"]["id"] for dep in entry["dependsOn"]]

    for section in ("tasks", "errors", "finally"):
        walk(document.get(section, []))


FLOWABLES = [
    "parallel", "sequential", "if", "foreach", "eachsequential", "eachparallel", "allowfailure", "dag", "pause",
    "waitfor",
]  # fmt: skip


@st.composite
def tasks_strategy(draw, depth: int = 0) -> dict:
    kinds = ["worker"] * 4 + ([*FLOWABLES, "subflow"] if depth < 2 else ["subflow"])
    kind = draw(st.sampled_from(kinds))
    task_id = _task_id()
    common: dict[str, Any] = {}
    if draw(st.booleans()):
        common["allowFailure"] = True
    if draw(st.integers(0, 5)) == 0:
        common["allowWarning"] = True
    if draw(st.integers(0, 5)) == 0:
        common["runIf"] = draw(st.sampled_from(["true", "false"]))
    if kind == "worker":
        if draw(st.booleans()):
            common["retry"] = {"maxAttempts": draw(st.integers(1, 3)), "interval": "PT1S"}
        return log(task_id, **common)
    if kind == "subflow":
        return {"id": task_id, "type": "Subflow", "namespace": "n", "flowId": "child",
                "wait": draw(st.booleans()), "transmitFailed": draw(st.booleans()), **common}  # fmt: skip
    children = draw(st.lists(tasks_strategy(depth + 1), min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        common["errors"] = draw(st.lists(tasks_strategy(2), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        common["finally"] = draw(st.lists(tasks_strategy(2), min_size=1, max_size=2))
    if kind == "parallel":
        return {"id": task_id, "type": "Parallel", "concurrency": draw(st.integers(0, 2)), "tasks": children, **common}
    if kind in ("sequential", "allowfailure"):
        return {"id": task_id, "type": "Sequential" if kind == "sequential" else "AllowFailure", "tasks": children,
                **common}  # fmt: skip
    if kind == "if":
        other = draw(st.lists(tasks_strategy(depth + 1), max_size=2))
        return {"id": task_id, "type": "If", "condition": draw(st.sampled_from(["true", "false"])),
                "then": children, "else": other, **common}  # fmt: skip
    if kind == "waitfor":
        return {"id": task_id, "type": "WaitFor", "tasks": children,
                "condition": draw(st.sampled_from(["true", "false"])),
                "checkFrequency": {"interval": "PT1S", "maxIterations": draw(st.integers(1, 3))},
                "failOnMaxReached": draw(st.booleans()), **common}  # fmt: skip
    if kind == "pause":
        timed = {"pauseDuration": "PT1S"} if draw(st.booleans()) else {}  # without: waits to be resumed
        return {"id": task_id, "type": "Pause", **timed, "tasks": children,
                "behavior": draw(st.sampled_from(["RESUME", "WARN", "FAIL"])), **common}  # fmt: skip
    if kind == "dag":
        entries = [{"task": child, "dependsOn": sorted(draw(st.sets(st.sampled_from([str(i) for i in range(n)]))))
                    if n else []} for n, child in enumerate(children)]  # fmt: skip
        return {"id": task_id, "type": "Dag", "tasks": entries, **common}
    values = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=3, unique=True))
    if kind == "eachsequential":
        return {"id": task_id, "type": "EachSequential", "value": values, "tasks": children, **common}
    if kind == "eachparallel":
        return {"id": task_id, "type": "EachParallel", "value": values, "concurrent": draw(st.integers(0, 2)),
                "tasks": children, **common}  # fmt: skip
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
    restart = data.draw(st.booleans(), label="restart once when it ended FAILED, KILLED or WARNING")
    for step in range(500):
        if sim.status.state.terminal:
            if restart and sim.status.restarts == 0 and controls.restart_problem(flow, sim.status) is None:
                sim.send(Restart(at=sim.now, value="again"))
                continue
            break
        if kill_at is not None and step == kill_at:
            sim.send(Kill(at=sim.now))
            continue
        pending = sorted(sim.outstanding) + sorted(("child", tr) for tr in sim.children)
        if not pending and sim.wake is None and sim.status.state == State.PAUSED:
            sim.send(Resume(at=sim.now, value=str(step)))  # a Pause without duration waits for this
        elif not pending:
            # nothing is under way: only a retry wait may be left
            assert sim.wake is not None, "an execution with nothing under way must be waiting for a retry or a pause"
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
    killed = status.state == State.KILLED
    assert status.state.terminal, "every execution terminates"
    paused = [t for t in status.history if t.state == State.PAUSED]
    assert bool(paused) <= any(tr.branch in ("paused", "resumed") for tr in status.taskRuns), "PAUSED only by a Pause"
    left = [(tr.taskId, tr.state.value, [h.state.value for h in tr.history]) for tr in status.taskRuns
            if not tr.state.terminal]  # fmt: skip
    assert not left, f"no task run is left behind: {left} {[h.state.value for h in status.history]}"

    tasks = {task.id: task for task in flow.all_tasks()}
    for tr in status.taskRuns:
        retry = flow.retry_of(tasks[tr.taskId])
        assert len(tr.attempts) <= (retry.maxAttempts or 1 if retry else 1) * (1 + status.restarts), "retries stop"
        if tr.state == State.SKIPPED:
            assert tasks[tr.taskId].runIf == "false" and not tr.attempts, "only a false runIf skips, before any attempt"
        if tasks[tr.taskId].allowWarning:
            assert tr.state != State.WARNING, "allowWarning turns WARNING into SUCCESS"
            continue
        assert [a.number for a in tr.attempts] == list(range(1, len(tr.attempts) + 1))
        children = [c for c in status.taskRuns if c.parentId == tr.id]
        if tr.state in (State.SUCCESS, State.WARNING):
            assert all(c.state.terminal for c in children), "branches join before the flowable ends"
        if tr.state == State.SUCCESS and not status.restarts:  # a restart keeps the failed errors handlers
            assert not any(c.state.failed for c in children), "a flowable succeeds only if its branches did"
        task = tasks[tr.taskId]
        if isinstance(task, Flowable) and task.errors and not killed and not status.restarts:
            branch_ids = {t.id for branch in task.branches() for t in branch}
            branch_failed = any(c.taskId in branch_ids and c.state == State.FAILED for c in children)
            handlers_ran = any(c.taskId in {t.id for t in task.errors} for c in children)
            assert handlers_ran == branch_failed, "a flowable's errors run exactly when one of its tasks failed"
            assert not branch_failed or tr.state.failed or task.allowFailure, "errors do not recover a flowable"

    top = {tr.taskId: tr for tr in status.taskRuns if tr.parentId is None}
    main_failed = any(top[t].state.failed for t in _top_level_ids(flow.tasks) if t in top)
    errors_ran = any(t in top for t in _top_level_ids(flow.errors))
    finally_ran = any(t in top for t in _top_level_ids(flow.finally_))
    killed = status.state == State.KILLED
    span_ids = [span.span_id for _, span in derive_spans(sim.run, flow, status)]
    assert len(span_ids) == len(set(span_ids)), "every span id once, across a restart too"
    if not killed and not status.restarts:
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


# --- Kestra's other flowables and task fields -------------------------------------------------------------


class TestEachSequentialAndEachParallel:
    def test_each_sequential_runs_one_value_after_the_other(self):
        flow = make_flow([{"id": "each", "type": "EachSequential", "value": '["a", "b"]', "tasks": [log("x")]}])
        sim = Simulation(flow)
        assert [a.work.value for a in sim.outstanding.values()] == ["a"]
        sim.finish("x")
        assert [a.work.value for a in sim.outstanding.values()] == ["b"]
        sim.finish("x")
        assert sim.status.state == State.SUCCESS

    def test_each_parallel_runs_every_value_at_once(self):
        flow = make_flow([{"id": "each", "type": "EachParallel", "value": ["a", "b", "c"], "tasks": [log("x")]}])
        sim = Simulation(flow)
        assert sorted(a.work.value for a in sim.outstanding.values()) == ["a", "b", "c"]

    def test_values_holding_null_fail_the_foreach(self):
        flow = make_flow([{"id": "each", "type": "ForEach", "values": '["a", null]', "tasks": [log("x")]}])
        sim = Simulation(flow)
        assert sim.status.state == State.FAILED
        assert [tr.taskId for tr in sim.status.taskRuns] == ["each"]
        assert "must not contain null" in sim.status.error


class TestAllowFailure:
    def test_a_failure_inside_ends_warning_and_the_flow_goes_on(self):
        flow = make_flow([{"id": "tolerant", "type": "AllowFailure", "tasks": [log("bad")]}, log("after")])
        sim = Simulation(flow)
        sim.finish("bad", success=False)
        assert sim.taskruns("tolerant")[0].state == State.WARNING
        sim.finish("after")
        assert sim.status.state == State.WARNING


class TestDag:
    def test_a_task_starts_once_what_it_depends_on_succeeded(self):
        flow = make_flow([{"id": "dag", "type": "Dag", "tasks": [
            {"task": log("a")}, {"task": log("b")}, {"task": log("c"), "dependsOn": ["a", "b"]},
        ]}])  # fmt: skip
        sim = Simulation(flow)
        assert sim.running() == ["a", "b"]
        sim.finish("a")
        assert sim.running() == ["b"]
        sim.finish("b")
        assert sim.running() == ["c"]
        sim.finish("c")
        assert sim.status.state == State.SUCCESS

    def test_a_failure_starts_nothing_more_and_fails_the_dag(self):
        flow = make_flow([{"id": "dag", "type": "Dag", "tasks": [
            {"task": log("a")}, {"task": log("b"), "dependsOn": ["a"]},
        ]}])  # fmt: skip
        sim = Simulation(flow)
        sim.finish("a", success=False)
        assert sim.taskruns("b") == [] and sim.status.state == State.FAILED


class TestFlowableErrorsAndFinally:
    def test_local_errors_run_when_a_nested_task_fails_and_the_flowable_still_fails(self):
        flow = make_flow(
            [{"id": "seq", "type": "Sequential", "tasks": [log("bad")], "errors": [log("handle")],
              "finally": [log("tidy")]}],
            errors=[log("flow-errors")],
        )  # fmt: skip
        sim = Simulation(flow)
        sim.finish("bad", success=False)
        assert sim.running() == ["handle"]
        sim.finish("handle")
        assert sim.running() == ["tidy"]
        sim.finish("tidy")
        assert sim.taskruns("seq")[0].state == State.FAILED
        assert sim.running() == ["flow-errors"]

    def test_a_failing_local_finally_fails_a_successful_flowable(self):
        flow = make_flow([{"id": "seq", "type": "Sequential", "tasks": [log("ok")], "finally": [log("tidy")]}])
        sim = Simulation(flow)
        sim.finish("ok")
        sim.finish("tidy", success=False)
        assert sim.taskruns("seq")[0].state == State.FAILED and sim.status.state == State.FAILED


class TestRunIfAndAllowWarning:
    def test_a_false_run_if_skips_the_task(self):
        flow = make_flow([log("a", runIf="{{ inputs.go }}"), log("b")], inputs=[{"id": "go", "type": "BOOLEAN"}])
        sim = Simulation(flow, {"go": False})
        assert sim.taskruns("a")[0].state == State.SKIPPED and sim.running() == ["b"]
        sim.finish("b")
        assert sim.status.state == State.SUCCESS
        assert Simulation(flow, {"go": True}).running() == ["a"]

    def test_allow_warning_turns_a_warning_into_success(self):
        flow = make_flow([log("a", allowFailure=True, allowWarning=True)])
        sim = Simulation(flow)
        sim.finish("a", success=False)
        assert sim.taskruns("a")[0].state == State.SUCCESS and sim.status.state == State.SUCCESS


class TestFlowRetry:
    def test_the_flow_retry_applies_to_tasks_without_their_own(self):
        flow = make_flow([log("a"), log("b", retry={"maxAttempts": 1})], retry={"maxAttempts": 2, "interval": "PT1S"})
        sim = Simulation(flow)
        sim.finish("a", success=False)
        sim.tick_to_wake()
        assert [a.work.attempt for a in sim.outstanding.values()] == [2]
        sim.finish("a")
        sim.finish("b", success=False)
        assert sim.status.state == State.FAILED and len(sim.taskruns("b")[0].attempts) == 1

    def test_a_retry_with_only_max_duration_retries_until_it_passes(self):
        flow = make_flow([log("a", retry={"maxDuration": "PT10S", "interval": "PT2S"})])
        sim = Simulation(flow)
        for _ in range(10):
            if sim.status.state.terminal:
                break
            sim.finish("a", success=False)
            if sim.wake:
                sim.tick_to_wake()
        attempts = len(sim.taskruns("a")[0].attempts)
        assert sim.status.state == State.FAILED and 2 < attempts < 10


class TestAfterExecution:
    def test_after_execution_runs_once_the_state_is_known_and_does_not_change_it(self):
        flow = make_flow([log("a")], afterExecution=[log("notify", message="{{ execution.state }}")])
        sim = Simulation(flow)
        sim.finish("a", success=False)
        assert sim.running() == ["notify"]
        sim.finish("notify")
        assert sim.status.state == State.FAILED


def test_inputs_with_dots_are_nested_in_templates():
    flow = make_flow([{"id": "r", "type": "Return", "format": "{{ inputs.db.host }}"}],
                     inputs=[{"id": "db.host", "type": "STRING"}])  # fmt: skip
    sim = Simulation(flow, {"db.host": "pg"})
    assert sim.finish("r").work.task["format"] == "pg"


def test_subflow_inherit_labels_passes_the_execution_labels_on():
    flow = make_flow([{"id": "child", "type": "Subflow", "namespace": "n", "flowId": "c", "inheritLabels": True,
                       "labels": {"own": "1"}}], labels={"team": "a"})  # fmt: skip
    sim = Simulation(flow)
    (start,) = sim.children.values()
    assert start.labels == {"team": "a", "own": "1", "system.correlationId": RUN.id}


def test_a_subflow_chain_shares_the_first_execution_s_correlation_id():
    flow = make_flow([{"id": "child", "type": "Subflow", "namespace": "n", "flowId": "c"},
                      {"id": "r", "type": "Return", "format": "{{ labels.system.correlationId }}"}])  # fmt: skip
    sim = Simulation(flow)
    (start,) = sim.children.values()
    assert start.labels == {"system.correlationId": RUN.id}
    child_run = RUN.model_copy(update={"id": "child-1", "uid": "uid-2", "labels": start.labels})
    grandchild = Simulation(flow, run=child_run)
    (again,) = grandchild.children.values()
    assert again.labels == {"system.correlationId": RUN.id}


def test_every_accepted_task_type_runs_or_is_refused_with_a_reason():
    from flowpods.core.executor.drivers import DRIVERS
    from flowpods.core.model import TASK_CLASSES, ScriptTask
    from flowpods.worker.runner import RUNNERS

    for cls in TASK_CLASSES:
        if cls.not_yet:
            continue
        if cls.runs_in_worker:  # script tasks share one runner (run_script), the others have their own
            assert issubclass(cls, ScriptTask) or cls in RUNNERS, cls.__name__
        else:
            assert cls in DRIVERS, cls.__name__


class TestPause:
    def test_a_pause_holds_the_execution_paused_for_its_duration_then_runs_on(self):
        flow = make_flow([{"id": "wait", "type": "Pause", "pauseDuration": "{{ inputs.delay }}",
                           "tasks": [log("inside")]}, log("after")],
                         inputs=[{"id": "delay", "type": "DURATION"}])  # fmt: skip
        sim = Simulation(flow, {"delay": "PT30S"})
        assert sim.status.state == State.PAUSED and sim.running() == []
        assert sim.taskruns("wait")[0].state == State.PAUSED
        assert sim.wake == T0 + timedelta(seconds=30)
        sim.send(Tick(at=sim.now))
        assert sim.status.state == State.PAUSED  # not yet
        sim.tick_to_wake()
        assert sim.status.state == State.RUNNING and sim.running() == ["inside"]
        sim.finish("inside")
        sim.finish("after")
        assert sim.status.state == State.SUCCESS
        states = [t.state for t in sim.status.history]
        assert states == [State.CREATED, State.RUNNING, State.PAUSED, State.RUNNING, State.SUCCESS]

    def test_the_old_delay_name_and_a_fail_behavior(self):
        flow = make_flow([{"id": "wait", "type": "Pause", "delay": "PT1S", "behavior": "FAIL"}, log("after")])
        sim = Simulation(flow)
        sim.tick_to_wake()
        assert sim.taskruns("wait")[0].state == State.FAILED and sim.status.state == State.FAILED

    def test_a_duration_that_is_not_one_fails_the_task_naming_it(self):
        sim = Simulation(make_flow([{"id": "wait", "type": "Pause", "pauseDuration": "soon"}]))
        assert sim.status.state == State.FAILED
        assert sim.taskruns("wait")[0].error == "pauseDuration 'soon' is not an ISO-8601 duration"

    def test_kill_ends_a_paused_execution(self):
        sim = Simulation(make_flow([{"id": "wait", "type": "Pause", "pauseDuration": "PT1H"}]))
        sim.send(Kill(at=sim.now))
        assert sim.status.state == State.KILLED and sim.taskruns("wait")[0].state == State.KILLED
        assert sim.wake is None


class TestSLA:
    def test_max_duration_fails_a_long_execution_and_stops_what_runs(self):
        flow = make_flow([log("slow")], sla=[{"id": "quick", "type": "MAX_DURATION", "behavior": "FAIL",
                                              "duration": "PT10S"}])  # fmt: skip
        sim = Simulation(flow)
        assert sim.wake == T0 + timedelta(seconds=10)
        sim.tick_to_wake()
        assert sim.status.state == State.FAILED
        assert sim.status.error == "SLA 'quick' violated: the execution ran longer than PT10S"
        assert sim.taskruns("slow")[0].state == State.KILLED and sim.running() == []

    def test_an_execution_within_its_max_duration_is_untouched(self):
        flow = make_flow([log("fast")], sla=[{"id": "quick", "type": "MAX_DURATION", "behavior": "CANCEL",
                                              "duration": "PT10S"}])  # fmt: skip
        sim = Simulation(flow)
        sim.finish("fast")
        assert sim.status.state == State.SUCCESS and sim.wake is None

    def test_a_false_assertion_cancels_the_execution_when_it_ends(self):
        flow = make_flow(
            [log("a")],
            inputs=[{"id": "mode", "type": "STRING"}],
            sla=[{"id": "check", "type": "EXECUTION_ASSERTION", "behavior": "CANCEL",
                  "assert": "{{ inputs.mode != 'x' }}"}],
        )  # fmt: skip
        sim = Simulation(flow, {"mode": "x"})
        sim.finish("a")
        assert sim.status.state == State.CANCELLED
        assert sim.status.error == "SLA 'check' violated: {{ inputs.mode != 'x' }} is false"
        ok = Simulation(flow, {"mode": "y"})
        ok.finish("a")
        assert ok.status.state == State.SUCCESS


class TestWaitFor:
    @staticmethod
    def waitfor(**extra: Any) -> Flow:
        return make_flow([{"id": "wait", "type": "WaitFor", "tasks": [
            {"id": "count", "type": "OutputValues", "values": {"n": "{{ outputs.wait.iterationCount + 1 }}"}}],
            "condition": "{{ outputs.count['values'].n == '3' }}", "checkFrequency": {"interval": "PT5S"},
            **extra}])  # fmt: skip

    def test_its_tasks_run_again_each_interval_until_the_condition_holds(self):
        sim = Simulation(self.waitfor())
        for n in (1, 2, 3):
            action = sim.finish("count", outputs={"values": {"n": str(n)}})
            assert action.work.task["values"] == {"n": str(n)}
            if n < 3:
                assert sim.wake == sim.now + timedelta(seconds=5) and sim.running() == []
                sim.tick_to_wake()
        assert sim.status.state == State.SUCCESS
        assert [tr.iteration for tr in sim.taskruns("count")] == [0, 1, 2]
        assert sim.taskruns("wait")[0].outputs == {"iterationCount": 2}

    def test_at_max_iterations_it_fails_with_fail_on_max_reached(self):
        sim = Simulation(self.waitfor(checkFrequency={"interval": "PT1S", "maxIterations": 2}, failOnMaxReached=True))
        sim.finish("count", outputs={"values": {"n": "1"}})
        sim.tick_to_wake()
        sim.finish("count", outputs={"values": {"n": "2"}})
        assert sim.status.state == State.FAILED
        assert sim.taskruns("wait")[0].error.endswith("still false after 2 iterations (maxIterations reached)")

    def test_without_fail_on_max_reached_it_succeeds_at_the_maximum(self):
        sim = Simulation(self.waitfor(checkFrequency={"interval": "PT1S", "maxIterations": 1}))
        sim.finish("count", outputs={"values": {"n": "1"}})
        assert sim.status.state == State.SUCCESS

    def test_a_failing_task_fails_the_wait(self):
        sim = Simulation(self.waitfor())
        sim.finish("count", success=False)
        assert sim.status.state == State.FAILED and len(sim.taskruns("count")) == 1


def test_a_retry_on_a_flowable_retries_its_failing_task():
    flow = make_flow([{"id": "seq", "type": "Sequential", "retry": {"maxAttempts": 3, "interval": "PT1S"},
                       "tasks": [{"id": "inner", "type": "Sequential", "tasks": [log("child")]}]}])  # fmt: skip
    sim = Simulation(flow)
    for _ in range(2):
        sim.finish("child", success=False)
        assert sim.taskruns("child")[0].state == State.RETRYING
        sim.tick_to_wake()
    sim.finish("child", success=False)
    assert [a.number for a in sim.taskruns("child")[0].attempts] == [1, 2, 3]
    assert sim.status.state == State.FAILED
