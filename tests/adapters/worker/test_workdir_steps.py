"""`flowpods worker --step`: the steps of a WorkingDirectory, run in process one after the other as the pod's
containers run them, sharing a directory, each rendered with the outputs of the steps before it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowpods.core.records import TaskResult
from flowpods.core.workdir import Step
from flowpods.worker import workdir
from tests.core.simulation import Simulation, make_flow

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def planned(*tasks: dict[str, Any], **directory: Any) -> list[Step]:
    flow = make_flow([{"id": "dir", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": list(tasks),
                       **directory}])  # fmt: skip
    (action,) = Simulation(flow).outstanding.values()
    assert action.steps is not None
    return action.steps


def run_steps(tmp_path: Path, steps: list[Step]) -> list[tuple[int, TaskResult]]:
    """Each step as its container runs it, until one exits non-zero (the pod would stop there)."""
    shared = tmp_path / "workdir"
    done = []
    for step in steps:
        log = tmp_path / f"{step.index}.result"
        environ = {"PATH": os.environ["PATH"], "FLOWPODS_STEP": step.model_dump_json(),
                   "FLOWPODS_WORKDIR": str(shared), "FLOWPODS_STEP_RESULTS": str(tmp_path / "results"),
                   "FLOWPODS_TERMINATION_LOG": str(log), "FLOWPODS_TRACES": "DISABLED",
                   "TRACEPARENT": step.traceparent}  # fmt: skip
        code = workdir.run(environ)
        done.append((code, TaskResult.model_validate_json(log.read_text())))
        if code != 0:
            break
    return done


def test_steps_share_the_directory_and_read_the_outputs_of_the_steps_before_them(tmp_path: Path) -> None:
    steps = planned(
        {"id": "files", "type": "io.kestra.plugin.core.storage.LocalFiles", "inputs": {"in/name.txt": "ada"}},
        {"id": "write", "type": SHELL, "commands": [
            'echo "hello $(cat in/name.txt) $(cat seed.txt)" > greeting.txt',
            'echo "::{\\"outputs\\":{\\"n\\":7}}::"']},
        {"id": "read", "type": SHELL, "commands": [
            'echo "::{\\"outputs\\":{\\"text\\":\\"$(cat greeting.txt)\\",'
            '\\"twice\\":{{ outputs.write.vars.n * 2 }}}}::"']},
        {"id": "last", "type": "Return", "format": "{{ outputs.read.vars.text }}"},
        {"id": "where", "type": SHELL, "commands": ['test "$PWD" = "{{ workingDir }}"']},
        inputFiles={"seed.txt": "from the directory"},
    )  # fmt: skip
    results = run_steps(tmp_path, steps)
    assert [code for code, _ in results] == [0, 0, 0, 0, 0]
    assert results[0][1].outputs == {"uris": {}}
    assert results[2][1].outputs["vars"] == {"text": "hello ada from the directory", "twice": 14}
    assert results[3][1].outputs == {"value": "hello ada from the directory"}
    assert (tmp_path / "workdir" / "greeting.txt").exists()


def test_a_failing_step_exits_non_zero_unless_its_failure_is_allowed(tmp_path: Path) -> None:
    steps = planned(
        {"id": "tolerated", "type": SHELL, "commands": ["exit 4"], "allowFailure": True},
        {"id": "fails", "type": SHELL, "commands": ["echo bad >&2", "exit 3"]},
        {"id": "never", "type": SHELL, "commands": ["touch never"]},
    )
    results = run_steps(tmp_path, steps)
    (tolerated_code, tolerated), (code, failed) = results
    assert tolerated_code == 0 and tolerated.error == "Command failed with exit code 4"
    assert code == 1 and failed.error == "Command failed with exit code 3; the last lines of stderr:\nbad"
    assert not (tmp_path / "workdir" / "never").exists()


def test_a_step_that_cannot_render_fails_with_the_expression(tmp_path: Path) -> None:
    (step,) = planned({"id": "r", "type": "Return", "format": "{{ outputs.nothing.value }}"})
    ((code, result),) = run_steps(tmp_path, [step])
    assert code == 1 and (result.error or "").startswith("cannot render '{{ outputs.nothing.value }}'")
