"""Whether an execution may start, decided the same way by the operator, the API and the local runner."""

from __future__ import annotations

MAX_SUBFLOW_DEPTH = 10  # a flow that calls itself must end, not fill the cluster
