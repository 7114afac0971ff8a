"""A Service's ClusterIP made reachable without kube-proxy: TCP relays from ClusterIP:port to a ready pod.

The real node runs no kube-proxy and no CoreDNS (see docs/testenv.md), so a test that needs a Service
(the chart's in-cluster Jaeger) calls `serve_service`: the ClusterIP goes on the pods' bridge inside the
sandbox (pods route the whole Service range there) and one relay process per port forwards to the first
ready endpoint. Pods then use the Service's IP, as they would with kube-proxy; names still need DNS.

`python -m tests.testenv.relay LISTEN_HOST:PORT TARGET_HOST:PORT` is the relay itself (stdlib asyncio).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import node as node_mod

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceRelay:
    cluster_ip: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
        subprocess.run(["ip", "addr", "del", f"{self.cluster_ip}/32", "dev", node_mod.BRIDGE], capture_output=True)


def serve_service(core_v1: Any, namespace: str, name: str, log_dir: Path) -> ServiceRelay:
    """Relays for every port of the Service to its first ready endpoint; call from inside the sandbox's
    network (the session's pytest process is)."""
    svc = core_v1.read_namespaced_service(name, namespace)
    pod_ip = _ready_pod_ip(core_v1, namespace, svc.spec.selector)
    relay = ServiceRelay(svc.spec.cluster_ip)
    subprocess.run(["ip", "addr", "add", f"{relay.cluster_ip}/32", "dev", node_mod.BRIDGE], check=True)
    for port in svc.spec.ports:
        target = port.target_port if isinstance(port.target_port, int) else _container_port(svc, port, core_v1)
        log = (log_dir / f"relay-{name}-{port.port}.log").open("ab")
        relay.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.testenv.relay", f"{relay.cluster_ip}:{port.port}", f"{pod_ip}:{target}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO,
            )
        )
        log.close()
    return relay


def _ready_pod_ip(core_v1: Any, namespace: str, selector: dict[str, str]) -> str:
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    for pod in core_v1.list_namespaced_pod(namespace, label_selector=labels).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.status.pod_ip:
            return str(pod.status.pod_ip)
    raise RuntimeError(f"no ready pod for {labels} in {namespace}")


def _container_port(svc: Any, port: Any, core_v1: Any) -> int:
    """A named targetPort: the number of that port on the selected pods' containers."""
    labels = ",".join(f"{k}={v}" for k, v in svc.spec.selector.items())
    (pod, *_) = core_v1.list_namespaced_pod(svc.metadata.namespace, label_selector=labels).items
    for container in pod.spec.containers:
        for cport in container.ports or []:
            if cport.name == port.target_port:
                return int(cport.container_port)
    raise RuntimeError(f"service {svc.metadata.name}: no container port named {port.target_port}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _relay(listen: str, target: str) -> None:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)

    async def handle(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(thost, int(tport))
        except OSError:
            w1.close()
            return
        await asyncio.gather(_pipe(r1, w2), _pipe(r2, w1))

    server = await asyncio.start_server(handle, lhost, int(lport))
    print(f"relaying {listen} -> {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_relay(sys.argv[1], sys.argv[2]))
