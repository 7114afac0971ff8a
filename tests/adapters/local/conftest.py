"""The in-process OTLP/HTTP collector of the telemetry tests, for the local runner's."""

from tests.adapters.telemetry.test_otel import collector  # noqa: F401 - the fixture
