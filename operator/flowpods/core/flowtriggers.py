"""Kestra's Flow trigger: which flows an ending execution starts, and what each new execution is given.

Pure: the ending execution is its flow snapshot, `RunInfo` and stored status; the candidates are the
flows that could listen (in the operator: the Flows of its Kubernetes namespace; locally: the flows of
`--flows`). The decision uses stored facts only (the end date stands for "now"), so an operator that
restarts decides the same, and each firing names its execution from the ending execution's uid, the
target flow and the trigger id: created once, whoever creates it.

Kestra's matching, in its order: the trigger and its flow are enabled, a flow never triggers itself, the
ending state is one of the trigger's `states` (default: every terminal state), every condition holds, and
the preconditions hold. flowpods evaluates at the end of an execution only (a trigger on RUNNING or
PAUSED never fires), and a set of conditions that Kestra collects over a time window from several
executions (`preconditions` with several entries, MultipleCondition, ExecutionFilters) fires here only when
the ending execution meets all of them by itself: never when Kestra would not, but not every time it would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flowpods.core import ids
from flowpods.core.executor.rendering import render_context
from flowpods.core.model import Condition, ExecutionFilter, Flow, FlowTrigger, UpstreamFlow, Where
from flowpods.core.status import TERMINAL, ExecutionStatus, RunInfo, State
from flowpods.core.templating import RenderError, is_truthy, render, render_string

TRIGGER_KIND = "flow"  # spec.trigger.type of an execution a Flow trigger started
KESTRA_TYPE = "io.kestra.plugin.core.trigger.Flow"
EVALUATED = ("ExecutionStatus", "ExecutionFlow", "ExecutionNamespace", "ExecutionLabels", "Expression",
             "Variable", "ExecutionOutputs", "Not", "Or", "Multiple", "ExecutionFilters")  # fmt: skip
WINDOWS_EVALUATED = (None, "DURATION_WINDOW", "SLIDING_WINDOW")


@dataclass(frozen=True)
class Ended:
    """The execution whose end is being matched, with what conditions read of it."""

    flow: Flow
    run: RunInfo
    status: ExecutionStatus

    @property
    def state(self) -> State:
        return self.status.state

    def labels(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in {**self.flow.labels, **self.run.labels}.items()}

    def context(self) -> dict[str, Any]:
        """Its template variables (as its own tasks saw them at its end): what Expression conditions read."""
        now = self.status.endDate or self.run.createdAt
        return render_context(self.flow, self.run, self.status, now)


@dataclass(frozen=True)
class Firing:
    """One execution to start: of the Flow `resource`, named `name`, for the trigger `trigger_id`."""

    resource: str
    flow: Flow
    trigger_id: str
    name: str
    data: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    error: str | None = None  # the inputs could not be rendered: nothing is started, the reason is reported


# --- what a trigger cannot do here (validation warnings) -------------------------------------------------


def kind(condition_type: str) -> str:
    """A condition's short name: `io.kestra.plugin.core.condition.ExecutionStatusCondition` -> ExecutionStatus."""
    short = condition_type.split(".")[-1]
    return short[: -len("Condition")] if short.endswith("Condition") and short != "Condition" else short


def limitations(trigger: FlowTrigger) -> list[str]:
    """What of the trigger flowpods does not evaluate as Kestra does, said once at validation."""
    found = []
    unknown = sorted({kind(c.type) for c in _all_conditions(trigger.conditions) if kind(c.type) not in EVALUATED})
    if unknown:
        found.append(f"conditions of type {', '.join(unknown)} are not evaluated: this trigger never fires")
    not_terminal = sorted({s for s in trigger.states if s not in {t.value for t in TERMINAL}})
    if not_terminal:
        found.append(f"states {', '.join(not_terminal)} are not evaluated: flowpods fires Flow triggers when an "
                     "execution ends")  # fmt: skip
    pre = trigger.preconditions
    if pre is not None and len(pre.flows) + len(pre.where) > 1:
        found.append("several preconditions are met here only by one execution that meets them all, not by "
                     "different executions within a time window")  # fmt: skip
    if any(kind(c.type) in ("Multiple", "ExecutionFilters") for c in _all_conditions(trigger.conditions)):
        found.append("MultipleCondition and ExecutionFilters are met here only by one execution that meets them "
                     "all, not by different executions within a time window")  # fmt: skip
    window = (pre.timeWindow or {}).get("type") if pre is not None and pre.timeWindow else None
    if window not in WINDOWS_EVALUATED:
        found.append(f"timeWindow {window} is not evaluated: the trigger fires at any time of day")
    return found


