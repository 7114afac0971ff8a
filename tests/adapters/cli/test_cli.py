"""The local runner through the `flowpods` command: real worker subprocesses, no cluster, no collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowpods.cli.main import read_secrets

REPO = Path(__file__).resolve().parents[3]
FLOWPODS = str(Path(sys.executable).parent / "flowpods")


def flowpods(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    return subprocess.run([FLOWPODS, *args], capture_output=True, text=True, env=env, timeout=120, cwd=cwd)


def test_orders_runs_retries_and_tolerates_an_allowed_failure(tmp_path):
    result = flowpods("run", str(REPO / "examples" / "orders.yaml"), "--input", "customer=ada", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "WARNING"  # the unreachable notify service is allowed to fail
    assert status["outputs"] == {"total": 36}  # declared INT
    runs = {tr["taskId"]: tr for tr in status["taskRuns"]}
    assert runs["notify"]["state"] == "WARNING"
    assert [a["state"] for a in runs["flaky"]["attempts"]] == ["FAILED", "SUCCESS"]
    assert runs["flaky"]["outputs"]["vars"] == {"attempt": 2}
    assert "apologise" not in runs


def test_a_failing_order_runs_the_errors_branch_and_exits_1(tmp_path):
    result = flowpods("run", str(REPO / "examples" / "orders.yaml"), "-i", "customer=bob", "-i", "fail=true",
                      "--json", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert status["state"] == "FAILED" and status["error"] == "task 'check' failed: the order was refused on purpose"
    assert {tr["taskId"]: tr["state"] for tr in status["taskRuns"]}["apologise"] == "SUCCESS"


def test_a_bad_input_is_one_clear_error_and_exit_code_2():
    result = flowpods("run", str(REPO / "examples" / "orders.yaml"), "--input", "customer=ADA!")
    assert result.returncode == 2
    assert "input 'customer': 'ADA!' does not match the pattern ^[a-z]+$" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bad_flow_names_the_task_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nnamespace: team\ntasks:\n  - id: hi\n    type: Log\n    mesage: x\n")
    result = flowpods("run", str(bad))
    assert result.returncode == 2
    assert "task 'hi' (Log): unknown field 'mesage'" in result.stderr
    assert "Traceback" not in result.stderr
    assert flowpods("validate", str(bad)).returncode == 2
    assert flowpods("validate", str(REPO / "examples" / "parent.yaml")).returncode == 0


def test_help_explains_the_local_runtime():
    result = flowpods("run", "--help")
    assert result.returncode == 0
    assert "without a container" in result.stdout and "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stdout


def test_validate_prints_warnings_and_refusals_with_their_reason(tmp_path):
    hooked = tmp_path / "hooked.yaml"
    hooked.write_text(
        "id: hooked\nnamespace: team\ntasks:\n  - id: hi\n    type: Log\n    message: x\n"
        "triggers:\n  - id: hook\n    type: Webhook\n    key: short\n"
    )
    result = flowpods("validate", str(hooked))
    said = " ".join(result.stderr.split())  # rich wraps lines when not on a terminal
    assert result.returncode == 0
    assert "⚠" in said and "the webhook key has 5 characters" in said
    paused = tmp_path / "paused.yaml"
    paused.write_text("id: p\nnamespace: team\ntasks:\n  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n")
    assert flowpods("validate", str(paused)).returncode == 0  # a cluster resumes it
    result = flowpods("run", str(paused))
    said = " ".join(result.stderr.split())
    assert result.returncode == 2
    assert "task 'wait' is a Pause without pauseDuration: it waits to be resumed" in said


def test_a_repeated_yaml_key_is_refused(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("id: twice\nnamespace: team\ntasks:\n  - id: hi\n    type: Log\n    message: x\n    message: y\n")
    result = flowpods("validate", str(twice))
    assert result.returncode == 2 and "duplicate key 'message'" in " ".join(result.stderr.split())


KESTRA_FLOWABLES = """
id: flowables
namespace: team
inputs:
  - id: delay
    type: DURATION
    defaults: pt0.2s
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: first, type: Return, format: one}
      - task: {id: second, type: Return, format: "{{ outputs.first.value }}-two"}
        dependsOn: [first]
  - id: wait
    type: io.kestra.plugin.core.flow.WaitFor
    condition: "{{ outputs.count['values'].n == '2' }}"
    checkFrequency: {interval: PT0.1S}
    tasks:
      - id: count
        type: OutputValues
        values: {n: "{{ outputs.wait.iterationCount + 1 }}"}
  - id: pause
    type: io.kestra.core.tasks.flows.Pause
    delay: "{{ inputs.delay }}"
  - id: tolerant
    type: AllowFailure
    tasks:
      - id: boom
        type: io.kestra.core.tasks.executions.Fail
  - id: never
    type: Log
    message: skipped
    runIf: "{{ outputs.second.value == 'nope' }}"
  - id: each
    type: io.kestra.plugin.core.flow.EachParallel
    value: ["a", "b"]
    tasks:
      - id: echo
        type: io.kestra.plugin.core.debug.Echo
        format: "{{ taskrun.value }}"
