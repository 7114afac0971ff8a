"""Flow triggers in the operator: once an execution has ended, start the executions its end triggers, once.

What fires is `core.flowtriggers`' decision, from the stored status and the Flows of the namespace as the
API server lists them (not the watch cache, which may not hold every Flow yet after a restart). Exactly
once, across restarts (see docs/architecture.md, "Flow triggers"):

1. the end is committed first (the reconcile that calls this reads a terminal stored status);
2. every execution to start is created under a name derived from the ending execution's uid, the Flow
   and the trigger id, so a create repeated by a restarted operator finds it there (409) and is a no-op;
3. only when every create succeeded, `status.triggered` records their names. A status that has it is never
   fired again; one without it is fired again from the start, by this process or the next.

Where no Flow of the namespace listens (`listeners` is empty), the operator commits the end with
`status.triggered: []` and this module is not called.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flowpods.core import flowtriggers
from flowpods.core.model import Flow, FlowTrigger
from flowpods.core.status import ExecutionStatus, RunInfo
from flowpods.kube import resources
from flowpods.kube.client import Kube

log = logging.getLogger("flowpods.kube.flowtriggers")


@dataclass
class Fired:
    """What firing did: the stored body after the marker was written, and what to say in Events."""

    body: dict[str, Any]
    started: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def listeners(kube: Kube, namespace: str) -> list[tuple[str, Flow]]:
    """The valid Flows of the namespace that have a Flow trigger, with their resource names."""
    found = []
    for body in kube.list_objects("flows", namespace):
        if not may_listen(body):
            continue
        flow = resources.read_flow(body)
        if isinstance(flow, Flow) and any(isinstance(t, FlowTrigger) for t in flow.triggers):
            found.append((str(body["metadata"]["name"]), flow))
    return found


def may_listen(body: dict[str, Any]) -> bool:
    """Whether the Flow resource declares a trigger of type Flow (any of its names ends with "Flow"). Listing
    the listeners runs at every execution's end: the other Flows of the namespace are not validated."""
    spec = body.get("spec")
    triggers = spec.get("triggers") if isinstance(spec, dict) else None
    return isinstance(triggers, list) and any(
        isinstance(t, dict) and str(t.get("type", "")).rsplit(".", 1)[-1] == "Flow" for t in triggers
    )


def fire(kube: Kube, execution: dict[str, Any], flow: Flow, run: RunInfo, status: ExecutionStatus) -> Fired:
    """Start what the end of `execution` triggers, then record it on its status (see the module's protocol)."""
    namespace, name = execution["metadata"]["namespace"], execution["metadata"]["name"]
    fired = Fired(body=execution)
    decided = flowtriggers.firings(flowtriggers.Ended(flow, run, status), listeners(kube, namespace))
    for firing in decided:
        if firing.error is not None:
            fired.problems.append(firing.error)
            continue
        if kube.create("executions", resources.triggered_execution(namespace, firing)):
            fired.started.append(firing.name)
            log.info("execution %s/%s: trigger '%s' of flow %s started %s", namespace, name, firing.trigger_id,
                     firing.resource, firing.name)  # fmt: skip
    marker = [{"op": "add", "path": "/status/triggered", "value": [f.name for f in decided if f.error is None]}]
    fired.body = kube.patch_status("executions", namespace, name, marker)
    return fired
