"""Templating: Kestra's variables, and an undefined variable is an error naming the expression."""

import time

import pytest

from flowpods.core.templating import RenderError, is_truthy, render, render_string


def test_renders_nested_values_and_leaves_plain_strings():
    context = {"inputs": {"who": "ada"}, "outputs": {"a": {"value": 3}}}
    assert render({"k": ["{{ inputs.who | upper }}", "{{ outputs.a.value * 2 }}", 5, "plain"]}, context) == {
        "k": ["ADA", "6", 5, "plain"]
    }


def test_undefined_variable_is_an_error_naming_the_expression():
    with pytest.raises(RenderError) as caught:
        render_string("total: {{ outputs.price.value }}", {"outputs": {}})
    assert caught.value.expression == "total: {{ outputs.price.value }}"
    assert "price" in str(caught.value)


def test_mapping_keys_win_over_dict_methods():
    assert render_string("{{ outputs.t.values.items }}", {"outputs": {"t": {"values": {"items": 3}}}}) == "3"


def test_json_filters_round_trip():
    assert render_string("{{ data | json }}", {"data": {"a": [1, 2]}}) == '{"a":[1,2]}'
    assert render_string("{{ (text | fromJson).a }}", {"text": '{"a": 7}'}) == "7"


def test_the_sandbox_refuses_unsafe_attribute_access():
    with pytest.raises(RenderError):
        render_string("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes please", True), ("false", False), ("", False), ("0", False),
     ("null", False), (None, False), (True, True), (False, False)],
)  # fmt: skip
def test_kestra_truthiness(value, expected):
    assert is_truthy(value) is expected


def test_a_rendering_over_its_time_budget_fails_naming_the_limit(monkeypatch):
    from flowpods.core.expressions import limits

    monkeypatch.setattr(limits, "MAX_SECONDS", -1.0)  # the deadline has passed before the first loop item
    with pytest.raises(RenderError) as caught:
        render_string("{% for i in range(1, 3) %}{{ i }}{% endfor %}", {})
    assert "limit MAX_SECONDS" in str(caught.value)


def test_the_time_budget_counts_the_rendering_threads_cpu_not_the_wall_clock(monkeypatch):
    """A reconcile thread that waits for a core on a busy machine is not cut short; one that computes is."""
    from flowpods.core.expressions import limits

    monkeypatch.setattr(limits, "MAX_SECONDS", 0.2)
    with limits.budget() as budget:
        time.sleep(0.4)  # twice the budget of wall time, next to no CPU
        budget.check_time()
        spent = time.thread_time()
        with pytest.raises(limits.LimitExceeded, match="CPU time"):
            while time.thread_time() - spent < 0.5:
                budget.check_time()


def test_huge_numbers_are_a_render_error_or_printed_as_java_does_never_an_overflow():
    assert render_string("{{ (1e308 * 10) | numberFormat('#') }}", {}) == "∞"
    assert render_string("{{ 1e308 * 10 }}", {}) == "Infinity"
    with pytest.raises(RenderError):
        render_string("{{ 100000000000000000000 | date('yyyy') }}", {})


def test_dates_in_the_context_print_in_kestras_iso_form():
    from datetime import UTC, datetime

    start = datetime(2026, 11, 25, 18, 40, 13, 310331, tzinfo=UTC)
    assert render_string("{{ execution.startDate }}", {"execution": {"startDate": start}}) == "2026-11-25T18:40:13.310Z"
