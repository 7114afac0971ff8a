"""`flowpods run`, the embedded runtime, exporting to a real Jaeger: the same trace as in a cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import parent_id, spans_by_name, tags, wait_for_spans

REPO = Path(__file__).resolve().parents[2]
FLOWPODS = str(Path(sys.executable).parent / "flowpods")


def run_locally(testenv_info, *args: str, protocol: str = "grpc") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    port = testenv_info.otlp_grpc_port if protocol == "grpc" else testenv_info.otlp_http_port
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    return subprocess.run([FLOWPODS, "run", *args], capture_output=True, text=True, env=env, timeout=120)


def test_make_run_flow_exports_one_trace_with_the_subflow_under_its_executor_span(testenv_info, jaeger):
    result = run_locally(testenv_info, str(REPO / "examples" / "parent.yaml"), protocol="http/protobuf")
    assert result.returncode == 0, result.stderr
    assert "RUN parent" in result.stdout and "◀ slowest" in result.stdout
    trace_id = re.search(r"trace id: ([0-9a-f]{32})", result.stdout).group(1)
    trace = wait_for_spans(jaeger, trace_id, {"RUN parent": 1, "RUN hello-world": 1, "TASKRUN hello": 2,
                           "EXECUTOR - io.kestra.plugin.core.flow.Subflow": 1,
                           "WORKER - io.kestra.plugin.core.log.Log": 2})  # fmt: skip
    spans = spans_by_name(trace)
    (parent_run,) = spans["RUN parent"]
    (subflow,) = spans["EXECUTOR - io.kestra.plugin.core.flow.Subflow"]
    (child_run,) = spans["RUN hello-world"]
    assert parent_id(subflow) == parent_run["spanID"] and parent_id(child_run) == subflow["spanID"]
    workers = spans["WORKER - io.kestra.plugin.core.log.Log"]
    taskruns = {s["spanID"] for s in spans["TASKRUN hello"]}
    assert len(workers) == 2 and {parent_id(w) for w in workers} == taskruns
    assert tags(parent_run)["flowpods.trigger"] == "local"
