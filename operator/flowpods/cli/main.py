"""The `flowpods` command."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowpods.cli.terminal import printable

if TYPE_CHECKING:  # imported lazily at run time: `flowpods worker` must start fast
    from flowpods.local.runner import LocalExecution

EXIT_BAD_INPUT = 2
# worker log lines carry a timestamp and the trace context; progress output shows the level and message only
LOG_PREFIX = re.compile(r"^\S+ (\w+) \[trace_id=\w+ span_id=\w+\] ")

RUN_HELP = """\
Run a flow on this machine with the embedded runtime: the same executor the operator uses, each task-run
attempt done by the same worker code as in a pod, in a process of its own (forked from one that imported
the worker once) with TRACEPARENT set. Shell and Python tasks run directly on this machine,
without a container (their containerImage is ignored). Subflows are looked up among the flow files in --flows and
its subfolders (default: the flow file's folder); a file there that is not a valid flow is skipped, and
named if a subflow is not found.

FLOW is a Flow resource (apiVersion/kind/metadata/spec) or a plain Kestra flow file (id, namespace,
tasks at the top). At the end the trace tree is printed, the slowest task marked. When
OTEL_EXPORTER_OTLP_ENDPOINT is set, the spans are also exported over OTLP (OTEL_EXPORTER_OTLP_PROTOCOL:
http/protobuf, the default, or grpc).

Exit status: 0 when the execution ends SUCCESS or WARNING, 1 when it fails or is killed, 2 when the
flow or an input is invalid.
"""


START_HELP = """\
Start a flow on the cluster through the flowpods HTTP API (the operator serves it), as
`POST /api/v1/executions/NAMESPACE/FLOW`. The token must allow `create` on executions.flowpods.io in
NAMESPACE (and `get` to follow). Inputs are checked against the flow before anything is created.

With --follow, a line is printed at each change of the execution's state or of a task run, then the
final state. The trace id is always printed, with a link to the trace when FLOWPODS_JAEGER_URL is set
(or the server has one).

Exit status: 0 when the execution was started (without --follow) or ended SUCCESS or WARNING, 1 when it
ended otherwise or the API cannot be reached, 2 when the API refused the request (its message is shown).
"""


def add_input_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--input", action="append", default=[], metavar="KEY=VALUE", help="an input value (repeatable)"
    )


CONTROLS = {
    "resume": "resume a PAUSED execution (with its Pause's onResume inputs)",
    "restart": "restart a FAILED, KILLED or WARNING execution from its failed task runs",
    "replay": "replay an ended execution as a new one, from a chosen top-level task run (--task-run)",
    "labels": "set an execution's labels (Kestra's labels; its system. labels are kept)",
}
CONTROL_HELP = (
    ", through the flowpods API (Kubernetes verb update on executions.flowpods.io; create for replay). Exit "
    "status: 0 when "
    "accepted, 2 when refused (the reason is printed), 1 when the API is unreachable."
)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("FLOWPODS_API_URL") or "http://127.0.0.1:8080",
        metavar="URL",
        help="the flowpods API (env FLOWPODS_API_URL; default http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("FLOWPODS_TOKEN"), metavar="TOKEN", help="a Kubernetes bearer token "
        "(env FLOWPODS_TOKEN), e.g. from `kubectl create token`"
    )  # fmt: skip


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process (parsing does not change it): the local runner's fork
    server builds it, and each attempt forked from it parses `worker ...` without building it again (~5 ms)."""
    parser = argparse.ArgumentParser(
        prog="flowpods",
        description="Kestra-style flows run as Kubernetes pods, traced end to end with OpenTelemetry.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a flow locally and print its trace tree",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("flow", metavar="FLOW", help="a flow file (Flow resource or Kestra flow YAML)")
    add_input_option(run)
    run.add_argument("--flows", metavar="DIR", help="folder of flow files for subflows (default: FLOW's folder)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines or task logs, only the result")
    run.add_argument("--json", action="store_true", help="print only the execution's final status, as JSON")
    run.add_argument(
        "--secrets",
        metavar="FILE",
        help="values for secret('NAME'): a YAML map NAME: value, or NAME=value lines (also read: "
        "FLOWPODS_SECRET_<NAME>, and Kestra's SECRET_<NAME> base64-encoded, from the environment)",
    )

    worker = commands.add_parser(
        "worker",
        help="run one task-run attempt (the command of every worker pod)",
        description=(
            "Run one rendered task-run attempt, given as JSON in FLOWPODS_TASKRUN, or in the file named by "
            "--taskrun-file or FLOWPODS_TASKRUN_FILE. Records the WORKER span as a child of TRACEPARENT and "
            "writes the outputs as JSON to the termination-message file (FLOWPODS_TERMINATION_LOG, default "
            "/dev/termination-log). Exit status 0 on success, 1 when the task failed, 2 for a bad task run."
        ),
    )
    worker.add_argument("--taskrun-file", metavar="PATH", help="the task run as a JSON file")
    beside = worker.add_mutually_exclusive_group()
    beside.add_argument("--prepare", metavar="DIR", help="a script task in its own image: set up DIR (init container)")
    beside.add_argument("--relay", metavar="DIR", help="a script task in its own image: run beside it (sidecar)")
    beside.add_argument("--step", action="store_true", help="one step of a WorkingDirectory (FLOWPODS_STEP)")

    commands.add_parser(
        "operator",
        help="run the Kubernetes operator (kopf) with its settings from FLOWPODS_* and OTEL_* variables",
        description=(
            "Run the operator: watch Flows and Executions, run one worker pod per task-run attempt, record "
            "executor spans. Configured from the environment: FLOWPODS_NAMESPACES (comma-separated; empty: all), "
            "FLOWPODS_WORKER_IMAGE, FLOWPODS_WORKER_COMMAND, FLOWPODS_WORKER_SERVICE_ACCOUNT, "
            "FLOWPODS_WORKER_OTLP_ENDPOINT, FLOWPODS_TRACES (DEFAULT, DISABLED, FINE), FLOWPODS_POD_CLEANUP "
            "(keep, on-success, on-completion), FLOWPODS_EXECUTION_TTL (seconds), FLOWPODS_PENDING_TIMEOUT (seconds), "
            "FLOWPODS_MAX_EXECUTIONS_PER_ROOT, FLOWPODS_HEALTH_PORT, the HTTP "
            "API's FLOWPODS_API_HOST, FLOWPODS_API_PORT (0: off), FLOWPODS_API_MAX_BODY, FLOWPODS_JAEGER_URL, and the "
            "standard OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME. The cluster "
            "is reached through the pod's service account, or else the kubeconfig named by KUBECONFIG."
        ),
    )

    start = commands.add_parser(
        "start",
        help="start a flow on the cluster through the flowpods API (and follow it)",
        description=START_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start.add_argument("namespace", metavar="NAMESPACE", help="the Kubernetes namespace of the Flow")
    start.add_argument("flow", metavar="FLOW", help="the Flow resource's name (metadata.name)")
    add_input_option(start)
    start.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="an execution label")
    start.add_argument("-f", "--follow", action="store_true", help="print progress until the execution ends")
    add_server_options(start)
    for name, summary in CONTROLS.items():
        command = commands.add_parser(name, help=summary, description=summary + CONTROL_HELP)
        command.add_argument("namespace", metavar="NAMESPACE", help="the Kubernetes namespace of the Execution")
        command.add_argument("execution", metavar="EXECUTION", help="the Execution's name")
        if name == "resume":
            add_input_option(command)
        if name == "replay":
            command.add_argument("--task-run", metavar="ID", help="the task run to replay from (default: the start)")
        if name == "labels":
            command.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="the labels (replacing the others)")
        add_server_options(command)

    from flowpods.cli.runs import add_commands

    add_commands(commands)

    validate = commands.add_parser("validate", help="check flow files and say what is wrong with them")
    validate.add_argument("files", nargs="+", metavar="FILE")
    return parser


def entry() -> int:
    """The `flowpods` command (and `python -m flowpods`): `main`. A `flowpods run` starts the workers' fork
    server first and ends without the interpreter's module-by-module teardown (`warm.end_process`: ~0.1 s of a
    hello-world run, that only frees memory); the other commands, a long-lived operator or a worker in a pod,
    end as usual."""
    running = sys.argv[1:2] == ["run"]
    if running:
        from flowpods.local import warm

        warm.warm_up()  # before the parser is built (~20 ms): the workers' fork server is the longer start
    code = main()
    if running:
        warm.end_process(code)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "json", False):
        args.quiet = True
    if args.command == "worker":
        from flowpods.worker import runner as worker

        if args.step:
            from flowpods.worker import workdir

            return workdir.run()
        if args.prepare or args.relay:
            from pathlib import Path

            from flowpods.worker import attached

            return attached.prepare(Path(args.prepare)) if args.prepare else attached.relay(Path(args.relay))
        return worker.run(args.taskrun_file)
    if args.command == "operator":
        from flowpods.api.app import serve
        from flowpods.kube import operator

        return operator.run(api=serve)
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "start":
        from flowpods.cli.start import start

        return start(args)
    if args.command in ("list", "get", "logs"):
        from flowpods.cli import runs

        return runs.run(args)
    if args.command in CONTROLS:
        from flowpods.cli.controls import control

        return control(args)
    return _run(args)


