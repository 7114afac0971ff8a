"""The run view: a web page (static files of this package) and the read-only routes it calls.

A thin adapter like the rest of the API: it reads Executions, their subflows' Executions, pods, pod logs
and Events with the operator's client, checks the caller's token on every call exactly as the other
routes do (TokenReview, then a SubjectAccessReview on executions in the namespace), and hands the
stored facts to `core.timeline`. The page is plain HTML and JavaScript served with a strict Content
Security Policy: no inline script, no third-party origin, and the token lives in the browser's
sessionStorage and goes out only in the Authorization header, never in a URL.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from importlib import resources as package_files
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, Field

from flowpods.api.auth import Verb, bearer_token
from flowpods.core.clock import utcnow
from flowpods.core.status import ExecutionStatus, WithHistory
from flowpods.core.timeline import ChildRun, PodFacts, Timeline, compare, queued_seconds, task_medians, timeline
from flowpods.kube import resources
from flowpods.kube.resources import LABEL_EXECUTION, TASK_CONTAINER

if TYPE_CHECKING:
    from flowpods.api.app import Api

ROUTE_LIST = "/api/v1/executions/{namespace}"
ROUTE_TIMELINE = "/api/v1/executions/{namespace}/{name}/timeline"
ROUTE_LOGS = "/api/v1/executions/{namespace}/{name}/logs"
ROUTE_PENDING = "/api/v1/executions/{namespace}/{name}/pending"
ROUTE_COMPARE = "/api/v1/executions/{namespace}/{name}/compare/{other}"
ROUTE_ACCESS = "/api/v1/access/{namespace}"
ROUTE_UI = "/ui/"
ROUTE_UI_FILE = "/ui/{file}"
UI_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
MAX_SUBFLOW_DEPTH = 10
RECENT_RUNS = 20  # the runs a task's median is taken over
LOG_TAIL_LINES = 2000


class ListRow(BaseModel):
    """One execution in the list: what a person filters and sorts on."""

    name: str
    namespace: str
    flowId: str | None
    state: str
    created: datetime | None
    startDate: datetime | None
    endDate: datetime | None
    seconds: float | None = Field(description="From creation to the end (or now, while it runs)")
    queuedSeconds: float | None
    trigger: str
    labels: dict[str, str]
    taskRuns: int
    traceId: str | None
    parent: str | None = Field(default=None, description="The parent execution, for a subflow's")


def list_row(execution: dict[str, Any], now: datetime) -> ListRow:
    meta, spec = execution["metadata"], execution.get("spec") or {}
    stored = execution.get("status") or {}
    # only the state and its history: a list of big executions must not parse every task run
    status = WithHistory.model_validate({k: stored[k] for k in ("state", "history") if k in stored})
    created = resources.parse_time(meta.get("creationTimestamp"))
    end = status.endDate
    return ListRow(
        name=meta["name"],
        namespace=meta["namespace"],
        flowId=(spec.get("flowRef") or {}).get("name"),
        state=status.state.value,
        created=created,
        startDate=status.startDate,
        endDate=end,
        seconds=max(((end or now) - created).total_seconds(), 0.0) if created else None,
        queuedSeconds=queued_seconds(status, created) if created else None,
        trigger=(spec.get("trigger") or {}).get("type") or "kubectl",
        labels=spec.get("labels") or {},
        taskRuns=len(stored.get("taskRuns") or []),
        traceId=(execution.get("status") or {}).get("traceId"),
        parent=(meta.get("labels") or {}).get(resources.LABEL_PARENT),
    )


def pod_facts(pod: dict[str, Any]) -> PodFacts:
    """The PodScheduled condition's time and the task container's start, when the pod shows them."""
    status = pod.get("status") or {}
    scheduled = next(
        (
            c.get("lastTransitionTime")
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "True"
        ),
        None,
    )
    started = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        started = started or (state.get("running") or state.get("terminated") or {}).get("startedAt")
    return PodFacts(scheduledAt=resources.parse_time(scheduled), startedAt=resources.parse_time(started))


def pending_report(pod: dict[str, Any] | None, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Why a pod waits: its phase, its conditions and the Events about it, as the API server reports them."""
    if pod is None:
        return {"exists": False, "phase": None, "conditions": [], "containers": [], "events": []}
    status = pod.get("status") or {}
    containers = []
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        containers.append(
            {
                "name": container.get("name"),
                "state": next(iter(state), None),
                "reason": waiting.get("reason"),
                "message": waiting.get("message"),
            }
        )
    return {
        "exists": True,
        "phase": status.get("phase"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
            for c in status.get("conditions") or []
        ],
        "containers": containers,
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count"),
                "at": e.get("lastTimestamp")
                or e.get("eventTime")
                or (e.get("metadata") or {}).get("creationTimestamp"),
            }
            for e in events
        ],
    }


