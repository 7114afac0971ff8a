"""The HTTP API and webhooks, served by the operator process on its own port (aiohttp, already under kopf).

A thin adapter: requests are parsed and checked here (pydantic), flows and inputs are checked by the same
code the operator uses (`resources.load_flow`, `inputs.resolve_inputs`), and the result is an Execution
resource that the operator runs like any other. Every request is one SERVER span; the Execution carries
that span's context in `flowpods.io/traceparent`, so its RUN span is the span's child and a caller that
sent `traceparent` sees one trace from its own span down to the HTTP calls the tasks make.

Secrets never reach logs or spans: span names and `http.route` are route templates, the URL path and
query are not recorded, and the access log prints the template too (the webhook key is in the path).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from kubernetes import client
from multidict import MultiMapping
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flowpods.api.auth import AuthError, KubeAuth, Verb, bearer_token, webhook_matches
from flowpods.api.openapi import openapi_document
from flowpods.api.runview import RunView
from flowpods.core import compaction, controls, ids
from flowpods.core.bounds import ShapeError, check_json_depth
from flowpods.core.inputs import resolve_inputs
from flowpods.core.model import Flow, FlowError
from flowpods.core.redaction import loggable
from flowpods.core.replay import replay_problem
from flowpods.core.start import Refusal, start_check
from flowpods.core.status import ExecutionStatus, State
from flowpods.kube import resources
from flowpods.kube.client import Kube
from flowpods.kube.config import OperatorConfig
from flowpods.kube.labels import labels_patch, replaced
from flowpods.kube.resources import ANNOTATION_KILL, ANNOTATION_TRACEPARENT
from flowpods.telemetry.otel import attached, tracer_provider_from_env

log = logging.getLogger("flowpods.api.app")

PREFIX = "/api/v1/executions"
ROUTE_START = PREFIX + "/{namespace}/{flowId}"
ROUTE_EXECUTION = PREFIX + "/{namespace}/{name}"
ROUTE_FOLLOW = PREFIX + "/{namespace}/{name}/follow"
ROUTE_KILL = PREFIX + "/{namespace}/{name}/kill"
ROUTE_RESUME = PREFIX + "/{namespace}/{name}/resume"
ROUTE_RESTART = PREFIX + "/{namespace}/{name}/restart"
ROUTE_LABELS = PREFIX + "/{namespace}/{name}/labels"
ROUTE_REPLAY = PREFIX + "/{namespace}/{name}/replay"
ROUTE_WEBHOOK = PREFIX + "/webhook/{namespace}/{flowId}/{key}"
ROUTE_OPENAPI = "/api/v1/openapi.json"
UNTRACED = {"/healthz", "/readyz"}  # probes every few seconds would drown the traces
MAX_WAIT_SECONDS = 300.0
DEFAULT_WAIT_SECONDS = 60.0
FOLLOW_HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 0.25
HIDDEN_HEADERS = {"authorization", "cookie", "proxy-authorization"}
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits

View = Callable[[str, str], dict[str, Any] | None]


class ApiError(Exception):
    """An error answered as `{"error": {"status": N, "message": "..."}}`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


class ResumeRequest(BaseModel):
    """The JSON body of `POST .../{name}/resume`: the Pause's onResume inputs."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict, description="onResume input values by input id")


class Label(BaseModel):
    """One of Kestra's labels, as `POST .../{name}/labels` takes a list of them."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=253)
    value: str = Field(max_length=1024)


LABELS: TypeAdapter[list[Label]] = TypeAdapter(list[Label])


