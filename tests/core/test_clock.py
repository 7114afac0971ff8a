"""The back-off every retry loop of the operator uses (core/clock.py)."""

from __future__ import annotations

from flowpods.core.clock import back_off


def test_the_back_off_doubles_from_its_first_wait_to_its_limit() -> None:
    assert [back_off(0.5, n, 10) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert back_off(5.0, 0, 60) == 5.0, "no failure counted yet: the first wait"


def test_no_count_of_failures_overflows_it() -> None:
    """A retry loop that keeps failing (a collector away for hours) keeps its limit: `first * 2 ** n` overflowed
    a timedelta at n = 48 and a float at n = 1024."""
    assert back_off(0.5, 49, 10) == 10 and back_off(5.0, 2_000, 60) == 60 and back_off(5.0, 10**9, 60) == 60
