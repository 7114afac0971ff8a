"""Templating: Kestra's variables, and an undefined variable is an error naming the expression."""

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
