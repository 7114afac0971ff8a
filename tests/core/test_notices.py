"""What an execution's Events say (flowpods.core.notices) and how durations read (flowpods.core.clock)."""

from __future__ import annotations

from datetime import timedelta

from flowpods.core import notices
from flowpods.core.clock import format_duration
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0


def status(*states: State, error: str | None = None, seconds: float = 2.5) -> ExecutionStatus:
    result = ExecutionStatus(error=error)
    for i, state in enumerate(states):
        result.set_state(state, T0 + timedelta(seconds=seconds * i))
    return result


class TestFormatDuration:
    def test_durations_read_at_the_scale_they_have(self) -> None:
        assert format_duration(0.25) == "250ms"
        assert format_duration(12.345) == "12.35s"
        assert format_duration(187.5) == "3m07.5s"
        assert format_duration(2 * 3600 + 5 * 60 + 7) == "2h05m07s"


class TestStarted:
    def test_a_started_execution_names_its_flow_and_revision(self) -> None:
        run = RUN.model_copy(update={"flowRevision": 3})
        assert notices.started(status(State.CREATED, State.RUNNING), run, "f") == (
            "Normal", "Started", "running flow company.team.f rev 3")  # fmt: skip

    def test_a_queued_execution_says_it_waits_for_a_place(self) -> None:
        kind, reason, message = notices.started(status(State.CREATED, State.QUEUED), RUN, "f")
        assert (kind, reason) == ("Normal", "Queued") and "concurrency limit" in message

    def test_an_execution_that_could_not_start_warns_with_the_reason(self) -> None:
        refused = status(State.CREATED, State.CANCELLED, error="too many")
        assert notices.started(refused, RUN, "f") == ("Warning", "Cancelled", "too many")


class TestEnded:
    def test_success_is_normal_and_says_how_long_it_took(self) -> None:
        assert notices.ended("ex-1", status(State.RUNNING, State.SUCCESS)) == (
            "Normal", "Success", "execution ex-1 ended SUCCESS in 2.50s")  # fmt: skip

    def test_a_failure_warns_and_says_why(self) -> None:
        assert notices.ended("ex-1", status(State.RUNNING, State.FAILED, error="task 'a' failed: boom")) == (
            "Warning", "Failed", "execution ex-1 ended FAILED in 2.50s: task 'a' failed: boom")  # fmt: skip
