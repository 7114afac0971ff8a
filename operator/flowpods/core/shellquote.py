"""The `shellquote` template filter: a value made one literal word of a POSIX shell command.

A Shell task's `commands` are rendered, then run by `/bin/sh`. A value interpolated as it is, such as
`echo {{ inputs.name }}`, lets whoever supplies the input (an API caller, a webhook) run commands:
`x; rm -rf ~`. `{{ inputs.name | shellquote }}` renders it single-quoted (`'x; rm -rf ~'`), so the shell
sees one word whatever it holds. Values that are not text are quoted as their JSON.
"""

from __future__ import annotations

import json
import shlex
from typing import Any


def shellquote(value: Any) -> str:
    """`value` as one single-quoted shell word; a NUL character, which no shell argument can hold, is refused."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    if "\x00" in text:
        raise ValueError("a NUL character cannot be passed to a shell")
    return shlex.quote(text)
