"""Regular expressions written by flow authors (input `validator`s), matched in linear time.

A validator is untrusted: Python's `re` backtracks, so `(a+)+$` against 30 characters takes seconds and
a longer value takes forever, on whatever thread matches it. RE2 (google-re2) matches in time linear in
the input and bounds the memory of a compiled pattern, so no pattern and no value can stall the operator.

RE2's syntax is Perl's and Java's without backreferences (`\\1`) and lookaround (`(?=...)`, `(?<!...)`);
a validator using them is refused when the flow is validated, with RE2's reason.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_PATTERN_LENGTH = 1000
"""Characters a validator may have."""

MAX_PROGRAM_MEMORY = 1 << 20
"""Bytes RE2 may use for one compiled validator (a{1000}{1000} needs more and is refused)."""


class PatternError(ValueError):
    """A validator is not a regular expression RE2 accepts; the message names it and says why."""


def _options() -> Any:
    import re2  # imported on first use: most runs never match one, and each process would pay ~5 ms at start

    options = re2.Options()
    options.log_errors = False  # RE2 would print every bad pattern on stderr
    options.max_mem = MAX_PROGRAM_MEMORY
    return options


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The compiled validator; PatternError when RE2 refuses it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    import re2

    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"'{pattern}' is not a valid regular expression: {reason}") from None


def fullmatch(pattern: str, value: str) -> bool:
    """Whether the whole of `value` matches `pattern` (linear in len(value))."""
    return compile_pattern(pattern).fullmatch(value) is not None
