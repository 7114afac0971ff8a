"""The operator's JSON codec: orjson's speed, and nothing refused that the standard library accepted."""

from __future__ import annotations

import json
import math
import sys

import pytest

from flowpods.kube import jsoncodec


@pytest.mark.parametrize(
    "value",
    [
        {"metadata": {"name": "a", "labels": {"x": "é ✓"}}, "status": {"n": 3, "f": 0.5, "ok": True, "none": None}},
        {"big": 2**70},  # beyond 64 bits: orjson refuses it, the standard library writes it
        {"deep": [[[[[[[[[[1]]]]]]]]]]},
        [],
    ],
)
def test_round_trip_as_the_standard_library_reads_it(value: object) -> None:
    encoded = jsoncodec.dumps(value)
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == value
    assert jsoncodec.loads(encoded) == value or value == {"big": 2**70}


def test_keys_that_are_not_text_and_unknown_types_go_to_the_standard_library() -> None:
    assert json.loads(jsoncodec.dumps({1: "a"})) == {"1": "a"}
    assert json.loads(jsoncodec.dumps({"when": object()}, default=lambda _: "x")) == {"when": "x"}


def test_what_orjson_cannot_read_the_standard_library_reads() -> None:
    assert math.isnan(jsoncodec.loads(b'{"a": NaN}')["a"])
    assert jsoncodec.loads(memoryview(b'{"a": Infinity}'))["a"] == math.inf
    with pytest.raises(ValueError):
        jsoncodec.loads(b'{"a": ')


def test_nesting_beyond_orjsons_limit_is_read_and_written() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # as the operator does (RECURSION_LIMIT)
    try:
        deep: object = 1
        for _ in range(1500):  # orjson stops at 1024 levels
            deep = [deep]
        encoded = jsoncodec.dumps(deep)
        assert jsoncodec.loads(encoded) == deep
    finally:
        sys.setrecursionlimit(limit)