def _all_conditions(conditions: list[Condition]) -> list[Condition]:
    """The conditions with those nested in Not, Or and MultipleCondition."""
    found = []
    for condition in conditions:
        found.append(condition)
        found += _all_conditions(_conditions((condition.model_extra or {}).get("conditions")))
    return found


# --- matching ---------------------------------------------------------------------------------------------


def matches(listener: Flow, trigger: FlowTrigger, ended: Ended) -> bool:
    """Whether the end of `ended` fires `trigger` of the flow `listener` (Kestra's rules, in Kestra's order)."""
    if listener.disabled or trigger.disabled:
        return False
    if (listener.namespace, listener.id) == (ended.run.namespace, ended.run.flowId):
        return False  # Kestra's guard against a flow that triggers itself
    if not ended.state.terminal:
        return False
    states = trigger.states or [state.value for state in TERMINAL]
    if ended.state.value not in states:
        return False
    if not all(_condition(c, ended) for c in trigger.conditions):
        return False
    pre = trigger.preconditions
    if pre is None:
        return True
    return all(_upstream(u, ended) for u in pre.flows) and all(_where(w, ended) for w in pre.where)


def _condition(condition: Condition, ended: Ended) -> bool:
    """One Kestra condition on the ending execution; a type not evaluated is never met."""
    spec = condition.model_extra or {}
    match kind(condition.type):
        case "ExecutionStatus":
            allowed, refused = _strings(spec.get("in")), _strings(spec.get("notIn"))
            return (not allowed or ended.state.value in allowed) and ended.state.value not in refused
        case "ExecutionFlow":
            return ended.run.namespace == spec.get("namespace") and ended.run.flowId == spec.get("flowId")
        case "ExecutionNamespace":
            comparison = spec.get("comparison") or ("PREFIX" if spec.get("prefix") is True else "EQUALS")
            return _compare(ended.run.namespace, str(spec.get("namespace") or ""), str(comparison))
        case "ExecutionLabels":
            return _labels_match(spec.get("labels"), ended.labels())
        case "Expression" | "Variable" | "ExecutionOutputs":
            return _truthy(spec.get("expression"), ended)
        case "Not":
            return not any(_condition(c, ended) for c in _conditions(spec.get("conditions")))
        case "Or":
            return any(_condition(c, ended) for c in _conditions(spec.get("conditions")))
        case "Multiple":
            return all(_condition(c, ended) for c in _conditions(spec.get("conditions")))
        case "ExecutionFilters":
            wheres = _wheres(spec.get("filters"))
            return bool(wheres) and all(_where(w, ended) for w in wheres)
    return False


def _wheres(value: Any) -> list[Where]:
    """ExecutionFilters' `filters` (each with `conditions`) as `where` entries; a malformed one is never met."""
    try:
        return [Where.model_validate({**f, "filters": f.get("conditions", f.get("filters"))}) for f in value or []]
    except (ValidationError, AttributeError, TypeError):
        return []


