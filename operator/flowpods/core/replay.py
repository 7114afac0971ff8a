"""Kestra's replay: a new execution of the same flow that starts from a chosen task run of an ended one.

The new execution gets copies of the original's task runs before the chosen one (so their outputs are
there for later templates) and runs the flow from the chosen task on. The copies are renamed for the new
execution (task-run ids derive from its uid) and carry no span: they did not run in it. Only a top-level
task run can be chosen (Kestra also replays from a nested one; not yet here).
"""

from __future__ import annotations

from flowpods.core import ids
from flowpods.core.model import Flow
from flowpods.core.status import ExecutionStatus, RunInfo, TaskRun


def replay_problem(flow: Flow, original: ExecutionStatus, taskrun_id: str | None) -> str | None:
    """Why the execution cannot be replayed from this task run (None: it can)."""
    if not original.state.terminal:
        return f"the execution is {original.state.value}: only an execution that ended can be replayed"
    if taskrun_id is None:
        return None
    chosen = original.taskrun(taskrun_id)
    if chosen is None:
        return f"the execution has no task run '{taskrun_id}'"
    if chosen.parentId is not None:
        return f"task run '{taskrun_id}' is nested: replay from a nested task run is not supported yet"
    if chosen.taskId not in {task.id for task in flow.tasks}:
        return f"task run '{taskrun_id}' is not one of the flow's tasks (an errors or finally task)"
    return None


def seed(flow: Flow, original: ExecutionStatus, taskrun_id: str | None, run: RunInfo) -> list[TaskRun]:
    """The original's task runs before the chosen one (and everything nested in them), renamed for `run`."""
    if taskrun_id is None or (chosen := original.taskrun(taskrun_id)) is None:
        return []
    order = [task.id for task in flow.tasks]
    before = set(order[: order.index(chosen.taskId)]) if chosen.taskId in order else set()
    copied: dict[str, TaskRun] = {}
    for tr in original.taskRuns:  # parents come before their children
        if tr.parentId is None and tr.taskId not in before:
            continue
        parent = copied.get(tr.parentId or "")
        if tr.parentId is not None and parent is None:
            continue
        if not tr.state.terminal or tr.state.failed:
            continue  # a copy is what already ended well: the rest runs again
        new_id = ids.taskrun_id(run, tr.taskId, parent.id if parent else None, tr.value, tr.iteration)
        copy = tr.model_copy(deep=True, update={"id": new_id, "parentId": parent.id if parent else None,
                                                "closedIn": None})  # fmt: skip
        for attempt in copy.attempts:
            attempt.closedIn, attempt.spans = None, []
        copied[tr.id] = copy
    return list(copied.values())
