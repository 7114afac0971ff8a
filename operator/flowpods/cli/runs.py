"""`flowpods list`, `get` and `logs`: executions on the cluster, read through the kubeconfig.

The same facts the run view's page shows, for a terminal: `get` derives the spans from the Execution's
stored status (and its subflows') exactly as the operator does, and prints the tree `flowpods run`
prints, with the slowest task and the critical path marked. Nothing is stored by these commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from flowpods.cli.terminal import printable

LIST_HELP = """\
List the executions of a namespace (newest first) through your kubeconfig (KUBECONFIG, or
~/.kube/config; you need `list` on executions.flowpods.io): state, when it was created, how long it took
(or has been running), how long it was queued before it ran, its trigger, labels and trace id.
"""

GET_HELP = """\
Show one execution: its state and times, then the trace tree `flowpods run` prints, derived from the
Execution's stored status (and its subflows' Executions), with the slowest task (◀ slowest) and the
critical path (◆: the chain of task runs that decided when the execution ended) marked. Only spans
that are complete are in the tree: a running task run appears once it ended.
"""

LOGS_HELP = """\
Print the logs of an execution's task runs (of TASK only, when given), each attempt under a header,
read from its pod. flowpods keeps no copy: once a pod is deleted (its clean-up policy, or by hand), its
log is gone and this says so. Subflows' task runs are in their own executions: `flowpods logs CHILD`.
"""


def add_commands(commands: Any) -> None:
    def namespace_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-n", "--namespace", help="the Kubernetes namespace (default: the kubeconfig's)")

    listing = commands.add_parser(
        "list",
        help="list executions on the cluster",
        description=LIST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    namespace_option(listing)
    listing.add_argument("--flow", help="only this flow's executions (the Flow resource's name)")
    listing.add_argument("--state", help="only executions in this state (SUCCESS, FAILED, RUNNING, ...)")
    get = commands.add_parser(
        "get",
        help="an execution's trace tree, slowest task and critical path marked",
        description=GET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    namespace_option(get)
    get.add_argument("execution", metavar="EXECUTION", help="the Execution's name")
    logs = commands.add_parser(
        "logs",
        help="an execution's task-run logs, from their pods",
        description=LOGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    namespace_option(logs)
    logs.add_argument("execution", metavar="EXECUTION", help="the Execution's name")
    logs.add_argument("task", metavar="TASK", nargs="?", help="only this task's runs (a task id)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from flowpods.kube.client import Kube, current_namespace, load_client_config

    out, err = out or sys.stdout, err or sys.stderr
    try:
        load_client_config()
        namespace = args.namespace or current_namespace()
        kube = Kube()
        if args.command == "list":
            return _list(kube, namespace, args, out)
        execution = kube.get("executions", namespace, args.execution)
        if execution is None:
            print(f"flowpods: no execution '{args.execution}' in namespace '{namespace}'", file=err)
            return 1
        if args.command == "get":
            return _get(kube, namespace, execution, out)
        return _logs(kube, namespace, execution, args.task, out, err)
    except Exception as exc:  # the cluster's refusal or absence, said in one line
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        status = getattr(exc, "status", None)
        print(
            f"flowpods: cannot read from the cluster: {printable(str(status or ''))} {printable(str(reason))}", file=err
        )
        return 1


def _list(kube: Any, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    from rich.console import Console
    from rich.table import Table

    from flowpods.api.runview import list_row
    from flowpods.core.clock import format_duration, utcnow

    now = utcnow()
    rows = [list_row(item, now) for item in kube.list_objects("executions", namespace)]
    rows = [r for r in rows if (not args.flow or r.flowId == args.flow) and (not args.state or r.state == args.state)]
    rows.sort(key=lambda r: r.created or now, reverse=True)
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "FLOW", "STATE", "CREATED", "DURATION", "QUEUED", "TRIGGER", "TASKS", "LABELS", "TRACE-ID"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            printable(r.name),
            printable(r.flowId or ""),
            r.state,
            r.created.strftime("%Y-%m-%d %H:%M:%S") if r.created else "",
            format_duration(r.seconds) if r.seconds is not None else "",
            format_duration(r.queuedSeconds) if r.queuedSeconds is not None else "",
            printable(r.trigger),
            str(r.taskRuns),
            printable(",".join(f"{k}={v}" for k, v in r.labels.items())),
            r.traceId or "",
        )
    Console(file=out, highlight=False, width=_width(out)).print(table)
    if not rows:
        print(f"no executions in namespace '{namespace}'", file=out)
    return 0


def _width(out: TextIO) -> int | None:
    return None if out.isatty() else 200


def _get(kube: Any, namespace: str, execution: dict[str, Any], out: TextIO) -> int:
    from rich.console import Console
    from rich.markup import escape

    from flowpods.cli.treeview import trace_tree
    from flowpods.core.clock import format_duration, utcnow
    from flowpods.core.critical import critical_spans
    from flowpods.core.records import SpanRecord
    from flowpods.core.spans import derive_spans
    from flowpods.kube import resources

    console = Console(file=out, highlight=False, width=_width(out))
    now = utcnow()
    spans: list[SpanRecord] = []
    todo, seen = [execution], set[str]()
    while todo and len(seen) < 50:
        body = todo.pop()
        seen.add(body["metadata"]["name"])
        status, stored = resources.stored_status(body), resources.stored_flow(body)
        if status is None or stored is None:
            continue
        run = resources.run_info(body, stored[0], stored[1], now)
        spans.extend(span for _, span in derive_spans(run, stored[0], status))
        for tr in status.taskRuns:
            if tr.child and tr.child not in seen and (child := kube.get("executions", namespace, tr.child)):
                todo.append(child)
    meta, status_body = execution["metadata"], execution.get("status") or {}
    status = resources.stored_status(execution)
    state = status.state.value if status else "CREATED"
    console.print(
        f"[bold]{escape(printable(meta['name']))}[/] {state}  flow {escape(printable(resources.flow_ref(execution)))}"
        f"  namespace {escape(meta['namespace'])}"
    )
    if status and status.startDate:
        end = status.endDate or now
        took = format_duration((end - status.startDate).total_seconds())
        console.print(f"  started {status.startDate.isoformat()}  {'took' if status.endDate else 'running for'} {took}")
    if status_body.get("message"):
        console.print(f"  reason: {escape(printable(str(status_body['message'])))}")
    if status_body.get("traceId"):
        console.print(f"  trace id: {status_body['traceId']}")
    console.print()
    if not spans:
        console.print("no span is complete yet (the tree appears as task runs end)")
        return 0
    for tree in trace_tree(spans, critical_spans(spans)):
        console.print(tree)
    if status and not status.state.terminal:
        console.print("\n(running: task runs that have not ended are not in the tree yet)")
    return 0


def _logs(kube: Any, namespace: str, execution: dict[str, Any], task: str | None, out: TextIO, err: TextIO) -> int:
    from flowpods.kube import resources

    status = resources.stored_status(execution)
    runs = [tr for tr in (status.taskRuns if status else []) if task is None or tr.taskId == task]
    if task is not None and not runs:
        print(f"flowpods: execution '{execution['metadata']['name']}' has no run of task '{printable(task)}'", file=err)
        return 1
    for tr in runs:
        label = tr.taskId if tr.value is None else f"{tr.taskId} [{tr.value}]"
        if not tr.attempts:
            if tr.child:
                print(f"== {printable(label)}: a subflow; its logs: flowpods logs {tr.child}", file=out)
            continue
        for attempt in tr.attempts:
            print(
                f"== {printable(label)} attempt {attempt.number} ({attempt.state.value}) pod {attempt.pod} ==", file=out
            )
            pod = kube.get_pod(namespace, attempt.pod) if attempt.pod else None
            container = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(
                "kubectl.kubernetes.io/default-container", resources.TASK_CONTAINER
            )
            text = kube.pod_log(namespace, attempt.pod, container, 10000) if pod else None
            if pod is None:
                print("(the pod is gone: its log is gone with it; flowpods keeps no copy)", file=out)
            elif text is None:
                print("(the container has not started: no log yet)", file=out)
            else:
                for line in text.splitlines():
                    print(printable(line), file=out)
    out.flush()
    return 0
