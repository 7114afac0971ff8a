"""A script task in its own image: the real launcher under dash with no PATH (shell builtins only), beside
the real worker sidecar (`prepare` then `relay`), talking through real FIFOs, as the three containers of the
pod do (kube.resources.attach_to_own_image)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowpods.core.records import SpanRecord, TaskResult
from flowpods.core.results import parse_termination_message
from flowpods.telemetry.span_file import read_span_file
from flowpods.worker import attached
from flowpods.worker.runner import EXIT_CANCELLED, EXIT_FAILURE, EXIT_SUCCESS, EXIT_TIMEOUT

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TASKRUN_SPAN = "b7ad6b7169203331"
SHELL = shutil.which("dash") or "/bin/sh"


@dataclass
class Run:
    launcher_code: int
    relay_code: int | None
    result: TaskResult
    log: str
    span: SpanRecord | None
    directory: Path

    def messages(self) -> list[str]:
        return [line.partition("] t1: ")[2] for line in self.log.splitlines()]


LAUNCHED: list[int] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A failed test may leave the user's busy loop running: it would hold a CPU, and the relay's FIFO, for good."""
    yield
    while LAUNCHED:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(LAUNCHED.pop(), signal.SIGKILL)


def item(task_type: str, task: dict[str, Any], **fields: Any) -> str:
    return json.dumps({
        "executionId": "exec-1", "namespace": "company.team", "flowId": "f", "taskRunId": "tr-1", "taskId": "t1",
        "attempt": 1, "taskType": task_type, "task": task, **fields,
    })  # fmt: skip


