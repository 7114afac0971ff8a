"""The critical path of a run: the chain of work that decided when it ended.

Flows have no explicit dependency graph at run time (sequences, fan-outs, subflows and retries all
nest), so the path is read from the times, as Uber's CRISP reads it from a trace: start at the end of a
node, take the child that was last to finish before that point, recurse into it, then continue from
that child's start. Shortening anything off the path would not have ended the run any sooner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flowpods.core.records import SpanRecord


@dataclass(frozen=True)
class Node:
    """A span of work: an execution, a task run or an attempt, with the work nested in it."""

    key: str
    start: datetime
    end: datetime
    children: Sequence[Node] = field(default_factory=tuple)


def critical_path(root: Node) -> list[str]:
    """The keys on the critical path, outermost first then in time order, `root` included."""
    path: list[str] = []
    _walk(root, root.end, path)
    return path


def _walk(node: Node, until: datetime, path: list[str]) -> None:
    path.append(node.key)
    cursor = min(node.end, until)
    chain: list[Node] = []
    remaining = [child for child in node.children if child.start <= cursor]
    while remaining:
        # the child whose end came last before the cursor (overlaps are cut at the cursor)
        last = max(remaining, key=lambda c: (min(c.end, cursor), c.end - c.start, c.key))
        chain.append(last)
        cursor = last.start
        remaining = [c for c in remaining if c is not last and c.start < cursor]
    for child in reversed(chain):
        _walk(child, min(child.end, until), path)


def critical_spans(spans: Sequence[SpanRecord]) -> list[str]:
    """The span ids on the critical path of each trace's execution: RUN, task-run and attempt spans only (the
    executor's decision spans and the work inside a pod are not steps a flow's author can move)."""
    derived = [s for s in spans if s.service is None]  # the worker's own spans carry the task run's id too
    steps = [s for s in derived if s.name.startswith("RUN ") or "flowpods.taskrun_id" in s.attributes]
    ids = {s.span_id for s in steps}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in steps:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else None, []).append(span)

    def node(span: SpanRecord) -> Node:
        return Node(span.span_id, span.start, span.end, tuple(node(c) for c in children.get(span.span_id, [])))

    path: list[str] = []
    for root in children.get(None, []):
        path.extend(critical_path(node(root)))
    return path