def parse_assignments(pairs: list[str], option: str = "--input") -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} takes KEY=VALUE, not '{pair}'")
        values[key.strip()] = value
    return values


def read_secrets(path: str) -> dict[str, str]:
    """The worker environment for `--secrets FILE`: a YAML map NAME: value, or NAME=value lines."""
    import yaml

    from flowpods.core import secrets

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the secrets file {path}: {exc}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None
    if not isinstance(loaded, dict):
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        loaded = parse_assignments(lines, option=f"the secrets file {path}")
    return {secrets.env_name(str(name)): "" if value is None else str(value) for name, value in loaded.items()}


def _validate(files: list[str]) -> int:
    from rich.console import Console
    from rich.markup import escape

    from flowpods.core.model import FlowError
    from flowpods.local.loader import load_flow_file

    console = Console(stderr=True)
    status = 0
    for name in files:
        try:
            flow = load_flow_file(name)
            note = " (disabled)" if flow.disabled else ""
            console.print(f"[green]✔[/] {escape(printable(name))}: {flow.namespace}.{flow.id}, "
                          f"{len(flow.all_tasks())} tasks{note}")  # fmt: skip
            for warning in flow.warnings():
                console.print(f"[yellow]⚠[/] {escape(printable(name))}: {escape(printable(warning))}")
        except FlowError as exc:
            status = EXIT_BAD_INPUT
            for problem in exc.problems:
                console.print(f"[red]✘[/] {escape(printable(problem))}")
    return status


