"""The flow model: Kestra flows paste in unchanged; mistakes are named precisely."""

import subprocess
import sys
from datetime import timedelta

import pytest

from flowpods.core.model import FlowError, ForEach, HttpRequest, Log, Subflow, parse_flow


def flow(**extra):
    return {"id": "hello", "namespace": "company.team", "tasks": [{"id": "t", "type": "Log", "message": "m"}], **extra}


def problems_of(document) -> list[str]:
    with pytest.raises(FlowError) as caught:
        parse_flow(document)
    return caught.value.problems


def test_short_and_kestra_type_names_are_the_same_task():
    parsed = parse_flow(
        flow(
            tasks=[
                {"id": "a", "type": "Log", "message": "m"},
                {"id": "b", "type": "io.kestra.plugin.core.log.Log", "message": "m"},
                {"id": "c", "type": "io.kestra.plugin.core.http.Request", "uri": "http://x"},
                {"id": "d", "type": "http.Request", "uri": "http://x"},
            ]
        )
    )
    assert [type(t) for t in parsed.tasks] == [Log, Log, HttpRequest, HttpRequest]
    assert {t.kind for t in parsed.tasks} == {"io.kestra.plugin.core.log.Log", "io.kestra.plugin.core.http.Request"}


def test_unknown_field_names_the_task_and_the_field():
    assert problems_of(flow(tasks=[{"id": "hi", "type": "Log", "message": "m", "colour": "red"}])) == [
        "task 'hi' (Log): unknown field 'colour'"
    ]


def test_unknown_type_names_the_task_and_the_type():
    assert problems_of(flow(tasks=[{"id": "hi", "type": "io.kestra.Nope"}])) == [
        "task 'hi' (io.kestra.Nope): unknown task type 'io.kestra.Nope'"
    ]


def test_nested_task_errors_name_the_nested_task():
    document = flow(tasks=[{"id": "p", "type": "Parallel", "tasks": [{"id": "inner", "type": "Log"}]}])
    assert problems_of(document) == ["task 'inner' (Log): missing required field 'message'"]


def test_duplicate_task_ids_are_refused():
    document = flow(tasks=[{"id": "a", "type": "Log", "message": "m"}, {"id": "a", "type": "Log", "message": "n"}])
    assert any("repeated: a" in p for p in problems_of(document))


def test_bad_cron_is_named():
    found = problems_of(flow(triggers=[{"id": "nightly", "type": "Schedule", "cron": "not a cron"}]))
    assert len(found) == 1 and found[0].startswith("trigger 'nightly'") and "cron" in found[0]


def test_a_short_webhook_key_is_a_warning_not_a_refusal():
    parsed = parse_flow(
        flow(triggers=[{"id": "hook", "type": "io.kestra.plugin.core.trigger.Webhook", "key": "short"}])
    )
    assert parsed.triggers[0].key == "short"
    assert len(parsed.warnings()) == 1
    assert parsed.warnings()[0].startswith("trigger 'hook': the webhook key has 5 characters")
    long_key = parse_flow(flow(triggers=[{"id": "hook", "type": "Webhook", "key": "k" * 16}]))
    assert long_key.warnings() == []


def test_durations_retry_and_flowables_parse():
    parsed = parse_flow(
        flow(
            tasks=[
                {
                    "id": "each",
                    "type": "ForEach",
                    "values": ["a", "b"],
                    "concurrencyLimit": 0,
                    "tasks": [
                        {
                            "id": "x",
                            "type": "Log",
                            "message": "{{ taskrun.value }}",
                            "timeout": "PT30S",
                            "retry": {
                                "type": "exponential",
                                "maxAttempt": 4,
                                "interval": "PT1S",
                                "maxInterval": "PT3S",
                            },
                        }
                    ],
                },
                {"id": "child", "type": "io.kestra.plugin.core.flow.Subflow", "namespace": "n", "flowId": "f"},
            ],
            labels=[{"key": "team", "value": "data"}],
        )
    )
    each, child = parsed.tasks
    assert isinstance(each, ForEach) and isinstance(child, Subflow)
    inner = parsed.task("x")
    assert inner.timeout == timedelta(seconds=30)
    assert inner.retry.maxAttempts == 4
    assert [inner.retry.delay_before(n) for n in (2, 3, 4)] == [
        timedelta(seconds=1),
        timedelta(seconds=2),
        timedelta(seconds=3),
    ]
    assert child.wait is True and child.transmitFailed is True
    assert parsed.labels == {"team": "data"}
    assert [t.id for t in parsed.all_tasks()] == ["each", "x", "child"]


