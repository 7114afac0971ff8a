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
