"""The operator's liveness: /healthz fails once the API server has been unreachable for too long.

kopf keeps retrying its watches forever and its /healthz answers 200 all the while, so a kubelet would
never restart an operator that lost the API (a broken network namespace, a stale token, a dead route).
This probe asks the API server for its version (cheap, allowed to every authenticated client) and reports
unhealthy when no answer came for longer than FLOWPODS_API_UNREACHABLE_SECONDS.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import kopf

UNREACHABLE_ENV = "FLOWPODS_API_UNREACHABLE_SECONDS"
DEFAULT_UNREACHABLE_SECONDS = 60.0
PING_TIMEOUT = 5.0


@dataclass
class ApiContact:
    """When the API server last answered, and since when it has not (pure bookkeeping)."""

    failing_since: float | None = None
    last_error: str = ""

    def record(self, now: float, error: str | None) -> None:
        if error is None:
            self.failing_since, self.last_error = None, ""
        else:
            self.failing_since = self.failing_since if self.failing_since is not None else now
            self.last_error = error

    def problem(self, now: float, threshold: float) -> str | None:
        """Why the operator is not healthy, or None."""
        if self.failing_since is None or now - self.failing_since < threshold:
            return None
        return f"the API server has been unreachable for {now - self.failing_since:.0f}s: {self.last_error}"


def unreachable_threshold(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    try:
        value = float(environ.get(UNREACHABLE_ENV) or DEFAULT_UNREACHABLE_SECONDS)
    except ValueError:
        return DEFAULT_UNREACHABLE_SECONDS
    return value if value > 0 else DEFAULT_UNREACHABLE_SECONDS


CONTACT = ApiContact()


def _ping() -> str | None:
    """None when the API server answered (any HTTP status is an answer), else what went wrong."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.VersionApi().get_code(_request_timeout=PING_TIMEOUT)
    except ApiException:
        return None
    except Exception as exc:  # connection refused, TLS, timeout: all mean "not reachable"
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


@kopf.on.probe(id="api", errors=kopf.ErrorsMode.PERMANENT, retries=1)
async def api_reachable(**_: Any) -> str:
    error = await asyncio.to_thread(_ping)
    CONTACT.record(time.monotonic(), error)
    problem = CONTACT.problem(time.monotonic(), unreachable_threshold())
    if problem:
        raise kopf.PermanentError(problem)
    return "reachable" if error is None else f"unreachable for now: {error}"
