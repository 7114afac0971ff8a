"""The test environment itself works: real apiserver semantics, its node (the real kubelet, or the node
agent standing in for it) as a kubelet behaves, garbage collection, RBAC and Jaeger. If these fail, every
other e2e test is suspect."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import time
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests import testenv

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.flowpods.io
spec:
  group: testenv.flowpods.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
              required: [size]
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"""


def widget(name: str, size: int) -> dict:
    return {
        "apiVersion": "testenv.flowpods.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


# where a container writes its termination message: the node agent's file, else the kubelet's default
TERMINATION_LOG = '"${FLOWPODS_TERMINATION_LOG:-/dev/termination-log}"'


@pytest.fixture
def image(testenv_info) -> str:
    return testenv_info.test_image


def pod_manifest(name: str, command: list[str], image: str, **spec) -> dict:
    container = {"name": "main", "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "containers": [container], **spec},
    }


def pod_dict(core_v1, ns: str, name: str) -> dict:
    return core_v1.api_client.sanitize_for_serialization(core_v1.read_namespaced_pod(name, ns))


def gone(fn) -> bool:
    try:
        fn()
    except ApiException as e:
        return e.status == 404
    return False


def test_crd_with_kubectl_and_python_client(testenv_info, apply_yaml, namespace, kubectl, custom_objects):
    out = apply_yaml(CRD, ns=None)
    assert "widgets.testenv.flowpods.io" in out
    kubectl("wait", "--for=condition=Established", "crd/widgets.testenv.flowpods.io", "--timeout=30s")

    # kubectl: create, list; a bad object is refused by the schema (a real apiserver validates).
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(widget("by-kubectl", 1)))
    bad = kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps({**widget("bad", 1), "spec": {"size": "big"}}),
    )
    assert bad.returncode != 0 and "spec.size" in bad.stderr
    listed = json.loads(kubectl("get", "widgets", "-n", namespace, "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["by-kubectl"]

    # kubectl watch sees an object created through the Python client.
    watcher = subprocess.Popen(
        [
            str(testenv_info.kubectl()),
            "--kubeconfig",
            str(testenv_info.kubeconfig),
            "get",
            "widgets",
            "-n",
            namespace,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(testenv_info.kubeconfig)},
    )
    try:
        time.sleep(1)
        custom_objects.create_namespaced_custom_object(
            "testenv.flowpods.io", "v1", namespace, "widgets", widget("by-python", 2)
        )
        seen, buf, deadline = set(), "", time.monotonic() + 20
        decoder = json.JSONDecoder()
        while "by-python" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([watcher.stdout], [], [], 1)
            if ready:
                buf += os.read(watcher.stdout.fileno(), 65536).decode()
                buf = buf.lstrip()
                while buf:
                    try:
                        ev, end = decoder.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:].lstrip()
                    seen.add(ev["object"]["metadata"]["name"])
        assert "by-python" in seen, f"kubectl --watch saw only {seen}"
    finally:
        watcher.kill()
        watcher.wait()

    # Python client: list, status subresource, and a watch that sees a kubectl change.
    items = custom_objects.list_namespaced_custom_object("testenv.flowpods.io", "v1", namespace, "widgets")
    assert sorted(i["metadata"]["name"] for i in items["items"]) == ["by-kubectl", "by-python"]
    custom_objects.patch_namespaced_custom_object_status(
        "testenv.flowpods.io", "v1", namespace, "widgets", "by-python", {"status": {"phase": "Done"}}
    )
    got = custom_objects.get_namespaced_custom_object("testenv.flowpods.io", "v1", namespace, "widgets", "by-python")
    assert got["status"] == {"phase": "Done"} and got["spec"] == {"size": 2}

    rv = items["metadata"]["resourceVersion"]
    kubectl("patch", "widget", "by-kubectl", "-n", namespace, "--type=merge", "-p", '{"spec":{"size":7}}')
    w = watch.Watch()
    events = []
    for ev in w.stream(
        custom_objects.list_namespaced_custom_object,
        "testenv.flowpods.io",
        "v1",
        namespace,
        "widgets",
        resource_version=rv,
        timeout_seconds=10,
    ):
        events.append((ev["type"], ev["object"]["metadata"]["name"], ev["object"]["spec"]["size"]))
        if ("MODIFIED", "by-kubectl", 7) in events:
            w.stop()
    assert ("MODIFIED", "by-kubectl", 7) in events, events


def test_apply_objects_through_python_client(apply_yaml, namespace, core_v1):
    apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n", via="python")
    apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '2'}\n", via="python")
    assert core_v1.read_namespaced_config_map("cfg", namespace).data == {"a": "2"}