def test_enum_input_needs_values():
    assert problems_of(flow(inputs=[{"id": "colour", "type": "ENUM"}])) == [
        "input 'colour': an ENUM input needs a list of `values`"
    ]


# --- Kestra's flows load as Kestra loads them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "current"),
    [
        ("io.kestra.core.tasks.debugs.Echo", "io.kestra.plugin.core.debug.Echo"),
        ("io.kestra.core.tasks.executions.Fail", "io.kestra.plugin.core.execution.Fail"),
        ("io.kestra.core.tasks.outputs.OutputValues", "io.kestra.plugin.core.output.OutputValues"),
        ("io.kestra.core.tasks.flows.Sequential", "io.kestra.plugin.core.flow.Sequential"),
        ("io.kestra.core.tasks.flows.EachSequential", "io.kestra.plugin.core.flow.EachSequential"),
        ("io.kestra.core.tasks.flows.Subflow", "io.kestra.plugin.core.flow.Subflow"),
    ],
)
def test_pre_0_17_type_names_are_the_same_task(old, current):
    from flowpods.core.model import TYPE_ALIASES

    assert TYPE_ALIASES[old] is TYPE_ALIASES[current]


def test_kestra_leniency_integers_lower_case_durations_null_defaults():
    parsed = parse_flow(
        {
            "id": 1,
            "namespace": "n",
            "inputs": [{"id": "opt", "type": "STRING", "defaults": None, "required": False}],
            "tasks": [
                {"id": 2, "type": "Return", "format": 3, "timeout": "pt0.25s"},
                {"id": "sw", "type": "Switch", "value": "{{ inputs.opt }}", "cases": {1: [log_task("one")]}},
            ],
        }
    )
    assert parsed.id == "1" and parsed.tasks[0].id == "2" and parsed.tasks[0].format == "3"
    assert parsed.tasks[0].timeout == timedelta(seconds=0.25)
    assert list(parsed.tasks[1].cases) == ["1"]


def log_task(task_id: str) -> dict:
    return {"id": task_id, "type": "Log", "message": task_id}


def test_deprecated_names_input_name_and_parallel_concurrent():
    parsed = parse_flow(
        flow(
            inputs=[{"name": "who", "type": "STRING"}],
            tasks=[{"id": "p", "type": "Parallel", "concurrent": 2, "tasks": [log_task("a")]}],
        )
    )
    assert parsed.inputs[0].id == "who"
    assert parsed.tasks[0].concurrency == 2


