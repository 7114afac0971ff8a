"""The API's routes on an in-process server, with the cluster and the token checks replaced by fakes.

What is checked here is the adapter itself: status codes, JSON errors, the request-size limit, spans.
The same routes run against the real API server in tests/e2e/test_api.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowpods.api.app import Api, Settings
from flowpods.api.auth import AuthError, User, check_access

KEY = "a-webhook-key-0123456789"
ADMIN, NOBODY = "admin-token", "nobody-token"
FLOW = {
    "apiVersion": "flowpods.io/v1alpha1",
    "kind": "Flow",
    "metadata": {"name": "greet", "namespace": "ns", "generation": 1},
    "spec": {
        "id": "greet",
        "namespace": "company",
        "inputs": [{"id": "who", "type": "STRING"}],
        "tasks": [{"id": "t", "type": "Log", "message": "hi"}],
        "triggers": [{"id": "hook", "type": "Webhook", "key": KEY}],
    },
}
HOOKED = copy.deepcopy(FLOW)
HOOKED["metadata"]["name"] = "hooked"
HOOKED["spec"]["inputs"] = [{"id": "who", "type": "STRING", "defaults": "web"}]


class FakeKube:
    api = None

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {
            ("flows", "ns", "greet"): FLOW,
            ("flows", "ns", "hooked"): HOOKED,
        }

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def create(self, plural: str, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        self.objects[(plural, meta["namespace"], meta["name"])] = copy.deepcopy(body)
        return True

    def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.patch(plural, namespace, name, {"metadata": {"annotations": annotations}})

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386), as the API server applies one."""

        def merge(target: dict[str, Any], change: dict[str, Any]) -> None:
            for key, value in change.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict):
                    merge(target.setdefault(key, {}), value)
                else:
                    target[key] = value

        merge(self.objects[(plural, namespace, name)], patch)
        return copy.deepcopy(self.objects[(plural, namespace, name)])

    def executions(self) -> list[dict[str, Any]]:
        return [body for (plural, _, _), body in self.objects.items() if plural == "executions"]


class FakeAuth:
    def authenticate(self, token: str) -> User:
        if token not in (ADMIN, NOBODY):
            raise AuthError(401, "the bearer token was not accepted")
        return User(username="admin" if token == ADMIN else "nobody")

    def authorize(self, user: User, namespace: str, verb: str, name: str | None = None) -> None:
        check_access({"status": {"allowed": user.username == "admin"}}, user, namespace, verb)  # type: ignore[arg-type]


def run(test: Callable[[TestClient, FakeKube, InMemorySpanExporter], Awaitable[None]], max_body: int = 1024) -> None:
    async def main() -> None:
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        kube = FakeKube()
        app = Api(Settings(max_body=max_body, jaeger_url="http://j"), kube, FakeAuth(),  # type: ignore[arg-type]
                  provider.get_tracer("test")).app()  # fmt: skip
        async with TestClient(TestServer(app)) as client:
            await test(client, kube, spans)

    asyncio.run(main())


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_start_creates_an_execution_whose_parent_is_the_server_span():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        caller = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        response = await client.post("/api/v1/executions/ns/greet", json={"inputs": {"who": "ada"}},
                                      headers={**auth(), "traceparent": caller, "User-Agent": "t/1"})  # fmt: skip
        assert response.status == 201, await response.text()
        data = await response.json()
        (execution,) = kube.executions()
        (span,) = spans.get_finished_spans()
        context = span.get_span_context()
        assert span.name == "POST /api/v1/executions/{namespace}/{flowId}"
        assert span.parent.span_id == int("2" * 16, 16) and context.trace_id == int("1" * 32, 16)
        parent = execution["metadata"]["annotations"]["flowpods.io/traceparent"]
        assert parent == f"00-{'1' * 32}-{context.span_id:016x}-01"
        assert data["traceId"] == "1" * 32 and data["links"]["jaeger"] == "http://j/trace/" + "1" * 32
        assert execution["spec"]["trigger"] == {"type": "api", "data": {}}
        attributes = dict(span.attributes)
        assert attributes["http.route"] == "/api/v1/executions/{namespace}/{flowId}"
        assert attributes["http.response.status_code"] == 201 and attributes["user_agent.original"] == "t/1"
        assert attributes["enduser.id"] == "admin" and "error.type" not in attributes

    run(test)


def test_errors_are_json_with_the_status_and_a_message():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        async def error(response: Any, status: int) -> str:
            assert response.status == status, await response.text()
            body = await response.json()
            assert body["error"]["status"] == status
            return body["error"]["message"]

        start = "/api/v1/executions/ns/greet"
        assert "missing bearer token" in await error(await client.post(start, json={}), 401)
        assert "may not create" in await error(await client.post(start, json={}, headers=auth(NOBODY)), 403)
        assert "input 'who' is required" in await error(await client.post(start, json={}, headers=auth()), 400)
        assert "not valid JSON" in await error(await client.post(start, data=b"{", headers=auth()), 400)
        assert "inputs" in await error(await client.post(start, json={"inputs": 3}, headers=auth()), 400)
        assert "x: Extra inputs" in await error(await client.post(start, json={"x": 1}, headers=auth()), 400)
        form = FormData()
        form.add_field("who", b"file content", filename="who.txt")
        assert "file upload" in await error(await client.post(start, data=form, headers=auth()), 400)
        assert "not found" in await error(await client.post("/api/v1/executions/ns/nope", headers=auth()), 404)
        assert "no route" in await error(await client.get("/nothing"), 404)
        assert "not allowed" in await error(await client.put(start), 405)
        assert kube.executions() == []
        statuses = {s.attributes["http.response.status_code"]: s.attributes.get("error.type")
                    for s in spans.get_finished_spans()}  # fmt: skip
        assert all(kind == str(status) for status, kind in statuses.items())

    run(test)