def test_pod_succeeds_with_termination_message(testenv_info, namespace, core_v1, image):
    pod = pod_manifest(
        "ok",
        ["sh", "-c"],
        image,
        container={
            "args": [
                'echo "hello from $(GREETING_TARGET)"; '
                f'printf "done %s %s %s" "$POD_NAME" "$POD_NS" "$TEAM" > {TERMINATION_LOG}'
            ],
            "env": [
                {"name": "GREETING_TARGET", "value": "agent"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
            ],
        },
    )
    pod["metadata"]["labels"] = {"team": "blue"}
    core_v1.create_namespaced_pod(namespace, pod)
    got = testenv.wait_for_pod_phase(core_v1, namespace, "ok", ("Succeeded", "Failed"), timeout=60)
    st = got["status"]
    assert st["phase"] == "Succeeded", st
    assert got["spec"]["nodeName"] == testenv_info.node_name  # bound by the real scheduler
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(testenv_info.pod_network) and st["startTime"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert term["message"] == f"done ok {namespace} blue"
    assert term["startedAt"] <= term["finishedAt"]
    assert testenv.pod_log(testenv_info, namespace, "ok", "main").strip() == "hello from agent"


def test_failing_command_ends_failed_with_exit_code(namespace, core_v1, image):
    core_v1.create_namespaced_pod(
        namespace,
        pod_manifest(
            "bad",
            ["sh", "-c", "echo boom >&2; exit 3"],
            image,
            container={"terminationMessagePolicy": "FallbackToLogsOnError"},
        ),
    )
    st = testenv.wait_for_pod_phase(core_v1, namespace, "bad", ("Succeeded", "Failed"))["status"]
    assert st["phase"] == "Failed"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert term["message"].rstrip("\n") == "boom"  # FallbackToLogsOnError: the log tail (kubelet keeps its newline)


def test_active_deadline_ends_sleeping_pod(namespace, core_v1, image):
    core_v1.create_namespaced_pod(namespace, pod_manifest("sleepy", ["sleep", "300"], image, activeDeadlineSeconds=2))
    t0 = time.monotonic()
    st = testenv.wait_for_pod_phase(core_v1, namespace, "sleepy", ("Succeeded", "Failed"), timeout=30)["status"]
    assert time.monotonic() - t0 < 20
    assert st["phase"] == "Failed" and st["reason"] == "DeadlineExceeded"
    term = st["containerStatuses"][0]["state"]["terminated"]
    # SIGTERM, as `sleep` does not trap it; in a container it is pid 1, which ignores SIGTERM: SIGKILL after
    # the grace period
    assert term["exitCode"] in (143, 137)


def process_with_env(marker: str) -> int | None:
    """The host pid of the process whose environment holds `marker` (a container's processes are host
    processes too, in their own namespaces)."""
    for proc in os.listdir("/proc"):
        if proc.isdigit():
            try:
                with open(f"/proc/{proc}/environ", "rb") as f:
                    if marker.encode() in f.read().split(b"\0"):
                        return int(proc)
            except OSError:
                continue
    return None


def test_deleting_running_pod_kills_process(namespace, core_v1, image):
    marker = f"FLOWPODS_TEST_MARKER={uuid.uuid4().hex}"
    name, _, value = marker.partition("=")
    pod = pod_manifest("victim", ["sleep", "300"], image, container={"env": [{"name": name, "value": value}]})
    core_v1.create_namespaced_pod(namespace, pod)
    testenv.wait_for_pod_phase(core_v1, namespace, "victim", "Running")
    pid = testenv.wait_for(lambda: process_with_env(marker), 10, "the container's process")
    os.kill(pid, 0)  # it really runs
    core_v1.delete_namespaced_pod("victim", namespace)
    testenv.wait_for(
        lambda: gone(lambda: core_v1.read_namespaced_pod("victim", namespace)), 20, "pod victim removed after deletion"
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_garbage_collector_removes_owned_pods(namespace, core_v1, api_client, image):
    owner = core_v1.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"})
    )
    pod = pod_manifest("owned", ["sleep", "300"], image)
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    core_v1.create_namespaced_pod(namespace, pod)
    testenv.wait_for_pod_phase(core_v1, namespace, "owned", "Running")
    core_v1.delete_namespaced_config_map("owner", namespace)
    testenv.wait_for(
        lambda: gone(lambda: core_v1.read_namespaced_pod("owned", namespace)),
        45,
        "garbage collector to remove pod owned by the deleted ConfigMap",
    )

    # Deployment -> ReplicaSet -> pods, the whole chain of real controllers.
    apps = client.AppsV1Api(api_client)
    labels = {"app": "gc-demo"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "demo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": image, "command": ["sleep", "300"]}],
                    },
                },
            },
        },
    )

    def running_pods():
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=gc-demo").items
        return len([p for p in pods if p.status.phase == "Running"]) == 2 and pods

    testenv.wait_for(running_pods, 60, "2 Running pods of deployment demo")
    apps.delete_namespaced_deployment("demo", namespace, propagation_policy="Background")
    testenv.wait_for(
        lambda: (
            not core_v1.list_namespaced_pod(namespace, label_selector="app=gc-demo").items
            and not apps.list_namespaced_replica_set(namespace).items
        ),
        60,
        "garbage collector to remove the ReplicaSet and pods of deployment demo",
    )


