"""Execution controls in the pure executor: a Pause resumed (with onResume inputs), a failed execution
restarted from its failed task runs, each request acted on once, and every span exported exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from flowpods.core import controls, export
from flowpods.core.engine import Kill
from flowpods.core.executor import Restart, Resume, requested
from flowpods.core.model import parse_flow
from flowpods.core.spans import derive_spans
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0, Simulation, log, make_flow


def manual_pause(**extra) -> dict:
    return {"id": "wait", "type": "Pause", **extra}


def exported_once(sim: Simulation) -> Counter[str]:
    """Export like the operator does after every change (the watermark moves once confirmed); count the ids."""
    sent: Counter[str] = Counter()
    plan = export.plan(RUN, sim.flow, sim.status)
    if plan is not None:
        sent.update(span.span_id for span in plan.spans)
        sim.status.exported = export.advance(plan, confirmed=True)
    return sent


class TestPauseWithoutDuration:
    def test_the_model_accepts_it_with_onresume_inputs(self) -> None:
        flow = parse_flow(
            {"id": "f", "namespace": "n", "tasks": [manual_pause(onResume=[{"id": "ok", "type": "BOOLEAN"}])]}
        )
        assert flow.not_runnable() == []

    def test_it_waits_until_resumed_with_no_wake_up(self) -> None:
        sim = Simulation(make_flow([manual_pause(), log("after")]))
        assert sim.status.state == State.PAUSED and sim.wake is None
        sim.send(Resume(at=sim.now, value="1"))
        assert sim.status.state == State.RUNNING and sim.running() == ["after"]
        sim.finish("after")
        assert sim.status.state == State.SUCCESS
        assert [t.state for t in sim.status.history] == [State.CREATED, State.RUNNING, State.PAUSED, State.RUNNING,
                                                          State.SUCCESS]  # fmt: skip

    def test_onresume_inputs_are_validated_and_become_outputs(self) -> None:
        asked = [{"id": "approved", "type": "BOOLEAN"}, {"id": "note", "type": "STRING", "required": False}]
        after = {"id": "after", "type": "Return", "format": "{{ outputs.wait.onResume.approved }}"}
        flow = make_flow([manual_pause(onResume=asked), after])
        sim = Simulation(flow)
        sim.send(Resume(at=sim.now, value="bad", inputs={"approved": "maybe"}))
        assert sim.status.state == State.PAUSED
        assert not sim.status.controls[-1].done and "input 'approved'" in sim.status.controls[-1].result
        sim.send(Resume(at=sim.now, value="good", inputs={"approved": "true"}))
        assert sim.taskruns("wait")[0].outputs == {"onResume": {"approved": True, "note": None}}
        run_task = sim.finish("after")
        assert run_task.work.task["format"] == "true"

    def test_a_required_onresume_input_missing_is_refused(self) -> None:
        sim = Simulation(make_flow([manual_pause(onResume=[{"id": "approved", "type": "BOOLEAN"}])]))
        sim.send(Resume(at=sim.now, value="1"))
        assert sim.status.state == State.PAUSED
        assert "input 'approved' is required" in sim.status.controls[-1].result

    def test_resuming_early_a_pause_with_a_duration_skips_its_behavior(self) -> None:
        sim = Simulation(make_flow([manual_pause(pauseDuration="PT1H", behavior="FAIL"), log("after")]))
        sim.send(Resume(at=sim.now, value="now"))
        assert sim.taskruns("wait")[0].state == State.SUCCESS and sim.running() == ["after"]

    def test_the_same_request_is_acted_on_once_and_a_resume_of_a_running_execution_is_refused(self) -> None:
        sim = Simulation(make_flow([manual_pause(), log("after")]))
        sim.send(Resume(at=sim.now, value="1"))
        changes = len(sim.status.changes)
        sim.send(Resume(at=sim.now, value="1"))
        assert len(sim.status.changes) == changes  # the same value: nothing
        sim.send(Resume(at=sim.now, value="2"))
        assert sim.status.controls[-1].result.startswith("not resumed: the execution is RUNNING, not PAUSED")

    def test_annotations_become_events_only_while_not_acted_on(self) -> None:
        sim = Simulation(make_flow([manual_pause()]))
        annotations = {controls.ANNOTATION_RESUME: controls.resume_value("r1", {"x": 1})}
        events = requested(annotations, sim.status, sim.now)
        assert len(events) == 1 and isinstance(events[0], Resume) and events[0].inputs == {"x": 1}
        sim.send(*events)
        assert requested(annotations, sim.status, sim.now) == []

    def test_kill_still_ends_a_paused_execution(self) -> None:
        sim = Simulation(make_flow([manual_pause()]))
        sim.send(Kill(at=sim.now))
        assert sim.status.state == State.KILLED


def failed_after_success() -> Simulation:
    sim = Simulation(make_flow([log("first"), {"id": "seq", "type": "Sequential", "tasks": [log("flaky")]},
                                log("last")]))  # fmt: skip
    sim.finish("first")
    sim.finish("flaky", success=False)
    assert sim.status.state == State.FAILED
    return sim


class TestRestart:
    def test_the_failed_task_gets_a_new_attempt_and_the_successful_one_is_kept(self) -> None:
        sim = failed_after_success()
        sim.send(Restart(at=sim.now, value="1"))
        assert [t.state for t in sim.status.history][-3:] == [State.FAILED, State.RESTARTED, State.RUNNING]
        assert sim.running() == ["flaky"]
        (action,) = sim.outstanding.values()
        assert action.work.attempt == 2
        flaky = sim.taskruns("flaky")[0]
        assert flaky.state == State.RESTARTED and [a.number for a in flaky.attempts] == [1, 2]
        sim.finish("flaky")
        sim.finish("last")
        assert sim.status.state == State.SUCCESS and sim.status.error is None
        assert len(sim.taskruns("first")[0].attempts) == 1  # not rerun
        assert sim.taskruns("seq")[0].state == State.SUCCESS and sim.status.restarts == 1

    def test_only_a_failed_killed_or_warning_execution_restarts(self) -> None:
        sim = Simulation(make_flow([log("a")]))
        sim.send(Restart(at=sim.now, value="1"))
        assert sim.status.state == State.RUNNING and not sim.status.controls[-1].done
        sim.finish("a")
        sim.send(Restart(at=sim.now, value="2"))
        assert sim.status.state == State.SUCCESS and "only an execution that ended" in sim.status.controls[-1].result

    def test_a_killed_execution_restarts_its_killed_task(self) -> None:
        sim = Simulation(make_flow([log("a")]))
        sim.send(Kill(at=sim.now))
        sim.send(Restart(at=sim.now, value="1"))
        assert sim.running() == ["a"] and sim.status.state == State.RUNNING

    def test_a_restarted_subflow_starts_a_new_child(self) -> None:
        sim = Simulation(make_flow([{"id": "sub", "type": "Subflow", "namespace": "n", "flowId": "child"}]))
        first = next(iter(sim.children.values())).name
        from flowpods.core.engine import ChildFinished

        tr = sim.taskruns("sub")[0]
        sim.send(ChildFinished(at=sim.now, taskRunId=tr.id, state=State.FAILED))
        sim.send(Restart(at=sim.now, value="1"))
        assert sim.children[tr.id].name != first

    def test_the_same_restart_request_twice_restarts_once(self) -> None:
        sim = failed_after_success()
        sim.send(Restart(at=sim.now, value="1"))
        sim.finish("flaky", success=False)
        sim.send(Restart(at=sim.now, value="1"))
        assert sim.status.state == State.FAILED and sim.status.restarts == 1

    def test_every_span_is_exported_exactly_once_across_two_restarts(self) -> None:
        sim = Simulation(make_flow([log("first"), {"id": "seq", "type": "Sequential", "tasks": [log("flaky")]}]))
        sent: Counter[str] = exported_once(sim)
        sim.finish("first")
        sent += exported_once(sim)
        for n in ("1", "2"):
            sim.finish("flaky", success=False)
            sent += exported_once(sim)
            sim.send(Restart(at=sim.now, value=n))
            sent += exported_once(sim)
        sim.finish("flaky")
        sent += exported_once(sim)
        assert sim.status.state == State.SUCCESS
        assert set(sent.values()) == {1}, "no span id sent twice"
        derived = [span for _, span in derive_spans(RUN, sim.flow, sim.status)]
        assert Counter(span.span_id for span in derived) == sent  # and none lost
        runs = [span for span in derived if span.name == "RUN f"]
        assert [span.attributes.get("flowpods.restart") for span in runs] == [None, 1, 2]
        assert all(span.parent_span_id == runs[0].span_id for span in runs[1:])
        attempts = sorted((s.attributes["flowpods.attempt"], s.parent_span_id) for s in derived
                          if s.name == "TASKRUN flaky")  # fmt: skip
        assert [n for n, _ in attempts] == [1, 2, 3]
        seqs = [span.span_id for span in derived if span.name.endswith("Sequential")]
        assert [parent for _, parent in attempts] == seqs, "each attempt under the Sequential span of its run"

    def test_the_restart_is_an_executor_span_in_the_same_trace(self) -> None:
        sim = failed_after_success()
        sim.send(Restart(at=sim.now, value="1"))
        change = sim.status.changes[-1]
        assert change.cause == "restart" and "flaky#2" in change.created
        spans = derive_spans(RUN, sim.flow, sim.status)
        assert len({span.trace_id for _, span in spans}) == 1

    def test_restart_survives_a_json_round_trip(self) -> None:
        sim = failed_after_success()
        sim.send(Restart(at=sim.now + timedelta(seconds=1), value="1"))
        assert ExecutionStatus.model_validate_json(sim.status.model_dump_json()) == sim.status
        assert sim.status.frozen and sim.status.frozen[0].span.start >= T0


class TestReplay:
    def test_a_replay_starts_with_the_task_runs_before_the_chosen_one_and_runs_from_it(self) -> None:
        from flowpods.core.engine import Start, advance
        from flowpods.core.replay import replay_problem, seed
        from flowpods.core.status import RunInfo

        flow = make_flow([log("first"), {"id": "seq", "type": "Sequential", "tasks": [log("inner")]}, log("last")])
        sim = Simulation(flow)
        sim.finish("first", outputs={"n": 1})
        sim.finish("inner")
        sim.finish("last", success=False)
        original = sim.status
        (last,) = [tr for tr in original.taskRuns if tr.taskId == "last"]
        (inner,) = [tr for tr in original.taskRuns if tr.taskId == "inner"]
        assert replay_problem(flow, original, inner.id) is not None  # nested: not yet
        assert replay_problem(flow, original, "nope") == "the execution has no task run 'nope'"
        assert replay_problem(flow, original, last.id) is None
        run = RunInfo(id="ex-2", uid="uid-2", namespace="company.team", flowId="f", createdAt=T0, originalId="ex-1")
        copies = seed(flow, original, last.id, run)
        assert [tr.taskId for tr in copies] == ["first", "seq", "inner"]
        assert all(tr.id not in {o.id for o in original.taskRuns} for tr in copies)
        decision = advance(flow, run, None, [Start(at=T0, seed=copies)], T0)
        assert [a.work.taskId for a in decision.actions] == ["last"]  # only from the chosen task on
        assert decision.actions[0].work.attempt == 1
        spans = derive_spans(run, flow, decision.status)
        assert [span.name for _, span in spans] == ["EXECUTOR - company.team_f"]  # the copies ran elsewhere
        assert (
            replay_problem(flow, decision.status, None)
            == "the execution is RUNNING: only an execution that ended can be replayed"
        )


def test_a_flow_with_a_waitfor_is_not_restarted_yet() -> None:
    """Its iterations re-run the same task runs (found by the executor's property test): refused, with why."""
    flow = make_flow([{"id": "w", "type": "WaitFor", "condition": "false", "tasks": [log("inner")],
                       "checkFrequency": {"maxIterations": 1}}])  # fmt: skip
    sim = Simulation(flow)
    sim.finish("inner", success=False)
    assert sim.status.state == State.FAILED
    assert (
        controls.restart_problem(flow, sim.status) == "a flow with a WaitFor cannot be restarted yet; replay it instead"
    )
    sim.send(Restart(at=sim.now, value="1"))
    assert sim.status.state == State.FAILED and sim.status.restarts == 0
