"""Which execution's spans to send next, off the reconcile path: the pure bookkeeping of the background export.

The operator's reconcile only commits; a background worker sends the spans (core/export.py has the protocol).
This queue is what keeps that exactly once within one process:

- **one plan in flight per execution**: `take` hands out an execution's plan only when none of its plans is
  in flight, planned from the newest committed status it was given (`committed`) and the watermark this
  process saw confirmed (`confirmed`), so no two plans of one execution ever hold the same change;
- **the confirmed watermark is remembered until it is stored**: a status PUT under way carries it
  (`carried`); else, with a **ledger** (`ledger=True`), the watermarks confirmed by one export request are
  stored together in one object per namespace (`ledger_to_write`, `ledger_written`; read back after a restart
  by `ledger_loaded`), one write for the many executions of the request instead of one status write per
  change; a finished execution's (no commit will carry it) and, without a ledger, every one, with a status
  write of its own (`store_alone`) right after the confirmation (`linger`, 0 by default: a kill between the
  collector's answer and the stored watermark resends those spans, so that window is kept as short as a
  write);
- **a failed export is retried with a back-off**, per execution, and never blocks a commit.

Not thread-safe: the shell holds one lock around every call. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowpods.core import export
from flowpods.core.clock import back_off
from flowpods.core.model import Flow
from flowpods.core.status import ExecutionStatus, RunInfo


@dataclass(frozen=True)
class Job:
    """One export to make: the spans of `status` above max(its watermark, `confirmed`)."""

    uid: str
    key: Hashable
    run: RunInfo
    flow: Flow | None
    status: ExecutionStatus
    confirmed: int

    def plan(self) -> export.ExportPlan | None:
        """Derived outside the queue's lock (it is the costly part): the job's data does not change."""
        return export.plan(self.run, self.flow, self.status, self.confirmed)


@dataclass
class _Track:
    """One execution's export state. The status (and flow) it plans from is held only while it has spans to
    send: an execution in flight whose spans are all sent keeps only numbers (1,000 executions held their
    statuses here, 20 MB)."""

    key: Hashable
    run: RunInfo
    flow: Flow | None
    status: ExecutionStatus | None  # the newest committed status given, while it has spans to send
    last_change: int  # of the newest committed status given
    stored: int  # the watermark stored with it
    terminal: bool  # whether it had ended
    confirmed: int = 0  # the last change whose spans this process's exporter confirmed
    confirmed_at: datetime | None = None  # since when `confirmed` is above the stored watermark
    in_flight: bool = False
    failures: int = 0  # failed exports in a row
    asked: bool = False  # a write of the watermark was asked for (`due`) and not seen stored yet

    @classmethod
    def of(cls, key: Hashable, run: RunInfo, flow: Flow | None, status: ExecutionStatus) -> _Track:
        return cls(key, run, flow, status, status.last_change, status.exported, status.state.terminal)

    def hold(self, run: RunInfo, flow: Flow | None, status: ExecutionStatus) -> None:
        self.run, self.flow, self.status = run, flow, status
        self.last_change, self.stored, self.terminal = status.last_change, status.exported, status.state.terminal

    def lighten(self) -> None:
        """Let go of the status and the flow once nothing is left to plan from them."""
        if not self.pending and not self.in_flight:
            self.status = self.flow = None

    @property
    def pending(self) -> bool:
        """Committed changes whose spans are neither stored as exported nor confirmed by this process."""
        return max(self.stored, self.confirmed) < self.last_change

    @property
    def unstored(self) -> bool:
        return self.confirmed > self.stored

    @property
    def namespace(self) -> str | None:
        return self.run.k8sNamespace

    @property
    def settled(self) -> bool:
        """Finished, and every span stored as exported: nothing more to send or store."""
        return self.terminal and not self.in_flight and self.stored >= self.last_change


@dataclass
class ExportQueue:
    """The executions with spans to send or a watermark to store (module docstring)."""

    linger: timedelta = timedelta(0)  # how long a confirmed watermark may wait for a commit to carry it
    retry: timedelta = timedelta(seconds=0.5)  # the first back-off after a failed export, doubled after each one
    max_retry: timedelta = timedelta(seconds=10)
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _ready: dict[str, None] = field(default_factory=dict)  # uids to plan, oldest first (an ordered set)
    _waiting: dict[str, datetime] = field(default_factory=dict)  # uid -> when a failed export is tried again
    # uid -> the last change of a settled execution: a status read later that is not newer sends nothing
    _settled: dict[str, tuple[Hashable, int]] = field(default_factory=dict)
    # uids whose confirmed watermark waits to be asked for (`due`): every pass of the export thread looks at
    # these, not at every execution (at 10,000 in flight a scan of all of them per export was quadratic)
    _unasked: dict[str, None] = field(default_factory=dict)
    _by_key: dict[Hashable, set[str]] = field(default_factory=dict)  # for `forget`, which gets a key
    ledger: bool = False  # store the confirmed watermarks of running executions in a ledger per namespace
    # entries per namespace's ledger, which is written whole (1,000: about 50 kB); beyond, a status write each
    ledger_max: int = 1_000
    foreign_ttl: timedelta = timedelta(minutes=10)  # how long an entry read back waits for its execution
    # namespace -> uid -> the confirmed watermark the ledger should hold (what the status does not hold yet)
    _ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    _ledger_dirty: dict[str, None] = field(default_factory=dict)  # namespaces with entries not written yet
    _no_ledger: set[str] = field(default_factory=set)  # namespaces whose ledger cannot be read or written
    _foreign: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # uid -> (namespace, when read)
    _ledger_failures: dict[str, int] = field(default_factory=dict)  # namespace -> failed reads of its ledger in a row
    _ledger_retry_at: dict[str, datetime] = field(default_factory=dict)  # namespace -> when it is read again

    def committed(self, key: Hashable, run: RunInfo, flow: Flow | None, status: ExecutionStatus) -> None:
        """`status` is stored (a commit, or a status read back): plan from it if it is the newest one seen."""
        track = self._tracks.get(run.uid)
        if track is None:
            settled = self._settled.get(run.uid)
            if settled is not None and status.last_change <= settled[1]:
                return  # an old copy (a stale read) of an execution whose spans are all stored as exported
            self._settled.pop(run.uid, None)
            track = self._tracks[run.uid] = _Track.of(key, run, flow, status)
            self._by_key.setdefault(key, set()).add(run.uid)
            foreign = self._foreign.pop(run.uid, None)
            if foreign is not None:  # read back from the ledger after a restart
                self._read_back(track, run.uid, self._ledger_entries(track).get(run.uid, 0), foreign[1])
        elif (status.last_change, status.exported) >= (track.last_change, track.stored):
            track.hold(run, flow, status)
        self._ledger_caught_up(track, run.uid)
        if not track.unstored:
            track.confirmed_at, track.asked = None, False
            self._unasked.pop(run.uid, None)
        if track.settled and not track.unstored:
            self._settle(run.uid)
        elif track.pending and not track.in_flight and run.uid not in self._waiting:
            self._ready[run.uid] = None
        else:
            track.lighten()

    def take(self, now: datetime) -> Job | None:
        """The next export to make, marked in flight until `finished`; None when there is none now."""
        for uid, at in list(self._waiting.items()):
            if at <= now:
                del self._waiting[uid]
                self._ready[uid] = None
        unread: list[str] = []  # planned once their namespace's ledger was read (what it holds is not sent again)
        try:
            while self._ready:
                uid = next(iter(self._ready))
                del self._ready[uid]
                track = self._tracks.get(uid)
                if track is None or track.in_flight or not track.pending:
                    continue
                if not self._ledger_read(track):
                    unread.append(uid)
                    continue
                assert track.status is not None  # held while pending
                track.in_flight = True
                return Job(uid, track.key, track.run, track.flow, track.status, track.confirmed)
            return None
        finally:
            self._ready.update(dict.fromkeys(unread))

    def finished(self, job: Job, upto: int | None, ok: bool, now: datetime) -> int:
        """The job's export ended: confirmed up to change `upto` (None: there was nothing to send), or failed.
        How many exports of the execution failed in a row (0 after a success)."""
        track = self._tracks.get(job.uid)
        if track is None:
            return 0
        track.in_flight = False
        if not ok:
            track.failures += 1
            self._waiting[job.uid] = now + self._back_off(track.failures)
            return track.failures
        track.failures = 0
        if upto is not None and upto > track.confirmed:
            track.confirmed = upto
        if self._owes(track) and not self._to_ledger(track, job.uid):
            self._owe_own_write(job.uid, track, now)
        if track.pending:
            self._ready[job.uid] = None
        elif track.settled and not track.unstored:
            self._settle(job.uid)
        else:
            track.lighten()
        return 0

    def abandoned(self, job: Job, now: datetime) -> None:
        """The job's export ended without an outcome (an error nothing expected, in the shell): tried again
        after a back-off, as a failed export, rather than left in flight until a restart. Its spans may have
        reached the collector: they are sent again (same ids), never lost."""
        track = self._tracks.get(job.uid)
        if track is not None and track.in_flight:
            self.finished(job, None, False, now)

    def confirmed(self, uid: str) -> int:
        track = self._tracks.get(uid)
        return track.confirmed if track is not None else 0

    def carried(self, uid: str, status: ExecutionStatus) -> int:
        """The watermark a commit of `status` stores: the stored one, or what this process saw confirmed of it."""
        return max(status.exported, min(self.confirmed(uid), status.last_change))

    def store_alone(self, uid: str, status: ExecutionStatus, now: datetime) -> int | None:
        """The watermark to store with a write of its own now (`status` was read, nothing else to commit):
        at once for a finished execution, else once it waited `linger` for a commit to carry it."""
        track = self._tracks.get(uid)
        target = self.carried(uid, status)
        if track is None or target <= status.exported:
            return None
        if status.state.terminal or (track.confirmed_at is not None and now >= track.confirmed_at + self.linger):
            return target
        return None

    def due(self, now: datetime) -> list[Hashable]:
        """The executions to reconcile now so that they store their confirmed watermark (asked once each)."""
        keys = []
        for uid in list(self._unasked):
            track = self._tracks.get(uid)
            if track is None or not track.unstored or track.asked or track.confirmed_at is None:
                del self._unasked[uid]
                continue
            if track.terminal or now >= track.confirmed_at + self.linger:
                track.asked = True
                del self._unasked[uid]
                keys.append(track.key)
        return keys

    def next_moment(self) -> datetime | None:
        """When `take` or `due` may have something that they have not now (a retry, a watermark waiting)."""
        moments = list(self._waiting.values()) + list(self._ledger_retry_at.values())
        moments += [
            t.confirmed_at + self.linger
            for t in map(self._tracks.get, self._unasked)
            if t is not None and t.unstored and not t.asked and t.confirmed_at is not None
        ]
        return min(moments, default=None)

    def ready(self) -> bool:
        return bool(self._ready)

    # -- the ledger: one object per namespace storing the confirmed watermarks of many executions ---------------

    def _ledger_entries(self, track: _Track) -> dict[str, int]:
        return self._ledger.get(track.namespace or "", {})

    def _ledger_read(self, track: _Track) -> bool:
        """Whether the track may be planned: no ledger, or its namespace's ledger was read (or cannot be)."""
        ns = track.namespace
        return not self.ledger or ns is None or ns in self._ledger or ns in self._no_ledger

    def _to_ledger(self, track: _Track, uid: str) -> bool:
        """Put a running execution's confirmed watermark in its namespace's ledger (False: it is written
        alone: a finished execution, no ledger, or a full one)."""
        ns = track.namespace
        if not self.ledger or track.terminal or ns is None or ns in self._no_ledger or ns not in self._ledger:
            return False
        entries = self._ledger[ns]
        if uid not in entries and len(entries) >= self.ledger_max:
            return False
        entries[uid] = track.confirmed
        self._ledger_dirty[ns] = None
        return True

    def _ledger_caught_up(self, track: _Track, uid: str) -> None:
        """The status stores at least what the ledger holds: the entry goes (with the ledger's next write)."""
        entries = self._ledger_entries(track)
        if uid in entries and track.stored >= entries[uid]:
            del entries[uid]

    def _ledger_drop(self, uid: str, track: _Track | None) -> None:
        self._foreign.pop(uid, None)
        if track is not None:
            self._ledger_entries(track).pop(uid, None)

    def unread_ledgers(self, now: datetime) -> set[str]:
        """The namespaces whose ledger must be read now, before their executions' spans are planned (not those
        waiting to be read again after a failed read)."""
        if not self.ledger:
            return set()
        for ns, at in list(self._ledger_retry_at.items()):
            if at <= now:
                del self._ledger_retry_at[ns]
        tracks = (self._tracks.get(uid) for uid in self._ready)
        unread = {t.namespace for t in tracks if t is not None and t.namespace is not None and not self._ledger_read(t)}
        return unread - self._ledger_retry_at.keys()

    def ledger_unreadable(self, namespace: str, now: datetime) -> timedelta:
        """Reading the namespace's ledger failed (the API server away...): its executions' spans wait, and it is
        read again after a back-off, as a failed export is tried again. Returns that back-off."""
        failures = self._ledger_failures[namespace] = self._ledger_failures.get(namespace, 0) + 1
        delay = self._back_off(failures)
        self._ledger_retry_at[namespace] = now + delay
        return delay

    def _back_off(self, failures: int) -> timedelta:
        return timedelta(seconds=back_off(self.retry.total_seconds(), failures, self.max_retry.total_seconds()))

    def ledger_loaded(self, namespace: str, entries: dict[str, int] | None, now: datetime) -> None:
        """The namespace's ledger as read (None: it cannot be read, so none is kept there). What it holds was
        confirmed by an earlier process: not sent again, and carried by the next commit of each execution."""
        self._ledger_failures.pop(namespace, None)
        self._ledger_retry_at.pop(namespace, None)
        if entries is None:
            self._no_ledger.add(namespace)
            self._ledger_dirty.pop(namespace, None)
            for uid, track in self._tracks.items():  # confirmed meanwhile: written alone
                if track.namespace == namespace:
                    self._owe_own_write(uid, track, now)
            return
        held = self._ledger.setdefault(namespace, {})
        for uid, watermark in entries.items():
            found = self._tracks.get(uid)
            if found is None:
                held[uid] = max(held.get(uid, 0), watermark)
                self._foreign[uid] = (namespace, now)
            elif watermark > found.stored and not found.in_flight:
                held[uid] = max(held.get(uid, 0), found.confirmed, watermark)
                self._read_back(found, uid, watermark, now)

    def _read_back(self, track: _Track, uid: str, watermark: int, now: datetime) -> None:
        """A watermark an earlier process stored in the ledger: confirmed. A finished execution stores it in
        its status (no commit will carry it there), as if it had just been confirmed."""
        track.confirmed = max(track.confirmed, watermark)
        if track.terminal:
            self._owe_own_write(uid, track, now)

    def ledger_to_write(self, now: datetime) -> dict[str, dict[str, int]]:
        """The ledgers with entries not written yet, whole (entries whose execution never came are dropped)."""
        for uid, (ns, read) in list(self._foreign.items()):
            if now >= read + self.foreign_ttl:
                del self._foreign[uid]
                self._ledger.get(ns, {}).pop(uid, None)
        writes = {ns: dict(self._ledger.get(ns, {})) for ns in self._ledger_dirty}
        self._ledger_dirty.clear()
        return writes

    def ledger_written(self, namespace: str, entries: dict[str, int], ok: bool, now: datetime) -> None:
        """A ledger write's outcome: stored, nothing more is owed; failed, each of its executions stores its own."""
        if ok:
            return
        for uid in entries:
            track = self._tracks.get(uid)
            if track is not None:
                self._owe_own_write(uid, track, now)

    @staticmethod
    def _owes(track: _Track) -> bool:
        """A confirmed watermark not stored yet, and no write of its own asked for it yet."""
        return track.unstored and track.confirmed_at is None

    def _owe_own_write(self, uid: str, track: _Track, now: datetime) -> None:
        """If it `_owes`, the confirmed watermark is stored by a status write of its own (`store_alone`), asked
        for from now."""
        if self._owes(track):
            track.confirmed_at = now
            self._unasked[uid] = None

    def _settle(self, uid: str) -> None:
        """Keep only the last change of a settled execution (its status is the view's to hold)."""
        track = self._tracks.pop(uid)
        self._ledger_drop(uid, track)
        self._ready.pop(uid, None)
        self._waiting.pop(uid, None)
        self._unasked.pop(uid, None)
        self._settled[uid] = (track.key, track.last_change)

    def forget(self, key: Hashable) -> None:
        """The execution is gone (deleted): nothing of it is kept."""
        for uid in self._by_key.pop(key, set()):
            self._ledger_drop(uid, self._tracks.pop(uid, None))
            self._ready.pop(uid, None)
            self._waiting.pop(uid, None)
            self._unasked.pop(uid, None)
            self._settled.pop(uid, None)

    def __len__(self) -> int:
        return len(self._tracks)
