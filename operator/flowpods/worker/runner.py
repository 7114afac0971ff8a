"""`flowpods worker`: run exactly one task-run attempt inside a pod (or a local subprocess) and report back.

The executor has already rendered the task; the worker only runs it, under a `WORKER - <type>` span that is
the child of the TRACEPARENT it was given, and writes a TaskResult as JSON to the termination-message file,
which is how Kubernetes hands at most 4 KiB back to the operator without any other channel.

Conventions (the operator and the local runner rely on them):
- exit codes: 0 success, 1 task failure, 2 invalid task run (unreadable, unknown or executor-side type),
  124 timeout (as coreutils `timeout`), 143 cancelled by SIGTERM (128 + 15).
- `timeoutSeconds` (else the task's own `timeout`) bounds Sleep, script tasks and http.Request: a script's
  whole process group is killed, the result's error says "timed out after Ns", span result `timeout`.
- script tasks (core.scripts): Kestra's `::{...}::` lines on stdout and stderr (outputs, metrics, logs);
  a failure carries the last lines of stderr. In the task's own image they run beside it (worker.attached).
- log lines on stdout: `<UTC time, ms>Z <LEVEL> [trace_id=<32 hex> span_id=<16 hex>] <taskId>: <message>`,
  ids of the WORKER span; one line per line of a multi-line message.
- outputs: Log none; Return {"value"}; OutputValues {"values"}; Sleep and Fail none;
  http.Request {"code", "headers" (name -> list of values, names lowercase, as Kestra), "body", "uri"};
  script tasks {"exitCode", "vars"}; LocalFiles {"uris": {}}. A failed attempt reports no outputs.
- a WorkingDirectory's task runs through worker.workdir (`--step`), in the directory FLOWPODS_WORKDIR.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from flowpods.core import secrets
from flowpods.core.clock import utcnow
from flowpods.core.model import (
    TYPE_ALIASES,
    Echo,
    Fail,
    HttpRequest,
    LocalFiles,
    Log,
    OutputValues,
    Return,
    ScriptTask,
    Sleep,
    TaskBase,
    build_validators,
    describe_errors,
)
from flowpods.core.records import (
    DEFAULT_TERMINATION_LOG,
    MAX_TERMINATION_MESSAGE,
    OUTPUTS_ENV,
    TASKRUN_ENV,
    TASKRUN_FILE_ENV,
    TERMINATION_LOG_ENV,
    WORKDIR_ENV,
    WORKER_SERVICE,
    SpanRecord,
    TaskResult,
    WorkItem,
)
from flowpods.core.redaction import redact_headers, redact_url
from flowpods.core.scripts import StderrTail, command_argv, failure_message, parse_convention_line, script_file
from flowpods.core.truth import is_truthy
from flowpods.telemetry.otel import (
    CollectingProcessor,
    SpanRecordExporter,
    attached,
    service_resource,
    span_file_provider,
    span_ids,
)
from flowpods.telemetry.otlp_settings import TraceLevel, trace_level

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 143

RESULT_ATTRIBUTE = "cicd.pipeline.task.run.result"
_TRACE_ENV = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


class InvalidWorkItem(Exception):
    """The task run cannot be run at all (exit 2): nothing was attempted."""


class TaskFailure(Exception):
    """The attempt ran and failed (exit 1)."""

    result = "failure"
    exit_code = EXIT_FAILURE


class TaskTimeout(TaskFailure):
    result = "timeout"
    exit_code = EXIT_TIMEOUT


class Cancelled(BaseException):
    """SIGTERM (pod deleted): a BaseException so no task code swallows it."""


# --- pure helpers ---------------------------------------------------------------------------------------


def format_log_line(when: datetime, level: str, trace_id: str, span_id: str, task_id: str, message: str) -> str:
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return f"{stamp} {level} [trace_id={trace_id} span_id={span_id}] {task_id}: {message}"


def is_falsy(condition: str) -> bool:
    """A Fail task's condition that is false does not fail (the same truthiness as If)."""
    return not is_truthy(condition)


