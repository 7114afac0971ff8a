"""Compaction of an execution's status: what is kept of the task runs and changes whose spans are exported.

The status is the whole state of an execution and lives in one etcd object (1.5 MB at most, spec included).
Kept in full it grows by about 650 bytes per task run and 250 per change, so a ForEach over a few thousand
values cannot finish. Once the export watermark (`status.exported`) is past every change of a task run, its
spans are never derived again (`export.plan` only derives above the watermark), so only what the executor,
`kubectl get`, the API and the CLI still read has to stay:

- a task run that ended: its id, task id, parent, value, state and number of attempts (the API's columns), its
  WaitFor iteration, error (the reason a flowable or the execution quotes), Subflow child (`resources.is_parent_of`)
  and its outputs when a template of the flow may read them (`referenced_outputs`); stored as one short list
  in its place in `taskRuns`, neighbours of one task and parent grouped (`status.COMPACT_KEY`), so the order
  the executor reads them in is unchanged;
- a change: nothing but counters in `status.folded` (its number, so the next change is numbered on).

Compaction starts once the status holds more than `FULL_TASKRUNS` full task runs or `FULL_CHANGES`
changes, so small executions keep every detail on their status. It is a pure function of the stored status
and the flow (no clock: what is compacted depends on the watermark only), applied by the shell right before
it commits a status; the watermark in that status is the stored, confirmed one, so a crash at any point
leaves either the old status or the compacted one, and in both the spans above the watermark derive as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flowpods.core.model import Flow
from flowpods.core.status import ExecutionStatus, Folded, TaskRun, stored_task_runs

FULL_TASKRUNS = 100
"""Full task runs a status may hold before compaction starts (about 65 KB of them)."""
FULL_CHANGES = 200
"""Changes a status may hold before compaction starts (about 50 KB of them)."""

# `outputs` and what follows it: `.id`, `['id']` / `["id"]`, or anything else (the whole map is read)
_OUTPUTS = re.compile(r"""\boutputs\b\s*(?:\.\s*([A-Za-z_][\w]*)|\[\s*(?:'([^']*)'|"([^"]*)")\s*\])?""")

ALL = None
"""`referenced_outputs` when a template reads the outputs map as a whole (or by a computed key)."""


def referenced_outputs(flow: Flow) -> frozenset[str] | None:
    """The task ids whose outputs a template of the flow may read, or None (`ALL`) when one may read any.

    Conservative: every `outputs.<id>`, `outputs['<id>']` in any text of the flow holding `{{` or `{%` counts
    (a match inside a string literal too); `outputs` followed by anything else means all of them."""
    found: set[str] = set()
    for text in _templates(flow.model_dump(mode="json", by_alias=True, exclude_none=True)):
        for match in _OUTPUTS.finditer(text):
            name = match.group(1) or match.group(2) or match.group(3)
            if name is None:
                return ALL
            found.add(name)
    return frozenset(found)


def _templates(document: Any) -> Iterator[str]:
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and ("{{" in value or "{%" in value):
            yield value


def settled(tr: TaskRun, exported: int) -> bool:
    """A task run that ended and whose every span (its own, its attempts') belongs to an exported change."""
    return (
        tr.state.terminal
        and tr.closedIn is not None
        and tr.closedIn <= exported
        and all(a.closedIn is not None and a.closedIn <= exported for a in tr.attempts)
    )


def compacted(tr: TaskRun, outputs: frozenset[str] | None) -> TaskRun:
    """What is kept of a settled task run (see the module's docstring)."""
    keep = outputs is ALL or tr.taskId in outputs
    return TaskRun(id=tr.id, taskId=tr.taskId, parentId=tr.parentId, value=tr.value, state=tr.state,
                   iteration=tr.iteration, error=tr.error, child=tr.child, outputs=tr.outputs if keep else {},
                   compact=True, attemptCount=tr.attempt_count)  # fmt: skip


def due(status: ExecutionStatus, full_taskruns: int = FULL_TASKRUNS, full_changes: int = FULL_CHANGES) -> bool:
    """Whether the status is big enough to be compacted."""
    if len(status.changes) > full_changes:
        return True
    full = 0
    for tr in status.taskRuns:
        full += not tr.compact
        if full > full_taskruns:
            return True
    return False


def compact(
    flow: Flow | None, status: ExecutionStatus, full_taskruns: int = FULL_TASKRUNS, full_changes: int = FULL_CHANGES
) -> ExecutionStatus:
    """The status with its settled task runs compacted and its exported changes folded into `status.folded`
    (the same status when it is small, or nothing is settled). Never changes what the executor decides nor
    which spans are derived above the watermark (tests/core/test_compaction.py)."""
    if flow is None or not due(status, full_taskruns, full_changes):
        return status
    exported = status.exported
    outputs = referenced_outputs(flow)
    runs, newly = [], 0
    for tr in status.taskRuns:
        if not tr.compact and settled(tr, exported):
            runs.append(compacted(tr, outputs))
            newly += 1
        else:
            runs.append(tr)
    gone = [change for change in status.changes if change.n <= exported]
    if not newly and not gone:
        return status
    before = status.folded
    folded = Folded(
        changes=before.changes + len(gone),
        lastChange=max([before.lastChange, *(change.n for change in gone)]),
        created=before.created + sum(1 for change in gone if change.created),
        taskRuns=before.taskRuns + newly,
    )
    kept = status.changes[len(gone) :] if gone else status.changes
    return status.model_copy(update={"taskRuns": runs, "changes": kept, "folded": folded})


def task_run_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The task runs of a stored status (raw JSON, as the API and kubectl read it), compacted ones expanded:
    each with its id, taskId, value, state, attempts (a count), error and child; read leniently, as stored."""
    rows = []
    for entry in stored_task_runs(status.get("taskRuns")):
        if not isinstance(entry, dict):
            continue
        attempts = entry.get("attemptCount") if entry.get("compact") else len(entry.get("attempts") or [])
        rows.append({"id": entry.get("id"), "taskId": entry.get("taskId"), "value": entry.get("value"),
                     "state": entry.get("state"), "attempts": attempts, "error": entry.get("error"),
                     "child": entry.get("child")})  # fmt: skip
    return rows
