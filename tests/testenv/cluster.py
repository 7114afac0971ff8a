"""Start and stop the test environment: etcd, kube-apiserver, controller-manager, scheduler, Jaeger and
a node, state in one directory. The node is a real kubelet (containerd + runc, tests/testenv/node.py)
with kube-proxy and CoreDNS for Services, everything then inside a private network + mount namespace;
or, with FLOWPODS_TESTENV_NODE=agent (and in the node agent's benchmark mode), the node agent on the
host's 127.0.0.1 with free ports.

Processes are started in their own sessions and recorded in pid files, so the environment
can outlive the process that started it (`make testenv`) and be stopped from another one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import images
from . import node as node_mod

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "jaeger",
)


def components(node: str) -> tuple[str, ...]:
    """What an environment with that node runs."""
    agent_only, real_only = {"nodeagent"}, {"sandbox", "containerd", "kubelet", "kube-proxy", "coredns"}
    return tuple(c for c in COMPONENTS if c not in (agent_only if node == "real" else real_only))


# Start order; stop goes the other way round (the sandbox last: it takes the real node's namespaces along).
COMPONENTS = (
    "sandbox",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "nodeagent",
    "containerd",
    "kubelet",
    "kube-proxy",
    "coredns",
    "jaeger",
)
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
# the real node's kube-proxy and CoreDNS read Services' EndpointSlices
REAL_NODE_CONTROLLERS = ("endpointslice-controller",)
NODE_NAME = "flowpods-test-node"  # the node agent's
ADMIN_USER = "flowpods-admin"
TEST_USER = "flowpods-test-user"


class TestEnvError(RuntimeError):
    """Raised when the environment cannot be started; the message says what to do."""


def bin_dir() -> Path:
    """Where build.sh puts the binaries (asks the script, so the cache key lives in one place)."""
    override = os.environ.get("FLOWPODS_TESTENV_BIN")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or bin_dir()
    return [b for b in BINARIES if not os.access(directory / b, os.X_OK)]


def require_binaries() -> Path:
    """Fail loudly (never skip) when binaries are missing."""
    directory = bin_dir()
    missing = missing_binaries(directory)
    if missing:
        raise TestEnvError(
            f"test environment binaries missing in {directory}: {', '.join(missing)}. "
            "Run `make testenv-bins` (or `bash tests/testenv/build.sh`) first."
        )
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EnvInfo:
    """Everything a client needs; saved as state.json and as the shell-sourceable `env` file."""

    state_dir: str
    bin_dir: str
    etcd_port: int = 0
    etcd_peer_port: int = 0
    apiserver_port: int = 0
    cm_port: int = 0
    scheduler_port: int = 0
    jaeger_query_port: int = 0
    jaeger_grpc_port: int = 0
    otlp_grpc_port: int = 0
    otlp_http_port: int = 0
    admin_token: str = ""
    user_token: str = ""
    node_name: str = NODE_NAME
    node: str = "agent"  # "real" (kubelet + containerd in the sandbox) or "agent" (tests/testenv/nodeagent.py)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def real_node(self) -> bool:
        return self.node == "real"

    @property
    def pod_host(self) -> str:
        """The address where pods reach this environment (its Jaeger, a test's HTTP server): the pods'
        bridge on the real node; 127.0.0.1 with the node agent, whose pods are host processes."""
        return node_mod.BRIDGE_IP if self.real_node else "127.0.0.1"

    @property
    def pod_network(self) -> str:
        """Where pod IPs come from."""
        return f"{node_mod.POD_NET}.0/24" if self.real_node else "127.0.0.1/32"

    @property
    def test_image(self) -> str:
        """An image for test pods that run `sh`, `sleep` or `python3`: the Debian base on the real node; the
        node agent ignores images (it runs the command on the host)."""
        return images.BASE_IMAGE if self.real_node else "ignored.invalid/none:0"

    def worker_settings(self) -> dict[str, str]:
        """What a `flowpods operator` needs so that its worker pods run here and their spans reach Jaeger:
        the locally built image on the real node, this venv's `flowpods worker` with the node agent."""
        settings = {"FLOWPODS_WORKER_OTLP_ENDPOINT": f"http://{self.pod_host}:{self.otlp_http_port}"}
        if self.real_node:
            settings["FLOWPODS_WORKER_IMAGE"] = "flowpods:dev"
        else:
            settings["FLOWPODS_WORKER_COMMAND"] = f"{Path(sys.executable).parent / 'flowpods'} worker"
        return settings

    @property
    def dir(self) -> Path:
        return Path(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (system:masters)."""
        return self.dir / "kubeconfig"

    @property
    def user_kubeconfig(self) -> Path:
        """Kubeconfig of the non-admin user, which has no RBAC bindings."""
        return self.dir / "kubeconfig-user"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def pods_dir(self) -> Path:
        return self.dir / "pods"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def jaeger_url(self) -> str:
        return f"http://127.0.0.1:{self.jaeger_query_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    def kubectl(self) -> Path:
        return Path(self.bin_dir) / "kubectl"

    def helm(self) -> Path:
        """helm 3 built by build.sh (not needed by the environment itself)."""
        return Path(self.bin_dir) / "helm"

    def env_vars(self) -> dict[str, str]:
        """Variables for clients (also written to `<state>/env`)."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "FLOWPODS_TESTENV_STATE": str(self.dir),
            "FLOWPODS_TESTENV_BIN_DIR": self.bin_dir,
            "FLOWPODS_KUBE_API": self.api_url,
            "FLOWPODS_ADMIN_TOKEN": self.admin_token,
            "FLOWPODS_TEST_USER": TEST_USER,
            "FLOWPODS_TEST_USER_TOKEN": self.user_token,
            "FLOWPODS_TEST_USER_KUBECONFIG": str(self.user_kubeconfig),
            "FLOWPODS_JAEGER_URL": self.jaeger_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_http_endpoint,  # OTLP/HTTP, OpenTelemetry's default protocol
            "FLOWPODS_OTLP_GRPC_ENDPOINT": self.otlp_grpc_endpoint,
            "FLOWPODS_TEST_NODE": self.node_name,
            "FLOWPODS_TESTENV_NODE": self.node,
            **self.worker_settings(),
        }

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps(asdict(self), indent=2))
        lines = [f"export {k}={_shell_quote(v)}" for k, v in self.env_vars().items()]
        lines.append(f'export PATH={_shell_quote(self.bin_dir)}:"$PATH"')
        (self.dir / "env").write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, state_dir: Path | str) -> EnvInfo:
        return cls(**json.loads((Path(state_dir) / "state.json").read_text()))

    def enter(self) -> None:
        """Join this environment's network (the real node's sandbox) unless already there: call it before
        the process starts threads; children inherit it. A no-op for the node agent (host network)."""
        if self.real_node and not node_mod.in_network_of(self.pids["sandbox"]):
            node_mod.join_network(self.pids["sandbox"])


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


