"""Kestra's expression language, case by case: variables -> expected output, each citing Kestra's docs.

Citations name the page and entry of Kestra's "Expressions" documentation (kestra.io/docs/expressions):
Pebble syntax, Operators/Tags/Tests, Filter reference, Function reference, Execution context. `Err(text)`
expects a RenderError whose message contains the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowpods.core.templating import NOW_KEY, RenderError, render_string


@dataclass(frozen=True)
class Err:
    text: str


ZONED = {"zoned": datetime(2013, 9, 8, 16, 19, tzinfo=timezone(timedelta(hours=2)))}
NOW = datetime(2024, 7, 9, 6, 17, 1, 171193, tzinfo=UTC)
BASE: dict[str, Any] = {
    "string": "string",
    "int": 1,
    "float": 1.123,
    "list": ["string", 1, 1.123],
    "bool": True,
    "map": {"string": "string", "int": 1, "float": 1.123},
    "nothing": None,
    "empty_list": [],
    "empty_map": {},
    "users": [{"name": "ada", "city": "London"}, {"name": "grace", "city": "Arlington"}],
    "inputs": {"who": "ada", "n": 3, "flag": False, "payload": '{"a": 1, "b": [1, 2]}'},
    "outputs": {"first": {"value": "one"}, "second-task": {"value": "two"}, "t": {"values": {"items": 3}}},
    "execution": {"id": "exec1", "startDate": NOW, "state": "RUNNING"},
    "taskrun": {"id": "tr1", "value": "v1", "attemptsCount": 0},
    "date": NOW,
    NOW_KEY: NOW,
}

CASES: list[tuple[str, str, Any, dict[str, Any]]] = []


def cases(cite: str, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        template, expected = row[0], row[1]
        variables = {**BASE, **(row[2] if len(row) > 2 else {})}
        CASES.append((cite, template, expected, variables))


# -- printing -----------------------------------------------------------------------------------------
P = "Pebble syntax > literals; Kestra prints values as its JSON mapper writes them"
cases(P, [
    ("{{ string }}", "string"),
    ("{{ int }}", "1"),
    ("{{ float }}", "1.123"),
    ("{{ list }}", '["string",1,1.123]'),
    ("{{ bool }}", "true"),
    ("{{ false }}", "false"),
    ("{{ map }}", '{"string":"string","int":1,"float":1.123}'),
    ("{{ list }} // {{ map }}", '["string",1,1.123] // {"string":"string","int":1,"float":1.123}'),
    ("[{{ nothing }}]", "[]"),
    ("[{{ null }}]", "[]"),
    ("{{ empty_list }}", "[]"),
    ("{{ empty_map }}", "{}"),
    ("{{ [1, 'a', true, null] }}", '[1,"a",true,null]'),
    ('{{ {"apple": "red", "banana": "yellow"} }}', '{"apple":"red","banana":"yellow"}'),
    ("{{ users }}", '[{"name":"ada","city":"London"},{"name":"grace","city":"Arlington"}]'),
    ("{{ {'nested': {'list': [1, {'k': null}]}} }}", '{"nested":{"list":[1,{"k":null}]}}'),
    ("{{ 'ünïcode' }}", "ünïcode"),
    ("{{ {'u': 'é'} }}", '{"u":"é"}'),
    ("{{ 1.0 }}", "1.0"),
    ("{{ 0.5 }}", "0.5"),
    ("{{ 100 }}", "100"),
    ("{{ 10l }}", "10"),
    ("{{ -3 }}", "-3"),
    ("{{ execution.startDate }}", "2024-07-09T06:17:01.171Z"),
    ("{{ {'at': date} }}", '{"at":"2024-07-09T06:17:01.171Z"}'),
    ("{{ zoned }}", "2013-09-08T16:19+02:00", ZONED),
    ("{{ date | date('iso') | length }}", "27"),
    ("plain text", "plain text"),
    ("a {{ 'b' }} c", "a b c"),
    ("{{ 'multi\nline' }}", "multi\nline"),
    ("{{- ' trimmed ' -}}", " trimmed "),
    ("x {{- 'y' }}", "xy"),
    ("{# a comment #}shown", "shown"),
    ("{{ \"It's\" }}", "It's"),
    ("{{ 'It\\'s' }}", "It's"),
])  # fmt: skip

# -- access -------------------------------------------------------------------------------------------
A = "Pebble syntax > accessing values: dot notation, bracket notation for special characters and indexes"
cases(A, [
    ("{{ outputs.first.value }}", "one"),
    ("{{ outputs['second-task'].value }}", "two"),
    ("{{ outputs[\"second-task\"]['value'] }}", "two"),
    ("{{ list[0] }}", "string"),
    ("{{ list[1] + 1 }}", "2"),
    ("{{ users[1].name }}", "grace"),
    ("{{ map.string }}", "string"),
    ("{{ map['int'] }}", "1"),
    ("{{ outputs.t.values.items }}", "3"),
    ("{{ inputs.who }}", "ada"),
    ("{{ execution.id }}", "exec1"),
    ("{{ taskrun.value }}", "v1"),
    ("{{ users[0]['city'] }}", "London"),
    ("{{ [10, 20][1] }}", "20"),
    ("{{ {'a': 1}['a'] }}", "1"),
])  # fmt: skip

# -- operators ----------------------------------------------------------------------------------------
M = "Operators > math: + - * / % (integer division of integers, as Java)"
cases(M, [
    ("{{ 2 + 2 / (10 % 3) * (8 - 1) }}", "16"),
    ("{{ 1 + 1 }}", "2"),
    ("{{ 5 - 7 }}", "-2"),
    ("{{ 3 * 4 }}", "12"),
    ("{{ 10 / 2 }}", "5"),
    ("{{ 10 / 3 }}", "3"),
    ("{{ -7 / 2 }}", "-3"),
    ("{{ 10.0 / 4 }}", "2.5"),
    ("{{ 10 % 3 }}", "1"),
    ("{{ 1.5 + 1 }}", "2.5"),
    ("{{ inputs.n * 2 }}", "6"),
    ("{{ (1 + 2) * 3 }}", "9"),
    ("{{ 1 + 2 * 3 }}", "7"),
    ("{{ -(2 + 3) }}", "-5"),
    ("{{ 1 / 0 }}", Err("division by zero")),
    ("{{ 'a' * 3 }}", Err("'*' needs numbers")),
    ("{{ [1] + [2] }}", "[1,2]"),
])  # fmt: skip
C = "Operators > concat: ~ joins the printed values"
cases(C, [
    ('{{ "apple" ~ "pear" ~ "banana" }}', "applepearbanana"),
    ("{{ 'n=' ~ 1 }}", "n=1"),
    ("{{ 'b=' ~ true }}", "b=true"),
    ("{{ 'l=' ~ [1, 2] }}", "l=[1,2]"),
    ("{{ 'x' ~ null ~ 'y' }}", "xy"),
    ("{{ 'a' ~ 'b' | upper }}", "AB"),
    ("{{ inputs.who ~ '!' }}", "ada!"),
    ('{{ "Hello #{inputs.who}, n=#{inputs.n + 1}" }}', "Hello ada, n=4"),
    ('{{ "map #{ {\'a\': 1} }" }}', 'map {"a":1}'),
    ("{{ 'no #{interpolation} in single quotes' }}", "no #{interpolation} in single quotes"),
    ('{{ "open #{ x" }}', Err("unclosed '#{'")),
])  # fmt: skip
CMP = "Operators > comparisons: == (alias equals, null-safe), !=, <, >, <=, >="
cases(CMP, [
    ("{{ 1 == 1 }}", "true"),
    ("{{ 1 == 2 }}", "false"),
    ("{{ 'a' equals 'a' }}", "true"),
    ("{{ 'a' equals 'b' }}", "false"),
    ("{{ null == null }}", "true"),
    ("{{ nothing == null }}", "true"),
    ("{{ 'a' != 'b' }}", "true"),
    ("{{ 1 < 2 }}", "true"),
    ("{{ 2 > 1 }}", "true"),
    ("{{ 2 <= 2 }}", "true"),
    ("{{ 3 >= 4 }}", "false"),
    ("{{ 1 == 1.0 }}", "true"),
    ("{{ 'b' > 'a' }}", "true"),
    ("{{ execution.state == 'RUNNING' }}", "true"),
    ("{{ 1 + 1 == 2 }}", "true"),
])  # fmt: skip
L = "Operators > logic: and, or, not; parentheses group"
cases(L, [
    ("{{ true and false }}", "false"),
    ("{{ true or false }}", "true"),
    ("{{ not true }}", "false"),
    ("{{ not false }}", "true"),
    ("{{ 2 is even and 3 is odd }}", "true"),
    ("{{ (3 is not even) and (2 is odd or 3 is even) }}", "false"),
    ("{{ 1 == 1 and 2 == 2 }}", "true"),
    ("{{ false or 1 == 1 }}", "true"),
    ("{{ not inputs.flag }}", "true"),
    ("{{ not 1 == 2 }}", "true"),
])  # fmt: skip
CT = "Operators > contains: an item of a list, a key of a map, a substring; a list on the right needs all"
cases(CT, [
    ('{{ ["apple", "pear", "banana"] contains "apple" }}', "true"),
    ('{{ ["apple", "pear", "banana"] contains "kiwi" }}', "false"),
    ('{{ {"apple": "red", "banana": "yellow"} contains "banana" }}', "true"),
    ('{{ {"apple": "red"} contains "red" }}', "false"),
    ('{{ ["apple", "pear", "banana", "peach"] contains ["apple", "peach"] }}', "true"),
    ('{{ ["apple", "pear"] contains ["apple", "kiwi"] }}', "false"),
    ("{{ 'hello world' contains 'world' }}", "true"),
    ("{{ 'hello' contains 'x' }}", "false"),
    ("{% if list contains 1 %}yes{% endif %}", "yes"),
    ("{{ [1, 2] contains 2 and true }}", "true"),
])  # fmt: skip
IN = "Pebble syntax > isIn; Kestra's in / not in operators"
cases(IN, [
    ("{{ execution.state isIn ['SUCCESS', 'RUNNING'] }}", "true"),
    ("{{ 'KILLED' isIn ['SUCCESS', 'RUNNING'] }}", "false"),
    ("{{ 1 in [1, 2] }}", "true"),
    ("{{ 3 in [1, 2] }}", "false"),
    ("{{ 3 not in [1, 2] }}", "true"),
    ("{{ 'a' in 'abc' }}", "true"),
])  # fmt: skip
BLOCK = {"block": {"test": {"child": "awesome"}}, "inner": "test"}
NC = "Operators > null-coalescing: ?? returns the first defined, non-null value"
cases(NC, [
    ("{{ foo ?? 'default' }}", "default"),
    ("{{ foo ?? bar ?? 'default' }}", "default"),
    ("{{ nothing ?? 'default' }}", "default"),
    ("{{ string ?? 'default' }}", "string"),
    ("{{ outputs.not_existing ?? '' }}", ""),
    ("{{ outputs.not_existing.value ?? 'none' }}", "none"),
    ("{{ outputs.first.value ?? 'none' }}", "one"),
    ("{{ list[10] ?? 'out' }}", "out"),
    ("{{ false ?? true }}", "false"),
    ("{{ 0 ?? 5 }}", "0"),
    ("{{ '' ?? 'x' }}", ""),
    ("{{ foo ?? null }}", ""),
    ("{{ foo ?? 1 + 1 }}", "2"),
    ("{{ (foo ?? 'a') ~ 'b' }}", "ab"),
    ("{{ foo ?? 'ab' | upper }}", "AB"),
    ("{{ inputs.missing ?? (execution.startDate | date('yyyy-MM-dd')) }}", "2024-07-09"),
    ("{% set baz = 'baz' %}{{ foo ?? bar ?? baz }}", "baz"),
    ("{{ foo ?? bar ?? raise }}", Err("every alternative of '?? raise' is undefined or null")),
    ("{{ string ?? raise }}", "string"),
    ("{{ missing ?? missing2 }}", Err("'missing2' is undefined")),
    ("{{ inner.bla ?? block.test.child }}", "awesome", BLOCK),
    ("{{ block[inner].child ?? null }}", "awesome", BLOCK),
    ("{{ block[missing].child ?? block[inner].child }}", "awesome", BLOCK),
    ("{{ block[missing].child ?? block[missing2].child ?? block[inner].child }}", "awesome", BLOCK),
])  # fmt: skip
UC = "Operators > null-coalescing: ??? returns the right-hand side only when the left is undefined"
cases(UC, [
    ("{{ foo ??? 'default' }}", "default"),
    ("{{ nothing ??? 'default' }}", ""),
    ("{{ string ??? 'default' }}", "string"),
    ("{{ outputs.nope ??? 'x' }}", "x"),
    ("{{ map.missing ??? 'x' }}", "x"),
    ("{{ null ??? 'IS NULL' }}", ""),
    ("{{ undefined ??? 'IS UNDEFINED' }}", "IS UNDEFINED"),
])  # fmt: skip
T = "Operators > ternary: a ? b : c (only the chosen branch is evaluated)"
cases(T, [
    ("{{ true ? 'yes' : 'no' }}", "yes"),
    ("{{ false ? 'yes' : 'no' }}", "no"),
    ("{{ list[3] is defined ? bla : null }}", ""),
    ("{{ nothing == null ? 'null' : 'set' }}", "null"),
    ("{{ 1 > 2 ? 'a' : 2 > 1 ? 'b' : 'c' }}", "b"),
    ("{{ taskrun.value == 'v1' ? 'ok' : ko }}", "ok"),
    ("{{ inputs.n > 2 ? inputs.n * 10 : 0 }}", "30"),
    ("{{ (true ? 'a' : 'b') ~ 'c' }}", "ac"),
    ("{{ bool ? [1] : [2] }}", "[1]"),
    ("{{ foo is defined ? foo : 'fallback' }}", "fallback"),
])  # fmt: skip
R = "Pebble range operator a..b and range(): both ends included"
cases(R, [
    ("{{ 1..3 }}", "[1,2,3]"),
    ("{% for i in range(0, 3) %}{{ i }},{% endfor %}", "0,1,2,3,"),
    ("{% for i in range(0, 6, 2) %}{{ i }},{% endfor %}", "0,2,4,6,"),
    ("{{ range(3, 1, -1) }}", "[3,2,1]"),
    ("{{ range(5, 1) }}", "[]"),
])  # fmt: skip
PR = "Operators > precedence: . then | then * / % then + - then comparisons, is, and, or"
cases(PR, [
    ("{{ -7 | abs }}", "7"),
    ("{{ 1 + 2 | abs }}", "3"),
    ("{{ 'A' | lower == 'a' }}", "true"),
    ("{{ 1 + 1 == 2 and 2 * 2 == 4 }}", "true"),
    ("{{ true or false and false }}", "true"),
    ("{{ 10 - 2 - 3 }}", "5"),
    ("{{ 2 * 3 % 4 }}", "2"),
])  # fmt: skip

# -- tests --------------------------------------------------------------------------------------------
TD = "Tests > defined: whether a variable exists, regardless of its value"
cases(TD, [
    ("{{ foo is defined }}", "false"),
    ("{{ string is defined }}", "true"),
    ("{{ nothing is defined }}", "true"),
    ("{{ foo is not defined }}", "true"),
    ("{{ outputs.first is defined }}", "true"),
    ("{{ outputs.nope.value is defined }}", "false"),
    ("{% if missing is not defined %}Variable is not defined.{% endif %}", "Variable is not defined."),
])  # fmt: skip
TN = "Tests > null: whether a variable is null"
cases(TN, [
    ("{{ nothing is null }}", "true"),
    ("{{ string is null }}", "false"),
    ("{{ string is not null }}", "true"),
    ("{{ null is null }}", "true"),
    ("{{ map.missing is null }}", "true"),
])  # fmt: skip
TE = "Tests > empty: null, an empty string, an empty collection or an empty map"
cases(TE, [
    ("{{ '' is empty }}", "true"),
    ("{{ nothing is empty }}", "true"),
    ("{{ empty_list is empty }}", "true"),
    ("{{ empty_map is empty }}", "true"),
    ("{{ list is empty }}", "false"),
    ("{{ 'x' is not empty }}", "true"),
    ("{% if users is empty %}none{% else %}{{ users | length }} users{% endif %}", "2 users"),
])  # fmt: skip
TEO = "Tests > even and odd"
cases(TEO, [
    ("{{ 2 is even }}", "true"),
    ("{{ 3 is even }}", "false"),
    ("{{ 3 is odd }}", "true"),
    ("{{ 4 is not odd }}", "true"),
])  # fmt: skip
TI = "Tests > iterable: lists and maps"
cases(TI, [
    ("{{ list is iterable }}", "true"),
    ("{{ map is iterable }}", "true"),
    ("{{ 'abc' is iterable }}", "false"),
    ("{{ 1 is iterable }}", "false"),
])  # fmt: skip
TJ = "Tests > json: whether a value is a valid JSON string"
cases(TJ, [
    ("{{ '{\"test\": 1}' is json }}", "true"),
    ("{{ '[1, 2]' is json }}", "true"),
    ("{{ 'not json' is json }}", "false"),
    ("{{ inputs.payload is json }}", "true"),
    ("{{ map is json }}", "false"),
])  # fmt: skip
TM = "Tests > map: whether a value is a map"
cases(TM, [
    ('{{ {"apple": "red"} is map }}', "true"),
    ("{{ list is map }}", "false"),
    ("{{ 'x' is not map }}", "true"),
])  # fmt: skip

# -- tags ---------------------------------------------------------------------------------------------
TG = "Tags > set, if/elseif/else, for (loop.index zero-based, else), filter, raw, macro, block"
cases(TG, [
    ('{% set header = "Welcome Page" %}{{ header }}', "Welcome Page"),
    ("{% set n = 1 + 2 %}{{ n * 2 }}", "6"),
    ("{% if true %}yes{% endif %}", "yes"),
    ("{% if false %}yes{% else %}no{% endif %}", "no"),
    ("{% if 1 == 2 %}a{% elseif 2 == 2 %}b{% else %}c{% endif %}", "b"),
    ("{% if users is empty %}No users.{% elseif users | length == 1 %}One.{% else %}Many.{% endif %}", "Many."),
    ("{% if foo ?? true %}coalesced{% endif %}", "coalesced"),
    ("{% if inputs.who == 'ada' and inputs.n > 1 %}ok{% endif %}", "ok"),
    ("{% for user in users %}{{ user.name }} lives in {{ user.city }}. {% endfor %}",
     "ada lives in London. grace lives in Arlington. "),
    ("{% for user in empty_list %}{{ user }}{% else %}No users found.{% endfor %}", "No users found."),
    ("{% for user in users %}{{ loop.index }}: {{ user.name }}{% if loop.last %} (last){% endif %};{% endfor %}",
     "0: ada;1: grace (last);"),
    ("{% for x in [1, 2, 3] %}{{ loop.first }}{% endfor %}", "truefalsefalse"),
    ("{% for x in [1, 2, 3] %}{{ loop.length }}{% endfor %}", "333"),
    ("{% for x in ['a', 'b', 'c'] %}{{ loop.revindex }}{% endfor %}", "210"),
    ("{% for entry in map %}{{ entry.key }}={{ entry.value }};{% endfor %}", "string=string;int=1;float=1.123;"),
    ("{% for k, v in {'a': 1} %}{{ k }}:{{ v }}{% endfor %}", "a:1"),
    ("{% for x in nothing %}x{% else %}none{% endfor %}", "none"),
    ("{% filter upper %}hello{% endfilter %}", "HELLO"),
    ("{% filter lower | title %}hello world{% endfilter %}", "Hello World"),
    ("{% raw %}{{ user.name }}{% endraw %}", "{{ user.name }}"),
    ('{% macro input(type="text", name, value="") %}type: "{{ type }}", name: "{{ name }}", value: "{{ value }}"'
     '{% endmacro %}{{ input(name="country") }}', 'type: "text", name: "country", value: ""'),
    ('{% macro greet(who) %}Hello {{ who }}{% endmacro %}{{ greet("ada") }}', "Hello ada"),
    ('{% block "header" %}Introduction{% endblock %}|{{ block("header") }}', "Introduction|Introduction"),
    ("{% block post %}content{% endblock %}", "content"),
    ("{%- if true -%}  trimmed  {%- endif -%}", "trimmed"),
    ("{% for i in 1..3 %}{{ i }}{% endfor %}", "123"),
    ("{% for c in 'ab' %}[{{ c }}]{% endfor %}", "[ab]"),
    ("{% include 'other' %}", Err("'include' tag is not supported")),
])  # fmt: skip

# -- filters: JSON, YAML, Ion ---------------------------------------------------------------------------
FJ = "Filter reference > toJson (json is its old name): any value as JSON"
cases(FJ, [
    ("{{ [1, 2, 3] | toJson }}", "[1,2,3]"),
    ("{{ true | toJson }}", "true"),
    ('{{ "foo" | toJson }}', '"foo"'),
    ("{{ null | toJson }}", "null"),
    ("{{ map | toJson }}", '{"string":"string","int":1,"float":1.123}'),
    ("{{ map | json }}", '{"string":"string","int":1,"float":1.123}'),
    ("{{ date | toJson }}", '"2024-07-09T06:17:01.171Z"'),
    ('{{ "line\nbreak" | toJson }}', '"line\\nbreak"'),
    ("{{ {'title': inputs.who, 'n': inputs.n} | toJson }}", '{"title":"ada","n":3}'),
])  # fmt: skip
JQ_RENDER = {"first": {"second": {"third": "{{ third }}"}}, "end": "awesome", "third": "{{ end }}"}
FQ = "Filter reference > jq: apply a JQ expression; the result is always a list"
cases(FQ, [
    ("{{ [1, 2, 3] | jq('.') }}", "[[1,2,3]]"),
    ("{{ [1, 2, 3] | jq('.[0]') | first }}", "1"),
    ("{{ outputs | jq('.first.value') | first }}", "one"),
    ("{{ {'a': {'b': 2}} | jq('.a.b * 2') | first }}", "4"),
    ("{{ [1, 2, 3] | jq('.[]') }}", "[1,2,3]"),
    ("{{ {'s': {'x': 72, 'y': 95}} | jq('.s | add') }}", "[167]"),
    ("{{ {'x': 72, 'y': 95} | values | jq('reduce .[] as $num (0; .+$num)') | first }}", "167"),
    ("{{ inputs.payload | jq('.b | length') | first }}", "2"),
    ("{{ '{\"key\": \"k1\"}' | jq('.key') | first }}", "k1"),
    ("{{ [1] | jq('.[') }}", Err("invalid jq expression")),
    ("{{ jq([1, 2], '.[1]') | first }}", "2"),
    ("{{ my_vars | jq('.test[0]') }}", "[1]", {"my_vars": {"test": [1, 2, 3]}}),
    ("{{ render(first) | jq('.second.third') }}", '["awesome"]', JQ_RENDER),
    ("{% set object = v | jq('.object') %}{{ object[0].key }}", "value", {"v": {"object": {"key": "value"}}}),
    ("{% set array = v | jq('.array') %}{{ array[0][0] }}", "arrayValue", {"v": {"array": ["arrayValue"]}}),
    ("{{ v | jq('.when') | first }}", "2013-09-08T16:19:00+02:00", {"v": {"when": ZONED["zoned"]}}),
])  # fmt: skip
FI = "Filter reference > toIon: an object as Amazon Ion text"
cases(FI, [
    ("{{ {'a': 1, 'b': 'x'} | toIon }}", '{a:1,b:"x"}'),
    ("{{ [1, true, null] | toIon }}", "[1,true,null]"),
    ("{{ 'text' | toIon }}", '"text"'),
    ("{{ {'with space': 1} | toIon }}", "{'with space':1}"),
    ("{{ 1.5 | toIon }}", "1.5e0"),
    ("{{ date | toIon }}", 'ZonedDateTime::"2024-07-09T06:17:01.171Z"'),
    ('{{ {"empty_object": {}} | toIon }}', "{empty_object:{}}"),
    ("{{ null | toIon }}", "null"),
    ("{{ {not: json} | toIon }}", Err("unexpected")),
])  # fmt: skip
FY = "Filter reference > yaml: a value as YAML text (lists indented, as Kestra's YamlFilterTest); yaml() parses"
cases(FY, [
    ("{{ 'string' | yaml }}", "string\n"),
    ("{{ 1 | yaml }}", "1\n"),
    ("{{ 1.123 | yaml }}", "1.123\n"),
    ("{{ true | yaml }}", "true\n"),
    ("{{ ['string', 1, 1.123] | yaml }}", " - string\n - 1\n - 1.123\n"),
    ('{{ {"key": "value"} | yaml }}', "key: value\n"),
    ("{{ {'a': [1, 2]} | yaml }}", "a:\n  - 1\n  - 2\n"),
    ("{{ {'int': 1, 'm': {'s': 'x'}} | yaml }}", "int: 1\nm:\n  s: x\n"),
    ('{{ "foo: bar" | yaml }}', "'foo: bar'\n"),
    ("{{ zoned | yaml }}", "'2013-09-08T16:19:00+02:00'\n", ZONED),
    ('{{ yaml("foo: [1, 2]").foo[1] }}', "2"),
    ('{{ yaml("a: [") }}', Err("invalid YAML")),
])  # fmt: skip
FIN = "Filter reference > indent and nindent: every line indented (nindent: after a line break), breaks kept"
cases(FIN, [
    ('{{ "a\nb" | indent(2) }}', "a\n  b"),
    ('{{ "a\nb\nc" | indent(4) }}', "a\n    b\n    c"),
    ('{{ "key: value" | nindent(2) }}', "\n  key: value"),
    ('{{ "a\nb" | nindent(2) }}', "\n  a\n  b"),
    ('{{ "a\nb" | indent(1, "-") }}', "a\n-b"),
    ("{{ null | nindent(2) }}", ""),
    ("{{ '' | nindent(2) }}", ""),
    ('{{ "\n\n" | nindent(2) }}', "\n  \n  \n  "),
    ("{{ 1 | nindent(2) }}", "\n  1"),
    ('{{ "first line\r\nsecond line" | nindent(2) }}', "\r\n  first line\r\n  second line"),
    ('{{ "first line\nsecond line" | nindent(2, "\t") }}', "\n\t\tfirst line\n\t\tsecond line"),
    ("{{ {'k': 'v'} | yaml | nindent(4) }}", "\n    k: v\n    "),
])  # fmt: skip

# -- filters: numbers ---------------------------------------------------------------------------------
FN = "Filter reference > abs, number, numberFormat (java.text.DecimalFormat), className"
cases(FN, [
    ("{{ -7 | abs }}", "7"),
    ("{{ -1.5 | abs }}", "1.5"),
    ('{{ "12.3" | number }}', "12.3"),
    ('{{ "12" | number + 1 }}', "13"),
    ('{{ "12.3" | number | className }}', "java.lang.Float"),
    ('{{ "12" | number | className }}', "java.lang.Integer"),
    ('{{ "9223372036854775807" | number | className }}', "java.lang.Long"),
    ('{{ "9223372036854775807" | number("BIGDECIMAL") | className }}', "java.math.BigDecimal"),
    ('{{ "12" | number("LONG") | className }}', "java.lang.Long"),
    ('{{ "12" | number("DOUBLE") }}', "12.0"),
    ('{{ "12" | number("BIGINTEGER") | className }}', "java.math.BigInteger"),
    ('{{ "2147483647" | number | className }}', "java.lang.Integer"),
    ('{{ "9223372036854775807" | number("DOUBLE") | className }}', "java.lang.Double"),
    ('{{ "abc" | number }}', Err("'abc' is not a number")),
    ('{{ "1" | number("WHAT") }}', Err("unknown number type")),
    ('{{ 3.141592653 | numberFormat("#.##") }}', "3.14"),
    ('{{ 3 | numberFormat("0.00") }}', "3.00"),
    ('{{ 1234567.891 | numberFormat("#,##0.00") }}', "1,234,567.89"),
    ('{{ 0.5 | numberFormat("#.#") }}', ".5"),
    ('{{ 7 | numberFormat("000") }}', "007"),
    ('{{ 2.5 | numberFormat("#") }}', "2"),
    ('{{ 0.256 | numberFormat("#%") }}', "26%"),
    ("{{ 'x' | className }}", "java.lang.String"),
    ("{{ 1 | className }}", "java.lang.Integer"),
    ("{{ 1.5 | className }}", "java.lang.Double"),
    ("{{ true | className }}", "java.lang.Boolean"),
    ("{{ list | className }}", "java.util.ArrayList"),
    ("{{ map | className }}", "java.util.LinkedHashMap"),
])  # fmt: skip

# -- filters: collections -----------------------------------------------------------------------------
FC = "Filter reference > collections: chunk, distinct, first, last, length, join, split, merge, sort, rsort, " \
     "reverse, slice, keys, values"  # fmt: skip
cases(FC, [
    ("{{ [1, 2, 3, 4, 5] | chunk(2) }}", "[[1,2],[3,4],[5]]"),
    ("{{ [1, 2] | chunk(5) }}", "[[1,2]]"),
    ("{{ [] | chunk(2) }}", "[]"),
    ("{{ [1, 2, 3, 4, 5, 6, 7, 8, 9] | chunk(2) }}", "[[1,2],[3,4],[5,6],[7,8],[9]]"),
    ("{{ 1 | chunk(2) }}", Err("TypeError")),
    ("{{ ['1', '1', '2', '3'] | distinct }}", '["1","2","3"]'),
    ("{{ ['apple', 'banana'] | first }}", "apple"),
    ("{{ 'Mitch' | first }}", "M"),
    ("{{ ['apple', 'banana'] | last }}", "banana"),
    ("{{ 'Mitch' | last }}", "h"),
    ("{{ 'Mitch' | length }}", "5"),
    ("{{ list | length }}", "3"),
    ("{{ map | length }}", "3"),
    ("{{ ['apple', 'banana'] | join(', ') }}", "apple, banana"),
    ("{{ [1, true, null] | join('-') }}", "1-true-"),
    ("{{ ['a', 'b'] | join }}", "ab"),
    ("{{ 'apple,banana,cherry' | split(',') }}", '["apple","banana","cherry"]'),
    ("{{ 'apple,banana,cherry,grape' | split(',', 2) }}", '["apple","banana,cherry,grape"]'),
    ("{{ 'a.b.c' | split('\\\\.') }}", '["a","b","c"]'),
    ("{{ 'a,b,,' | split(',') }}", '["a","b"]'),
    ("{{ 'a,b,,' | split(',', -1) }}", '["a","b","",""]'),
    ("{{ [1, 2] | merge([3, 4]) }}", "[1,2,3,4]"),
    ("{{ {'a': 1} | merge({'b': 2}) }}", '{"a":1,"b":2}'),
    ("{{ {'a': 1} | merge({'a': 2}) }}", '{"a":2}'),
    ("{{ [3, 1, 2] | sort }}", "[1,2,3]"),
    ("{{ ['b', 'a'] | sort }}", '["a","b"]'),
    ("{{ [3, 1, 2] | rsort }}", "[3,2,1]"),
    ("{{ [1, 'a'] | sort }}", Err("sort needs values that compare")),
    ("{{ ['apple', 'banana'] | reverse }}", '["banana","apple"]'),
    ("{{ 'abc' | reverse }}", "cba"),
    ("{{ ['apple', 'banana', 'cherry'] | slice(1, 2) }}", '["banana"]'),
    ("{{ 'Mitch' | slice(1, 3) }}", "it"),
    ("{{ [1, 2] | slice(1, 5) }}", Err("slice(1, 5) is outside")),
    ("{{ {'foo': 'bar', 'baz': 'qux'} | keys }}", '["foo","baz"]'),
    ("{{ ['a', 'b'] | keys }}", "[0,1]"),
    ("{{ {'foo': 'bar', 'baz': 'qux'} | values }}", '["bar","qux"]'),
    ("{{ [1] | values }}", Err("values needs a map")),
    ("{{ ['a', ['b', ['c']], 'd'] | flatten }}", '["a","b","c","d"]'),
    ("{{ [['first', 'x'], 'y'] | flatten | first }}", "first"),
    ("{{ 'abc' | flatten }}", Err("flatten needs a list")),
    ("{{ [1, 1, 2] | uniq }}", "[1,2]"),
])  # fmt: skip

# -- filters: strings ---------------------------------------------------------------------------------
FS = "Filter reference > strings: abbreviate, default, lower, upper, title, capitalize, replace, trim"
cases(FS, [
    ('{{ "this is a long sentence." | abbreviate(7) }}', "this..."),
    ('{{ "short" | abbreviate(10) }}', "short"),
    ('{{ "Lemons to lemonade." | upper | abbreviate(10) }}', "LEMONS ..."),
    ('{{ user.phoneNumber | default("No phone number") }}', "No phone number"),
    ('{{ nothing | default("fallback") }}', "fallback"),
    ("{{ '' | default('fallback') }}", "fallback"),
    ("{{ empty_list | default('fallback') }}", "fallback"),
    ("{{ string | default('fallback') }}", "string"),
    ("{{ 0 | default('fallback') }}", "0"),
    ('{{ "LOUD TEXT" | lower }}', "loud text"),
    ('{{ "quiet sentence" | upper }}', "QUIET SENTENCE"),
    ('{{ "article title" | title }}', "Article Title"),
    ('{{ "article title" | capitalize }}', "Article title"),
    ('{{ "I like %this% and %that%." | replace({"%this%": inputs.who, "%that%": "bar"}) }}', "I like ada and bar."),
    ("{{ 'aaa' | replace({'a': 'b'}) }}", "bbb"),
    ("{{ 'a1b22' | replace({'[0-9]+': '#'}, regexp=true) }}", "a#b#"),
    ("{{ 'john smith' | replace({'(\\\\w+) (\\\\w+)': '$2 $1'}, regexp=true) }}", "smith john"),
    ("{{ 'john doe is john doe' | replace({'john': 'jane'}) }}", "jane doe is jane doe"),
    ("{{ 'aa1bb2cc3' | replace({'(\\\\d)': '-$1-'}, regexp=true) }}", "aa-1-bb-2-cc-3-"),
    ("{{ '" + "a" * 25 + "b' | replace({'(.*a){25}': 'x'}, regexp=true) }}", "xb"),
    ("{{ 'x' | replace({'(': 'y'}, regexp=true) }}", Err("invalid replace pattern '('")),
    ('{{ "   padded text   " | trim }}', "padded text"),
])  # fmt: skip
FS2 = "Filter reference > strings: startsWith, endsWith, slugify, substringBefore/After(Last), string, escapeChar"
cases(FS2, [
    ('{{ "hello world" | startsWith("hello") }}', "true"),
    ('{{ "hello world" | startsWith("world") }}', "false"),
    ('{{ "hello world" | endsWith("world") }}', "true"),
    ('{{ "hello world" | endsWith("hello") }}', "false"),
    ('{{ "Hello World!" | slugify }}', "hello-world"),
    ('{{ "  Ça va, très bien  " | slugify }}', "ca-va-tres-bien"),
    ('{{ "Test\t\t\ntest*" | slugify }}', "test-test"),
    ('{{ "a.b.c" | substringBefore(".") }}', "a"),
    ('{{ "a.b.c" | substringAfter(".") }}', "b.c"),
    ('{{ "a.b.c" | substringBeforeLast(".") }}', "a.b"),
    ('{{ "a.b.c" | substringAfterLast(".") }}', "c"),
    ('{{ "abc" | substringBefore("x") }}', "abc"),
    ('{{ "abc" | substringAfter("x") }}', ""),
    ('{{ "abc" | substringBeforeLast("x") }}', "abc"),
    ('{{ "abc" | substringAfterLast("x") }}', ""),
    ("{{ 123 | string }}", "123"),
    ("{{ true | string }}", "true"),
    ("{{ [1] | string }}", "[1]"),
    ("{{ (123 | string) ~ 4 }}", "1234"),
    ("{{ 12.3 | string | className }}", "java.lang.String"),
    ('{{ {"field": "hello"} | string }}', '{"field":"hello"}'),
    ("{{ null | indent(2) }}", ""),
    ("{{ 'string' | indent(2) }}", "string"),
    ('{{ "\n\n" | indent(2) }}', "\n  \n  "),
    ('{{ "first line\r\nsecond line" | indent(2) }}', "first line\r\n  second line"),
    ("{{ {'empty_object': {}} | toJson }}", '{"empty_object":{}}'),
    ("{{ | toJson }}", Err("unexpected")),
    ('{{ "Can\'t be here" | escapeChar("single") }}', "Can\\'t be here"),
    ("{{ 'say \"hi\"' | escapeChar('double') }}", 'say \\"hi\\"'),
    ("{{ \"it's\" | escapeChar('shell') }}", "it'\\''s"),
    ("{{ 'x' | escapeChar('other') }}", Err("escapeChar type must be")),
    ("{{ \"a'b\" | sh }}", "'a'\"'\"'b'"),
    ("{{ '$(rm -rf /)' | sh }}", "'$(rm -rf /)'"),
])  # fmt: skip
FE = "Filter reference > base64encode, base64decode, sha1, sha256, sha512, md5, urlencode, urldecode"
cases(FE, [
    ('{{ "test" | base64encode }}', "dGVzdA=="),
    ('{{ "dGVzdA==" | base64decode }}', "test"),
    ('{{ "!!!" | base64decode }}', Err("is not valid base64")),
    ('{{ "test" | sha256 }}', "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ('{{ "test" | md5 }}', "098f6bcd4621d373cade4e832627b4f6"),
    ('{{ "test" | sha1 }}', "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    ('{{ "test" | sha512 | length }}', "128"),
    ('{{ "The string ü@foo-bar" | urlencode }}', "The+string+%C3%BC%40foo-bar"),
    ('{{ "The+string+%C3%BC%40foo-bar" | urldecode }}', "The string ü@foo-bar"),
    ('{{ "a b&c=d" | urlencode }}', "a+b%26c%3Dd"),
])  # fmt: skip

# -- filters: dates -----------------------------------------------------------------------------------
FD = "Filter reference > date: Java DateTimeFormatter patterns, named formats, existingFormat, timeZone"
cases(FD, [
    ('{{ execution.startDate | date("yyyy-MM-dd") }}', "2024-07-09"),
    ('{{ execution.startDate | date("yyyy-MM-dd HH:mm:ss.SSSSSS") }}', "2024-07-09 06:17:01.171193"),
    ('{{ date | date("HH:mm:ss") }}', "06:17:01"),
    ('{{ date | date("dd/MM/yy") }}', "09/07/24"),
    ('{{ date | date("MMMM d, yyyy") }}', "July 9, 2024"),
    ('{{ date | date("EEE, MMM d") }}', "Tue, Jul 9"),
    ('{{ date | date("EEEE") }}', "Tuesday"),
    ('{{ date | date("yyyy-MM-dd\'T\'HH:mm:ssX") }}', "2024-07-09T06:17:01Z"),
    ('{{ date | date("yyyy-MM-dd\'T\'HH:mm:ssXXX", timeZone="Europe/Paris") }}', "2024-07-09T08:17:01+02:00"),
    ('{{ date | date("HH:mm", timeZone="Asia/Kolkata") }}', "11:47"),
    ('{{ date | date("hh a") }}', "06 AM"),
    ('{{ date | date("D") }}', "191"),
    ('{{ date | date("iso") }}', "2024-07-09T06:17:01.171193Z"),
    ('{{ date | date() }}', "2024-07-09T06:17:01.171193Z"),
    ('{{ date | date(format="iso", timeZone="Europe/Paris") }}', "2024-07-09T08:17:01.171193+02:00"),
    ('{{ "2013-09-08T17:19:12+02:00" | date(timeZone="Europe/Paris") }}', "2013-09-08T17:19:12.000000+02:00"),
    ('{{ "2013-09-08T17:19:12" | date(timeZone="Europe/Paris") }}', "2013-09-08T17:19:12.000000+02:00"),
    ('{{ "2013-09-08" | date(timeZone="Europe/Paris") }}', "2013-09-08T00:00:00.000000+02:00"),
    ("{{ 'Tue, 08 Feb 2022 19:38:26 GMT' | date(existingFormat='rfc_1123_date_time', timeZone='Europe/Paris') }}",
     "2022-02-08T20:38:26.000000+01:00"),
    ('{{ date | date("sql") }}', "2024-07-09 06:17:01.171193"),
    ('{{ date | date("iso_sec") }}', "2024-07-09T06:17:01Z"),
    ("{{ date | date('yyyy-MM-dd') | className }}", "java.lang.String"),
    ('{{ "July 24, 2001" | date("yyyy-MM-dd", existingFormat="MMMM dd, yyyy") }}', "2001-07-24"),
    ('{{ "2001-July-24" | date(existingFormat="yyyy-MMMM-d", format="yyyy/MMMM/d") }}', "2001/July/24"),
    ('{{ "2024-01-02T03:04:05Z" | date("yyyy") }}', "2024"),
    ('{{ "2024-01-02" | date("dd.MM.yyyy") }}', "02.01.2024"),
    ('{{ "2024-01-02T03:04:05+02:00" | date("HH:mm", timeZone="UTC") }}', "01:04"),
    ("{{ 0 | date('yyyy-MM-dd') }}", "1970-01-01"),
    ('{{ "nope" | date("yyyy") }}', Err("cannot read 'nope' as a date")),
    ('{{ date | date("yyyy", timeZone="Mars/Base") }}', Err("unknown time zone")),
])  # fmt: skip
FDA = "Filter reference > dateAdd: add or subtract an amount of a ChronoUnit"
cases(FDA, [
    ("{{ date | dateAdd(-1, 'DAYS') }}", "2024-07-08T06:17:01.171193Z"),
    ("{{ date | dateAdd(-1, 'DAYS', timeZone='Europe/Paris') }}", "2024-07-08T08:17:01.171193+02:00"),
    ("{{ (date | timestamp) > (date | dateAdd(-1, 'DAYS') | timestamp) }}", "true"),
    ("{{ date | dateAdd(1, 'DAYS') | date('yyyy-MM-dd') }}", "2024-07-10"),
    ("{{ date | dateAdd(2, 'HOURS') | date('HH') }}", "08"),
    ("{{ date | dateAdd(30, 'MINUTES') | date('HH:mm') }}", "06:47"),
    ("{{ date | dateAdd(1, 'MONTHS') | date('yyyy-MM-dd') }}", "2024-08-09"),
    ("{{ date | dateAdd(-1, 'YEARS') | date('yyyy') }}", "2023"),
    ("{{ date | dateAdd(1, 'WEEKS') | date('yyyy-MM-dd') }}", "2024-07-16"),
    ("{{ '2024-01-31' | dateAdd(1, 'MONTHS') | date('yyyy-MM-dd') }}", "2024-02-29"),
    ("{{ date | dateAdd(1, 'FORTNIGHTS') }}", Err("unknown unit 'FORTNIGHTS'")),
    ("{{ date | dateAdd(999999999, 'YEARS') }}", Err("date out of range")),
])  # fmt: skip
FTS = "Filter reference > timestamp, timestampMilli, timestampMicro, timestampNano"
cases(FTS, [
    ("{{ date | timestamp }}", "1720505821"),
    ("{{ date | timestampMilli }}", "1720505821171"),
    ("{{ date | timestampMicro }}", "1720505821171193"),
    ("{{ date | timestampNano }}", "1720505821171193000"),
    ("{{ date | timestamp(timeZone='Asia/Kolkata') }}", "1720505821"),
    ("{{ '1970-01-01T00:00:10Z' | timestamp }}", "10"),
])  # fmt: skip

# -- functions ----------------------------------------------------------------------------------------
FF = "Function reference > fromJson (and its old name json), yaml, max, min, range, jq"
cases(FF, [
    ("{{ fromJson('[1, 2, 3]')[0] }}", "1"),
    ("{{ fromJson('{\"foo\": [666, 1, 2]}').foo[0] }}", "666"),
    ("{{ json('{\"a\": true}').a }}", "true"),
    ("{{ fromJson(inputs.payload).b }}", "[1,2]"),
    ("{{ fromJson(null) }}", ""),
    ("{{ fromJson('{bad') }}", Err("invalid JSON")),
    ("{{ yaml('foo: [666, 1, 2]').foo[0] }}", "666"),
    ("{{ max(20, 80, 30) }}", "80"),
    ("{{ min(20, 80, 30) }}", "20"),
    ("{{ max([4, 9]) }}", "9"),
    ("{{ range(1, 3) | join(',') }}", "1,2,3"),
    ("{% for i in range(0, 3) %}{{ i }},{% endfor %}", "0,1,2,3,"),
])  # fmt: skip
FNOW = "Function reference > now(): the current date (the time the executor renders at), formatted like date"
cases(FNOW, [
    ("{{ now() }}", "2024-07-09T06:17:01.171193Z"),
    ("{{ now(format='iso_local_date') }}", "2024-07-09"),
    ("{{ now(timeZone='Europe/Lisbon') }}", "2024-07-09T07:17:01.171193+01:00[Europe/Lisbon]"),
    ("{{ now() | date('yyyy-MM-dd') }}", "2024-07-09"),
    ("{{ now(timeZone='Europe/Paris') | date('HH:mm') }}", "08:17"),
    ("{{ now() | dateAdd(-1, 'DAYS') | date('yyyy-MM-dd') }}", "2024-07-08"),
    ("{{ now() | timestamp(timeZone='Europe/Paris') }}", "1720505821"),
    ("{{ now() | date(\"yyyy-MM-dd'T'HH:mm:ssX\", timeZone='UTC') }}", "2024-07-09T06:17:01Z"),
])  # fmt: skip
NESTED = {"vars": {"outer": "{{ vars.inner }}", "inner": "{{ inputs.who }}"}}
FALLBACK = {"vars": {"tmpl": "{{ trigger.date ?? execution.startDate | date('yyyy-MM-dd') }}"}}
EACH = {"outputs": {"make": {"v1": {"values": {"data": "d1"}}}}}
FR = "Function reference > render() renders an expression held in a value, again until stable; renderOnce() once"
cases(FR, [
    ("{{ render('{{ inputs.who }}') }}", "ada"),
    ("{{ render(vars.tmpl) }}", "2024-07-09", FALLBACK),
    ("{{ render(vars.outer) }}", "ada", NESTED),
    ("{{ renderOnce(vars.outer) }}", "{{ inputs.who }}", NESTED),
    ("{{ render(vars.outer, recursive=false) }}", "{{ inputs.who }}", NESTED),
    ("{{ render('plain') }}", "plain"),
    ("{{ render(input) }}", Err("Maximum render() nesting depth"), {"input": "{{ render(input) }}"}),
    ("{{ render(input) }}", "42", {"input": 42}),
    ("{{ render(input) }}", "", {"input": None}),
    ("{{ render(input) }}", "PT5S", {"input": timedelta(seconds=5)}),
    ("{{ fromJson() }}", Err("")),
    ("{{ fromJson('{not: json}') }}", Err("invalid JSON")),
    ("{{ fromJson('{\"empty_object\":{}}') }}", '{"empty_object":{}}'),
    ("{{ render(first) }}", Err("Too many rendering attempts"), {"first": "{{ second }}", "second": "{{ first }}"}),
    ("{{ render(m).third }}", "1", {"m": {"third": "{{ second }}"}, "second": "{{ first }}", "first": "1"}),
    ("{{ render(map) }}", '{"third":"1"}', {"map": {"third": "{{ second }}"}, "second": "{{ first }}", "first": "1"}),
    ("{{ render('{{ missing }}') }}", Err("undefined")),
])  # fmt: skip
FW = "Function reference > currentEachOutput(), printContext(); Execution context > parents, parent, labels"
cases(FW, [
    ("{{ currentEachOutput(outputs.make).values.data }}", "d1", EACH),
    ("{{ parents[0].taskrun.value }}", "outer", {"parents": [{"taskrun": {"value": "outer"}, "outputs": {}}]}),
    ("{{ parent.taskrun.value }}", "outer", {"parent": {"taskrun": {"value": "outer"}, "outputs": {}}}),
    ("{{ labels.system.correlationId }}", "exec1", {"labels": {"system": {"correlationId": "exec1"}}}),
    ("{{ printContext() | length > 10 }}", "true"),
])  # fmt: skip
FRND = "Function reference > randomInt(lower, upper excluded), uuid(): random in Kestra, stable per attempt here"
cases(FRND, [
    ("{{ randomInt(1, 2) }}", "1"),
    ("{{ randomInt(5, 6) + randomInt(5, 6) }}", "10"),
    ("{{ randomInt(1, 10) >= 1 and randomInt(1, 10) < 10 }}", "true"),
    ("{{ randomInt(3, 3) }}", "3"),
    ("{{ randomInt(10, 1) }}", Err("the lower bound must not be above the upper bound")),
    ("{{ randomInt('1', '10') }}", Err("needs two integers")),
    ("{{ randomInt(10) }}", Err("needs two integers")),
    ("{{ randomInt(-10, -1) < 0 }}", "true"),
    ("{{ uuid() | length }}", "36"),
    ("{{ uuid() == uuid() }}", "false"),
])  # fmt: skip
FSEC = "Function reference > secret('NAME'): a reference the worker pod resolves from a Kubernetes Secret"
cases(FSEC, [
    ("{{ secret('GITHUB_TOKEN') }}", "[[flowpods-secret:GITHUB_TOKEN]]"),
    ("Bearer {{ secret('API_KEY') }}", "Bearer [[flowpods-secret:API_KEY]]"),
    ("{{ secret('bad name!') }}", Err("invalid secret name")),
])  # fmt: skip
FU = "Function reference > kv, read, fileURI, fileSize, fileExists, http...: unsupported, named"
cases(FU, [
    ("{{ kv('my-key') }}", Err("kv() is not supported by flowpods")),
    ("{{ kv('my-key').field ?? null }}", Err("kv() is not supported by flowpods")),
    ("{{ read('file.txt') }}", Err("read() is not supported by flowpods")),
    ("{{ fileURI('f') }}", Err("fileURI() is not supported")),
    ("{{ fileSize('f') }}", Err("fileSize() is not supported")),
    ("{{ fileExists('f') }}", Err("fileExists() is not supported")),
    ("{{ http(uri='http://x') }}", Err("http() is not supported")),
    ("{{ randomPort() }}", Err("randomPort() is not supported")),
])  # fmt: skip
FM = "Pebble syntax > attribute access reaches Java methods: size(), length(), contains(), startsWith()..."
cases(FM, [
    ("{{ 'abc'.length() }}", "3"),
    ("{{ list.size() }}", "3"),
    ("{{ 'abc'.contains('b') }}", "true"),
    ("{{ 'abc'.startsWith('a') }}", "true"),
    ("{{ 'abc'.toUpperCase() }}", "ABC"),
    ("{{ 'abc'.substring(1) }}", "bc"),
    ("{{ map.containsKey('int') }}", "true"),
    ("{{ 'abc'.nope() }}", Err("unknown method 'nope()'")),
])  # fmt: skip

# -- errors -------------------------------------------------------------------------------------------
E = "Pebble strict variables: an undefined variable is an error naming it; syntax errors are refused"
cases(E, [
    ("{{ missing }}", Err("'missing' is undefined")),
    ("{{ outputs.price.value }}", Err("price")),
    ("total: {{ inputs.nope }}", Err("nope")),
    ("{{ missing | upper }}", Err("'missing' is undefined")),
    ("{{ missing ~ 'x' }}", Err("'missing' is undefined")),
    ("{% for x in missing %}{% endfor %}", Err("'missing' is undefined")),
    ("{{ missing + 1 }}", Err("'missing' is undefined")),
    ("{{ 1 + }}", Err("unexpected")),
    ("{{ 'unclosed }}", Err("unclosed string")),
    ("{{ a ? b }}", Err("expected ':'")),
    ("{{ x", Err("missing '}}'")),
    ("{% if %}", Err("unexpected")),
    ("{% nope %}", Err("unknown tag 'nope'")),
    ("{{ a and {% for x in y %}{{ x }}{% endfor %} }}", Err("'{%' inside a '{{ }}' or '{% %}': close it first")),
    ("{% if {{ x }} %}{% endif %}", Err("'{{' inside")),
    ("{{ 2 ** 3 }}", Err("unexpected")),
    ("{{ ''.__class__ }}", Err("")),
    ("{{ list | nofilter }}", Err("No filter named 'nofilter'")),
    ("{{ 1 is nottest }}", Err("No test named 'nottest'")),
])  # fmt: skip

# -- bounds (issue 12: hostile input) -----------------------------------------------------------------
B = "flowpods bounds every rendering (loop items, output size, time): a clear error naming the limit"
cases(B, [
    ("{{ range(0, 100000000) | length }}", Err("limit MAX_RANGE")),
    ("{{ 0..100000000 }}", Err("limit MAX_RANGE")),
    ("{% for i in range(0, 9999) %}{% for j in range(0, 9999) %}{% endfor %}{% endfor %}", Err("limit MAX_ITERATIONS")),
    ("{{ range(1, 9000) | join('" + "x" * 128 + "') | length }}", Err("limit MAX_OUTPUT")),
    ("{% set s = '" + "x" * 600_000 + "' %}{{ s ~ s }}", Err("limit MAX_OUTPUT")),
    ("{% for i in range(1, 2000) %}{{ 'x' | nindent(1000) }}{% endfor %}", Err("limit MAX_OUTPUT")),
    ("{{ range(1, 10000) | length }}", "10000"),
    ("{{ lipsum(100000) }}", Err("lipsum")),
])  # fmt: skip


@pytest.mark.parametrize(
    ("cite", "template", "expected", "variables"),
    CASES,
    ids=[f"{i:03d} {template[:60]}" for i, (_, template, _, _) in enumerate(CASES)],
)
def test_kestra_expression(cite: str, template: str, expected: Any, variables: dict[str, Any]) -> None:
    if isinstance(expected, Err):
        with pytest.raises(RenderError) as caught:
            render_string(template, variables)
        assert expected.text in str(caught.value), f"{cite}: {caught.value}"
        assert caught.value.expression == template
    else:
        assert render_string(template, variables) == expected, cite


def test_the_table_covers_at_least_300_cases() -> None:
    assert len(CASES) >= 300
