"""Inputs are coerced to their declared types; every problem names the input."""

import pytest

from flowpods.core.inputs import resolve_inputs
from flowpods.core.model import FlowError, parse_flow


def flow_with(*inputs):
    return parse_flow(
        {"id": "f", "namespace": "n", "inputs": list(inputs), "tasks": [{"id": "t", "type": "Log", "message": "m"}]}
    )


def test_coerces_every_type():
    flow = flow_with(
        {"id": "s", "type": "STRING"},
        {"id": "i", "type": "INT"},
        {"id": "f", "type": "FLOAT"},
        {"id": "b", "type": "BOOLEAN"},
        {"id": "j", "type": "JSON"},
        {"id": "d", "type": "DATETIME"},
        {"id": "p", "type": "DURATION"},
        {"id": "e", "type": "ENUM", "values": ["a", "b"]},
        {"id": "a", "type": "ARRAY", "itemType": "INT"},
    )
    given = {"s": "x", "i": "4", "f": "2.5", "b": "true", "j": '{"k": [1]}', "d": "2026-01-02T03:04:05Z",
             "p": "PT90S", "e": "b", "a": "[1, 2]"}  # fmt: skip
    assert resolve_inputs(flow, given) == {
        "s": "x", "i": 4, "f": 2.5, "b": True, "j": {"k": [1]}, "d": "2026-01-02T03:04:05+00:00",
        "p": "PT1M30S", "e": "b", "a": [1, 2],
    }  # fmt: skip


def test_defaults_and_optional_inputs():
    flow = flow_with({"id": "who", "defaults": "world"}, {"id": "opt", "required": False})
    assert resolve_inputs(flow, {}) == {"who": "world", "opt": None}


def test_every_problem_is_named_at_once():
    flow = flow_with(
        {"id": "need"},
        {"id": "count", "type": "INT", "min": 1, "max": 5},
        {"id": "code", "validator": "^[A-Z]{3}$"},
        {"id": "colour", "type": "ENUM", "values": ["red"]},
    )
    with pytest.raises(FlowError) as caught:
        resolve_inputs(flow, {"count": "9", "code": "abc", "colour": "blue", "extra": 1})
    assert caught.value.problems == [
        "input 'extra' is not declared by flow n.f",
        "input 'need' is required (STRING)",
        "input 'count': 9 is above the maximum 5",
        "input 'code': 'abc' does not match the pattern ^[A-Z]{3}$",
        "input 'colour': 'blue' is not one of red",
    ]


@pytest.mark.parametrize(
    ("kind", "raw", "fragment"),
    [("INT", "x", "not a valid INT"), ("INT", True, "not a valid INT"), ("BOOLEAN", "maybe", "not a BOOLEAN"),
     ("JSON", "{", "not valid JSON"), ("DATETIME", "yesterday", "ISO-8601 date"), ("DURATION", "5 min", "PT30S")],
)  # fmt: skip
def test_bad_values_say_what_was_expected(kind, raw, fragment):
    with pytest.raises(FlowError) as caught:
        resolve_inputs(flow_with({"id": "v", "type": kind}), {"v": raw})
    assert fragment in caught.value.problems[0]


def test_coerces_kestra_s_other_types():
    flow = flow_with(
        {"id": "secret", "type": "SECRET"},
        {"id": "day", "type": "DATE"},
        {"id": "at", "type": "TIME"},
        {"id": "link", "type": "URI"},
        {"id": "mail", "type": "EMAIL"},
        {"id": "conf", "type": "YAML"},
        {"id": "picks", "type": "MULTISELECT", "values": ["a", "b", "c"]},
        {"id": "free", "type": "SELECT", "values": ["a"], "allowCustomValue": True},
    )
    given = {"secret": "s3cret", "day": "2026-01-02", "at": "03:04:05", "link": "https://example.org/x",
             "mail": "ada@example.org", "conf": "a: [1, 2]", "picks": '["a", "c"]', "free": "z"}  # fmt: skip
    assert resolve_inputs(flow, given) == {
        "secret": "s3cret", "day": "2026-01-02", "at": "03:04:05", "link": "https://example.org/x",
        "mail": "ada@example.org", "conf": {"a": [1, 2]}, "picks": ["a", "c"], "free": "z",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "raw", "problem"),
    [
        ({"type": "DURATION", "min": "PT10S", "max": "PT20S"}, "PT5S", "PT5S is shorter than the minimum PT10S"),
        ({"type": "DURATION", "min": "PT10S", "max": "PT20S"}, "pt30s", "PT30S is longer than the maximum PT20S"),
        ({"type": "DATE", "after": "2023-01-01"}, "2022-12-31", "2022-12-31 is not after 2023-01-01"),
        ({"type": "DATETIME", "before": "2023-12-31T23:59:59Z"}, "2024-01-01T00:00:00Z", "is not before"),
        ({"type": "TIME", "after": "01:00:00"}, "00:30:00", "00:30:00 is not after 01:00:00"),
        ({"type": "EMAIL"}, "nobody", "'nobody' is not an email address"),
        ({"type": "URI"}, "no-scheme", "'no-scheme' is not a URI"),
        ({"type": "MULTISELECT", "values": ["a"]}, "a,b", "'b' not among a"),
        ({"type": "YAML"}, "a: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_rules_of_the_other_types_name_the_input(spec, raw, problem):
    with pytest.raises(FlowError) as caught:
        resolve_inputs(flow_with({"id": "v", **spec}), {"v": raw})
    assert caught.value.problems[0].startswith("input 'v': ") and problem in caught.value.problems[0]


def test_an_input_whose_depends_on_condition_is_false_is_not_asked_for():
    flow = flow_with(
        {"id": "mode", "type": "ENUM", "values": ["simple", "custom"]},
        {"id": "detail", "dependsOn": {"inputs": ["mode"], "condition": "{{ inputs.mode == 'custom' }}"}},
    )
    assert resolve_inputs(flow, {"mode": "simple"}) == {"mode": "simple", "detail": None}
    with pytest.raises(FlowError) as caught:
        resolve_inputs(flow, {"mode": "custom"})
    assert caught.value.problems == ["input 'detail' is required (STRING)"]
