"""Running flowpods itself on the test environment: the CRDs, the operator process, and small waits.

The operator runs as a real `flowpods operator` process against the environment's kubeconfig (given
explicitly), exporting to the environment's Jaeger; its worker pods run on the environment's node: the
real kubelet (the locally built worker image) or the node agent (this venv's `flowpods worker`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import testenv

REPO = Path(__file__).resolve().parents[2]
FLOWPODS = str(Path(sys.executable).parent / "flowpods")
GROUP, VERSION = "flowpods.io", "v1alpha1"
TERMINAL = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"}


def operator_environ(env: testenv.EnvInfo, namespace: str, **settings: str) -> dict[str, str]:
    """The environment of a `flowpods operator` for one namespace of the test environment: its kubeconfig
    given explicitly, spans to its Jaeger, its workers as the environment's node runs them."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWPODS_", "KUBECONFIG"))}
    environ.update(
        KUBECONFIG=str(env.kubeconfig),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{env.otlp_http_port}",  # the default protocol, http/protobuf
        OTEL_SERVICE_NAME="flowpods",
        FLOWPODS_NAMESPACES=namespace,
        FLOWPODS_HEALTH_PORT="0",
        # metrics on a port of this operator's own (Jaeger takes no OTLP metrics)
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()),
        **env.worker_settings(),
    )
    environ.update(settings)
    return environ


class OperatorProcess:
    """A `flowpods operator` child process watching one namespace; its log goes to a file."""

    def __init__(self, env: testenv.EnvInfo, namespace: str, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.env, self.namespace, self.log_dir = env, namespace, log_dir
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.api_port = free_port()  # kept across restarts, so api_url stays valid
        self.metrics_port = free_port()  # likewise for metrics_url

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_api_ready(self, timeout: float = 60.0) -> None:
        """Until GET /readyz answers 200 (the API starts with the operator)."""
        import httpx

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        testenv.wait_for(ready, timeout, f"the operator's API at {self.api_url}", describe=self.log_tail)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.namespace}.log"

    def start(self) -> None:
        self.starts += 1
        environ = operator_environ(
            self.env,
            self.namespace,
            FLOWPODS_API_HOST="127.0.0.1",
            FLOWPODS_API_PORT=str(self.api_port),
            OTEL_EXPORTER_PROMETHEUS_PORT=str(self.metrics_port),
        )
        environ.update(self.extra_env)
        log = self.log_path.open("ab")
        log.write(f"\n--- start #{self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [FLOWPODS, "operator"], env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or an OOM kill would be."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no operator log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def crds(testenv_info) -> None:
    """The flowpods CRDs, applied once per session with kubectl, and established."""
    apply_crds(testenv_info)


def apply_crds(testenv_info) -> None:
    """Apply the flowpods CRDs and wait until both are established (the bench's environment too)."""
    testenv.kubectl(testenv_info, "apply", "-f", str(REPO / "crds"))

    def established() -> bool:
        # `kubectl wait` fails at once ("status.conditions accessor error") on a CRD that has no
        # conditions yet, just after it was created: poll instead
        done = testenv.kubectl(
            testenv_info, "get", "crd/flows.flowpods.io", "crd/executions.flowpods.io", "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Established")].status}{" "}{end}', check=False,
        )  # fmt: skip
        return done.returncode == 0 and done.stdout.split() == ["True", "True"]

    testenv.wait_for(established, 60, "the flowpods CRDs to be established")


@pytest.fixture
def operator(testenv_info, crds, namespace, tmp_path) -> Iterator[OperatorProcess]:
    """A running operator for this test's namespace; its log is printed (pytest shows it when the test fails)."""
    process = OperatorProcess(testenv_info, namespace, tmp_path)
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ({process.log_path}) ---\n{process.log_tail(120)}")


@pytest.fixture(scope="session")
def parent_example(testenv_info, crds, core_v1, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """examples/parent.yaml (with hello-world.yaml) applied with kubectl and run twice (parent-1, parent-2) in a
    namespace of its own, by an operator serving the API with trace links to the env's Jaeger: one setup for
    every test about these runs (test_operator's subflow test, the run view). The runs are started, not waited
    for (`parent_runs` waits), so a test that needs only the operator goes on meanwhile."""
    from kubernetes import client

    namespace = f"parent-example-{uuid.uuid4().hex[:6]}"
    meta = client.V1ObjectMeta(name=namespace, labels={"flowpods.io/test": "true"})
    core_v1.create_namespace(client.V1Namespace(metadata=meta))
    process = OperatorProcess(testenv_info, namespace, tmp_path_factory.mktemp("parent-example"),
                              {"FLOWPODS_JAEGER_URL": testenv_info.jaeger_url})  # fmt: skip
    process.start()
    try:
        testenv.kubectl_apply(testenv_info, example("hello-world.yaml") + "\n---\n" + example("parent.yaml"),
                              namespace=namespace)  # fmt: skip
        for name in ("parent-1", "parent-2"):
            testenv.kubectl_apply(testenv_info, execution_yaml(name, "parent"), namespace=namespace)
        process.wait_api_ready()
        yield {"namespace": namespace, "api": process}
    finally:
        process.stop()
        print(f"--- operator log ({process.log_path}) ---\n{process.log_tail(60)}")
        with contextlib.suppress(Exception):  # the env may already be gone
            core_v1.delete_namespace(namespace)


@pytest.fixture(scope="session")
def parent_runs(parent_example, custom_objects) -> list[dict[str, Any]]:
    """parent-1 and parent-2 of `parent_example`, both ended SUCCESS."""
    process, namespace = parent_example["api"], parent_example["namespace"]
    done = [wait_for_state(custom_objects, namespace, n, timeout=120, operator=process)
            for n in ("parent-1", "parent-2")]  # fmt: skip
    assert [r["status"]["state"] for r in done] == ["SUCCESS", "SUCCESS"], [r["status"] for r in done]
    return done


def example(name: str) -> str:
    return (REPO / "examples" / name).read_text()


def execution_yaml(name: str, flow: str, inputs: dict[str, Any] | None = None, annotations: dict | None = None) -> str:
    document = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Execution",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"flowRef": {"name": flow}, "inputs": inputs or {}},
    }
    return yaml.safe_dump(document)


