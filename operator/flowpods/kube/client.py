"""A thin, synchronous Kubernetes client for the operator's few calls, returning plain dicts.

The reconciler runs these in a thread; kopf's own watches run in the event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from flowpods.kube.resources import GROUP, VERSION

JSON = dict[str, Any]


class Conflict(Exception):
    """The object changed since it was read: read it again and recompute."""


def load_client_config() -> None:
    """In a pod, the service account; elsewhere the kubeconfig named by KUBECONFIG (or the default one)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


RequestObserver = Callable[[str, int, float], None]  # (HTTP method, status code or 0, seconds)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None, observe: RequestObserver | None = None):
        self.api = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        if observe is not None:
            _time_requests(self.api, observe)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return cast(JSON, json.loads(response.data))

    # -- executions and flows -------------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(JSON, self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole status; the body's resourceVersion makes it fail (Conflict) if the object moved."""
        meta = body["metadata"]
        try:
            return cast(
                JSON,
                self.custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, meta["namespace"], plural, meta["name"], body
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(meta["name"]) from None
            raise

    def patch_status(self, plural: str, namespace: str, name: str, patch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Apply a JSON patch to the status; its `test` ops make it all-or-nothing (Conflict when one fails)."""
        try:
            patched = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, list(patch), _content_type="application/json-patch+json"
            )
            return cast(dict[str, Any], patched)
        except ApiException as exc:
            if exc.status in (409, 422):
                raise Conflict(name) from None
            raise

    def create(self, plural: str, body: dict[str, Any]) -> bool:
        """Create; False when it already exists (creates are idempotent by name)."""
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], plural, body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of a custom object (metadata and spec); the object as stored."""
        return cast(JSON, self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch))

    def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Set annotations (a None value removes one: a merge patch)."""
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- pods -----------------------------------------------------------------------------------------

    def create_pod(self, body: dict[str, Any]) -> bool:
        try:
            self.core.create_namespaced_pod(body["metadata"]["namespace"], cast(Any, body))  # a dict is accepted
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _time_requests(api: client.ApiClient, observe: RequestObserver) -> None:
    """Report each HTTP request of this client (method, status code, seconds) to `observe`."""
    rest = api.rest_client
    request = rest.request

    def timed(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started, status = time.perf_counter(), 0
        try:
            response = request(method, url, *args, **kwargs)
            status = int(getattr(response, "status", 0) or 0)
            return response
        except ApiException as exc:
            status = int(exc.status or 0)
            raise
        finally:
            observe(method, status, time.perf_counter() - started)

    rest.request = timed  # type: ignore[method-assign]
