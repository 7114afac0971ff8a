"""The run view's adapter: its page's headers, the list row and what it reads from pods (no cluster)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider

from flowpods.api.app import Api, Settings
from flowpods.api.runview import CSP, list_row, pending_report, pod_facts
from tests.adapters.api.test_api_app import FakeAuth, FakeKube


def test_the_page_and_its_files_are_served_with_a_strict_policy_and_nothing_else():
    async def main() -> None:
        app = Api(Settings(), FakeKube(), FakeAuth(), TracerProvider().get_tracer("t")).app()  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            root = await client.get("/", allow_redirects=False)
            assert root.status == 302 and root.headers["Location"] == "/ui/"
            for path, kind in [("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")]:
                response = await client.get(path)
                assert response.status == 200 and response.content_type == kind
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers["X-Frame-Options"] == "DENY"
            html = await (await client.get("/ui/")).text()
            assert "<script" in html and "<script>" not in html, "no inline script: the policy would refuse it"
            script = await (await client.get("/ui/app.js")).text()
            assert ".innerHTML" not in script and "localStorage" not in script
            assert (await client.get("/ui/../app.py")).status == 404
            assert (await client.get("/ui/secret.txt")).status == 404
            assert (await client.get("/api/v1/executions/ns")).status == 401

    asyncio.run(main())


def test_list_row_measures_queue_time_and_duration():
    now = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    execution = {
        "metadata": {"name": "e", "namespace": "ns", "creationTimestamp": "2026-01-01T12:00:00Z",
                     "labels": {"flowpods.io/parent-execution": "p"}},
        "spec": {"flowRef": {"name": "f"}, "trigger": {"type": "api"}, "labels": {"team": "a"}},
        "status": {"state": "RUNNING", "traceId": "t", "history": [
            {"state": "QUEUED", "at": "2026-01-01T12:00:00Z"}, {"state": "RUNNING", "at": "2026-01-01T12:00:07Z"}]},
    }  # fmt: skip
    row = list_row(execution, now)
    assert (row.queuedSeconds, row.seconds, row.state, row.trigger) == (7.0, 60.0, "RUNNING", "api")
    assert row.labels == {"team": "a"} and row.parent == "p" and row.endDate is None
    fresh = list_row({"metadata": {"name": "n", "namespace": "ns"}, "spec": {}}, now)
    assert fresh.state == "CREATED" and fresh.seconds is None and fresh.trigger == "kubectl"


def test_pod_facts_and_why_pending():
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "m"}}
    pod = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T12:00:02Z"}],
        "containerStatuses": [{"name": "task", "state": waiting}]}}  # fmt: skip
    facts = pod_facts(pod)
    assert facts.scheduledAt == datetime(2026, 1, 1, 12, 0, 2, tzinfo=UTC) and facts.startedAt is None
    report = pending_report(pod, [{"type": "Warning", "reason": "Failed", "message": "pull", "count": 3,
                                   "lastTimestamp": "2026-01-01T12:00:05Z"}])  # fmt: skip
    assert report["containers"] == [{"name": "task", "state": "waiting", "reason": "ImagePullBackOff", "message": "m"}]
    assert report["events"][0]["reason"] == "Failed" and report["phase"] == "Pending"
    assert pending_report(None, [])["exists"] is False
