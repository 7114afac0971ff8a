"""A worker's result read back into the executor's AttemptFinished: one reading for pods and local processes.

A worker writes a TaskResult as JSON (the termination message of its pod, or a file locally); its
adapter adds what only it saw (a deadline, an OOM kill, a timeout) and the exit code.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from flowpods.core.executor.messages import AttemptFinished
from flowpods.core.records import TaskResult


def parse_termination_message(text: str | None, exit_code: int | None) -> TaskResult:
    """Read back what a worker reported; anything unreadable becomes an error naming the exit code."""
    code = "unknown" if exit_code is None else str(exit_code)
    if not text or not text.strip():
        if exit_code == 0:
            return TaskResult(error="the worker exited with code 0 but reported no result")
        return TaskResult(error=f"the worker exited with code {code} without reporting a result")
    try:
        result = TaskResult.model_validate_json(text)
    except ValidationError:
        return TaskResult(error=f"the worker exited with code {code} and reported no valid result: {text[:200]!r}")
    if exit_code not in (0, None) and result.error is None:
        return TaskResult(outputs=result.outputs, error=f"the worker exited with code {code}")
    return result


def attempt_finished(
    taskrun_id: str,
    attempt: int,
    result: TaskResult,
    exit_code: int | None,
    at: datetime,
    started_at: datetime | None,
    *,
    exited: bool = True,
    failure: str | None = None,
    detail: str | None = None,
    timed_out: bool = False,
    pod: str | None = None,
    node: str | None = None,
    scheduled_at: datetime | None = None,
) -> AttemptFinished:
    """The attempt succeeded when it exited normally with code 0, reported no error and nothing else failed it.

    A failure says, first found: what the adapter saw end it (`failure`: deadline, OOM, timeout), the
    worker's own error, the adapter's `detail` (a pod's status reason), the exit code.
    """
    success = exited and exit_code == 0 and result.error is None and failure is None
    reason = None if success else (failure or result.error or detail or f"exit code {exit_code}")
    return AttemptFinished(
        at=max(at, started_at) if started_at else at,
        taskRunId=taskrun_id,
        attempt=attempt,
        success=success,
        outputs=result.outputs if success else {},
        reason=reason,
        exitCode=exit_code,
        startedAt=started_at,
        timedOut=timed_out or (reason or "").lower().startswith("timeout"),
        pod=pod,
        node=node,
        scheduledAt=scheduled_at,
        spans=result.spans,
    )
