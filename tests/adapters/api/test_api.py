"""The API's pure parts: Execution bodies, webhook data, summaries, auth reviews, query parsing, OpenAPI."""

from __future__ import annotations

import re

import pytest
from multidict import CIMultiDict, MultiDict

from flowpods.api import app as api
from flowpods.api import auth as api_auth
from flowpods.api.app import ApiError
from flowpods.api.auth import AuthError, User
from flowpods.api.openapi import openapi_document
from flowpods.cli import start as cli_start
from flowpods.core.model import parse_flow

KEY = "0123456789abcdef-key"


def flow_with_hooks(*hooks: dict) -> object:
    return parse_flow(
        {"id": "f", "namespace": "n", "tasks": [{"id": "t", "type": "Log", "message": "m"}], "triggers": list(hooks)}
    )


def test_new_execution_carries_the_trigger_the_inputs_and_the_api_span_as_parent():
    body = api.new_execution(
        "ns", "My_Flow", inputs={"a": 1}, labels={"team": "x"}, trigger="api", trigger_data={},
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", tracestate="k=v",
    )  # fmt: skip
    meta = body["metadata"]
    assert meta["name"].startswith("my-flow-") and len(meta["name"]) == len("my-flow-") + 8
    assert re.fullmatch(r"[a-z0-9]{8}", meta["name"][-8:])
    assert meta["annotations"] == {"flowpods.io/traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                                   "flowpods.io/tracestate": "k=v"}  # fmt: skip
    assert meta["labels"]["flowpods.io/flow"] == "My_Flow"
    assert body["spec"] == {
        "flowRef": {"name": "My_Flow"},
        "inputs": {"a": 1},
        "labels": {"team": "x"},
        "trigger": {"type": "api", "data": {}},
    }


def test_execution_names_are_dns_safe_and_short():
    assert api.execution_name("x" * 100, "abcd1234") == "x" * 40 + "-abcd1234"
    names = {api.execution_name("f") for _ in range(50)}
    assert len(names) == 50


def test_webhook_data_parses_json_bodies_and_hides_credentials():
    headers = CIMultiDict([("Authorization", "Bearer t"), ("Cookie", "c"), ("X-A", "1"), ("X-A", "2")])
    data = api.webhook_data(b'{"order": 42}', headers, MultiDict([("s", "x"), ("s", "y")]))
    assert data == {"body": {"order": 42}, "headers": {"x-a": ["1", "2"]}, "parameters": {"s": ["x", "y"]}}
    assert api.webhook_data(b"plain text", CIMultiDict(), MultiDict())["body"] == "plain text"
    assert api.webhook_data(b"", CIMultiDict(), MultiDict())["body"] is None


def test_webhook_key_must_match_an_enabled_trigger():
    flow = flow_with_hooks(
        {"id": "off", "type": "Webhook", "key": "disabled-key-0123456", "disabled": True},
        {"id": "on", "type": "Webhook", "key": KEY},
    )
    assert api_auth.webhook_matches(flow, KEY).id == "on"
    assert api_auth.webhook_matches(flow, "disabled-key-0123456") is None
    assert api_auth.webhook_matches(flow, KEY[:-1]) is None
    assert api_auth.webhook_matches(flow, "ünïcode-is-fine-too") is None


def test_summary_reads_state_task_runs_and_links():
    execution = {
        "metadata": {"name": "e-1", "namespace": "ns", "annotations": {}},
        "spec": {"flowRef": {"name": "f"}, "trigger": {"type": "api"}},
        "status": {
            "state": "RUNNING",
            "traceId": "c" * 32,
            "taskRuns": [{"id": "tr", "taskId": "t", "state": "RUNNING", "attempts": [{}]}],
            "history": [{"state": "CREATED", "at": "x"}, {"state": "RUNNING", "at": "y"}],
        },
    }
    data = api.summary(execution, "http://jaeger/")
    assert data["state"] == "RUNNING" and data["flowId"] == "f" and data["trigger"] == "api"
    assert data["triggerId"] is None
    by_trigger = {**execution, "spec": {"flowRef": {"name": "f"}, "trigger": {"type": "flow", "id": "after-a"}}}
    assert (api.summary(by_trigger)["trigger"], api.summary(by_trigger)["triggerId"]) == ("flow", "after-a")
    assert data["taskRuns"] == [
        {"id": "tr", "taskId": "t", "value": None, "state": "RUNNING", "attempts": 1, "error": None}
    ]
    assert data["links"] == {
        "self": "/api/v1/executions/ns/e-1",
        "follow": "/api/v1/executions/ns/e-1/follow",
        "kill": "/api/v1/executions/ns/e-1/kill",
        "jaeger": "http://jaeger/trace/" + "c" * 32,
    }
    assert not api.is_terminal(execution)


def test_a_new_execution_reports_the_trace_of_its_annotation():
    body = api.new_execution("ns", "f", inputs={}, labels={}, trigger="webhook", trigger_data={},
                             traceparent="00-" + "d" * 32 + "-" + "e" * 16 + "-01")  # fmt: skip
    data = api.summary(body)
    assert data["state"] == "CREATED" and data["traceId"] == "d" * 32 and "jaeger" not in data["links"]


def test_wait_parameters_are_bounded():
    assert api.wait_seconds({}) is None
    assert api.wait_seconds({"wait": "false"}) is None
    assert api.wait_seconds({"wait": "true"}) == api.DEFAULT_WAIT_SECONDS
    assert api.wait_seconds({"wait": "true", "timeout": "2.5"}) == 2.5
    for query in ({"wait": "maybe"}, {"wait": "true", "timeout": "301"}, {"wait": "true", "timeout": "x"},
                  {"wait": "1", "timeout": "0"}):  # fmt: skip
        with pytest.raises(ApiError) as caught:
            api.wait_seconds(query)
        assert caught.value.status == 400


def test_sse_events_round_trip():
    stream = api.sse_event("status", {"state": "RUNNING"}) + b": heartbeat\n\n" + api.sse_event("status", {"a": 1})
    events = list(cli_start.sse_events(stream.decode().splitlines()))
    assert events == [("status", '{"state": "RUNNING"}'), ("status", '{"a": 1}')]


def test_bearer_tokens():
    assert api_auth.bearer_token("Bearer abc") == "abc"
    assert api_auth.bearer_token("bearer  abc ") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError) as caught:
            api_auth.bearer_token(header)
        assert caught.value.status == 401


