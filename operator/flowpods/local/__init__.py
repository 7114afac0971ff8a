"""local layer; see docs/architecture.md."""
