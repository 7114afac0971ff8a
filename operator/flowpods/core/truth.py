"""Kestra's truthiness, one definition for If conditions (executor) and Fail conditions (worker)."""

from __future__ import annotations

from typing import Any

FALSY = frozenset({"", "false", "0", "-0", "0.0", "null", "none", "no", "off"})


def is_truthy(rendered: Any) -> bool:
    if isinstance(rendered, bool):
        return rendered
    if rendered is None:
        return False
    return str(rendered).strip().lower() not in FALSY
