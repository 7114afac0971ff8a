"""Reading flows from YAML: a Flow resource (apiVersion/kind/metadata/spec) or a plain Kestra flow file.

Both shapes reduce to the same flow document, so a Kestra flow runs unchanged and a Flow resource
applied to a cluster runs the same way locally.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flowpods.core.bounds import MAX_DEPTH, ShapeError, check_shape
from flowpods.core.model import Flow, FlowError, flow_document, parse_flow

API_GROUP = "flowpods.io"
API_VERSION = f"{API_GROUP}/v1alpha1"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key repeated in one mapping is an error (PyYAML keeps the last one silently)."""


class _FastUniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same with libyaml's parser where PyYAML was built with it (its wheels are): reading the flows of a
    folder, for their triggers, was most of a `flowpods run` with the pure-Python one (~50 ms for five files)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # unhashable keys are refused by the flow model anyway
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


for _loader in (_UniqueKeyLoader, _FastUniqueKeyLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


class _TooDeep(Exception):
    pass


def parse_yaml(text: str, *, fast: bool = True) -> list[Any]:
    """The documents of a YAML text, none nested deeper than MAX_DEPTH (_TooDeep); a repeated key is an error,
    as in Kestra. `fast`: libyaml's parser, else PyYAML's own, whose messages `read_documents` reports."""
    loader = _FastUniqueKeyLoader if fast else _UniqueKeyLoader
    if _yaml_depth(text, MAX_DEPTH, loader) > MAX_DEPTH:  # before the composer, which recurses
        raise _TooDeep
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]


MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest flow file read (a Flow resource must fit in etcd's 1.5 MB anyway)."""


def _yaml_depth(text: str, limit: int, loader: type[yaml.SafeLoader]) -> int:
    """How deep the YAML nests, from the parser's events (iterative; the composer after it recurses)."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


def _yaml_where(exc: yaml.YAMLError) -> str:
    """Where and why PyYAML stopped, in one line (its own message spans several, with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {' '.join(str(problem).split())}"


def read_text(path: Path) -> str:
    """A flow file's text; FlowError if it cannot be read, is too large or is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FlowError([f"{path}: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise FlowError([f"{path}: the file is {len(raw)} bytes; a flow file may have at most {MAX_FILE_BYTES}"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FlowError([f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]) from None


def read_documents(path: Path, text: str | None = None) -> list[Any]:
    """The YAML documents of a file (`text`: already read); FlowError names the file and what is wrong, never a
    traceback."""
    if text is None:
        text = read_text(path)
    try:
        try:
            documents = parse_yaml(text)
        except yaml.YAMLError:  # read again by PyYAML's parser: its messages and its nesting are the ones reported
            documents = parse_yaml(text, fast=False)
    except yaml.YAMLError as exc:
        raise FlowError([f"{path}: not valid YAML{_yaml_where(exc)}"]) from None
    except _TooDeep:
        problem = f"the YAML is nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}"
        raise FlowError([f"{path}: {problem}"]) from None
    try:
        check_shape(documents, "the file")
    except ShapeError as exc:
        raise FlowError([f"{path}: {exc}"]) from None
    return documents


def load_flow_file(path: str | Path) -> Flow:
    """Load one flow; a FlowError names the file and what is wrong."""
    path = Path(path)
    return _parse_in(path, read_flow_document(path))


def read_flow_document(path: Path, text: str | None = None) -> dict[str, Any]:
    """The one flow document of a file, not validated yet (`parse_flow` does that); FlowError if it holds none."""
    documents = read_documents(path, text)
    flows = [doc for doc in documents if isinstance(doc, dict) and (doc.get("kind") == "Flow" or "tasks" in doc)]
    if not flows:
        mappings = [doc for doc in documents if isinstance(doc, dict)]
        if len(mappings) == 1 and not ({"kind", "apiVersion"} & mappings[0].keys()):
            what = "no 'tasks': a flow needs an id, a namespace and at least one task"
        elif not documents:
            what = "the file is empty: a flow needs an id, a namespace and at least one task"
        else:
            what = "no flow in this file (a Flow resource, or a Kestra flow with id, namespace and tasks)"
        raise FlowError([f"{path}: {what}"])
    if len(flows) > 1:
        raise FlowError([f"{path}: {len(flows)} flows in one file; put each flow in its own file"])
    return flow_document(flows[0])


def _parse_in(path: Path, document: dict[str, Any]) -> Flow:
    try:
        return parse_flow(document)
    except FlowError as exc:
        raise FlowError([f"{path}: {problem}" for problem in exc.problems]) from None


MAX_CATALOG_FILES = 2000
"""Flow files a local run reads from --flows and its subfolders (a folder such as ~ must not take minutes)."""


class FlowCatalog:
    """The flows a local run can reach (subflows, Flow triggers): every flow file in a folder and its subfolders
    (not hidden ones), read when first needed and parsed only when its text can hold what is looked for: a run
    whose flow ends looks for flows with triggers, and parsing every YAML file of a folder such as a project's
    (manifests, CI files) took seconds. A flow's file contains its id and, to start on a flow's end, `triggers`.

    A file that cannot be read is skipped (an unrelated broken file must not stop a run) and remembered,
    so a subflow that is not found names the files that could not be read. Where two files hold the same flow,
    the first valid one (in path order) is the one found.
    """

    def __init__(self, folder: str | Path | None = None, flows: list[Flow] | None = None):
        self.folder = Path(folder) if folder else None
        self._flows: dict[tuple[str, str], Flow] = {(f.namespace, f.id): f for f in flows or []}
        self._scanned = False
        self._texts: list[tuple[Path, str]] = []  # read, not parsed yet
        self._unread: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]] = {}  # parsed, not validated yet
        self._unreadable: dict[Path, str] = {}

    def add(self, flow: Flow) -> None:
        self._flows[(flow.namespace, flow.id)] = flow

    def get(self, namespace: str, flow_id: str) -> Flow | None:
        key = (namespace, flow_id)
        if key not in self._flows:
            self._scan()
            self._parse(lambda text: flow_id in text)
            self._validate(key)
        if key not in self._flows and self._texts:  # an id its file spells otherwise (`id: "\x61"`)
            self._parse(lambda _: True)
            self._validate(key)
        return self._flows.get(key)

    def listeners(self) -> list[Flow]:
        """Every flow of the folder (and those added) that has triggers: the flows a Flow trigger may start."""
        self._scan()
        self._parse(lambda text: "triggers" in text)
        listening = [key for key, found in self._unread.items() if any(doc.get("triggers") for _, doc in found)]
        if listening:  # the files of the same flows, which come first if valid
            self._parse(lambda text: any(flow_id in text for _, flow_id in listening))
        for key in listening:
            self._validate(key)
        return [flow for flow in self._flows.values() if flow.triggers]

    @property
    def unreadable(self) -> dict[Path, str]:
        """The files that are not valid flows, and why."""
        self._scan()
        self._parse(lambda _: True)
        for key in list(self._unread):
            self._validate(key, every=True)
        return self._unreadable

    def not_found(self, namespace: str, flow_id: str) -> str:
        """Why a flow was not found: where it was looked for, and which files could not be read."""
        where = f" in {self.folder}" if self.folder else ""
        message = f"flow {namespace}.{flow_id} not found{where}"
        if self.unreadable:
            names = ", ".join(sorted(path.name for path in self.unreadable)[:5])
            message += f" ({len(self.unreadable)} files there are not valid flows: {names})"
        return message

    def _validate(self, key: tuple[str, str], every: bool = False) -> None:
        """The first file of `key` that is a valid flow becomes the flow; the invalid ones before it (`every`: all
        of them) are named."""
        pending = self._unread.get(key, [])
        while pending and (every or key not in self._flows):
            path, document = pending.pop(0)
            try:
                flow = _parse_in(path, document)
            except FlowError as exc:
                self._unreadable[path] = "; ".join(exc.problems)
                continue
            self._flows.setdefault((flow.namespace, flow.id), flow)
        if not pending:
            self._unread.pop(key, None)

    def _scan(self) -> None:
        """Read the folder's flow files (their text only)."""
        if self._scanned:
            return
        self._scanned = True
        if self.folder is None:
            return
        for n, path in enumerate(flow_files(self.folder)):
            if n == MAX_CATALOG_FILES:
                self._unreadable[path] = f"not read: only the first {MAX_CATALOG_FILES} files are"
                break
            try:
                self._texts.append((path, read_text(path)))
            except FlowError as exc:
                self._unreadable[path] = "; ".join(exc.problems)

    def _parse(self, wanted: Callable[[str], bool]) -> None:
        """Parse the files read whose text `wanted` accepts; each flow's files stay in path order."""
        keep = []
        for path, text in self._texts:
            if not wanted(text):
                keep.append((path, text))
                continue
            try:
                document = read_flow_document(path, text)
            except FlowError as exc:
                self._unreadable[path] = "; ".join(exc.problems)
                continue
            namespace, flow_id = document.get("namespace"), document.get("id")
            if not (isinstance(namespace, str) and isinstance(flow_id, str)):
                try:  # an id the model reads differently (`id: 1`), or no valid one: validated now
                    flow = _parse_in(path, document)
                except FlowError as exc:
                    self._unreadable[path] = "; ".join(exc.problems)
                    continue
                namespace, flow_id = flow.namespace, flow.id
            found = self._unread.setdefault((namespace, flow_id), [])
            found.append((path, document))
            found.sort(key=lambda item: item[0])
        self._texts = keep


def flow_files(folder: Path) -> list[Path]:
    """The YAML files of a folder and its subfolders, in path order; hidden folders (.git, .venv) are not
    entered, as they hold no flows and may hold many files. Regular files only: reading a FIFO would block,
    and a broken link is no flow."""
    found = []
    for top, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            path = Path(top, name)
            if name.endswith((".yaml", ".yml")) and not name.startswith(".") and path.is_file():
                found.append(path)
    return sorted(found)
