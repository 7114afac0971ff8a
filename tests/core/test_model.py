"""The flow model: Kestra flows paste in unchanged; mistakes are named precisely."""

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


def test_bad_cron_and_short_webhook_key_are_named():
    document = flow(
        triggers=[
            {"id": "nightly", "type": "Schedule", "cron": "not a cron"},
            {"id": "hook", "type": "io.kestra.plugin.core.trigger.Webhook", "key": "short"},
        ]
    )
    found = problems_of(document)
    assert any(p.startswith("trigger 'nightly'") and "cron" in p for p in found)
    assert any(p.startswith("trigger 'hook'") and "key" in p for p in found)


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
