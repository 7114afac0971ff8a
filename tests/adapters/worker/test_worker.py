"""The worker: one attempt, run for real in-process (and once as a subprocess), read back like the operator does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowpods.core.records import MAX_TERMINATION_MESSAGE, SpanEvent, SpanRecord, TaskResult
from flowpods.core.results import parse_termination_message
from flowpods.telemetry.span_file import read_span_file
from flowpods.worker.runner import (
    EXIT_CANCELLED,
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_SUCCESS,
    EXIT_TIMEOUT,
    attach_spans,
    encode_result,
    format_log_line,
    is_falsy,
    parse_outputs_file,
    redact_headers,
    redact_url,
    run,
    without_stack_traces,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (TRACE|DEBUG|INFO|WARN|ERROR) "
    r"\[trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})\] (\S+): (.*)$"
)


@dataclass
class Attempt:
    code: int
    result: TaskResult
    raw: str
    spans: list[SpanRecord]
    stdout: str
    stderr: str

    def span(self, name: str) -> SpanRecord:
        return next(s for s in self.spans if s.name == name)

    @property
    def worker_span(self) -> SpanRecord:
        return next(s for s in self.spans if s.name.startswith("WORKER - "))

    def lines(self) -> list[tuple[str, str, str, str]]:
        """(level, trace id, span id, message) of every log line; every line must have the format."""
        found = []
        for line in self.stdout.splitlines():
            match = LOG_LINE.match(line)
            assert match, f"not a worker log line: {line!r}"
            found.append((match[1], match[2], match[3], match[5]))
        return found

    def messages(self) -> list[str]:
        return [message for *_, message in self.lines()]


def work_item(task_type: str, task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "executionId": "exec-1", "namespace": "company.team", "flowId": "hello", "taskRunId": "tr-1",
        "taskId": "t1", "attempt": 1, "taskType": task_type, "task": task, **fields,
    }  # fmt: skip


@pytest.fixture
def attempt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Run one attempt in-process with a real env dict, a real termination file and a real span file."""
    counter = iter(range(1000))

    def go(item: dict[str, Any] | str | None, env: dict[str, str] | None = None, via: str = "file") -> Attempt:
        n = next(counter)
        termination, spans = tmp_path / f"termination-{n}", tmp_path / f"spans-{n}.jsonl"
        environ = {
            "PATH": os.environ["PATH"],
            "FLOWPODS_TERMINATION_LOG": str(termination),
            "FLOWPODS_SPAN_FILE": str(spans),
            "TRACEPARENT": TRACEPARENT,
            **(env or {}),
        }
        taskrun_file = None
        if item is not None:
            text = item if isinstance(item, str) else json.dumps(item)
            if via == "file":
                taskrun_file = str(tmp_path / f"item-{n}.json")
                Path(taskrun_file).write_text(text)
            else:
                environ["FLOWPODS_TASKRUN"] = text
        code = run(taskrun_file, environ)
        raw = termination.read_text() if termination.exists() else ""
        out, err = capsys.readouterr()
        result = parse_termination_message(raw, code)
        recorded = read_span_file(spans)
        # every span the worker recorded went back with its result (they fit), compact: no service, no resource,
        # and stack traces dropped where the span would not fit with them
        compact = [without_stack_traces(span.model_copy(update={"service": None})) for span in recorded]
        handed = [without_stack_traces(span) for span in result.spans]
        assert sorted(handed, key=lambda s: s.span_id) == sorted(compact, key=lambda s: s.span_id)
        return Attempt(code, result.model_copy(update={"endedAt": None, "spans": []}), raw, recorded, out, err)

    yield go


# --- pure helpers ---------------------------------------------------------------------------------------


def test_log_line_format() -> None:
    when = datetime(2026, 11, 24, 22, 0, 0, 123999, tzinfo=UTC)
    line = format_log_line(when, "INFO", TRACE_ID, PARENT_ID, "hello", "message")
    assert line == f"2026-11-24T22:00:00.123Z INFO [trace_id={TRACE_ID} span_id={PARENT_ID}] hello: message"


