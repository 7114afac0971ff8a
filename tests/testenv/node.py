"""The real test node: a kubelet with containerd 1.6 + runc + bridge CNI, in a private sandbox.

The sandbox is one network + mount namespace (`unshare --net --mount`) held by a small holder process;
every component of a real-node environment (etcd, the API server, controllers, Jaeger, containerd, the
kubelet) is started inside it with `nsenter`. It has no uplink, so nothing can leave the machine, and
the host's mounts, sysctls, iptables and /run are never touched: /run and /var/log are tmpfs inside it,
and the sysctls the kubelet insists on are read-only files bind-mounted over /proc/sys inside it.

Pods sit on a bridge (BRIDGE_IP/24) that also carries the `kubernetes` Service IP (10.0.0.1), where the
API server listens on 443. kube-proxy (iptables mode; its rules live only in the sandbox's network
namespace) routes every Service's ClusterIP to its endpoints, and CoreDNS (a process in the sandbox, on
BRIDGE_IP:53, the kubelet's clusterDNS) answers Service names from the API server, so pods reach Services
by name as in any cluster. Jaeger's OTLP receivers listen on every address of the sandbox, so pods reach
them at BRIDGE_IP. Tests join the sandbox's network namespace (`join_network`) and serve what pods must
reach on BRIDGE_IP; they reach ClusterIPs too (kube-proxy's OUTPUT rules).

See docs/testenv.md ("The real node") for the blockers each setting fixes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import EnvInfo

HERE = Path(__file__).resolve().parent
BRIDGE = "fpbr0"
POD_NET = "10.244.77"
BRIDGE_IP = f"{POD_NET}.1"
SERVICE_RANGE = "10.0.0.0/24"  # --service-cluster-ip-range
SERVICE_API_IP = "10.0.0.1"  # the `kubernetes` Service (first IP of --service-cluster-ip-range; in the cert)
NODE_NAME = "127.0.0.1"  # --hostname-override: InternalIP 127.0.0.1, so logs/exec need no DNS
CLUSTER_DOMAIN = "cluster.local"
CLUSTER_DNS = BRIDGE_IP  # CoreDNS listens here (port 53), the kubelet's clusterDNS
KUBE_PROXY_HEALTHZ = "127.0.0.1:10256"
KUBE_PROXY_METRICS = "127.0.0.1:10249"
COREDNS_READY = "127.0.0.1:8181"
COREDNS_USER = "flowpods-testenv:coredns"  # its client certificate's CN; RBAC: read Services and endpoints
# the executables each package brings; iptables and conntrack for kube-proxy (iptables mode, nf_tables backend)
APT_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "iptables": "iptables-restore",
    "conntrack": "conntrack",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# The kubelet with protectKernelDefaults refuses to start unless these read as its values.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

# Runs as the sandbox's first process (`unshare --net --mount --propagation private sh -c ...`).
SANDBOX_INIT = r"""
set -eu
state="$1"
ip link set lo up
ip link add {bridge} type bridge
ip addr add {bridge_ip}/24 dev {bridge}
ip addr add {api_ip}/32 dev {bridge}
ip link set {bridge} up
# a default route into a veth whose other end leads nowhere (components look for one)
ip link add fpnil type veth peer name fpnil-end
ip link set fpnil-end up
ip addr add 10.244.76.1/32 dev fpnil
ip link set fpnil up
ip route add default dev fpnil
# kube-proxy DNATs pods' Service traffic to other pods on the bridge: forwarding in this namespace only
echo 1 >/proc/sys/net/ipv4/ip_forward
mount -n -t tmpfs -o mode=755,size=64m flowpods-run /run   # containerd's shim sockets: /run/containerd/s
mkdir -p /run/containerd /run/netns
mount -n -t tmpfs -o mode=755,size=16m flowpods-varlog /var/log   # kubelet: /var/log/containers
mkdir -p "$state/sysctl"
for kv in {sysctls}; do
  k=${{kv%=*}}; v=${{kv#*=}}
  if [ "$(cat /proc/sys/$k)" != "$v" ]; then
    f="$state/sysctl/$(echo $k | tr / .)"; echo "$v" >"$f"; mount -n --bind -o ro "$f" /proc/sys/$k
  fi
done
touch "$state/sandbox.ready"
exec sleep infinity
"""


class NodeError(RuntimeError):
    pass


def node_bin_dir() -> Path:
    override = os.environ.get("FLOWPODS_TESTENV_NODE_BIN")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "--print-node-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def missing() -> list[str]:
    """What the real node needs and is not installed or built (packages via ensure_packages)."""
    needed = ("ctr", "unshare", "nsenter", "ip", *APT_PACKAGES.values())
    gone = [p for p in needed if not shutil.which(p)]
    bins = node_bin_dir()
    gone += [str(bins / b) for b in ("kubelet", "pause") if not os.access(bins / b, os.X_OK)]
    services = services_bin_dir()
    gone += [str(services / b) for b in ("kube-proxy", "coredns") if not os.access(services / b, os.X_OK)]
    if not cni_dir().joinpath("bridge").exists():
        gone.append("CNI plugins")
    return gone


def services_bin_dir() -> Path:
    """Where build.sh puts kube-proxy and CoreDNS (their own cache key)."""
    override = os.environ.get("FLOWPODS_TESTENV_SERVICES_BIN")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "--print-services-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def cni_dir() -> Path:
    return node_bin_dir().parent / "cni" / "usr" / "lib" / "cni"


def ensure_packages() -> None:
    """containerd, runc, debootstrap, iptables and conntrack from Debian (apt-get, when missing); the CNI
    plugins unpacked from containernetworking-plugins with `dpkg -x`. iptables and conntrack are for
    kube-proxy; every rule it (and the kubelet) writes stays in the sandbox's network namespace."""
    wanted = [p for p, exe in APT_PACKAGES.items() if not shutil.which(exe)]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if wanted or not cni_dir().joinpath("bridge").exists():
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    if wanted:
        print(f"testenv: apt-get install {' '.join(wanted)}", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *wanted],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    if not cni_dir().joinpath("bridge").exists():
        target = cni_dir().parents[2]
        debs = target.parent / "cni-deb"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir(parents=True)
        subprocess.run(["apt-get", "download", "-qq", "containernetworking-plugins"], cwd=debs, check=True, env=env)
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(next(debs.glob("*.deb"))), str(target)], check=True)


