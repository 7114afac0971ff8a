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