def parse_outputs_file(text: str) -> dict[str, Any]:
    """What a script wrote to $FLOWPODS_OUTPUTS: nothing, or one JSON object."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise TaskFailure(f"${OUTPUTS_ENV} must hold a JSON object; it held {text[:200]!r}")
    return data


def encode_result(result: TaskResult) -> tuple[TaskResult, str]:
    """The result and its compact JSON, made to fit the 4 KiB termination message.

    Outputs that do not fit fail the task (a silently truncated output would be worse); an error message
    that does not fit is shortened.
    """
    text = result.model_dump_json()
    size = len(text.encode())
    if size <= MAX_TERMINATION_MESSAGE:
        return result, text
    error = result.error
    if result.outputs:
        error = (
            f"the task's outputs were {size} bytes of JSON; at most {MAX_TERMINATION_MESSAGE} bytes fit "
            "in a termination message"
        )
    assert error is not None

    def fitted(keep: int) -> tuple[TaskResult, str]:
        limited = TaskResult(error=error if keep >= len(error) else error[:keep] + " ...(truncated)")
        return limited, limited.model_dump_json()

    low, high = 0, len(error)  # the longest prefix that fits: escapes make bytes per character vary
    while low < high:
        middle = (low + high + 1) // 2
        if len(fitted(middle)[1].encode()) <= MAX_TERMINATION_MESSAGE:
            low = middle
        else:
            high = middle - 1
    return fitted(low)


def parent_context(environ: Mapping[str, str]) -> tuple[otel_context.Context, str | None]:
    """The W3C context from TRACEPARENT/TRACESTATE/BAGGAGE, and a warning when TRACEPARENT was unusable."""
    carrier = {name.lower(): environ[name] for name in _TRACE_ENV if environ.get(name)}
    ctx = TraceContextTextMapPropagator().extract(carrier)
    ctx = W3CBaggagePropagator().extract(carrier, context=ctx)
    warning = None
    if "traceparent" in carrier and not trace_api.get_current_span(ctx).get_span_context().is_valid:
        warning = f"TRACEPARENT {carrier['traceparent'][:80]!r} is not a valid W3C traceparent; starting a new trace"
    return ctx, warning


def trace_env(ctx: otel_context.Context | None = None) -> dict[str, str]:
    """TRACEPARENT/TRACESTATE/BAGGAGE for a child process, so instrumented programs nest their spans."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=ctx)
    W3CBaggagePropagator().inject(carrier, context=ctx)
    return {name.upper(): value for name, value in carrier.items()}


# --- the imperative shell -------------------------------------------------------------------------------


class TaskLog:
    """Log lines on stdout carrying the WORKER span's ids; thread-safe (script output is relayed)."""

    def __init__(self, stream: IO[str], task_id: str, trace_id: str, span_id: str):
        self.stream, self.task_id, self.trace_id, self.span_id = stream, task_id, trace_id, span_id
        self.secrets: list[str] = []  # values masked in every line, as Kestra masks secrets in logs
        self._lock = threading.Lock()

    def __call__(self, level: str, message: str) -> None:
        now = utcnow()
        message = secrets.mask(message, self.secrets)
        lines = [
            format_log_line(now, level, self.trace_id, self.span_id, self.task_id, line)
            for line in (message.splitlines() or [""])
        ]
        with self._lock:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()


@dataclass
class Context:
    item: WorkItem
    log: TaskLog
    environ: Mapping[str, str]
    tracer: trace_api.Tracer
    timeout: float | None


