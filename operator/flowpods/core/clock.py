"""Time for the adapters, and durations for people.

The core never reads the clock: every decision takes `now`. `utcnow` is the one clock the adapters read.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def back_off(first: float, failures: int, most: float) -> float:
    """Seconds to wait after `failures` failures in a row: `first`, doubled after each one, at most `most`.
    The doublings are bounded, so no count of failures overflows (a timedelta doubled 48 times did, in the
    span export thread after ~8 min of a collector away)."""
    return min(first * (1 << min(max(failures - 1, 0), 30)), most)


def format_duration(seconds: float) -> str:
    """A duration as people read it: 850ms, 12.34s, 3m07.5s, 2h05m07s."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes:02d}m{int(rest):02d}s" if hours else f"{minutes}m{rest:04.1f}s"
