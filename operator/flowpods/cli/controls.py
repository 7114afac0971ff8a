"""`flowpods resume | restart | replay | labels`: execution controls through the HTTP API, like `flowpods start`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from flowpods.cli.main import EXIT_BAD_INPUT, parse_assignments
from flowpods.cli.start import api_message


def request_of(args: argparse.Namespace) -> tuple[str, Any]:
    """The route's last segment and the JSON body of a control command; raises ValueError on a bad option."""
    if args.command == "resume":
        return "resume", {"inputs": parse_assignments(args.input)}
    if args.command == "labels":
        return "labels", [{"key": k, "value": v} for k, v in parse_assignments(args.labels, "KEY=VALUE").items()]
    if args.command == "replay":
        return "replay" + (f"?taskRunId={args.task_run}" if args.task_run else ""), None
    return "restart", None


def control(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Exit 0 when the API accepted the request, 2 when it refused it (its message is printed), 1 when unreachable."""
    import httpx

    try:
        action, body = request_of(args)
    except ValueError as exc:
        print(f"flowpods: {exc}", file=err)
        return EXIT_BAD_INPUT
    server = args.server.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    path = f"/api/v1/executions/{args.namespace}/{args.execution}/{action}"
    try:
        with httpx.Client(base_url=server, headers=headers, timeout=httpx.Timeout(60.0)) as client:
            response = client.post(path, json=body) if body is not None else client.post(path)
    except httpx.HTTPError as exc:
        print(f"flowpods: cannot reach the flowpods API at {server}: {exc}", file=err)
        return 1
    if response.status_code >= 400:
        print(
            f"flowpods: cannot {action.split('?')[0]} {args.namespace}/{args.execution}: {api_message(response)}",
            file=err,
        )
        return EXIT_BAD_INPUT if response.status_code < 500 else 1
    execution = response.json()
    if action.startswith("replay"):
        said = f"replays {args.execution} (a new execution)"
    else:
        said = execution.get("message") or f"labels: {execution.get('labels')}"
    print(f"{execution['namespace']}/{execution['name']} {execution['state']}: {said}", file=out)
    return 0
