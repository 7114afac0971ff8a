"""Flow concurrency places (flowpods.core.admission)."""

from __future__ import annotations

from flowpods.core.admission import Seat, admits, places
from flowpods.core.status import State

RUNNING, QUEUED, DONE = State.RUNNING, State.QUEUED, State.SUCCESS


class TestPlaces:
    def test_running_executions_hold_a_place_and_queued_ones_do_not(self) -> None:
        seats = [Seat("a", "1", RUNNING), Seat("b", "2", QUEUED), Seat("c", "3", None)]
        assert places(seats, admitted=set()).holding == {"a"}

    def test_an_admitted_execution_holds_its_place_before_the_view_shows_it_running(self) -> None:
        assert places([Seat("b", "2", QUEUED)], admitted={"b"}).holding == {"b"}

    def test_an_ended_execution_gives_its_place_back_even_if_admitted(self) -> None:
        taken = places([Seat("a", "1", DONE)], admitted={"a"})
        assert taken.holding == frozenset() and taken.ended == {"a"}


class TestAdmits:
    def test_an_execution_holding_a_place_keeps_it(self) -> None:
        assert admits("a", [Seat("a", "1", RUNNING)], frozenset({"a"}), limit=1)

    def test_free_places_go_to_the_oldest_waiting_first(self) -> None:
        seats = [Seat("old", "1", QUEUED), Seat("new", "2", None), Seat("run", "0", RUNNING)]
        assert admits("old", seats, frozenset({"run"}), limit=2)
        assert not admits("new", seats, frozenset({"run"}), limit=2)
        assert admits("new", seats, frozenset({"run"}), limit=3)

    def test_no_place_is_free_at_the_limit(self) -> None:
        assert not admits("b", [Seat("a", "1", RUNNING), Seat("b", "2", None)], frozenset({"a"}), limit=1)

    def test_an_execution_not_yet_in_the_view_may_take_a_free_place(self) -> None:
        assert admits("unseen", [], frozenset(), limit=1)