def _run(args: argparse.Namespace) -> int:
    from flowpods.local import warm

    warm.warm_up()  # first: the workers' fork server imports while this process does
    from rich.console import Console
    from rich.markup import escape

    from flowpods.cli.treeview import trace_tree
    from flowpods.core.clock import format_duration
    from flowpods.core.controls import manual_pauses
    from flowpods.core.inputs import resolve_inputs
    from flowpods.core.model import FlowError
    from flowpods.core.status import Change
    from flowpods.local.loader import FlowCatalog, load_flow_file
    from flowpods.local.runner import EXPORT_TIMEOUT, LocalRunner
    from flowpods.telemetry.otlp_settings import otlp_protocol, otlp_traces_endpoint

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "140"))
    out = Console(highlight=False, width=width)
    err = Console(stderr=True, highlight=False, width=width)
    try:
        flow = load_flow_file(args.flow)
        if flow.disabled:
            raise FlowError([f"flow {flow.namespace}.{flow.id} is disabled (disabled: true); enable it to run it"])
        if args.flows and not Path(args.flows).is_dir():
            raise FlowError([f"--flows {args.flows} is not a folder"])
        given = parse_assignments(args.input)
        resolve_inputs(flow, given)
        if waits := manual_pauses(flow):
            raise FlowError([f"task '{task}' is a Pause without pauseDuration: it waits to be resumed (`flowpods "
                             f"resume`, on a cluster), which a local run cannot be; give it a pauseDuration to run "
                             f"it here" for task in waits])  # fmt: skip
        secret_env = read_secrets(args.secrets) if args.secrets else {}
    except (FlowError, ValueError) as exc:
        problems = exc.problems if isinstance(exc, FlowError) else [str(exc)]
        err.print(f"[red bold]flowpods: cannot run {escape(printable(args.flow))}[/]: "
                  + escape(printable("; ".join(problems))) + ".")  # fmt: skip
        err.print("Fix the flow or the inputs (see `flowpods run --help`) and run it again.")
        return EXIT_BAD_INPUT

    catalog = FlowCatalog(args.flows or Path(args.flow).resolve().parent, flows=[flow])
    protocol = otlp_protocol(os.environ)
    endpoint = otlp_traces_endpoint(os.environ, protocol)
    exporter = None
    if endpoint is not None:  # else no SDK to import (~20 ms)
        from flowpods.telemetry.otel import SpanRecordExporter

        exporter = SpanRecordExporter.from_env(os.environ, default_service="flowpods", timeout=EXPORT_TIMEOUT)

    def on_change(execution: LocalExecution, change: Change) -> None:
        if args.quiet:
            return
        indent = "  " * execution.depth
        label = f"{execution.run.namespace}.{execution.run.flowId}"
        for item in change.created:
            if "#" in item or "->" in item:
                out.print(f"{indent}[cyan]▶[/] {escape(label)} {escape(printable(item))}")
        for item in change.finished:
            if "#" not in item:
                tr = next((t for t in execution.status.taskRuns if item.split("[")[0] == t.taskId), None)
                state = _taskrun_state(execution, item) or (tr.state.value if tr else "")
                out.print(f"{indent}{_mark(state)} {escape(label)} {escape(printable(item))} {state}")
        if change.state.terminal:
            out.print(f"{indent}{_mark(change.state.value)} [bold]{escape(label)}[/] {change.state.value}")

    def on_log(execution: LocalExecution, action: Any, text: str) -> None:
        if args.quiet:
            return
        indent = "  " * (execution.depth + 1)
        for line in text.rstrip().splitlines()[-20:]:
            line = LOG_PREFIX.sub(r"\1 ", line)
            out.print(f"{indent}[dim]│ {escape(printable(line))}[/]")

    if not args.quiet:
        out.print(f"[bold]flowpods[/] running {escape(flow.namespace)}.{escape(flow.id)} locally")
    runner = LocalRunner(
        catalog, exporter=exporter, on_change=on_change, on_log=on_log, environ={**os.environ, **secret_env}
    )
    try:
        result = runner.run(flow, given)
    finally:
        if exporter is not None:
            exporter.shutdown()

    root = result.root
    if args.json:
        print(root.status.model_dump_json(indent=2))
        return 0 if root.status.state.value in ("SUCCESS", "WARNING") else 1
    out.print()
    for tree in trace_tree(result.spans):
        out.print(tree)
    state = root.status.state.value
    started, ended = root.status.startDate, root.status.endDate
    took = format_duration((ended - started).total_seconds()) if started and ended else "?"
    out.print()
    out.print(f"{_mark(state)} execution [bold]{root.run.id}[/] {state} in {took}")
    if root.status.error:
        out.print(f"  reason: {escape(printable(root.status.error))}")
    if root.status.outputs:
        out.print("  outputs: " + escape(printable(json.dumps(root.status.outputs, default=str))))
    from flowpods.core import ids

    out.print(f"  trace id: {ids.trace_id(root.run)}")
    for execution in result.executions.values():
        if execution.run.triggerId is not None:
            started_by = execution.run.triggerData.get("executionId")
            out.print(f"{_mark(execution.status.state.value)} execution [bold]{execution.run.id}[/] "
                      f"({escape(execution.run.namespace)}.{escape(execution.run.flowId)}) started by its Flow "
                      f"trigger '{escape(execution.run.triggerId)}' when {escape(str(started_by))} ended: "
                      f"{execution.status.state.value}; trace id {ids.trace_id(execution.run)}")  # fmt: skip
    for notice in result.notices:
        err.print(f"[yellow]flowpods:[/] {escape(printable(notice))}")
    if exporter is not None:
        out.print(f"  spans exported to {endpoint} ({protocol})")
    return 0 if state in ("SUCCESS", "WARNING") else 1


def _taskrun_state(execution: LocalExecution, item: str) -> str | None:
    task_id, _, bracketed = item.partition("[")
    value = bracketed.rstrip("]") or None
    for tr in execution.status.taskRuns:
        if tr.taskId == task_id and tr.value == value:
            return str(tr.state.value)
    return None


def _mark(state: str) -> str:
    return {"SUCCESS": "[green]✔[/]", "WARNING": "[yellow]![/]"}.get(state, "[red]✘[/]")


if __name__ == "__main__":
    sys.exit(main())