# ---------------------------------------------------------------- PKI, tokens, kubeconfigs


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1/localhost, and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    if not shutil.which("openssl"):
        raise TestEnvError("openssl CLI not found (apt-get install openssl)")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=flowpods-testenv-ca",
        "-days",
        "30",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "apiserver.key", cwd=pki)
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr", cwd=pki)
    (pki / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "san.ext",
        "-out",
        "apiserver.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, ca: Path, user: str, token: str) -> None:
    """Plain YAML written by hand (JSON is YAML), so no yaml dependency is needed here."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flowpods-testenv", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "flowpods-testenv",
                "context": {"cluster": "flowpods-testenv", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "flowpods-testenv",
    }
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)


# ---------------------------------------------------------------- processes


def _spawn(info: EnvInfo, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    # the command line, so `restart_component` can start the same component again on the same ports
    (info.dir / "pids" / f"{name}.argv").write_text(json.dumps(argv))
    if info.real_node and name != "sandbox":
        argv = node_mod.inside(info) + argv
    log = open(info.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=info.dir,
        env=env,
        start_new_session=True,
    )
    log.close()
    (info.dir / "pids" / f"{name}.pid").write_text(str(proc.pid))
    info.pids[name] = proc.pid
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _ours(pid: int, state_dir: Path) -> bool:
    """Only signal a pid whose command line or cwd points into our state dir (pids get reused)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return str(state_dir) in cmd or cwd == str(state_dir)


def log_tail(info: EnvInfo, name: str, lines: int = 30) -> str:
    path = info.log_dir / f"{name}.log"
    if not path.exists():
        return f"(no log {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def all_log_tails(info: EnvInfo, lines: int = 30) -> str:
    parts = []
    for name in COMPONENTS:
        parts.append(f"----- {name} ({info.log_dir / (name + '.log')}), last {lines} lines -----")
        parts.append(log_tail(info, name, lines))
    return "\n".join(parts)


def _wait(what: str, check, timeout: float, info: EnvInfo, component: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        pid = info.pids.get(component)
        if pid and not _alive(pid):
            raise TestEnvError(f"{component} exited while waiting for {what}:\n{log_tail(info, component)}")
        try:
            result = check()
            if result:
                return result
        except Exception as e:
            last_err = e
        time.sleep(interval)
    raise TestEnvError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_err!r}):\n{log_tail(info, component)}"
    )


