"""The local runner's warm worker processes: forked from one pre-imported server, still one process per
attempt, each with its own environment, directory and log, and a kill that ends exactly one attempt."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from flowpods.core.records import TASKRUN_ENV, TERMINATION_LOG_ENV, WorkItem
from flowpods.local import warm
from tests.testenv import wait_for


def item(task_id: str, task_type: str, task: dict) -> str:
    return WorkItem(executionId="e", namespace="n", flowId="f", taskRunId=f"tr-{task_id}", taskId=task_id,
                    attempt=1, taskType=task_type, task=task).model_dump_json()  # fmt: skip


def attempt(tmp_path: Path, name: str, work: str, **extra: str) -> tuple[warm.WorkerProcess, Path, Path]:
    result, log = tmp_path / f"{name}.result", tmp_path / f"{name}.log"
    env = {"PATH": os.environ["PATH"], TASKRUN_ENV: work, TERMINATION_LOG_ENV: str(result),
           "FLOWPODS_TRACES": "DISABLED", **extra}  # fmt: skip
    return warm.WorkerProcess(["worker"], env, tmp_path, log), result, log


def test_each_attempt_is_a_process_of_its_own_and_a_kill_ends_only_it(tmp_path: Path) -> None:
    sleeper, sleeper_result, sleeper_log = attempt(tmp_path, "sleeper", item("nap", "Sleep", {"duration": "PT60S"}))
    script = item("env", "io.kestra.plugin.scripts.shell.Commands",
                  {"commands": ['echo "mine=$MINE pwd=$(pwd)"', "echo oops >&2"]})  # fmt: skip
    shell, shell_result, shell_log = attempt(tmp_path, "shell", script, MINE="one")
    assert shell.wait(120) == 0, shell_log.read_text()
    assert sleeper.poll() is None, "the other attempt runs on"
    assert sleeper.pid != shell.pid and sleeper.pid != os.getpid()
    text = shell_log.read_text()
    assert "mine=one" in text, "the attempt's own environment"
    assert "oops" in text, "its stderr goes to its log too"
    assert json.loads(shell_result.read_text())["outputs"]["exitCode"] == 0

    # a SIGTERM before the attempt began is a kill of its process, not a cancel
    wait_for(lambda: "attempt 1 of task run tr-nap" in sleeper_log.read_text(), 60, "the sleeper's start", 0.05)
    sleeper.terminate()
    assert sleeper.wait(60) == 143, "SIGTERM cancels the attempt as in a pod (exit 128 + 15)"
    assert "cancelled" in json.loads(sleeper_result.read_text())["error"]
    sleeper.kill()  # once it ended, nothing is signalled (its pid may be someone else's by now)


def test_the_next_attempt_does_not_see_the_previous_ones_environment(tmp_path: Path) -> None:
    script = item("env", "io.kestra.plugin.scripts.shell.Commands", {"commands": ['echo "mine=${MINE:-unset}"']})
    first, _, first_log = attempt(tmp_path, "first", script, MINE="one")
    assert first.wait(120) == 0, first_log.read_text()
    second, _, second_log = attempt(tmp_path, "second", script)
    assert second.wait(120) == 0, second_log.read_text()
    assert "mine=one" in first_log.read_text()
    assert "mine=unset" in second_log.read_text()


def test_a_killed_attempt_reports_the_signal_as_subprocess_does(tmp_path: Path) -> None:
    sleeper, result, _ = attempt(tmp_path, "killed", item("nap", "Sleep", {"duration": "PT60S"}))
    sleeper.kill()
    assert sleeper.wait(60) == -signal.SIGKILL
    assert not result.exists() or not result.read_text(), "killed before it could report"
    waiting = [attempt(tmp_path, f"w{i}", item(f"t{i}", "Log", {"message": "hi"}))[0] for i in range(3)]
    while any(p.poll() is None for p in waiting):
        warm.wait_any(waiting, 60)
    assert [p.returncode for p in waiting] == [0, 0, 0]


def test_the_fork_server_imports_no_expression_language(tmp_path: Path) -> None:
    """Its imports are the critical path of a one-task `flowpods run`: a worker replaces secret markers and
    runs tasks already rendered, so jinja2 and YAML (~36 ms) are not among them (only a WorkingDirectory's
    step, rendered in its pod, needs them)."""
    import subprocess
    import sys

    probe = ("import sys, importlib, json; [importlib.import_module(m) for m in json.loads(sys.argv[1])]; "
             "[getattr(importlib.import_module(t.partition(':')[0]), t.partition(':')[2])() "
             " for t in json.loads(sys.argv[2])]; "
             "print(sorted(m for m in ('jinja2', 'yaml') if m in sys.modules))")  # fmt: skip
    argv = [sys.executable, "-c", probe, json.dumps(warm.PRELOAD), json.dumps(warm.WARM_UP)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
