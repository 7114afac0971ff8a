"""Metrics as facts: what committed status changes measure (once each), and the gauges a view shows."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from flowpods.core import ids
from flowpods.core import metrics as m
from flowpods.core.engine import AttemptStarted, advance
from flowpods.core.executor import failed_start
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0, Simulation, log, make_flow


def by_name(measurements: list[m.Measurement], name: str) -> list[m.Measurement]:
    return [x for x in measurements if x.name == name]


def recorded(statuses: list[ExecutionStatus]) -> list[m.Measurement]:
    """What an operator records committing these statuses one after the other (the first from nothing)."""
    found: list[m.Measurement] = []
    before = None
    for status in statuses:
        found += m.committed(RUN, FLOW_RETRY, before, status)
        before = status
    return found


FLOW_RETRY = make_flow([log("hello", retry={"type": "constant", "maxAttempts": 2, "interval": "PT1S"})])


def retried_run() -> tuple[Simulation, list[ExecutionStatus]]:
    """hello fails once (after its pod started), is retried, and succeeds; every committed status is kept."""
    sim = Simulation(FLOW_RETRY)
    statuses = [sim.status]
    action = next(iter(sim.outstanding.values()))
    sim.send(AttemptStarted(at=sim.now + timedelta(seconds=2), taskRunId=action.work.taskRunId, attempt=1, pod="p1"))
    statuses.append(sim.status)
    sim.finish("hello", success=False, reason="exit code 1")
    statuses.append(sim.status)
    sim.tick_to_wake()
    statuses.append(sim.status)
    sim.finish("hello")
    statuses.append(sim.status)
    assert sim.status.state == State.SUCCESS
    return sim, statuses


class TestCommittedChanges:
    def test_a_finished_run_measures_its_pending_and_executing_time_with_its_result(self):
        sim, statuses = retried_run()
        runs = by_name(recorded(statuses), m.RUN_DURATION)
        assert sorted(
            (x.attributes["cicd.pipeline.run.state"], x.attributes["cicd.pipeline.result"]) for x in runs
        ) == [("executing", "success"), ("pending", "success")]
        running = next(t.at for t in sim.status.history if t.state == State.RUNNING)
        executing = next(x for x in runs if x.attributes["cicd.pipeline.run.state"] == "executing")
        assert executing.value == (sim.status.endDate - running).total_seconds()
        assert executing.attributes["cicd.pipeline.name"] == "f"
        assert executing.attributes["flowpods.namespace"] == "company.team"

    def test_each_attempt_of_a_retried_task_is_measured_and_the_failed_one_is_a_run_error(self):
        _, statuses = retried_run()
        found = recorded(statuses)
        attempts = by_name(found, m.TASKRUN_DURATION)
        assert sorted(x.attributes["cicd.pipeline.task.run.result"] for x in attempts) == ["failure", "success"]
        assert {x.attributes["cicd.pipeline.task.name"] for x in attempts} == {"hello"}
        assert {x.attributes["flowpods.task_type"] for x in attempts} == {"io.kestra.plugin.core.log.Log"}
        (error,) = by_name(found, m.RUN_ERRORS)
        assert error.value == 1 and error.attributes["error.type"] == "task_failed"
        created = statuses[-1].taskRuns[0].attempts[0].createdAt
        started = statuses[1].taskRuns[0].attempts[0].startedAt
        assert (started - created).total_seconds() in [x.value for x in by_name(found, m.POD_START_DELAY)]

    def test_the_first_task_delay_is_measured_by_the_change_that_created_the_first_task_run(self):
        _, statuses = retried_run()
        (delay,) = by_name(recorded(statuses), m.FIRST_TASK_DELAY)
        first = next(change for change in statuses[-1].changes if change.created)
        assert delay.value == (first.end - RUN.createdAt).total_seconds()
        assert by_name(m.committed(RUN, FLOW_RETRY, None, statuses[0]), m.FIRST_TASK_DELAY) == [delay]

    def test_every_measurement_is_recorded_once_however_the_changes_were_committed(self):
        _, statuses = retried_run()
        one_by_one = recorded(statuses)
        at_once = m.committed(RUN, FLOW_RETRY, None, statuses[-1])
        key = lambda x: (x.name, x.value, tuple(sorted(x.attributes.items())))  # noqa: E731
        assert Counter(map(key, one_by_one)) == Counter(map(key, at_once))
        assert len(one_by_one) == len(at_once) > 0

    def test_a_restarted_operator_reading_the_committed_status_records_nothing_again(self):
        _, statuses = retried_run()
        assert m.committed(RUN, FLOW_RETRY, statuses[-1], statuses[-1]) == []

    def test_exemplars_name_the_measured_span_when_traced(self):
        _, statuses = retried_run()
        found = m.committed(RUN, FLOW_RETRY, None, statuses[-1])
        trace = ids.trace_id(RUN)
        for run in by_name(found, m.RUN_DURATION):
            assert run.exemplar == (trace, ids.run_span_id(RUN))
        taskrun = statuses[-1].taskRuns[0]
        spans = {x.exemplar for x in by_name(found, m.TASKRUN_DURATION)}
        assert spans == {(trace, ids.attempt_span_id(RUN, taskrun.id, n)) for n in (1, 2)}
        untraced = m.committed(RUN, FLOW_RETRY, None, statuses[-1], traced=False)
        assert all(x.exemplar is None for x in untraced)

    def test_run_and_task_run_ids_are_attributes_only_when_asked_for(self):
        _, statuses = retried_run()
        plain = m.committed(RUN, FLOW_RETRY, None, statuses[-1])
        assert not any(k.endswith("run.id") for x in plain for k in x.attributes)
        opted = m.committed(RUN, FLOW_RETRY, None, statuses[-1], run_ids=True)
        assert {x.attributes["cicd.pipeline.run.id"] for x in by_name(opted, m.RUN_DURATION)} == {"ex-1"}
        taskrun = statuses[-1].taskRuns[0].id
        assert {x.attributes["cicd.pipeline.task.run.id"] for x in by_name(opted, m.TASKRUN_DURATION)} == {taskrun}

    def test_a_run_failed_before_any_task_is_pending_only_and_a_start_error(self):
        status = failed_start(RUN, "flow 'f' not found in namespace default", T0 + timedelta(seconds=2))
        found = m.committed(RUN, None, None, status)
        (run,) = by_name(found, m.RUN_DURATION)
        assert run.attributes["cicd.pipeline.run.state"] == "pending" and run.value == 2.0
        assert run.attributes["cicd.pipeline.result"] == "failure" and run.attributes["error.type"] == "FAILED"
        (error,) = by_name(found, m.RUN_ERRORS)
        assert error.attributes["error.type"] == "start_failed"

    def test_a_queued_run_measures_its_wait_as_pending(self):
        flow = make_flow([log("a")], concurrency={"limit": 1})
        from flowpods.core.engine import Admit, Start

        queued = advance(flow, RUN, None, [Start(at=T0, inputs={}, queued=True)], T0).status
        assert m.committed(RUN, flow, None, queued) == []
        admitted = advance(flow, RUN, queued, [Admit(at=T0 + timedelta(seconds=30))], T0 + timedelta(seconds=30))
        (delay,) = m.committed(RUN, flow, queued, admitted.status)
        assert delay.name == m.FIRST_TASK_DELAY and delay.value == 30.0


class TestErrorTypes:
    def test_reasons_fall_into_few_classes(self):
        assert m.error_type("timeout: deadline exceeded (PT1S)") == "timeout"
        assert m.error_type("OOMKilled: memory limit") == "oom_killed"
        assert m.error_type("image pull error: ErrImagePull") == "image_pull"
        assert m.error_type("pod deleted before it finished") == "pod_deleted"
        assert m.error_type("exit code 3") == "task_failed" and m.error_type(None) == "task_failed"


class TestGauges:
    def test_every_flow_in_view_has_every_state_and_counts_its_runs(self):
        found = m.runs([("a", None), ("a", State.QUEUED), ("a", State.RUNNING), ("b", State.SUCCESS)])
        active = {
            (x.attributes["cicd.pipeline.name"], x.attributes["cicd.pipeline.run.state"]): x.value
            for x in by_name(found, m.RUN_ACTIVE)
        }
        assert active == {
            ("a", "pending"): 2,
            ("a", "executing"): 1,
            ("a", "finalizing"): 0,
            ("b", "pending"): 0,
            ("b", "executing"): 0,
            ("b", "finalizing"): 0,
        }
        waiting = {
            (x.attributes["cicd.pipeline.name"], x.attributes["flowpods.state"]): x.value
            for x in by_name(found, m.WAITING)
        }
        assert waiting == {("a", "CREATED"): 1, ("a", "QUEUED"): 1, ("b", "CREATED"): 0, ("b", "QUEUED"): 0}

    def test_pods_that_hold_a_task_are_busy_workers(self):
        (count,) = m.workers(["Pending", "Running", "Succeeded", "Failed", None])
        assert count.value == 3 and count.attributes == {"cicd.worker.state": "busy"}


class TestOperatorWork:
    def test_a_reconcile_that_raised_is_a_system_error(self):
        ok = m.reconciled(0.5, "ok")
        assert [x.name for x in ok] == [m.RECONCILE_DURATION]
        error = m.reconciled(0.1, "error", "ApiException")
        assert error[1].name == m.SYSTEM_ERRORS and error[1].attributes["error.type"] == "ApiException"

    def test_a_failed_export_counts_its_spans_and_a_system_error(self):
        assert [x.name for x in m.exported(4, True)] == [m.SPANS_EXPORTED]
        failed = m.exported(4, False)
        assert failed[0].attributes == {"flowpods.result": "failure"} and failed[0].value == 4
        assert failed[1].attributes["cicd.system.component"] == "span_exporter"

    def test_kubernetes_requests_by_verb_and_code(self):
        request = m.k8s_request("put", 409, 0.02)
        assert request.attributes == {"http.request.method": "PUT", "http.response.status_code": 409}


def test_every_instrument_declares_only_attributes_it_is_recorded_with():
    _, statuses = retried_run()
    found = [
        *m.committed(RUN, FLOW_RETRY, None, statuses[-1]),
        *m.runs([("a", None)]),
        *m.workers(["Running"]),
        *m.reconciled(1, "error", "X"),
        *m.exported(1, False),
        m.k8s_request("GET", 200, 0.1),
        *m.initial(),
    ]
    for x in found:
        declared = set(m.BY_NAME[x.name].attributes) | {"cicd.pipeline.run.id", "cicd.pipeline.task.run.id"}
        assert set(x.attributes) <= declared, (x.name, set(x.attributes) - declared)
