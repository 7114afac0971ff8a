"""The copy of a flow an Execution keeps (`status.flow`), without its secrets.

A user who may read Executions need not be allowed to read Flows, so the snapshot holds what running
the execution needs and nothing more: triggers are dropped, because a Webhook trigger's `key` is the
secret part of its URL and no execution needs a trigger once it has started.
"""

from __future__ import annotations

import json
from typing import Any

from flowpods.core.model import Flow

LEFT_OUT = frozenset({"triggers"})
"""Flow fields never copied into an Execution."""


def flow_snapshot(flow: Flow) -> dict[str, Any]:
    """The flow as a JSON-safe document for `status.flow`, triggers (and so webhook keys) left out."""
    document = flow.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude=set(LEFT_OUT))
    safe: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return safe