def test_new_input_types_and_their_rules_parse():
    parsed = parse_flow(
        flow(
            inputs=[
                {"id": "nested.value", "type": "SECRET"},
                {"id": "d", "type": "DATE", "after": "2023-01-01", "before": "2023-12-31"},
                {"id": "t", "type": "TIME", "after": "01:00:00"},
                {"id": "span", "type": "DURATION", "min": "PT10S", "max": "pt20s"},
                {"id": "many", "type": "MULTISELECT", "options": ["a", "b"]},
                {"id": "u", "type": "URI"},
                {"id": "e", "type": "EMAIL"},
                {"id": "y", "type": "YAML"},
                {"id": "late", "type": "STRING", "dependsOn": {"inputs": ["d"], "condition": "{{ true }}"}},
            ]
        )
    )
    assert parsed.inputs[3].min == timedelta(seconds=10) and parsed.inputs[3].max == timedelta(seconds=20)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([{"id": "f", "type": "FILE"}], "input 'f': a FILE input needs file storage, not available yet"),
        ([{"id": "v", "validator": "\\"}], "input 'v': field 'validator': '\\' is not a valid regular expression"),
        ([{"id": "a", "type": "ARRAY", "itemType": "ARRAY"}], "input 'a': an ARRAY's itemType cannot be ARRAY"),
        ([{"id": "i", "type": "INT", "min": "PT1S"}], "input 'i': min and max take a duration for DURATION"),
        ([{"id": "s", "type": "STRING", "after": "2023-01-01"}], "input 's': after and before apply to DATETIME"),
        ([{"id": "s", "dependsOn": {"inputs": ["nope"]}}], "input 's' depends on undeclared input(s): nope"),
    ],
)
def test_input_mistakes_name_the_input(inputs, fragment):
    found = problems_of(flow(inputs=inputs))
    assert any(fragment in problem for problem in found), found


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ({"id": "w", "type": "io.kestra.plugin.core.flow.WorkingDirectory", "tasks": [log_task("x")],
          "outputFiles": ["*.txt"]},
         "task 'w' (io.kestra.plugin.core.flow.WorkingDirectory): field 'outputFiles': needs file storage"),
        ({"id": "lf", "type": "io.kestra.plugin.core.storage.LocalFiles", "outputs": ["*.txt"]},
         "task 'lf' (io.kestra.plugin.core.storage.LocalFiles): field 'outputs': needs file storage, not available"),
        ({"id": "i", "type": "io.kestra.plugin.core.flow.ForEachItem", "items": "{{ x }}", "namespace": "n",
          "flowId": "f", "batch": {"rows": 1}},
         "task 'i' (io.kestra.plugin.core.flow.ForEachItem): not yet supported: ForEachItem (it splits a file of "
         "items) needs file storage, not available yet"),
        ({"id": "s", "type": "io.kestra.plugin.core.state.Set", "data": {"a": 1}},
         "not yet supported: state.Set (the state is a file) needs file storage"),
        ({"id": "sh", "type": "Shell", "commands": ["true"], "outputFiles": ["*.csv"]},
         "task 'sh' (Shell): field 'outputFiles': needs file storage, not available yet"),
        ({"id": "r", "type": "Return", "workerGroup": {"key": "gpu"}},
         "task 'r' (Return): field 'workerGroup': worker groups are a Kestra Enterprise feature"),
        ({"id": "f", "type": "Fail", "retry": {"behavior": "CREATE_NEW_EXECUTION", "maxAttempts": 2}},
         "task 'f' (Fail): field 'retry.behavior': CREATE_NEW_EXECUTION is not yet supported"),
        ({"id": "me", "type": "Subflow", "namespace": "company.team", "flowId": "hello"},
         "task 'me' (Subflow): a flow cannot start itself as a subflow"),
    ],
)  # fmt: skip
def test_what_cannot_run_yet_is_refused_with_the_reason(task, fragment):
    found = problems_of(flow(tasks=[task]))
    assert any(fragment in problem for problem in found), found
    assert not any("unknown field" in problem for problem in found), found


def test_a_dag_must_be_acyclic_and_name_its_own_tasks():
    def dag(*entries):
        return flow(tasks=[{"id": "dag", "type": "Dag", "tasks": list(entries)}])

    a, b = log_task("a"), log_task("b")
    assert problems_of(dag({"task": a, "dependsOn": ["b"]}, {"task": b, "dependsOn": ["a"]})) == [
        "task 'dag' (Dag): cyclic dependency: a -> b -> a"
    ]
    assert problems_of(dag({"task": a, "dependsOn": ["x"]})) == [
        "task 'dag' (Dag): task 'a' depends on x, not a task of the Dag"
    ]
    parsed = parse_flow(dag({"task": a}, {"task": b, "dependsOn": ["a"]}))
    assert [t.id for t in parsed.all_tasks()] == ["dag", "a", "b"]


def test_flowable_errors_and_finally_count_as_tasks_of_the_flow():
    document = flow(tasks=[{"id": "seq", "type": "Sequential", "tasks": [log_task("a")], "errors": [log_task("a")]}])
    assert any("repeated: a" in p for p in problems_of(document))


def test_system_labels_are_refused_except_read_only():
    assert parse_flow(flow(labels={"system.readOnly": "true"})).labels == {"system.readOnly": "true"}
    assert problems_of(flow(labels={"system.id": "x"})) == [
        "field 'labels': labels starting with 'system.' are set by the system only: system.id"
    ]


def test_a_switch_with_no_task_at_all_is_refused():
    document = flow(tasks=[{"id": "sw", "type": "Switch", "value": "x", "cases": {}, "defaults": None}])
    assert problems_of(document) == [
        "task 'sw' (Switch): a Switch needs tasks in `cases` or `defaults`; both are empty"
    ]