@pytest.mark.parametrize(
    ("condition", "falsy"),
    [
        ("", True),
        (" False ", True),
        ("0", True),
        ("NULL", True),
        ("None", True),
        ("true", False),
        ("1", False),
        ("no", True),
        ("yes", False),
    ],
)
def test_falsy_conditions(condition: str, falsy: bool) -> None:  # fmt: skip
    assert is_falsy(condition) is falsy


def test_redaction_of_urls_and_headers() -> None:
    assert redact_url("https://bob:pw@api.example.com/x?token=abc&page=2") == (
        "https://REDACTED:REDACTED@api.example.com/x?token=REDACTED&page=2"
    )
    assert redact_url("http://127.0.0.1:8080/plain") == "http://127.0.0.1:8080/plain"
    headers = {"Authorization": "Bearer s3cret", "Cookie": "a=b", "X-API-Key": "k", "X-Auth-Token": "t"}
    headers["Accept"] = "*/*"
    assert redact_headers(headers) == {
        "Authorization": "REDACTED", "Cookie": "REDACTED", "X-API-Key": "REDACTED", "X-Auth-Token": "REDACTED",
        "Accept": "*/*",
    }  # fmt: skip


def test_outputs_file_must_be_a_json_object() -> None:
    assert parse_outputs_file("") == {}
    assert parse_outputs_file('{"a": [1, 2]}\n') == {"a": [1, 2]}
    with pytest.raises(Exception, match=r"FLOWPODS_OUTPUTS must hold a JSON object"):
        parse_outputs_file("[1, 2]")


def test_encode_result_fails_oversized_outputs_with_a_message_that_fits() -> None:
    small = TaskResult(outputs={"value": "x"})
    assert encode_result(small) == (small, '{"outputs":{"value":"x"},"error":null,"endedAt":null,"spans":[]}')
    big = TaskResult(outputs={"value": "x" * 5000})
    size = len(big.model_dump_json().encode())
    result, text = encode_result(big)
    assert result.outputs == {}
    assert result.error is not None and f"{size} bytes" in result.error and "4096" in result.error
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    # a huge error (multi-byte characters and escapes included) is shortened to fit
    result, text = encode_result(TaskResult(error="é\n\x00" * 3000))
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    assert result.error is not None and result.error.startswith("é\n\x00") and result.error.endswith("(truncated)")
    assert TaskResult.model_validate_json(text) == result


def test_parse_termination_message_is_tolerant() -> None:
    ok = parse_termination_message('{"outputs":{"value":"x"},"error":null}', 0)
    assert ok == TaskResult(outputs={"value": "x"})
    empty = parse_termination_message("", 137)
    assert empty.error is not None and "137" in empty.error
    unknown = parse_termination_message(None, None)
    assert unknown.error == "the worker exited with code unknown without reporting a result"
    garbage = parse_termination_message("panic: " + "x" * 500, 2)
    assert garbage.error is not None and "code 2" in garbage.error and "panic: " in garbage.error
    assert "x" * 193 in garbage.error and "x" * 194 not in garbage.error  # the first 200 characters
    # a clean-looking result from a process that exited non-zero is still a failure
    killed = parse_termination_message('{"outputs":{}}', 124)
    assert killed.error is not None and "124" in killed.error
    failed = parse_termination_message('{"outputs":{},"error":"boom"}', 1)
    assert failed.error == "boom"


# --- simple tasks, in-process ---------------------------------------------------------------------------