def test_token_and_access_reviews():
    assert api_auth.token_review_body("t")["spec"] == {"token": "t"}
    with pytest.raises(AuthError) as caught:
        api_auth.user_from_review({"status": {"authenticated": False, "error": "bad"}})
    assert caught.value.status == 401
    user = api_auth.user_from_review(
        {"status": {"authenticated": True, "user": {"username": "u", "uid": "1", "groups": ["g"]}}}
    )
    assert user == User(username="u", uid="1", groups=["g"])
    body = api_auth.access_review_body(user, "ns", "get", "e-1")
    assert body["spec"]["resourceAttributes"] == {
        "namespace": "ns", "verb": "get", "group": "flowpods.io", "resource": "executions", "name": "e-1",
    }  # fmt: skip
    assert body["spec"]["user"] == "u" and body["spec"]["groups"] == ["g"] and body["spec"]["uid"] == "1"
    api_auth.check_access({"status": {"allowed": True}}, user, "ns", "get")
    with pytest.raises(AuthError) as caught:
        api_auth.check_access({"status": {"allowed": False, "reason": "no binding"}}, user, "ns", "create")
    assert caught.value.status == 403
    assert "user 'u' may not create executions.flowpods.io in namespace 'ns' (no binding)" in caught.value.message


def test_progress_lines_name_what_changed():
    before = {"name": "e", "state": "RUNNING", "taskRuns": [{"id": "1", "taskId": "a", "state": "RUNNING",
                                                             "attempts": 1}]}  # fmt: skip
    after = {"name": "e", "state": "FAILED", "taskRuns": [
        {"id": "1", "taskId": "a", "state": "FAILED", "attempts": 2, "error": "boom"},
        {"id": "2", "taskId": "b", "value": "x", "state": "CREATED", "attempts": 0},
    ]}  # fmt: skip
    assert cli_start.progress_lines(before, after) == [
        "  task a FAILED (attempt 2): boom",
        "  task b[x] CREATED",
        "e FAILED",
    ]
    assert cli_start.progress_lines(after, after) == []


def test_openapi_describes_exactly_the_routes():
    from flowpods.api.app import Api, Settings

    app = Api(Settings(), kube=_NoKube(), auth=None, tracer=None).app()  # type: ignore[arg-type]
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    document = openapi_document()
    described = {(m, p) for p, item in document["paths"].items() for m in item if m != "parameters"}
    assert served == described
    assert document["openapi"] == "3.1.0"


class _NoKube:
    api = None
