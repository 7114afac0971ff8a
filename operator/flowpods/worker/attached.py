"""A script task in its own `containerImage`: the worker runs beside the user's container, not inside it.

The pod (see kube.resources) shares one emptyDir, DIR, between three containers:
- `prepare` (init container, flowpods image): `flowpods worker --prepare DIR` writes the launcher, the
  task's files and the FIFOs the other two talk through;
- `worker` (native sidecar, flowpods image): `flowpods worker --relay DIR` starts the WORKER span, writes
  env.sh (the task's env, TRACEPARENT of the WORKER span, the command), lets the launcher go, relays the
  user process's stdout and stderr (the task's log lines, Kestra's `::{...}::` messages), enforces the
  timeout, then hands the result to the launcher;
- `task` (the user's image, unchanged): `/bin/sh DIR/launch.sh` runs the command with shell builtins only,
  and makes the worker's result its termination message and exit code, which the operator reads as usual.
The pod shares its process namespace so the worker can kill the user's processes on a timeout.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from flowpods.core.model import ScriptTask, TaskBase
from flowpods.core.records import OUTPUTS_ENV, TaskResult
from flowpods.core.scripts import IMAGE_PYTHON, LAUNCHER, command_argv, env_script
from flowpods.worker import runner
from flowpods.worker.runner import (
    EXIT_INVALID,
    Cancelled,
    Context,
    InvalidWorkItem,
    ScriptOutput,
    encode_result,
    stderr_level,
    trace_env,
    write_input_files,
)

FIFOS = ("go", "out", "err", "done")
OUTPUTS_FILE = "outputs.json"
HANDOFF_SECONDS = 10.0  # how long the worker waits for the launcher to take its result
POLL = 0.02


def prepare(directory: Path, environ: Mapping[str, str] = os.environ) -> int:
    """The init container: the launcher, the FIFOs and the task's files in DIR (exit 2 for a bad task run)."""
    try:
        item = runner.load_work_item(None, environ)
        task = runner.validate_task(item)
    except InvalidWorkItem as exc:
        print(f"flowpods worker: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not isinstance(task, ScriptTask):
        print(f"flowpods worker: {item.taskType} does not run in its own image", file=sys.stderr)
        return EXIT_INVALID
    for name in FIFOS:
        os.mkfifo(directory / name, 0o600)
    (directory / "launch.sh").write_text(LAUNCHER, encoding="utf-8")
    (directory / OUTPUTS_FILE).touch(mode=0o600)
    work = directory / "work"
    work.mkdir(exist_ok=True)
    write_input_files(task, work)
    return 0


def _descendants(root: int) -> list[int]:
    """`root` and every process under it (the pod shares one process namespace)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _read_line(path: Path) -> str | None:
    with suppress(OSError):
        text = path.read_text()
        if text.endswith("\n"):
            return text.strip()
    return None


def kill_user_process(directory: Path) -> None:
    pid = _read_line(directory / "pid")
    if pid and pid.isdigit():
        for each in _descendants(int(pid)):
            with suppress(OSError):
                os.kill(each, signal.SIGKILL)


def _run_attached(directory: Path, task: ScriptTask, ctx: Context) -> dict[str, Any]:
    env = {**task.env, OUTPUTS_ENV: str(directory / OUTPUTS_FILE), **trace_env()}  # the WORKER span is current
    (directory / "env.sh").write_text(env_script(env, command_argv(task, IMAGE_PYTHON)), encoding="utf-8")
    output = ScriptOutput(ctx, stderr_level(task))
    deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
    with open(directory / "go", "w") as go:  # waits for the launcher
        go.write("go\n")

    def opener(name: str) -> Any:
        return lambda: open(directory / name, "rb")

    relays = output.start([(opener("out"), False), (opener("err"), True)])
    status = directory / "status"
    while (code := _read_line(status)) is None:
        if deadline is not None and time.monotonic() > deadline:
            kill_user_process(directory)
            for thread in relays:
                thread.join(timeout=5)
            raise output.timed_out(f"timed out after {ctx.timeout:g}s; the task's processes were killed")
        time.sleep(POLL)
    for thread in relays:
        thread.join(timeout=5)
    number, _, killed = code.partition(" ")
    if killed:  # the task container got SIGTERM (the pod is being deleted): its launcher takes no result
        raise Cancelled(f"the task container received SIGTERM; its command ended with exit code {number}")
    return output.result(int(number) if number.lstrip("-").isdigit() else 1, directory / OUTPUTS_FILE)


def _hand_over(directory: Path, text: str, code: int) -> None:
    """The result for the launcher, which waits on `done` (given up after HANDOFF_SECONDS: it is gone)."""
    (directory / "result").write_text(text.replace("\n", " ") + "\n", encoding="utf-8")
    (directory / "code").write_text(f"{code}\n", encoding="utf-8")
    until = time.monotonic() + HANDOFF_SECONDS
    while time.monotonic() < until:
        try:
            fd = os.open(directory / "done", os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(POLL)
            continue
        with suppress(OSError):
            os.write(fd, b"done\n")
        os.close(fd)
        return


def _until_terminated(code: int) -> int:
    """A native sidecar that exits is restarted: once its work is done, it waits for the pod's SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(code))
    while True:
        signal.pause()


def relay(
    directory: Path, environ: Mapping[str, str] = os.environ, stream: IO[str] = sys.stdout, stay: bool = True
) -> int:
    """The native sidecar: run the attempt under its WORKER span, the process being in the task container."""
    if (directory / "result").exists():  # restarted after its work was done: nothing to run twice
        return _until_terminated(0) if stay else 0
    try:
        item = runner.load_work_item(None, environ)
    except InvalidWorkItem as exc:
        print(f"flowpods worker: {exc}", file=sys.stderr)
        _hand_over(directory, encode_result(TaskResult(error=str(exc)))[1], EXIT_INVALID)
        return EXIT_INVALID
    task_runner: Any = lambda task, ctx: _run_attached(directory, task, ctx)  # noqa: E731
    runners: dict[type[TaskBase], Any] = {cls: task_runner for cls in runner.script_classes()}
    text, code, left = runner.attempt(item, environ, stream, runners)
    if code == runner.EXIT_CANCELLED:  # the pod is going away, the launcher with it: the spans go from here
        if left:
            runner.export_live(left, environ)
        return code
    _hand_over(directory, text, code)
    if left:  # those that did not fit in the result
        runner.export_live(left, environ)
    return _until_terminated(code) if stay else code
