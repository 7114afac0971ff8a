"""The kubernetes client's connection pool, sized to the threads that call it, and its credentials (no network
needed but a server of the test's own on 127.0.0.1)."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flowpods.kube.client import Kube


def test_the_pool_keeps_as_many_connections_as_asked_and_the_loaded_configuration() -> None:
    default = client.Configuration.get_default_copy()
    kube = Kube(pool_size=32)
    assert kube.api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 32
    assert kube.api.configuration.host == default.host
    assert client.Configuration.get_default_copy().connection_pool_maxsize == default.connection_pool_maxsize


def test_without_a_size_the_library_default_stays() -> None:
    kube = Kube()
    maxsize = kube.api.rest_client.pool_manager.connection_pool_kw["maxsize"]
    assert maxsize == client.Configuration.get_default_copy().connection_pool_maxsize


def test_the_credentials_are_read_once_for_many_requests_and_again_after_a_401() -> None:
    """The client's refresh hook (a kubeconfig's token, a pod's token file) ran for every request."""
    seen: list[str] = []
    answers = [401, 200, 200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            code = answers.pop(0)
            body = b"{}" if code == 200 else b'{"kind":"Status","code":401}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    refreshed: list[int] = []

    def refresh(configuration: client.Configuration) -> None:
        refreshed.append(1)
        configuration.api_key["BearerToken"] = f"token-{len(refreshed)}"

    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    configuration.api_key["BearerToken"] = "token-0"  # the hook runs only where a token is configured
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    configuration.refresh_api_key_hook = refresh
    kube = Kube(client.ApiClient(configuration))
    try:
        with pytest.raises(ApiException) as refused:
            kube.get("executions", "team", "one")
        assert refused.value.status == 401
        assert kube.get("executions", "team", "one") == {}
        assert kube.get("executions", "team", "one") == {}
    finally:
        server.shutdown()
    assert seen == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert len(refreshed) == 2
