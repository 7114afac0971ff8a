"""Kestra's WorkingDirectory in the pure core: the model's rules, the pod's plan, the steps rendered with
the outputs of the steps before them, the pod's reports turned into task runs, and their spans."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowpods.core import ids
from flowpods.core.engine import AttemptFinished, RunTask, advance
from flowpods.core.executor import StepReported, pending_actions
from flowpods.core.model import FlowError
from flowpods.core.spans import derive_spans
from flowpods.core.status import State
from flowpods.core.templating import RenderError
from flowpods.core.workdir import context_from_json, inside_workdirs, render_step, secret_names, workdirs
from tests.core.simulation import RUN, T0, Simulation, make_flow

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def workdir(*tasks: dict, **extra: object) -> dict:
    return {"id": "dir", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": list(tasks), **extra}


def shell(task_id: str, *commands: str, **extra: object) -> dict:
    return {"id": task_id, "type": SHELL, "commands": list(commands) or ["true"], **extra}


def problems(document: dict) -> str:
    with pytest.raises(FlowError) as caught:
        make_flow([document])
    return "; ".join(caught.value.problems)


class Pod:
    """Plays a WorkingDirectory's pod: reports its steps as the operator reads them from the containers."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        (self.action,) = [a for a in sim.outstanding.values() if a.steps is not None]
        assert self.action.steps is not None
        self.steps = self.action.steps

    def report(self, index: int, success: bool | None = True, outputs: dict | None = None, **extra: object) -> None:
        at = self.sim.now + timedelta(seconds=1)
        finished = None
        if success is not None:
            finished = AttemptFinished(at=at, taskRunId=self.action.work.taskRunId, attempt=1, success=success,
                                       outputs=outputs or {}, exitCode=0 if success else 1, **extra)  # fmt: skip
        self.sim.send(StepReported(at=at, taskRunId=self.action.work.taskRunId, attempt=self.action.work.attempt,
                                   step=index, startedAt=at, pod="ex-1-pod", finished=finished))  # fmt: skip

    def end(self, success: bool = True, reason: str | None = None) -> None:
        self.sim.send(AttemptFinished(at=self.sim.now + timedelta(seconds=1), taskRunId=self.action.work.taskRunId,
                                      attempt=self.action.work.attempt, success=success, reason=reason))  # fmt: skip


class TestTheModel:
    def test_a_working_directory_of_worker_tasks_and_local_files_is_accepted(self):
        flow = make_flow([workdir(
            {"id": "files", "type": "io.kestra.plugin.core.storage.LocalFiles", "inputs": {"a/b.txt": "x"}},
            shell("use", "cat a/b.txt"), shell("off", disabled=True),
        )])  # fmt: skip
        assert workdirs(flow) == {"dir"} and inside_workdirs(flow) == {"files", "use", "off"}

    @pytest.mark.parametrize(
        ("document", "fragment"),
        [
            (workdir({"id": "s", "type": "Sequential", "tasks": [shell("x")]}),
             "task 's': a WorkingDirectory runs worker tasks only, not io.kestra.plugin.core.flow.Sequential"),
            (workdir(shell("img", containerImage="alpine:3")),
             "task 'img': field 'containerImage': not supported inside a WorkingDirectory"),
            (workdir(shell("r", retry={"maxAttempts": 2})),
             "task 'r': field 'retry': not yet supported inside a WorkingDirectory"),
            (workdir(shell("c", runIf="{{ true }}")), "task 'c': field 'runIf': not yet supported"),
            (workdir(shell("x"), outputFiles=["*.csv"]), "field 'outputFiles': needs file storage, not available yet"),
            (workdir(shell("x"), cache={"patterns": ["*"]}), "field 'cache': needs file storage"),
            (workdir(shell("x"), namespaceFiles={"enabled": True}), "field 'namespaceFiles': namespace files needs"),
            (workdir({"id": "lf", "type": "io.kestra.plugin.core.storage.LocalFiles", "outputs": ["out/*"]}),
             "task 'lf' (io.kestra.plugin.core.storage.LocalFiles): field 'outputs': needs file storage"),
            (workdir({"id": "lf", "type": "io.kestra.plugin.core.storage.LocalFiles", "inputs": {"../x": "y"}}),
             "inputs name '../x' must be a relative path inside the working directory"),
        ],
    )  # fmt: skip
    def test_what_one_pod_cannot_run_is_refused_with_the_reason(self, document, fragment):
        assert fragment in problems(document)

    def test_the_flow_retry_does_not_apply_inside(self):
        flow = make_flow([workdir(shell("inside")), shell("outside")], retry={"maxAttempts": 3})
        assert flow.retry_of(flow.task("inside")) is None
        assert flow.retry_of(flow.task("outside")) is not None