def test_plugin_defaults_fill_tasks_of_their_type_and_forced_ones_win():
    parsed = parse_flow(
        flow(
            tasks=[
                {"id": "a", "type": "io.kestra.plugin.core.log.Log", "message": "own"},
                {"id": "b", "type": "Log", "message": "own", "level": "ERROR"},
                {"id": "s", "type": "Sequential", "tasks": [{"id": "c", "type": "Log"}]},
            ],
            pluginDefaults=[
                {"type": "io.kestra.plugin.core.log.Log", "values": {"message": "default", "level": "WARN"}},
                {"type": "io.kestra.plugin.core.log", "forced": True, "values": {"description": "forced"}},
            ],
        )
    )
    a, b, c = (parsed.task(i) for i in "abc")
    assert (a.message, a.level, a.description) == ("own", "WARN", "forced")
    assert (b.level, c.message) == ("ERROR", "default")


def test_flow_trigger_and_conditions_load_and_only_what_is_not_evaluated_warns():
    parsed = parse_flow(
        flow(
            triggers=[
                {
                    "id": "after",
                    "type": "io.kestra.plugin.core.trigger.Flow",
                    "conditions": [{"type": "io.kestra.plugin.core.condition.ExecutionStatus", "in": ["SUCCESS"]}],
                    "preconditions": {"flows": [{"namespace": "n", "flowId": "up", "states": ["SUCCESS"]}]},
                },
            ]
        )
    )
    assert parsed.warnings() == []
    daily = {"timeWindow": {"type": "DAILY_TIME_DEADLINE"}}
    window = parse_flow(flow(triggers=[{"id": "w", "type": "Flow", "states": ["PAUSED"], "preconditions": daily}]))
    assert [w.split(":")[0] for w in window.warnings()] == ["trigger 'w'", "trigger 'w'"]


def test_the_retry_of_a_task_is_its_own_else_its_nearest_flowable_s_else_the_flow_s():
    parsed = parse_flow(
        flow(
            retry={"maxAttempts": 2},
            tasks=[
                {"id": "outer", "type": "Sequential", "retry": {"maxAttempts": 3}, "tasks": [
                    {"id": "inner", "type": "Sequential", "tasks": [log_task("deep")]},
                    {"id": "own", "type": "Log", "message": "m", "retry": {"maxAttempts": 4}},
                ]},
                log_task("top"),
            ],
        )
    )  # fmt: skip
    assert [parsed.retry_of(parsed.task(t)).maxAttempts for t in ("deep", "own", "top")] == [3, 4, 2]


def test_a_mistake_inside_a_dag_entry_names_the_task():
    entry = {"task": {"id": "a", "type": "Log", "mesage": "x"}}
    document = flow(tasks=[{"id": "dag", "type": "Dag", "tasks": [entry]}])
    assert problems_of(document) == [
        "task 'a' (Log): missing required field 'message'",
        "task 'a' (Log): unknown field 'mesage'",
    ]


def test_an_unknown_type_deep_in_flowables_names_that_task_and_its_type():
    inner = {"id": "odd", "type": "io.kestra.Nope"}
    document = flow(tasks=[{"id": "ok", "type": "AllowFailure", "tasks": [
        {"id": "seq", "type": "io.kestra.core.tasks.flows.Sequential", "tasks": [inner]}]}])  # fmt: skip
    assert problems_of(document) == ["task 'odd' (io.kestra.Nope): unknown task type 'io.kestra.Nope'"]


def test_a_flow_builds_the_models_of_the_task_types_it_uses_only():
    """Each task type's validator is built on its first use (a fresh interpreter: other tests built them all)."""
    code = """
from flowpods.core.model import Log, Sequential, Subflow, Switch, parse_flow
parse_flow({"id": "f", "namespace": "n", "tasks": [
    {"id": "s", "type": "Sequential", "tasks": [{"id": "t", "type": "Log", "message": "m"}]}]})
print(Log.__pydantic_complete__, Sequential.__pydantic_complete__, Subflow.__pydantic_complete__,
      Switch.__pydantic_complete__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True", "False", "False"]


def test_a_flow_dumps_each_task_with_the_fields_of_its_own_type():
    document = flow(tasks=[{"id": "s", "type": "Sequential", "tasks": [{"id": "t", "type": "Log", "message": "m"}]}])
    dumped = parse_flow(document).model_dump(mode="json", by_alias=True, exclude_none=True)
    inner = dumped["tasks"][0]["tasks"][0]
    assert (inner["type"], inner["message"]) == ("Log", "m")
    assert parse_flow(dumped).model_dump(mode="json", by_alias=True, exclude_none=True) == dumped


def test_a_task_that_is_not_a_mapping_is_an_unknown_task_type():
    assert problems_of(flow(tasks=["Log"])) == ["task #1: unknown task type 'Log'"]
