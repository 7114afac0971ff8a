"""What the operator keeps per execution outside its view (poked, loop, wake-up timer) lasts only while there is
something to do: an operator runs for months, and each execution used to leave an asyncio.Event and its fired
timer behind for good."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from flowpods.core.clock import utcnow
from flowpods.kube.config import OperatorConfig
from flowpods.kube.operator import Operator, Outcome

KEY = ("ns", "e1")
EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1", "resourceVersion": "1"}}  # fmt: skip


def operator() -> Operator:
    return Operator(OperatorConfig.from_env({}), None, None)  # type: ignore[arg-type]  # (no request made)


def test_a_poked_execution_leaves_nothing_once_its_loop_ended() -> None:
    async def scenario() -> None:
        op = operator()
        op.poke(KEY)  # not in view (deleted meanwhile, say): the loop finds nothing to reconcile and ends
        assert KEY in op.poked
        await op.loops[KEY]
        assert (op.poked, op.loops, op.timers) == (set(), {}, {})

    asyncio.run(scenario())


def test_a_fired_wake_up_timer_is_forgotten() -> None:
    async def scenario() -> None:
        op = operator()
        op.poke_at(KEY, utcnow() + timedelta(milliseconds=50))
        assert KEY in op.timers
        for _ in range(100):  # the timer fires, pokes, and the loop it starts ends (nothing in view)
            await asyncio.sleep(0.01)
            if not op.timers and not op.loops:
                break
        assert (op.poked, op.loops, op.timers) == (set(), {}, {})

    asyncio.run(scenario())


def test_a_deleted_execution_takes_its_pending_timer_with_it() -> None:
    async def scenario() -> None:
        op = operator()
        op.poke_at(KEY, utcnow() + timedelta(hours=1))
        timer = op.timers[KEY]
        op.saw_execution("DELETED", EXECUTION)
        assert timer.cancelled() and op.timers == {}
        assert KEY not in op.poked and KEY not in op.loops  # a deletion pokes nobody

    asyncio.run(scenario())


def test_the_heap_built_at_start_up_is_out_of_the_collectors_reach() -> None:
    """What `configure` built is frozen (a full collection no longer walks it) and the thresholds are the
    operator's; in a child process, so that this one keeps its own collector settings."""
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from flowpods.kube.operator import GC_THRESHOLDS, settle_heap\n"
        "before = gc.get_freeze_count()\n"
        "settle_heap()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold() == GC_THRESHOLDS, GC_THRESHOLDS[0] > 700)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    before, frozen, thresholds, fewer = proc.stdout.split()
    assert int(before) == 0 and int(frozen) > 10_000, proc.stdout  # the imports alone are tens of thousands
    assert (thresholds, fewer) == ("True", "True")


def test_the_echo_of_a_write_that_stored_only_the_span_watermark_pokes_only_a_parent() -> None:
    """Its reconcile would change nothing (a third of all reconciles with tracing on); a child's echo still tells
    its parent about the child."""
    op = operator()
    poked: list[tuple[str, str]] = []
    op.poke = poked.append  # type: ignore[method-assign]

    def version(rv: str, parent: str | None = None) -> dict[str, object]:
        owners = [{"kind": "Execution", "name": parent}] if parent else []
        return {**EXECUTION, "metadata": {**EXECUTION["metadata"], "resourceVersion": rv, "ownerReferences": owners}}

    op._after(KEY, Outcome(body=version("2"), watermark_only=True))
    op.saw_execution("MODIFIED", version("2"))
    assert poked == []
    op.saw_execution("MODIFIED", version("3"))  # anything newer is news
    assert poked == [KEY]
    op._after(KEY, Outcome(body=version("4")))  # a commit: its echo reconciles as before
    op.saw_execution("MODIFIED", version("4"))
    assert poked == [KEY, KEY]
    op._after(KEY, Outcome(body=version("5", parent="p1"), watermark_only=True))
    op.saw_execution("MODIFIED", version("5", parent="p1"))
    assert poked == [KEY, KEY, ("ns", "p1")]
    op._after(KEY, Outcome(body=version("6"), watermark_only=True, pods=[{"metadata": {"name": "pod"}}]))
    op.saw_execution("MODIFIED", version("6"))  # it also created a pod: the next pass starts its deadline
    assert poked[-1] == KEY and op.quiet_writes == {}