class StartRequest(BaseModel):
    """The JSON body of `POST /api/v1/executions/{namespace}/{flowId}`."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict, description="Input values by input id")
    labels: dict[str, str] = Field(default_factory=dict, description="Execution labels")


@dataclass(frozen=True)
class Settings:
    max_body: int = 1024 * 1024
    jaeger_url: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: every namespace is served


# --- pure helpers --------------------------------------------------------------------------------------


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}}


def execution_name(flow_name: str, suffix: str | None = None) -> str:
    suffix = suffix or "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(8))
    return f"{ids.dns_label(flow_name, 40)}-{suffix}"


def traceparent_header(context: trace.SpanContext) -> str | None:
    if not context.is_valid:
        return None
    return ids.TraceParent(trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}",
                           sampled=context.trace_flags.sampled).header()  # fmt: skip


def new_execution(
    namespace: str,
    flow_name: str,
    *,
    inputs: dict[str, Any],
    labels: dict[str, str],
    trigger: str,
    trigger_data: dict[str, Any],
    traceparent: str | None,
    tracestate: str | None = None,
    baggage: str | None = None,
    name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Execution resource an API call or a webhook creates."""
    marks = {**resources.trace_annotations(traceparent, tracestate, baggage), **(annotations or {})}
    return resources.execution_body(
        namespace, name or execution_name(flow_name), flow_name, trigger, trigger_data, inputs=inputs,
        labels=labels, annotations=marks,
    )  # fmt: skip


def multi_dict(items: Any) -> dict[str, list[str]]:
    """Headers or query parameters as name -> list of values (Kestra's shape); header names lower-case."""
    result: dict[str, list[str]] = {}
    for name, value in items:
        result.setdefault(name, []).append(value)
    return result


def webhook_data(body: bytes, headers: MultiMapping[str], query: MultiMapping[str]) -> dict[str, Any]:
    """`trigger.body` (JSON when it parses, else text, None when empty), `trigger.headers`, `trigger.parameters`."""
    text = body.decode("utf-8", errors="replace")
    parsed: Any = None
    if text.strip():
        try:
            check_json_depth(text, "the webhook body")
        except ShapeError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
    visible = [(k.lower(), v) for k, v in headers.items() if k.lower() not in HIDDEN_HEADERS]
    return {"body": parsed, "headers": multi_dict(visible), "parameters": multi_dict(query.items())}


def trace_id_of(execution: dict[str, Any]) -> str | None:
    status = execution.get("status") or {}
    if status.get("traceId"):
        return status["traceId"]
    parent = ids.parse_traceparent((execution["metadata"].get("annotations") or {}).get(ANNOTATION_TRACEPARENT))
    return parent.trace_id if parent else None


def links(namespace: str, name: str, trace_id: str | None, jaeger_url: str | None) -> dict[str, str]:
    """Where to read, follow and kill the execution (paths on this API) and its trace in Jaeger."""
    base = f"{PREFIX}/{namespace}/{name}"
    result = {"self": base, "follow": f"{base}/follow", "kill": f"{base}/kill"}
    if jaeger_url and trace_id:
        result["jaeger"] = f"{jaeger_url.rstrip('/')}/trace/{trace_id}"
    return result


def summary(execution: dict[str, Any], jaeger_url: str | None = None) -> dict[str, Any]:
    """What the API says about an execution: its identity, state, task runs and links."""
    meta, spec = execution["metadata"], execution.get("spec") or {}
    status = execution.get("status") or {}
    trace_id = trace_id_of(execution)
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "flowId": (spec.get("flowRef") or {}).get("name"),
        "state": status.get("state") or State.CREATED.value,
        "traceId": trace_id,
        "trigger": (spec.get("trigger") or {}).get("type") or "kubectl",
        "triggerId": (spec.get("trigger") or {}).get("id"),
        "labels": spec.get("labels") or {},
        "inputs": status.get("inputs") or spec.get("inputs") or {},
        "outputs": status.get("outputs") or {},
        "message": status.get("message"),
        "startDate": status.get("startDate"),
        "endDate": status.get("endDate"),
        "duration": status.get("duration"),
        "history": [{"state": h.get("state"), "at": h.get("at")} for h in status.get("history") or []],
        "taskRuns": [{k: v for k, v in tr.items() if k != "child"} for tr in compaction.task_run_rows(status)],
        "links": links(meta["namespace"], meta["name"], trace_id, jaeger_url),
    }


def is_terminal(execution: dict[str, Any] | None) -> bool:
    state = ((execution or {}).get("status") or {}).get("state")
    return state is not None and State(state).terminal


