"""The operator's configuration from environment variables."""

import pytest
from pydantic import ValidationError

from flowpods.kube.config import OperatorConfig, PodCleanup, invalid_settings
from flowpods.telemetry.otlp_settings import TraceLevel


def test_defaults():
    config = OperatorConfig.from_env({})
    assert config.namespaces == [] and config.worker_command == ["flowpods", "worker"]
    assert config.worker_otlp_endpoint is None and config.pod_cleanup == PodCleanup.KEEP
    assert config.traces == TraceLevel.DEFAULT and config.execution_ttl_seconds is None
    assert config.reconcile_threads == 16


def test_values_from_the_environment():
    config = OperatorConfig.from_env(
        {
            "FLOWPODS_NAMESPACES": "a, b,,",
            "FLOWPODS_WORKER_COMMAND": "/venv/bin/flowpods worker",
            "FLOWPODS_POD_CLEANUP": "on-success",
            "FLOWPODS_EXECUTION_TTL": "3600",
            "FLOWPODS_TRACES": "disabled",
            "FLOWPODS_RECONCILE_THREADS": "24",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert config.namespaces == ["a", "b"] and config.worker_command == ["/venv/bin/flowpods", "worker"]
    assert config.pod_cleanup == PodCleanup.ON_SUCCESS and config.execution_ttl_seconds == 3600
    assert config.traces == TraceLevel.DISABLED and config.reconcile_threads == 24
    assert (config.worker_otlp_endpoint, config.worker_otlp_protocol) == ("http://collector:4318", "http/protobuf")


@pytest.mark.parametrize("threads", ["0", "-1", "1000", "many"])
def test_reconcile_threads_out_of_range_are_refused(threads):
    with pytest.raises(ValidationError, match="reconcile_threads"):
        OperatorConfig.from_env({"FLOWPODS_RECONCILE_THREADS": threads})


def test_refused_settings_are_named_by_their_variables_without_their_values():
    with pytest.raises(ValidationError) as refused:
        OperatorConfig.from_env({"FLOWPODS_API_PORT": "secret-8080", "FLOWPODS_POD_CLEANUP": "sometimes"})
    said = invalid_settings(refused.value)
    assert "FLOWPODS_API_PORT: Input should be a valid integer" in said
    assert "FLOWPODS_POD_CLEANUP: Input should be 'keep', 'on-success' or 'on-completion'" in said
    assert "secret" not in said and "sometimes" not in said


def test_workers_export_over_http_protobuf_unless_told_otherwise():
    assert OperatorConfig.from_env({}).worker_otlp_protocol == "http/protobuf"
    assert OperatorConfig.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}).worker_otlp_protocol == "grpc"
    told = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "FLOWPODS_WORKER_OTLP_PROTOCOL": "http/protobuf"}
    assert OperatorConfig.from_env(told).worker_otlp_protocol == "http/protobuf"


def test_a_traces_only_endpoint_is_not_handed_to_workers_as_a_generic_one():
    config = OperatorConfig.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert config.worker_otlp_endpoint is None


def test_a_loopback_endpoint_is_not_handed_to_worker_pods():
    from flowpods.kube.config import loopback_worker_endpoint

    for endpoint in ("http://127.0.0.1:4317", "http://localhost:4318", "127.0.0.2:4317", "http://[::1]:4317"):
        problem = loopback_worker_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        assert problem and endpoint in problem and "FLOWPODS_WORKER_OTLP_ENDPOINT" in problem
    fine = [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger-collector.tracing:4317"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://10.244.77.1:4317"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "FLOWPODS_WORKER_OTLP_ENDPOINT": "http://10.0.0.9:4317",
        },
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "FLOWPODS_TRACES": "disabled"},
        {},
    ]
    assert [loopback_worker_endpoint(env) for env in fine] == [None] * len(fine)


def test_the_operator_refuses_to_start_with_a_loopback_worker_endpoint(tmp_path):
    """Before it talks to any cluster: exit 2 and a message that says what to set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWPODS_", "KUBERNETES_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", KUBECONFIG=str(tmp_path / "none"))
    proc = subprocess.run(
        [sys.executable, "-m", "flowpods", "operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start" in proc.stderr and "FLOWPODS_WORKER_OTLP_ENDPOINT" in proc.stderr


def test_the_operator_refuses_to_start_with_an_invalid_setting(tmp_path):
    """Exit 2 and the setting named, not a traceback."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWPODS_", "KUBERNETES_"))}
    env.update(FLOWPODS_RECONCILE_THREADS="0", FLOWPODS_TRACES="DISABLED", KUBECONFIG=str(tmp_path / "none"))
    proc = subprocess.run(
        [sys.executable, "-m", "flowpods", "operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start: FLOWPODS_RECONCILE_THREADS: Input should be greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_api_counts_as_unreachable_only_past_the_threshold():
    from flowpods.kube.health import ApiContact

    contact = ApiContact()
    contact.record(100.0, None)
    assert contact.problem(1000.0, 30) is None
    contact.record(200.0, "ConnectionRefusedError")
    contact.record(220.0, "ConnectionRefusedError")
    assert contact.problem(229.0, 30) is None
    problem = contact.problem(231.0, 30)
    assert problem and "unreachable for 31s" in problem and "ConnectionRefusedError" in problem
    contact.record(232.0, None)
    assert contact.problem(1000.0, 30) is None