# ---------------------------------------------------------------- the sandbox


def sandbox_argv(state: Path) -> list[str]:
    script = SANDBOX_INIT.format(
        bridge=BRIDGE,
        bridge_ip=BRIDGE_IP,
        api_ip=SERVICE_API_IP,
        sysctls=" ".join(f"{k}={v}" for k, v in KUBELET_SYSCTLS.items()),
    )
    return ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(state)]


def inside(info: EnvInfo) -> list[str]:
    """The argv prefix that runs a program in the sandbox (its network and mount namespaces)."""
    return ["nsenter", "-t", str(info.pids["sandbox"]), "-n", "-m", f"--wd={info.dir}", "--"]


def join_network(holder_pid: int) -> None:
    """Move the calling thread (call it before any other thread starts) into the sandbox's network
    namespace, so this process and its children reach the environment and the pods' bridge."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/proc/{holder_pid}/ns/net") as ns:
        if libc.setns(ns.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
            raise NodeError(f"setns into the sandbox of pid {holder_pid}: {os.strerror(ctypes.get_errno())}")


def in_network_of(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


# ---------------------------------------------------------------- PKI and configuration


def node_pki(pki: Path) -> None:
    """Client certificates signed by the env's CA: the kubelet's (system:node:<name> in system:nodes,
    for the Node authorizer and NodeRestriction) and the API server's for calling kubelets."""
    ext = pki / "client.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (
        ("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
        ("kube-proxy", "/CN=system:kube-proxy"),  # the built-in binding system:node-proxier
        ("coredns", f"/CN={COREDNS_USER}"),  # the ClusterRole the environment makes (cluster.py)
    ):
        run = lambda *a: subprocess.run(["openssl", *a], cwd=pki, check=True, capture_output=True)  # noqa: E731
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        run("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", "client.ext", "-out", f"{name}.crt")  # fmt: skip