"""


def test_kestra_flowables_run_locally_as_kestra_runs_them(tmp_path):
    path = tmp_path / "flowables.yaml"
    path.write_text(KESTRA_FLOWABLES)
    result = flowpods("run", str(path), "--json", cwd=tmp_path)
    status = json.loads(result.stdout)
    assert status["state"] == "WARNING", result.stderr  # the allowed failure
    runs: dict[str, list] = {}
    for tr in status["taskRuns"]:
        runs.setdefault(tr["taskId"], []).append(tr)
    assert runs["second"][0]["outputs"] == {"value": "one-two"}
    assert [tr["iteration"] for tr in runs["count"]] == [0, 1]
    assert runs["wait"][0]["outputs"] == {"iterationCount": 1}
    assert [t["state"] for t in runs["pause"][0]["history"]][:3] == ["CREATED", "RUNNING", "PAUSED"]
    assert "PAUSED" in [t["state"] for t in status["history"]]
    assert runs["tolerant"][0]["state"] == "WARNING" and runs["boom"][0]["state"] == "FAILED"
    assert runs["never"][0]["state"] == "SKIPPED"
    assert sorted(tr["value"] for tr in runs["echo"]) == ["a", "b"]


def test_the_local_secrets_file_takes_yaml_or_assignments(tmp_path):
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("API_KEY: k1\nOTHER: 2\n")
    assert read_secrets(str(yaml_file)) == {"FLOWPODS_SECRET_API_KEY": "k1", "FLOWPODS_SECRET_OTHER": "2"}
    env_file = tmp_path / "s.env"
    env_file.write_text("# comment\nAPI_KEY=a=b\n")
    assert read_secrets(str(env_file)) == {"FLOWPODS_SECRET_API_KEY": "a=b"}
    with pytest.raises(ValueError, match="cannot read the secrets file"):
        read_secrets(str(tmp_path / "missing"))


SCRIPTS_FLOW = """
id: scripts
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    containerImage: python:3.11-slim
    beforeCommands: ["export STAGE=before"]
    script: |
      import os, sys
      from kestra import Kestra
      Kestra.outputs({"stage": os.environ["STAGE"]})
      print('::{"outputs": {"fromStderr": true}}::', file=sys.stderr)
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles:
      in.txt: "{{ outputs.py.vars.stage }}"
    commands:
      - echo "::{\\"outputs\\":{\\"read\\":\\"$(cat in.txt)\\"}}::"
      - echo "bad news" >&2
      - exit 7
"""


def test_script_tasks_run_here_with_kestras_conventions(tmp_path):
    """`flowpods run` runs script tasks on this machine (containerImage ignored), with the same conventions."""
    flow = tmp_path / "scripts.yaml"
    flow.write_text(SCRIPTS_FLOW)
    result = flowpods("run", str(flow), "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    runs = {tr["taskId"]: tr for tr in json.loads(result.stdout)["taskRuns"]}
    assert runs["py"]["outputs"] == {"exitCode": 0, "vars": {"stage": "before", "fromStderr": True}}
    assert (
        runs["sh"]["attempts"][-1]["reason"] == "Command failed with exit code 7; the last lines of stderr:\nbad news"
    )


def test_list_get_and_logs_explain_themselves(capsys):
    import pytest

    from flowpods.cli.main import build_parser

    for command, words in [("list", "queued before it ran"), ("get", "critical"), ("logs", "flowpods keeps no copy")]:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert words in " ".join(capsys.readouterr().out.split())


def test_a_local_run_starts_the_flows_its_end_triggers_in_linked_traces(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "id: a\nnamespace: company.team\ntasks:\n  - {id: hi, type: Log, message: hi}\n"
        "outputs:\n  - {id: day, type: STRING, value: '2026-01-02'}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "id: b\nnamespace: company.team\ninputs:\n  - {id: day, type: STRING}\ntasks:\n"
        "  - id: show\n    type: Log\n"
        "    message: 'after {{ trigger.executionId }} {{ trigger.state }} on {{ inputs.day }}'\n"
        "triggers:\n  - id: after-a\n    type: io.kestra.plugin.core.trigger.Flow\n"
        "    inputs: {day: '{{ trigger.outputs.day }}'}\n    preconditions:\n      id: p\n"
        "      flows: [{namespace: company.team, flowId: a, states: [SUCCESS]}]\n"
    )
    (tmp_path / "c.yaml").write_text(
        "id: c\nnamespace: company.team\ntasks:\n  - {id: never, type: Log, message: must not run}\n"
        "triggers:\n  - id: after-a-failed\n    type: Flow\n    states: [FAILED]\n"
    )
    result = flowpods("run", str(tmp_path / "a.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (root_id,) = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("✔ execution a-")]
    assert f"after {root_id} SUCCESS on 2026-01-02" in result.stdout
    assert "RUN b" in result.stdout and f"⇠ triggered by {root_id}" in result.stdout
    assert "started by its Flow trigger 'after-a'" in result.stdout
    assert "must not run" not in result.stdout and "RUN c" not in result.stdout