def load_work_item(taskrun_file: str | None, environ: Mapping[str, str]) -> WorkItem:
    path = taskrun_file or environ.get(TASKRUN_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidWorkItem(f"cannot read the task run file {path}: {exc.strerror or exc}") from None
        source = path
    elif environ.get(TASKRUN_ENV):
        text, source = environ[TASKRUN_ENV], f"${TASKRUN_ENV}"
    else:
        raise InvalidWorkItem(f"no task run given: pass --taskrun-file, or set {TASKRUN_FILE_ENV} or {TASKRUN_ENV}")
    try:
        return WorkItem.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
        raise InvalidWorkItem(f"invalid task run in {source}: {problems}") from None


def secret_lookup(environ: Mapping[str, str]) -> Callable[[str], str | None]:
    """FLOWPODS_SECRET_<NAME> (from the pod's secretKeyRef, or `flowpods run --secrets`), else Kestra's own
    convention for open-source installs: SECRET_<NAME>, base64-encoded."""

    def lookup(name: str) -> str | None:
        if secrets.env_name(name) in environ:
            return environ[secrets.env_name(name)]
        encoded = environ.get("SECRET_" + name)
        if encoded is None:
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidWorkItem(f"SECRET_{name} is not base64 (Kestra's convention for secrets)") from None

    return lookup


def resolve_secrets(item: WorkItem, environ: Mapping[str, str], log: TaskLog) -> WorkItem:
    """The work item with its secret references replaced; the values are then masked in every log line."""
    try:
        task, used = secrets.resolve(item.task, secret_lookup(environ))
    except secrets.MissingSecret as exc:
        raise InvalidWorkItem(str(exc)) from None
    log.secrets = used
    return item.model_copy(update={"task": task}) if used else item


def prepare() -> None:
    """Build the validators of the task types a worker runs. The model builds them on first use
    (`defer_build`); the local runner's fork server calls this once, so that an attempt forked from it
    validates its task at once, as before that change. It builds a worker's Resource once too (its result
    thrown away): the SDK's first use in a process is what costs, 4-5 ms in each forked attempt, ~2 ms after it."""
    build_validators({cls for cls in TYPE_ALIASES.values() if cls.runs_in_worker})
    service_resource(WORKER_SERVICE)


def validate_task(item: WorkItem) -> TaskBase:
    cls = TYPE_ALIASES.get(item.taskType)
    if cls is None:
        raise InvalidWorkItem(f"unknown task type {item.taskType!r}")
    if not cls.runs_in_worker:
        raise InvalidWorkItem(f"{item.taskType} runs in the executor, not in a worker")
    data = {"id": item.taskId, "type": item.taskType, **item.task}
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(describe_errors(exc, data))
        raise InvalidWorkItem(f"task '{item.taskId}' ({item.taskType}): {problems}") from None


def write_termination_message(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"flowpods worker: cannot write the result to {path}: {exc.strerror or exc}", file=sys.stderr)


def run_log(task: Log, ctx: Context) -> dict[str, Any]:
    for message in [task.message] if isinstance(task.message, str) else task.message:
        ctx.log(task.level, message)
    return {}


def run_echo(task: Echo, ctx: Context) -> dict[str, Any]:
    ctx.log(task.level, task.format)
    return {}


def run_sleep(task: Sleep, ctx: Context) -> dict[str, Any]:
    seconds = task.duration.total_seconds()
    if ctx.timeout is not None and ctx.timeout < seconds:
        time.sleep(max(ctx.timeout, 0))
        raise TaskTimeout(f"timed out after {ctx.timeout:g}s (sleeping {seconds:g}s)")
    time.sleep(max(seconds, 0))
    return {}


def run_fail(task: Fail, ctx: Context) -> dict[str, Any]:
    if task.condition is not None and is_falsy(task.condition):
        ctx.log("INFO", f"condition {task.condition!r} is false: not failing")
        return {}
    raise TaskFailure(task.errorMessage)


def run_http(task: HttpRequest, ctx: Context) -> dict[str, Any]:
    import httpx  # imported here: every other task type starts faster without it

    url = httpx.URL(task.uri)
    shown = secrets.mask(redact_url(task.uri), ctx.log.secrets)
    headers = dict(task.headers)
    if task.contentType and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = task.contentType
    attributes: dict[str, Any] = {
        "http.request.method": task.method,
        "url.full": shown,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
    }
    timeout = httpx.Timeout(ctx.timeout) if ctx.timeout is not None else httpx.Timeout(None, connect=30.0)
    with ctx.tracer.start_as_current_span(
        task.method, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False,
        set_status_on_exception=False,
    ) as span:  # fmt: skip
        for name in [k for k in headers if k.lower() in ("traceparent", "tracestate")]:
            del headers[name]
        TraceContextTextMapPropagator().inject(headers)
        W3CBaggagePropagator().inject(headers)
        ctx.log("INFO", f"{task.method} {shown}")
        ctx.log("DEBUG", f"request headers: {redact_headers(headers)}")
        try:
            with httpx.Client(timeout=timeout, follow_redirects=True) as client:
                response = client.request(task.method, url, headers=headers, content=task.body)
        except httpx.HTTPError as exc:
            span.set_attribute("error.type", f"{type(exc).__module__}.{type(exc).__qualname__}")
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            if isinstance(exc, httpx.TimeoutException):
                raise TaskTimeout(f"{task.method} {shown} timed out after {ctx.timeout:g}s") from exc
            raise TaskFailure(f"{task.method} {shown} failed: {type(exc).__name__}: {exc}") from exc
        span.set_attribute("http.response.status_code", response.status_code)
        ctx.log("INFO", f"{task.method} {shown} -> {response.status_code} ({len(response.content)} bytes)")
        if response.status_code >= 400:
            span.set_attribute("error.type", str(response.status_code))
            span.set_status(Status(StatusCode.ERROR))
            raise TaskFailure(
                f"{task.method} {shown} returned HTTP {response.status_code} {response.reason_phrase}".rstrip()
            )
    response_headers: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        response_headers.setdefault(name.lower(), []).append(value)
    return {"code": response.status_code, "headers": response_headers, "body": response.text, "uri": task.uri}


class ScriptOutput:
    """What a script's two streams said: Kestra's `::{...}::` messages on either, and stderr's last lines."""

    def __init__(self, ctx: Context, stderr_level: str):
        self.ctx, self.stderr_level = ctx, stderr_level
        self.outputs: dict[str, Any] = {}
        self.tail = StderrTail()
        self._lock = threading.Lock()

    def line(self, line: str, stderr: bool) -> None:
        found = parse_convention_line(line)
        if found is None:
            if stderr:
                with self._lock:
                    self.tail.add(line)
            self.ctx.log(self.stderr_level if stderr else "INFO", line)
            return
        with self._lock:
            self.outputs.update(found.outputs)
        for level, message in found.logs:
            self.ctx.log(level, message)
        span = trace_api.get_current_span()
        for metric in found.metrics:
            attributes: dict[str, str | float] = {
                "flowpods.metric.name": metric.name,
                "flowpods.metric.type": metric.type,
                "flowpods.metric.value": metric.value,
            }
            attributes.update({f"flowpods.metric.tag.{k}": v for k, v in metric.tags.items()})
            span.add_event("metric", attributes)
            span.set_attribute(f"flowpods.metric.{metric.name}", metric.value)

    def relay(self, stream: IO[bytes], stderr: bool, span: trace_api.Span) -> None:
        with trace_api.use_span(span, end_on_exit=False):
            for raw in iter(stream.readline, b""):
                self.line(raw.decode("utf-8", errors="replace").rstrip("\r\n"), stderr)
        stream.close()

    def start(self, streams: list[tuple[Callable[[], IO[bytes]], bool]]) -> list[threading.Thread]:
        """One relay thread per stream (opened in the thread: a FIFO's open waits for its writer)."""
        span = trace_api.get_current_span()
        threads = [
            threading.Thread(target=lambda o=opener, e=err: self.relay(o(), e, span), daemon=True)
            for opener, err in streams
        ]
        for thread in threads:
            thread.start()
        return threads

    def timed_out(self, what: str) -> TaskTimeout:
        tail = self.tail.text()
        return TaskTimeout(f"{what}; the last lines of stderr:\n{tail}" if tail else what)

    def result(self, code: int, outputs_file: Path) -> dict[str, Any]:
        trace_api.get_current_span().set_attribute("process.exit.code", code)
        if code != 0:
            raise TaskFailure(failure_message(code, self.tail.text()))
        variables = parse_outputs_file(outputs_file.read_text(encoding="utf-8", errors="replace"))
        variables.update(self.outputs)
        return {"exitCode": code, "vars": variables}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(Exception):
        proc.wait(timeout=10)


def write_input_files(task: ScriptTask, workdir: Path) -> None:
    """inputFiles (inline content) and a Script task's script, in the working directory."""
    files = dict(task.inputFiles)
    if (script := script_file(task)) is not None:
        files[script[0]] = script[1]
    write_files(files, workdir)


def working_directory(environ: Mapping[str, str], own: Path) -> Path:
    """A WorkingDirectory's shared directory (FLOWPODS_WORKDIR), else the task's own."""
    return Path(environ[WORKDIR_ENV]) if environ.get(WORKDIR_ENV) else own


def write_files(files: Mapping[str, str], workdir: Path) -> None:
    for name, content in files.items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def run_local_files(task: LocalFiles, ctx: Context) -> dict[str, Any]:
    """LocalFiles `inputs`: files written into the working directory, for the tasks after it."""
    workdir = working_directory(ctx.environ, Path.cwd())
    write_files(task.inputs, workdir)
    for name in task.inputs:
        ctx.log("INFO", f"wrote {name}")
    return {"uris": {}}


def stderr_level(task: ScriptTask) -> str:
    """warningOnStdErr (Kestra's default true): stderr lines are warnings; false: plain INFO lines."""
    return "WARN" if task.warningOnStdErr else "INFO"


def run_process(argv: list[str], task: ScriptTask, ctx: Context, tmp: Path) -> dict[str, Any]:
    """Run a script in its own process group: stdout/stderr relayed, outputs from file and `::{}::` lines."""
    outputs_file = tmp / "outputs.json"
    outputs_file.touch()
    workdir = working_directory(ctx.environ, tmp / "work")
    workdir.mkdir(exist_ok=True)
    write_input_files(task, workdir)
    env = {k: v for k, v in ctx.environ.items() if k not in _TRACE_ENV}
    env.update(task.env)
    env[OUTPUTS_ENV] = str(outputs_file)
    env.update(trace_env())  # the WORKER span is current here
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout, proc.stderr
    output = ScriptOutput(ctx, stderr_level(task))
    relays = output.start([(lambda: out, False), (lambda: err, True)])
    try:
        code = proc.wait(timeout=ctx.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        for thread in relays:
            thread.join(timeout=5)
        raise output.timed_out(f"timed out after {ctx.timeout:g}s; the process group was killed") from None
    finally:
        if proc.poll() is None:  # cancelled (SIGTERM) while waiting
            _kill_group(proc)
        for thread in relays:
            thread.join(timeout=5)
    return output.result(code, outputs_file)


def local_python(task: ScriptTask, environ: Mapping[str, str]) -> str:
    """The worker's own Python (it has the `kestra` package), unless the task's env sets PATH."""
    if "PATH" in task.env:
        return shutil.which("python3", path=task.env["PATH"]) or sys.executable
    return sys.executable


def run_script(task: ScriptTask, ctx: Context) -> dict[str, Any]:
    argv = command_argv(task, shlex.quote(local_python(task, ctx.environ)))
    with tempfile.TemporaryDirectory(prefix="flowpods-") as tmp:
        return run_process(argv, task, ctx, Path(tmp))


RUNNERS: dict[type[TaskBase], Callable[[Any, Context], dict[str, Any]]] = {
    Log: run_log,
    Echo: run_echo,
    Return: lambda task, ctx: {"value": task.format},
    OutputValues: lambda task, ctx: {"values": task.values},
    Sleep: run_sleep,
    Fail: run_fail,
    HttpRequest: run_http,
    LocalFiles: run_local_files,
}


def runner_for(task: TaskBase) -> Callable[[Any, Context], dict[str, Any]]:
    return run_script if isinstance(task, ScriptTask) else RUNNERS[type(task)]


def effective_timeout(item: WorkItem, task: TaskBase) -> float | None:
    """The executor's timeoutSeconds, else the task's own `timeout`."""
    if item.timeoutSeconds is not None:
        return item.timeoutSeconds
    return task.timeout.total_seconds() if task.timeout is not None else None


def execute(
    item: WorkItem,
    provider: TracerProvider,
    environ: Mapping[str, str],
    stream: IO[str],
    runners: Mapping[type[TaskBase], Callable[[Any, Context], dict[str, Any]]] | None = None,
) -> tuple[str, int]:
    """Run the attempt under its WORKER span; the result's JSON and the exit code (`runners` replace the
    usual way to run some task types, e.g. a script in the task's own container)."""
    tracer = provider.get_tracer("flowpods.worker.runner")
    parent, warning = parent_context(environ)
    attributes: dict[str, str | int] = {
        "flowpods.taskrun_id": item.taskRunId,
        "flowpods.task_id": item.taskId,
        "flowpods.task_type": item.taskType,
        "flowpods.attempt": item.attempt,
        "flowpods.execution_id": item.executionId,
        "flowpods.namespace": item.namespace,
        "flowpods.flow_id": item.flowId,
    }
    with attached(parent), tracer.start_as_current_span(
        f"WORKER - {item.taskType}", kind=SpanKind.INTERNAL, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        trace_id, span_id = span_ids(span)
        log = TaskLog(stream, item.taskId, trace_id, span_id)
        if warning:
            log("WARN", warning)
        started = time.monotonic()
        outputs: dict[str, Any] = {}
        error: str | None = None
        outcome, code = "success", EXIT_SUCCESS
        try:
            item = resolve_secrets(item, environ, log)
            task = validate_task(item)
            ctx = Context(item, log, environ, tracer, effective_timeout(item, task))
            log("INFO", f"attempt {item.attempt} of task run {item.taskRunId} ({item.taskType})")
            outputs = (runners or {}).get(type(task), runner_for(task))(task, ctx)
        except InvalidWorkItem as exc:
            error, outcome, code = str(exc), "error", EXIT_INVALID
            record_failure(span, exc, error, log.secrets)
        except TaskFailure as exc:
            error, outcome, code = str(exc), exc.result, exc.exit_code
            record_failure(span, exc, error, log.secrets)
        except Cancelled as exc:
            error, outcome, code = f"cancelled: {exc}", "cancellation", EXIT_CANCELLED
            record_failure(span, exc, str(exc), log.secrets)
        except Exception as exc:  # a bug or an OS error: still a reported, traced failure, with its stack
            error, outcome, code = f"{type(exc).__name__}: {exc}", "failure", EXIT_FAILURE
            record_failure(span, exc, str(exc), log.secrets, stack=True)
        ended = utcnow()
        outputs, error = secrets.mask(outputs, log.secrets), secrets.mask(error, log.secrets)
        result, text = encode_result(TaskResult(outputs=outputs if error is None else {}, error=error, endedAt=ended))
        if error is None and result.error is not None:
            span.add_event("exception", {"exception.type": "OutputsTooLarge", "exception.message": result.error})
            outcome, code = "failure", EXIT_FAILURE
        elapsed = time.monotonic() - started
        if result.error is None:
            log("INFO", f"succeeded in {elapsed:.3f}s")
        else:
            span.set_status(Status(StatusCode.ERROR, result.error[:1024]))
            span.set_attribute("error.type", outcome)
            log("ERROR", f"{outcome} after {elapsed:.3f}s: {result.error}")
        span.set_attribute(RESULT_ATTRIBUTE, outcome)
    return text, code


def record_failure(span: Any, exc: BaseException, message: str, masked: list[str], stack: bool = False) -> None:
    """The span's `exception` event, its message masked like the log. A task's own failure (a command's exit
    code, a Fail task, a timeout) carries no stack: the worker's frames say nothing about the task; a bug does."""
    attributes = {
        "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exception.message": secrets.mask(message, masked),
    }
    if stack:
        attributes["exception.stacktrace"] = secrets.mask("".join(traceback.format_exception(exc)), masked)
    span.add_event("exception", attributes)


@contextmanager
def sigterm_cancels() -> Iterator[None]:
    """Turn SIGTERM into Cancelled so the span ends, the result is written and spans are flushed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Cancelled(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def script_classes() -> list[type[ScriptTask]]:
    return [cls for cls in TYPE_ALIASES.values() if issubclass(cls, ScriptTask)]


def run(taskrun_file: str | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """Run one task-run attempt; returns the exit code (see the module docstring).

    The worker's finished spans go back with its result (as many as fit in the termination message), for the
    operator to export with the task run's own span: a collector that is away while the pod runs loses none.
    Spans that do not fit, and those of an attempt cancelled by SIGTERM (its pod deleted: a kill may have
    closed the attempt already), are sent from here, bounded by LIVE_EXPORT_TIMEOUT so a missing collector
    never holds the task's exit longer.
    """
    termination_log = environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG
    try:
        item = load_work_item(taskrun_file, environ)
    except InvalidWorkItem as exc:
        print(f"flowpods worker: {exc}", file=sys.stderr)
        write_termination_message(termination_log, encode_result(TaskResult(error=str(exc)))[1])
        return EXIT_INVALID
    text, code, left = attempt(item, environ, sys.stdout)
    write_termination_message(termination_log, text)
    if left:
        export_live(left, environ)
    return code


def attempt(
    item: WorkItem,
    environ: Mapping[str, str],
    stream: IO[str],
    runners: Mapping[type[TaskBase], Callable[[Any, Context], dict[str, Any]]] | None = None,
) -> tuple[str, int, list[SpanRecord]]:
    """Run the attempt with its spans collected: the result's JSON (with the spans that fit), the exit code,
    and the spans to send from here (those that did not fit; all of a cancelled attempt's)."""
    collected = CollectingProcessor()
    if trace_level(environ) == TraceLevel.DISABLED:
        provider = TracerProvider()  # ids for the log lines, nothing recorded anywhere
    else:
        provider = span_file_provider(WORKER_SERVICE, environ)
        provider.add_span_processor(collected)
    try:
        with sigterm_cancels():
            text, code = execute(item, provider, environ, stream, runners)
    finally:
        provider.shutdown()
    if code == EXIT_CANCELLED:  # a kill may have closed the attempt already: nobody would read them back
        return text, code, collected.finished()
    text, left = attach_spans(text, collected.finished())
    return text, code, left


def attach_spans(
    text: str, spans: list[SpanRecord], limit: int = MAX_TERMINATION_MESSAGE
) -> tuple[str, list[SpanRecord]]:
    """The result's JSON with the spans that fit in `limit` bytes added, and the spans that did not fit.

    The WORKER span goes first; a span too big is tried once more without its exceptions' stack traces.
    Spans are written compactly (defaults left out; the service and resource are the operator's to add).
    """
    ordered = sorted(spans, key=lambda span: not span.name.startswith("WORKER - "))
    head = text.rstrip()
    if not head.endswith("}") or not spans:
        return text, list(spans)
    kept: list[str] = []
    left: list[SpanRecord] = []
    size = len(head.encode()) + len(b',"spans":[]')
    for span in ordered:
        compact = span.model_copy(update={"service": None, "resource": {}})
        for candidate in (compact, without_stack_traces(compact)):
            encoded = candidate.model_dump_json(exclude_defaults=True)
            extra = len(encoded.encode()) + (1 if kept else 0)
            if size + extra <= limit:
                kept.append(encoded)
                size += extra
                break
        else:
            left.append(span)
    if not kept:
        return text, left
    return head[:-1] + ',"spans":[' + ",".join(kept) + "]}", left


def without_stack_traces(span: SpanRecord) -> SpanRecord:
    events = [
        event.model_copy(
            update={"attributes": {k: v for k, v in event.attributes.items() if k != "exception.stacktrace"}}
        )
        for event in span.events
    ]
    return span.model_copy(update={"events": events})


LIVE_EXPORT_TIMEOUT = 1.0  # seconds: the most a missing collector may hold a task's exit


def export_live(spans: list[SpanRecord], environ: Mapping[str, str]) -> None:
    """Send the spans that did not fit in the result straight to the collector, giving up after a second."""
    exporter = SpanRecordExporter.from_env(environ, WORKER_SERVICE, timeout=LIVE_EXPORT_TIMEOUT)
    if exporter is None:
        return
    try:
        if not exporter.export(spans):
            print(f"flowpods worker: {len(spans)} spans that did not fit in the result were lost", file=sys.stderr)
    finally:
        exporter.shutdown()