def _https_get(url: str, token: str | None = None, ca: Path | None = None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status == 200


# ---------------------------------------------------------------- start / stop


def jaeger_config(info: EnvInfo) -> str:
    """Jaeger v2 all-in-one with in-memory storage; JSON is valid YAML. On the real node its OTLP receivers
    listen on every address of the sandbox (pods send to the bridge's), which has no way out."""
    otlp_host = "0.0.0.0" if info.real_node else "127.0.0.1"
    cfg = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"mem": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "storage": {"traces": "mem"},
                # Jaeger would otherwise trace itself to 127.0.0.1:4317, whoever listens there.
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{info.jaeger_query_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{info.jaeger_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{otlp_host}:{info.otlp_grpc_port}"},
                    "http": {"endpoint": f"{otlp_host}:{info.otlp_http_port}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "mem"}},
    }
    return json.dumps(cfg, indent=2)


def node_kind(agent_args: list[str] | None = None) -> str:
    """The real node unless FLOWPODS_TESTENV_NODE=agent or the agent's benchmark mode is asked for."""
    if agent_args:
        return "agent"
    kind = os.environ.get("FLOWPODS_TESTENV_NODE") or "real"
    if kind not in ("real", "agent"):
        raise TestEnvError(f"FLOWPODS_TESTENV_NODE={kind!r}: use 'real' (the default) or 'agent'")
    return kind


def start(
    state_dir: Path | str,
    timeout: float = 90.0,
    agent_args: list[str] | None = None,
    attempts: int = 2,
    node: str | None = None,
) -> EnvInfo:
    """Start the whole environment in `state_dir` (wiped first) and wait until it is usable.

    On failure everything started so far is stopped and TestEnvError carries the log tail. A
    failed start is retried with new ports (another environment may have taken a free port
    between choosing it and binding it). With the real node the calling process joins the
    sandbox's network (see EnvInfo.enter): call it before starting threads.
    """
    kind = node or node_kind(agent_args)
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(state_dir, timeout, agent_args, kind)
        except TestEnvError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_once(state_dir: Path | str, timeout: float, agent_args: list[str] | None, kind: str) -> EnvInfo:
    bins = require_binaries()
    archives: list[Path] = []
    if kind == "real":
        gone = node_mod.missing()
        if gone:
            raise TestEnvError(
                f"the real node needs {', '.join(gone)}: run `make testenv-bins images` "
                "(or FLOWPODS_TESTENV_NODE=agent for the node agent)"
            )
        archives = images.build_all(node_mod.node_bin_dir(), bins)
    state = Path(state_dir).resolve()
    if (state / "state.json").exists():
        stop(state)
    if state.exists():
        shutil.rmtree(state)
    for sub in ("logs", "pids", "pki", "etcd", "pods", "cm-certs", "sched-certs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    info = EnvInfo(state_dir=str(state), bin_dir=str(bins), node=kind)
    if info.real_node:
        info.node_name = node_mod.NODE_NAME
    ports = set()
    for attr in (
        "etcd_port",
        "etcd_peer_port",
        "apiserver_port",
        "cm_port",
        "scheduler_port",
        "jaeger_query_port",
        "jaeger_grpc_port",
        "otlp_grpc_port",
        "otlp_http_port",
    ):
        port = free_port()
        while port in ports:
            port = free_port()
        ports.add(port)
        setattr(info, attr, port)
    if info.real_node:
        info.apiserver_port = 443  # the sandbox is private: the `kubernetes` Service's own port
    info.admin_token = secrets.token_hex(24)
    info.user_token = secrets.token_hex(24)
    info.save()
    try:
        if info.real_node:
            _start_sandbox(info, timeout)
        _start(info, bins, state, timeout, agent_args or [], archives)
    except BaseException:
        stop(state)
        raise
    info.save()
    return info


def _start_sandbox(info: EnvInfo, timeout: float) -> None:
    """The real node's private network + mount namespace; this process joins its network."""
    _spawn(info, "sandbox", node_mod.sandbox_argv(info.dir))
    _wait("the sandbox", lambda: (info.dir / "sandbox.ready").exists(), timeout, info, "sandbox", interval=0.05)
    info.save()
    info.enter()


def _start(info: EnvInfo, bins: Path, state: Path, timeout: float, agent_args: list[str], archives: list[Path]) -> None:
    pki = state / "pki"
    make_pki(pki)
    if info.real_node:
        node_mod.node_pki(pki)
    (state / "tokens.csv").write_text(
        f'{info.admin_token},{ADMIN_USER},uid-admin,"system:masters"\n{info.user_token},{TEST_USER},uid-test-user\n'
    )
    write_kubeconfig(info.kubeconfig, info.api_url, info.ca_file, ADMIN_USER, info.admin_token)
    write_kubeconfig(info.user_kubeconfig, info.api_url, info.ca_file, TEST_USER, info.user_token)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "OTEL_"))}

    # Jaeger first: it is independent and takes a moment to start.
    (state / "jaeger.yaml").write_text(jaeger_config(info))
    _spawn(info, "jaeger", [str(bins / "jaeger"), "--config", str(state / "jaeger.yaml")], env=base_env)

    etcd_url = f"http://127.0.0.1:{info.etcd_port}"
    peer_url = f"http://127.0.0.1:{info.etcd_peer_port}"
    _spawn(
        info,
        "etcd",
        [
            str(bins / "etcd"),
            "--name",
            "default",
            "--data-dir",
            str(state / "etcd"),
            "--unsafe-no-fsync",
            "--listen-client-urls",
            etcd_url,
            "--advertise-client-urls",
            etcd_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"default={peer_url}",
            "--listen-metrics-urls",
            "",
            "--log-level",
            "warn",
        ],
        env=base_env,
    )
    _wait("etcd /health", lambda: _http_ok(f"{etcd_url}/health"), timeout, info, "etcd")

    _spawn(
        info,
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            "--etcd-servers",
            etcd_url,
            "--bind-address",
            "0.0.0.0" if info.real_node else "127.0.0.1",
            "--secure-port",
            str(info.apiserver_port),
            "--tls-cert-file",
            str(pki / "apiserver.crt"),
            "--tls-private-key-file",
            str(pki / "apiserver.key"),
            "--requestheader-client-ca-file",
            str(pki / "ca.crt"),
            "--client-ca-file",
            str(pki / "ca.crt"),
            "--cert-dir",
            str(pki),
            "--service-cluster-ip-range",
            node_mod.SERVICE_RANGE,
            "--service-account-issuer",
            f"https://127.0.0.1:{info.apiserver_port}",
            "--service-account-key-file",
            str(pki / "sa.pub"),
            "--service-account-signing-key-file",
            str(pki / "sa.key"),
            *(_real_node_apiserver_args(pki) if info.real_node else ["--authorization-mode", "RBAC"]),
            "--token-auth-file",
            str(state / "tokens.csv"),
            "--allow-privileged=true",
            # the real node: the `kubernetes` Service's endpoint is the API server's address on the bridge,
            # where kube-proxy sends 10.0.0.1:443; the node agent runs no kube-proxy
            "--endpoint-reconciler-type",
            "lease" if info.real_node else "none",
            "--v",
            "1",
        ],
        env=base_env,
    )

    def apiserver_ready() -> bool:
        code, _ = _https_get(f"{info.api_url}/readyz", info.admin_token, info.ca_file)
        return code == 200

    _wait("kube-apiserver /readyz", apiserver_ready, timeout, info, "kube-apiserver", interval=0.3)

    kc = str(info.kubeconfig)
    _spawn(
        info,
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            "--kubeconfig",
            kc,
            "--authentication-kubeconfig",
            kc,
            "--authorization-kubeconfig",
            kc,
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(info.cm_port),
            "--cert-dir",
            str(state / "cm-certs"),
            "--controllers",
            ",".join(CONTROLLERS + (REAL_NODE_CONTROLLERS if info.real_node else ())),
            "--service-account-private-key-file",
            str(pki / "sa.key"),
            "--root-ca-file",
            str(pki / "ca.crt"),
            "--concurrent-gc-syncs",
            "5",
            "--v",
            "1",
        ],
        env=base_env,
    )
    _spawn(
        info,
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            "--kubeconfig",
            kc,
            "--authentication-kubeconfig",
            kc,
            "--authorization-kubeconfig",
            kc,
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(info.scheduler_port),
            "--cert-dir",
            str(state / "sched-certs"),
            "--v",
            "1",
        ],
        env=base_env,
    )

    if not info.real_node:
        _start_agent(info, kc, base_env, agent_args)

    def healthz(port: int):
        return lambda: _https_get(f"https://127.0.0.1:{port}/healthz")[0] == 200

    _wait("kube-controller-manager /healthz", healthz(info.cm_port), timeout, info, "kube-controller-manager")
    _wait("kube-scheduler /healthz", healthz(info.scheduler_port), timeout, info, "kube-scheduler")
    if info.real_node:
        _start_real_node(info, timeout, base_env, archives)

    def api_get(path: str) -> int:
        return _https_get(f"{info.api_url}{path}", info.admin_token, info.ca_file)[0]

    def node_ready() -> bool:
        code, body = _https_get(f"{info.api_url}/api/v1/nodes/{info.node_name}", info.admin_token, info.ca_file)
        if code != 200:
            return False
        conds = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    _wait(f"node {info.node_name} Ready", node_ready, timeout, info, "kubelet" if info.real_node else "nodeagent")
    if info.real_node:
        _untaint(info)
    _wait(
        "serviceaccount default/default",
        lambda: api_get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
        timeout,
        info,
        "kube-controller-manager",
    )
    if info.real_node:
        _wait("kube-proxy /healthz", lambda: _http_ok(f"http://{node_mod.KUBE_PROXY_HEALTHZ}/healthz"), timeout,
              info, "kube-proxy")  # fmt: skip
        _wait("coredns /ready", lambda: _http_ok(f"http://{node_mod.COREDNS_READY}/ready"), timeout, info, "coredns")
    _wait("jaeger query API", lambda: _http_ok(f"{info.jaeger_url}/api/services"), timeout, info, "jaeger")

    def otlp_listening() -> bool:
        for port in (info.otlp_grpc_port, info.otlp_http_port):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        return True

    _wait("jaeger OTLP receivers", otlp_listening, timeout, info, "jaeger")


