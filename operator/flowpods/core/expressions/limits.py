"""Bounds on what one rendering may cost: loop items, output size and time.

A template is user input: two nested `range(100000)` loops or a string doubled in a loop must end with a
clear RenderError naming the limit, never hang a reconcile thread or exhaust memory. The budget is held in
a context variable for the duration of one `render_string` call; the syntax translator routes every loop,
range, concatenation and multiplication through helpers that charge it, and the output is checked as it is
produced. Time is a CPU guard only, it never changes what a template renders to: the CPU time of the
rendering thread, not the wall clock, so that a rendering on a busy machine (a thread waiting for a core or
for the GIL while 30 others run) is not cut short, while two nested loops still end within the bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "MAX_ITERATIONS", "MAX_NESTING", "MAX_OUTPUT", "MAX_RANGE", "MAX_SECONDS", "Budget", "LimitExceeded", "budget",
    "charge", "nested",
]  # fmt: skip

MAX_RANGE = 10_000  # items in one range(), a..b
MAX_ITERATIONS = 100_000  # loop iterations in one rendering, all loops together
MAX_OUTPUT = 1_048_576  # characters of one rendered string (or any string built while rendering)
MAX_SECONDS = 2.0  # CPU time of one rendering (the rendering thread's)


class LimitExceeded(Exception):
    """A rendering went over one of its limits; the message names the limit."""


@dataclass
class Budget:
    deadline: float
    iterations: int = 0
    nesting: int = 0  # render() inside render()

    def tick(self, items: int = 1) -> None:
        self.iterations += items
        if self.iterations > MAX_ITERATIONS:
            raise LimitExceeded(f"more than {MAX_ITERATIONS} loop iterations (limit MAX_ITERATIONS)")
        self.check_time()

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise LimitExceeded(f"rendering took more than {MAX_SECONDS:g}s of CPU time (limit MAX_SECONDS)")


_current: ContextVar[Budget | None] = ContextVar("flowpods_render_budget", default=None)


@contextmanager
def budget() -> Iterator[Budget]:
    """One budget for a rendering; nested renderings (render()) share the outer one."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    current = Budget(deadline=time.thread_time() + MAX_SECONDS)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


MAX_NESTING = 10  # render() calls inside one another


@contextmanager
def nested() -> Iterator[None]:
    """One more level of render() inside render(); Kestra refuses a circular render the same way."""
    current = _current.get()
    if current is None:
        yield
        return
    if current.nesting >= MAX_NESTING:
        raise LimitExceeded(f"Maximum render() nesting depth of {MAX_NESTING} reached (limit MAX_NESTING)")
    current.nesting += 1
    try:
        yield
    finally:
        current.nesting -= 1


def charge(items: int = 1) -> None:
    current = _current.get()
    if current is not None:
        current.tick(items)


def check_size(length: int, what: str = "a string") -> None:
    if length > MAX_OUTPUT:
        raise LimitExceeded(f"{what} longer than {MAX_OUTPUT} characters (limit MAX_OUTPUT)")


def check_range(count: int) -> None:
    if count > MAX_RANGE:
        raise LimitExceeded(f"a range of {count} items, more than {MAX_RANGE} (limit MAX_RANGE)")
