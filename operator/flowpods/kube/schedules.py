"""Schedule triggers in the operator: one asyncio task per Flow with schedules, restarted when its spec changes.

When to fire and what to create are the core's (`core.schedule`) and `resources.scheduled_execution`'s;
the execution is named from its due time, so a restart or a second operator creates it once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from flowpods.core import schedule
from flowpods.core.clock import utcnow
from flowpods.core.model import Flow, FlowError
from flowpods.kube import resources
from flowpods.kube.client import Kube

log = logging.getLogger("flowpods.kube.schedules")
Key = tuple[str, str]


class Scheduler:
    def __init__(self, kube: Kube):
        self.kube = kube
        self.tasks: dict[Key, tuple[int | None, asyncio.Task[None]]] = {}

    def sync(self, key: Key, body: dict[str, Any] | None, context: contextvars.Context | None = None) -> None:
        """Start, restart or stop the Flow's schedule task to match its spec (None: the Flow is gone).
        `context`: the one the task runs in (else the caller's, which in a watch handler holds its event)."""
        generation = body["metadata"].get("generation") if body else None
        current = self.tasks.get(key)
        if current is not None and current[0] == generation and body is not None:
            return
        if current is not None:
            current[1].cancel()
            self.tasks.pop(key, None)
        if body is None:
            return
        try:
            flow = resources.load_flow(body)
        except FlowError:
            return
        if not schedule.schedules(flow):
            return
        task = asyncio.create_task(self._run(key, flow), name=f"schedule {key[0]}/{key[1]}", context=context)
        self.tasks[key] = (generation, task)

    async def _run(self, key: Key, flow: Flow) -> None:
        """Create each trigger's execution when it is due."""
        namespace, name = key
        triggers = {trigger.id: trigger for trigger in schedule.schedules(flow)}
        dues = {trigger_id: schedule.next_due(trigger, utcnow()) for trigger_id, trigger in triggers.items()}
        while True:
            trigger_id = schedule.soonest(dues)
            trigger, due = triggers[trigger_id], dues[trigger_id]
            await asyncio.sleep(max((due - utcnow()).total_seconds(), 0.0))
            body = resources.scheduled_execution(namespace, name, trigger, due)
            try:
                created = await asyncio.to_thread(self.kube.create, "executions", body)
                log.info("schedule %s of flow %s/%s: %s", trigger.id, namespace, name,
                         "started an execution" if created else "already started")  # fmt: skip
            except Exception:
                log.exception("schedule %s of flow %s/%s could not start an execution", trigger.id, namespace, name)
            dues[trigger_id] = schedule.next_due(trigger, due)
