"""The hostile-input corpus: bad flow files and bad inputs, each with the words its error must contain.

Every case is a file (or an input) an adversary or a careless user could hand to flowpods. The tests in
this folder run each through the real entry point (the `flowpods` command, the HTTP API, the operator's
shapes) and check the answer is one clear error naming the problem, with no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOG = "  - id: hello\n    type: Log\n    message: hi\n"
HEAD = "id: bad\nnamespace: team\n"


def flow(*, inputs: str = "", tasks: str = LOG, extra: str = "") -> str:
    """A flow file: HEAD, optional inputs and extra top-level YAML, then tasks."""
    text = HEAD + extra
    if inputs:
        text += "inputs:\n" + inputs
    return text + "tasks:\n" + tasks


def nested_ifs(levels: int) -> str:
    """A flow of `levels` nested If tasks, as JSON (valid YAML; yaml.dump itself would recurse)."""
    task = '{"id": "leaf", "type": "Log", "message": "x"}'
    for i in range(levels):
        task = f'{{"id": "if{i}", "type": "If", "condition": "true", "then": [{task}]}}'
    return f'{{"id": "deep", "namespace": "team", "tasks": [{task}]}}'


def nested_ifs_document(levels: int) -> dict[str, Any]:
    """The same flow as a document, built without recursion."""
    task: dict[str, Any] = {"id": "leaf", "type": "Log", "message": "x"}
    for i in range(levels):
        task = {"id": f"if{i}", "type": "If", "condition": "true", "then": [task]}
    return {"id": "deep", "namespace": "team", "tasks": [task]}


def alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(8):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ", ".join(f"*{prev}" for _ in range(9)) + "]")
    return "\n".join(lines) + "\n" + HEAD + "tasks:\n  - {id: a, type: Log, message: *i}\n"


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    expect: str  # words the error must contain


def case(name: str, content: str | bytes, expect: str) -> Case:
    return Case(name, content.encode() if isinstance(content, str) else content, expect)


def task(body: str) -> str:
    return "  - id: t\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())


BAD_FLOW_FILES: list[Case] = [
    # shape: depth, size, encoding
    case("deep-flow-sequence", HEAD + "tasks: " + "[" * 2000 + "]" * 2000 + "\n", "nested more than 128 levels"),
    case(
        "deep-block-mapping",
        HEAD
        + "variables:\n"
        + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300))
        + "  " * 301
        + "v: 1\n"
        + "tasks:\n"
        + LOG,
        "nested more than 128 levels",
    ),
    case("thousand-nested-ifs", nested_ifs(1000), "nested more than 128 levels"),
    case("seventy-nested-ifs", nested_ifs(70), "nested more than 128 levels deep"),
    case(
        "deep-json-variables",
        HEAD + 'variables: {"v": ' + "[" * 500 + "]" * 500 + "}\ntasks:\n" + LOG,
        "nested more than 128 levels",
    ),
    case(
        "latin-1",
        b"id: bad\nnamespace: team\ntasks:\n  - id: a\n    type: Log\n    message: caf\xe9\n",
        "not UTF-8 text (byte 0xe9",
    ),
    case("utf-16", flow().encode("utf-16"), "not UTF-8 text"),
    case("binary", bytes(range(256)) * 4, "not UTF-8 text"),
    case("alias-bomb", alias_bomb(), "holds more than 200000 values"),
    case("five-megabytes", flow() + "# " + "x" * (5 * 1024 * 1024) + "\n", "a flow file may have at most"),
    case("empty", "", "the file is empty"),
    case("only-comments", "# nothing here\n# at all\n", "the file is empty"),
    case("no-tasks", HEAD, "no 'tasks': a flow needs an id, a namespace and at least one task"),
    case("empty-tasks", HEAD + "tasks: []\n", "field 'tasks': List should have at least 1 item"),
    case("tasks-not-a-list", HEAD + "tasks: hello\n", "field 'tasks'"),
    case("task-not-a-mapping", HEAD + "tasks:\n  - hello\n", "task #1"),
    case("two-flows", flow() + "---\n" + flow(), "2 flows in one file"),
    case("top-level-list", "- 1\n- 2\n", "no flow in this file"),
    case("top-level-scalar", "just a string\n", "no flow in this file"),
    case(
        "resource-without-spec",
        "apiVersion: flowpods.io/v1alpha1\nkind: Flow\nmetadata: {name: x}\n",
        "missing required field 'tasks'",
    ),
    case("unclosed-quote", HEAD + 'tasks:\n  - id: "a\n', "not valid YAML"),
    case("tab-indent", HEAD + "tasks:\n\t- id: a\n", "not valid YAML"),
    case("python-tag", HEAD + "variables: !!python/object/apply:os.system ['true']\ntasks:\n" + LOG, "not valid YAML"),
    # input validators (RE2)
    case("validator-open-paren", flow(inputs='  - id: x\n    validator: "("\n'), "not a valid regular expression"),
    case("validator-backslash", flow(inputs="  - id: x\n    validator: '\\'\n"), "trailing \\"),
    case("validator-backreference", flow(inputs="  - id: x\n    validator: '(a)\\1'\n"), "invalid escape sequence"),
    case("validator-lookahead", flow(inputs="  - id: x\n    validator: '(?=a)a'\n"), "invalid perl operator"),
    case("validator-huge-repeat", flow(inputs="  - id: x\n    validator: 'a{1000}{1000}'\n"), "bad repetition"),
    case("validator-too-long", flow(inputs="  - id: x\n    validator: '" + "a" * 2000 + "'\n"), "the limit is 1000"),
    case("validator-not-a-string", flow(inputs="  - id: x\n    validator: [1]\n"), "field 'validator'"),
    # input defaults, min and max
    case(
        "default-fails-validator",
        flow(inputs="  - id: x\n    validator: '^[a-z]+$'\n    defaults: ABC\n"),
        "input 'x': the default value is invalid: 'ABC' does not match the pattern",
    ),
    case(
        "default-redos",
        flow(inputs="  - id: x\n    validator: '(a+)+$'\n    defaults: '" + "a" * 5000 + "!'\n"),
        "the default value is invalid",
    ),
    case("default-not-int", flow(inputs="  - id: n\n    type: INT\n    defaults: abc\n"), "'abc' is not a valid INT"),
    case(
        "default-below-min",
        flow(inputs="  - id: n\n    type: INT\n    min: 5\n    defaults: 1\n"),
        "below the minimum 5",
    ),
    case(
        "default-above-max",
        flow(inputs="  - id: n\n    type: FLOAT\n    max: 1\n    defaults: 2.5\n"),
        "above the maximum 1",
    ),
    case(
        "default-not-in-enum",
        flow(inputs="  - id: e\n    type: ENUM\n    values: [a, b]\n    defaults: c\n"),
        "'c' is not one of a, b",
    ),
    case("default-not-boolean", flow(inputs="  - id: b\n    type: BOOLEAN\n    defaults: maybe\n"), "is not a BOOLEAN"),
    case(
        "default-not-datetime",
        flow(inputs="  - id: d\n    type: DATETIME\n    defaults: yesterday\n"),
        "not an ISO-8601 date",
    ),
    case(
        "default-not-duration",
        flow(inputs="  - id: d\n    type: DURATION\n    defaults: a while\n"),
        "not an ISO-8601 duration",
    ),
    case(
        "default-deep-json",
        flow(inputs="  - id: j\n    type: JSON\n    defaults: '" + "[" * 500 + "]" * 500 + "'\n"),
        "nested more than 128 levels",
    ),
    case(
        "default-array-item",
        flow(inputs="  - id: a\n    type: ARRAY\n    itemType: INT\n    defaults: [1, x]\n"),
        "'x' is not a valid INT",
    ),
    case(
        "min-above-max",
        flow(inputs="  - id: n\n    type: INT\n    min: 5\n    max: 1\n"),
        "min (5) is greater than max (1)",
    ),
    case("enum-without-values", flow(inputs="  - id: e\n    type: ENUM\n"), "an ENUM input needs a list of `values`"),
    case("duplicate-inputs", flow(inputs="  - id: x\n  - id: x\n"), "input ids must be unique"),
    case("unknown-input-type", flow(inputs="  - id: x\n    type: FILE\n"), "input 'x'"),
    # durations
    case(
        "negative-timeout",
        flow(tasks=task("type: Log\nmessage: hi\ntimeout: -PT5S")),
        "field 'timeout': a duration must be longer than zero",
    ),
    case("zero-timeout", flow(tasks=task("type: Log\nmessage: hi\ntimeout: PT0S")), "must be longer than zero"),
    case("garbage-timeout", flow(tasks=task("type: Log\nmessage: hi\ntimeout: soon")), "field 'timeout'"),
    case(
        "huge-retry-interval",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {interval: P999999999D}")),
        "field 'retry.interval': a duration cannot be longer than 366 days",
    ),
    case(
        "negative-retry-interval",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {interval: -PT1S}")),
        "a duration cannot be negative",
    ),
    case(
        "huge-max-interval",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {maxInterval: P9999D}")),
        "field 'retry.maxInterval'",
    ),
    case(
        "huge-max-duration",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {maxDuration: P99999999D}")),
        "field 'retry.maxDuration'",
    ),
    case(
        "zero-attempts",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {maxAttempts: 0}")),
        "greater than or equal to 1",
    ),
    case(
        "billion-attempts",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {maxAttempts: 1000000000}")),
        "less than or equal to 1000",
    ),
    case(
        "huge-delay-factor",
        flow(tasks=task("type: Log\nmessage: hi\nretry: {type: exponential, delayFactor: 1e308}")),
        "less than or equal to 100",
    ),
    case("negative-sleep", flow(tasks=task("type: Sleep\nduration: -PT1M")), "field 'duration': a duration cannot"),
    case("endless-sleep", flow(tasks=task("type: Sleep\nduration: P9999D")), "cannot be longer than 366 days"),
    # tasks and triggers
    case("unknown-task-type", flow(tasks=task("type: io.evil.Task")), "unknown task type 'io.evil.Task'"),
    case("missing-task-type", flow(tasks=task("message: hi")), "missing required field 'type'"),
    case("unknown-field", flow(tasks=task("type: Log\nmessage: hi\nmesage: typo")), "unknown field 'mesage'"),
    case("duplicate-task-ids", flow(tasks=LOG + LOG), "task ids must be unique in a flow; repeated: hello"),
    case("id-with-escape", flow(tasks='  - id: "a\\e[31m"\n    type: Log\n    message: hi\n'), "field 'id'"),
    case("namespace-upper-case", "id: bad\nnamespace: TEAM\ntasks:\n" + LOG, "field 'namespace'"),
    case(
        "bad-cron",
        flow(extra="triggers:\n  - {id: s, type: Schedule, cron: 'every day'}\n"),
        "'every day' is not a valid cron expression",
    ),
    case(
        "bad-timezone",
        flow(extra="triggers:\n  - {id: s, type: Schedule, cron: '@daily', timezone: Mars/Base}\n"),
        "unknown time zone 'Mars/Base'",
    ),
    case("empty-webhook-key", flow(extra='triggers:\n  - {id: w, type: Webhook, key: ""}\n'), "at least 1 character"),
    case("unknown-trigger", flow(extra="triggers:\n  - {id: w, type: Kafka}\n"), "unknown trigger type"),
    case("zero-concurrency", flow(extra="concurrency: {limit: 0}\n"), "greater than or equal to 1"),
    case(
        "parallel-negative-concurrency",
        flow(tasks=task("type: Parallel\nconcurrency: -1\ntasks:\n" + LOG)),
        "greater than or equal to 0",
    ),
    case("empty-sequential", flow(tasks=task("type: Sequential\ntasks: []")), "at least 1 item"),
]

# (name, flow file, --input arguments, words of the error); each is refused before anything runs
BAD_INPUTS: list[tuple[str, str, list[str], str]] = [
    (
        "redos-value",
        flow(inputs="  - id: x\n    validator: '(a+)+$'\n"),
        ["x=" + "a" * 50_000 + "!"],
        "does not match the pattern (a+)+$",
    ),
    (
        "megabyte-value-quoted-short",
        flow(inputs="  - id: x\n    validator: '^[a-z]+$'\n"),
        ["x=" + "A" * 1_000_000],
        "(1000000 characters)",
    ),
    (
        "deep-json",
        flow(inputs="  - id: j\n    type: JSON\n"),
        ["j=" + "[" * 1000 + "]" * 1000],
        "input 'j': the value is nested more than 128 levels deep",
    ),
    (
        "deep-array",
        flow(inputs="  - id: a\n    type: ARRAY\n"),
        ["a=" + "[" * 1000 + "]" * 1000],
        "nested more than 128",
    ),
    ("not-an-int", flow(inputs="  - id: n\n    type: INT\n"), ["n=1e999"], "'1e999' is not a valid INT"),
    ("bad-date", flow(inputs="  - id: d\n    type: DATETIME\n"), ["d=2026-13-45"], "not an ISO-8601 date"),
    ("bad-boolean", flow(inputs="  - id: b\n    type: BOOLEAN\n"), ["b=maybe"], "is not a BOOLEAN"),
    ("bad-enum", flow(inputs="  - id: e\n    type: ENUM\n    values: [a]\n"), ["e=b"], "'b' is not one of a"),
    ("undeclared", flow(), ["nope=1"], "input 'nope' is not declared"),
    ("no-equals", flow(), ["novalue"], "--input takes KEY=VALUE, not 'novalue'"),
    ("missing-required", flow(inputs="  - id: x\n"), [], "input 'x' is required"),
    ("disabled-flow", flow(extra="disabled: true\n"), [], "is disabled (disabled: true)"),
]
