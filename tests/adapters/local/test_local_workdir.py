"""`flowpods run` and a WorkingDirectory: its tasks run one after the other in one folder, each its own task
run with its TASKRUN span and the WORKER span its process handed back."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flowpods.core.model import parse_flow
from flowpods.core.spans import derive_spans
from flowpods.core.status import State
from flowpods.local.loader import FlowCatalog
from flowpods.local.runner import LocalRunner

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def run(tmp_path: Path, tasks: list[dict]) -> tuple:
    flow = parse_flow({"id": "wd", "namespace": "company.team", "tasks": tasks})
    environ = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = LocalRunner(FlowCatalog(flows=[flow]), work_dir=tmp_path, environ=environ).run(flow)
    status = result.root.status
    return status, {tr.taskId: tr for tr in status.taskRuns}, result.root


def test_the_tasks_share_one_folder_and_each_has_its_spans(tmp_path: Path) -> None:
    status, runs, root = run(tmp_path, [
        {"id": "dir", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": [
            {"id": "files", "type": "io.kestra.plugin.core.storage.LocalFiles", "inputs": {"name.txt": "ada"}},
            {"id": "write", "type": SHELL, "commands": ['echo "hello $(cat name.txt)" > shared.txt']},
            {"id": "read", "type": SHELL,
             "commands": ['echo "::{\\"outputs\\":{\\"text\\":\\"$(cat shared.txt)\\"}}::"']},
        ]},
        {"id": "after", "type": "Return", "format": "{{ outputs.read.vars.text }}"},
    ])  # fmt: skip
    assert status.state == State.SUCCESS, status.error
    assert runs["after"].outputs == {"value": "hello ada"}
    assert [runs[t].parentId for t in ("files", "write", "read")] == [runs["dir"].id] * 3
    folders = [p for p in tmp_path.iterdir() if p.name.endswith("-workdir")]
    assert len(folders) == 1 and (folders[0] / "shared.txt").read_text() == "hello ada\n"
    spans = [record for _, record in derive_spans(root.run, root.flow, status)]
    by_name = {s.name: s for s in spans if not s.name.startswith("WORKER")}
    for task_id in ("files", "write", "read"):
        taskrun = by_name[f"TASKRUN {task_id}"]
        assert [s.name for s in spans if s.parent_span_id == taskrun.span_id] == [
            f"WORKER - {runs[task_id].attempts[0].spans[0].attributes['flowpods.task_type']}"
        ]


def test_a_failing_task_stops_the_folder_and_its_errors_run(tmp_path: Path) -> None:
    status, runs, _ = run(tmp_path, [
        {"id": "dir", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": [
            {"id": "fails", "type": SHELL, "commands": ["exit 3"]},
            {"id": "never", "type": SHELL, "commands": ["true"]},
        ], "errors": [{"id": "handler", "type": "Return", "format": "handled"}]},
    ])  # fmt: skip
    assert status.state == State.FAILED
    assert runs["fails"].state == State.FAILED and "never" not in runs
    assert runs["handler"].state == State.SUCCESS and runs["dir"].state == State.FAILED
    assert status.error == "task 'dir' failed: task 'fails' failed: Command failed with exit code 3"
