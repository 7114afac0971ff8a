"""The operator's configuration from environment variables."""

from flowpods.kube.config import OperatorConfig, PodCleanup
from flowpods.telemetry.otel import TraceLevel


def test_defaults():
    config = OperatorConfig.from_env({})
    assert config.namespaces == [] and config.worker_command == ["flowpods", "worker"]
    assert config.worker_otlp_endpoint is None and config.pod_cleanup == PodCleanup.KEEP
    assert config.traces == TraceLevel.DEFAULT and config.execution_ttl_seconds is None


def test_values_from_the_environment():
    config = OperatorConfig.from_env(
        {
            "FLOWPODS_NAMESPACES": "a, b,,",
            "FLOWPODS_WORKER_COMMAND": "/venv/bin/flowpods worker",
            "FLOWPODS_POD_CLEANUP": "on-success",
            "FLOWPODS_EXECUTION_TTL": "3600",
            "FLOWPODS_TRACES": "disabled",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert config.namespaces == ["a", "b"] and config.worker_command == ["/venv/bin/flowpods", "worker"]
    assert config.pod_cleanup == PodCleanup.ON_SUCCESS and config.execution_ttl_seconds == 3600
    assert config.traces == TraceLevel.DISABLED
    assert (config.worker_otlp_endpoint, config.worker_otlp_protocol) == ("http://collector:4318", "http/protobuf")


def test_a_traces_only_endpoint_is_not_handed_to_workers_as_a_generic_one():
    config = OperatorConfig.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert config.worker_otlp_endpoint is None
