"""Kestra's errorLogs() in an `errors` branch: the failed task runs' errors, with Kestra's field names (flowpods
keeps no task logs in the executor, so each failed task run's error is its one ERROR entry)."""

from __future__ import annotations

from tests.core.simulation import Simulation, log, make_flow

LISTING = "{% for entry in errorLogs() %}[{{ entry.taskId }} {{ entry.level }}: {{ entry.message }}]{% endfor %}"


def test_an_errors_branch_lists_the_failed_task_runs_errors() -> None:
    flow = make_flow([log("first"), log("second")], errors=[log("report", message=LISTING)])
    sim = Simulation(flow)
    sim.finish("first")
    sim.finish("second", success=False, reason="the disk is full")
    (report,) = [a for a in sim.outstanding.values() if a.work.taskId == "report"]
    assert report.work.task["message"] == "[second ERROR: the disk is full]"


def test_no_failure_no_entry() -> None:
    sim = Simulation(make_flow([log("only", message="{{ errorLogs() | length }} {{ errorLogs() }}")]))
    (only,) = sim.outstanding.values()
    assert only.work.task["message"] == "0 []"
