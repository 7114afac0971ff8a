"""The operator's /healthz tells the truth about the API server: unhealthy once it has been unreachable
past FLOWPODS_API_UNREACHABLE_SECONDS (kopf alone keeps answering 200 while it retries forever)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

import httpx

from tests import testenv
from tests.e2e.harness import OperatorProcess, free_port


class Relay:
    """A TCP relay to the API server that can be cut, as a broken network would cut it."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()


def health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code
    except httpx.HTTPError:
        return None


def test_healthz_fails_once_the_api_server_is_unreachable_past_the_threshold(
    testenv_info, crds, namespace, tmp_path: Path
) -> None:
    env = testenv_info
    relay = Relay(("127.0.0.1", env.apiserver_port))
    config = json.loads(env.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    kubeconfig = tmp_path / "kubeconfig-via-relay"
    kubeconfig.write_text(json.dumps(config))
    port = free_port()
    operator = OperatorProcess(
        env,
        namespace,
        tmp_path,
        extra_env={
            "KUBECONFIG": str(kubeconfig),
            "FLOWPODS_HEALTH_PORT": str(port),
            "FLOWPODS_API_UNREACHABLE_SECONDS": "3",
            "FLOWPODS_API_PORT": "0",
        },
    )
    operator.start()
    try:
        testenv.wait_for(
            lambda: health(port) == 200, 60, "/healthz 200 while the API answers", describe=operator.log_tail
        )
        relay.cut()
        # healthy for a while (a blip is not death), then unhealthy and it stays so
        testenv.wait_for(
            lambda: health(port) == 500, 60, "/healthz 500 with the API unreachable", describe=operator.log_tail
        )
        assert health(port) == 500
        assert operator.proc is not None and operator.proc.poll() is None  # reporting, not crashing
    finally:
        operator.stop()
        relay.cut()
