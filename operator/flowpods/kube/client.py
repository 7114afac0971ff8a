"""A thin, synchronous Kubernetes client for the operator's few calls, returning plain dicts.

The reconciler runs these in a thread; kopf's own watches run in the event loop. The calls of the
reconcile path (read and write an Execution's status, create, read and delete a pod) are plain JSON
requests on the kubernetes client's connection pool and credentials: the body is encoded once and the
answer decoded once (`jsoncodec`: orjson), without the generated client's parameter
validation and its walk over every value of the body (most of the operator's CPU per task run, see
docs/benchmarks.md). Errors are the same `ApiException`s the generated client raises.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse

from flowpods.kube import jsoncodec
from flowpods.kube.resources import GROUP, VERSION

JSON = dict[str, Any]

LIST_PAGE = 500
"""Objects per page of a list that a watch starts from: the API server's answer and this process's decoding stay
bounded with thousands of pods."""
CONNECT_TIMEOUT = 10.0


class Conflict(Exception):
    """The object changed since it was read: read it again and recompute."""


def load_client_config() -> None:
    """In a pod, the service account; elsewhere the kubeconfig named by KUBECONFIG (or the default one)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig_path())


def kubeconfig_path() -> str | None:
    """KUBECONFIG as it is now (the client library reads it once, when it is imported)."""
    return os.environ.get("KUBECONFIG") or None


