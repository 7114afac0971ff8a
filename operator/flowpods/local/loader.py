"""Reading flows from YAML: a Flow resource (apiVersion/kind/metadata/spec) or a plain Kestra flow file.

Both shapes reduce to the same flow document, so a Kestra flow runs unchanged and a Flow resource
applied to a cluster runs the same way locally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flowpods.core.model import Flow, FlowError, flow_document, parse_flow

API_GROUP = "flowpods.io"
API_VERSION = f"{API_GROUP}/v1alpha1"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key repeated in one mapping is an error (PyYAML keeps the last one silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # unhashable keys are refused by the flow model anyway
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_yaml(text: str) -> list[Any]:
    """The documents of a YAML text; a repeated key is an error, as in Kestra."""
    return list(yaml.load_all(text, Loader=_UniqueKeyLoader))  # a SafeLoader subclass


def load_flow_file(path: str | Path) -> Flow:
    """Load one flow; a FlowError names the file and what is wrong."""
    path = Path(path)
    try:
        documents = [doc for doc in parse_yaml(path.read_text()) if doc is not None]
    except OSError as exc:
        raise FlowError([f"{path}: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise FlowError([f"{path}: not valid YAML: {exc}"]) from None
    flows = [doc for doc in documents if isinstance(doc, dict) and (doc.get("kind") == "Flow" or "tasks" in doc)]
    if len(flows) != 1:
        raise FlowError([f"{path}: expected exactly one flow, found {len(flows)}"])
    try:
        return parse_flow(flow_document(flows[0]))
    except FlowError as exc:
        raise FlowError([f"{path}: {problem}" for problem in exc.problems]) from None


class FlowCatalog:
    """The flows a local run can reach (for subflows): every flow file in a folder, read lazily."""

    def __init__(self, folder: str | Path | None = None, flows: list[Flow] | None = None):
        self.folder = Path(folder) if folder else None
        self._flows: dict[tuple[str, str], Flow] = {(f.namespace, f.id): f for f in flows or []}
        self._scanned = False

    def add(self, flow: Flow) -> None:
        self._flows[(flow.namespace, flow.id)] = flow

    def get(self, namespace: str, flow_id: str) -> Flow | None:
        if (namespace, flow_id) not in self._flows and not self._scanned:
            self._scan()
        return self._flows.get((namespace, flow_id))

    def _scan(self) -> None:
        self._scanned = True
        if self.folder is None:
            return
        for path in sorted([*self.folder.glob("*.yaml"), *self.folder.glob("*.yml")]):
            try:
                flow = load_flow_file(path)
            except FlowError:
                continue  # an unrelated broken file must not stop this run; it is named if it is asked for
            self._flows.setdefault((flow.namespace, flow.id), flow)
