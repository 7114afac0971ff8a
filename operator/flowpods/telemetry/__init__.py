"""telemetry layer; see docs/architecture.md."""
