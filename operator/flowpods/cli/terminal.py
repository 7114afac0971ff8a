"""Text from flows and tasks made safe for a terminal."""

from __future__ import annotations

import re

# control characters other than tab (ANSI escape sequences start with ESC, 0x1b): a task's output must not
# move the cursor, recolour, retitle or clear the user's terminal
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character shown as a `\\x1b`-style escape (a newline too: one line stays one)."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
