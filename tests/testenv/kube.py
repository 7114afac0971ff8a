"""Helpers for tests: kubectl and Python-client access bound to the environment's own
kubeconfig (never a default or in-cluster config), applying YAML, and waiting with clear
timeout messages.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .cluster import EnvInfo

T = TypeVar("T")


def kubectl(
    env: EnvInfo, *args: str, input: str | None = None, check: bool = True, user: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the built kubectl with `--kubeconfig` and `KUBECONFIG` both set to the env's file
    (the non-admin user's with user=True). check=True raises with stderr in the message."""
    kc = str(env.user_kubeconfig if user else env.kubeconfig)
    sub_env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    sub_env["KUBECONFIG"] = kc
    argv = [str(env.kubectl()), "--kubeconfig", kc, *args]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=sub_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def kubectl_apply(
    env: EnvInfo, yaml_text: str, namespace: str | None = None, user: bool = False, server_side: bool = True
) -> str:
    """`kubectl apply -f -` (server-side by default); returns kubectl's output."""
    args = ["apply", "-f", "-"]
    if server_side:
        args += ["--server-side", "--field-manager", "flowpods-tests"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(env, *args, input=yaml_text, user=user).stdout


def api_client(kubeconfig: Path | str):
    """A kubernetes ApiClient from exactly this kubeconfig file."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def apply_objects(client, docs: str | list[dict], namespace: str | None = None) -> list[dict]:
    """Server-side apply YAML text or object dicts through the Python client's dynamic API.

    Returns the applied objects as dicts. Namespaced kinds get `namespace` unless they name one.
    """
    import yaml
    from kubernetes.dynamic import DynamicClient

    if isinstance(docs, str):
        docs = [d for d in yaml.safe_load_all(docs) if d]
    dyn = DynamicClient(client)
    out = []
    for doc in docs:
        res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        ns = None
        if res.namespaced:
            ns = doc.get("metadata", {}).get("namespace") or namespace
        obj = res.server_side_apply(
            body=doc, name=doc["metadata"]["name"], namespace=ns, field_manager="flowpods-tests", force_conflicts=True
        )
        out.append(obj.to_dict())
        if doc["kind"] == "CustomResourceDefinition":
            wait_for(
                lambda n=doc["metadata"]["name"]: _crd_established(dyn, n),
                30,
                f"CRD {doc['metadata']['name']} Established",
            )
            dyn.resources.invalidate_cache() if hasattr(dyn.resources, "invalidate_cache") else None
    return out


def _crd_established(dyn, name: str) -> bool:
    crd = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    obj = crd.get(name=name).to_dict()
    return any(
        c["type"] == "Established" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])
    )


def wait_for(
    check: Callable[[], T], timeout: float, what: str, interval: float = 0.2, describe: Callable[[], Any] | None = None
) -> T:
    """Poll `check` until it returns something truthy; AssertionError naming `what`, the last
    value/error and `describe()` (e.g. the object's status) on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as e:
            last = e
        if time.monotonic() >= deadline:
            extra = ""
            if describe:
                try:
                    extra = f"\ncurrent state: {describe()}"
                except Exception as e:
                    extra = f"\n(describe failed: {e!r})"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{extra}")
        time.sleep(interval)


def _pod_dict(core, namespace: str, name: str) -> dict:
    return core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))


def wait_for_pod_phase(
    core, namespace: str, name: str, phases: str | tuple[str, ...] = ("Succeeded",), timeout: float = 60
) -> dict:
    """Wait until the pod is in one of `phases`; returns the pod as a dict (API field names)."""
    if isinstance(phases, str):
        phases = (phases,)

    def check():
        pod = _pod_dict(core, namespace, name)
        return pod if pod.get("status", {}).get("phase") in phases else None

    return wait_for(
        check,
        timeout,
        f"pod {namespace}/{name} to reach phase {'/'.join(phases)}",
        describe=lambda: _pod_dict(core, namespace, name).get("status"),
    )


def pod_log_path(env: EnvInfo, namespace: str, pod: str, container: str, uid: str | None = None) -> Path:
    """Where the node writes a container's stdout+stderr (the newest pod of that name unless uid is
    given): the node agent's plain file, or the real kubelet's CRI log of the container's last run."""
    if env.real_node:
        logs = env.dir / "node" / "pod-logs"
        dirs = sorted(logs.glob(f"{namespace}_{pod}_{uid or '*'}"), key=lambda p: p.stat().st_mtime)
        runs = sorted((dirs[-1] / container).glob("*.log"), key=lambda p: p.stat().st_mtime) if dirs else []
        if not runs:
            raise FileNotFoundError(f"no log of {namespace}/{pod}/{container} under {logs}")
        return runs[-1]
    base = env.pods_dir / namespace / pod
    if uid is None:
        uids = sorted(base.glob("*/"), key=lambda p: p.stat().st_mtime) if base.exists() else []
        if not uids:
            raise FileNotFoundError(f"no pod directory under {base}")
        return uids[-1] / f"{container}.log"
    return base / uid / f"{container}.log"


def pod_log(env: EnvInfo, namespace: str, pod: str, container: str, uid: str | None = None) -> str:
    """The container's output as it wrote it (CRI log lines `<time> <stream> <P|F> <text>` unwrapped)."""
    text = pod_log_path(env, namespace, pod, container, uid).read_text(errors="replace")
    if not env.real_node:
        return text
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + ("\n" if parts[2] == "F" else ""))
    return "".join(out)