def test_log_lines_carry_the_worker_span_ids(attempt: Any) -> None:
    item = work_item("io.kestra.plugin.core.log.Log", {"message": ["first", "two\nlines"], "level": "WARN"})
    a = attempt(item)
    assert a.code == EXIT_SUCCESS and a.result == TaskResult()
    worker = a.worker_span
    assert worker.name == "WORKER - io.kestra.plugin.core.log.Log"
    assert (worker.trace_id, worker.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert worker.service == "flowpods-worker"
    assert worker.attributes == {
        "flowpods.taskrun_id": "tr-1", "flowpods.task_id": "t1", "flowpods.task_type": "io.kestra.plugin.core.log.Log",
        "flowpods.attempt": 1, "flowpods.execution_id": "exec-1", "flowpods.namespace": "company.team",
        "flowpods.flow_id": "hello", "cicd.pipeline.task.run.result": "success",
    }  # fmt: skip
    lines = a.lines()
    assert {(t, s) for _, t, s, _ in lines} == {(TRACE_ID, worker.span_id)}
    assert [m for lvl, _, _, m in lines if lvl == "WARN"] == ["first", "two", "lines"]


def test_return_and_output_values(attempt: Any) -> None:
    a = attempt(work_item("Return", {"format": "hello world"}), via="env")
    assert (a.code, a.result) == (EXIT_SUCCESS, TaskResult(outputs={"value": "hello world"}))
    b = attempt(work_item("io.kestra.plugin.core.output.OutputValues", {"values": {"n": 1, "l": [1, "a"]}}))
    assert b.result == TaskResult(outputs={"values": {"n": 1, "l": [1, "a"]}})
    assert b.raw.startswith('{"outputs":{"values":{"n":1,"l":[1,"a"]}},"error":null,"endedAt":"')  # compact JSON


@pytest.mark.parametrize(("condition", "fails"), [(None, True), ("true", True), ("FALSE", False), ("", False)])
def test_fail_with_condition(attempt: Any, condition: str | None, fails: bool) -> None:
    task: dict[str, Any] = {"errorMessage": "stop here"}
    if condition is not None:
        task["condition"] = condition
    a = attempt(work_item("io.kestra.plugin.core.execution.Fail", task))
    if fails:
        assert (a.code, a.result) == (EXIT_FAILURE, TaskResult(error="stop here"))
        span = a.worker_span
        assert span.status == "ERROR" and span.status_message == "stop here"
        assert span.attributes["cicd.pipeline.task.run.result"] == "failure"
        assert [e.name for e in span.events] == ["exception"]
        assert span.events[0].attributes["exception.message"] == "stop here"
        assert (a.lines()[-1][0], a.lines()[-1][3][:13]) == ("ERROR", "failure after")
    else:
        assert (a.code, a.result) == (EXIT_SUCCESS, TaskResult())
        assert a.worker_span.status == "UNSET"


def test_sleep_and_its_timeout(attempt: Any) -> None:
    started = time.monotonic()
    a = attempt(work_item("Sleep", {"duration": "PT0.2S"}))
    assert a.code == EXIT_SUCCESS and time.monotonic() - started >= 0.2
    b = attempt(work_item("Sleep", {"duration": "PT600S"}, timeoutSeconds=0.3))  # only the timeout ends it
    assert b.code == EXIT_TIMEOUT
    assert b.result.error is not None and "timed out after 0.3s" in b.result.error
    assert b.worker_span.attributes["cicd.pipeline.task.run.result"] == "timeout"


def test_outputs_over_4_kib_fail_the_task(attempt: Any) -> None:
    a = attempt(work_item("OutputValues", {"values": {"blob": "x" * 5000}}))
    assert a.code == EXIT_FAILURE
    assert a.result.outputs == {}
    assert a.result.error is not None and re.search(r"outputs were \d{4} bytes .*at most 4096", a.result.error)
    assert len(a.raw.encode()) <= MAX_TERMINATION_MESSAGE
    assert a.worker_span.status == "ERROR"
    assert a.worker_span.attributes["cicd.pipeline.task.run.result"] == "failure"


# --- invalid task runs ----------------------------------------------------------------------------------


def test_missing_or_invalid_task_runs_exit_2_with_a_result(attempt: Any) -> None:
    missing = attempt(None)
    assert missing.code == EXIT_INVALID
    assert "no task run given" in missing.stderr
    assert missing.result.error is not None and "FLOWPODS_TASKRUN" in missing.result.error
    broken = attempt("{not json", via="env")
    assert broken.code == EXIT_INVALID and "invalid task run in $FLOWPODS_TASKRUN" in broken.stderr
    bad_field = attempt(work_item("Log", {"message": "x", "colour": "red"}))
    assert bad_field.code == EXIT_INVALID
    assert bad_field.result.error == "task 't1' (Log): unknown field 'colour'"
    assert bad_field.worker_span.attributes["cicd.pipeline.task.run.result"] == "error"


def test_executor_side_tasks_are_refused(attempt: Any) -> None:
    a = attempt(work_item("io.kestra.plugin.core.flow.Subflow", {"namespace": "a", "flowId": "b"}))
    assert a.code == EXIT_INVALID
    assert a.result.error == "io.kestra.plugin.core.flow.Subflow runs in the executor, not in a worker"


def test_a_malformed_traceparent_starts_a_new_trace(attempt: Any) -> None:
    a = attempt(work_item("Return", {"format": "x"}), env={"TRACEPARENT": "00-nonsense-01"})
    assert a.code == EXIT_SUCCESS
    span = a.worker_span
    assert span.parent_span_id is None and span.trace_id != TRACE_ID
    assert any("not a valid W3C traceparent" in m for m in a.messages())
    assert a.lines()[0][1:3] == (span.trace_id, span.span_id)


def test_traces_disabled_records_no_spans(attempt: Any) -> None:
    a = attempt(work_item("Return", {"format": "x"}), env={"FLOWPODS_TRACES": "disabled"})
    assert a.code == EXIT_SUCCESS and a.spans == []
    assert a.lines()[0][1] == TRACE_ID  # log lines still lead to the trace


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_silent_collector_does_not_hold_the_exit(attempt: Any, protocol: str) -> None:
    """A collector that takes the connection and never answers: the SDK's own deadline (10 s) would hold the
    pod's exit that long after the task; the worker's export deadline (1 s) bounds it."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
        started = time.monotonic()
        a = attempt(work_item("Return", {"format": "x"}), env=env)
        held = time.monotonic() - started
    assert a.code == EXIT_SUCCESS and a.result.outputs == {"value": "x"}
    assert held < 5, f"the worker took {held:.1f}s with a silent collector"


# --- scripts --------------------------------------------------------------------------------------------


def test_shell_outputs_env_and_trace_context(attempt: Any) -> None:
    commands = [
        'echo "greeting=$GREETING"',
        'echo "child sees $TRACEPARENT"',
        "echo to-stderr >&2",
        """echo '::{"outputs": {"fromLine": 1, "both": "line"}}::'""",
        """printf '{"fromFile": [1, 2], "both": "file"}' > "$FLOWPODS_OUTPUTS" """,
    ]
    task = {"commands": commands, "env": {"GREETING": "hi there"}}
    a = attempt(work_item("io.kestra.plugin.scripts.shell.Commands", task), env={"TRACESTATE": "vendor=1"})
    assert a.code == EXIT_SUCCESS, a.stdout
    assert a.result.outputs == {"exitCode": 0, "vars": {"fromFile": [1, 2], "fromLine": 1, "both": "line"}}
    worker = a.worker_span
    lines = a.lines()
    assert ("INFO", "greeting=hi there") in [(lvl, m) for lvl, _, _, m in lines]
    assert ("WARN", "to-stderr") in [(lvl, m) for lvl, _, _, m in lines]
    assert f"child sees 00-{TRACE_ID}-{worker.span_id}-01" in a.messages()
    assert not any("::{" in m for m in a.messages())  # output lines are outputs, not log


def test_shell_stops_at_the_first_failing_command(attempt: Any) -> None:
    a = attempt(work_item("Shell", {"commands": ["echo before", "exit 3", "echo after"]}))
    assert a.code == EXIT_FAILURE
    assert a.result == TaskResult(error="Command failed with exit code 3")
    assert "before" in a.messages() and "after" not in a.messages()
    b = attempt(work_item("Shell", {"commands": ["false", "echo after"]}))  # set -e
    assert b.code == EXIT_FAILURE and "after" not in b.messages()


def test_shell_timeout_kills_the_process_group(attempt: Any, tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    commands = [f"(sleep 2; touch {marker}) &", "sleep 600"]
    a = attempt(work_item("Shell", {"commands": commands}, timeoutSeconds=0.5))  # only the timeout ends it
    assert a.code == EXIT_TIMEOUT
    assert a.result.error is not None and "timed out after 0.5s" in a.result.error
    time.sleep(2.5)
    assert not marker.exists(), "a background child of the script outlived the timeout"


def test_python_script_outputs(attempt: Any) -> None:
    script = "\n".join([
        "import json, os",
        "print('running', os.environ['WHO'])",
        "json.dump({'answer': 42}, open(os.environ['FLOWPODS_OUTPUTS'], 'w'))",
        """print('::' + json.dumps({'outputs': {'traceparent': os.environ['TRACEPARENT']}}) + '::')""",
    ])  # fmt: skip
    a = attempt(work_item("io.kestra.plugin.scripts.python.Script", {"script": script, "env": {"WHO": "me"}}))
    assert a.code == EXIT_SUCCESS, a.stdout
    assert a.result.outputs == {
        "exitCode": 0, "vars": {"answer": 42, "traceparent": f"00-{TRACE_ID}-{a.worker_span.span_id}-01"},
    }  # fmt: skip
    assert "running me" in a.messages()


def test_kestra_conventions_on_both_streams_from_the_kestra_library(attempt: Any) -> None:
    """`from kestra import Kestra` works in the worker; its lines become outputs, log levels and metrics."""
    script = "\n".join([
        "import sys",
        "from kestra import Kestra",
        "Kestra.outputs({'fromStdout': 1})",
        """print('::{"outputs": {"fromStderr": 2}}::', file=sys.stderr)""",
        "Kestra.counter('rows', 7, {'table': 'orders'})",
        "Kestra.logger().error('it broke')",
        "Kestra.logger().info('all fine')",
    ])  # fmt: skip
    a = attempt(work_item("io.kestra.plugin.scripts.python.Script", {"script": script}))
    assert a.code == EXIT_SUCCESS, a.stdout
    assert a.result.outputs == {"exitCode": 0, "vars": {"fromStdout": 1, "fromStderr": 2}}
    levels = {message.partition(" - ")[2]: level for level, _, _, message in a.lines() if " - " in message}
    assert levels == {"it broke": "ERROR", "all fine": "INFO"}
    worker = a.worker_span
    assert worker.attributes["flowpods.metric.rows"] == 7.0 and worker.attributes["process.exit.code"] == 0
    (metric,) = [e for e in worker.events if e.name == "metric"]
    assert metric.attributes == {
        "flowpods.metric.name": "rows", "flowpods.metric.type": "counter", "flowpods.metric.value": 7.0,
        "flowpods.metric.tag.table": "orders",
    }  # fmt: skip
    assert not any("::" in m for m in a.messages())


def test_before_commands_input_files_and_interpreter(attempt: Any) -> None:
    task = {
        "beforeCommands": ["export FROM_BEFORE=yes", "test -f data/in.csv"],
        "commands": ['echo "$FROM_BEFORE $(cat data/in.csv)"', 'echo "$0"'],
        "inputFiles": {"data/in.csv": "1,2"},
        "interpreter": ["/bin/sh", "-c"],
    }
    a = attempt(work_item("io.kestra.plugin.scripts.shell.Commands", task))
    assert a.code == EXIT_SUCCESS, a.stdout
    assert "yes 1,2" in a.messages() and "/bin/sh" in a.messages()


def test_shell_script_and_python_commands(attempt: Any) -> None:
    a = attempt(
        work_item("io.kestra.plugin.scripts.shell.Script", {"script": 'x=4\necho "::{\\"outputs\\": {\\"x\\": $x}}::"'})
    )
    assert a.code == EXIT_SUCCESS and a.result.outputs == {"exitCode": 0, "vars": {"x": 4}}, a.stdout
    task = {
        "commands": ["python main.py"],
        "inputFiles": {"main.py": "from kestra import Kestra\nKestra.outputs({'y': 5})"},
    }
    b = attempt(
        work_item("io.kestra.plugin.scripts.python.Commands", task),
        env={"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert b.code == EXIT_SUCCESS and b.result.outputs == {"exitCode": 0, "vars": {"y": 5}}, b.stdout


def test_a_failure_keeps_the_last_lines_of_stderr(attempt: Any) -> None:
    commands = ['for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "problem $i" >&2; done', "exit 4"]
    a = attempt(work_item("Shell", {"commands": commands, "warningOnStdErr": False}))
    assert a.code == EXIT_FAILURE
    expected = "\n".join(f"problem {i}" for i in range(3, 13))
    assert a.result.error == f"Command failed with exit code 4; the last lines of stderr:\n{expected}"
    assert ("INFO", "problem 1") in [(level, m) for level, _, _, m in a.lines()]  # warningOnStdErr: false
    assert a.worker_span.attributes["process.exit.code"] == 4


def test_python_bad_outputs_file_fails(attempt: Any) -> None:
    script = "import os\nopen(os.environ['FLOWPODS_OUTPUTS'], 'w').write('not json')"
    a = attempt(work_item("Python", {"script": script}))
    assert a.code == EXIT_FAILURE
    assert a.result.error is not None and "FLOWPODS_OUTPUTS must hold a JSON object" in a.result.error


# --- http.Request against a real server -----------------------------------------------------------------


@dataclass
class Server:
    url: str
    received: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            state.received.append({**{k.lower(): v for k, v in self.headers.items()}, ":path": self.path,
                                   ":body": body, ":method": self.command})  # fmt: skip
            code = 404 if self.path.startswith("/missing") else 200
            payload = json.dumps({"path": self.path, "body": body}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Multi", "a")
            self.send_header("X-Multi", "b")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_request_sends_the_client_span_as_traceparent(attempt: Any, server: Server) -> None:
    task = {
        "uri": f"{server.url}/hook?page=2", "method": "POST", "body": '{"a": 1}', "contentType": "application/json",
        "headers": {"Authorization": "Bearer s3cret-value", "X-Request": "yes"},
    }  # fmt: skip
    a = attempt(work_item("io.kestra.plugin.core.http.Request", task), env={"TRACESTATE": "vendor=abc"})
    assert a.code == EXIT_SUCCESS, a.stdout
    assert len(server.received) == 1
    sent = server.received[0]
    assert (sent[":method"], sent[":path"], sent[":body"]) == ("POST", "/hook?page=2", '{"a": 1}')
    assert sent["authorization"] == "Bearer s3cret-value" and sent["content-type"] == "application/json"
    assert sent["tracestate"] == "vendor=abc"
    client = a.span("POST")
    worker = a.worker_span
    assert sent["traceparent"] == f"00-{TRACE_ID}-{client.span_id}-01"
    assert client.kind == "CLIENT" and client.parent_span_id == worker.span_id
    assert worker.parent_span_id == PARENT_ID and client.trace_id == worker.trace_id == TRACE_ID
    port = int(server.url.rsplit(":", 1)[1])
    assert client.attributes == {
        "http.request.method": "POST", "url.full": f"{server.url}/hook?page=2", "server.address": "127.0.0.1",
        "server.port": port, "http.response.status_code": 200,
    }  # fmt: skip
    outputs = a.result.outputs
    assert outputs["code"] == 200 and outputs["uri"] == task["uri"]
    assert json.loads(outputs["body"]) == {"path": "/hook?page=2", "body": '{"a": 1}'}
    assert outputs["headers"]["x-multi"] == ["a", "b"]
    assert outputs["headers"]["content-type"] == ["application/json"]
    assert "s3cret" not in a.stdout  # the credential never reaches the log
    assert any("'Authorization': 'REDACTED'" in m for m in a.messages())


def test_http_error_status_fails_the_task(attempt: Any, server: Server) -> None:
    a = attempt(work_item("http.Request", {"uri": f"{server.url}/missing"}))
    assert a.code == EXIT_FAILURE
    assert a.result.error == f"GET {server.url}/missing returned HTTP 404 Not Found"
    client = a.span("GET")
    assert client.status == "ERROR" and client.attributes["error.type"] == "404"
    assert client.attributes["http.response.status_code"] == 404


def test_http_connection_refused_fails_with_error_type(attempt: Any, server: Server) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    a = attempt(work_item("http.Request", {"uri": f"http://127.0.0.1:{port}/"}))
    assert a.code == EXIT_FAILURE
    assert a.result.error is not None
    assert a.result.error.startswith(f"GET http://127.0.0.1:{port}/ failed: ConnectError")
    assert a.span("GET").attributes["error.type"] == "httpx.ConnectError"


# --- as a real process ----------------------------------------------------------------------------------


def test_worker_as_a_subprocess(tmp_path: Path) -> None:
    termination, spans = tmp_path / "termination", tmp_path / "spans.jsonl"
    env = {
        "PATH": os.environ["PATH"],
        "FLOWPODS_TASKRUN": json.dumps(work_item("Shell", {"commands": ["echo from-pod", "exit 5"]})),
        "FLOWPODS_TERMINATION_LOG": str(termination),
        "FLOWPODS_SPAN_FILE": str(spans),
        "TRACEPARENT": TRACEPARENT,
    }
    proc = subprocess.run([sys.executable, "-m", "flowpods", "worker"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == EXIT_FAILURE, proc.stderr
    result = parse_termination_message(termination.read_text(), proc.returncode)
    assert result.endedAt is not None, "the worker reports when it ended, to the microsecond"
    assert result.model_copy(update={"endedAt": None, "spans": []}) == TaskResult(
        error="Command failed with exit code 5"
    )
    (worker,) = read_span_file(spans)
    assert [span.span_id for span in result.spans] == [worker.span_id], "the span went back with the result"
    assert worker.parent_span_id == PARENT_ID and worker.status == "ERROR"
    line = next(line for line in proc.stdout.splitlines() if line.endswith("t1: from-pod"))
    assert f"[trace_id={TRACE_ID} span_id={worker.span_id}]" in line


def test_sigterm_cancels_reports_and_flushes(tmp_path: Path) -> None:
    """A deleted pod gets SIGTERM: the attempt ends as cancelled, with its result written and its span kept."""
    termination, spans = tmp_path / "termination", tmp_path / "spans.jsonl"
    item = tmp_path / "item.json"
    item.write_text(json.dumps(work_item("Shell", {"commands": ["echo started", "sleep 600"]})))
    env = {
        "PATH": os.environ["PATH"],
        "FLOWPODS_TERMINATION_LOG": str(termination),
        "FLOWPODS_SPAN_FILE": str(spans),
        "TRACEPARENT": TRACEPARENT,
    }
    proc = subprocess.Popen([sys.executable, "-m", "flowpods", "worker", "--taskrun-file", str(item)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.rstrip().endswith("t1: started"):
                break
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)  # far below the script's 600 s: only the signal can end it this soon
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == EXIT_CANCELLED, proc.stderr.read() if proc.stderr else ""
    result = parse_termination_message(termination.read_text(), code)
    assert result.error == "cancelled: received signal SIGTERM"
    assert result.spans == [], "a cancelled attempt sends its spans itself: its attempt may be closed already"
    (worker,) = read_span_file(spans)
    assert worker.attributes["cicd.pipeline.task.run.result"] == "cancellation" and worker.status == "ERROR"


def test_secrets_are_resolved_in_the_worker_and_masked_in_logs_and_outputs(attempt: Any) -> None:
    task = {
        "commands": ['echo "using $TOKEN"', """echo '::{"outputs": {"echoed": "'"$TOKEN"'"}}::'"""],
        "env": {"TOKEN": "[[flowpods-secret:API_TOKEN]]"},
    }
    a = attempt(work_item("Shell", task), env={"FLOWPODS_SECRET_API_TOKEN": "s3cr3t"})
    assert a.code == EXIT_SUCCESS, a.stdout
    assert "using ******" in a.messages()
    assert a.result.outputs["vars"] == {"echoed": "******"}
    assert "s3cr3t" not in a.stdout + a.raw


def test_kestras_base64_secret_variables_are_read_too(attempt: Any) -> None:
    a = attempt(work_item("Return", {"format": "[[flowpods-secret:K]]"}), env={"SECRET_K": "dmFsdWU="})
    assert a.code == EXIT_SUCCESS and a.result.outputs == {"value": "******"}


def test_a_missing_secret_fails_the_attempt_with_its_name(attempt: Any) -> None:
    a = attempt(work_item("Log", {"message": "[[flowpods-secret:NOPE]]"}))
    assert a.code == EXIT_INVALID and "secret 'NOPE' is not available" in (a.result.error or "")


def test_a_failure_that_quotes_a_secret_is_masked_in_the_span_and_carries_no_worker_stack(attempt: Any) -> None:
    task = {"errorMessage": "token [[flowpods-secret:API_TOKEN]] refused"}
    a = attempt(work_item("io.kestra.plugin.core.execution.Fail", task), env={"FLOWPODS_SECRET_API_TOKEN": "s3cr3t"})
    assert a.code == EXIT_FAILURE and a.result.error == "token ****** refused"
    (event,) = a.worker_span.events
    assert event.attributes["exception.message"] == "token ****** refused"
    assert "exception.stacktrace" not in event.attributes  # a task's own failure, not a bug in the worker
    assert "s3cr3t" not in a.raw + a.stdout


# --- spans handed back with the result ------------------------------------------------------------------


def _span(name: str, n: int, attributes: dict[str, Any] | None = None) -> SpanRecord:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return SpanRecord(name=name, trace_id=TRACE_ID, span_id=f"{n:016x}", parent_span_id=PARENT_ID, start=when,
                      end=when, attributes=attributes or {}, service="flowpods-worker")  # fmt: skip


def test_spans_go_back_with_the_result_as_far_as_4_kib_allow_worker_span_first() -> None:
    _, text = encode_result(TaskResult(outputs={"value": "x" * 1000}))
    clients = [_span("GET", n, {"url.full": "http://example/" + "p" * 600}) for n in range(1, 8)]
    worker = _span("WORKER - io.kestra.plugin.core.http.Request", 99)
    kept_text, left = attach_spans(text, [*clients, worker])
    assert len(kept_text.encode()) <= MAX_TERMINATION_MESSAGE
    result = TaskResult.model_validate_json(kept_text)
    assert result.outputs == {"value": "x" * 1000}
    assert result.spans[0].span_id == worker.span_id and result.spans[0].service is None
    assert left, "seven 600-byte spans and 1 KiB of outputs cannot all fit"
    handed = {s.span_id for s in result.spans}
    assert handed.isdisjoint(s.span_id for s in left)
    assert handed | {s.span_id for s in left} == {s.span_id for s in [*clients, worker]}, "every span, once"


def test_a_span_too_big_with_its_stack_trace_goes_back_without_it() -> None:
    _, text = encode_result(TaskResult(error="boom"))
    worker = _span("WORKER - Shell", 1)
    worker.events.append(
        SpanEvent(name="exception", time=worker.start,
                  attributes={"exception.type": "TaskFailure", "exception.stacktrace": "frame\n" * 1000})
    )  # fmt: skip
    kept_text, left = attach_spans(text, [worker])
    (handed,) = TaskResult.model_validate_json(kept_text).spans
    assert left == [] and handed.events[0].attributes == {"exception.type": "TaskFailure"}


def test_spans_that_do_not_fit_are_sent_live_and_a_missing_collector_does_not_keep_the_worker(tmp_path: Path) -> None:
    """An endpoint where nothing listens: the live export of the leftovers fails, the attempt still succeeds
    with its result written (the time it took is printed, not asserted)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    termination = tmp_path / "termination"
    outputs = {"values": {"big": "y" * 3900}}  # leaves no room for the WORKER span
    env = {
        "PATH": os.environ["PATH"],
        "FLOWPODS_TASKRUN": json.dumps(work_item("OutputValues", outputs)),
        "FLOWPODS_TERMINATION_LOG": str(termination),
        "TRACEPARENT": TRACEPARENT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "flowpods", "worker"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    print(f"worker with an unreachable collector: {time.monotonic() - started:.2f}s")
    assert proc.returncode == EXIT_SUCCESS, proc.stderr
    result = parse_termination_message(termination.read_text(), proc.returncode)
    assert result.outputs == outputs and result.spans == []
    assert "1 spans that did not fit in the result were lost" in proc.stderr
