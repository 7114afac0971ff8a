"""Read traces back from Jaeger's query API and check their shape, so tests assert on the
spans the operator really exported instead of on an in-process exporter.

Span dicts are Jaeger's `/api/traces` JSON; `SpanNode` is the parent/child tree built from
`references` (CHILD_OF) by span id.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class TraceNotReady(AssertionError):
    """Raised when a trace does not show up (complete) before the timeout."""


def _tags(span: dict) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


@dataclass
class SpanNode:
    span: dict
    service: str
    children: list[SpanNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.span["operationName"]

    @property
    def span_id(self) -> str:
        return self.span["spanID"]

    @property
    def attributes(self) -> dict[str, Any]:
        return _tags(self.span)

    def child(self, name: str) -> SpanNode:
        """The single child with this name (AssertionError listing the names otherwise)."""
        found = [c for c in self.children if c.name == name]
        if len(found) != 1:
            raise AssertionError(
                f"span {self.name!r} has {len(found)} children named {name!r}; children: "
                f"{[c.name for c in self.children]}"
            )
        return found[0]

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def render(self, indent: int = 0) -> str:
        lines = [f"{'  ' * indent}{self.name} [{self.service}] {self.span_id} {self.attributes}"]
        lines += [c.render(indent + 1) for c in sorted(self.children, key=lambda n: n.span["startTime"])]
        return "\n".join(lines)


class Jaeger:
    """Client for the Jaeger query HTTP API (`FLOWPODS_JAEGER_URL`)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _get(self, path: str, **query) -> dict:
        q = {k: v for k, v in query.items() if v is not None}
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(q)}" if q else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def services(self) -> list[str]:
        return self._get("/api/services").get("data") or []

    def traces(
        self,
        service: str,
        limit: int = 20,
        lookback: str = "1h",
        operation: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[dict]:
        """Traces of a service (newest first as Jaeger returns them)."""
        return (
            self._get(
                "/api/traces",
                service=service,
                limit=limit,
                lookback=lookback,
                operation=operation,
                tags=json.dumps(tags) if tags else None,
            ).get("data")
            or []
        )

    def trace(self, trace_id: str) -> dict | None:
        """One trace by its hex id, or None if Jaeger does not have it (yet)."""
        try:
            data = self._get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return data[0] if data else None

    def wait_for_trace(
        self,
        trace_id: str | None = None,
        service: str | None = None,
        min_spans: int = 1,
        timeout: float = 30.0,
        tags: dict[str, str] | None = None,
    ) -> dict:
        """Poll until a trace (by id, or the newest of `service`) has at least `min_spans` spans."""
        if not trace_id and not service:
            raise ValueError("give trace_id or service")
        deadline = time.monotonic() + timeout
        best: dict | None = None
        while True:
            candidates = [self.trace(trace_id)] if trace_id else self.traces(service, tags=tags)
            for t in filter(None, candidates):
                if best is None or len(t["spans"]) > len(best["spans"]):
                    best = t
                if len(t["spans"]) >= min_spans:
                    return t
            if time.monotonic() >= deadline:
                got = "no trace" if best is None else f"{len(best['spans'])} spans: {span_names(best)}"
                raise TraceNotReady(
                    f"Jaeger at {self.url} has no trace ({'id ' + trace_id if trace_id else 'service ' + service}) "
                    f"with >= {min_spans} spans after {timeout:.0f}s; best had {got}; "
                    f"services known: {self.services()}"
                )
            time.sleep(0.25)


def span_names(trace: dict) -> list[str]:
    return sorted(s["operationName"] for s in trace["spans"])


def tree(trace: dict) -> list[SpanNode]:
    """Build the span tree; returns the roots (spans whose parent is not in the trace)."""
    services = {pid: p["serviceName"] for pid, p in trace.get("processes", {}).items()}
    nodes = {s["spanID"]: SpanNode(s, services.get(s.get("processID"), "")) for s in trace["spans"]}
    roots = []
    for node in nodes.values():
        parent = next(
            (
                r["spanID"]
                for r in node.span.get("references", [])
                if r.get("refType") == "CHILD_OF" and r["spanID"] in nodes
            ),
            None,
        )
        if parent:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.span["startTime"])
    roots.sort(key=lambda n: n.span["startTime"])
    return roots


def root(trace: dict) -> SpanNode:
    """The single root span (AssertionError with the rendered tree otherwise)."""
    roots = tree(trace)
    if len(roots) != 1:
        raise AssertionError(f"expected one root span, got {len(roots)}:\n" + "\n".join(r.render() for r in roots))
    return roots[0]


def assert_tree(trace: dict, expected: dict) -> SpanNode:
    """Check the trace against a nested spec and return the root.

    `expected` = {"name": str, "attributes": {k: v} (subset), "service": str (optional),
    "children": [spec, ...] (each must match a distinct child; order ignored),
    "exact_children": bool (default False: extra children allowed)}.
    """
    r = root(trace)
    problems: list[str] = []
    _match(r, expected, "root", problems)
    if problems:
        raise AssertionError("trace does not match:\n  " + "\n  ".join(problems) + "\ntree:\n" + r.render())
    return r


def _match(node: SpanNode, spec: dict, where: str, problems: list[str]) -> bool:
    ok = True
    if "name" in spec and node.name != spec["name"]:
        problems.append(f"{where}: name {node.name!r} != {spec['name']!r}")
        return False
    if "service" in spec and node.service != spec["service"]:
        problems.append(f"{where} {node.name}: service {node.service!r} != {spec['service']!r}")
        ok = False
    attrs = node.attributes
    for k, v in (spec.get("attributes") or {}).items():
        if attrs.get(k) != v:
            problems.append(f"{where} {node.name}: attribute {k}={attrs.get(k)!r}, expected {v!r}")
            ok = False
    want = spec.get("children") or []
    if spec.get("exact_children") and len(want) != len(node.children):
        problems.append(f"{where} {node.name}: {len(node.children)} children, expected {len(want)}")
        ok = False
    free = list(node.children)
    for i, child_spec in enumerate(want):
        match = None
        for c in free:
            trial: list[str] = []
            if _match(c, child_spec, f"{where}/{node.name}", trial):
                match = c
                break
        if match is None:
            problems.append(
                f"{where}/{node.name}: no child matches {child_spec.get('name')!r} (#{i}); "
                f"children: {[c.name for c in free]}"
            )
            ok = False
        else:
            free.remove(match)
    return ok
