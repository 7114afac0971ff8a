"""Kestra's script tasks and conventions: the task types and fields, what runs, what output lines mean."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from flowpods.core.model import FlowError, Python, PythonCommands, Shell, ShellScript, parse_flow
from flowpods.core.scripts import (
    IMAGE_PYTHON,
    Convention,
    Metric,
    StderrTail,
    command_argv,
    command_lines,
    env_script,
    failure_message,
    parse_convention_line,
)


def tasks(*entries: dict) -> list:
    return list(parse_flow({"id": "f", "namespace": "company.team", "tasks": list(entries)}).tasks)


def problems(entry: dict) -> list[str]:
    with pytest.raises(FlowError) as caught:
        tasks(entry)
    return caught.value.problems


class TestTaskTypes:
    def test_the_four_kestra_script_types(self) -> None:
        found = tasks(
            {"id": "a", "type": "io.kestra.plugin.scripts.shell.Commands", "commands": ["echo"]},
            {"id": "b", "type": "io.kestra.plugin.scripts.shell.Script", "script": "echo"},
            {"id": "c", "type": "io.kestra.plugin.scripts.python.Script", "script": "print()"},
            {"id": "d", "type": "io.kestra.plugin.scripts.python.Commands", "commands": ["python x.py"]},
        )
        assert [type(t) for t in found] == [Shell, ShellScript, Python, PythonCommands]

    def test_kestra_fields_are_accepted(self) -> None:
        (task,) = tasks({
            "id": "a", "type": "io.kestra.plugin.scripts.shell.Commands", "commands": ["cat in.txt"],
            "beforeCommands": ["export A=1"], "env": {"B": "2"}, "interpreter": ["/bin/bash", "-c"],
            "inputFiles": {"in.txt": "x", "dir/y.csv": "1,2"}, "warningOnStdErr": False,
            "taskRunner": {"type": "io.kestra.plugin.scripts.runner.docker.Docker", "pullPolicy": "IF_NOT_PRESENT"},
            "containerImage": "ubuntu:24.04",
        })  # fmt: skip
        assert isinstance(task, Shell)
        assert task.image == "ubuntu:24.04" and task.interpreter == ["/bin/bash", "-c"]

    def test_the_process_runner_runs_in_the_worker_whatever_the_image(self) -> None:
        (task,) = tasks({
            "id": "a", "type": "Shell", "commands": ["true"], "containerImage": "ubuntu",
            "taskRunner": {"type": "io.kestra.plugin.core.runner.Process"},
        })  # fmt: skip
        assert isinstance(task, Shell) and task.image is None

    def test_output_files_are_refused_until_file_storage_exists(self) -> None:
        found = problems({"id": "a", "type": "Python", "script": "1", "outputFiles": ["*.csv"]})
        assert len(found) == 1 and "'outputFiles': needs file storage, not available yet" in found[0]

    def test_an_unknown_task_runner_is_named(self) -> None:
        found = problems({"id": "a", "type": "Shell", "commands": ["x"], "taskRunner": {"type": "Batch"}})
        assert len(found) == 1 and "unknown task runner 'Batch'" in found[0]

    @pytest.mark.parametrize("name", ["/etc/passwd", "../up.txt", "a/../../b", ""])
    def test_input_files_stay_in_the_working_directory(self, name: str) -> None:
        found = problems({"id": "a", "type": "Shell", "commands": ["x"], "inputFiles": {name: "x"}})
        assert len(found) == 1 and "must be a relative path inside the working directory" in found[0]


class TestConventionLines:
    def test_outputs(self) -> None:
        assert parse_convention_line('::{"outputs": {"a": 1, "b": "x"}}::') == Convention(outputs={"a": 1, "b": "x"})
        assert parse_convention_line('  ::{"outputs":{}}::  ') == Convention()

    def test_metrics_as_the_kestra_library_writes_them(self) -> None:
        line = '::{"metrics": [{"name": "rows", "type": "counter", "value": 5, "tags": {"table": "t"}}]}::'
        assert parse_convention_line(line) == Convention(metrics=(Metric("rows", "counter", 5.0, {"table": "t"}),))
        bad = '::{"metrics": [{"name": "x", "value": "many"}, {"value": 1}, {"name": "t", "type": "timer", "value": 0.5}]}::'  # noqa: E501
        assert parse_convention_line(bad) == Convention(metrics=(Metric("t", "timer", 0.5),))

    def test_logs_keep_their_level(self) -> None:
        line = (
            '::{"logs": [{"level": "ERROR", "message": "e"}, {"level": "warning", "message": "w"}, {"message": 3}]}::'
        )
        assert parse_convention_line(line) == Convention(logs=(("ERROR", "e"), ("WARN", "w"), ("INFO", "3")))

    @pytest.mark.parametrize(
        "line", ["hello", "::not json::", '::{"other": 1}::', '::["outputs"]::', '::{"outputs": 1', "::::"]
    )
    def test_other_lines_are_text(self, line: str) -> None:
        assert parse_convention_line(line) is None


class TestCommands:
    def test_before_commands_then_commands_in_one_shell_that_stops_at_a_failure(self) -> None:
        (task,) = tasks({"id": "a", "type": "Shell", "commands": ["echo 1", "echo 2"], "beforeCommands": ["cd x"]})
        assert command_argv(task, "python3") == ["/bin/sh", "-c", "set -e\ncd x\necho 1\necho 2"]

    def test_a_python_script_runs_with_the_given_python(self) -> None:
        (task,) = tasks({"id": "a", "type": "Python", "script": "print(1)", "interpreter": ["/bin/dash", "-c"]})
        assert command_argv(task, IMAGE_PYTHON) == [
            "/bin/dash", "-c", f"set -e\nexec {IMAGE_PYTHON} .flowpods-script.py",
        ]  # fmt: skip
        (script,) = tasks({"id": "b", "type": "ShellScript", "script": "echo"})
        assert command_lines(script, "p")[-1] == "exec /bin/sh .flowpods-script.sh"

    def test_env_script_quotes_everything_for_sh(self, tmp_path) -> None:
        env = {"A": "it's $HOME `x`", "B": "two\nlines", "not-a-name": "skipped"}
        text = env_script(env, ["printf", "%s|", "a b", "'q'"])
        (tmp_path / "env.sh").write_text(text)
        sh = shutil.which("dash") or "/bin/sh"
        out = subprocess.run(
            [sh, "-c", '. ./env.sh; printf "%s|%s|" "$A" "$B"; "$@"'], cwd=tmp_path, capture_output=True, text=True,
            check=True, env={},
        )  # fmt: skip
        assert out.stdout == "it's $HOME `x`|two\nlines|a b|'q'|"


class TestFailureMessages:
    def test_the_last_lines_of_stderr_whole(self) -> None:
        tail = StderrTail(lines=3, chars=30)
        for line in ["one", "", "two", "three", "four"]:
            tail.add(line)
        assert tail.text() == "two\nthree\nfour"
        assert (
            failure_message(2, tail.text())
            == "Command failed with exit code 2; the last lines of stderr:\ntwo\nthree\nfour"
        )
        assert failure_message(2, "") == "Command failed with exit code 2"

    def test_lines_that_do_not_fit_are_left_out_whole_and_a_huge_line_keeps_its_end(self) -> None:
        tail = StderrTail(lines=5, chars=20)
        for line in ["aaaaaaaaaa", "bbbbbbbbbb", "cccc"]:
            tail.add(line)
        assert tail.text() == "bbbbbbbbbb\ncccc"
        huge = StderrTail(lines=5, chars=20)
        huge.add("x" * 50 + "END")
        assert huge.text() == "..." + ("x" * 50 + "END")[-17:]
