"""Test node agent: the one stand-in of the test environment. It plays the kubelet, because
nothing on these machines can pull or run images.

It registers a Ready Node, watches the pods bound to it, runs each container's `command` +
`args` as a local process (the `image` is ignored) with the container's env (downward API
resolved), and writes pod status as a kubelet does. Conventions (see docs/testenv.md):

* the termination message file is `$FLOWPODS_TERMINATION_LOG` (a per-container file), since
  `/dev/termination-log` cannot be given to a local process; the agent reads it on exit;
* stdout+stderr of a container go to `<pods-dir>/<ns>/<pod>/<uid>/<container>.log`;
* `spec.activeDeadlineSeconds` kills the pod: phase Failed, reason DeadlineExceeded;
* a pod with a deletionTimestamp gets SIGTERM, SIGKILL after the grace period, then is removed;
* a container that mounts the service-account volume (added by the ServiceAccount admission
  plugin unless `automountServiceAccountToken: false`) gets its pod's identity as from a kubelet:
  a bound token from the TokenRequest API, `ca.crt` and `namespace`, visible at
  /var/run/secrets/kubernetes.io/serviceaccount to that process only (a private mount namespace).

Standalone on purpose (stdlib only, talks REST with the kubeconfig's token) so it runs as its
own process and does not depend on the version of the Python kubernetes client.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("nodeagent")
MAX_MESSAGE = 4096  # kubelet's limit for the termination message
FALLBACK_LINES = 80
STOP = threading.Event()
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    def __init__(self, code: int, body: str):
        super().__init__(f"HTTP {code}: {body[:300]}")
        self.code = code


class Kube:
    """Minimal REST client from a token kubeconfig (the one the test environment writes)."""

    def __init__(self, kubeconfig: str):
        cfg = json.loads(Path(kubeconfig).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.token = user["token"]
        self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])

    def request(
        self,
        method: str,
        path: str,
        body=None,
        content_type="application/json",
        timeout: float = 30,
        query: dict | None = None,
    ):
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": content_type,
                "Accept": "application/json",
                "User-Agent": "flowpods-testenv-nodeagent",
            },
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def call(self, *args, **kwargs):
        """`request`, retried while the API server is unreachable or answers 429/5xx, as a kubelet keeps its
        pods running through an API server restart and reports their status once it is back."""
        delay, warned = 0.25, False
        while True:
            try:
                return self.request(*args, **kwargs)
            except ApiError as e:
                if e.code not in TRANSIENT_CODES or STOP.is_set():
                    raise
                problem = str(e)
            except OSError as e:  # refused, reset, timed out (urllib's URLError is an OSError)
                if STOP.is_set():
                    raise
                problem = repr(e)
            if not warned:
                log.warning("%s %s: the API server is away (%s); retrying until it is back", args[0], args[1], problem)
                warned = True
            STOP.wait(delay)
            delay = min(delay * 2, 2.0)

    def watch(self, path: str, query: dict, timeout: int = 60):
        q = dict(query, watch="1", timeoutSeconds=str(timeout), allowWatchBookmarks="true")
        url = f"{self.server}{path}?{urllib.parse.urlencode(q)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=timeout + 10) as r:
            for line in r:
                if line.strip():
                    yield json.loads(line)


# ---------------------------------------------------------------- env and expansion

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubelet's $(VAR) expansion: defined vars are replaced, $$ escapes, unknown refs stay."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, text)


def field_path(pod: dict, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return meta.get(m.group(1), {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.podIPs": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    if path not in simple:
        raise ValueError(f"unsupported fieldRef {path}")
    return simple[path]


def service_account_volume(pod: dict, container: dict) -> dict | None:
    """The projected volume this container mounts at SA_MOUNT, if any. The ServiceAccount admission
    plugin adds it (kube-api-access-*) unless the pod or its ServiceAccount opts out with
    `automountServiceAccountToken: false`, so following the mount is following that flag."""
    mount = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == SA_MOUNT), None)
    if mount is None:
        return None
    volume = next((v for v in pod["spec"].get("volumes") or [] if v.get("name") == mount["name"]), None)
    return volume.get("projected") if volume else None


def mount_namespace_argv(argv: list[str], source: Path) -> list[str]:
    """Run argv in a private mount namespace where `source` is bind-mounted (read-only) on SA_MOUNT.

    The host's file system is left alone: the missing part of the path is made on a tmpfs laid over
    its deepest existing directory (here /run, which /var/run links to), inside the namespace only.
    unshare and sh exec into argv, so the pid, the process group and the exit code stay the program's.
    """
    target = Path(SA_MOUNT).resolve()
    base = target
    while not base.exists():
        base = base.parent
    if base == Path("/") or (source.resolve().is_relative_to(base) and base != target):
        raise ValueError(f"cannot mount {SA_MOUNT}: no safe directory to lay a tmpfs over ({base})")
    script = 'mount -n --bind -o ro "$1" "$2" && shift 2 && exec "$@"'
    if base != target:
        script = f'mount -n -t tmpfs -o mode=0755 flowpods-sa "{base}" && mkdir -p "$2" && {script}'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(source), str(target), *argv]


class Agent:
    def __init__(self, kube: Kube, node: str, pods_dir: Path, api_port: int, instant: str | None):
        self.kube, self.node, self.pods_dir, self.api_port = kube, node, pods_dir, api_port
        self.instant = instant
        self.workers: dict[str, PodWorker] = {}
        # finished pods (uid -> API path) wait for their deletion without a thread each: 10,000 kept pods made
        # 10,000 threads, and the process ran out of them
        self.finished: dict[str, str] = {}
        self.removals = ThreadPoolExecutor(4, thread_name_prefix="remove")
        self.lock = threading.Lock()

    # ------------------------------------------------------------ node
    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "flowpods.io/test-node": "true",
                },
            },
            "spec": {},
        }
        try:
            self.kube.request("POST", "/api/v1/nodes", node)
        except ApiError as e:
            if e.code != 409:
                raise
        self.heartbeat(first=True)
        # The TaintNodesByCondition admission plugin taints a new node not-ready; the node-lifecycle
        # controller (not run here) would lift it once the node reports Ready, so the agent does.
        current = self.kube.request("GET", f"/api/v1/nodes/{self.node}")
        taints = current.get("spec", {}).get("taints") or []
        kept = [t for t in taints if t["key"] not in NOT_READY_TAINTS]
        if kept != taints:
            self.kube.request(
                "PATCH",
                f"/api/v1/nodes/{self.node}",
                {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"taints": kept}},
                content_type="application/merge-patch+json",
            )

    def heartbeat(self, first: bool = False) -> None:
        ts = now()
        cap = {"cpu": "32", "memory": "64Gi", "pods": "500", "ephemeral-storage": "100Gi"}
        status = {
            "status": {
                "capacity": cap,
                "allocatable": cap,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.34.4-flowpods-nodeagent",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "flowpods-nodeagent://local",
                    "kernelVersion": os.uname().release,
                    "osImage": "flowpods test node agent",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "flowpods test node agent is posting ready status",
                        "lastHeartbeatTime": ts,
                        **({"lastTransitionTime": ts} if first else {}),
                    },
                    *[
                        {
                            "type": t,
                            "status": "False",
                            "reason": f"KubeletHas{r}",
                            "lastHeartbeatTime": ts,
                            **({"lastTransitionTime": ts} if first else {}),
                        }
                        for t, r in (
                            ("MemoryPressure", "SufficientMemory"),
                            ("DiskPressure", "NoDiskPressure"),
                            ("PIDPressure", "SufficientPID"),
                        )
                    ],
                ],
            }
        }
        self.kube.request(
            "PATCH", f"/api/v1/nodes/{self.node}/status", status, content_type="application/strategic-merge-patch+json"
        )
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": now_micro()},
        }
        try:
            self.kube.request("PATCH", lease_path, {"spec": lease["spec"]}, content_type="application/merge-patch+json")
        except ApiError as e:
            if e.code != 404:
                raise
            self.kube.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def heartbeat_loop(self) -> None:
        while not STOP.wait(10):
            try:
                self.heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    # ------------------------------------------------------------ pods
    def run(self) -> None:
        self.register()
        threading.Thread(target=self.heartbeat_loop, daemon=True).start()
        query = {"fieldSelector": f"spec.nodeName={self.node}"}
        rv = None
        while not STOP.is_set():
            try:
                if rv is None:
                    lst = self.kube.request("GET", "/api/v1/pods", query=query)
                    rv = lst["metadata"]["resourceVersion"]
                    for pod in lst["items"]:
                        self.on_pod("ADDED", pod)
                for ev in self.kube.watch("/api/v1/pods", dict(query, resourceVersion=rv)):
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        rv = None  # e.g. 410 Gone: relist
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self.on_pod(ev["type"], obj)
            except Exception:
                if STOP.is_set():
                    break
                log.exception("watch failed; relisting")
                rv = None
                time.sleep(1)

    def on_pod(self, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            if uid in self.finished:
                if kind == "DELETED":
                    self.finished.pop(uid)
                elif pod["metadata"].get("deletionTimestamp"):
                    self.removals.submit(remove_pod, self.kube, self.finished.pop(uid), uid)
                return
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker:
                    worker.terminate(0)
                    self.workers.pop(uid, None)
                return
            if worker is None:
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
            worker.update(pod)  # under the lock: keep_finished sees a deletion either here or in `finished`

    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def keep_finished(self, worker: PodWorker) -> None:
        """A pod that ended waits for its deletion here, not in its thread (which ends)."""
        with self.lock:
            self.workers.pop(worker.uid, None)
            if not worker.deleting.is_set():
                self.finished[worker.uid] = worker.path
                return
        worker.remove()  # its deletion came while it was being handed over

    def shutdown(self) -> None:
        STOP.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.kill_all(signal.SIGKILL)


class Container:
    def __init__(self, spec: dict, workdir: Path):
        self.spec = spec
        self.name = spec["name"]
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.term_log = workdir / f"{self.name}.termination-log"
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.started_at: str | None = None
        self.restarts = 0
        self.last_state: dict = {}


def remove_pod(kube: Kube, path: str, uid: str) -> None:
    """Remove a deleted pod's object (grace 0, this uid only), as a kubelet does once its containers ended."""
    try:
        kube.call(
            "DELETE",
            path,
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
        )
    except ApiError as e:
        if e.code not in (404, 409):
            log.warning("delete %s: %s", path, e)


