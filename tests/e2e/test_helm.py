"""The Helm chart on the real control plane: it lints, renders into objects the API server accepts, installs
an operator that the environment's node runs as `flowpods operator` under the chart's ServiceAccount (on the
real node: a pod of the locally built image, in-cluster config; the node agent runs the command and mounts
the pod's token as a kubelet would), runs a flow to SUCCESS with its trace in Jaeger, passes `helm test`,
grants no more than it should, and leaves nothing but the CRDs behind when uninstalled.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import testenv
from tests.dashboard import DASHBOARD
from tests.e2e.harness import (
    GROUP,
    VERSION,
    assert_parent_example_trace,
    example,
    execution_yaml,
    spans_by_name,
    tags,
    wait_for_spans,
    wait_for_state,
)
from tests.testenv.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "flowpods"
INSTANCE = "app.kubernetes.io/instance"


class Helm:
    """The built helm, bound to the environment's kubeconfig; its caches in a temp dir, not the user's."""

    def __init__(self, env: testenv.EnvInfo, home: Path):
        self.env = env
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
        self.environ.update(
            KUBECONFIG=str(env.kubeconfig),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [str(self.env.helm()), *args, "--kubeconfig", str(self.env.kubeconfig)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.environ, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, namespace: str, *sets: str) -> list[dict[str, Any]]:
        out = self("template", "flowpods", str(CHART), "-n", namespace, *sets).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture
def helm(testenv_info, tmp_path) -> Helm:
    return Helm(testenv_info, tmp_path / "helm")


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def rules_by_resource(role: dict[str, Any]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault(f"{resource}.{group}" if group else resource, set()).update(rule["verbs"])
    return granted


def dry_run_on_server(kubectl, namespace: str, rendered: str) -> str:
    """`kubectl apply --dry-run=server` of rendered objects; kubectl's output.

    Admission looks up a bare Pod's ServiceAccount (the helm-test pod's), which a dry run does not create,
    so the ServiceAccounts are made for real first (in the test's namespace, deleted with it).
    """
    accounts = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount"]
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(accounts))
    return kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered).stdout


# -- lint and render --------------------------------------------------------------------------------------


def test_the_chart_lints_with_default_jaeger_kind_and_namespaced_values(helm):
    for sets in ([], ["--set", "jaeger.enabled=true"], ["-f", str(CHART / "values-kind.yaml")],
                 ["--set", "watchNamespaces={team-a,team-b}", "--set", "api.enabled=false"]):  # fmt: skip
        out = helm("lint", str(CHART), "--strict", *sets).stdout
        assert "0 chart(s) failed" in out, out
    refused = helm("lint", str(CHART), "--set", "operator.podCleanup=sometimes", check=False)
    assert refused.returncode != 0 and "podCleanup" in refused.stdout + refused.stderr, "values.schema.json checks"


@pytest.mark.parametrize("sets", [[], ["--set", "jaeger.enabled=true"]], ids=["default", "jaeger"])
def test_rendered_chart_is_accepted_by_the_api_server(helm, kubectl, crds, namespace, sets):
    rendered = helm("template", "flowpods", str(CHART), "-n", namespace, "--include-crds", *sets).stdout
    out = dry_run_on_server(kubectl, namespace, rendered)
    kinds = {line.split("/")[0] for line in out.splitlines()}
    expected = {"deployment.apps", "serviceaccount", "service", "pod", "role.rbac.authorization.k8s.io",
                "clusterrole.rbac.authorization.k8s.io", "clusterrolebinding.rbac.authorization.k8s.io",
                "customresourcedefinition.apiextensions.k8s.io"}  # fmt: skip
    assert expected <= kinds, out
    assert ("configmap" in kinds) == bool(sets), "the Jaeger config only with jaeger.enabled"


def test_rendered_namespaced_mode_is_accepted_and_uses_roles(helm, kubectl, crds, namespace):
    docs = helm.template(namespace, "--set", f"watchNamespaces={{{namespace}}}")
    dry_run_on_server(kubectl, namespace, yaml.safe_dump_all(docs))
    role = one(docs, "Role", "flowpods")
    assert role["metadata"]["namespace"] == namespace
    cluster = rules_by_resource(one(docs, "ClusterRole", "flowpods-cluster"))
    assert set(cluster) == {
        "namespaces", "customresourcedefinitions.apiextensions.k8s.io",
        "tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io",
    }  # fmt: skip
    worker = one(docs, "ServiceAccount", "flowpods-worker")
    assert worker["automountServiceAccountToken"] is False and worker["metadata"]["namespace"] == namespace


def test_default_render_operator_deployment_and_least_privilege(helm):
    docs = helm.template("flowpods-system")
    deployment = one(docs, "Deployment", "flowpods")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["flowpods", "operator"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-api"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLOWPODS_NAMESPACES"] == "" and env["FLOWPODS_API_PORT"] == "8080"
    assert env["FLOWPODS_HEALTH_PORT"] == "8081" and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    granted = rules_by_resource(one(docs, "ClusterRole", "flowpods"))
    assert granted["pods"] == {"get", "list", "watch", "create", "delete"}
    assert granted["executions.flowpods.io"] == {"get", "list", "watch", "create", "delete", "patch"}
    assert not {"secrets", "namespaces", "nodes", "serviceaccounts"} & set(granted)
    assert all("*" not in verbs for verbs in granted.values())
    config_maps = [r for r in one(docs, "ClusterRole", "flowpods")["rules"] if "configmaps" in r["resources"]]
    assert sorted((r["verbs"], r.get("resourceNames")) for r in config_maps) == [
        (["create"], None), (["get", "update"], ["flowpods-span-watermarks"])
    ], "the span watermark ledger alone"  # fmt: skip
    assert one(docs, "Service", "flowpods-api")["spec"]["ports"][0]["targetPort"] == "http-api"

    with_jaeger = helm.template("flowpods-system", "--set", "jaeger.enabled=true")
    env = {e["name"]: e.get("value") for e in one(with_jaeger, "Deployment", "flowpods")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://flowpods-jaeger.flowpods-system.svc:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"  # OpenTelemetry's default
    assert env["FLOWPODS_WORKER_OTLP_ENDPOINT"] == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    over_grpc = helm.template("flowpods-system", "--set", "jaeger.enabled=true", "--set", "otlp.protocol=grpc")
    env = {e["name"]: e.get("value") for e in one(over_grpc, "Deployment", "flowpods")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://flowpods-jaeger.flowpods-system.svc:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    jaeger = one(with_jaeger, "Deployment", "flowpods-jaeger")["spec"]["template"]["spec"]["containers"][0]
    assert jaeger["image"] == "jaegertracing/jaeger:2.13.0"
    ports = {p["name"]: p["port"] for p in one(with_jaeger, "Service", "flowpods-jaeger")["spec"]["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "ui": 16686}
    config = yaml.safe_load(one(with_jaeger, "ConfigMap", "flowpods-jaeger")["data"]["config.yaml"])
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"


def test_metrics_render_a_port_scrape_annotations_a_service_monitor_and_the_dashboard_when_asked(helm):
    default = helm.template("flowpods-system")
    container = one(default, "Deployment", "flowpods")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_METRICS_EXPORTER"] == "prometheus" and env["OTEL_EXPORTER_PROMETHEUS_PORT"] == "9464"
    assert env["FLOWPODS_METRICS_RUN_IDS"] == "false"
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert one(default, "Service", "flowpods-metrics")["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not [d for d in default if d["kind"] in ("ServiceMonitor", "ConfigMap")]

    asked = helm.template("flowpods-system", "--set", "metrics.scrapeAnnotations=true", "--set",
                          "metrics.serviceMonitor.enabled=true", "--set", "metrics.dashboard.enabled=true",
                          "--set", "metrics.otlp=true")  # fmt: skip
    pod = one(asked, "Deployment", "flowpods")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["OTEL_METRICS_EXPORTER"] == "prometheus,otlp"
    (endpoint,) = one(asked, "ServiceMonitor", "flowpods")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    dashboard = one(asked, "ConfigMap", "flowpods-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["flowpods.json"]) == json.loads(DASHBOARD.read_text())


# -- the node gives pods their ServiceAccount (what the install relies on) -----------------------------------

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WHOAMI = f"""
import json, os, pathlib
from kubernetes import client
folder = pathlib.Path("{SA_DIR}")
# what a pod sees: KUBERNETES_SERVICE_HOST/PORT (the `kubernetes` Service, or the node agent's 127.0.0.1)
# and the files mounted for it; read explicitly, so nothing falls back to a default configuration
settings = client.Configuration()
settings.host = f"https://{{os.environ['KUBERNETES_SERVICE_HOST']}}:{{os.environ['KUBERNETES_SERVICE_PORT']}}"
settings.ssl_ca_cert = str(folder / "ca.crt")
settings.api_key = {{"authorization": "Bearer " + folder.joinpath("token").read_text()}}
api = client.ApiClient(settings)
review = client.AuthenticationV1Api(api).create_self_subject_review(
    {{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}})
try:
    client.CoreV1Api(api).list_namespaced_secret(folder.joinpath("namespace").read_text())
    secrets = 200
except client.ApiException as error:
    secrets = error.status
report = {{"files": sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")),
          "namespace": folder.joinpath("namespace").read_text(), "user": review.status.user_info.username,
          "secrets": secrets, "token": folder.joinpath("token").read_text()}}
pathlib.Path(os.environ.get("FLOWPODS_TERMINATION_LOG", "/dev/termination-log")).write_text(json.dumps(report))
"""


def bare_pod(name: str, command: list[str], image: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "command": command}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container], **spec}}  # fmt: skip


def worker_image(env: testenv.EnvInfo) -> str:
    """The locally built flowpods image (python with the kubernetes client); the node agent ignores images."""
    return env.worker_settings().get("FLOWPODS_WORKER_IMAGE", "python:3.11-slim")


def test_the_node_mounts_a_pod_bound_service_account_token_for_that_pod_only(
    testenv_info, namespace, core_v1, api_client
):
    from kubernetes import client

    image = worker_image(testenv_info)
    core_v1.create_namespaced_service_account(namespace, {"metadata": {"name": "probe"}})
    whoami_pod = bare_pod("whoami", ["python", "-c", WHOAMI], image, serviceAccountName="probe")
    core_v1.create_namespaced_pod(namespace, whoami_pod)
    no_token = bare_pod("no-token", ["sh", "-c", f"test ! -e {SA_DIR}"], image, serviceAccountName="probe",
                        automountServiceAccountToken=False)  # fmt: skip
    core_v1.create_namespaced_pod(namespace, no_token)
    for name in ("whoami", "no-token"):
        status = testenv.wait_for_pod_phase(core_v1, namespace, name, ("Succeeded", "Failed"), timeout=90)["status"]
        assert status["phase"] == "Succeeded", (status, testenv.pod_log(testenv_info, namespace, name, "main"))

    whoami = core_v1.read_namespaced_pod("whoami", namespace)
    report = json.loads(whoami.status.container_statuses[0].state.terminated.message)
    token = report.pop("token")
    assert report == {"files": ["ca.crt", "namespace", "token"], "namespace": namespace,
                      "user": f"system:serviceaccount:{namespace}:probe", "secrets": 403}  # fmt: skip

    # The token came from the TokenRequest API, bound to the pod: valid while it exists, not after.
    host_token = Path(SA_DIR, "token")
    assert not host_token.exists() or host_token.read_text() != token, "only the pod's process sees its token"
    auth = client.AuthenticationV1Api(api_client)

    def review() -> Any:
        return auth.create_token_review({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                         "spec": {"token": token}}).status  # fmt: skip

    bound = review()
    assert bound.authenticated and bound.user.extra["authentication.kubernetes.io/pod-name"] == ["whoami"]
    core_v1.delete_namespaced_pod("whoami", namespace)
    testenv.wait_for(lambda: not review().authenticated, 60, "the token to die with its pod")


# -- install, run, test, uninstall ------------------------------------------------------------------------


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return None


@pytest.fixture
def release(helm, namespace, crds) -> Iterator[str]:
    """A release name; uninstalled at the end if the test left it installed (e.g. when it failed)."""
    name = f"fp{uuid.uuid4().hex[:6]}"
    yield name
    if name in helm("list", "-n", namespace, "-q", check=False).stdout.split():
        helm("uninstall", name, "-n", namespace, "--wait", "--timeout", "60s", check=False)


def test_helm_install_runs_flows_as_its_service_account_and_uninstall_leaves_only_the_crds(
    helm, release, testenv_info, namespace, kubectl, core_v1, custom_objects, apply_yaml, jaeger
):
    env = testenv_info
    api_port, health_port = free_port(), free_port()
    operator_sa, worker_sa = f"{release}-flowpods", f"{release}-flowpods-worker"
    helm("install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s",
         "--set", f"watchNamespaces={{{namespace}}}",
         "--set", f"otlp.endpoint=http://{env.pod_host}:{env.otlp_http_port}",
         "--set", f"api.port={api_port}",
         "--set", f"operator.healthPort={health_port}",
         "--set", f"api.jaegerUrl={env.jaeger_url}",
         *node_values(env))  # fmt: skip

    # The scheduler put the operator's pod on the test node, and the node runs it there.
    selector = f"{INSTANCE}={release},app.kubernetes.io/component=operator"
    (pod,) = core_v1.list_namespaced_pod(namespace, label_selector=selector).items
    assert pod.spec.node_name == env.node_name and pod.status.phase == "Running"
    assert pod.spec.containers[0].command == ["flowpods", "operator"]
    assert pod.spec.service_account_name == operator_sa
    assert "KUBECONFIG" not in {e.name for e in pod.spec.containers[0].env}, "in-cluster config only"
    operator_log = lambda: testenv.pod_log(env, namespace, pod.metadata.name, "operator")  # noqa: E731
    testenv.wait_for(lambda: http_status(f"http://{pod.status.pod_ip}:{health_port}/healthz") == 200, 90,
                     "kopf's liveness endpoint (the chart's livenessProbe)",
                     describe=lambda: operator_log()[-3000:])  # fmt: skip
    testenv.wait_for(lambda: http_status(f"http://{pod.status.pod_ip}:{api_port}/readyz") == 200, 60,
                     "the API's /readyz (the chart's readinessProbe)")  # fmt: skip
    assert "login_via_client' succeeded" in operator_log()

    # A Flow applied afterwards runs to SUCCESS in a worker pod, with its trace in Jaeger.
    apply_yaml(example("hello-world.yaml"))
    apply_yaml(execution_yaml("hello-helm", "hello-world"))
    status = wait_for_state(custom_objects, namespace, "hello-helm", timeout=120)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    (worker,) = core_v1.list_namespaced_pod(namespace, label_selector="flowpods.io/execution=hello-helm").items
    assert worker.spec.service_account_name == worker_sa and worker.spec.automount_service_account_token is False
    trace = wait_for_spans(jaeger, status["traceId"], {"RUN hello-world", "TASKRUN hello",
                                                       "WORKER - io.kestra.plugin.core.log.Log"})  # fmt: skip
    spans = spans_by_name(trace)
    (run,) = spans["RUN hello-world"]
    assert tags(spans["TASKRUN hello"][0])["k8s.namespace.name"] == namespace
    assert "WORKER - io.kestra.plugin.core.log.Log" in spans
    process = trace["processes"][run["processID"]]
    assert process["serviceName"] == "flowpods"
    assert {"key": "k8s.pod.name", "type": "string", "value": pod.metadata.name} in process["tags"]

    # The operator's ServiceAccount has what the chart grants and nothing more.
    token = core_v1.create_namespaced_service_account_token(
        operator_sa, namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    assert request_as(env, token, f"/api/v1/namespaces/{namespace}/secrets") == 403
    assert request_as(env, token, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/executions") == 200
    assert request_as(env, token, f"/apis/{GROUP}/{VERSION}/namespaces/default/executions") == 403
    assert request_as(env, token, "/api/v1/nodes") == 403
    as_operator = f"--as=system:serviceaccount:{namespace}:{operator_sa}"
    for question, allowed in [
        ("get secrets", False), ("list configmaps", False), ("create deployments.apps", False),
        ("get configmaps/flowpods-span-watermarks", True), ("update configmaps/flowpods-span-watermarks", True),
        ("get configmaps/kube-root-ca.crt", False), ("update configmaps/flowpods-dashboard", False),
        ("create pods", True), ("delete pods", True), ("update pods", False), ("create pods --subresource=exec", False),
        ("create executions.flowpods.io", True), ("update executions.flowpods.io --subresource=status", True),
        ("patch flows.flowpods.io --subresource=status", True), ("delete flows.flowpods.io", False),
        ("create events", True), ("list executions.flowpods.io --all-namespaces", False),
        ("create tokenreviews.authentication.k8s.io", True),
        ("create subjectaccessreviews.authorization.k8s.io", True),
    ]:  # fmt: skip
        answer = kubectl("auth", "can-i", *question.split(), "-n", namespace, as_operator, check=False).stdout
        assert answer.strip() == ("yes" if allowed else "no"), f"can {operator_sa} {question}? {answer}"
    as_worker = f"--as=system:serviceaccount:{namespace}:{worker_sa}"
    assert kubectl("auth", "can-i", "list", "pods", "-n", namespace, as_worker, check=False).stdout.strip() == "no"

    # `helm test`: its pod applies hello-world with kubectl (in-cluster, its own account) and waits for SUCCESS.
    out = helm("test", release, "-n", namespace, "--timeout", "180s").stdout
    assert "Phase:          Succeeded" in out, out
    test_log = testenv.pod_log(env, namespace, f"{release}-flowpods-test-hello-world", "hello-world")
    assert "condition met" in test_log, test_log

    # Uninstall: nothing of the release is left but the CRDs.
    helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    by_instance = f"-l{INSTANCE}={release}"
    kinds = "deployments,replicasets,services,serviceaccounts,configmaps,roles,rolebindings,pods"
    left = lambda: kubectl("get", kinds, "-n", namespace, by_instance, "-o", "name").stdout.strip()  # noqa: E731
    testenv.wait_for(lambda: not left(), 120, "the release's namespaced objects to be gone", describe=left)
    cluster_left = kubectl("get", "clusterroles,clusterrolebindings", by_instance, "-o", "name").stdout.strip()
    assert not cluster_left, cluster_left
    for sa in (operator_sa, worker_sa, f"{release}-flowpods-test"):
        assert kubectl("get", "serviceaccount", sa, "-n", namespace, check=False).returncode != 0
    crds = json.loads(kubectl("get", "crd", "flows.flowpods.io", "executions.flowpods.io", "-o", "json").stdout)
    assert len(crds["items"]) == 2, "helm uninstall keeps the CRDs (and so every Flow and Execution)"


def node_values(env: testenv.EnvInfo) -> list[str]:
    """How the chart runs on this environment's node. The real node: the locally built images, never pulled,
    the API on the pod's address. The node agent: it runs commands on the host (the built kubectl), where
    the API binds 127.0.0.1."""
    if env.real_node:
        return ["--set", "image.repository=flowpods", "--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
                "--set", "tests.image.repository=flowpods.local/kubectl", "--set", "tests.image.tag=dev",
                "--set", "tests.image.pullPolicy=Never", "--set", "tests.kubectl=kubectl"]  # fmt: skip
    return ["--set", "api.host=127.0.0.1", "--set", f"tests.kubectl={env.kubectl()}"]


def request_as(env: testenv.EnvInfo, token: str, path: str) -> int:
    """GET `path` on the API server with a bearer token; the HTTP status."""
    context = ssl.create_default_context(cafile=str(env.ca_file))
    request = urllib.request.Request(env.api_url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_charts_jaeger_runs_as_a_pod_and_gets_the_spans_through_its_service_by_name(
    helm, release, testenv_info, namespace, core_v1, custom_objects, apply_yaml
):
    """`jaeger.enabled=true` with the locally built Jaeger image and nothing else about tracing: the operator
    and its worker pods send to the chart's default endpoint, the Jaeger Service's DNS name, which CoreDNS
    resolves and kube-proxy routes to the Jaeger pod, as in a user's install; examples/parent.yaml's one trace
    is read back from that Jaeger's own query API, through its Service's ClusterIP."""
    env = testenv_info
    if not env.real_node:
        pytest.fail("this test is about the real node; the environment runs the node agent", pytrace=False)
    jaeger_values = ["--set", "jaeger.enabled=true", "--set", "jaeger.image.repository=flowpods.local/jaeger",
                     "--set", "jaeger.image.tag=dev", "--set", "jaeger.image.pullPolicy=Never"]  # fmt: skip
    helm("install", release, str(CHART), "-n", namespace, "--set", f"watchNamespaces={{{namespace}}}",
         *node_values(env), *jaeger_values, "--wait", "--timeout", "120s")  # fmt: skip
    service = f"{release}-flowpods-jaeger"
    selector = f"{INSTANCE}={release},app.kubernetes.io/component=jaeger"
    (jaeger_pod,) = core_v1.list_namespaced_pod(namespace, label_selector=selector).items
    assert jaeger_pod.status.phase == "Running" and jaeger_pod.spec.node_name == env.node_name
    operator_selector = f"{INSTANCE}={release},app.kubernetes.io/component=operator"
    (operator_pod,) = core_v1.list_namespaced_pod(namespace, label_selector=operator_selector).items
    operator_env = {e.name: e.value for e in operator_pod.spec.containers[0].env}
    by_name = f"http://{service}.{namespace}.svc:4318"  # the chart's default: the Service's DNS name, OTLP/HTTP
    assert operator_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == by_name
    assert operator_env["FLOWPODS_WORKER_OTLP_ENDPOINT"] == by_name

    apply_yaml(example("hello-world.yaml"))
    apply_yaml(example("parent.yaml"))
    apply_yaml(execution_yaml("parent-chart", "parent"))
    status = wait_for_state(custom_objects, namespace, "parent-chart", timeout=180)["status"]
    assert status["state"] == "SUCCESS", status.get("message")
    workers = core_v1.list_namespaced_pod(namespace, label_selector="flowpods.io/execution").items
    assert workers, "the executions' worker pods"
    for pod in workers:
        pod_env = {e.name: e.value for c in pod.spec.containers for e in c.env or []}
        assert pod_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == by_name, pod.metadata.name
    cluster_ip = core_v1.read_namespaced_service(service, namespace).spec.cluster_ip
    in_cluster = testenv.Jaeger(f"http://{cluster_ip}:16686")  # kube-proxy's rules, from the sandbox
    assert_parent_example_trace(in_cluster, status["traceId"])  # a WORKER span under every TASKRUN
    assert testenv.Jaeger(env.jaeger_url).trace(status["traceId"]) is None, "not the environment's Jaeger"
