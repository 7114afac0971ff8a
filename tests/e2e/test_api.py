"""The HTTP API and webhooks on the real control plane: tokens checked by the API server, traces in Jaeger.

The story of the Kestra tracing article: an upstream service with its own tracer calls a flow's webhook
with `traceparent`; the flow calls a downstream service; Jaeger holds one trace across all three.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests import testenv
from tests.e2e.harness import FLOWPODS, GROUP, VERSION, OperatorProcess, parent_id, spans_by_name, tags, wait_for_spans

WEBHOOK_KEY = "k3y-" + "s3cr3t-w3bh00k-0123456789"
START_ROUTE = "POST /api/v1/executions/{namespace}/{flowId}"
WEBHOOK_ROUTE = "POST /api/v1/executions/webhook/{namespace}/{flowId}/{key}"


def flow_yaml(name: str, spec: str) -> str:
    return f"apiVersion: {GROUP}/{VERSION}\nkind: Flow\nmetadata:\n  name: {name}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )


GREET = flow_yaml("greet", """
    id: greet
    namespace: company.team
    inputs:
      - id: who
        type: STRING
    tasks:
      - id: hello
        type: io.kestra.plugin.core.log.Log
        message: "Hello {{ inputs.who }}"
      - id: shout
        type: io.kestra.plugin.core.debug.Return
        format: "{{ inputs.who | upper }}"
""")  # fmt: skip


@pytest.fixture
def api(testenv_info, crds, namespace, tmp_path) -> Iterator[OperatorProcess]:
    """An operator serving the API on 127.0.0.1, with trace links to the env's Jaeger."""
    process = OperatorProcess(testenv_info, namespace, tmp_path, {"FLOWPODS_JAEGER_URL": testenv_info.jaeger_url})
    process.start()
    try:
        process.wait_api_ready()
        yield process
    finally:
        process.stop()
        print(f"--- operator log ({process.log_path}) ---\n{process.log_tail(120)}")


