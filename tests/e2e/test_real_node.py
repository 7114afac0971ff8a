"""The real node: a kubelet on containerd 1.6 + runc, authenticated as a node should be, whose pods are
containers (their own cgroup, hostname and read-only root file system, the image's user), and on which a
worker's start error reaches the Execution whole.

These need the environment's real node (the default; FLOWPODS_TESTENV_NODE=agent starts the node agent,
for which they fail by saying so)."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import testenv
from tests.e2e.harness import execution_yaml, list_pods, wait_for_state
from tests.testenv.images import JAEGER_IMAGE


@pytest.fixture
def real(testenv_info) -> testenv.EnvInfo:
    if not testenv_info.real_node:
        pytest.fail("this test is about the real node; the environment runs the node agent", pytrace=False)
    return testenv_info


def https_status(url: str, ca: Path | None = None, token: str | None = None, cert: Path | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    if cert is not None:
        context.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_node_is_a_ready_kubelet_on_containerd_1_6(real, core_v1) -> None:
    node = core_v1.read_node(real.node_name)
    info = node.status.node_info
    assert info.container_runtime_version.startswith("containerd://1.6."), info.container_runtime_version
    assert info.kubelet_version == "v1.34.4"
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True", ready.message
    assert not [t for t in node.spec.taints or [] if t.effect == "NoSchedule"]


def test_the_kubelet_is_a_node_to_the_api_and_its_own_api_is_closed_to_anonymous_callers(real) -> None:
    kubelet = "https://127.0.0.1:10250/pods"
    assert https_status(kubelet) == 401  # anonymous
    assert https_status(kubelet, token=real.admin_token) == 200  # a token the API server vouches for
    # the kubelet's client certificate: system:node:<name> in system:nodes, so the Node authorizer and
    # NodeRestriction apply: its own Node yes, secrets of all namespaces no
    cert = real.dir / "pki" / "kubelet.crt"
    assert https_status(f"{real.api_url}/api/v1/nodes/{real.node_name}", real.ca_file, cert=cert) == 200
    assert https_status(f"{real.api_url}/api/v1/secrets", real.ca_file, cert=cert) == 403


PROBE_FLOW = r"""
apiVersion: flowpods.io/v1alpha1
kind: Flow
metadata:
  name: where
spec:
  id: where
  namespace: company.team
  tasks:
    - id: probe
      type: io.kestra.plugin.scripts.shell.Commands
      commands:
        - 'echo "::{\"outputs\": {\"uid\": $(id -u), \"hostname\": \"$(hostname)\"}}::"'
        - 'echo "::{\"outputs\": {\"cgroup\": \"$(head -n 1 /proc/1/cgroup)\"}}::"'
        - 'if touch /probe 2>/dev/null; then r=writable; else r=read-only; fi'
        - 'echo "::{\"outputs\": {\"rootfs\": \"$r\"}}::"'
"""


def test_a_worker_pod_runs_in_a_container_of_the_worker_image(real, operator, apply_yaml, custom_objects,
                                                               core_v1, namespace) -> None:  # fmt: skip
    apply_yaml(PROBE_FLOW)
    apply_yaml(execution_yaml("where-1", "where"))
    status = wait_for_state(custom_objects, namespace, "where-1", operator=operator)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    (run,) = status["taskRuns"]
    seen: dict[str, Any] = run["outputs"]["vars"]
    (pod,) = list_pods(core_v1, namespace, "where-1")
    assert seen["uid"] == 65532  # the image's USER (worker-image/Dockerfile), not the host's root
    assert seen["hostname"] == pod.metadata.name != socket.gethostname()
    assert seen["cgroup"] != Path("/proc/1/cgroup").read_text().splitlines()[0]
    assert "/k8s.io/" in seen["cgroup"]  # runc's cgroup under containerd's parent
    assert seen["rootfs"] == "read-only"  # the pod's readOnlyRootFilesystem
    (container,) = pod.status.container_statuses
    assert container.container_id.startswith("containerd://") and container.image_id


def test_an_image_without_a_shell_fails_the_task_with_the_runtimes_whole_reason(
    real, operator, apply_yaml, custom_objects, namespace
) -> None:
    apply_yaml(f"""