def test_request_bodies_over_the_limit_are_413_with_or_without_a_length():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        big = b"x" * 2000
        declared = await client.post(f"/api/v1/executions/webhook/ns/hooked/{KEY}", data=big)
        assert declared.status == 413 and "limit is 1024 bytes" in (await declared.json())["error"]["message"]

        async def chunks():
            for _ in range(4):
                yield b"x" * 600

        chunked = await client.post(f"/api/v1/executions/webhook/ns/hooked/{KEY}", data=chunks())
        assert chunked.status == 413
        assert kube.executions() == []

    run(test)


def test_webhooks_need_the_key_and_never_show_it():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        wrong = await client.post(f"/api/v1/executions/webhook/ns/hooked/{KEY[:-1]}", data=b"{}")
        assert wrong.status == 404
        unknown = await client.get(f"/api/v1/executions/webhook/ns/nope/{KEY}")
        assert unknown.status == 404
        for response in (wrong, unknown):
            assert (await response.json())["error"]["message"].startswith("no webhook here")
        too_deep = await client.get(f"/api/v1/executions/webhook/ns/hooked/{KEY}/more")
        assert too_deep.status == 404 and KEY not in await too_deep.text()
        assert kube.executions() == []

        ok = await client.post(f"/api/v1/executions/webhook/ns/hooked/{KEY}?a=1", json={"n": 1},
                               headers={"Cookie": "secret", "X-Y": "z"})  # fmt: skip
        assert ok.status == 201, await ok.text()
        (execution,) = kube.executions()
        data = execution["spec"]["trigger"]["data"]
        assert execution["spec"]["trigger"]["type"] == "webhook"
        assert data["body"] == {"n": 1} and data["parameters"] == {"a": ["1"]} and data["headers"]["x-y"] == ["z"]
        assert "cookie" not in data["headers"]
        for span in spans.get_finished_spans():
            assert KEY not in span.name and all(KEY not in str(v) for v in span.attributes.values())

    run(test)


def test_kill_annotates_a_running_execution_and_refuses_a_finished_one():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        created = await (await client.post("/api/v1/executions/ns/greet", data={"who": "x"}, headers=auth())).json()
        name = created["name"]
        killed = await client.delete(created["links"]["kill"], headers=auth())
        assert killed.status == 202
        assert kube.objects[("executions", "ns", name)]["metadata"]["annotations"]["flowpods.io/kill"] == "true"
        kube.objects[("executions", "ns", name)]["status"] = {"state": "KILLED"}
        again = await client.delete(created["links"]["kill"], headers=auth())
        assert again.status == 409
        read = await client.get(created["links"]["self"], headers=auth())
        assert (await read.json())["state"] == "KILLED"
        follow = await client.get(created["links"]["follow"], headers=auth())
        text = await follow.text()
        assert follow.headers["Content-Type"].startswith("text/event-stream")
        assert text.count("event: status") == 1 and '"state": "KILLED"' in text

    run(test)


def test_probes_are_not_traced():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/api/v1/openapi.json")).status == 200
        assert [s.name for s in spans.get_finished_spans()] == ["GET /api/v1/openapi.json"]

    run(test)


def _started(kube: FakeKube, name: str, flow: dict[str, Any], state: str, task_runs: list[dict[str, Any]]) -> str:
    """An execution the operator started: its flow snapshot and status, as the operator stores them."""
    kube.objects[("executions", "ns", name)] = {
        "metadata": {"name": name, "namespace": "ns", "labels": {}, "annotations": {"flowpods.io/kill": "true"}},
        "spec": {"flowRef": {"name": "f"}, "labels": {"system.correlationId": name, "team": "a"}},
        "status": {"state": state, "flow": flow, "history": [{"state": state, "at": "2026-01-01T00:00:00Z"}],
                   "taskRuns": task_runs},
    }  # fmt: skip
    return f"/api/v1/executions/ns/{name}"


PAUSING = {"id": "f", "namespace": "n", "tasks": [{"id": "wait", "type": "Pause", "onResume": [
    {"id": "approved", "type": "BOOLEAN"}]}]}  # fmt: skip
PAUSED_RUN = [{"id": "tr1", "taskId": "wait", "state": "PAUSED", "history": []}]


