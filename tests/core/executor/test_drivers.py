"""What runs next (flowpods.core.executor.drivers): one driver per task kind, one fan-out for all flowables."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from flowpods.core.executor import drivers
from flowpods.core.executor.step import Step
from flowpods.core.model import TaskBase
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0, Simulation, log, make_flow


def started(sim: Simulation) -> list[str]:
    return sorted(
        f"{a.work.taskId}[{a.work.value}]" if a.work.value else a.work.taskId for a in sim.outstanding.values()
    )


class TestDriverTable:
    def test_a_flowable_without_a_driver_fails_loudly(self) -> None:
        class Loop(TaskBase):
            type: Literal["Loop"] = "Loop"
            runs_in_worker: ClassVar[bool] = False

        step = Step(make_flow([log("a")]), RUN, ExecutionStatus(), T0)
        task = Loop(id="loop")
        tr = step.create_taskrun(task, None, None)
        with pytest.raises(TypeError, match="no driver for Loop"):
            drivers.drive_task(step, task, tr)


class TestFanOut:
    """Parallel and ForEach are one fan-out: the same limit, the same stop on failure, the same join."""

    def parallel(self, **settings: Any) -> Simulation:
        return Simulation(make_flow([{"id": "p", "type": "Parallel", "tasks": [log("a"), log("b"), log("c")],
                                      **settings}]))  # fmt: skip

    def foreach(self, **settings: Any) -> Simulation:
        return Simulation(make_flow([{"id": "e", "type": "ForEach", "values": ["a", "b", "c"],
                                      "tasks": [log("t")], **settings}]))  # fmt: skip

    def test_a_limit_of_one_starts_one_branch_at_a_time_in_both(self) -> None:
        par, each = self.parallel(concurrency=1), self.foreach(concurrencyLimit=1)
        assert started(par) == ["a"] and started(each) == ["t[a]"]
        par.finish("a")
        each.finish("t")
        assert started(par) == ["b"] and started(each) == ["t[b]"]

    def test_no_limit_starts_every_branch_at_once_in_both(self) -> None:
        assert started(self.parallel()) == ["a", "b", "c"]
        assert started(self.foreach(concurrencyLimit=0)) == ["t[a]", "t[b]", "t[c]"]

    def test_a_failed_branch_stops_new_branches_and_fails_the_fan_out_in_both(self) -> None:
        par, each = self.parallel(concurrency=1), self.foreach(concurrencyLimit=1)
        par.finish("a", success=False)
        each.finish("t", success=False)
        for sim, task_id in ((par, "p"), (each, "e")):
            assert sim.outstanding == {}
            assert sim.taskruns(task_id)[0].state == State.FAILED
            assert sim.status.state == State.FAILED
        assert [tr.taskId for tr in par.status.taskRuns] == ["p", "a"]
        assert [tr.value for tr in each.status.taskRuns] == [None, "a"]

    def test_a_branch_allowed_to_fail_makes_the_fan_out_warn(self) -> None:
        allowed = Simulation(make_flow([{"id": "p", "type": "Parallel",
                                         "tasks": [log("a"), log("b", allowFailure=True)]}]))  # fmt: skip
        allowed.finish("a")
        allowed.finish("b", success=False)
        assert allowed.taskruns("p")[0].state == State.WARNING and allowed.status.state == State.WARNING


class TestOneWalk:
    def test_executor_side_tasks_that_end_at_once_settle_in_the_same_step(self) -> None:
        flow = make_flow([
            {"id": "s", "type": "Sequential", "tasks": [
                {"id": "child", "type": "Subflow", "namespace": "n", "flowId": "x", "wait": False}]},
            {"id": "after", "type": "Subflow", "namespace": "n", "flowId": "y", "wait": False},
        ])  # fmt: skip
        sim = Simulation(flow)
        assert sim.status.state == State.SUCCESS
        assert len(sim.status.changes) == 1