def progress_key(execution: dict[str, Any]) -> tuple[Any, ...]:
    """What a follower is told about: the state, and each task run's state and attempts."""
    status = execution.get("status") or {}
    runs = tuple((t["id"], t["state"], t["attempts"]) for t in compaction.task_run_rows(status))
    return status.get("state"), runs


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def wait_seconds(query: Mapping[str, str]) -> float | None:
    """`?wait=true[&timeout=S]`: how long to wait for a terminal state (None: do not wait)."""
    wait = (query.get("wait") or "").strip().lower()
    if wait in ("", "false", "0", "no"):
        return None
    if wait not in ("true", "1", "yes"):
        raise ApiError(400, f"query parameter 'wait' must be true or false, not '{wait}'")
    raw = query.get("timeout")
    if raw is None or not raw.strip():
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError(400, f"query parameter 'timeout' must be a number of seconds, not '{raw}'") from None
    if not 0 < seconds <= MAX_WAIT_SECONDS:
        raise ApiError(400, f"query parameter 'timeout' must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return seconds


def describe_validation(exc: ValidationError) -> str:
    """pydantic errors as `labels.team: Input should be a valid string; ...`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def server_attributes(request: web.BaseRequest, route: str | None) -> dict[str, Any]:
    """HTTP server semantic conventions, without url.path or url.query: they may hold a webhook key."""
    url = request.url
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.scheme": request.scheme,
        "server.address": url.host or "",
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    if route:
        attributes["http.route"] = route
    if request.headers.get("User-Agent"):
        attributes["user_agent.original"] = request.headers["User-Agent"]
    if request.remote:
        attributes["client.address"] = request.remote
    return attributes


def route_of(request: web.BaseRequest) -> str | None:
    info = getattr(request, "match_info", None)
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else None


def load_flow(resource: dict[str, Any] | None, namespace: str, flow_name: str) -> Flow:
    """The flow an API call starts, or the reason it cannot start (404: no such flow, 409: invalid or disabled)."""
    flow = resources.read_flow(resource)
    cannot = start_check(flow_name, flow, namespace)
    if cannot is not None:
        raise ApiError(404 if cannot.refusal == Refusal.NOT_FOUND else 409, cannot.message)
    assert isinstance(flow, Flow)
    return flow


# --- the application -----------------------------------------------------------------------------------


class Api:
    """The routes; the cluster is reached through `Kube` and `KubeAuth` in threads."""

    def __init__(self, settings: Settings, kube: Kube, auth: KubeAuth, tracer: trace.Tracer, view: View | None = None):
        self.settings, self.kube, self.auth, self.tracer = settings, kube, auth, tracer
        self.view = view
        self.version = client.VersionApi(kube.api)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.trace_middleware, self.error_middleware], client_max_size=self.settings.max_body
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get(ROUTE_OPENAPI, self.openapi)
        app.router.add_route("GET", ROUTE_WEBHOOK, self.webhook)
        app.router.add_route("POST", ROUTE_WEBHOOK, self.webhook)
        app.router.add_post(ROUTE_START, self.start)
        app.router.add_get(ROUTE_EXECUTION, self.get)
        app.router.add_get(ROUTE_FOLLOW, self.follow)
        app.router.add_delete(ROUTE_KILL, self.kill)
        app.router.add_post(ROUTE_RESUME, self.resume)
        app.router.add_post(ROUTE_RESTART, self.restart)
        app.router.add_post(ROUTE_LABELS, self.labels)
        app.router.add_post(ROUTE_REPLAY, self.replay)
        RunView(self).add_routes(app)
        return app

    # -- middlewares ----------------------------------------------------------------------------------

    @web.middleware
    async def trace_middleware(self, request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):
        """One SERVER span per request, continuing an incoming traceparent (malformed: a new trace)."""
        route = route_of(request)
        started = time.monotonic()
        if request.path in UNTRACED:
            return await handler(request)
        carrier = {
            k.lower(): v for k, v in request.headers.items() if k.lower() in ("traceparent", "tracestate", "baggage")
        }
        parent = W3CBaggagePropagator().extract(carrier, context=TraceContextTextMapPropagator().extract(carrier))
        name = f"{request.method} {route}" if route else request.method
        with attached(parent), self.tracer.start_as_current_span(
            name, kind=SpanKind.SERVER, attributes=server_attributes(request, route),
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        took = (time.monotonic() - started) * 1000
        namespace = loggable(request.match_info.get("namespace", "-"))  # from the path: %0A must not forge a line
        log.info("%s %s ns=%s -> %d (%.0f ms)", request.method, route or "(no route)", namespace, response.status,
                 took)  # fmt: skip
        return response

    @web.middleware
    async def error_middleware(self, request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):
        """Every error as JSON with a message; the request size is checked before anything else."""
        try:
            length = request.content_length
            if length is not None and length > self.settings.max_body:
                raise ApiError(413, self._too_large(length))
            return await handler(request)
        except ApiError as exc:
            return self._error(exc.status, exc.message, exc.headers)
        except AuthError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="flowpods"'} if exc.status == 401 else {}
            return self._error(exc.status, exc.message, headers)
        except web.HTTPRequestEntityTooLarge:
            return self._error(413, self._too_large(None))
        except web.HTTPException as exc:
            if exc.status == 404:
                return self._error(404, f"no route for {request.method} {self._safe_path(request)}")
            if exc.status == 405:
                return self._error(405, f"method {request.method} is not allowed here", {"Allow": exc.headers["Allow"]})
            return self._error(exc.status, exc.reason)
        except Exception:
            log.exception("%s %s failed", request.method, route_of(request) or "(no route)")
            return self._error(500, "internal error in the flowpods API; the operator log has the details")

    def _too_large(self, length: int | None) -> str:
        size = f" ({length} bytes)" if length is not None else ""
        return f"request body too large{size}: the limit is {self.settings.max_body} bytes (FLOWPODS_API_MAX_BODY)"

    @staticmethod
    def _safe_path(request: web.Request) -> str:
        return "/api/v1/executions/webhook/..." if request.path.startswith(PREFIX + "/webhook/") else request.path

    @staticmethod
    def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response(error_body(status, message), status=status, headers=headers)

    # -- helpers --------------------------------------------------------------------------------------

    async def _authorize(self, request: web.Request, namespace: str, verb: Verb, name: str | None = None) -> None:
        token = bearer_token(request.headers.get("Authorization"))
        try:
            user = await asyncio.to_thread(self.auth.authenticate, token)
            await asyncio.to_thread(self.auth.authorize, user, namespace, verb, name)
        except AuthError:
            raise
        except Exception as exc:
            log.warning("authentication through the API server failed: %s", type(exc).__name__)
            raise ApiError(503, "cannot check the token: the Kubernetes API server did not answer") from None
        trace.get_current_span().set_attribute("enduser.id", user.username)

    def _served(self, namespace: str) -> bool:
        return not self.settings.namespaces or namespace in self.settings.namespaces

    @staticmethod
    def _found(body: dict[str, Any] | None, namespace: str, name: str) -> dict[str, Any]:
        if body is None:
            raise ApiError(404, f"execution '{name}' not found in namespace '{namespace}'")
        return body

    async def _execution(self, namespace: str, name: str) -> dict[str, Any]:
        """The Execution as the API server has it now, or a 404."""
        return self._found(await asyncio.to_thread(self.kube.get, "executions", namespace, name), namespace, name)

    async def _current(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The operator's in-memory view when it has the execution, else the API server."""
        if self.view is not None and (body := self.view(namespace, name)) is not None:
            return body
        return await asyncio.to_thread(self.kube.get, "executions", namespace, name)

    async def _create(self, flow: Flow, flow_name: str, namespace: str, **fields: Any) -> dict[str, Any]:
        """Create the Execution whose parent is the current (API) span; retried on a name collision."""
        context = trace.get_current_span().get_span_context()
        traceparent = traceparent_header(context)
        tracestate = context.trace_state.to_header() if context.is_valid and context.trace_state else None
        carrier: dict[str, str] = {}
        W3CBaggagePropagator().inject(carrier)  # the caller's baggage, handed on to the task pods
        for _ in range(3):
            body = new_execution(namespace, flow_name, traceparent=traceparent, tracestate=tracestate,
                                 baggage=carrier.get("baggage"), **fields)  # fmt: skip
            if await asyncio.to_thread(self.kube.create, "executions", body):
                span = trace.get_current_span()
                span.set_attribute("flowpods.execution_id", body["metadata"]["name"])
                span.set_attribute("flowpods.flow_id", flow.id)
                span.set_attribute("flowpods.namespace", flow.namespace)
                return body
        raise ApiError(500, "could not find a free execution name")  # pragma: no cover - 36^8 names

    async def _wait(self, namespace: str, name: str, seconds: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + seconds
        body = await self._current(namespace, name)
        while not is_terminal(body) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            body = await self._current(namespace, name)
        return body

    async def _created_response(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        meta = body["metadata"]
        seconds = wait_seconds(request.query)
        current = body
        if seconds is not None:
            current = await self._wait(meta["namespace"], meta["name"], seconds) or body
        data = summary(current, self.settings.jaeger_url)
        return web.json_response(data, status=201, headers={"Location": data["links"]["self"]})

    # -- routes ---------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(self.version.get_code)
        except Exception as exc:
            return self._error(503, f"not ready: the Kubernetes API server is not reachable ({type(exc).__name__})")
        return web.json_response({"status": "ready"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def start(self, request: web.Request) -> web.Response:
        namespace, flow_name = request.match_info["namespace"], request.match_info["flowId"]
        wait_seconds(request.query)  # a bad query is a 400 before anything is created
        await self._authorize(request, namespace, "create")
        if not self._served(namespace):
            raise ApiError(404, f"namespace '{namespace}' is not watched by this operator (FLOWPODS_NAMESPACES)")
        given = await self._start_request(request)
        flow = load_flow(await asyncio.to_thread(self.kube.get, "flows", namespace, flow_name), namespace, flow_name)
        try:
            resolve_inputs(flow, given.inputs)
        except FlowError as exc:
            raise ApiError(400, "invalid inputs: " + "; ".join(exc.problems)) from None
        body = await self._create(
            flow, flow_name, namespace, inputs=given.inputs, labels=given.labels, trigger="api", trigger_data={}
        )
        return await self._created_response(request, body)

    async def _start_request(self, request: web.Request) -> StartRequest:
        """A JSON body, or a form (urlencoded or multipart) whose fields are inputs."""
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            inputs: dict[str, Any] = {}
            for key, value in form.items():
                if not isinstance(value, str):
                    raise ApiError(400, f"input '{key}' is a file upload; flowpods inputs take values, not files")
                inputs[key] = value
            return StartRequest(inputs=inputs)
        raw = await request.read()
        if not raw.strip():
            return StartRequest()
        try:
            check_json_depth(raw, "the body")
        except ShapeError as exc:
            raise ApiError(400, f"{exc} (inputs and labels must be flatter)") from None
        try:
            return StartRequest.model_validate_json(raw)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise ApiError(400, 'the body is not valid JSON: send {"inputs": {...}, "labels": {...}}') from None
            raise ApiError(400, f"invalid request body: {describe_validation(exc)}") from None

    async def webhook(self, request: web.Request) -> web.Response:
        namespace, flow_name, key = (request.match_info[k] for k in ("namespace", "flowId", "key"))
        not_found = ApiError(404, f"no webhook here: flow '{flow_name}' in namespace '{namespace}' has no enabled "
                                  f"Webhook trigger with this key")  # fmt: skip
        wait_seconds(request.query)
        if not self._served(namespace):
            raise not_found
        resource = await asyncio.to_thread(self.kube.get, "flows", namespace, flow_name)
        try:
            flow = load_flow(resource, namespace, flow_name)
        except ApiError:
            raise not_found from None
        if webhook_matches(flow, key) is None:
            raise not_found
        try:
            resolve_inputs(flow, {})
        except FlowError as exc:
            raise ApiError(400, "the flow cannot start from a webhook: " + "; ".join(exc.problems)) from None
        data = webhook_data(await request.read(), request.headers, request.query)
        body = await self._create(flow, flow_name, namespace, inputs={}, labels={}, trigger="webhook",
                                  trigger_data=data)  # fmt: skip
        return await self._created_response(request, body)

    async def get(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, namespace, "get", name)
        body = await self._execution(namespace, name)
        return web.json_response(summary(body, self.settings.jaeger_url))

    async def follow(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `status` with the summary at each change, until a terminal state."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, namespace, "get", name)
        body: dict[str, Any] | None = self._found(await self._current(namespace, name), namespace, name)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        last: tuple[Any, ...] | None = None
        beat = time.monotonic()
        try:
            while True:
                if body is None:
                    await response.write(sse_event("deleted", {"name": name, "namespace": namespace}))
                    break
                key = progress_key(body)
                if key != last:
                    last, beat = key, time.monotonic()
                    await response.write(sse_event("status", summary(body, self.settings.jaeger_url)))
                    if is_terminal(body):
                        break
                elif time.monotonic() - beat > FOLLOW_HEARTBEAT_SECONDS:
                    beat = time.monotonic()
                    await response.write(b": still running\n\n")
                await asyncio.sleep(POLL_SECONDS)
                body = await self._current(namespace, name)
            await response.write_eof()
        except ConnectionResetError:  # the follower went away: nothing to answer
            log.info("follower of %s/%s went away", loggable(namespace), loggable(name))
        return response

    async def kill(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, namespace, "create", name)
        body = await self._execution(namespace, name)
        if is_terminal(body):
            raise ApiError(409, f"execution '{name}' already ended {body['status']['state']}")
        await asyncio.to_thread(self.kube.annotate, "executions", namespace, name, {ANNOTATION_KILL: "true"})
        data = summary(body, self.settings.jaeger_url)
        data["message"] = "kill requested: running task runs are stopped and the execution ends KILLED"
        return web.json_response(data, status=202)

    # -- execution controls (core/controls.py): the request is an annotation the operator acts on once ----

    async def _control_target(self, request: web.Request) -> tuple[str, str, dict[str, Any], ExecutionStatus]:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, namespace, "update", name)
        body = await self._execution(namespace, name)
        return namespace, name, body, resources.stored_status(body) or ExecutionStatus()

    def _accepted(self, body: dict[str, Any], message: str) -> web.Response:
        data = summary(body, self.settings.jaeger_url)
        data["message"] = message
        return web.json_response(data, status=202)

    async def resume(self, request: web.Request) -> web.Response:
        """Kestra's resume: a PAUSED execution goes on, its Pause tasks get the onResume inputs (checked here)."""
        namespace, name, body, status = await self._control_target(request)
        problem = controls.resume_problem(status)
        stored = resources.stored_flow(body)
        if problem is not None or stored is None:
            raise ApiError(409, f"execution '{name}' cannot be resumed: {problem or 'it has not started'}")
        given = await self._resume_request(request)
        try:
            controls.resume_inputs(stored[0], status, given)
        except FlowError as exc:
            raise ApiError(400, "invalid onResume inputs: " + "; ".join(exc.problems)) from None
        value = controls.resume_value(uuid.uuid4().hex, given)
        await asyncio.to_thread(self.kube.annotate, "executions", namespace, name, {controls.ANNOTATION_RESUME: value})
        return self._accepted(body, "resume requested: the paused tasks go on")

    async def _resume_request(self, request: web.Request) -> dict[str, Any]:
        """A JSON body `{"inputs": {...}}`, or a form whose fields are the inputs (Kestra sends a form)."""
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return (await self._start_request(request)).inputs
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            check_json_depth(raw, "the body")
            return ResumeRequest.model_validate_json(raw).inputs
        except ShapeError as exc:
            raise ApiError(400, str(exc)) from None
        except ValidationError as exc:
            hint = 'send {"inputs": {...}}'
            raise ApiError(400, f"invalid request body ({hint}): {describe_validation(exc)}") from None

    async def restart(self, request: web.Request) -> web.Response:
        """Kestra's restart: a FAILED, KILLED or WARNING execution runs again from its failed task runs."""
        namespace, name, body, status = await self._control_target(request)
        stored = resources.stored_flow(body)
        problem = controls.restart_problem(stored[0], status) if stored else "it has not started"
        if problem is not None:
            raise ApiError(409, f"execution '{name}' cannot be restarted: {problem}")
        marks: dict[str, str | None] = {controls.ANNOTATION_RESTART: uuid.uuid4().hex, ANNOTATION_KILL: None}
        await asyncio.to_thread(self.kube.annotate, "executions", namespace, name, marks)
        return self._accepted(body, "restart requested: the failed task runs get a new attempt")

    async def labels(self, request: web.Request) -> web.Response:
        """Kestra's labels: the given labels replace the execution's (its `system.` labels are kept)."""
        namespace, name, body, _ = await self._control_target(request)
        raw = await request.read()
        try:
            check_json_depth(raw, "the body")
            given = LABELS.validate_json(raw)
        except ShapeError as exc:
            raise ApiError(400, str(exc)) from None
        except ValidationError as exc:
            raise ApiError(400, f'send a list [{{"key": ..., "value": ...}}]: {describe_validation(exc)}') from None
        wanted = {label.key: label.value for label in given}
        if any(key.startswith("system.") for key in wanted):
            raise ApiError(400, "system. labels are set by flowpods, not through the API")
        current = (body.get("spec") or {}).get("labels") or {}
        patch = labels_patch(body, replaced(current, wanted))
        stored = await asyncio.to_thread(self.kube.patch, "executions", namespace, name, patch)
        return web.json_response(summary(stored, self.settings.jaeger_url))

    async def replay(self, request: web.Request) -> web.Response:
        """Kestra's replay: a new execution of the flow, from the chosen task run (`?taskRunId=`) on, with
        copies of the original's task runs before it; 201 with the new execution."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        wait_seconds(request.query)
        await self._authorize(request, namespace, "create")
        original = await self._execution(namespace, name)
        flow_name = resources.flow_ref(original)
        flow = load_flow(await asyncio.to_thread(self.kube.get, "flows", namespace, flow_name), namespace, flow_name)
        taskrun_id = request.query.get("taskRunId") or None
        status = resources.stored_status(original) or ExecutionStatus()
        problem = replay_problem(flow, status, taskrun_id)
        if problem is not None:
            raise ApiError(
                409 if not status.state.terminal else 400, f"execution '{name}' cannot be replayed: {problem}"
            )
        marks = {resources.ANNOTATION_REPLAY_OF: name, resources.ANNOTATION_REPLAY_FROM: taskrun_id or ""}
        spec = original.get("spec") or {}
        body = await self._create(flow, flow_name, namespace, inputs=status.inputs or spec.get("inputs") or {},
                                  labels=spec.get("labels") or {}, trigger="api", trigger_data={},
                                  annotations=marks)  # fmt: skip
        return await self._created_response(request, body)


# --- serving -------------------------------------------------------------------------------------------


def protocol_error_message(status: int, exc: BaseException | None) -> str:
    """What a request aiohttp refused before any route saw it is told (the request's bytes not echoed)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "?"
        return f"a request header (or the request line) is too long: the limit is {limit} bytes per line"
    if isinstance(exc, BadHttpMessage):
        return f"malformed HTTP request: {loggable(str(exc.message), 120)}"
    if status >= 500:
        return "internal error in the flowpods API; the operator log has the details"
    return HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else f"HTTP error {status}"


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering the requests it refuses itself (headers over the limit, a
    malformed request line) as JSON errors like every other error of the API, logged in one line."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent, cannot send the error")
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.warning("refused a request from %s: %d %s", request.remote, status, type(exc).__name__)
        response = web.json_response(error_body(status, protocol_error_message(status, exc)), status=status)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """The API's runner: aiohttp's, whose protocol errors are JSON (see `_JsonErrorHandler`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorServer(server.request_handler, request_factory=server.request_factory,
                                loop=asyncio.get_running_loop(), **self._kwargs)  # fmt: skip


class Server:
    """The running API: its aiohttp runner and its tracer provider (flushed on stop)."""

    def __init__(self, runner: web.AppRunner, provider: TracerProvider, port: int):
        self.runner, self.provider, self.port = runner, provider, port

    async def stop(self) -> None:
        await self.runner.cleanup()
        await asyncio.to_thread(self.provider.shutdown)


async def serve(config: OperatorConfig, kube: Kube, view: View | None = None) -> Server:
    """Start the API on FLOWPODS_API_HOST:FLOWPODS_API_PORT in the running event loop."""
    provider = tracer_provider_from_env("flowpods")
    tracer = provider.get_tracer("flowpods.api.app")
    settings = Settings(max_body=config.api_max_body, jaeger_url=config.jaeger_url,
                        namespaces=tuple(config.namespaces))  # fmt: skip
    api = Api(settings, kube, KubeAuth(kube.api), tracer, view)
    runner = ApiRunner(api.app(), access_log=None)  # the access log would print webhook keys
    await runner.setup()
    site = web.TCPSite(runner, config.api_host, config.api_port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.api_port
    log.info("flowpods API listening on %s:%s", config.api_host, port)
    return Server(runner, provider, port)