def test_non_admin_user_is_refused_writes(testenv_info, namespace, user_api_client, kubectl):
    user_core = client.CoreV1Api(user_api_client)
    with pytest.raises(ApiException) as err:
        user_core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope")))
    assert err.value.status == 403
    assert testenv.TEST_USER in err.value.body
    denied = kubectl("create", "configmap", "nope2", "-n", namespace, user=True, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    can = kubectl("auth", "can-i", "create", "configmaps", "-n", namespace, user=True, check=False)
    assert can.stdout.strip() == "no"
    # Positive control: admin can.
    kubectl("create", "configmap", "yes", "-n", namespace)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_otlp_span_read_back_from_jaeger(testenv_info, jaeger, protocol):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=testenv_info.otlp_grpc_endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{testenv_info.otlp_http_endpoint}/v1/traces")
    service = f"testenv-{protocol}-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("testenv")
    with tracer.start_as_current_span("flow run", attributes={"flow.id": "demo", "attempt": 1}) as parent:
        with tracer.start_as_current_span("task a", attributes={"task.id": "a"}):
            pass
        with tracer.start_as_current_span("task b", attributes={"task.id": "b"}):
            pass
    provider.shutdown()
    trace_id = format(parent.get_span_context().trace_id, "032x")

    trace = jaeger.wait_for_trace(trace_id=trace_id, min_spans=3, timeout=30)
    assert service in jaeger.services()
    root = testenv.assert_tree(
        trace,
        {
            "name": "flow run",
            "service": service,
            "attributes": {"flow.id": "demo", "attempt": 1},
            "exact_children": True,
            "children": [
                {"name": "task a", "attributes": {"task.id": "a"}},
                {"name": "task b", "attributes": {"task.id": "b"}},
            ],
        },
    )
    assert root.child("task a").span["references"][0]["spanID"] == root.span_id
    by_service = jaeger.wait_for_trace(service=service, min_spans=3, timeout=10)
    assert by_service["traceID"] == trace_id
    with pytest.raises(AssertionError):
        testenv.assert_tree(trace, {"name": "flow run", "children": [{"name": "task c"}]})


def test_env_file_and_status(testenv_info):
    env_text = (testenv_info.dir / "env").read_text()
    for key in (
        "KUBECONFIG",
        "FLOWPODS_JAEGER_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "FLOWPODS_TEST_USER_TOKEN",
        "FLOWPODS_ADMIN_TOKEN",
    ):
        assert f"export {key}=" in env_text
    out = subprocess.run(
        ["bash", "-c", f"source {testenv_info.dir / 'env'} && kubectl get node -o name && echo $KUBECONFIG"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [f"node/{testenv_info.node_name}", str(testenv_info.kubeconfig)]
    assert all(testenv.status(testenv_info.dir).values())


def test_missing_binaries_fail_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWPODS_TESTENV_BIN", str(tmp_path))
    with pytest.raises(testenv.TestEnvError, match=r"make testenv-bins.*") as err:
        testenv.require_binaries()
    assert "kube-apiserver" in str(err.value) and "jaeger" in str(err.value)


def test_cli_up_instant_mode_and_down_leave_nothing_running(tmp_path, testenv_info):
    """`python -m tests.testenv up/down` (what make testenv runs) on a second environment, with the
    node agent in benchmark mode: pods complete at once with the given termination message."""
    state = tmp_path / "env2"
    cli = [sys.executable, "-m", "tests.testenv"]
    up = subprocess.run(
        [*cli, "up", "--state-dir", str(state), "--instant-message", '{"ok": true}'],
        cwd=testenv.cluster.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "source" in up.stdout and str(state / "env") in up.stdout
        info = testenv.EnvInfo.load(state)
        assert info.apiserver_port != testenv_info.apiserver_port
        pids = dict(info.pids)
        assert set(pids) == set(testenv.cluster.components("agent"))
        testenv.kubectl(info, "run", "quick", "--image=none", "--restart=Never", "--command", "--", "false")
        out = testenv.wait_for(
            lambda: (
                testenv.kubectl(
                    info,
                    "get",
                    "pod",
                    "quick",
                    "-o",
                    "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.message}",
                ).stdout.startswith("Succeeded")
                and testenv.kubectl(
                    info,
                    "get",
                    "pod",
                    "quick",
                    "-o",
                    "jsonpath={.status.containerStatuses[0].state.terminated.message}",
                ).stdout
            ),
            30,
            "instant-mode pod to succeed",
        )
        assert out == '{"ok": true}'
    finally:
        down = subprocess.run(
            [*cli, "down", "--state-dir", str(state)],
            cwd=testenv.cluster.REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    alive = {name: pid for name, pid in pids.items() if testenv.cluster._alive(pid)}
    assert not alive, f"still running after down: {alive}"
    assert not (state / "pids" / "kube-apiserver.pid").exists()


def test_node_env_sources_and_init_containers(testenv_info, namespace, core_v1, image):
    """What the flowpods worker pods rely on: configMap/secret env, envFrom, $(VAR) expansion,
    init containers before the main one, a shared per-pod working dir (an emptyDir; the node agent ignores
    volumes and gives each pod one temp dir)."""
    core_v1.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"color": "red", "n": "3"})
    )
    core_v1.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="sec"), string_data={"pw": "s3cret"})
    )
    pod = pod_manifest(
        "envs",
        ["sh", "-c", 'printf "%s|%s|%s|%s|%s" "$COLOR" "$PW" "$CFG_n" "$(cat init.txt)" "$NODE" '
                     f'> {TERMINATION_LOG}'],
        image,
        container={
            "workingDir": "/pod-work",
            "volumeMounts": [{"name": "work", "mountPath": "/pod-work"}],
            "env": [
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        },
        initContainers=[
            {"name": "init", "image": image, "command": ["sh", "-c", "echo from-init-$(POD) > init.txt"],
             "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
             "workingDir": "/pod-work", "volumeMounts": [{"name": "work", "mountPath": "/pod-work"}]}
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )  # fmt: skip
    core_v1.create_namespaced_pod(namespace, pod)
    st = testenv.wait_for_pod_phase(core_v1, namespace, "envs", ("Succeeded", "Failed"))["status"]
    assert st["phase"] == "Succeeded", st
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["message"] == f"red|s3cret|3|from-init-envs|{testenv_info.node_name}"
    assert st["initContainerStatuses"][0]["state"]["terminated"]["finishedAt"] <= term["startedAt"]
