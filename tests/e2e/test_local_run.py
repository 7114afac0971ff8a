"""`flowpods run`, the embedded runtime, exporting to a real Jaeger: the same trace as in a cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import assert_parent_example_trace, tags

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
    spans = assert_parent_example_trace(jaeger, trace_id)
    assert tags(spans["RUN parent"][0])["flowpods.trigger"] == "local"
