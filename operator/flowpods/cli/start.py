"""`flowpods start`: start a flow through the HTTP API and follow it (a client of flowpods.api.app)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from flowpods.cli.main import EXIT_BAD_INPUT, parse_assignments

OK_STATES = {"SUCCESS", "WARNING"}


# --- pure ----------------------------------------------------------------------------------------------


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a server-sent event stream; comments (heartbeats) are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def progress_lines(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What changed between two snapshots of an execution, as lines for a person."""
    lines = []
    old_runs = {t["id"]: t for t in (before or {}).get("taskRuns") or []}
    for run in after.get("taskRuns") or []:
        old = old_runs.get(run["id"])
        if old is not None and (old["state"], old["attempts"]) == (run["state"], run["attempts"]):
            continue
        label = run["taskId"] + (f"[{run['value']}]" if run.get("value") is not None else "")
        attempt = f" (attempt {run['attempts']})" if run.get("attempts", 0) > 1 else ""
        error = f": {run['error']}" if run.get("error") and run["state"] not in OK_STATES else ""
        lines.append(f"  task {label} {run['state']}{attempt}{error}")
    if before is None or before.get("state") != after.get("state"):
        lines.append(f"{after['name']} {after['state']}")
    return lines


def api_message(response: Any) -> str:
    """The `error.message` of an API error response, else its status line."""
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def jaeger_link(execution: dict[str, Any], jaeger_url: str | None) -> str | None:
    trace_id = execution.get("traceId")
    if jaeger_url and trace_id:
        return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"
    return (execution.get("links") or {}).get("jaeger")


# --- the command ---------------------------------------------------------------------------------------


def start(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    import json

    import httpx

    try:
        inputs = parse_assignments(args.input)
        labels = parse_assignments(args.label, "--label")
    except ValueError as exc:
        print(f"flowpods: {exc}", file=err)
        return EXIT_BAD_INPUT
    server = args.server.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    path = f"/api/v1/executions/{args.namespace}/{args.flow}"
    with httpx.Client(base_url=server, headers=headers, timeout=httpx.Timeout(60.0)) as client:
        try:
            response = client.post(path, json={"inputs": inputs, "labels": labels})
        except httpx.HTTPError as exc:
            print(f"flowpods: cannot reach the flowpods API at {server}: {exc}", file=err)
            return 1
        if response.status_code >= 400:
            print(f"flowpods: cannot start {args.namespace}/{args.flow}: {api_message(response)}", file=err)
            return EXIT_BAD_INPUT if response.status_code < 500 else 1
        execution = response.json()
        print(f"started {execution['namespace']}/{execution['name']} (flow {args.flow})", file=out, flush=True)
        if not args.follow:
            _print_trace(execution, out)
            return 0
        last: dict[str, Any] | None = None
        try:
            with client.stream("GET", execution["links"]["follow"], timeout=httpx.Timeout(60.0, read=None)) as stream:
                if stream.status_code >= 400:
                    stream.read()
                    print(f"flowpods: cannot follow {execution['name']}: {api_message(stream)}", file=err)
                    return EXIT_BAD_INPUT if stream.status_code < 500 else 1
                for event, data in sse_events(stream.iter_lines()):
                    if event != "status":
                        continue
                    snapshot = json.loads(data)
                    for line in progress_lines(last, snapshot):
                        print(line, file=out, flush=True)
                    last = snapshot
        except httpx.HTTPError as exc:
            print(f"flowpods: following {execution['name']} failed: {exc}", file=err)
        final = last or execution
        state = final.get("state", "?")
        print(f"{final['name']} ended {state}" + (f": {final['message']}" if final.get("message") else ""), file=out)
        _print_trace(final, out)
        return 0 if state in OK_STATES else 1


def _print_trace(execution: dict[str, Any], out: TextIO) -> None:
    print(f"  trace id: {execution.get('traceId')}", file=out)
    link = jaeger_link(execution, os.environ.get("FLOWPODS_JAEGER_URL"))
    if link:
        print(f"  trace: {link}", file=out)