def test_resume_checks_the_state_and_the_onresume_inputs_then_annotates():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        base = _started(kube, "p", PAUSING, "PAUSED", PAUSED_RUN)
        bad = await client.post(base + "/resume", json={"inputs": {"approved": "maybe"}}, headers=auth())
        assert bad.status == 400 and "input 'approved'" in (await bad.json())["error"]["message"]
        assert (await client.post(base + "/resume", json={"x": 1}, headers=auth())).status == 400
        assert (await client.post(base + "/resume", headers=auth(NOBODY))).status == 403
        ok = await client.post(base + "/resume", data={"approved": "true"}, headers=auth())  # a form, as Kestra
        assert ok.status == 202, await ok.text()
        value = kube.objects[("executions", "ns", "p")]["metadata"]["annotations"]["flowpods.io/resume"]
        assert json.loads(value)["inputs"] == {"approved": "true"}
        running = _started(kube, "r", PAUSING, "RUNNING", [])
        refused = await client.post(running + "/resume", json={}, headers=auth())
        assert refused.status == 409 and "RUNNING, not PAUSED" in (await refused.json())["error"]["message"]
        assert "flowpods.io/resume" not in kube.objects[("executions", "ns", "r")]["metadata"]["annotations"]

    run(test)


def test_restart_annotates_a_failed_execution_and_drops_its_kill_request():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        flow = {"id": "f", "namespace": "n", "tasks": [{"id": "t", "type": "Log", "message": "x"}]}
        failed = _started(kube, "x", flow, "KILLED", [{"id": "tr", "taskId": "t", "state": "KILLED"}])
        ok = await client.post(failed + "/restart", headers=auth())
        assert ok.status == 202, await ok.text()
        annotations = kube.objects[("executions", "ns", "x")]["metadata"]["annotations"]
        assert "flowpods.io/kill" not in annotations and annotations["flowpods.io/restart"]
        done = _started(kube, "s", flow, "SUCCESS", [{"id": "tr", "taskId": "t", "state": "SUCCESS"}])
        refused = await client.post(done + "/restart", headers=auth())
        assert refused.status == 409 and "only an execution that ended" in (await refused.json())["error"]["message"]
        assert [s.name for s in spans.get_finished_spans()][-1] == "POST /api/v1/executions/{namespace}/{name}/restart"

    run(test)


def test_labels_replace_the_execution_labels_and_are_mirrored_where_kubernetes_allows():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        base = _started(kube, "l", PAUSING, "RUNNING", [])
        labels = [{"key": "env", "value": "prod"}, {"key": "note", "value": "two words"}, {"key": "a b", "value": "c"}]
        response = await client.post(base + "/labels", json=labels, headers=auth())
        assert response.status == 200, await response.text()
        assert (await response.json())["labels"] == {"system.correlationId": "l", "env": "prod", "note": "two words",
                                                     "a b": "c"}  # fmt: skip
        meta = kube.objects[("executions", "ns", "l")]["metadata"]
        assert meta["labels"] == {"label.flowpods.io/env": "prod", "label.flowpods.io/system.correlationId": "l"}
        assert meta["annotations"]["label.flowpods.io/note"] == "two words"
        again = await client.post(base + "/labels", json=[{"key": "env", "value": "dev"}], headers=auth())
        assert (await again.json())["labels"] == {"system.correlationId": "l", "env": "dev"}
        meta = kube.objects[("executions", "ns", "l")]["metadata"]
        assert meta["labels"]["label.flowpods.io/env"] == "dev" and "label.flowpods.io/note" not in meta["annotations"]
        assert (await client.post(base + "/labels", json={"env": "x"}, headers=auth())).status == 400
        system = [{"key": "system.x", "value": "1"}]
        assert (await client.post(base + "/labels", json=system, headers=auth())).status == 400

    run(test)


def test_replay_creates_a_new_execution_marked_with_the_original():
    async def test(client: TestClient, kube: FakeKube, spans: InMemorySpanExporter) -> None:
        flow = {"id": "greet", "namespace": "company", "tasks": [{"id": "t", "type": "Log", "message": "x"}]}
        base = _started(kube, "orig", flow, "FAILED", [{"id": "tr", "taskId": "t", "state": "FAILED"}])
        kube.objects[("executions", "ns", "orig")]["spec"]["flowRef"] = {"name": "greet"}
        kube.objects[("executions", "ns", "orig")]["status"]["inputs"] = {"who": "ada"}
        missing = await client.post(base + "/replay?taskRunId=nope", headers=auth())
        assert missing.status == 400 and "no task run 'nope'" in (await missing.json())["error"]["message"]
        response = await client.post(base + "/replay?taskRunId=tr", headers=auth())
        assert response.status == 201, await response.text()
        (replay,) = kube.executions()[1:]
        assert replay["metadata"]["annotations"]["flowpods.io/replay-of"] == "orig"
        assert replay["metadata"]["annotations"]["flowpods.io/replay-from"] == "tr"
        assert replay["spec"]["inputs"] == {"who": "ada"} and replay["spec"]["flowRef"] == {"name": "greet"}
        running = _started(kube, "run", flow, "RUNNING", [])
        kube.objects[("executions", "ns", "run")]["spec"]["flowRef"] = {"name": "greet"}
        assert (await client.post(running + "/replay", headers=auth())).status == 409

    run(test)