COREDNS_RBAC = (
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": node_mod.COREDNS_USER},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "endpoints", "namespaces", "pods"],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    }),
    ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": node_mod.COREDNS_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": node_mod.COREDNS_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": node_mod.COREDNS_USER}],
    }),
)  # fmt: skip


def _api_create(info: EnvInfo, path: str, body: dict) -> None:
    req = urllib.request.Request(
        f"{info.api_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {info.admin_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(info.ca_file)), timeout=10):
            pass
    except urllib.error.HTTPError as e:
        if e.code != 409:  # already there
            raise TestEnvError(f"POST {path}: {e.code} {e.read()[:500]!r}") from e


def _real_node_apiserver_args(pki: Path) -> list[str]:
    """Kubelets authenticate with their node certificate and may touch only their own Node and pods
    (Node authorizer + NodeRestriction); the API server calls kubelets with its own client certificate."""
    return [
        "--authorization-mode", "Node,RBAC",
        "--enable-admission-plugins", "NodeRestriction",
        "--advertise-address", node_mod.BRIDGE_IP,
        "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
        "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
    ]  # fmt: skip


def _start_real_node(info: EnvInfo, timeout: float, base_env: dict[str, str], archives: list[Path]) -> None:
    node_mod.write_configs(info)
    _spawn(info, "containerd", node_mod.containerd_argv(info), env=base_env)
    _wait("containerd", lambda: node_mod.ctr(info, "version", timeout=10).returncode == 0, timeout, info, "containerd")
    node_mod.import_images(info, archives)
    _spawn(info, "kubelet", node_mod.kubelet_argv(info), env=base_env)
    # Services: kube-proxy (the built-in system:node-proxier role) and CoreDNS (read-only on Services and
    # endpoints), each with its own client certificate
    _spawn(info, "kube-proxy", node_mod.kube_proxy_argv(info), env=base_env)
    for path, body in COREDNS_RBAC:
        _api_create(info, path, body)
    _spawn(info, "coredns", node_mod.coredns_argv(info), env=base_env)


def _untaint(info: EnvInfo) -> None:
    """TaintNodesByCondition tainted the new Node not-ready and no node-lifecycle controller runs to lift it."""
    url = f"{info.api_url}/api/v1/nodes/{info.node_name}"
    node = json.loads(_https_get(url, info.admin_token, info.ca_file)[1])
    taints = node.get("spec", {}).get("taints") or []
    kept = [t for t in taints if t["key"] not in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    if kept == taints:
        return
    body = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": kept}}
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {info.admin_token}", "Content-Type": "application/merge-patch+json"},
    )
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(info.ca_file)), timeout=10):
        pass


