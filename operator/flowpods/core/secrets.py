"""Secrets by reference: `secret('NAME')` renders to a marker, and only the worker ever holds the value.

The executor (operator or local runner) never reads a secret: a rendered task run carries
`[[flowpods-secret:NAME]]`, the pod receives the value through an environment variable filled by a
`secretKeyRef` on the Kubernetes Secret SECRET_OBJECT (key NAME), and the worker replaces the markers just
before running the task. Whatever the worker then writes (log lines, outputs, error messages, span
attributes) has every secret value masked as Kestra masks them in logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "ENV_PREFIX", "MASK", "SECRET_MARKER", "SECRET_OBJECT", "MissingSecret", "env_name", "mask", "names", "resolve",
    "secret_marker",
]  # fmt: skip

SECRET_OBJECT = "flowpods-secrets"  # the Kubernetes Secret, in the Execution's namespace; one key per secret
ENV_PREFIX = "FLOWPODS_SECRET_"
MASK = "******"
MIN_MASKED_LENGTH = 3  # masking "a" everywhere would make every log line unreadable and reveal nothing
SECRET_MARKER = re.compile(r"\[\[flowpods-secret:([A-Za-z0-9_.\-]{1,253})\]\]")
"""What a rendered value holds where it used a secret; here, not beside `secret()` in the expressions, so that
the worker, which replaces the markers, does not import the expression language (jinja2, ~36 ms of its start)."""


def secret_marker(name: str) -> str:
    """What `secret('NAME')` renders to: a reference the worker replaces with the value from its environment."""
    return f"[[flowpods-secret:{name}]]"


class MissingSecret(ValueError):
    """A task refers to a secret the worker was not given."""


def env_name(name: str) -> str:
    """The environment variable the worker reads a secret from: FLOWPODS_SECRET_ + NAME, `.`/`-` as `_`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name)


def names(value: Any, pattern: re.Pattern[str] = SECRET_MARKER) -> list[str]:
    """The secrets a value refers to, sorted, each once: by default the markers a rendered value holds (another
    `pattern` finds them in an unrendered one)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.update(pattern.findall(node))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(key)
                walk(item)

    walk(value)
    return sorted(found)


def resolve(value: Any, lookup: Callable[[str], str | None]) -> tuple[Any, list[str]]:
    """The value with every marker replaced by the secret, and the secret values used (to mask them)."""
    used: dict[str, str] = {}

    def secret(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in used:
            found = lookup(name)
            if found is None:
                raise MissingSecret(
                    f"secret '{name}' is not available: in a cluster, add the key '{name}' to the Secret "
                    f"'{SECRET_OBJECT}' of the Execution's namespace; locally, pass it with --secrets"
                )
            used[name] = found
        return used[name]

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return SECRET_MARKER.sub(secret, node)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {walk(key): walk(item) for key, item in node.items()}
        return node

    return walk(value), sorted(set(used.values()), key=len, reverse=True)


def mask(value: Any, secrets: list[str]) -> Any:
    """Every secret value (long enough to mean something) replaced by MASK in strings, lists and map values."""
    secrets = [s for s in secrets if len(s) >= MIN_MASKED_LENGTH]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [mask(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: mask(item, secrets) for key, item in value.items()}
    return value