def _compare(actual: str, expected: str, comparison: str) -> bool:
    if comparison == "PREFIX":
        return actual.startswith(expected)
    if comparison == "SUFFIX":
        return actual.endswith(expected)
    return actual == expected


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _conditions(value: Any) -> list[Condition]:
    """Nested conditions (a list, or MultipleCondition's map by id); a malformed one is left out."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    found = []
    for item in items:
        try:
            found.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return found


def _labels_match(wanted: Any, labels: dict[str, str]) -> bool:
    """Every wanted label (a map, or Kestra's list of {key, value}) is on the execution with that value."""
    if isinstance(wanted, list):
        wanted = {item.get("key"): item.get("value") for item in wanted if isinstance(item, dict)}
    if not isinstance(wanted, dict):
        return True
    return all(labels.get(str(key)) == str(value) for key, value in wanted.items())


def _truthy(expression: Any, ended: Ended) -> bool:
    """An expression rendered with the ending execution's variables; one that cannot render is not met."""
    if not isinstance(expression, str):
        return False
    try:
        return is_truthy(render_string(expression, ended.context()))
    except RenderError:
        return False


def _upstream(upstream: UpstreamFlow, ended: Ended) -> bool:
    """A `preconditions.flows` entry: the namespace, the flow (when given), the states and labels."""
    if upstream.namespace != ended.run.namespace:
        return False
    if upstream.flowId is not None and upstream.flowId != ended.run.flowId:
        return False
    if upstream.states and ended.state.value not in upstream.states:
        return False
    return _labels_match(upstream.labels, ended.labels())


def _where(where: Where, ended: Ended) -> bool:
    """A `preconditions.where` entry: its filters, all of them (AND) or any (OR)."""
    results = (_filter(f, ended) for f in where.filters)
    return all(results) if where.operand == "AND" else any(results)


def _field(test: ExecutionFilter, ended: Ended) -> str | None:
    if test.field == "FLOW_ID":
        return ended.run.flowId
    if test.field == "NAMESPACE":
        return ended.run.namespace
    if test.field == "STATE":
        return ended.state.value
    if test.field == "LABEL":
        key = (test.value or "").partition(":")[0]
        labels = ended.labels()
        return f"{key}:{labels[key]}" if key in labels else None
    try:  # EXPRESSION
        return render_string(test.value or "", ended.context())
    except RenderError:
        return None


def _filter(test: ExecutionFilter, ended: Ended) -> bool:
    """One filter, with Kestra's comparison types."""
    value, expected, values = _field(test, ended), test.value, test.values or []
    match test.type:
        case "EQUAL_TO":
            return value == expected
        case "NOT_EQUAL_TO":
            return value != expected
        case "IN":
            return value in values
        case "NOT_IN":
            return value not in values
        case "IS_TRUE":
            return is_truthy(value)
        case "IS_FALSE":
            return not is_truthy(value)
        case "IS_NULL":
            return value is None
        case "IS_NOT_NULL":
            return value is not None
        case "STARTS_WITH":
            return value is not None and value.startswith(expected or "")
        case "ENDS_WITH":
            return value is not None and value.endswith(expected or "")
        case "CONTAINS":
            return value is not None and (expected or "") in value
    try:  # REGEX: the whole value, as Java's String.matches
        return value is not None and re.fullmatch(expected or "", value) is not None
    except re.error:
        return False


# --- what a firing starts -----------------------------------------------------------------------------------


def trigger_variables(ended: Ended) -> dict[str, Any]:
    """`trigger.*` in the started execution, as Kestra's Flow trigger output names them (JSON-safe)."""
    status, run = ended.status, ended.run
    failed = next((tr.taskId for tr in status.taskRuns if tr.state.failed), None)
    data: dict[str, Any] = {
        "executionId": run.id,
        "namespace": run.namespace,
        "flowId": run.flowId,
        "flowRevision": run.flowRevision,
        "state": status.state.value,
        "startDate": status.startDate.isoformat() if status.startDate else None,
        "endDate": status.endDate.isoformat() if status.endDate else None,
        "executionLabels": dict(run.labels),
    }
    if failed is not None:
        data["firstFailedTaskId"] = failed
    if status.taskRuns:
        data["lastTaskId"] = status.taskRuns[-1].taskId
    if status.outputs:
        data["outputs"] = status.outputs
    return data


def execution_name(ended: RunInfo, resource: str, trigger_id: str) -> str:
    """The started execution's name: one per (ending execution, listening flow, trigger), so a create
    repeated after a restart finds the one already there."""
    return f"{ids.dns_label(resource, 40)}-{ids.short_id(ended.uid, 'flow-trigger', resource, trigger_id)}"


def firings(ended: Ended, listeners: list[tuple[str, Flow]]) -> list[Firing]:
    """Every execution the end of `ended` starts: one per matching trigger of each listening flow
    (`(resource name, flow)`), in a stable order."""
    found = []
    link = ids.traceparent_of(ended.run, ids.run_span_id(ended.run))
    for resource, listener in sorted(listeners, key=lambda item: item[0]):
        for trigger in listener.triggers:
            if not isinstance(trigger, FlowTrigger) or not matches(listener, trigger, ended):
                continue
            data = trigger_variables(ended)
            inputs: dict[str, Any] = {}
            error = None
            if trigger.inputs:
                try:
                    inputs = render(trigger.inputs, {**ended.context(), "trigger": data})
                except RenderError as exc:
                    error = f"trigger '{trigger.id}' of flow {listener.namespace}.{listener.id}: invalid inputs: {exc}"
            name = execution_name(ended.run, resource, trigger.id)
            found.append(Firing(resource, listener, trigger.id, name, data, inputs, link, error))
    return found
