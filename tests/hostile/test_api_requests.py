"""Bad API requests: every one a JSON error with a clear message and the right status, never a 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from tests.adapters.api.test_api_app import ADMIN, KEY, FakeKube, auth, run

START = "/api/v1/executions/ns/greet"
HOOK = f"/api/v1/executions/webhook/ns/hooked/{KEY}"
JSON = {"Content-Type": "application/json"}


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# (name, method, path, headers, body, status, words of the message)
BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], Any, int, str]] = [
    (
        "start-body-1000-deep",
        "POST",
        START,
        {**auth(), **JSON},
        '{"inputs": {"who": ' + deep(1000) + "}}",
        400,
        "the body is nested more than 128 levels deep",
    ),
    (
        "start-body-950-deep-labels",
        "POST",
        START,
        {**auth(), **JSON},
        '{"labels": ' + deep(950) + "}",
        400,
        "nested more than 128 levels deep",
    ),
    (
        "start-body-200-deep",
        "POST",
        START,
        {**auth(), **JSON},
        '{"inputs": {"who": ' + deep(200) + "}}",
        400,
        "nested more than 128",
    ),
    (
        "start-body-brackets-in-strings-are-not-depth",
        "POST",
        START,
        {**auth(), **JSON},
        '{"inputs": {"who": "' + "[" * 1000 + '"}, "x": 1}',
        400,
        "x: Extra inputs are not permitted",
    ),
    ("start-body-not-json", "POST", START, {**auth(), **JSON}, "{inputs: who}", 400, "the body is not valid JSON"),
    ("start-body-array", "POST", START, {**auth(), **JSON}, "[1, 2]", 400, "invalid request body"),
    ("start-inputs-not-a-mapping", "POST", START, {**auth(), **JSON}, '{"inputs": [1]}', 400, "inputs"),
    ("start-labels-not-strings", "POST", START, {**auth(), **JSON}, '{"labels": {"a": {"b": 1}}}', 400, "labels.a"),
    ("start-unknown-field", "POST", START, {**auth(), **JSON}, '{"input": {}}', 400, "input: Extra inputs"),
    (
        "start-undeclared-input",
        "POST",
        START,
        {**auth(), **JSON},
        '{"inputs": {"who": "a", "x": 1}}',
        400,
        "input 'x' is not declared",
    ),
    ("start-missing-input", "POST", START, {**auth(), **JSON}, "{}", 400, "input 'who' is required"),
    (
        "start-body-invalid-utf8",
        "POST",
        START,
        {**auth(), **JSON},
        b'{"inputs": {"who": "\xff"}}',
        400,
        "not valid JSON",
    ),
    ("start-bad-wait", "POST", START + "?wait=maybe", auth(), "", 400, "'wait' must be true or false"),
    ("start-negative-timeout", "POST", START + "?wait=true&timeout=-1", auth(), "", 400, "'timeout' must be between"),
    ("start-nan-timeout", "POST", START + "?wait=true&timeout=nan", auth(), "", 400, "'timeout' must be between"),
    ("start-no-token", "POST", START, JSON, "{}", 401, "token"),
    ("start-wrong-token", "POST", START, {"Authorization": "Bearer nope", **JSON}, "{}", 401, "not accepted"),
    ("start-basic-auth", "POST", START, {"Authorization": "Basic YTpi", **JSON}, "{}", 401, "Bearer"),
    (
        "start-body-too-large",
        "POST",
        START,
        {**auth(), **JSON},
        '{"inputs": {"who": "' + "x" * 70_000 + '"}}',
        413,
        "request body too large",
    ),
    (
        "start-unknown-flow",
        "POST",
        "/api/v1/executions/ns/nope",
        {**auth(), **JSON},
        "{}",
        404,
        "flow 'nope' not found",
    ),
    (
        "webhook-body-1000-deep",
        "POST",
        HOOK,
        JSON,
        deep(1000),
        400,
        "the webhook body is nested more than 128 levels deep",
    ),
    ("webhook-body-600-deep", "POST", HOOK, JSON, '{"a": ' + deep(600) + "}", 400, "webhook body is nested"),
    (
        "webhook-body-950-deep-objects",
        "POST",
        HOOK,
        JSON,
        '{"a":' * 950 + "1" + "}" * 950,
        400,
        "webhook body is nested",
    ),
    (
        "webhook-wrong-key",
        "POST",
        "/api/v1/executions/webhook/ns/hooked/not-the-key-at-all",
        JSON,
        "{}",
        404,
        "no webhook here",
    ),
    ("webhook-unknown-flow", "POST", f"/api/v1/executions/webhook/ns/nope/{KEY}", JSON, "{}", 404, "no webhook here"),
    ("get-unknown-execution", "GET", "/api/v1/executions/ns/nope", auth(), None, 404, "execution 'nope' not found"),
    ("kill-unknown-execution", "DELETE", "/api/v1/executions/ns/nope/kill", auth(), None, 404, "not found"),
    ("no-route", "GET", "/api/v2/anything", {}, None, 404, "no route for GET /api/v2/anything"),
    ("method-not-allowed", "PUT", START, auth(), "{}", 405, "method PUT is not allowed here"),
    ("path-traversal", "GET", "/api/v1/executions/ns/..%2F..%2Fsecrets", auth(), None, 404, "not found"),
]


@pytest.mark.parametrize(("name", "method", "path", "headers", "body", "status", "expect"), BAD_REQUESTS,
                         ids=[r[0] for r in BAD_REQUESTS])  # fmt: skip
def test_each_bad_request_gets_a_json_error_naming_the_problem(
    name: str, method: str, path: str, headers: dict[str, str], body: Any, status: int, expect: str
) -> None:
    async def test(client: TestClient, kube: FakeKube, spans: Any) -> None:
        response = await client.request(method, path, headers=headers, data=body)
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        data = await response.json()
        assert data["error"]["status"] == status and expect in data["error"]["message"]
        assert "Traceback" not in data["error"]["message"]
        assert kube.executions() == []  # nothing was created

    run(test, max_body=64 * 1024)


def test_a_file_upload_as_an_input_is_refused() -> None:
    async def test(client: TestClient, kube: FakeKube, spans: Any) -> None:
        form = FormData()
        form.add_field("who", b"bytes", filename="x.bin")
        response = await client.post(START, data=form, headers=auth())
        assert response.status == 400
        assert "is a file upload" in (await response.json())["error"]["message"]

    run(test, max_body=64 * 1024)


def test_a_body_nested_to_the_limit_is_accepted() -> None:
    async def test(client: TestClient, kube: FakeKube, spans: Any) -> None:
        response = await client.post(HOOK, data=deep(120), headers=JSON)
        assert response.status == 201, await response.text()
        (execution,) = kube.executions()
        body, levels = execution["spec"]["trigger"]["data"]["body"], 0
        while body:
            body, levels = body[0], levels + 1
        assert levels == 119  # the innermost list is empty

    run(test, max_body=64 * 1024)


def test_a_namespace_from_the_path_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def test(client: TestClient, kube: FakeKube, spans: Any) -> None:
        path = "/api/v1/executions/ns%0A2026-01-01 INFO flowpods.api.app: forged/greet"
        response = await client.post(path, headers={"Authorization": f"Bearer {ADMIN}"}, json={})
        assert response.status == 404

    with caplog.at_level(logging.INFO, logger="flowpods.api.app"):
        run(test, max_body=64 * 1024)
    lines = [record.getMessage() for record in caplog.records if record.name == "flowpods.api.app"]
    assert any("ns=ns\\x0a2026-01-01 INFO" in line for line in lines), lines
    assert all("\n" not in line for line in lines)
