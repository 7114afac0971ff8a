"""Flow concurrency limits: which executions hold one of a flow's places, and who may take a free one.

The operator's view of the cluster lags behind its own decisions, so an execution let run is `admitted`
until the view shows it running; ended executions give their place back. Waiting executions take free
places oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flowpods.core.status import State


@dataclass(frozen=True)
class Seat:
    """One execution of a flow as the view shows it (`state` None: not started yet)."""

    name: str
    created: str
    state: State | None


@dataclass(frozen=True)
class Places:
    holding: frozenset[str]
    ended: frozenset[str]  # admitted earlier, now ended: they no longer need remembering


def places(seats: Iterable[Seat], admitted: Iterable[str]) -> Places:
    """Executions that hold a place: running in the view, or admitted but not yet seen running; ended ones do not."""
    seats = list(seats)
    ended = {seat.name for seat in seats if seat.state is not None and seat.state.terminal}
    running = {seat.name for seat in seats if seat.state is not None and not seat.state.terminal
               and seat.state != State.QUEUED}  # fmt: skip
    return Places(holding=frozenset((running | set(admitted)) - ended), ended=frozenset(ended))


def admits(name: str, seats: Iterable[Seat], holding: frozenset[str], limit: int) -> bool:
    """An execution may run if it holds a place, or a place is free and it is among the oldest that wait for one."""
    if name in holding:
        return True
    free = limit - len(holding)
    waiting = sorted((seat.created, seat.name) for seat in seats if seat.state in (None, State.QUEUED))
    first = [n for _, n in waiting[:free]] if waiting else [name]
    return free > 0 and name in first