def _start_agent(info: EnvInfo, kc: str, base_env: dict[str, str], agent_args: list[str]) -> None:
    agent_env = dict(base_env)
    # Pods run `python ...` with the interpreter of the environment that started the agent.
    agent_env["PATH"] = f"{Path(sys.executable).parent}:{agent_env.get('PATH', '/usr/bin:/bin')}"
    _spawn(
        info,
        "nodeagent",
        [
            sys.executable,
            str(HERE / "nodeagent.py"),
            "--kubeconfig",
            kc,
            "--node-name",
            info.node_name,
            "--pods-dir",
            str(info.pods_dir),
            "--api-port",
            str(info.apiserver_port),
            *agent_args,
        ],
        env=agent_env,
    )


# ---------------------------------------------------------------- faults: one component down and up again

RESTARTABLE = ("kube-apiserver", "jaeger")


def stop_component(info: EnvInfo, name: str, grace: float = 10.0) -> None:
    """Stop one component (SIGTERM, SIGKILL after `grace`), e.g. to test what happens while it is away."""
    if name not in RESTARTABLE:
        raise TestEnvError(f"only {', '.join(RESTARTABLE)} can be stopped and started again, not {name}")
    state = info.dir
    pid = int((state / "pids" / f"{name}.pid").read_text())
    if not (_alive(pid) and _ours(pid, state)):
        raise TestEnvError(f"{name} (pid {pid}) is not running")
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)
    while _alive(pid):
        _reap(pid)
        time.sleep(0.05)


