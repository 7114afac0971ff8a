"""`python -m flowpods`: the same as the `flowpods` command (the local runner starts workers this way)."""

from flowpods.cli.main import entry

raise SystemExit(entry())
