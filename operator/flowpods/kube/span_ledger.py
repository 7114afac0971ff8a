"""The span watermark ledger in the cluster: one ConfigMap per namespace (`resources.LEDGER_NAME`).

The export thread stores in it the confirmed watermarks of the running executions of one export request in
one write, where each execution's status would need a write of its own; the next commit of each execution
carries its watermark into its status (core/export_queue.py). A process started later reads it back before
it plans a namespace's spans, so nothing it holds is sent again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes.client.exceptions import ApiException

from flowpods.kube import resources
from flowpods.kube.client import Kube


class LedgerForbidden(Exception):
    """RBAC refuses the ledger: none is kept in that namespace (each watermark is stored by a write of its own)."""


class ConfigMapLedger:
    def __init__(self, kube: Kube):
        self.kube = kube

    def read(self, namespace: str) -> dict[str, int]:
        """What the namespace's ledger holds ({} when there is none yet)."""
        with _forbidden_as_ledger_forbidden(namespace):
            body = self.kube.get_config_map(namespace, resources.LEDGER_NAME)
        return {} if body is None else resources.ledger_watermarks(body)

    def write(self, namespace: str, watermarks: dict[str, int]) -> None:
        with _forbidden_as_ledger_forbidden(namespace):
            self.kube.put_config_map(resources.ledger_body(namespace, watermarks))


@contextmanager
def _forbidden_as_ledger_forbidden(namespace: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status == 403:
            raise LedgerForbidden(namespace) from None
        raise
