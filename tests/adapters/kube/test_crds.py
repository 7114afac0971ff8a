"""The CustomResourceDefinitions, checked offline: names, printer columns, structural schemas, descriptions,
and the example flows against the Flow schema (with a small validator: no jsonschema dependency).

What needs an API server (kubectl apply, kubectl explain) is tested end to end elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowpods.core import model, status

ROOT = Path(__file__).resolve().parents[3]
FLOWS_CRD = ROOT / "crds" / "flowpods.io_flows.yaml"
EXECUTIONS_CRD = ROOT / "crds" / "flowpods.io_executions.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

TYPES = {"object", "array", "string", "integer", "number", "boolean"}
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"


def load(path: Path) -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert len(docs) == 1, f"{path.name}: one document expected"
    return docs[0]


@pytest.fixture(scope="module")
def flows() -> dict[str, Any]:
    return load(FLOWS_CRD)


@pytest.fixture(scope="module")
def executions() -> dict[str, Any]:
    return load(EXECUTIONS_CRD)


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    return v


def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return version(crd)["schema"]["openAPIV3Schema"]


def at(node: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema of a field path such as `spec.tasks[].id` ([] steps into array items)."""
    for part in dotted.split("."):
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under `node` with its path (properties, array items, additionalProperties)."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# --- a tiny validator: what the API server checks for the keywords these schemas use -----------------------


def validate(value: Any, node: dict[str, Any], path: str = "spec") -> list[str]:
    """Problems of `value` against a structural schema node: type, required, pattern, enum, bounds, and
    unknown fields where they are not preserved (kubectl's strict field validation rejects them)."""
    if value is None:
        return [f"{path}: null"] if not node.get("nullable") else []
    if node.get(INT_OR_STRING):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [f"{path}: must be an integer or a string"]
    kind = node.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind is not None and not checks[kind](value):
        return [f"{path}: must be of type {kind}, not {type(value).__name__}"]
    problems: list[str] = []
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: {value!r} is not one of {node['enum']}")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0):
            problems.append(f"{path}: shorter than {node['minLength']}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < node.get("minimum", value):
        problems.append(f"{path}: less than {node['minimum']}")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            problems.append(f"{path}: fewer than {node['minItems']} items")
        for i, item in enumerate(value):
            problems += validate(item, node.get("items") or {PRESERVE: True}, f"{path}[{i}]")
    if isinstance(value, dict):
        problems += [
            f"{path}: missing required field {name!r}" for name in node.get("required", []) if name not in value
        ]
        properties = node.get("properties") or {}
        for name, item in value.items():
            if name in properties:
                problems += validate(item, properties[name], f"{path}.{name}")
            elif isinstance(node.get("additionalProperties"), dict):
                problems += validate(item, node["additionalProperties"], f"{path}.{name}")
            elif not node.get(PRESERVE):
                problems.append(f"{path}: unknown field {name!r}")
    return problems


# --- names, versions, printer columns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "plural", "singular", "short"),
    [
        (FLOWS_CRD, "Flow", "flows", "flow", ["fl"]),
        (EXECUTIONS_CRD, "Execution", "executions", "execution", ["ex", "fpx"]),
    ],
)
def test_names_and_version(path: Path, kind: str, plural: str, singular: str, short: list[str]) -> None:
    crd = load(path)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.flowpods.io"
    spec = crd["spec"]
    assert spec["group"] == "flowpods.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (kind, plural, singular)
    assert names["shortNames"] == short
    assert names["categories"] == ["flowpods"]
    v = version(crd)
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}
    assert schema(crd)["type"] == "object"
    assert schema(crd)["required"] == ["spec"]


