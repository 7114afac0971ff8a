"""Kestra's script conventions, as pure functions: what a script task runs, and what its output lines mean.

Kestra's script tasks (shell and python, Script and Commands) run `beforeCommands` then the commands through
`interpreter` (default `/bin/sh -c`). A line `::{...}::` on stdout or stderr is a message to Kestra, not
log text: `{"outputs": {...}}` adds to the task's `vars` outputs, `{"metrics": [...]}` records metrics,
`{"logs": [{"level": ..., "message": ...}]}` logs at that level.

In a task's own `containerImage` the commands run through LAUNCHER, a POSIX shell script that uses only
shell builtins (so an image needs only `/bin/sh`); the worker beside it relays and parses the output.
"""

from __future__ import annotations

import json
import shlex
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowpods.core.model import Python, PythonCommands, ScriptTask, Shell, ShellScript

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
SCRIPT_FILE = {Python: ".flowpods-script.py", ShellScript: ".flowpods-script.sh"}
# in an image of the user's: whichever Python it has (Debian's is `python3`, python:3.x also has `python`)
IMAGE_PYTHON = '"$(command -v python3 || command -v python)"'
STDERR_TAIL_LINES = 10
STDERR_TAIL_CHARS = 1500


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    value: float
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Convention:
    """What one `::{...}::` line said."""

    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    logs: tuple[tuple[str, str], ...] = ()


def _metric(raw: Any) -> Metric | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    tags: dict[Any, Any] = raw["tags"] if isinstance(raw.get("tags"), dict) else {}
    kind = str(raw.get("type") or "counter")
    return Metric(raw["name"], kind, float(value), {str(k): str(v) for k, v in tags.items()})


def _log(raw: Any) -> tuple[str, str] | None:
    if not isinstance(raw, dict) or "message" not in raw:
        return None
    level = str(raw.get("level") or "INFO").upper()
    level = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}.get(level, level)
    return (level if level in LEVELS else "INFO", str(raw["message"]))


def parse_convention_line(line: str) -> Convention | None:
    """The message of a `::{...}::` line (outputs, metrics, logs); None when the line is ordinary output."""
    text = line.strip()
    if len(text) < 5 or not (text.startswith("::{") and text.endswith("}::")):
        return None
    try:
        data = json.loads(text[2:-2])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not {"outputs", "metrics", "logs"} & data.keys():
        return None
    outputs: dict[str, Any] = data["outputs"] if isinstance(data.get("outputs"), dict) else {}
    metrics = [m for m in map(_metric, data.get("metrics") or []) if m is not None]
    logs = [entry for entry in map(_log, data.get("logs") or []) if entry is not None]
    return Convention(outputs=dict(outputs), metrics=tuple(metrics), logs=tuple(logs))


def script_file(task: ScriptTask) -> tuple[str, str] | None:
    """(file name, content) of a Script task's script, written in the working directory."""
    name = SCRIPT_FILE.get(type(task))
    if name is None:
        return None
    assert isinstance(task, Python | ShellScript)
    return name, task.script


def command_lines(task: ScriptTask, python: str) -> list[str]:
    """The shell lines the interpreter runs: `set -e`, beforeCommands, then the task's commands.

    `python` is how to call Python (a quoted path, or IMAGE_PYTHON in a user's image).
    """
    if isinstance(task, Shell | PythonCommands):
        main = list(task.commands)
    elif isinstance(task, Python):
        main = [f"exec {python} {SCRIPT_FILE[Python]}"]
    elif isinstance(task, ShellScript):
        main = [f"exec /bin/sh {SCRIPT_FILE[ShellScript]}"]
    else:  # pragma: no cover - every ScriptTask is one of the four
        raise TypeError(type(task).__name__)
    return ["set -e", *task.beforeCommands, *main]


def command_argv(task: ScriptTask, python: str) -> list[str]:
    """The process to start: the interpreter with the commands as its last argument (Kestra's convention)."""
    return [*task.interpreter, "\n".join(command_lines(task, python))]


class StderrTail:
    """The last lines of stderr, for a failure message: whole lines, at most STDERR_TAIL_CHARS in all."""

    def __init__(self, lines: int = STDERR_TAIL_LINES, chars: int = STDERR_TAIL_CHARS):
        self._lines: deque[str] = deque(maxlen=lines)
        self._chars = chars

    def add(self, line: str) -> None:
        if line.strip():
            self._lines.append(line)

    def text(self) -> str:
        kept: list[str] = []
        size = 0
        for line in reversed(self._lines):
            if len(line) > self._chars:
                line = "..." + line[-(self._chars - 3) :]
            cost = len(line) + (1 if kept else 0)
            if size + cost > self._chars:
                break
            kept.insert(0, line)
            size += cost
        return "\n".join(kept)


def failure_message(code: int, stderr_tail: str) -> str:
    message = f"Command failed with exit code {code}"
    return f"{message}; the last lines of stderr:\n{stderr_tail}" if stderr_tail else message


# --- a task in the user's own image ----------------------------------------------------------------------

ATTACHED_DIR = "/flowpods"

# Run by the task container (the user's image) as `/bin/sh /flowpods/launch.sh`. Builtins only: the image
# may have nothing but a shell. The worker beside it (a native sidecar in the same pod, sharing its process
# namespace) opens `go` once env.sh is written, reads `out` and `err`, and, once the result is written,
# opens `done`; the result then becomes this container's termination message and its exit code.
LAUNCHER = r"""#!/bin/sh
# flowpods launcher: runs a script task's commands in the task's own image (shell builtins only)
D="${FLOWPODS_DIR:-/flowpods}"
read -r _ < "$D/go" || exit 125
. "$D/env.sh"
cd "$D/work" || exit 125
killed=
trap 'killed=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
"$@" < /dev/null > "$D/out" 2> "$D/err" &
child=$!
[ -n "$killed" ] && kill -TERM "$child" 2>/dev/null  # SIGTERM came before $child was set: pass it on now
echo "$child" > "$D/pid"
code=0
wait "$child" || code=$?
while kill -0 "$child" 2>/dev/null; do code=0; wait "$child" || code=$?; done
if [ -n "$killed" ]; then echo "$code killed" > "$D/status"; exit 143; fi
echo "$code" > "$D/status"
read -r _ < "$D/done"
result=
[ -f "$D/result" ] && read -r result < "$D/result"
printf '%s' "$result" > "${FLOWPODS_TERMINATION_LOG:-/dev/termination-log}"
rc=1
[ -f "$D/code" ] && read -r rc < "$D/code"
exit "$rc"
"""


def env_script(env: Mapping[str, str], argv: list[str]) -> str:
    """env.sh, sourced by LAUNCHER: the task's environment exported, and its command as "$@"."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items() if name.isidentifier()]
    lines.append("set -- " + " ".join(shlex.quote(arg) for arg in argv))
    return "\n".join(lines) + "\n"
