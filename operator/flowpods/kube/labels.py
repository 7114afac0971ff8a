"""An Execution's Kestra labels as Kubernetes sees them: `spec.labels` holds them all (the `labels` template
variable reads it), and each is mirrored where Kubernetes allows, so `kubectl get executions -l` finds it.

A label `key=value` is mirrored as the Kubernetes label `label.flowpods.io/<key>=<value>` when `key` is a
valid label name (63 characters, alphanumerics, `-`, `_`, `.`) and `value` a valid label value; when only the
value is not valid (spaces, longer than 63 characters) as the annotation `label.flowpods.io/<key>`; a key that
is not a valid name is kept in `spec.labels` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MIRROR_PREFIX = "label.flowpods.io/"
SYSTEM_PREFIX = "system."
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def valid_value(value: str) -> bool:
    return value == "" or bool(_NAME.match(value))


def replaced(current: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """Kestra's `POST .../labels`: the given labels replace the execution's, except its `system.` ones."""
    kept = {k: v for k, v in current.items() if k.startswith(SYSTEM_PREFIX) and k not in given}
    return {**kept, **given}


def labels_patch(execution: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The merge patch that gives the Execution these labels: spec.labels replaced (a merge patch merges
    maps, so removed keys are set to null), mirrors added, changed or removed."""
    meta = execution.get("metadata") or {}
    old_spec = (execution.get("spec") or {}).get("labels") or {}
    spec: dict[str, Any] = {key: None for key in old_spec if key not in labels}
    spec.update(labels)
    mirrored: dict[str, Any] = {k: None for k in meta.get("labels") or {} if k.startswith(MIRROR_PREFIX)}
    noted: dict[str, Any] = {k: None for k in meta.get("annotations") or {} if k.startswith(MIRROR_PREFIX)}
    for key, value in labels.items():
        if not _NAME.match(key):
            continue
        if valid_value(value):
            mirrored[MIRROR_PREFIX + key] = value
        else:
            noted[MIRROR_PREFIX + key] = value
    return {"metadata": {"labels": mirrored, "annotations": noted}, "spec": {"labels": spec}}
