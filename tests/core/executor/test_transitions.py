"""The table from event type to transition (flowpods.core.executor.transitions)."""

from __future__ import annotations

import typing

import pytest

from flowpods.core.executor import Event, Start, advance, transitions
from flowpods.core.executor.messages import EventBase
from flowpods.core.executor.step import Step
from flowpods.core.status import ExecutionStatus, State
from tests.core.simulation import RUN, T0, log, make_flow


def event_types() -> list[type]:
    union = typing.get_args(Event)[0]
    return list(typing.get_args(union))


class TestTheTable:
    def test_every_event_type_has_exactly_one_transition(self) -> None:
        assert set(transitions.TRANSITIONS) == set(event_types())

    def test_an_event_type_without_a_transition_fails_loudly(self) -> None:
        class Unknown(EventBase):
            kind: str = "unknown"

        step = Step(make_flow([log("a")]), RUN, ExecutionStatus(), T0)
        with pytest.raises(TypeError, match="no transition for Unknown"):
            transitions.apply(step, Unknown(at=T0))


class TestStart:
    def test_a_start_replayed_changes_nothing(self) -> None:
        flow = make_flow([log("a")])
        first = advance(flow, RUN, None, [Start(at=T0)], T0)
        again = advance(flow, RUN, first.status, [Start(at=T0)], T0)
        assert not again.changed and again.actions == [] and again.status == first.status

    def test_invalid_inputs_fail_the_execution_before_anything_runs(self) -> None:
        flow = make_flow([log("a")], inputs=[{"id": "n", "type": "INT"}])
        decision = advance(flow, RUN, None, [Start(at=T0, inputs={"n": "x"})], T0)
        assert decision.status.state == State.FAILED and decision.actions == []
        assert (decision.status.error or "").startswith("invalid inputs")

    def test_a_queued_start_waits_and_an_admit_runs_it(self) -> None:
        flow = make_flow([log("a")])
        queued = advance(flow, RUN, None, [Start(at=T0, queued=True)], T0)
        assert queued.status.state == State.QUEUED and queued.actions == []
        admitted = advance(flow, RUN, queued.status, [transitions.Admit(at=T0)], T0)
        assert admitted.status.state == State.RUNNING and len(admitted.actions) == 1
