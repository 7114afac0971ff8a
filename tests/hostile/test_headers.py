"""Requests the HTTP server refuses before any route sees them, on a real socket: still JSON errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from flowpods.api.app import Api, ApiRunner, Settings
from tests.adapters.api.test_api_app import FakeAuth, FakeKube

OK_LINE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"

# (name, raw request, words of the message)
BAD_RAW_REQUESTS: list[tuple[str, bytes, str]] = [
    (
        "header-over-8k",
        OK_LINE + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        "a request header (or the request line) is too long",
    ),
    ("cookie-over-8k", OK_LINE + b"Cookie: s=" + b"b" * 20000 + b"\r\n\r\n", "the limit is 8190 bytes per line"),
    ("traceparent-over-8k", OK_LINE + b"traceparent: 00-" + b"1" * 9000 + b"\r\n\r\n", "too long"),
    ("request-line-over-8k", b"GET /" + b"p" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "too long"),
    (
        "too-many-headers",
        OK_LINE + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n",
        "malformed HTTP request",
    ),
    ("header-without-colon", OK_LINE + b"NoColonHere\r\n\r\n", "malformed HTTP request"),
    ("bad-http-version", b"GET /healthz HTTP/9.Z\r\nHost: x\r\n\r\n", "malformed HTTP request"),
    ("control-character-in-header", OK_LINE + b"X-A: a\x01b\r\n\r\n", "malformed HTTP request"),
]


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def serve_and_send(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    async def main() -> tuple[int, dict[str, str], bytes]:
        api = Api(Settings(), FakeKube(), FakeAuth(), TracerProvider().get_tracer("t"))  # type: ignore[arg-type]
        runner = ApiRunner(api.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await exchange(port, raw)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


@pytest.mark.parametrize(("name", "raw", "expect"), BAD_RAW_REQUESTS, ids=[r[0] for r in BAD_RAW_REQUESTS])
def test_a_request_refused_by_the_http_parser_gets_a_json_error(name: str, raw: bytes, expect: str) -> None:
    status, headers, body = serve_and_send(raw)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    data: dict[str, Any] = json.loads(body)
    assert data["error"]["status"] == 400 and expect in data["error"]["message"]
    assert b"aaaa" not in body and b"bbbb" not in body  # the refused bytes are not echoed


def test_the_same_server_answers_a_good_request() -> None:
    status, _, body = serve_and_send(OK_LINE + b"Connection: close\r\n\r\n")
    assert status == 200 and json.loads(body) == {"status": "ok"}