class RunView:
    """The run view's routes on the API's application, sharing its client, token checks and settings."""

    def __init__(self, api: Api):
        self.api = api

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get(ROUTE_UI, self.page)
        app.router.add_get(ROUTE_UI_FILE, self.file)
        app.router.add_get(ROUTE_ACCESS, self.access)
        app.router.add_get(ROUTE_LIST, self.executions)
        app.router.add_get(ROUTE_TIMELINE, self.timeline)
        app.router.add_get(ROUTE_LOGS, self.logs)
        app.router.add_get(ROUTE_PENDING, self.pending)
        app.router.add_get(ROUTE_COMPARE, self.compare)

    # -- the page -------------------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": ROUTE_UI})

    async def page(self, request: web.Request) -> web.Response:
        return self._static("index.html")

    async def file(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in UI_FILES:
            raise web.HTTPNotFound()
        return self._static(name)

    @staticmethod
    def _static(name: str) -> web.Response:
        body = package_files.files("flowpods.api").joinpath("ui", name).read_bytes()
        return web.Response(body=body, content_type=UI_FILES[name], charset="utf-8", headers=SECURITY_HEADERS)

    # -- the data -------------------------------------------------------------------------------------

    async def access(self, request: web.Request) -> web.Response:
        """Who the token belongs to and what they may do here (so the page hides what would be refused)."""
        namespace = request.match_info["namespace"]
        user = await asyncio.to_thread(self.api.auth.authenticate, bearer_token(request.headers.get("Authorization")))
        verbs: tuple[Verb, ...] = ("get", "list", "create", "update")
        allowed = await asyncio.gather(*(asyncio.to_thread(self.api.auth.allowed, user, namespace, v) for v in verbs))
        return web.json_response(
            {
                "user": user.username,
                "namespace": namespace,
                "may": dict(zip(verbs, allowed, strict=True)),
                "jaegerUrl": self.api.settings.jaeger_url,
                "namespaces": list(self.api.settings.namespaces),
            }
        )

    async def executions(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        await self.api._authorize(request, namespace, "list")
        items = await asyncio.to_thread(self.api.kube.list_objects, "executions", namespace)
        now = utcnow()
        rows = [list_row(item, now).model_dump(mode="json") for item in items]
        rows.sort(key=lambda r: r["created"] or "", reverse=True)
        return web.json_response({"namespace": namespace, "now": now.isoformat(), "items": rows})

    async def timeline(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self.api._authorize(request, namespace, "get", name)
        execution = await asyncio.to_thread(self.api.kube.get, "executions", namespace, name)
        body = self.api._found(execution, namespace, name)
        data = await asyncio.to_thread(self._timeline, namespace, body)
        return web.Response(text=data, content_type="application/json")

    def _view(self, namespace: str, body: dict[str, Any], now: datetime) -> Timeline:
        status = resources.stored_status(body) or ExecutionStatus()
        created = resources.parse_time(body["metadata"].get("creationTimestamp")) or now
        children = self._children(namespace, status, 1)
        pods = self._pods(namespace, [body["metadata"]["name"], *children])
        return timeline(body["metadata"]["name"], created, status, self._flow(body), now, children, pods)

    async def compare(self, request: web.Request) -> web.Response:
        """Two executions task by task (`core.timeline.compare`)."""
        namespace, name, other = (request.match_info[k] for k in ("namespace", "name", "other"))
        views = []
        for each in (name, other):
            await self.api._authorize(request, namespace, "get", each)
            body = await self.api._execution(namespace, each)
            views.append(await asyncio.to_thread(self._view, namespace, body, utcnow()))
        tasks = compare(views[0].rows, views[1].rows)
        return web.json_response({"a": name, "b": other, "tasks": [t.model_dump(mode="json") for t in tasks]})

    def _timeline(self, namespace: str, body: dict[str, Any]) -> str:
        from flowpods.api.app import summary

        now = utcnow()
        view = self._view(namespace, body, now)
        created = view.start
        flow_name = (body.get("spec") or {}).get("flowRef", {}).get("name")
        recent = [
            s
            for item in self.api.kube.list_objects("executions", namespace)
            if (item.get("spec") or {}).get("flowRef", {}).get("name") == flow_name
            and item["metadata"]["name"] != body["metadata"]["name"]
            and (s := resources.stored_status(item)) is not None
            and s.state.terminal
        ]
        recent.sort(key=lambda s: s.endDate or now, reverse=True)
        medians = task_medians(recent[:RECENT_RUNS])
        result = summary(body, self.api.settings.jaeger_url)
        result.pop("taskRuns", None)
        result.update(
            medians=medians,
            recentRuns=len(recent[:RECENT_RUNS]),
            created=created.isoformat(),
            triggerData=(body.get("spec") or {}).get("trigger", {}).get("data") or {},
            now=now.isoformat(),
        )
        # the timeline is serialised by pydantic directly: for thousands of rows that is several times faster
        head = json.dumps(result, default=str)
        return head[:-1] + ', "timeline": ' + view.model_dump_json() + "}"

    @staticmethod
    def _flow(body: dict[str, Any]) -> Any:
        try:
            stored = resources.stored_flow(body)
        except Exception:  # an unreadable snapshot: rows without task types, not an error page
            return None
        return stored[0] if stored else None

    def _children(self, namespace: str, status: ExecutionStatus, depth: int) -> dict[str, ChildRun]:
        """The subflows' executions (and theirs), for their task runs to nest under the Subflow task run."""
        found: dict[str, ChildRun] = {}
        if depth > MAX_SUBFLOW_DEPTH:
            return found
        for tr in status.taskRuns:
            if not tr.child:
                continue
            child = self.api.kube.get("executions", namespace, tr.child)
            child_status = resources.stored_status(child) if child else None
            if child is None or child_status is None:
                continue
            found[tr.child] = ChildRun(tr.child, child_status, self._flow(child))
            found.update(self._children(namespace, child_status, depth + 1))
        return found

    def _pods(self, namespace: str, executions: list[str]) -> dict[str, PodFacts]:
        pods: dict[str, PodFacts] = {}
        for execution in executions:
            for pod in self.api.kube.list_pods(namespace, f"{LABEL_EXECUTION}={resources.label_value(execution)}"):
                pods[pod["metadata"]["name"]] = pod_facts(pod)
        return pods

    def _attempt_pod(self, request: web.Request, body: dict[str, Any]) -> tuple[str, str | None]:
        """The pod of the asked task run's attempt (`?taskRunId=&attempt=`, default: its latest)."""
        from flowpods.api.app import ApiError

        status = resources.stored_status(body) or ExecutionStatus()
        taskrun_id = request.query.get("taskRunId") or ""
        tr = status.taskrun(taskrun_id)
        if tr is None:
            raise ApiError(404, f"no task run '{taskrun_id}' in execution '{body['metadata']['name']}'")
        if not tr.attempts:
            return tr.taskId, None
        wanted = request.query.get("attempt")
        attempt = next((a for a in tr.attempts if str(a.number) == wanted), tr.attempts[-1])
        return tr.taskId, attempt.pod

    async def logs(self, request: web.Request) -> web.Response:
        """The last lines of an attempt's pod log, while the pod exists (flowpods keeps no logs of its own)."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self.api._authorize(request, namespace, "get", name)
        body = await self.api._execution(namespace, name)
        task_id, pod_name = self._attempt_pod(request, body)
        if pod_name is None:
            return web.json_response(
                {
                    "taskId": task_id,
                    "pod": None,
                    "available": False,
                    "text": "",
                    "message": "no pod: this task run has no attempt in a pod",
                }
            )
        pod = await asyncio.to_thread(self.api.kube.get_pod, namespace, pod_name)
        container = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(
            "kubectl.kubernetes.io/default-container", TASK_CONTAINER
        )
        text = None
        if pod is not None:
            text = await asyncio.to_thread(self.api.kube.pod_log, namespace, pod_name, container, LOG_TAIL_LINES)
        if text is None:
            message = (
                "the pod is gone (deleted after it ended, or by its clean-up policy): its log is gone with "
                "it; flowpods keeps no copy"
                if pod is None
                else "the container has not started: no log yet"
            )
            return web.json_response(
                {"taskId": task_id, "pod": pod_name, "available": False, "text": "", "message": message}
            )
        return web.json_response(
            {
                "taskId": task_id,
                "pod": pod_name,
                "available": True,
                "text": text,
                "message": f"the last {LOG_TAIL_LINES} lines at most, from the pod",
            }
        )

    async def pending(self, request: web.Request) -> web.Response:
        """Why an attempt waits: the pod's conditions, its containers' waiting reasons and its Events."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self.api._authorize(request, namespace, "get", name)
        body = await self.api._execution(namespace, name)
        task_id, pod_name = self._attempt_pod(request, body)
        pod = await asyncio.to_thread(self.api.kube.get_pod, namespace, pod_name) if pod_name else None
        events = await asyncio.to_thread(self.api.kube.pod_events, namespace, pod_name) if pod_name else []
        return web.json_response({"taskId": task_id, "pod": pod_name, **pending_report(pod, events)})
