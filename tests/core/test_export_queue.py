"""The background export's bookkeeping (core/export_queue.py): one plan in flight per execution, the confirmed
watermark carried by the next commit or stored alone when due, back-off after a failure; and, over random
interleavings of commits, exports, failures and process kills, every span sent, and sent again only by a kill."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest

from flowpods.core import export
from flowpods.core.export_queue import ExportQueue, Job
from flowpods.core.spans import derive_spans
from flowpods.core.status import ExecutionStatus, RunInfo
from tests.core.simulation import RUN, T0, Simulation, log, make_flow

KEY = ("ns", "ex-1")
SECOND = timedelta(seconds=1)
LEDGER_RUN = RUN.model_copy(update={"k8sNamespace": "ns"})  # an Execution in the cluster: it has a ledger


def flow_of_four(run: RunInfo = RUN) -> Simulation:
    flow = make_flow([{"id": "p", "type": "Parallel", "tasks": [log("a"), log("b")]}, log("c"), log("d")])
    return Simulation(flow, run=run)


def stored(status: ExecutionStatus, exported: int) -> ExecutionStatus:
    """What a commit stores: the status with its watermark, read back through JSON."""
    return ExecutionStatus.model_validate_json(status.model_copy(update={"exported": exported}).model_dump_json())


def span_ids(sim: Simulation, since: int = 0, upto: int | None = None) -> set[str]:
    last = sim.status.last_change if upto is None else upto
    return {r.span_id for n, r in derive_spans(RUN, sim.flow, sim.status) if since < n <= last}


def take(queue: ExportQueue, now=T0) -> Job:
    job = queue.take(now)
    assert job is not None
    return job


def test_one_plan_in_flight_per_execution_and_the_next_one_starts_where_it_ended() -> None:
    sim, queue = flow_of_four(), ExportQueue()
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    first = take(queue)
    plan1 = first.plan()
    assert plan1 is not None and (plan1.since, plan1.upto) == (0, 1)
    sim.finish("a")
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))  # committed while the first is in flight
    assert queue.take(T0) is None, "no second plan of the execution while one is in flight"
    assert queue.finished(first, plan1.upto, True, T0) == 0
    second = take(queue)
    plan2 = second.plan()
    assert plan2 is not None and (plan2.since, plan2.upto) == (1, 2)
    ids1, ids2 = {r.span_id for r in plan1.spans}, {r.span_id for r in plan2.spans}
    assert not ids1 & ids2 and ids1 | ids2 == span_ids(sim)


def test_the_newest_committed_status_is_planned_and_an_older_one_read_later_is_ignored() -> None:
    sim, queue = flow_of_four(), ExportQueue()
    old = stored(sim.status, 0)
    sim.finish("a")
    sim.finish("b")
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    queue.committed(KEY, RUN, sim.flow, old)  # a stale read of the view
    plan = take(queue).plan()
    assert plan is not None and plan.upto == sim.status.last_change == 3


def test_the_confirmed_watermark_is_carried_by_the_next_commit_and_stored_alone_only_when_due() -> None:
    sim, queue = flow_of_four(), ExportQueue(linger=timedelta(seconds=5))
    first = stored(sim.status, 0)
    queue.committed(KEY, RUN, sim.flow, first)
    job = take(queue)
    queue.finished(job, 1, True, T0)
    assert queue.confirmed(RUN.uid) == 1 and queue.carried(RUN.uid, first) == 1
    assert queue.store_alone(RUN.uid, first, T0 + SECOND) is None, "a commit may come soon and carry it"
    assert queue.due(T0 + SECOND) == [] and queue.next_moment() == T0 + 5 * SECOND
    assert queue.store_alone(RUN.uid, first, T0 + 5 * SECOND) == 1
    assert queue.due(T0 + 5 * SECOND) == [KEY] and queue.due(T0 + 6 * SECOND) == [], "asked once"
    sim.finish("a")
    carried = stored(sim.status, queue.carried(RUN.uid, sim.status))  # the next PUT carries it
    assert carried.exported == 1
    queue.committed(KEY, RUN, sim.flow, carried)
    assert queue.store_alone(RUN.uid, carried, T0 + 60 * SECOND) is None, "stored: nothing to write"
    assert queue.carried(RUN.uid, stored(sim.status, 0)) <= sim.status.last_change


def test_a_finished_execution_stores_its_watermark_at_once_then_is_forgotten() -> None:
    sim, queue = flow_of_four(), ExportQueue()
    for task in ("a", "b", "c", "d"):
        sim.finish(task)
    assert sim.status.state.terminal
    last = sim.status.last_change
    final = stored(sim.status, 0)
    queue.committed(KEY, RUN, sim.flow, final)
    job = take(queue)
    plan = job.plan()
    assert plan is not None and {r.span_id for r in plan.spans} == span_ids(sim)
    queue.finished(job, plan.upto, True, T0)
    assert queue.due(T0) == [KEY], "the end is not waited on: no commit will carry it"
    assert queue.store_alone(RUN.uid, final, T0) == last
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, last))
    assert len(queue) == 0 and queue.next_moment() is None
    queue.committed(KEY, RUN, sim.flow, final)  # read again from a view that lags
    assert queue.take(T0) is None, "an execution whose spans are all stored is not exported again"


def test_a_failed_export_is_retried_with_a_back_off_and_sends_the_same_spans() -> None:
    sim, queue = flow_of_four(), ExportQueue(retry=timedelta(seconds=1), max_retry=timedelta(seconds=3))
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    job = take(queue)
    assert queue.finished(job, None, False, T0) == 1
    sim.finish("a")
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))  # a commit does not cut the back-off short
    assert queue.take(T0 + 0.5 * SECOND) is None and queue.next_moment() == T0 + SECOND
    again = take(queue, T0 + SECOND)
    assert queue.finished(again, None, False, T0 + SECOND) == 2
    assert queue.take(T0 + 2 * SECOND) is None
    third = take(queue, T0 + 3 * SECOND)
    assert queue.finished(third, None, False, T0 + 3 * SECOND) == 3
    assert queue.next_moment() == T0 + 6 * SECOND, "the back-off stops growing at max_retry"
    last = take(queue, T0 + 6 * SECOND)
    plan, plan0 = last.plan(), job.plan()
    assert plan is not None and plan0 is not None
    assert {r.span_id for r in plan0.spans} <= {r.span_id for r in plan.spans}, "the same ids, sent again"
    assert queue.finished(last, plan.upto, True, T0 + 6 * SECOND) == 0 and queue.confirmed(RUN.uid) == 2


def test_an_abandoned_job_is_tried_again_after_the_back_off_and_a_finished_one_is_left_alone() -> None:
    sim, queue = flow_of_four(), ExportQueue(retry=timedelta(seconds=1))
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    job = take(queue)
    queue.abandoned(job, T0)
    assert queue.take(T0) is None and queue.next_moment() == T0 + SECOND, "as a failed export"
    again = take(queue, T0 + SECOND)
    plan = again.plan()
    assert plan is not None and queue.finished(again, plan.upto, True, T0 + SECOND) == 0
    queue.abandoned(again, T0 + SECOND)  # its outcome was recorded: nothing more
    assert queue.confirmed(RUN.uid) == plan.upto
    sim.finish("a")
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    assert queue.take(T0 + SECOND) is not None, "no back-off: the abandoned job had succeeded"


def test_a_deleted_execution_is_forgotten() -> None:
    sim, queue = flow_of_four(), ExportQueue()
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    queue.forget(KEY)
    assert len(queue) == 0 and queue.take(T0) is None


@pytest.mark.parametrize("ledger", [False, True], ids=["status-writes", "ledger"])
@pytest.mark.parametrize("seed", range(60))
def test_random_interleavings_send_every_span_and_only_a_kill_sends_one_again(seed: int, ledger: bool) -> None:
    """The operator's protocol over one execution, steps chosen at random: a task ends and the change is
    committed (the PUT carrying `carried`), the export thread takes a plan, the collector confirms it or
    fails it, a reconcile with nothing to commit stores the watermark when due, time passes, the process is
    killed (its memory lost, the in-flight plan received or not). The stored watermark never passes a span
    the collector did not receive; at the end every span was received, and one was received twice only
    when a kill came between its receipt and the watermark's store. With the ledger, the running execution's
    confirmed watermarks are stored in the namespace's ledger (a write that succeeds, fails, or lands without
    its answer), which a kill keeps and the next process reads back before it plans."""
    rng = random.Random(seed)
    sim = flow_of_four(LEDGER_RUN if ledger else RUN)
    run = sim.run
    received: Counter[str] = Counter()
    etcd = stored(sim.status, 0)
    book: dict[str, int] = {}  # the ledger object as the API server stores it
    queue, in_flight, now, kills = ExportQueue(ledger=ledger), None, T0, 0
    in_flight_plan: export.ExportPlan | None = None
    queue.committed(KEY, run, sim.flow, etcd)

    def take_job() -> Job | None:
        for namespace in queue.unread_ledgers(now):
            queue.ledger_loaded(namespace, dict(book), now)
        return queue.take(now)

    def commit() -> None:
        nonlocal etcd
        etcd = stored(sim.status, queue.carried(run.uid, sim.status))
        queue.committed(KEY, run, sim.flow, etcd)

    def check_no_loss() -> None:
        watermark = max(etcd.exported, book.get(run.uid, 0))
        below = {r.span_id for n, r in derive_spans(run, sim.flow, etcd) if n <= watermark}
        assert below <= set(received), "the stored watermark passed a span the collector did not receive"

    def write_ledger(fate: str) -> None:
        nonlocal book
        for namespace, entries in queue.ledger_to_write(now).items():
            if fate in ("ok", "lost-answer"):
                book = dict(entries)
            queue.ledger_written(namespace, entries, fate == "ok", now)

    for _ in range(200):
        step = rng.choice(["task", "take", "answer", "answer", "reconcile", "time", "kill", "ledger"])
        if step == "task" and sim.running():
            sim.finish(rng.choice(sim.running()))
            commit()
        elif step == "take" and in_flight is None:
            in_flight = take_job()
            in_flight_plan = in_flight.plan() if in_flight is not None else None
        elif step == "ledger":
            write_ledger(rng.choice(["ok", "ok", "failed", "lost-answer"]))
        elif step == "answer" and in_flight is not None:
            ok = rng.random() < 0.7
            if ok and in_flight_plan is not None:
                received.update(r.span_id for r in in_flight_plan.spans)
            queue.finished(in_flight, in_flight_plan.upto if in_flight_plan else None, ok, now)
            in_flight = in_flight_plan = None
            if rng.random() < 0.7:  # the export thread writes the ledger right after the answer
                write_ledger("ok")
        elif step == "reconcile":
            target = queue.store_alone(run.uid, etcd, now)
            if target is not None:  # the patch: test the watermark read, replace it
                etcd = stored(etcd, target)
                queue.committed(KEY, run, sim.flow, etcd)
            else:
                queue.committed(KEY, run, sim.flow, etcd)
        elif step == "time":
            now += timedelta(seconds=rng.choice([0.2, 1, 6, 12]))
        elif step == "kill":
            kills += 1
            if in_flight_plan is not None and rng.random() < 0.5:  # the collector got it, no answer came
                received.update(r.span_id for r in in_flight_plan.spans)
            queue, in_flight, in_flight_plan = ExportQueue(ledger=ledger), None, None
            queue.committed(KEY, run, sim.flow, etcd)  # the next process reads the stored status
        check_no_loss()

    # no more kills: the execution runs to its end, exports succeed, the watermark is stored
    if in_flight is not None:
        queue.finished(in_flight, None, False, now)
    while sim.running():
        sim.finish(sim.running()[0])
        commit()
    for _ in range(100):
        now += timedelta(seconds=12)
        job = take_job()
        if job is not None:
            plan = job.plan()
            if plan is not None:
                received.update(r.span_id for r in plan.spans)
            queue.finished(job, plan.upto if plan else None, True, now)
        write_ledger("ok")
        target = queue.store_alone(run.uid, etcd, now)
        if target is not None:
            etcd = stored(etcd, target)
        queue.committed(KEY, run, sim.flow, etcd)
        check_no_loss()
        if etcd.exported == sim.status.last_change and len(queue) == 0:
            break
    assert sim.status.state.terminal and etcd.exported == sim.status.last_change
    assert set(received) == span_ids(sim), "every span received"
    assert len(queue) == 0, "a settled execution is forgotten"
    twice = {span_id: n - 1 for span_id, n in received.items() if n > 1}
    assert all(extra <= kills for extra in twice.values()), (kills, twice)
    if kills == 0:
        assert not twice, "sent twice without a kill"


def test_a_running_execution_whose_spans_are_all_sent_is_held_without_its_status() -> None:
    """The queue holds the status and flow of an execution only while it has spans to send (memory: one
    status per execution in flight); a newer commit gives them back, and a stale read sends nothing."""
    sim, queue = flow_of_four(), ExportQueue()
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))
    job = take(queue)
    plan = job.plan()
    assert plan is not None
    queue.finished(job, plan.upto, True, T0)
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, plan.upto))  # the watermark stored
    track = queue._tracks[RUN.uid]
    assert track.status is None and track.flow is None and not track.pending
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, 0))  # a stale read, from before the watermark
    assert queue.take(T0) is None
    sim.finish("a")
    queue.committed(KEY, RUN, sim.flow, stored(sim.status, plan.upto))
    again = take(queue).plan()
    assert again is not None and (again.since, again.upto) == (plan.upto, sim.status.last_change)


def ledger_runs(count: int) -> list[Simulation]:
    flow = flow_of_four().flow
    return [Simulation(flow, run=LEDGER_RUN.model_copy(update={"id": f"ex-{i}", "uid": f"uid-{i}"}))
            for i in range(count)]  # fmt: skip


def test_the_ledger_stores_the_watermarks_of_running_executions_in_one_write_and_a_restart_reads_them() -> None:
    sims, queue = ledger_runs(2), ExportQueue(ledger=True)
    for sim in sims:
        queue.committed(("ns", sim.run.id), sim.run, sim.flow, stored(sim.status, 0))
    assert queue.unread_ledgers(T0) == {"ns"} and queue.take(T0) is None, "nothing is planned before it is read"
    queue.ledger_loaded("ns", {}, T0)
    jobs = [take(queue), take(queue)]
    for job in jobs:
        plan = job.plan()
        assert plan is not None
        queue.finished(job, plan.upto, True, T0)
    assert queue.due(T0) == [] and queue.next_moment() is None, "no status write of their own"
    assert all(queue.store_alone(sim.run.uid, stored(sim.status, 0), T0 + 60 * SECOND) is None for sim in sims)
    writes = queue.ledger_to_write(T0)
    assert writes == {"ns": {"uid-0": 1, "uid-1": 1}}, "one write for both"
    queue.ledger_written("ns", writes["ns"], True, T0)
    assert queue.ledger_to_write(T0) == {}, "written once"

    # the next commit of ex-0 carries its watermark: its entry goes (with the ledger's next write)
    first, second = sims
    first.finish("a")
    queue.committed(("ns", "ex-0"), first.run, first.flow, stored(first.status, queue.carried("uid-0", first.status)))
    second.finish("a")
    queue.committed(("ns", "ex-1"), second.run, second.flow, stored(second.status, 0))  # a commit without it
    assert queue._ledger["ns"] == {"uid-1": 1} and queue.ledger_to_write(T0) == {}, "no write for a removal"
    for job in (take(queue), take(queue)):
        plan = job.plan()
        assert plan is not None and (plan.since, plan.upto) == (1, 2), "nothing the ledger holds is sent again"
        queue.finished(job, plan.upto, True, T0)
    assert queue.ledger_to_write(T0) == {"ns": {"uid-0": 2, "uid-1": 2}}

    # a restart: the new process reads the ledger before it plans, and sends nothing the ledger holds
    restarted = ExportQueue(ledger=True)
    restarted.committed(("ns", "ex-1"), second.run, second.flow, stored(second.status, 0))
    restarted.ledger_loaded("ns", {"uid-1": 1, "uid-gone": 3}, T0)
    again = take(restarted).plan()
    assert again is not None and (again.since, again.upto) == (1, 2), "change 1's spans are not sent again"
    assert restarted.carried("uid-1", stored(second.status, 0)) == 1, "the next commit carries what it read"
    restarted._ledger_dirty["ns"] = None
    assert restarted.ledger_to_write(T0 + 60 * SECOND)["ns"] == {"uid-1": 1, "uid-gone": 3}, "kept a while"
    restarted._ledger_dirty["ns"] = None
    assert restarted.ledger_to_write(T0 + 11 * 60 * SECOND)["ns"] == {"uid-1": 1}, "an entry never claimed goes"


def test_without_a_usable_ledger_a_watermark_is_written_alone() -> None:
    """A finished execution (no commit will carry it), a failed ledger write and a namespace whose ledger
    cannot be read each fall back to the status write of its own."""
    sims, queue = ledger_runs(3), ExportQueue(ledger=True)
    done, failing, _ = sims
    for task in ("a", "b", "c", "d"):
        done.finish(task)
    for sim in sims:
        queue.committed(("ns", sim.run.id), sim.run, sim.flow, stored(sim.status, 0))
    queue.ledger_loaded("ns", {}, T0)
    for _ in sims:
        job = take(queue)
        plan = job.plan()
        assert plan is not None
        queue.finished(job, plan.upto, True, T0)
    assert queue.due(T0) == [("ns", "ex-0")], "the finished one at once"
    writes = queue.ledger_to_write(T0)["ns"]
    assert set(writes) == {"uid-1", "uid-2"}
    queue.ledger_written("ns", {"uid-1": writes["uid-1"]}, False, T0)
    assert queue.due(T0) == [("ns", "ex-1")], "a failed ledger write: written alone"
    assert queue.store_alone("uid-1", stored(failing.status, 0), T0) == 1

    other = ExportQueue(ledger=True)
    sim = ledger_runs(1)[0]
    other.committed(("ns", sim.run.id), sim.run, sim.flow, stored(sim.status, 0))
    other.ledger_loaded("ns", None, T0)  # forbidden: no ledger in this namespace
    job = take(other)
    other.finished(job, 1, True, T0)
    assert other.ledger_to_write(T0) == {} and other.due(T0) == [("ns", "ex-0")]


def test_a_full_ledger_leaves_the_next_execution_to_write_its_own_watermark() -> None:
    """The ledger is written whole with each request, so it is kept small: beyond `ledger_max` entries, an
    execution stores its watermark as without a ledger."""
    sims, queue = ledger_runs(3), ExportQueue(ledger=True, ledger_max=2)
    for sim in sims:
        queue.committed(("ns", sim.run.id), sim.run, sim.flow, stored(sim.status, 0))
    queue.ledger_loaded("ns", {}, T0)
    for _ in sims:
        job = take(queue)
        queue.finished(job, 1, True, T0)
    assert queue.ledger_to_write(T0) == {"ns": {"uid-0": 1, "uid-1": 1}}
    assert queue.due(T0) == [("ns", "ex-2")]


def test_a_ledger_that_cannot_be_read_is_read_again_after_a_back_off_doubling_to_its_limit() -> None:
    (sim,), queue = ledger_runs(1), ExportQueue(ledger=True)
    queue.committed(("ns", sim.run.id), sim.run, sim.flow, stored(sim.status, 0))
    now = T0
    for expected in (0.5, 1, 2, 4, 8, 10, 10):
        assert queue.unread_ledgers(now) == {"ns"}
        assert queue.ledger_unreadable("ns", now) == expected * SECOND
        assert queue.unread_ledgers(now) == set() and queue.take(now) is None, "its spans wait, no read before then"
        assert queue.next_moment() == now + expected * SECOND, "the export thread wakes for it"
        now += expected * SECOND
    queue.ledger_loaded("ns", {}, now)
    assert queue.next_moment() is None and take(queue) is not None, "read: planned, and no read is due any more"
    assert queue.ledger_unreadable("ns", now) == 0.5 * SECOND, "a later outage starts its back-off again"


def test_a_collector_away_for_long_is_still_tried_again_every_max_retry() -> None:
    """100 failed exports in a row (a collector away for ~16 min): the back-off stays at its limit (the 49th
    used to overflow a timedelta, in the export thread)."""
    sim, queue = flow_of_four(), ExportQueue()
    queue.committed(KEY, sim.run, sim.flow, stored(sim.status, 0))
    now = T0
    for failures in range(1, 101):
        job = take(queue, now)
        assert queue.finished(job, None, False, now) == failures
        moment = queue.next_moment()
        assert queue.take(now) is None and moment == now + min(0.5 * 2 ** (failures - 1), 10) * SECOND
        now = moment