def current_namespace() -> str:
    """The namespace of the kubeconfig's current context (a pod's own namespace in a cluster), else "default"."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or "default"
    except OSError:
        pass
    try:
        _, current = config.list_kube_config_contexts(config_file=kubeconfig_path())
        return str((current or {}).get("context", {}).get("namespace") or "default")
    except config.ConfigException:
        return "default"


RequestObserver = Callable[[str, int, float], None]  # (HTTP method, status code or 0, seconds)

AUTH_REUSE = 10.0
"""Seconds the credentials' header is reused. The client's refresh hook (a kubeconfig's token or exec plugin; in
a pod, the service account token, re-read once a minute) ran for every request, setting its configuration again:
3 % of the operator's CPU. A rotated token is picked up within these seconds (the old one stays valid for long
after), and at once after a 401."""


def sized_api_client(pool_size: int) -> client.ApiClient:
    """A client on the loaded configuration whose connection pool keeps `pool_size` connections: as many as
    threads that call it at once. The library's default (5 per CPU) is below the operator's reconcile threads,
    so connections beyond it were closed after each request and their TLS handshakes made again."""
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        observe: RequestObserver | None = None,
        pool_size: int | None = None,
    ):
        """`pool_size`: the connections kept for reuse (the library's default when None)."""
        self.api = api_client or (sized_api_client(pool_size) if pool_size is not None else client.ApiClient())
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._observe = observe
        if observe is not None:
            _time_requests(self.api, observe)
        self._auth: tuple[float, dict[str, str]] | None = None  # (reuse until, header)

    def _auth_header(self) -> dict[str, str]:
        """The credentials' header (none with a client certificate), made again every AUTH_REUSE seconds."""
        now = time.monotonic()
        auth = self._auth
        if auth is None or now >= auth[0]:
            header: dict[str, str] = {}
            self.api.update_params_for_auth(header, None, ["BearerToken"], "", "GET", None)
            auth = self._auth = (now + AUTH_REUSE, header)
        return auth[1]

    def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """One JSON request on the client's pool and credentials; the decoded answer, else ApiException."""
        headers = {**self.api.default_headers, "Accept": "application/json", **self._auth_header()}
        if body is not None:
            headers["Content-Type"] = content_type
        url = self.api.configuration.host + path
        data = None if body is None else jsoncodec.dumps(body)
        started, status = time.perf_counter(), 0
        try:
            try:
                raw = self.api.rest_client.pool_manager.request(
                    method, url, body=data, headers=headers, preload_content=False
                )
            except urllib3.exceptions.SSLError as exc:  # as the generated client reports it
                raise ApiException(status=0, reason=f"{type(exc).__name__}\n{exc}") from None
            response = RESTResponse(raw)
            data = cast(bytes, response.read())
            status = int(response.status)
            self._raise_refused(response)
            return cast(JSON, jsoncodec.loads(data))
        finally:
            if self._observe is not None:
                self._observe(method, status, time.perf_counter() - started)

    def _raise_refused(self, response: RESTResponse) -> None:
        """The answer's error, as the generated client raises it (NotFoundException, ConflictException...), if it
        is one; after a 401 the credentials are read again next time (the token was rotated or revoked)."""
        status = int(response.status)
        if status == 401:
            self._auth = None
        if not 200 <= status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)

    @staticmethod
    def _custom_path(namespace: str, plural: str, name: str = "", sub: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
        if name:
            path += "/" + quote(name, safe="")
        return path + ("/" + sub if sub else "")

    @staticmethod
    def _core_path(namespace: str, plural: str, name: str = "") -> str:
        """The path of a core/v1 kind (pods, events, configmaps) in a namespace, or of one object of it."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}"
        return path + ("/" + quote(name, safe="") if name else "")

    @staticmethod
    def _pod_path(namespace: str, name: str = "") -> str:
        return Kube._core_path(namespace, "pods", name)

    # -- executions and flows -------------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", self._custom_path(namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_objects(self, plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of the kind in the namespace, read from the API server, not from a watch that may lag
        (the run view's list, the Flows a Flow trigger may start; one call, no paging)."""
        found: Any = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=label_selector or ""
        )
        return cast(list[JSON], found.get("items") or [])

    def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole status; the body's resourceVersion makes it fail (Conflict) if the object moved."""
        meta = body["metadata"]
        try:
            return self._request("PUT", self._custom_path(meta["namespace"], plural, meta["name"], "status"), body)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(meta["name"]) from None
            raise

    def patch_status(self, plural: str, namespace: str, name: str, patch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Apply a JSON patch to the status; its `test` ops make it all-or-nothing (Conflict when one fails)."""
        try:
            path = self._custom_path(namespace, plural, name, "status")
            return self._request("PATCH", path, list(patch), "application/json-patch+json")
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

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create; the pod as stored, None when it already exists (creates are idempotent by name)."""
        try:
            return self._request("POST", self._pod_path(body["metadata"]["namespace"]), body)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", self._pod_path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = self._request("GET", self._pod_path(namespace) + "?labelSelector=" + quote(label_selector, safe=""))
        return cast(list[JSON], found.get("items") or [])

    def pod_log(self, namespace: str, name: str, container: str, tail_lines: int) -> str | None:
        """The container's log (its last lines), or None when the pod is gone."""
        try:
            response: Any = self.core.read_namespaced_pod_log(
                name, namespace, container=container, tail_lines=tail_lines, _preload_content=False
            )
            return cast(bytes, response.data).decode("utf-8", errors="replace")
        except ApiException as exc:
            if exc.status in (400, 404):  # 400: the container has not started yet
                return None
            raise

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The Events about one pod (scheduling, image pulls, ...), oldest first as the API server lists them."""
        selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
        path = self._core_path(namespace, "events") + "?fieldSelector=" + quote(selector, safe="")
        found = self._request("GET", path)
        return cast(list[JSON], found.get("items") or [])

    def create_event(self, body: dict[str, Any]) -> None:
        self._request("POST", self._core_path(body["metadata"]["namespace"], "events"), body)

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self._request("DELETE", self._pod_path(namespace, name))
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- config maps (the span watermark ledger) ----------------------------------------------------------------

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", self._core_path(namespace, "configmaps", name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def put_config_map(self, body: dict[str, Any]) -> None:
        """Replace the config map whole (created when missing): its one writer needs no resourceVersion."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self._request("PUT", self._core_path(namespace, "configmaps", name), body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._request("POST", self._core_path(namespace, "configmaps"), body)

    # -- list and watch (kube/watches.py) --------------------------------------------------------------------

    @staticmethod
    def pods_path(namespace: str | None) -> str:
        """Where the pods of one namespace are listed and watched; of every namespace when None."""
        return "/api/v1/pods" if namespace is None else Kube._pod_path(namespace)

    @staticmethod
    def executions_path(namespace: str | None) -> str:
        """Where the Executions of one namespace are listed and watched; of every namespace when None."""
        if namespace is None:
            return f"/apis/{GROUP}/{VERSION}/executions"
        return Kube._custom_path(namespace, "executions")

    def list_versioned(self, path: str, label_selector: str) -> tuple[list[JSON], str]:
        """Every object at `path` that the selector matches, page by page, and the list's resourceVersion:
        where a watch of the same objects starts so that it misses nothing and repeats nothing."""
        items: list[JSON] = []
        token = ""
        while True:
            query = f"?labelSelector={quote(label_selector, safe='')}&limit={LIST_PAGE}"
            if token:
                query += f"&continue={quote(token, safe='')}"
            page = self._request("GET", path + query)
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch(self, path: str, label_selector: str, version: str, timeout: int) -> Iterator[JSON]:
        """The events of a watch from `version`, decoded as they arrive (BOOKMARKs and ERRORs included), until
        the API server ends it after `timeout` seconds. ApiException if it refuses the watch (410: the version
        is too old, list again); urllib3's errors when the connection breaks or stays silent too long."""
        query = (f"?watch=1&allowWatchBookmarks=true&labelSelector={quote(label_selector, safe='')}"
                 f"&resourceVersion={quote(version, safe='')}&timeoutSeconds={timeout}")  # fmt: skip
        headers = {**self.api.default_headers, "Accept": "application/json", **self._auth_header()}
        raw = self.api.rest_client.pool_manager.request(
            "GET", self.api.configuration.host + path + query, headers=headers, preload_content=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=timeout + CONNECT_TIMEOUT), retries=False,
        )  # fmt: skip
        try:
            if not 200 <= raw.status <= 299:
                response = RESTResponse(raw)
                response.read()
                self._raise_refused(response)
            pending = b""
            for chunk in raw.stream(amt=None, decode_content=False):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        yield cast(JSON, jsoncodec.loads(line))
        finally:
            raw.close()
            raw.release_conn()


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