class PodWorker(threading.Thread):
    """Runs one pod from start to end and reports its status."""

    def __init__(self, agent: Agent, pod: dict):
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.agent, self.kube = agent, agent.kube
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.workdir = agent.pods_dir / self.ns / self.name / self.uid
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.deleting = threading.Event()
        self.changed = threading.Event()
        self.lock = threading.Lock()
        self.containers = [Container(c, self.workdir) for c in pod["spec"].get("containers", [])]
        self.init_containers = [Container(c, self.workdir) for c in pod["spec"].get("initContainers", [])]
        self.start_time: str | None = pod.get("status", {}).get("startTime")
        self.phase = pod.get("status", {}).get("phase", "Pending")
        self.reason: str | None = None
        self.message: str | None = None
        self.conditions: dict[str, dict] = {}
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.workdir))
        self.sa_dir = self.workdir / "serviceaccount"
        self.sa_volume: dict | None = None
        self.token_refresh_at = 0.0

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods/{self.name}"

    def update(self, pod: dict) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not self.deleting.is_set():
            self.deleting.set()
            self.changed.set()

    # ------------------------------------------------------------ status
    def set_condition(self, ctype: str, status: str, reason: str | None = None) -> None:
        old = self.conditions.get(ctype)
        if old and old["status"] == status:
            return
        cond = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now()}
        if reason:
            cond["reason"] = reason
        self.conditions[ctype] = cond

    def container_status(self, c: Container, init: bool = False) -> dict:
        state = {"waiting": None, "running": None, "terminated": None, **c.state}
        running = "running" in c.state and c.state["running"] is not None
        return {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "containerID": f"flowpods-nodeagent://{self.uid}/{c.name}/{c.restarts}",
            "state": state,
            "lastState": c.last_state,
            "ready": running and not init,
            "restartCount": c.restarts,
            "started": running,
        }

    def report(self) -> None:
        status = {
            "phase": self.phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "reason": self.reason,
            "message": self.message,
            "conditions": list(self.conditions.values()),
            "containerStatuses": [self.container_status(c) for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [self.container_status(c, True) for c in self.init_containers]
        body = {"metadata": {"uid": self.uid}, "status": status}
        try:
            self.kube.call("PATCH", f"{self.path}/status", body, content_type="application/merge-patch+json")
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    # ------------------------------------------------------------ processes
    def env_for(self, c: Container) -> dict[str, str]:
        spec_env: dict[str, str] = {}
        for src in c.spec.get("envFrom", []) or []:
            prefix = src.get("prefix", "")
            for kind, ref in (("configmaps", src.get("configMapRef")), ("secrets", src.get("secretRef"))):
                if not ref:
                    continue
                data = self.read_data(kind, ref["name"], optional=ref.get("optional", False))
                spec_env.update({prefix + k: v for k, v in data.items()})
        for e in c.spec.get("env", []) or []:
            if e.get("valueFrom"):
                vf = e["valueFrom"]
                if vf.get("fieldRef"):
                    spec_env[e["name"]] = field_path(self.pod, vf["fieldRef"]["fieldPath"])
                elif vf.get("configMapKeyRef") or vf.get("secretKeyRef"):
                    kind = "configmaps" if vf.get("configMapKeyRef") else "secrets"
                    ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                    data = self.read_data(kind, ref["name"], optional=ref.get("optional", False))
                    if ref["key"] in data:
                        spec_env[e["name"]] = data[ref["key"]]
                    elif not ref.get("optional"):
                        raise ValueError(f"key {ref['key']} not found in {kind}/{ref['name']}")
                elif vf.get("resourceFieldRef"):
                    spec_env[e["name"]] = "0"
            else:
                spec_env[e["name"]] = expand(e.get("value", ""), spec_env)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.tmpdir),
            "HOSTNAME": self.name,
            "TMPDIR": str(self.tmpdir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
            "FLOWPODS_TERMINATION_LOG": str(c.term_log),
        }
        env.update(spec_env)
        env["FLOWPODS_TERMINATION_LOG"] = str(c.term_log)
        return env

    def read_data(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        import base64

        try:
            obj = self.kube.call("GET", f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        except ApiError as e:
            if e.code == 404 and optional:
                return {}
            raise
        data = obj.get("data") or {}
        if kind == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)

    def launch(self, c: Container) -> None:
        env = self.env_for(c)
        argv = [expand(a, env) for a in (c.spec.get("command") or []) + (c.spec.get("args") or [])]
        if not c.spec.get("command"):
            raise ValueError("the test node agent ignores images, so each container needs `command`")
        volume = service_account_volume(self.pod, c.spec)
        if volume is not None:
            if os.geteuid() != 0 or not shutil.which("unshare"):
                log.warning("%s/%s: no service-account token (needs root and unshare)", self.ns, self.name)
            else:
                self.write_service_account(volume)
                argv = mount_namespace_argv(argv, self.sa_dir)
        c.term_log.write_text("")
        out = open(c.log_path, "ab")  # noqa: SIM115 - handed to the child
        cwd = c.spec.get("workingDir")
        cwd = cwd if cwd and Path(cwd).is_dir() else str(self.tmpdir)
        c.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        c.started_at = now()
        c.state = {"running": {"startedAt": c.started_at}}

    # ------------------------------------------------------------ service account
    def write_service_account(self, volume: dict) -> None:
        """Fill the per-pod directory from the projected volume's sources, as kubelet does: a token
        from the TokenRequest API bound to this pod, configMap keys (kube-root-ca.crt), downward API."""
        self.sa_volume = volume
        self.sa_dir.mkdir(exist_ok=True)
        for source in volume.get("sources") or []:
            if "serviceAccountToken" in source:
                src = source["serviceAccountToken"]
                expiry = int(src.get("expirationSeconds") or 3607)
                spec = {
                    "expirationSeconds": expiry,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                }
                if src.get("audience"):
                    spec["audiences"] = [src["audience"]]
                sa = self.pod["spec"].get("serviceAccountName") or "default"
                body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
                path = f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token"
                token = self.kube.call("POST", path, body)["status"]["token"]
                self.write_file(src.get("path", "token"), token)
                self.token_refresh_at = time.monotonic() + 0.8 * expiry  # kubelet renews at 80 %
            elif "configMap" in source:
                ref = source["configMap"]
                data = self.wait_config_map(ref["name"], ref.get("optional", False))
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        self.write_file(item["path"], data[item["key"]])
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    if item.get("fieldRef"):
                        self.write_file(item["path"], field_path(self.pod, item["fieldRef"]["fieldPath"]))

    def wait_config_map(self, name: str, optional: bool) -> dict[str, str]:
        """The root-CA publisher creates kube-root-ca.crt moments after a namespace; kubelet waits too."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.read_data("configmaps", name, optional=optional)
            except ApiError as e:
                if e.code != 404 or time.monotonic() > deadline or STOP.is_set():
                    raise
            time.sleep(0.5)

    def write_file(self, rel: str, text: str) -> None:
        """Atomic replace, so a process reading the bind-mounted directory never sees half a token."""
        path = self.sa_dir / rel
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, path)

    def refresh_token(self) -> None:
        if self.sa_volume is not None and time.monotonic() >= self.token_refresh_at:
            try:
                self.write_service_account(self.sa_volume)
            except Exception:
                log.exception("%s/%s: renewing the service-account token failed", self.ns, self.name)
                self.token_refresh_at = time.monotonic() + 10

    def finish(self, c: Container, code: int, reason: str | None = None) -> None:
        """Record a terminated container, reading its termination message like kubelet."""
        msg = ""
        with contextlib.suppress(OSError):
            msg = c.term_log.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        if not msg and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                lines = c.log_path.read_text(errors="replace").splitlines()[-FALLBACK_LINES:]
                msg = "\n".join(lines)[-2048:]
            except OSError:
                pass
        term = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": c.started_at or now(),
            "finishedAt": now(),
            "containerID": f"flowpods-nodeagent://{self.uid}/{c.name}/{c.restarts}",
        }
        if code < 0:  # killed by a signal: report as a shell would (128+N)
            term["exitCode"] = 128 - code
            term["signal"] = -code
        if msg:
            term["message"] = msg
        c.state = {"terminated": term}

    def kill_all(self, sig: int) -> None:
        for c in self.init_containers + self.containers:
            if c.proc and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, sig)

    def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL once the grace period is over (kubelet's order)."""
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
            c.proc and c.proc.poll() is None for c in self.init_containers + self.containers
        ):
            time.sleep(0.05)
        self.kill_all(signal.SIGKILL)

    def grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return float(g)

    def deadline(self) -> float | None:
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        return None if ads is None else self.started_mono + float(ads)

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        try:
            self.lifecycle()
        except Exception as e:
            log.exception("pod %s/%s failed in the agent", self.ns, self.name)
            self.kill_all(signal.SIGKILL)
            if self.phase not in ("Succeeded", "Failed"):
                self.phase, self.reason, self.message = "Failed", "NodeAgentError", str(e)[:1000]
                for c in self.containers:
                    if "terminated" not in c.state:
                        c.state = {
                            "terminated": {
                                "exitCode": 128,
                                "reason": "StartError",
                                "message": str(e)[:1000],
                                "startedAt": c.started_at or now(),
                                "finishedAt": now(),
                            }
                        }
                try:
                    self.report()
                except Exception:
                    log.exception("report failed")
        if self.deleting.is_set():
            self.remove()
            self.agent.forget(self.uid)
        else:
            # Terminal: the pod object is removed once it is deleted, as kubelet does (Agent.on_pod)
            self.agent.keep_finished(self)

    def remove(self) -> None:
        remove_pod(self.kube, self.path, self.uid)

    def lifecycle(self) -> None:
        self.started_mono = time.monotonic()
        if self.phase in ("Succeeded", "Failed"):
            return  # already finished (e.g. agent restart): nothing to run
        if self.deleting.is_set():
            return
        self.start_time = self.start_time or now()
        self.set_condition("PodReadyToStartContainers", "True")
        self.set_condition(
            "Initialized",
            "False" if self.init_containers else "True",
            "ContainersNotInitialized" if self.init_containers else None,
        )
        self.set_condition("Ready", "False", "ContainersNotReady")
        self.set_condition("ContainersReady", "False", "ContainersNotReady")
        self.set_condition("PodScheduled", "True")
        self.report()

        if self.agent.instant is not None:
            self.complete_instantly(self.agent.instant)
            return

        for c in self.init_containers:
            self.launch(c)
            self.report()
            outcome = self.wait_for([c])
            if outcome:
                return self.end_killed(outcome)
            code = c.proc.wait()
            self.finish(c, code)
            if code != 0:
                self.end("Failed")
                return
        if self.init_containers:
            self.set_condition("Initialized", "True")

        for c in self.containers:
            self.launch(c)
        self.phase = "Running"
        self.set_condition("Ready", "True")
        self.set_condition("ContainersReady", "True")
        self.report()

        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            outcome = self.wait_for(self.containers, any_exit=True)
            if outcome:
                return self.end_killed(outcome)
            restarted = False
            for c in self.containers:
                if c.proc and c.proc.poll() is not None and "running" in c.state:
                    code = c.proc.returncode
                    self.finish(c, code)
                    if policy == "Always" or (policy == "OnFailure" and code != 0):
                        c.last_state = c.state
                        c.restarts += 1
                        time.sleep(min(10, 0.5 * c.restarts))
                        if self.deleting.is_set():
                            continue
                        self.launch(c)
                        restarted = True
            if all("terminated" in c.state for c in self.containers):
                failed = any(c.state["terminated"]["exitCode"] != 0 for c in self.containers)
                self.end("Failed" if failed else "Succeeded")
                return
            if not restarted:
                self.set_condition("Ready", "False", "ContainersNotReady")
                self.set_condition("ContainersReady", "False", "ContainersNotReady")
            self.report()

    def wait_for(self, containers: list[Container], any_exit: bool = False) -> str | None:
        """Block until a container exits; return 'deadline'/'deleted' if the pod must be stopped."""
        while True:
            dl = self.deadline()
            if self.deleting.is_set():
                return "deleted"
            if dl is not None and time.monotonic() >= dl:
                return "deadline"
            running = [c for c in containers if "running" in c.state]
            exited = [c for c in running if c.proc and c.proc.poll() is not None]
            if exited or not running:
                return None
            self.refresh_token()
            self.changed.wait(0.1)
            self.changed.clear()

    def end_killed(self, why: str) -> None:
        if why == "deadline":
            self.terminate(self.grace() if self.grace() < 2 else 2)
            self.reason, self.message = (
                "DeadlineExceeded",
                ("Pod was active on the node longer than the specified deadline"),
            )
        else:
            self.terminate(self.grace())
        for c in self.init_containers + self.containers:
            if "running" in c.state and c.proc:
                self.finish(c, c.proc.wait())
            elif "waiting" in c.state:
                c.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                }
        if why == "deadline":
            self.end("Failed")
        else:
            ok = all(c.state.get("terminated", {}).get("exitCode") == 0 for c in self.containers)
            self.end("Succeeded" if ok else "Failed")

    def end(self, phase: str) -> None:
        self.phase = phase
        self.set_condition("Ready", "False", "PodCompleted")
        self.set_condition("ContainersReady", "False", "PodCompleted")
        self.report()

    def complete_instantly(self, message: str) -> None:
        """Benchmark mode: every container 'exits 0' at once with the given termination message."""
        for c in self.containers:
            c.started_at = now()
            c.state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": c.started_at,
                    "finishedAt": now(),
                    "message": message,
                }
            }
        self.end("Succeeded")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--pods-dir", required=True)
    p.add_argument("--api-port", type=int, default=443)
    p.add_argument(
        "--instant-message",
        default=os.environ.get("FLOWPODS_AGENT_INSTANT_MESSAGE"),
        help="benchmark mode: complete pods at once with this termination message, run nothing",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    agent = Agent(Kube(args.kubeconfig), args.node_name, Path(args.pods_dir), args.api_port, args.instant_message)

    def on_signal(signum, frame):
        log.info("signal %s: killing pod processes and exiting", signum)
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("node agent for %s starting", args.node_name)
    agent.run()


if __name__ == "__main__":
    main()
