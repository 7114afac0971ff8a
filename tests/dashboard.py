"""The metric names each query of the chart's Grafana dashboard asks for (shared by the chart's unit test and
the end-to-end test that compares them with what Prometheus scraped)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[1] / "charts" / "flowpods" / "dashboards" / "flowpods.json"

# PromQL words that are not metric names (aggregation modifiers, keywords)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, labels
    in `by (...)`, matchers in `{...}`, ranges in `[...]` or quoted strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if match.group() in KEYWORDS or rest.startswith("("):
            continue
        names.add(match.group())
    return names


def dashboard_metric_names(path: Path = DASHBOARD) -> dict[str, set[str]]:
    """{panel title: metric names its queries ask for}."""
    dashboard = json.loads(path.read_text())
    return {
        panel["title"]: set().union(*(metric_names(target["expr"]) for target in panel.get("targets", [])))
        for panel in dashboard["panels"]
    }
