"""The trace tree a person reads at the end of a local run: where did the time go?"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from rich.text import Text
from rich.tree import Tree

from flowpods.cli.terminal import printable
from flowpods.core.clock import format_duration
from flowpods.core.records import SpanRecord

BAR_WIDTH = 24
STATE_STYLES = {"SUCCESS": "green", "WARNING": "yellow", "FAILED": "red", "KILLED": "red", "RUNNING": "cyan"}


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def slowest_task(spans: list[SpanRecord]) -> SpanRecord | None:
    """The slowest task-run attempt (its pod's whole life): the place to look first."""
    attempts = [span for span in spans if span.name.startswith("TASKRUN ")]
    return max(attempts, key=lambda span: _seconds(span.start, span.end), default=None)


def trace_tree(spans: list[SpanRecord], critical: Collection[str] = ()) -> list[Tree]:
    """One rich Tree per trace, children in start order, each line with a duration and a timeline bar; the spans
    whose ids are in `critical` are marked (the critical path, `core.critical.critical_spans`)."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda span: (span.start, span.name))
    slowest = slowest_task(spans)
    trees = []
    for root in children.get(None, []):
        origin, total = root.start, max(_seconds(root.start, root.end), 1e-6)
        tree = Tree(_label(root, origin, total, slowest, critical), guide_style="dim")

        _grow(tree, root, children, origin, total, slowest, critical)
        trees.append(tree)
    return trees


def _grow(
    node: Tree,
    span: SpanRecord,
    children: dict[str | None, list[SpanRecord]],
    origin: datetime,
    total: float,
    slowest: SpanRecord | None,
    critical: Collection[str],
) -> None:
    for child in children.get(span.span_id, []):
        label = _label(child, origin, total, slowest, critical)
        _grow(node.add(label), child, children, origin, total, slowest, critical)


def _label(
    span: SpanRecord, origin: datetime, total: float, slowest: SpanRecord | None, critical: Collection[str] = ()
) -> Text:
    seconds = _seconds(span.start, span.end)
    offset = min(int(_seconds(origin, span.start) / total * BAR_WIDTH), BAR_WIDTH - 1)
    width = max(1, min(round(seconds / total * BAR_WIDTH), BAR_WIDTH - offset))
    bar = " " * offset + "█" * width + " " * (BAR_WIDTH - offset - width)
    state = str(span.attributes.get("flowpods.state") or ("ERROR" if span.status == "ERROR" else ""))
    text = Text()
    text.append(printable(span.name), style="bold" if span.name.startswith("RUN ") else "")
    text.append(f"  {format_duration(seconds)}", style="cyan")
    if state:
        text.append(f"  {state}", style=STATE_STYLES.get(state, "red" if state == "ERROR" else ""))
    text.append(f"  ▕{bar}▏", style="dim")
    for link in span.links:  # a triggered execution's RUN: the execution whose end started it
        source = link.attributes.get("flowpods.execution_id") or link.trace_id
        text.append(f"  ⇠ triggered by {printable(str(source))}", style="dim")
    if slowest is not None and span.span_id == slowest.span_id:
        text.append("  ◀ slowest", style="bold magenta")
    if span.span_id in critical and not span.name.startswith("RUN "):
        text.append("  ◆ critical path", style="bold red")
    return text
