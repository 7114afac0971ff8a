"""The operator's reconcile loops, wake-up timers and schedule tasks run in a context of kopf's variables only,
whoever starts them: not in a watch handler's context, which holds the handler's event and so its whole
object, and not in the export thread's, which lacks the variables `kopf.event` reads."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from datetime import timedelta
from typing import Any

import kopf
from kopf._core.engines import posting

from flowpods.core.clock import utcnow
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import Operator

HANDLER_OBJECT: contextvars.ContextVar[Any] = contextvars.ContextVar("handler_object")  # kopf's cause, say
KEY = ("ns", "e1")
EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1"}}  # fmt: skip


class EventObject:
    """The object of a watch event (a weak reference tells whether anything still holds it)."""


def started_operator(seen: list[tuple[str, Any]]) -> tuple[Operator, asyncio.Queue[Any]]:
    """An operator whose reconcile loops, instead of reconciling, post an Event as `kopf.event` does (it
    reads kopf's variables) and record what handler variable they see; and kopf's queue of Events."""
    op = Operator(OperatorConfig.from_env({}), None, None)  # type: ignore[arg-type]  # (no request made)

    async def loop(key: tuple[str, str]) -> None:
        try:
            kopf.event(EXECUTION, type="Normal", reason="Reconciled", message="")  # type: ignore[arg-type]
            seen.append(("posted", HANDLER_OBJECT.get(None)))
        except LookupError as exc:
            seen.append((f"kopf.event failed: {exc!r}", HANDLER_OBJECT.get(None)))

    op._loop = loop  # type: ignore[method-assign]
    op.start(asyncio.get_running_loop())
    return op, asyncio.Queue()


def in_a_watch_handler(queue: asyncio.Queue[Any], action: Any) -> weakref.ref[EventObject]:
    """Run `action` where kopf runs a watch handler: its context holds kopf's variables and the handler's
    own, with the event's object, dropped afterwards."""
    event_object = EventObject()

    def handler() -> None:
        posting.settings_var.set(kopf.OperatorSettings())
        posting.event_queue_var.set(queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        HANDLER_OBJECT.set(event_object)
        action()

    contextvars.copy_context().run(handler)
    return weakref.ref(event_object)


async def settled(seen: list[Any], count: int) -> None:
    for _ in range(200):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.01)


def test_a_loop_poked_by_a_watch_handler_neither_holds_nor_sees_its_event_and_posts_events() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op, queue = started_operator(seen)
        held = in_a_watch_handler(queue, lambda: op.poke(KEY))
        gc.collect()
        assert held() is None, "the reconcile loop holds the watch event's object"
        await op.loops[KEY]
        assert seen == [("posted", None)]
        assert queue.get_nowait().reason == "Reconciled"

    asyncio.run(scenario())


def test_a_wake_up_timer_set_by_a_watch_handler_does_not_hold_its_event() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op, queue = started_operator(seen)
        held = in_a_watch_handler(queue, lambda: op.poke_at(KEY, utcnow() + timedelta(milliseconds=50)))
        gc.collect()
        assert held() is None, "the timer holds the watch event's object"
        await settled(seen, 1)
        assert seen == [("posted", None)]

    asyncio.run(scenario())


def test_a_loop_poked_from_the_export_thread_posts_events() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op, queue = started_operator(seen)
        in_a_watch_handler(queue, lambda: op.poke(("ns", "first")))  # the operator's first event
        await settled(seen, 1)
        thread = threading.Thread(target=op._wake_from_thread, args=(KEY,))
        thread.start()
        thread.join()
        await settled(seen, 2)
        assert seen == [("posted", None), ("posted", None)]
        assert queue.qsize() == 2

    asyncio.run(scenario())


def test_a_schedule_task_started_by_a_flow_event_does_not_hold_the_event() -> None:
    flow = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow",
            "metadata": {"name": "nightly", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
            "spec": {"id": "nightly", "namespace": "team", "tasks": [{"id": "t", "type": "Log", "message": "hi"}],
                     "triggers": [{"id": "at-midnight", "type": "Schedule", "cron": "0 0 * * *"}]}}  # fmt: skip

    async def scenario() -> None:
        op, queue = started_operator([])
        held = in_a_watch_handler(queue, lambda: op.saw_flow("ADDED", flow))
        gc.collect()
        assert held() is None, "the schedule task holds the watch event's object"
        generation, task = op.scheduler.tasks[("ns", "nightly")]
        assert generation == 1 and not task.done()
        task.cancel()

    asyncio.run(scenario())
