"""flowpods: Kestra-style flows run as Kubernetes pods, traced end to end with OpenTelemetry."""

__version__ = "0.1.0"