apiVersion: flowpods.io/v1alpha1
kind: Flow
metadata:
  name: wrong-image
spec:
  id: wrong-image
  namespace: company.team
  tasks:
    - id: hello
      type: io.kestra.plugin.scripts.shell.Commands
      commands: ["echo never said"]
      containerImage: {JAEGER_IMAGE}
""")  # an image without flowpods runs a script task (tests/e2e/test_scripts.py); one without /bin/sh cannot
    apply_yaml(execution_yaml("wrong-1", "wrong-image"))
    status = wait_for_state(custom_objects, namespace, "wrong-1", operator=operator)["status"]
    assert status["state"] == "FAILED"
    text = json.dumps(status)
    # containerd's message ends '...exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown'; nothing
    # of it is cut
    assert "did not start (StartError, exit code 128)" in text and "no such file or directory: unknown" in text, text


# Runs in a pod: resolves the Service `web` by its short and its full name (CoreDNS, the kubelet's clusterDNS
# with the pod's search path), fetches from it through its ClusterIP (kube-proxy), and finds that a name
# outside the cluster does not exist (no way out of the sandbox, answered at once).
DNS_CLIENT = r"""
import socket, sys, time, urllib.request
ns = sys.argv[1]
print("web", socket.gethostbyname("web"), socket.gethostbyname(f"web.{ns}.svc.cluster.local"), flush=True)
for url in ("http://web/", f"http://web.{ns}.svc.cluster.local/"):
    for attempt in range(40):  # kube-proxy may write the endpoint's rules a moment after the pod is Ready
        try:
            print(url, urllib.request.urlopen(url, timeout=3).read().decode().strip(), flush=True)
            break
        except OSError as error:
            print(url, error, flush=True)
            time.sleep(0.5)
    else:
        sys.exit(1)
try:
    socket.gethostbyname("nowhere.invalid")
except socket.gaierror as error:
    print("outside", error.args[0] == socket.EAI_NONAME, flush=True)
"""


def test_a_pod_resolves_a_service_by_name_and_reaches_it_through_kube_proxy(real, core_v1, namespace) -> None:
    image = real.test_image
    server = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": image, "workingDir": "/tmp",
            "command": ["sh", "-c", "echo served-by-web >index.html && exec python3 -m http.server 8080"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]},
    }  # fmt: skip
    core_v1.create_namespaced_pod(namespace, server)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}  # fmt: skip
    cluster_ip = core_v1.create_namespaced_service(namespace, service).spec.cluster_ip
    ready = lambda: any(  # noqa: E731
        c.type == "Ready" and c.status == "True"
        for c in core_v1.read_namespaced_pod("web", namespace).status.conditions or []
    )
    testenv.wait_for(ready, 120, "the Service's pod to be Ready")
    client = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": image, "command": ["python3", "-c", DNS_CLIENT, namespace]}]},
    }  # fmt: skip
    core_v1.create_namespaced_pod(namespace, client)
    pod = testenv.wait_for_pod_phase(core_v1, namespace, "client", ("Succeeded", "Failed"), timeout=120)
    log = testenv.pod_log(real, namespace, "client", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    lines = log.splitlines()
    assert lines[0] == f"web {cluster_ip} {cluster_ip}", log
    assert "http://web/ served-by-web" in lines, log
    assert f"http://web.{namespace}.svc.cluster.local/ served-by-web" in lines, log
    assert lines[-1] == "outside True", log
    # the sandbox (where the tests run) reaches the ClusterIP too: kube-proxy's OUTPUT rules
    with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=10) as response:
        assert response.read().decode().strip() == "served-by-web"
