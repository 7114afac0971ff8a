"""Schedule triggers: when each fires next, and the name of the execution it starts (one per due time)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from flowpods.core.ids import dns_label
from flowpods.core.model import Flow, Schedule


def schedules(flow: Flow) -> list[Schedule]:
    """The flow's enabled Schedule triggers (none when the flow is disabled)."""
    if flow.disabled:
        return []
    return [t for t in flow.triggers if isinstance(t, Schedule) and not t.disabled]


def next_due(trigger: Schedule, after: datetime) -> datetime:
    """The first time after `after` that the trigger's cron expression matches, in its time zone."""
    due: datetime = croniter(trigger.cron, after.astimezone(ZoneInfo(trigger.timezone))).get_next(datetime)
    return due


def soonest(dues: dict[str, datetime]) -> str:
    """The trigger that fires first (the lowest id among those due at the same time)."""
    return min(dues, key=lambda trigger_id: (dues[trigger_id], trigger_id))


def execution_name(flow_name: str, trigger: Schedule, due: datetime) -> str:
    """Named from the due time, so that two operators (or a restart) create the same execution, not two."""
    return f"{dns_label(flow_name, 40)}-{dns_label(trigger.id, 20)}-{int(due.timestamp())}"