class TestThePodsPlan:
    def test_one_run_task_carries_every_enabled_step_unrendered_with_its_context(self):
        flow = make_flow([workdir(shell("a", "echo {{ inputs.who }}"), shell("off", disabled=True),
                                  shell("b", "echo {{ outputs.a.vars.x }}"),
                                  inputFiles={"seed.txt": "for {{ inputs.who }}"})],
                         inputs=[{"id": "who", "type": "STRING"}])  # fmt: skip
        sim = Simulation(flow, inputs={"who": "ada"})
        (action,) = sim.outstanding.values()
        assert isinstance(action, RunTask) and action.work.taskId == "dir" and action.steps is not None
        assert [s.work.taskId for s in action.steps] == ["a", "b"]
        assert action.steps[0].work.task["commands"] == ["echo {{ inputs.who }}"]  # rendered in the pod
        assert action.steps[0].inputFiles == {"seed.txt": "for ada"} and action.steps[1].inputFiles == {}
        (dir_run,) = sim.taskruns("dir")
        b_id = ids.taskrun_id(RUN, "b", dir_run.id, None)
        assert action.steps[1].work.taskRunId == b_id
        assert action.steps[1].traceparent == ids.traceparent_of(RUN, ids.attempt_span_id(RUN, b_id, 1))
        assert action.traceparent == ids.traceparent_of(RUN, ids.taskrun_span_id(RUN, dir_run.id))
        assert sim.taskruns("a") == []  # a step's task run exists once the pod reports it

    def test_a_step_renders_with_the_outputs_of_the_steps_before_it_and_dates_stay_dates(self):
        flow = make_flow([workdir(shell("a"), shell("b", "echo {{ outputs.a.vars.x }} {{ execution.startDate }}"))])
        (action,) = Simulation(flow).outstanding.values()
        assert action.steps is not None
        second = action.steps[1]
        item = render_step(second, {"a": {"exitCode": 0, "vars": {"x": "from a"}}})
        assert item.task["commands"] == [f"echo from a {T0.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"]
        assert item.task["id"] == "b" and item.task["type"] == SHELL
        with pytest.raises(RenderError, match="undefined variable"):
            render_step(second, {})
        assert context_from_json(second.context)["execution"]["startDate"] == T0
        worker_taskrun = context_from_json(second.context)["workerTaskrun"]  # Kestra's: the directory's task run
        assert worker_taskrun["id"] == action.work.taskRunId and worker_taskrun["startDate"] == T0

    def test_the_pod_is_given_the_secrets_its_steps_may_read(self):
        flow = make_flow([workdir(shell("a", "use {{ secret('DB_PASSWORD') }} {{ secret(\"API.KEY\") }}"))])
        (action,) = Simulation(flow).outstanding.values()
        assert action.steps is not None and secret_names(action.steps[0]) == ["API.KEY", "DB_PASSWORD"]

    def test_an_unrenderable_input_file_fails_the_directory_without_a_pod(self):
        sim = Simulation(make_flow([workdir(shell("a"), inputFiles={"x": "{{ nope }}"})]))
        assert sim.status.state == State.FAILED and not sim.outstanding
        assert "inputFiles: cannot render" in (sim.taskruns("dir")[0].error or "")