def run_beside(tmp_path: Path, work: str, *, on_start: Any = None, path: str = "/nonexistent") -> Run:
    directory = tmp_path / "flowpods"
    directory.mkdir()
    spans = tmp_path / "spans.jsonl"
    environ = {
        "FLOWPODS_TASKRUN": work,
        "FLOWPODS_SPAN_FILE": str(spans),
        "TRACEPARENT": f"00-{TRACE_ID}-{TASKRUN_SPAN}-01",
    }
    assert attached.prepare(directory, environ) == 0
    log = io.StringIO()
    codes: list[int] = []
    # a daemon: a relay still blocked on a FIFO (a test that failed) must not hold pytest's exit
    sidecar = threading.Thread(
        target=lambda: codes.append(attached.relay(directory, environ, log, stay=False)), daemon=True
    )
    sidecar.start()
    termination = tmp_path / "termination-log"
    launcher = subprocess.Popen(
        [SHELL, str(directory / "launch.sh")],
        env={"FLOWPODS_DIR": str(directory), "FLOWPODS_TERMINATION_LOG": str(termination), "PATH": path},
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        if on_start is not None:
            on_start(launcher, directory)
        code = launcher.wait(timeout=120)
    finally:
        LAUNCHED.append(launcher.pid)  # its process group is killed after the test's own checks
        if launcher.poll() is None:
            launcher.kill()
    sidecar.join(timeout=30)
    raw = termination.read_text() if termination.exists() else ""
    result = parse_termination_message(raw, code).model_copy(update={"endedAt": None})
    found = read_span_file(spans) if spans.exists() else []
    return Run(code, codes[0] if codes else None, result, log.getvalue(), found[0] if found else None, directory)


def test_outputs_on_both_streams_the_outputs_file_before_commands_env_and_input_files(tmp_path: Path) -> None:
    commands = [
        """echo '::{"outputs": {"fromStdout": 1}}::'""",
        """echo '::{"outputs": {"fromStderr": 2}}::' >&2""",
        """printf '{"fromFile": "%s"}' "$GREETING" > "$FLOWPODS_OUTPUTS" """,
        'read -r line < data/in.txt || [ -n "$line" ]; echo "input: $line"',
        'echo "before: $BEFORE"',
        'echo "traceparent: $TRACEPARENT"',
        "echo warning-text >&2",
    ]
    task = {"commands": commands, "beforeCommands": ["BEFORE=ran"], "env": {"GREETING": "hi 'there'"},
            "inputFiles": {"data/in.txt": "the data"}}  # fmt: skip
    run = run_beside(tmp_path, item("io.kestra.plugin.scripts.shell.Commands", task))
    assert run.launcher_code == EXIT_SUCCESS and run.relay_code == EXIT_SUCCESS, run.log
    assert run.result.outputs == {
        "exitCode": 0, "vars": {"fromStdout": 1, "fromStderr": 2, "fromFile": "hi 'there'"},
    }  # fmt: skip
    assert run.span is not None and run.span.parent_span_id == TASKRUN_SPAN
    assert run.span.attributes["process.exit.code"] == 0
    messages = run.messages()
    assert "input: the data" in messages and "before: ran" in messages
    assert f"traceparent: 00-{TRACE_ID}-{run.span.span_id}-01" in messages  # the user's process is in WORKER
    assert any(line.split()[1] == "WARN" and line.endswith("t1: warning-text") for line in run.log.splitlines())
    assert not any("::" in m for m in messages)


def test_a_failing_command_with_its_reason(tmp_path: Path) -> None:
    task = {"commands": ["echo 'cannot open the thing' >&2", "exit 3", "echo never"]}
    run = run_beside(tmp_path, item("Shell", task))
    assert run.launcher_code == EXIT_FAILURE
    assert run.result.error == "Command failed with exit code 3; the last lines of stderr:\ncannot open the thing"
    assert run.result.outputs == {}
    # the WORKER span goes back through the launcher's termination message, for the operator to export
    assert run.span is not None and [span.span_id for span in run.result.spans] == [run.span.span_id]
    assert "never" not in run.messages()
    assert run.span is not None and run.span.status == "ERROR" and run.span.attributes["process.exit.code"] == 3


def test_a_timeout_kills_the_users_processes(tmp_path: Path) -> None:
    task = {"commands": ["echo started; echo 'still going' >&2", "while :; do :; done"]}
    run = run_beside(tmp_path, item("Shell", task, timeoutSeconds=1))  # only the timeout can end it
    assert run.launcher_code == EXIT_TIMEOUT
    assert (
        run.result.error
        == "timed out after 1s; the task's processes were killed; the last lines of stderr:\nstill going"
    )
    assert run.span is not None and run.span.attributes["cicd.pipeline.task.run.result"] == "timeout"
    child = int((run.directory / "pid").read_text())
    assert not Path(f"/proc/{child}").exists()


def test_sigterm_to_the_task_container_stops_the_users_process(tmp_path: Path) -> None:
    """A deleted pod: the kubelet sends SIGTERM to the task container's launcher, which passes it on."""

    def terminate_once_running(launcher: subprocess.Popen[bytes], directory: Path) -> None:
        while not (directory / "work" / "running").exists():
            assert launcher.poll() is None
        launcher.send_signal(signal.SIGTERM)

    task = {"commands": [": > running", "while :; do :; done"]}
    run = run_beside(tmp_path, item("Shell", task), on_start=terminate_once_running)
    assert run.launcher_code == 143
    child = int((run.directory / "pid").read_text())
    assert not Path(f"/proc/{child}").exists()
    assert run.relay_code == EXIT_CANCELLED  # and hands nothing over: the pod is going away
    assert run.span is not None and run.span.attributes["cicd.pipeline.task.run.result"] == "cancellation"
    assert (
        run.span.status_message
        == "cancelled: the task container received SIGTERM; its command ended with exit code 143"
    )


def test_a_python_script_in_an_image_whose_python_is_python3(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.realpath(sys.executable), bin_dir / "python3")  # the image has `python3` only
    script = "import os, json\nprint('::' + json.dumps({'outputs': {'tp': os.environ['TRACEPARENT']}}) + '::')"
    run = run_beside(tmp_path, item("io.kestra.plugin.scripts.python.Script", {"script": script}), path=str(bin_dir))
    assert run.launcher_code == EXIT_SUCCESS, run.log
    assert run.span is not None
    assert run.result.outputs == {"exitCode": 0, "vars": {"tp": f"00-{TRACE_ID}-{run.span.span_id}-01"}}


def test_a_restarted_sidecar_does_not_run_the_task_again(tmp_path: Path) -> None:
    (tmp_path / "result").write_text("{}\n")
    spans = tmp_path / "spans.jsonl"
    environ = {"FLOWPODS_TASKRUN": item("Shell", {"commands": ["true"]}), "FLOWPODS_SPAN_FILE": str(spans)}
    assert attached.relay(tmp_path, environ, io.StringIO(), stay=False) == 0
    assert not spans.exists()


@pytest.mark.parametrize("task_type", ["Log"])
def test_only_script_tasks_run_beside_their_image(tmp_path: Path, task_type: str) -> None:
    environ = {"FLOWPODS_TASKRUN": item(task_type, {"message": "m"})}
    assert attached.prepare(tmp_path, environ) == 2