def write_configs(info: EnvInfo) -> None:
    n = info.dir / "node"
    for sub in (
        "containerd/root",
        "containerd/state",
        "kubelet",
        "pod-logs",
        "volume-plugins",
        "cni/net.d",
        "cni/ipam",
    ):
        (n / sub).mkdir(parents=True, exist_ok=True)
    pki = info.dir / "pki"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "env", "cluster": {"server": info.api_url, "certificate-authority": str(pki / "ca.crt")}}
        ],
        "users": [
            {
                "name": "node",
                "user": {"client-certificate": str(pki / "kubelet.crt"), "client-key": str(pki / "kubelet.key")},
            }
        ],
        "contexts": [{"name": "node", "context": {"cluster": "env", "user": "node"}}],
        "current-context": "node",
    }
    (n / "kubelet.kubeconfig").write_text(json.dumps(kubeconfig, indent=2))
    for user in ("kube-proxy", "coredns"):
        own = {**kubeconfig, "users": [{"name": "node", "user": {
            "client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}}]}  # fmt: skip
        (n / f"{user}.kubeconfig").write_text(json.dumps(own, indent=2))
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(n / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "bindAddress": BRIDGE_IP,  # the node's address for kube-proxy (its Node's InternalIP is 127.0.0.1)
        "healthzBindAddress": KUBE_PROXY_HEALTHZ,
        "metricsBindAddress": KUBE_PROXY_METRICS,
        "mode": "iptables",
        # traffic to a Service from outside the pod network (the sandbox itself: tests, host processes) is
        # masqueraded to the bridge's address, so the pod's answer finds its way back
        "clusterCIDR": f"{POD_NET}.0/24",
        "iptables": {"localhostNodePorts": False},
        # leave the kernel's conntrack limits and timeouts alone (some are global, not per namespace)
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE to lower it
    }
    (n / "kube-proxy.yaml").write_text(json.dumps(proxy, indent=2))
    (n / "Corefile").write_text(f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {CLUSTER_DNS}
    errors
    ready {COREDNS_READY}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {n / "coredns.kubeconfig"} node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
.:53 {{
    bind {CLUSTER_DNS}
    errors
    # no way out of the sandbox: every other name does not exist, at once
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
""")
    (n / "containerd.toml").write_text(f"""version = 2
root = "{n}/containerd/root"
state = "{n}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{n}/containerd.sock"
[ttrpc]
  address = "{n}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{_pause_image()}"
  disable_apparmor = true
  # no CAP_SYS_RESOURCE here: runc could not lower oom_score_adj (the pause container asks -998)
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_dir()}"
    conf_dir = "{n}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc") or "/usr/sbin/runc"}"
        Root = "/run/containerd/runc"
        SystemdCgroup = false
""")
    cni = {
        "cniVersion": "0.4.0",
        "name": "flowpods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,  # the bridge has its address already
                "ipMasq": False,
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(n / "cni" / "ipam"),
                    "ranges": [
                        [{"subnet": f"{POD_NET}.0/24", "rangeStart": f"{POD_NET}.10", "rangeEnd": f"{POD_NET}.250"}]
                    ],
                    # the Service range, to the sandbox, where kube-proxy's rules are
                    "routes": [{"dst": SERVICE_RANGE, "gw": BRIDGE_IP}],
                },
            }
        ],
    }
    (n / "cni" / "net.d" / "10-flowpods.conflist").write_text(json.dumps(cni, indent=2))
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # only the API server (its client certificate, signed by the env's CA) or a token the API server
        # vouches for; every call authorized by the API server (SubjectAccessReview)
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{n}/containerd.sock",
        "imageServiceEndpoint": f"unix://{n}/containerd.sock",
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "protectKernelDefaults": True,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(n / "pod-logs"),
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": CLUSTER_DOMAIN,
        "volumePluginDir": str(n / "volume-plugins"),
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }
    (n / "kubelet-config.yaml").write_text(json.dumps(kubelet, indent=2))


def _pause_image() -> str:
    from .images import PAUSE_IMAGE

    return PAUSE_IMAGE


def containerd_argv(info: EnvInfo) -> list[str]:
    # image pulls go to a proxy that does not exist, so a missing image fails at once, here
    return [
        "env", "HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=",
        shutil.which("containerd") or "/usr/bin/containerd", "--config", str(info.dir / "node" / "containerd.toml"),
    ]  # fmt: skip


def kubelet_argv(info: EnvInfo) -> list[str]:
    n = info.dir / "node"
    return [
        str(node_bin_dir() / "kubelet"),
        "--config", str(n / "kubelet-config.yaml"),
        "--kubeconfig", str(n / "kubelet.kubeconfig"),
        "--root-dir", str(n / "kubelet"),
        "--cert-dir", str(n / "kubelet" / "pki"),
        "--hostname-override", NODE_NAME,
        "--v", "1",
    ]  # fmt: skip


def kube_proxy_argv(info: EnvInfo) -> list[str]:
    return [str(services_bin_dir() / "kube-proxy"), "--config", str(info.dir / "node" / "kube-proxy.yaml"), "--v", "1"]


def coredns_argv(info: EnvInfo) -> list[str]:
    return [str(services_bin_dir() / "coredns"), "-conf", str(info.dir / "node" / "Corefile")]


def ctr(info: EnvInfo, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    sock = info.dir / "node" / "containerd.sock"
    return subprocess.run(
        [*inside(info), "ctr", "--address", str(sock), "-n", "k8s.io", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def import_images(info: EnvInfo, archives: list[Path]) -> None:
    """Import and unpack each image (as a node with pre-pulled images has them). Left packed, each container
    created before the first one had unpacked its image unpacked it again: 40 pods of the worker image starting
    at once made 40 copies of it (20 GB, every container create waiting on the disk; the kubelet's create timed
    out, `CreateContainerError: context deadline exceeded`). Unpacked here, once: about 6 s for the worker."""
    for archive in archives:
        out = ctr(info, "images", "import", str(archive))
        if out.returncode != 0:
            raise NodeError(f"ctr images import {archive}: {out.stderr}")


def cleanup(info: EnvInfo, holder: int | None) -> None:
    """After the kubelet and containerd are stopped: every process left in the sandbox (containers,
    shims; only this environment starts processes there) and then the holder, which takes the
    namespaces, mounts, bridge and routes with it; and the empty cgroups runc made for its containers."""
    if holder is None:
        return
    try:
        netns = os.readlink(f"/proc/{holder}/ns/net")
    except OSError:
        netns = None
    spare = {os.getpid(), os.getppid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) in spare or int(p.name) == holder:
                continue
            try:
                if netns and os.readlink(p / "ns" / "net") == netns:
                    left.append(int(p.name))
            except OSError:
                continue
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if not left:
            break
        time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder, signal.SIGKILL)
    ours = own_containers(info)
    for parent in Path("/sys/fs/cgroup").glob("*/k8s.io"):
        for child in parent.iterdir():
            if child.is_dir() and child.name in ours:
                with contextlib.suppress(OSError):
                    child.rmdir()
    free_containerd_root(info)


def free_containerd_root(info: EnvInfo) -> None:
    """Remove what containerd stored: the image store and every container's filesystem, which the pods a test
    keeps hold until they are deleted (27 GB after the operator-kill fault test, measured while images were
    imported packed and every container unpacked its own copy; see `import_images`), and pytest keeps the
    directories of its last three runs. The images are imported again at each start. Nothing is removed
    while anything is still mounted under it (the mounts went with the sandbox's mount namespace)."""
    root = info.dir / "node" / "containerd"
    prefix = str(root.resolve()) + "/"
    with contextlib.suppress(OSError):
        mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        if any(point.startswith(prefix) for point in mounted):
            return
        shutil.rmtree(root, ignore_errors=True)


def own_containers(info: EnvInfo) -> set[str]:
    """The ids of the containers this node's containerd ran (its task directories outlive it): the cgroups
    `cleanup` may remove. Another environment on the machine (each pytest-xdist worker starts one) may be
    creating a container's cgroup at that moment; its parent, `k8s.io`, is shared and stays."""
    containerd = info.dir / "node" / "containerd"
    tasks = [containerd / where / "io.containerd.runtime.v2.task" / "k8s.io" for where in ("state", "root")]
    return {entry.name for directory in tasks if directory.is_dir() for entry in directory.iterdir()}
