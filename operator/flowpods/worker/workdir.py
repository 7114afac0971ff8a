"""`flowpods worker --step`: one step of a WorkingDirectory, in its pod (one container per step) or locally.

The steps of a WorkingDirectory run one after the other in the same directory (FLOWPODS_WORKDIR). Each
step is rendered here, just before it runs, with the outputs the steps before it left in
FLOWPODS_STEP_RESULTS (core.workdir), then run as any attempt (runner.attempt: its WORKER span, its
result in its own termination message). A failed step exits non-zero, so the pod runs no later step;
with `allowFailure` it exits 0 and its result still says it failed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowpods.core.records import (
    DEFAULT_TERMINATION_LOG,
    RESULTS_ENV,
    STEP_ENV,
    TASKRUN_FILE_ENV,
    TERMINATION_LOG_ENV,
    WORKDIR_ENV,
    SpanRecord,
    TaskResult,
)
from flowpods.core.templating import RenderError
from flowpods.core.workdir import Step, render_step
from flowpods.worker import runner

RESULTS_DIR = ".flowpods-steps"  # under the working directory when FLOWPODS_STEP_RESULTS is not set


def load_step(environ: Mapping[str, str]) -> Step:
    path = environ.get(TASKRUN_FILE_ENV)
    text = Path(path).read_text(encoding="utf-8") if path else environ.get(STEP_ENV, "")
    return Step.model_validate_json(text)


def results_dir(environ: Mapping[str, str]) -> Path:
    if environ.get(RESULTS_ENV):
        return Path(environ[RESULTS_ENV])
    return Path(environ.get(WORKDIR_ENV) or Path.cwd()) / RESULTS_DIR


def earlier_outputs(directory: Path, index: int) -> dict[str, dict[str, Any]]:
    """Task id -> outputs of the steps before `index` that succeeded."""
    found: dict[str, dict[str, Any]] = {}
    for number in range(index):
        path = directory / f"{number}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            found[data["taskId"]] = data["outputs"]
    return found


def run(environ: Mapping[str, str] = os.environ) -> int:
    """Run one step; the exit code as runner.run's, but 0 for a failure its `allowFailure` lets pass."""
    termination_log = environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG
    try:
        step = load_step(environ)
    except (OSError, ValidationError) as exc:
        message = f"invalid step: {exc}"
        print(f"flowpods worker: {message}", file=sys.stderr)
        runner.write_termination_message(termination_log, runner.encode_result(TaskResult(error=message))[1])
        return runner.EXIT_INVALID
    workdir = Path(environ.get(WORKDIR_ENV) or Path.cwd())
    workdir.mkdir(parents=True, exist_ok=True)
    results = results_dir(environ)
    results.mkdir(parents=True, exist_ok=True)
    runner.write_files(step.inputFiles, workdir)
    left: list[SpanRecord] = []
    try:
        item = render_step(step, earlier_outputs(results, step.index), str(workdir))
    except RenderError as exc:
        text, code = runner.encode_result(TaskResult(error=str(exc)))[1], runner.EXIT_FAILURE
    else:
        text, code, left = runner.attempt(item, {**environ, WORKDIR_ENV: str(workdir)}, sys.stdout)
    result = TaskResult.model_validate_json(text)
    if code == runner.EXIT_SUCCESS and result.error is None:
        record = {"taskId": step.work.taskId, "outputs": result.outputs}
        (results / f"{step.index}.json").write_text(json.dumps(record), encoding="utf-8")
    runner.write_termination_message(termination_log, text)
    if left:
        runner.export_live(left, environ)
    if code not in (runner.EXIT_SUCCESS, runner.EXIT_CANCELLED) and step.allowFailure:
        return runner.EXIT_SUCCESS
    return code