class TestThePodsReports:
    def test_steps_become_task_runs_and_the_directory_succeeds_once_the_pod_ended(self):
        after = {"id": "after", "type": "Return", "format": "{{ outputs.b.vars.seen }}"}
        sim = Simulation(make_flow([workdir(shell("a"), shell("b")), after]))
        pod = Pod(sim)
        pod.report(0, success=None)
        (a,) = sim.taskruns("a")
        assert a.state == State.RUNNING and a.attempts[0].pod == "ex-1-pod"
        pod.report(0, outputs={"exitCode": 0, "vars": {}})
        pod.report(1, outputs={"exitCode": 0, "vars": {"seen": "yes"}})
        assert sim.taskruns("dir")[0].state == State.RUNNING  # until the pod itself ended
        pod.end()
        assert [tr.state for tr in sim.taskruns("dir") + sim.taskruns("a") + sim.taskruns("b")] == [State.SUCCESS] * 3
        sim.finish("after", outputs={"value": "yes"})
        assert sim.status.state == State.SUCCESS
        assert [a.work.taskId for a in sim.actions if isinstance(a, RunTask)] == ["dir", "after"]  # one pod for two

    def test_a_failing_step_fails_the_directory_its_errors_run_and_later_steps_never_exist(self):
        flow = make_flow([workdir(shell("ok", allowFailure=True), shell("bad"), shell("never"),
                                  errors=[{"id": "handler", "type": "Log", "message": "x"}])])  # fmt: skip
        sim = Simulation(flow)
        pod = Pod(sim)
        pod.report(0, success=False, reason="exit 2")
        assert sim.taskruns("ok")[0].state == State.WARNING  # allowFailure: the next step runs
        pod.report(1, success=False, reason="Command failed with exit code 3")
        pod.end(success=False, reason="the pod failed")
        assert sim.taskruns("bad")[0].state == State.FAILED and sim.taskruns("never") == []
        assert "handler" in sim.running()
        sim.finish("handler")
        (directory,) = sim.taskruns("dir")
        assert directory.state == State.FAILED and directory.error == (
            "task 'bad' failed: Command failed with exit code 3"
        )
        assert sim.status.state == State.FAILED

    def test_a_pod_that_ended_before_reporting_fails_the_step_that_was_due_with_the_pods_reason(self):
        sim = Simulation(make_flow([workdir(shell("a"), shell("b"))]))
        pod = Pod(sim)
        pod.report(0)
        pod.end(success=False, reason="pod deleted before it finished")
        (b,) = sim.taskruns("b")
        assert b.state == State.FAILED and b.attempts[0].reason == "pod deleted before it finished"
        assert sim.status.state == State.FAILED

    def test_reports_seen_again_change_nothing(self):
        sim = Simulation(make_flow([workdir(shell("a"), shell("b"))]))
        pod = Pod(sim)
        pod.report(0)
        before = sim.status.model_dump()
        decision = advance(sim.flow, sim.run, sim.status, [StepReported(
            at=sim.now, taskRunId=pod.action.work.taskRunId, attempt=1, step=0, startedAt=sim.now,
            finished=AttemptFinished(at=sim.now, taskRunId="x", attempt=1, success=False),
        )], sim.now + timedelta(seconds=5))  # fmt: skip
        assert not decision.changed and decision.status.model_dump() == before

    def test_only_the_directorys_pod_is_made_again_after_a_restart(self):
        sim = Simulation(make_flow([workdir(shell("a"), shell("b"))]))
        Pod(sim).report(0, success=None)
        actions = pending_actions(sim.flow, sim.run, sim.status, sim.now)
        assert [(a.work.taskId, len(a.steps or [])) for a in actions if isinstance(a, RunTask)] == [("dir", 2)]

    def test_a_kill_stops_the_pod(self):
        from flowpods.core.engine import Kill, StopTask

        sim = Simulation(make_flow([workdir(shell("a"), shell("b"))]))
        pod = Pod(sim)
        pod.report(0, success=None)
        sim.send(Kill(at=sim.now))
        stops = {(a.taskRunId, a.attempt) for a in sim.actions if isinstance(a, StopTask)}
        assert (pod.action.work.taskRunId, 1) in stops
        assert sim.status.state == State.KILLED and sim.taskruns("a")[0].state == State.KILLED


def test_each_step_has_its_taskrun_span_under_the_directory_with_its_worker_span_handed_back():
    from flowpods.core.records import SpanRecord

    sim = Simulation(make_flow([workdir(shell("a"), shell("b"))]))
    pod = Pod(sim)
    worker = SpanRecord(name=f"WORKER - {SHELL}", trace_id=ids.trace_id(RUN), span_id="ab" * 8,
                        parent_span_id=ids.parse_traceparent(pod.steps[0].traceparent).span_id,  # type: ignore[union-attr]
                        start=sim.now, end=sim.now)  # fmt: skip
    pod.report(0, spans=[worker])
    pod.report(1)
    pod.end()
    spans = {record.name: record for _, record in derive_spans(sim.run, sim.flow, sim.status)}
    directory = spans["EXECUTOR - io.kestra.plugin.core.flow.WorkingDirectory"]
    assert spans["TASKRUN a"].parent_span_id == directory.span_id
    assert spans["TASKRUN b"].parent_span_id == directory.span_id
    assert spans[f"WORKER - {SHELL}"].parent_span_id == spans["TASKRUN a"].span_id
    assert spans["TASKRUN a"].attributes["k8s.pod.name"] == "ex-1-pod"
    assert "TASKRUN dir" not in spans  # the pod is the directory's, seen through its steps