def columns(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"].upper(): c for c in version(crd)["additionalPrinterColumns"]}


def test_flow_printer_columns(flows: dict[str, Any]) -> None:
    cols = columns(flows)
    assert list(cols) == ["READY", "TASKS", "TRIGGERS", "REVISION", "AGE"]
    assert cols["READY"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert (cols["TASKS"]["jsonPath"], cols["TASKS"]["type"]) == (".status.taskCount", "integer")
    assert cols["TRIGGERS"]["jsonPath"] == ".status.triggers"
    assert (cols["REVISION"]["jsonPath"], cols["REVISION"]["priority"]) == (".status.revision", 1)
    assert (cols["AGE"]["jsonPath"], cols["AGE"]["type"]) == (".metadata.creationTimestamp", "date")
    assert all(c.get("priority", 0) == 0 for name, c in cols.items() if name != "REVISION")


def test_execution_printer_columns(executions: dict[str, Any]) -> None:
    cols = columns(executions)
    assert list(cols) == ["FLOW", "STATE", "STARTED", "DURATION", "TRACE-ID", "AGE"]
    expected = {
        "FLOW": (".spec.flowRef.name", "string"),
        "STATE": (".status.state", "string"),
        "STARTED": (".status.startDate", "date"),
        "DURATION": (".status.duration", "string"),
        "TRACE-ID": (".status.traceId", "string"),
        "AGE": (".metadata.creationTimestamp", "date"),
    }
    assert {name: (c["jsonPath"], c["type"]) for name, c in cols.items()} == expected


@pytest.mark.parametrize("path", [FLOWS_CRD, EXECUTIONS_CRD], ids=["flows", "executions"])
def test_printer_columns_point_at_declared_fields(path: Path) -> None:
    crd = load(path)
    for column in version(crd)["additionalPrinterColumns"]:
        json_path = column["jsonPath"]
        if json_path.startswith(".metadata."):
            continue
        dotted = re.sub(r"\[\?\(.*?\)\]", "[]", json_path).lstrip(".")
        node = at(schema(crd), dotted)
        assert node.get("type") == {"date": "string"}.get(column["type"], column["type"]), json_path


# --- structural schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [FLOWS_CRD, EXECUTIONS_CRD], ids=["flows", "executions"])
def test_schema_is_structural(path: Path) -> None:
    """The rules of a structural schema that can be checked without an API server."""
    root = schema(load(path))
    for where, node in walk(root):
        where = where or "<root>"
        assert node.get("type") in TYPES | {None}, f"{where}: unknown type {node.get('type')!r}"
        assert node.get("type") or node.get(PRESERVE) or node.get(INT_OR_STRING), f"{where}: no type"
        if node.get(INT_OR_STRING):
            assert "type" not in node, f"{where}: int-or-string takes no type"
        if "properties" in node or "additionalProperties" in node or "required" in node:
            assert node.get("type") == "object", f"{where}: fields on a non-object"
        assert not ("properties" in node and "additionalProperties" in node), f"{where}: properties and additional"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{where}: an array needs one items schema"
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{where}: required {name!r} is not declared"
        for forbidden in ("$ref", "definitions", "dependencies", "patternProperties", "additionalItems"):
            assert forbidden not in node, f"{where}: {forbidden} is not allowed"
        for enum_value in node.get("enum", []):
            assert validate(enum_value, {"type": node["type"]}) == [], f"{where}: enum value {enum_value!r}"
        if "pattern" in node:
            re.compile(node["pattern"])
    assert root["properties"]["metadata"] == {"type": "object"}, "metadata may only say it is an object"
    assert not root.get(PRESERVE), "the whole resource must not be open"


@pytest.mark.parametrize("path", [FLOWS_CRD, EXECUTIONS_CRD], ids=["flows", "executions"])
@pytest.mark.parametrize("part", ["spec", "status"])
def test_fields_are_described(path: Path, part: str) -> None:
    """`kubectl explain` says something about every field down to three levels."""
    root = at(schema(load(path)), part)
    assert root.get("description", "").strip(), f"{part}: no description"
    for where, node in walk(root, part):
        depth = where.count(".")  # array items and map values are described by their field
        if where != part and depth <= 3 and not where.endswith(("[]", "{}")):
            assert node.get("description", "").strip(), f"{where}: no description"


# --- the Flow schema ----------------------------------------------------------------------------------------


def test_flow_tasks_required(flows: dict[str, Any]) -> None:
    spec = at(schema(flows), "spec")
    assert spec["required"] == ["tasks"]
    tasks = spec["properties"]["tasks"]
    assert tasks["type"] == "array"
    assert tasks["minItems"] == 1
    for section in ("tasks", "errors", "finally"):
        items = spec["properties"][section]["items"]
        assert items["type"] == "object"
        assert items["required"] == ["id", "type"]
        assert items[PRESERVE] is True, f"{section}: task fields are validated by the operator"
        assert "minItems" not in spec["properties"][section] or section == "tasks"


def test_flow_patterns_match_the_model(flows: dict[str, Any]) -> None:
    root = schema(flows)
    for field in ("spec.id", "spec.tasks[].id", "spec.errors[].id", "spec.triggers[].id"):
        assert at(root, field)["pattern"] == model.ID_PATTERN, field
    assert at(root, "spec.inputs[].id")["pattern"] == model.INPUT_ID_PATTERN
    assert at(root, "spec.namespace")["pattern"] == model.NAMESPACE_PATTERN


def test_flow_input_types_match_the_model(flows: dict[str, Any]) -> None:
    accepted = {t.value for t in model.InputType} | {"BOOL", "SELECT"}
    assert set(at(schema(flows), "spec.inputs[].type")["enum"]) == accepted
    assert set(at(schema(flows), "spec.inputs[].itemType")["enum"]) <= accepted
    declared = set(at(schema(flows), "spec.inputs[]")["properties"])
    assert declared == set(model.Input.model_fields)


def test_flow_spec_declares_the_model_fields(flows: dict[str, Any]) -> None:
    declared = set(at(schema(flows), "spec")["properties"])
    fields = {f.alias or name for name, f in model.Flow.model_fields.items()} - {"revision"}
    assert declared == fields
    concurrency = at(schema(flows), "spec.concurrency")
    assert concurrency["properties"]["behavior"]["enum"] == ["QUEUE", "CANCEL", "FAIL"]
    assert concurrency["properties"]["limit"]["minimum"] == 1


def test_flow_status_fields(flows: dict[str, Any]) -> None:
    flow_status = at(schema(flows), "status")
    assert flow_status[PRESERVE] is True
    assert set(flow_status["properties"]) >= {
        "conditions", "revision", "observedGeneration", "taskCount", "triggers", "message", "schedules",
    }  # fmt: skip
    condition = at(flow_status, "conditions[]")
    assert set(condition["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration",
    }  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_satisfy_the_flow_schema(example: Path, flows: dict[str, Any]) -> None:
    doc = load(example)
    assert doc["apiVersion"] == f"flowpods.io/{version(flows)['name']}"
    assert doc["kind"] == "Flow"
    assert validate(doc["spec"], at(schema(flows), "spec")) == []


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({}, "spec: missing required field 'tasks'"),
        ({"tasks": []}, "spec.tasks: fewer than 1 items"),
        ({"tasks": [{"id": "a"}]}, "spec.tasks[0]: missing required field 'type'"),
        ({"tasks": [{"id": "-a", "type": "Log"}]}, "spec.tasks[0].id: '-a' does not match"),
        ({"id": "my flow", "tasks": [{"id": "a", "type": "Log"}]}, "spec.id: 'my flow' does not match"),
        ({"namespace": "Company", "tasks": [{"id": "a", "type": "Log"}]}, "spec.namespace: 'Company' does not"),
        ({"taks": [], "tasks": [{"id": "a", "type": "Log"}]}, "spec: unknown field 'taks'"),
        ({"tasks": [{"id": "a", "type": "Log"}], "inputs": [{"id": "x", "type": "TEXT"}]}, "is not one of"),
        ({"tasks": [{"id": "a", "type": "Log"}], "concurrency": {"limit": 0}}, "spec.concurrency.limit: less than 1"),
        ({"tasks": [{"id": "a", "type": "Log"}], "triggers": [{"type": "Schedule"}]}, "missing required field 'id'"),
        ({"tasks": [{"id": "a", "type": "Log"}], "disabled": "yes"}, "spec.disabled: must be of type boolean"),
    ],
)
def test_flow_schema_rejects(spec: dict[str, Any], problem: str, flows: dict[str, Any]) -> None:
    problems = validate(spec, at(schema(flows), "spec"))
    assert any(p.startswith(problem) or problem in p for p in problems), problems


def test_flow_schema_keeps_open_fields(flows: dict[str, Any]) -> None:
    """Task fields, nested task lists, labels in either Kestra form and any input default are accepted."""
    spec = {
        "labels": [{"key": "team", "value": "data"}],
        "inputs": [{"id": "when", "type": "DATETIME", "defaults": {"any": ["json"]}}],
        "tasks": [
            {
                "id": "each",
                "type": "io.kestra.plugin.core.flow.ForEach",
                "values": [1, 2],
                "timeout": "PT1M",
                "tasks": [{"id": "inner", "type": "Log", "message": "{{ taskrun.value }}"}],
            }
        ],
        "triggers": [{"id": "hook", "type": "Webhook", "key": "a-key-of-16-chars"}],
        "outputs": [{"id": "n", "value": 3}],
    }
    assert validate(spec, at(schema(flows), "spec")) == []
    assert validate({"labels": {"team": "data"}, "tasks": spec["tasks"]}, at(schema(flows), "spec")) == []


# --- the Execution schema -----------------------------------------------------------------------------------


def test_execution_spec(executions: dict[str, Any]) -> None:
    spec = at(schema(executions), "spec")
    assert spec["required"] == ["flowRef"]
    assert spec["properties"]["flowRef"]["required"] == ["name"]
    assert spec["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert spec["properties"]["inputs"][PRESERVE] is True
    trigger = spec["properties"]["trigger"]["properties"]
    assert trigger["type"]["enum"] == ["api", "webhook", "schedule", "subflow", "flow", "kubectl"]
    assert trigger["id"]["type"] == "string"
    assert trigger["data"][PRESERVE] is True
    assert "no effect" in spec["description"]
    ok = {"flowRef": {"name": "orders"}, "inputs": {"customer": "ada", "items": 3}, "labels": {"a": "b"}}
    assert validate(ok, spec) == []
    assert validate({"inputs": {}}, spec) == ["spec: missing required field 'flowRef'"]
    assert validate({"flowRef": {}}, spec) == ["spec.flowRef: missing required field 'name'"]
    assert validate({"flowRef": {"name": "x"}, "trigger": {"type": "cron"}}, spec) != []


def test_execution_status_describes_what_the_operator_stores(executions: dict[str, Any]) -> None:
    """Every field of status.py's models is declared (and so explained); the states are Kestra's."""
    root = at(schema(executions), "status")
    assert root[PRESERVE] is True
    extra = {"message", "startDate", "endDate", "duration", "traceId", "traceparent", "flowRevision", "flow"}
    assert set(root["properties"]) == set(status.ExecutionStatus.model_fields) | extra
    stored = {name for name, info in status.TaskRun.model_fields.items() if not info.exclude}  # compact: in memory
    assert set(at(root, "taskRuns[]")["properties"]) == stored
    assert set(at(root, "taskRuns[].attempts[]")["properties"]) == set(status.Attempt.model_fields)
    assert set(at(root, "changes[]")["properties"]) == set(status.Change.model_fields)
    assert set(at(root, "history[]")["properties"]) == set(status.Transition.model_fields)
    states = [s.value for s in status.State]
    for field in ("state", "history[].state", "taskRuns[].state", "taskRuns[].attempts[].state", "changes[].state"):
        assert at(root, field)["enum"] == states, field


def test_execution_status_accepts_a_stored_status(executions: dict[str, Any]) -> None:
    """A status as the operator writes it (pydantic's JSON dump, None fields dropped) passes validation."""
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, tzinfo=UTC)
    run = status.ExecutionStatus()
    run.set_state(status.State.RUNNING, now)
    taskrun = status.TaskRun(id="tr1", taskId="hello")
    taskrun.set_state(status.State.RUNNING, now)
    taskrun.attempts.append(status.Attempt(number=1, createdAt=now, pod="hello-tr1-1", exitCode=0))
    run.taskRuns.append(taskrun)
    run.changes.append(status.Change(n=1, start=now, end=now, state=status.State.RUNNING, cause="created"))
    stored = run.model_dump(mode="json", exclude_none=True) | {
        "startDate": now.isoformat(),
        "traceId": "0" * 31 + "1",
        "flowRevision": 1,
        "flow": {"id": "hello", "tasks": []},
    }
    assert validate(stored, at(schema(executions), "status"), "status") == []
