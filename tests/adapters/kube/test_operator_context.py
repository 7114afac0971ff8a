"""The operator's reconcile loops, wake-up timers and schedule tasks run in an empty context, whoever starts them:
not in a kopf handler's, which holds the handler's event and so its whole object. And the Events of a reconcile
are posted whichever thread's poke started it (a watch's, the export thread's): `kopf.event` needed kopf's
variables, which only its own handlers' contexts had."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

from flowpods.core.clock import utcnow
from flowpods.kube import resources
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import Operator, Outcome

HANDLER_OBJECT: contextvars.ContextVar[Any] = contextvars.ContextVar("handler_object")  # kopf's cause, say
KEY = ("ns", "e1")
EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1", "resourceVersion": "3"}}  # fmt: skip


class EventObject:
    """The object of a watch event (a weak reference tells whether anything still holds it)."""


class EventsKube:
    """The API server as far as posting Events goes."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def create_event(self, body: dict[str, Any]) -> None:
        self.events.append(body)


def started_operator(seen: list[tuple[str, Any]]) -> Operator:
    """An operator whose reconcile loops, instead of reconciling, end with an outcome that has an Event to post,
    and record what handler variable they see."""
    op = Operator(OperatorConfig.from_env({}), EventsKube(), None)  # type: ignore[arg-type]  # (Events only)

    async def loop(key: tuple[str, str]) -> None:
        op._after(key, Outcome(body=EXECUTION, events=[("Normal", "Reconciled", f"{key[1]} reconciled")]))
        seen.append(("reconciled", HANDLER_OBJECT.get(None)))

    op._loop = loop  # type: ignore[method-assign]
    op.start(asyncio.get_running_loop())
    return op


def in_a_watch_handler(action: Any) -> weakref.ref[EventObject]:
    """Run `action` where kopf runs a watch handler: its context holds the handler's own variables, with the
    event's object, dropped afterwards."""
    event_object = EventObject()

    def handler() -> None:
        HANDLER_OBJECT.set(event_object)
        action()

    contextvars.copy_context().run(handler)
    return weakref.ref(event_object)


def posted(op: Operator, count: int) -> list[dict[str, Any]]:
    events = op.kube.events  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(events)


async def settled(seen: list[Any], count: int) -> None:
    for _ in range(200):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.01)


def test_a_loop_poked_by_a_watch_handler_neither_holds_nor_sees_its_event_and_posts_events() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op = started_operator(seen)
        held = in_a_watch_handler(lambda: op.poke(KEY))
        gc.collect()
        assert held() is None, "the reconcile loop holds the watch event's object"
        await op.loops[KEY]
        assert seen == [("reconciled", None)]
        [event] = await asyncio.to_thread(posted, op, 1)
        assert (event["reason"], event["message"], event["involvedObject"]["uid"]) == ("Reconciled", "e1 reconciled",
                                                                                        "u-e1")  # fmt: skip

    asyncio.run(scenario())


def test_a_wake_up_timer_set_by_a_watch_handler_does_not_hold_its_event() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op = started_operator(seen)
        held = in_a_watch_handler(lambda: op.poke_at(KEY, utcnow() + timedelta(milliseconds=50)))
        gc.collect()
        assert held() is None, "the timer holds the watch event's object"
        await settled(seen, 1)
        assert seen == [("reconciled", None)]

    asyncio.run(scenario())


def test_loops_poked_from_a_watch_thread_and_from_the_export_thread_post_their_events() -> None:
    async def scenario() -> None:
        seen: list[tuple[str, Any]] = []
        op = started_operator(seen)
        deliver = op.saw_from_thread(lambda _type, body: op.poke(("ns", body["metadata"]["name"])))
        watch = threading.Thread(target=deliver, args=("MODIFIED", {"metadata": {"name": "first"}}))
        watch.start()
        watch.join()
        await settled(seen, 1)
        export = threading.Thread(target=op._wake_from_thread, args=(KEY,))
        export.start()
        export.join()
        await settled(seen, 2)
        assert seen == [("reconciled", None), ("reconciled", None)]
        events = await asyncio.to_thread(posted, op, 2)
        assert [e["message"] for e in events] == ["first reconciled", "e1 reconciled"]

    asyncio.run(scenario())


def test_a_schedule_task_started_by_a_flow_event_does_not_hold_the_event() -> None:
    flow = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow",
            "metadata": {"name": "nightly", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
            "spec": {"id": "nightly", "namespace": "team", "tasks": [{"id": "t", "type": "Log", "message": "hi"}],
                     "triggers": [{"id": "at-midnight", "type": "Schedule", "cron": "0 0 * * *"}]}}  # fmt: skip

    async def scenario() -> None:
        op = started_operator([])
        held = in_a_watch_handler(lambda: op.saw_flow("ADDED", flow))
        gc.collect()
        assert held() is None, "the schedule task holds the watch event's object"
        generation, task = op.scheduler.tasks[("ns", "nightly")]
        assert generation == 1 and not task.done()
        task.cancel()

    asyncio.run(scenario())


def test_an_event_names_its_execution_and_a_long_message_is_cut_in_the_middle() -> None:
    now = datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC)
    event = resources.event_body(EXECUTION, "Warning", "Failed", "a" * 600 + "b" * 600, now, "operator-0")
    assert event["metadata"] == {"namespace": "ns", "generateName": "flowpods-event-"}
    assert event["involvedObject"] == {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution", "name": "e1",
                                       "namespace": "ns", "uid": "u-e1"}  # fmt: skip
    assert (event["type"], event["reason"], event["reportingInstance"]) == ("Warning", "Failed", "operator-0")
    assert (event["firstTimestamp"], event["eventTime"]) == ("2026-11-27T01:02:03Z", "2026-11-27T01:02:03.456789Z")
    message = event["message"]
    assert len(message) <= resources.MAX_EVENT_MESSAGE and message.startswith("aaa") and message.endswith("bbb")
    assert " ... " in message
