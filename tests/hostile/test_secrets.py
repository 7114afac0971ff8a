"""No secret in status, spans or logs: URL redaction per the OpenTelemetry HTTP conventions, and the
flow an Execution keeps without its webhook key."""

from __future__ import annotations

import json

import pytest

from flowpods.core.model import parse_flow
from flowpods.core.redaction import loggable, redact_headers, redact_url
from flowpods.core.snapshot import flow_snapshot

# (name, URL as written in a flow, URL as it may be shown)
URLS: list[tuple[str, str, str]] = [
    ("userinfo", "https://bob:pw@api.example.com/x", "https://REDACTED:REDACTED@api.example.com/x"),
    ("user-only", "https://token123@api.example.com/", "https://REDACTED:REDACTED@api.example.com/"),
    (
        "aws-signed",
        "https://s3.example.com/o?AWSAccessKeyId=AKIA&Signature=abc%2F&Expires=1",
        "https://s3.example.com/o?AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=1",
    ),
    ("azure-sig", "https://blob.example.com/c?sv=2021&sig=s3cr3t", "https://blob.example.com/c?sv=2021&sig=REDACTED"),
    (
        "gcs-signed",
        "https://storage.example.com/o?X-Goog-Signature=ff&X-Goog-Date=1",
        "https://storage.example.com/o?X-Goog-Signature=REDACTED&X-Goog-Date=1",
    ),
    (
        "amz-v4",
        "https://s3.example.com/o?X-Amz-Credential=a%2Fb&X-Amz-Signature=cd",
        "https://s3.example.com/o?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED",
    ),
    (
        "api-key",
        "https://maps.example.com/api?key=AIza123&q=paris",
        "https://maps.example.com/api?key=REDACTED&q=paris",
    ),
    ("auth", "https://h.example.com/?auth=xyz", "https://h.example.com/?auth=REDACTED"),
    (
        "token",
        "https://h.example.com/?access_token=t&token=u",
        "https://h.example.com/?access_token=REDACTED&token=REDACTED",
    ),
    ("sessionid", "https://h.example.com/?SessionId=42&page=2", "https://h.example.com/?SessionId=REDACTED&page=2"),
    ("oauth-code", "https://h.example.com/cb?code=abc&state=s", "https://h.example.com/cb?code=REDACTED&state=s"),
    ("password", "https://h.example.com/?user=a&password=b", "https://h.example.com/?user=a&password=REDACTED"),
    ("client-secret", "https://h.example.com/?client_secret=x", "https://h.example.com/?client_secret=REDACTED"),
    ("x-auth-token-name", "https://h.example.com/?x_auth_token=x", "https://h.example.com/?x_auth_token=REDACTED"),
    ("encoded-name", "https://h.example.com/?%74oken=x", "https://h.example.com/?%74oken=REDACTED"),
    ("repeated", "https://h.example.com/?key=a&key=b", "https://h.example.com/?key=REDACTED&key=REDACTED"),
    ("valueless-kept", "https://h.example.com/?flag&key", "https://h.example.com/?flag&key=REDACTED"),
    ("bad-ipv6-with-secret", "http://u:p@[::1/?token=x", "REDACTED"),
    ("bad-port-with-secret", "http://u:p@host:port/?token=x", "REDACTED"),
    ("nothing-to-hide", "http://127.0.0.1:8080/plain?page=2&sort=asc", "http://127.0.0.1:8080/plain?page=2&sort=asc"),
]


@pytest.mark.parametrize(("name", "url", "shown"), URLS, ids=[u[0] for u in URLS])
def test_url_full_is_redacted_per_the_http_conventions(name: str, url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_secret_headers_are_redacted_and_the_rest_kept() -> None:
    headers = {"Authorization": "Bearer x", "X-Api-Key": "k", "X-Session-Id": "s", "Accept": "*/*"}
    assert redact_headers(headers) == {
        "Authorization": "REDACTED", "X-Api-Key": "REDACTED", "X-Session-Id": "REDACTED", "Accept": "*/*"
    }  # fmt: skip


def test_an_execution_keeps_its_flow_without_the_webhook_key() -> None:
    key = "a-very-secret-webhook-key"
    flow = parse_flow({
        "id": "hooked", "namespace": "team", "tasks": [{"id": "t", "type": "Log", "message": "hi"}],
        "triggers": [{"id": "w", "type": "Webhook", "key": key}, {"id": "s", "type": "Schedule", "cron": "@daily"}],
    })  # fmt: skip
    snapshot = flow_snapshot(flow)
    assert key not in json.dumps(snapshot) and "triggers" not in snapshot
    assert parse_flow(snapshot).tasks[0].id == "t"  # what the execution runs is all there


def test_untrusted_text_is_one_log_line() -> None:
    assert loggable("ns\n2026 INFO forged\r\x1b[2J") == "ns\\x0a2026 INFO forged\\x0d\\x1b[2J"
    assert loggable("\u2028x") == "\\x2028x"
    assert loggable("n" * 1000).endswith("...(1000 chars)")