def start_component(info: EnvInfo, name: str, timeout: float = 90.0) -> None:
    """Start a stopped component again with its first command line (same ports, same data), and wait until
    it serves: the API server's /readyz, Jaeger's OTLP receivers and query API."""
    if name not in RESTARTABLE:
        raise TestEnvError(f"only {', '.join(RESTARTABLE)} can be stopped and started again, not {name}")
    argv = json.loads((info.dir / "pids" / f"{name}.argv").read_text())
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "OTEL_"))}
    _spawn(info, name, argv, env=base_env)
    info.save()
    if name == "kube-apiserver":

        def apiserver_ready() -> bool:
            return _https_get(f"{info.api_url}/readyz", info.admin_token, info.ca_file)[0] == 200

        _wait("kube-apiserver /readyz", apiserver_ready, timeout, info, name, interval=0.3)
    else:
        _wait("jaeger query API", lambda: _http_ok(f"{info.jaeger_url}/api/services"), timeout, info, name)

        def otlp_listening() -> bool:
            for port in (info.otlp_grpc_port, info.otlp_http_port):
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    pass
            return True

        _wait("jaeger OTLP receivers", otlp_listening, timeout, info, name)


def status(state_dir: Path | str) -> dict[str, bool]:
    """Which recorded components are still running."""
    state = Path(state_dir).resolve()
    result = {}
    for name in COMPONENTS:
        pidfile = state / "pids" / f"{name}.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            result[name] = _alive(pid) and _ours(pid, state)
    return result


def healthy(info: EnvInfo) -> bool:
    """Everything recorded runs and the apiserver answers."""
    st = status(info.dir)
    if not st or not all(st.values()):
        return False
    try:
        return _https_get(f"{info.api_url}/readyz", info.admin_token, info.ca_file)[0] == 200
    except OSError:
        return False


def stop(state_dir: Path | str, grace: float = 10.0) -> list[str]:
    """Stop every component recorded in pid files (reverse start order): SIGTERM, then SIGKILL. On the
    real node the containers are killed before containerd stops, and the sandbox goes last with all
    that is left in it."""
    state = Path(state_dir).resolve()
    stopped = []
    for name in reversed(COMPONENTS):
        pidfile = state / "pids" / f"{name}.pid"
        if not pidfile.exists():
            continue
        pid = int(pidfile.read_text())
        if _alive(pid) and _ours(pid, state):
            if name == "containerd":
                _kill_containers(state)
            if name == "sandbox":
                node_mod.cleanup(EnvInfo.load(state), pid)
            else:
                _terminate(pid, grace)
            _reap(pid)
            stopped.append(name)
        pidfile.unlink()
    return stopped


def _terminate(pid: int, grace: float) -> None:
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)


def _kill_containers(state: Path) -> None:
    """SIGKILL each container's first process (its pid namespace goes with it), while containerd runs."""
    with contextlib.suppress(Exception):
        out = node_mod.ctr(EnvInfo.load(state), "tasks", "ls", timeout=20).stdout
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(parts[1]), signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