def get_execution(custom_objects, namespace: str, name: str) -> dict[str, Any]:
    return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "executions", name)


def wait_for_state(
    custom_objects, namespace: str, name: str, states: set[str] = TERMINAL, timeout: float = 60.0,
    operator: OperatorProcess | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Wait until the Execution's state is one of `states`; the timeout message shows its status."""

    def check() -> dict[str, Any] | None:
        body = get_execution(custom_objects, namespace, name)
        return body if (body.get("status") or {}).get("state") in states else None

    def describe() -> str:
        status = get_execution(custom_objects, namespace, name).get("status") or {}
        summary = {k: status.get(k) for k in ("state", "message", "error")}
        summary["taskRuns"] = [(t["taskId"], t["state"]) for t in status.get("taskRuns", [])]
        return f"{summary}\noperator log:\n{operator.log_tail() if operator else ''}"

    return testenv.wait_for(check, timeout, f"execution {namespace}/{name} to reach {sorted(states)}",
                            describe=describe)  # fmt: skip


def list_pods(core_v1, namespace: str, execution: str) -> list[Any]:
    return core_v1.list_namespaced_pod(namespace, label_selector=f"flowpods.io/execution={execution}").items


def assert_each_span_once_but_for_kills(trace: dict, expected: int, kills: int) -> None:
    """Every span derived is in the trace and no other, and one is there twice only as a kill may resend it
    (docs/architecture.md, "Why every span reaches the collector exactly once", (c)): the spans its operator
    had sent and seen confirmed but not yet stored as exported, at most once per kill. The rule of
    tests/e2e/test_faults.py's `assert_exact`, without its check that they are consecutive changes."""
    sent = Counter(s["spanID"] for s in trace["spans"])
    names = sorted(s["operationName"] for s in trace["spans"])
    assert len(sent) == expected, names
    assert max(sent.values()) <= 1 + kills, names


def spans_by_name(trace: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for span in trace["spans"]:
        found.setdefault(span["operationName"], []).append(span)
    return found


def wait_for_spans(
    jaeger: testenv.Jaeger, trace_id: str, expected: Mapping[str, int] | set[str], timeout: float = 60.0
) -> dict:
    """The trace once Jaeger has at least the expected number of spans of each name (a set: one each)."""
    want = dict.fromkeys(expected, 1) if isinstance(expected, set) else dict(expected)

    def check() -> dict | None:
        found = jaeger.trace(trace_id)
        have = {name: len(spans) for name, spans in spans_by_name(found).items()} if found else {}
        return found if all(have.get(name, 0) >= n for name, n in want.items()) else None

    def describe() -> str:
        found = jaeger.trace(trace_id)
        return f"spans: {sorted(s['operationName'] for s in found['spans']) if found else None}"

    return testenv.wait_for(check, timeout, f"spans {want} in trace {trace_id}", describe=describe)


def assert_parent_example_trace(jaeger: testenv.Jaeger, trace_id: str) -> dict[str, list[dict]]:
    """examples/parent.yaml's one trace, the same in a cluster and locally: the child's RUN under the
    parent's Subflow EXECUTOR span, each WORKER under its TASKRUN. Returns the spans by name."""
    trace = wait_for_spans(jaeger, trace_id, {"RUN parent": 1, "RUN hello-world": 1, "TASKRUN hello": 2,
                           "EXECUTOR - io.kestra.plugin.core.flow.Subflow": 1,
                           "WORKER - io.kestra.plugin.core.log.Log": 2})  # fmt: skip
    spans = spans_by_name(trace)
    (parent_run,) = spans["RUN parent"]
    (subflow,) = spans["EXECUTOR - io.kestra.plugin.core.flow.Subflow"]
    (child_run,) = spans["RUN hello-world"]
    assert parent_id(subflow) == parent_run["spanID"]
    assert parent_id(child_run) == subflow["spanID"]
    assert tags(child_run)["flowpods.trigger"] == "subflow"
    workers = spans["WORKER - io.kestra.plugin.core.log.Log"]
    assert len(workers) == 2 and {parent_id(w) for w in workers} == {s["spanID"] for s in spans["TASKRUN hello"]}
    assert testenv.root(trace).name == "RUN parent"
    return spans


def parent_id(span: dict) -> str | None:
    return next((r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"), None)


def tags(span: dict) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return testenv.wait_for(check, timeout, what)


def settle(seconds: float) -> None:
    """A pause for what must NOT happen (e.g. no second pod); never used to wait for a result."""
    time.sleep(seconds)