def tracer_for(service: str, env: testenv.EnvInfo) -> tuple[TracerProvider, trace_api.Tracer]:
    """A test service's own tracer, exporting synchronously to the env's Jaeger over OTLP gRPC."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    exporter = OTLPSpanExporter(endpoint=env.otlp_grpc_endpoint, insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer(service)


class Downstream:
    """A test HTTP service that records the traceparent it receives and its own SERVER span; it listens where
    the environment's pods reach it (`host`: the pods' bridge on the real node)."""

    def __init__(self, tracer: trace_api.Tracer, host: str):
        self.received: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.received.append({**headers, "body": body})
                context = TraceContextTextMapPropagator().extract(headers)
                with tracer.start_as_current_span("POST /orders", context=context, kind=SpanKind.SERVER,
                                                  attributes={"http.request.method": "POST"}):  # fmt: skip
                    payload = b'{"accepted": true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def traceparent_for(trace_id: str, span_id: str = "00f067aa0ba902b7") -> str:
    return f"00-{trace_id}-{span_id}-01"


def assert_no_secret(secrets: list[str], *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"a secret leaked: ...{text[max(text.find(secret) - 200, 0) :][:400]}..."


def list_executions(custom_objects, namespace: str) -> list[dict]:
    return custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "executions")["items"]


def follow(client: httpx.Client, url: str, token: str) -> list[tuple[str, dict]]:
    """Read a follow stream to its end: (event, data) pairs."""
    from flowpods.cli.start import sse_events

    events = []
    headers = {"Authorization": f"Bearer {token}"}
    with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(60.0)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in sse_events(response.iter_lines()):
            events.append((event, json.loads(data)))
    return events


# --- the stories -----------------------------------------------------------------------------------------


def test_upstream_webhook_flow_downstream_is_one_trace(api, apply_yaml, testenv_info, jaeger, custom_objects,
                                                        namespace):  # fmt: skip
    up_provider, upstream = tracer_for("upstream", testenv_info)
    down_provider, downstream_tracer = tracer_for("downstream", testenv_info)
    downstream = Downstream(downstream_tracer, testenv_info.pod_host)
    try:
        apply_yaml(flow_yaml("notify", """
            id: notify
            namespace: company.shop
            tasks:
              - id: call
                type: io.kestra.plugin.core.http.Request
                uri: DOWNSTREAM/orders
                method: POST
                contentType: application/json
                body: >-
                  {"order": {{ trigger.body.order }}, "from": "{{ trigger.parameters.source[0] }}",
                  "h": "{{ trigger.headers['x-shop'][0] }}"}
            triggers:
              - id: hook
                type: io.kestra.plugin.core.trigger.Webhook
                key: KEY
        """.replace("DOWNSTREAM", downstream.url).replace("KEY", WEBHOOK_KEY)))  # fmt: skip
        url = f"{api.api_url}/api/v1/executions/webhook/{namespace}/notify/{WEBHOOK_KEY}?source=upstream"
        with upstream.start_as_current_span("upstream: order placed", kind=SpanKind.CLIENT) as span:
            headers = {"X-Shop": "north", "Authorization": "Bearer not-for-the-flow", "baggage": "tenant=acme"}
            TraceContextTextMapPropagator().inject(headers)
            response = httpx.post(url, json={"order": 42}, headers=headers, timeout=60)
            upstream_ids = span.get_span_context()
        assert response.status_code == 201, response.text
        created = response.json()
        trace_id = f"{upstream_ids.trace_id:032x}"
        assert created["traceId"] == trace_id, "the execution continues the caller's trace"
        assert created["state"] == "CREATED" and created["trigger"] == "webhook" and created["flowId"] == "notify"
        assert created["links"]["jaeger"] == f"{testenv_info.jaeger_url}/trace/{trace_id}"

        body = testenv.wait_for(
            lambda: (b := custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "executions",
                                                                      created["name"])).get("status", {}).get("state")
            in {"SUCCESS", "FAILED", "KILLED"} and b,
            90, f"execution {created['name']} to end",
        )  # fmt: skip
        assert body["status"]["state"] == "SUCCESS", body["status"].get("message")
        data = body["spec"]["trigger"]["data"]
        assert data["body"] == {"order": 42} and data["parameters"] == {"source": ["upstream"]}
        assert data["headers"]["x-shop"] == ["north"] and "authorization" not in data["headers"]

        (received,) = downstream.received
        assert json.loads(received["body"]) == {"order": 42, "from": "upstream", "h": "north"}
        _, sent_trace, sent_span, _ = received["traceparent"].split("-")
        assert sent_trace == trace_id
        assert received["baggage"] == "tenant=acme", "the caller's baggage reached the downstream service"

        run, api_span = "RUN notify", WEBHOOK_ROUTE
        worker, client = "WORKER - io.kestra.plugin.core.http.Request", "POST"
        names = {"upstream: order placed", api_span, run, "TASKRUN call", worker, client, "POST /orders"}
        trace = wait_for_spans(jaeger, trace_id, names)
        spans = spans_by_name(trace)
        services = {p: v["serviceName"] for p, v in trace["processes"].items()}
        (up,) = spans["upstream: order placed"]
        (server,) = spans[api_span]
        (run_span,) = spans[run]
        (taskrun,) = spans["TASKRUN call"]
        (worker_span,) = spans[worker]
        (client_span,) = spans[client]
        (down,) = spans["POST /orders"]
        chain = [up, server, run_span, taskrun, worker_span, client_span, down]
        assert [services[s["processID"]] for s in chain] == [
            "upstream", "flowpods", "flowpods", "flowpods", "flowpods-worker", "flowpods-worker", "downstream",
        ]  # fmt: skip
        assert parent_id(up) is None
        for parent, child in itertools.pairwise(chain):
            assert parent_id(child) == parent["spanID"], f"{child['operationName']} under {parent['operationName']}"
        assert client_span["spanID"] == sent_span, "downstream received the HTTP client span's context"
        assert testenv.root(trace).name == "upstream: order placed"

        server_tags = tags(server)
        assert server_tags["http.route"] == "/api/v1/executions/webhook/{namespace}/{flowId}/{key}"
        assert server_tags["http.request.method"] == "POST"
        assert server_tags["http.response.status_code"] == 201
        assert server_tags["span.kind"] == "server"
        assert server_tags["url.scheme"] == "http" and server_tags["server.port"] == api.api_port
        assert server_tags["user_agent.original"].startswith("python-httpx")
        assert tags(run_span)["flowpods.trigger"] == "webhook"
        assert_no_secret([WEBHOOK_KEY, "not-for-the-flow"], json.dumps(trace), api.log_path.read_text())
    finally:
        downstream.close()
        up_provider.shutdown()
        down_provider.shutdown()


def test_start_with_admin_token_and_follow_to_success(api, apply_yaml, testenv_info, jaeger, namespace):
    apply_yaml(GREET)
    token = testenv_info.admin_token
    with httpx.Client(base_url=api.api_url, timeout=60) as client:
        response = client.post(
            f"/api/v1/executions/{namespace}/greet",
            json={"inputs": {"who": "ada"}, "labels": {"team": "data"}},
            headers={"Authorization": f"Bearer {token}", "traceparent": "00-not-a-valid-traceparent-01"},
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["name"].startswith("greet-") and len(created["name"]) == len("greet-") + 8
        assert response.headers["Location"] == created["links"]["self"]
        assert created["state"] == "CREATED" and created["labels"] == {"team": "data"}
        trace_id = created["traceId"]
        assert trace_id and len(trace_id) == 32, "a malformed traceparent starts a new trace"

        events = follow(client, created["links"]["follow"], token)
        states = [data["state"] for event, data in events if event == "status"]
        assert states[-1] == "SUCCESS", events[-1]
        assert "RUNNING" in states or len(events[-1][1]["history"]) >= 3
        final = events[-1][1]
        assert [t["taskId"] for t in final["taskRuns"]] == ["hello", "shout"]
        assert all(t["state"] == "SUCCESS" for t in final["taskRuns"])
        assert final["outputs"] == {} or isinstance(final["outputs"], dict)

        read = client.get(created["links"]["self"], headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 200 and read.json()["state"] == "SUCCESS"
        assert read.json()["traceId"] == trace_id and read.json()["inputs"] == {"who": "ada"}

    trace = wait_for_spans(jaeger, trace_id, {START_ROUTE, "RUN greet", "TASKRUN hello", "TASKRUN shout"})
    spans = spans_by_name(trace)
    (server,) = spans[START_ROUTE]
    (run,) = spans["RUN greet"]
    assert parent_id(server) is None and parent_id(run) == server["spanID"]
    assert tags(server)["http.route"] == "/api/v1/executions/{namespace}/{flowId}"
    assert tags(server)["enduser.id"] == testenv.ADMIN_USER
    assert tags(run)["flowpods.trigger"] == "api"
    assert_no_secret([token], json.dumps(trace), api.log_path.read_text())


def test_refusals_are_json_errors_and_create_nothing(api, apply_yaml, testenv_info, custom_objects, jaeger,
                                                     namespace):  # fmt: skip
    apply_yaml(GREET)
    apply_yaml(flow_yaml("hooked", f"""
        id: hooked
        namespace: company.team
        tasks:
          - id: hello
            type: Log
            message: hi
        triggers:
          - id: hook
            type: Webhook
            key: {WEBHOOK_KEY}
    """))  # fmt: skip
    admin = {"Authorization": f"Bearer {testenv_info.admin_token}"}
    user = {"Authorization": f"Bearer {testenv_info.user_token}"}
    start = f"/api/v1/executions/{namespace}/greet"
    trace_ids = []

    def call(method: str, path: str, n: int, **kwargs: Any) -> httpx.Response:
        trace_id = f"{n:032x}".replace("0", "a", 8)
        trace_ids.append(trace_id)
        headers = {**kwargs.pop("headers", {}), "traceparent": traceparent_for(trace_id)}
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = response.json()["error"]
        assert error["status"] == response.status_code and error["message"]
        return response

    with httpx.Client(base_url=api.api_url, timeout=60) as client:
        no_token = call("POST", start, 1, json={"inputs": {"who": "x"}})
        assert no_token.status_code == 401 and "bearer token" in no_token.json()["error"]["message"]
        assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
        bad_token = call("POST", start, 2, json={"inputs": {"who": "x"}}, headers={"Authorization": "Bearer nope"})
        assert bad_token.status_code == 401

        denied = call("POST", start, 3, json={"inputs": {"who": "x"}}, headers=user)
        assert denied.status_code == 403
        assert "may not create executions.flowpods.io" in denied.json()["error"]["message"]
        assert testenv.TEST_USER in denied.json()["error"]["message"]

        missing = call("POST", start, 4, json={"inputs": {}}, headers=admin)
        assert missing.status_code == 400 and "input 'who' is required" in missing.json()["error"]["message"]
        wrong_type = call("POST", start, 5, json={"inputs": {"who": "x"}, "labels": {"n": 1}}, headers=admin)
        assert wrong_type.status_code == 400 and "labels.n" in wrong_type.json()["error"]["message"]
        unknown = call("POST", f"/api/v1/executions/{namespace}/nope", 6, json={}, headers=admin)
        assert unknown.status_code == 404 and "flow 'nope' not found" in unknown.json()["error"]["message"]

        too_big = call("POST", start, 7, content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                       headers={**admin, "Content-Type": "application/json"})  # fmt: skip
        assert too_big.status_code == 413 and "limit is 1048576 bytes" in too_big.json()["error"]["message"]

        hook = f"/api/v1/executions/webhook/{namespace}/hooked"
        wrong_key = call("POST", f"{hook}/{WEBHOOK_KEY[:-1]}x", 8, json={"a": 1})
        assert wrong_key.status_code == 404
        unknown_flow = call("POST", f"/api/v1/executions/webhook/{namespace}/nope/{WEBHOOK_KEY}", 9)
        assert unknown_flow.status_code == 404
        assert wrong_key.json()["error"]["message"].startswith("no webhook here")

        read_denied = call("GET", f"/api/v1/executions/{namespace}/whatever", 10, headers=user)
        assert read_denied.status_code == 403 and "may not get" in read_denied.json()["error"]["message"]
        kill_missing = call("DELETE", f"/api/v1/executions/{namespace}/whatever/kill", 11, headers=admin)
        assert kill_missing.status_code == 404

    assert list_executions(custom_objects, namespace) == [], "no refused request created an Execution"

    for n, trace_id in enumerate(trace_ids, start=1):
        trace = jaeger.wait_for_trace(trace_id, timeout=60)
        (server,) = trace["spans"]
        assert parent_id(server) == "00f067aa0ba902b7", f"request {n} continued the caller's trace"
        status = tags(server)["http.response.status_code"]
        assert tags(server)["error.type"] == str(status)
        assert_no_secret([WEBHOOK_KEY, testenv_info.admin_token, testenv_info.user_token], json.dumps(trace))
    assert_no_secret([WEBHOOK_KEY, testenv_info.admin_token, testenv_info.user_token], api.log_path.read_text())


def test_form_inputs_wait_and_kill(api, apply_yaml, testenv_info, namespace):
    apply_yaml(GREET)
    apply_yaml(flow_yaml("slow", """
        id: slow
        namespace: company.team
        tasks:
          - id: nap
            type: io.kestra.plugin.core.flow.Sleep
            duration: PT60S
    """))  # fmt: skip
    admin = {"Authorization": f"Bearer {testenv_info.admin_token}"}
    with httpx.Client(base_url=api.api_url, timeout=90, headers=admin) as client:
        waited = client.post(f"/api/v1/executions/{namespace}/greet?wait=true&timeout=60", data={"who": "grace"})
        assert waited.status_code == 201, waited.text
        assert waited.json()["state"] == "SUCCESS" and waited.json()["inputs"] == {"who": "grace"}
        multipart = client.post(f"/api/v1/executions/{namespace}/greet", files={"who": (None, "alan")})
        assert multipart.status_code == 201, multipart.text
        bad_wait = client.post(f"/api/v1/executions/{namespace}/greet?wait=true&timeout=301", json={})
        assert bad_wait.status_code == 400 and "timeout" in bad_wait.json()["error"]["message"]

        slow = client.post(f"/api/v1/executions/{namespace}/slow").json()
        testenv.wait_for(lambda: client.get(slow["links"]["self"]).json()["state"] == "RUNNING", 60,
                         "the slow execution to run")  # fmt: skip
        killed = client.delete(slow["links"]["kill"])
        assert killed.status_code == 202, killed.text
        events = follow(client, slow["links"]["follow"], testenv_info.admin_token)
        assert events[-1][1]["state"] == "KILLED"
        again = client.delete(slow["links"]["kill"])
        assert again.status_code == 409 and "already ended KILLED" in again.json()["error"]["message"]

        openapi = client.get("/api/v1/openapi.json").json()
        assert openapi["openapi"].startswith("3.1") and "/api/v1/executions/{namespace}/{flowId}" in openapi["paths"]


def test_cli_start_follows_through_the_api(api, apply_yaml, testenv_info, namespace):
    apply_yaml(GREET)
    env = {"PATH": f"{FLOWPODS.rsplit('/', 1)[0]}:/usr/bin:/bin", "FLOWPODS_JAEGER_URL": testenv_info.jaeger_url,
           "FLOWPODS_TOKEN": testenv_info.admin_token}  # fmt: skip
    result = subprocess.run(
        [FLOWPODS, "start", namespace, "greet", "--input", "who=ada", "--follow", "--server", api.api_url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"started {namespace}/greet-" in out
    assert "task hello SUCCESS" in out and "task shout SUCCESS" in out
    assert "ended SUCCESS" in out
    trace_id = out.split("trace id: ")[1].split()[0]
    assert len(trace_id) == 32 and f"{testenv_info.jaeger_url}/trace/{trace_id}" in out
    assert testenv_info.admin_token not in out + result.stderr

    refused = subprocess.run(
        [FLOWPODS, "start", namespace, "greet", "--server", api.api_url], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "input 'who' is required" in refused.stderr
