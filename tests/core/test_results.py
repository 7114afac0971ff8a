"""A worker's result read back into AttemptFinished (flowpods.core.results), for pods and local processes alike."""

from __future__ import annotations

from datetime import timedelta

from flowpods.core.records import TaskResult
from flowpods.core.results import attempt_finished
from tests.core.simulation import T0

LATER = T0 + timedelta(seconds=3)


class TestAttemptFinished:
    def test_exit_code_zero_and_no_error_is_a_success_with_outputs(self) -> None:
        event = attempt_finished("tr", 1, TaskResult(outputs={"v": 1}), 0, LATER, T0)
        assert event.success and event.outputs == {"v": 1} and event.reason is None and event.startedAt == T0

    def test_the_worker_error_is_the_reason_and_outputs_are_dropped(self) -> None:
        event = attempt_finished("tr", 1, TaskResult(outputs={"v": 1}, error="boom"), 1, LATER, T0)
        assert not event.success and event.reason == "boom" and event.outputs == {}

    def test_what_the_adapter_saw_comes_before_the_worker_error(self) -> None:
        event = attempt_finished("tr", 1, TaskResult(error="boom"), 137, LATER, T0, failure="OOMKilled: out of memory")
        assert event.reason == "OOMKilled: out of memory"

    def test_a_process_that_did_not_exit_normally_fails_even_with_code_zero(self) -> None:
        event = attempt_finished("tr", 1, TaskResult(), 0, LATER, T0, exited=False, detail="Evicted: low memory")
        assert not event.success and event.reason == "Evicted: low memory"

    def test_without_any_reason_the_exit_code_says_why(self) -> None:
        assert attempt_finished("tr", 1, TaskResult(), 3, LATER, None).reason == "exit code 3"

    def test_a_timeout_is_marked_whether_seen_or_reported(self) -> None:
        assert attempt_finished("tr", 1, TaskResult(), 137, LATER, T0, timed_out=True).timedOut
        assert attempt_finished("tr", 1, TaskResult(error="timeout after 1s"), 124, LATER, T0).timedOut

    def test_an_attempt_never_ends_before_it_started(self) -> None:
        assert attempt_finished("tr", 1, TaskResult(), 0, T0, LATER).at == LATER
