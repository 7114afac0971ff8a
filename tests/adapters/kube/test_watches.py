"""The watches without kopf (kube/watches.py), against an API server of the test's own on 127.0.0.1 that
answers lists and streams watch events as the real one does (chunked JSON lines)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

from flowpods.kube import watches
from flowpods.kube.client import Kube
from flowpods.kube.view import pod_essence
from flowpods.kube.watches import EXECUTIONS, PODS, Watch, Watched

SELECTOR = "flowpods.io/execution"


def pod(name: str, version: str, phase: str = "Pending", namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "labels": {SELECTOR: "e1"}, "ownerReferences": [{"kind": "Execution", "name": "e1"}],
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "task", "image": "w"}]},
            "status": {"phase": phase}}  # fmt: skip


Answer = tuple[int, Any]  # (HTTP status, a list's body or a watch's events)


class FakeApiServer:
    """Answers each request with the next scripted answer for its kind (list or watch); a watch with no answer
    left is held open without events until the test ends."""

    def __init__(self, lists: list[Answer], watches: list[Answer]):
        self.lists, self.watches = lists, watches
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.done = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                fake.requests.append((url.path, query))
                script = fake.watches if query.get("watch") else fake.lists
                if not script:
                    fake.done.wait(10)
                    code, content = 200, []
                else:
                    code, content = script.pop(0)
                if code != 200 or not query.get("watch"):
                    body = json.dumps(content if code == 200 else {"kind": "Status", "code": code}).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in content:
                    line = json.dumps(event).encode() + b"\n"
                    for part in (line[:7], line[7:]):  # an event split across chunks is put together again
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kube(self) -> Kube:
        return Kube(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{self.server.server_port}")))

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()


Seen = list[tuple[str | None, dict[str, Any]]]


def watched(fake: FakeApiServer, until: Callable[[Seen], bool], namespaces: tuple[str, ...] = ("team",),
            kind: Watched = PODS) -> Seen:  # fmt: skip
    seen: Seen = []
    watch = Watch(fake.kube(), kind, namespaces, lambda kind, body: seen.append((kind, body)))
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while not until(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watch.stop()
        fake.close()
    return seen


def page(items: list[dict[str, Any]], version: str, token: str = "") -> dict[str, Any]:
    return {"kind": "PodList", "metadata": {"resourceVersion": version, "continue": token}, "items": items}


def test_the_list_pages_then_the_watch_from_the_lists_version_each_event_once_in_order() -> None:
    a1, b1 = pod("a", "10"), pod("b", "11")
    fake = FakeApiServer(
        lists=[(200, page([a1], "12", token="next")), (200, page([b1], "12"))],
        watches=[(200, [{"type": "MODIFIED", "object": pod("a", "13", "Running")},
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}]),
                 (200, [{"type": "DELETED", "object": pod("a", "21", "Succeeded")},
                        {"type": "ADDED", "object": pod("c", "22")}])],
    )  # fmt: skip
    seen = watched(fake, lambda seen: len(seen) >= 5)
    assert [(kind, body["metadata"]["name"], body["metadata"]["resourceVersion"]) for kind, body in seen] == [
        (None, "a", "10"), (None, "b", "11"), ("MODIFIED", "a", "13"), ("DELETED", "a", "21"), ("ADDED", "c", "22"),
    ]  # fmt: skip
    assert seen[2][1] == pod_essence(pod("a", "13", "Running"))  # what the view keeps: no spec, no managed fields
    paths = {path for path, _ in fake.requests}
    assert paths == {"/api/v1/namespaces/team/pods"}
    lists = [q for _, q in fake.requests if "watch" not in q]
    assert [q.get("continue") for q in lists] == [None, "next"] and lists[0]["labelSelector"] == SELECTOR
    watches = [q for _, q in fake.requests if "watch" in q]
    assert [q["resourceVersion"] for q in watches[:2]] == ["12", "20"]  # the bookmark moved it on, not handed on
    assert all(q["allowWatchBookmarks"] == "true" and q["labelSelector"] == SELECTOR for q in watches)


def test_a_version_too_old_lists_again_and_a_pod_gone_meanwhile_is_handed_on_as_deleted() -> None:
    fake = FakeApiServer(
        lists=[(200, page([pod("a", "10"), pod("b", "11")], "12")), (200, page([pod("b", "30", "Running")], "31"))],
        watches=[(200, [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}]),
                 (200, [{"type": "ADDED", "object": pod("c", "32")}])],
    )  # fmt: skip
    seen = watched(fake, lambda seen: len(seen) >= 5)
    assert [(kind, body["metadata"]["name"]) for kind, body in seen] == [
        (None, "a"), (None, "b"), ("DELETED", "a"), (None, "b"), ("ADDED", "c"),
    ]  # fmt: skip
    gone = seen[2][1]["metadata"]  # what is kept of it: enough for the view to poke its execution
    assert gone["ownerReferences"] == [{"kind": "Execution", "name": "e1"}] and gone["resourceVersion"] == "10"
    watches = [q["resourceVersion"] for _, q in fake.requests if "watch" in q]
    assert watches[:2] == ["12", "31"]


def test_a_refused_watch_is_retried_from_the_last_version_and_a_410_answer_lists_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(watches, "RETRY_FIRST", 0.01)
    fake = FakeApiServer(
        lists=[(200, page([pod("a", "10")], "12")), (200, page([], "40"))],
        watches=[(200, [{"type": "MODIFIED", "object": pod("a", "13", "Running")}]),
                 (500, None), (200, [{"type": "MODIFIED", "object": pod("a", "14", "Succeeded")}]),
                 (410, None), (200, [{"type": "ADDED", "object": pod("d", "41")}])],
    )  # fmt: skip
    seen = watched(fake, lambda seen: len(seen) >= 5)
    assert [(kind, body["metadata"]["name"], body["metadata"]["resourceVersion"]) for kind, body in seen] == [
        (None, "a", "10"), ("MODIFIED", "a", "13"), ("MODIFIED", "a", "14"), ("DELETED", "a", "14"),
        ("ADDED", "d", "41")]  # fmt: skip
    kinds = [("watch " + q["resourceVersion"]) if "watch" in q else "list" for _, q in fake.requests]
    assert kinds[:7] == ["list", "watch 12", "watch 13", "watch 13", "watch 14", "list", "watch 40"]


def test_every_namespace_has_its_watch_and_none_means_the_cluster() -> None:
    fake = FakeApiServer(lists=[(200, page([], "1")), (200, page([], "1"))], watches=[])
    watched(fake, lambda _: len({path for path, _ in fake.requests}) >= 2, namespaces=("a", "b"))
    assert {path for path, _ in fake.requests} == {"/api/v1/namespaces/a/pods", "/api/v1/namespaces/b/pods"}
    fake = FakeApiServer(lists=[(200, page([], "1"))], watches=[])
    watched(fake, lambda _: len(fake.requests) >= 2, namespaces=())
    assert {path for path, _ in fake.requests} == {"/api/v1/pods"}


def test_executions_are_listed_with_their_kind_and_kept_without_managed_fields() -> None:
    listed = {"metadata": {"name": "e1", "namespace": "team", "resourceVersion": "5",
                           "managedFields": [{"manager": "flowpods"}]}, "spec": {"flowRef": {"name": "f"}}}  # fmt: skip
    changed = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution", **listed,
               "status": {"state": "RUNNING"}}  # fmt: skip
    fake = FakeApiServer(lists=[(200, page([listed], "6"))], watches=[(200, [{"type": "MODIFIED", "object": changed}])])
    seen = watched(fake, lambda seen: len(seen) >= 2, kind=EXECUTIONS)
    assert [kind for kind, _ in seen] == [None, "MODIFIED"]
    assert seen[0][1] == {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
                          "metadata": {"name": "e1", "namespace": "team", "resourceVersion": "5"},
                          "spec": {"flowRef": {"name": "f"}}}  # fmt: skip
    assert seen[1][1]["status"] == {"state": "RUNNING"} and "managedFields" not in seen[1][1]["metadata"]
    assert {path for path, _ in fake.requests} == {"/apis/flowpods.io/v1alpha1/namespaces/team/executions"}
    assert all(query["labelSelector"] == "" for _, query in fake.requests)
