"""Kestra's rules, one test class each (flowpods.core.executor.rules)."""

from __future__ import annotations

from datetime import timedelta

from flowpods.core.executor import rules
from flowpods.core.model import Retry, Subflow, TaskBase, parse_flow
from flowpods.core.status import State
from tests.core.simulation import T0, log, make_flow

S, W, F, K, C, R = State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED, State.RUNNING


def task(**settings: object) -> TaskBase:
    return make_flow([log("t", **settings)]).task("t")


def subflow(**settings: object) -> Subflow:
    flow = parse_flow({"id": "f", "namespace": "n", "tasks": [
        {"id": "s", "type": "Subflow", "namespace": "n", "flowId": "child", **settings}]})  # fmt: skip
    sub = flow.task("s")
    assert isinstance(sub, Subflow)
    return sub


class TestFailureReason:
    def test_the_observed_reason_is_kept(self) -> None:
        assert rules.failure_reason("OOMKilled", 137, timed_out=False) == "OOMKilled"

    def test_without_a_reason_the_exit_code_says_why(self) -> None:
        assert rules.failure_reason(None, 3, timed_out=False) == "exit code 3"
        assert rules.failure_reason(None, None, timed_out=False) == "failed"

    def test_a_timed_out_attempt_says_timeout_once(self) -> None:
        assert rules.failure_reason("exit code 124", 124, timed_out=True) == "timeout: exit code 124"
        assert rules.failure_reason("Timeout after 1s", 124, timed_out=True) == "Timeout after 1s"


class TestRetryDue:
    retry = Retry(maxAttempts=3, maxDuration=timedelta(minutes=1))

    def test_a_failed_attempt_runs_again_while_attempts_remain(self) -> None:
        assert rules.retry_due(self.retry, 1, T0, T0 + timedelta(seconds=5), running=True)
        assert rules.retry_due(self.retry, 2, T0, T0 + timedelta(seconds=5), running=True)
        assert not rules.retry_due(self.retry, 3, T0, T0 + timedelta(seconds=5), running=True)

    def test_no_retry_once_max_duration_has_passed_since_the_first_start(self) -> None:
        assert not rules.retry_due(self.retry, 1, T0, T0 + timedelta(minutes=1), running=True)

    def test_no_retry_when_the_execution_no_longer_runs(self) -> None:
        assert not rules.retry_due(self.retry, 1, T0, T0 + timedelta(seconds=5), running=False)


class TestSuccessState:
    def test_success_on_the_first_attempt_is_success(self) -> None:
        assert rules.success_state(task(retry={"maxAttempts": 3, "warningOnRetry": True}), 1) == S

    def test_warning_on_retry_turns_a_later_success_into_a_warning(self) -> None:
        assert rules.success_state(task(retry={"maxAttempts": 3, "warningOnRetry": True}), 2) == W

    def test_without_warning_on_retry_a_later_success_is_success(self) -> None:
        assert rules.success_state(task(retry={"maxAttempts": 3}), 2) == S


class TestFailedState:
    def test_a_failing_task_fails(self) -> None:
        assert rules.failed_state(task()) == F

    def test_allow_failure_turns_the_failure_into_a_warning(self) -> None:
        assert rules.failed_state(task(allowFailure=True)) == W

    def test_a_killed_task_stays_killed_even_when_allowed_to_fail(self) -> None:
        assert rules.failed_state(task(allowFailure=True), killed=True) == K


class TestTransmitsFailure:
    def test_a_failed_child_fails_the_subflow_by_default(self) -> None:
        assert rules.transmits_failure(subflow(), F) and rules.transmits_failure(subflow(), K)

    def test_transmit_failed_false_keeps_the_failure_in_the_child(self) -> None:
        assert not rules.transmits_failure(subflow(transmitFailed=False), F)

    def test_a_successful_child_never_fails_the_subflow(self) -> None:
        assert not rules.transmits_failure(subflow(), S) and not rules.transmits_failure(subflow(), W)


class TestChildState:
    def test_a_child_that_warned_makes_the_subflow_warn(self) -> None:
        assert rules.child_state(W) == W

    def test_any_other_child_ending_is_a_success_for_the_subflow(self) -> None:
        assert rules.child_state(S) == S and rules.child_state(F) == S


class TestSequence:
    def test_a_list_runs_while_one_of_its_tasks_runs(self) -> None:
        assert rules.sequence([S, R]) == R

    def test_a_list_fails_as_its_first_failure(self) -> None:
        assert rules.sequence([S, K]) == K
        assert rules.sequence([W, C]) == F

    def test_a_list_that_ended_warns_if_one_task_warned(self) -> None:
        assert rules.sequence([S, W, S]) == W
        assert rules.sequence([S, S]) == S
        assert rules.sequence([]) == S


class TestContinues:
    def test_the_next_task_waits_for_this_one_to_end(self) -> None:
        assert not rules.continues(R) and not rules.continues(State.RETRYING)

    def test_the_list_stops_at_a_failure(self) -> None:
        assert not rules.continues(F) and not rules.continues(K)

    def test_success_and_warning_let_the_list_go_on(self) -> None:
        assert rules.continues(S) and rules.continues(W)


class TestMayBranch:
    def test_without_a_limit_branches_start_while_none_failed(self) -> None:
        assert rules.may_branch([R, R, R], limit=0)
        assert not rules.may_branch([R, F], limit=0)

    def test_a_limit_caps_the_branches_running_at_once(self) -> None:
        assert not rules.may_branch([R, R], limit=2)
        assert rules.may_branch([S, R], limit=2)


class TestJoin:
    def test_a_fan_out_runs_while_a_branch_runs(self) -> None:
        assert rules.join([S, R], complete=True) == R

    def test_a_killed_branch_kills_the_fan_out_before_a_failed_one_fails_it(self) -> None:
        assert rules.join([F, K], complete=False) == K
        assert rules.join([S, F], complete=False) == F

    def test_a_fan_out_ends_only_when_every_branch_was_started_and_ended(self) -> None:
        assert rules.join([S, S], complete=False) == R
        assert rules.join([S, W], complete=True) == W
        assert rules.join([S, S], complete=True) == S


class TestErrorsDue:
    def test_errors_run_when_the_main_tasks_failed(self) -> None:
        assert rules.errors_due(F, has_errors=True) and rules.errors_due(K, has_errors=True)

    def test_errors_do_not_run_after_success_or_without_handlers(self) -> None:
        assert not rules.errors_due(W, has_errors=True) and not rules.errors_due(F, has_errors=False)


class TestOutcome:
    def test_a_main_failure_decides_the_execution_whatever_finally_did(self) -> None:
        assert rules.outcome(F, S) == F and rules.outcome(K, W) == K

    def test_a_failed_finally_fails_a_successful_execution(self) -> None:
        assert rules.outcome(S, F) == F

    def test_a_warning_in_either_part_makes_the_execution_warn(self) -> None:
        assert rules.outcome(W, S) == W and rules.outcome(S, W) == W and rules.outcome(S, S) == S
