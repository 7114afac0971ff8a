"""A replayed Execution's start: the original's task runs it begins with (the decision is core.replay's)."""

from __future__ import annotations

from typing import Any

from flowpods.core.model import Flow
from flowpods.core.replay import replay_problem, seed
from flowpods.core.status import RunInfo, TaskRun
from flowpods.kube.client import Kube
from flowpods.kube.resources import ANNOTATION_REPLAY_FROM, ANNOTATION_REPLAY_OF, stored_status


def replayed(kube: Kube, execution: dict[str, Any], flow: Flow, run: RunInfo) -> list[TaskRun]:
    """The copies a replay starts with; none when the Execution is no replay, or its original is gone or
    cannot be replayed from there (it then runs from the start)."""
    annotations = execution["metadata"].get("annotations") or {}
    original_name = annotations.get(ANNOTATION_REPLAY_OF)
    if not original_name:
        return []
    original = kube.get("executions", execution["metadata"]["namespace"], original_name)
    status = stored_status(original) if original else None
    taskrun_id = annotations.get(ANNOTATION_REPLAY_FROM) or None
    if status is None or replay_problem(flow, status, taskrun_id) is not None:
        return []
    return seed(flow, status, taskrun_id, run)
