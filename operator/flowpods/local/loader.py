"""Reading flows from YAML: a Flow resource (apiVersion/kind/metadata/spec) or a plain Kestra flow file.

Both shapes reduce to the same flow document, so a Kestra flow runs unchanged and a Flow resource
applied to a cluster runs the same way locally.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flowpods.core.model import Flow, FlowError, flow_document, parse_flow

API_GROUP = "flowpods.io"
API_VERSION = f"{API_GROUP}/v1alpha1"


def load_flow_file(path: str | Path) -> Flow:
    """Load one flow; a FlowError names the file and what is wrong."""
    path = Path(path)
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
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
