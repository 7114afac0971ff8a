"""The flow model: a Kestra-shaped flow as typed data.

A Kestra user pastes a flow in unchanged, so every task type is accepted under its short name and its
Kestra name, and field names follow Kestra's. The model knows nothing of Kubernetes or of execution;
it only says what a valid flow is, and says precisely what is wrong with an invalid one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"
NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class FlowError(ValueError):
    """A flow (or an input to it) is invalid; `problems` names each thing that is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class Strict(BaseModel):
    """Unknown fields are errors: a typo must not silently change what a flow does."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- inputs -------------------------------------------------------------------------------------------


class InputType(StrEnum):
    STRING = "STRING"
    INT = "INT"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    JSON = "JSON"
    DATETIME = "DATETIME"
    DURATION = "DURATION"
    ENUM = "ENUM"
    ARRAY = "ARRAY"


class Input(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: InputType = InputType.STRING
    description: str | None = None
    required: bool = True
    defaults: Any = None
    displayName: str | None = None
    # validation, by type (Kestra's names)
    validator: str | None = Field(default=None, description="STRING: a regular expression the value must match")
    min: float | None = None
    max: float | None = None
    values: list[str] | None = Field(default=None, description="ENUM: the allowed values")
    itemType: InputType | None = Field(default=None, description="ARRAY: the type of each item")

    @field_validator("type", "itemType", mode="before")
    @classmethod
    def _kestra_aliases(cls, value: Any) -> Any:
        aliases = {"BOOL": "BOOLEAN", "SELECT": "ENUM"}
        return aliases.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _enum_needs_values(self) -> Input:
        if self.type == InputType.ENUM and not self.values:
            raise ValueError("an ENUM input needs a list of `values`")
        return self


# --- tasks --------------------------------------------------------------------------------------------


class Retry(Strict):
    """Kestra's retry block. `maxAttempts` counts every attempt, the first included."""

    type: Literal["constant", "exponential", "random"] = "constant"
    maxAttempts: int = Field(default=1, ge=1, validation_alias="maxAttempts")
    interval: timedelta = timedelta(seconds=1)
    maxInterval: timedelta | None = None
    delayFactor: float = Field(default=2.0, gt=0)
    minInterval: timedelta | None = None
    maxDuration: timedelta | None = None
    warningOnRetry: bool = False

    @model_validator(mode="before")
    @classmethod
    def _accept_old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "maxAttempt" in data:
            data = dict(data)
            data.setdefault("maxAttempts", data.pop("maxAttempt"))
        return data

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before attempt number `attempt` (2 is the first retry)."""
        if self.type == "exponential":
            delay = self.interval * (self.delayFactor ** max(attempt - 2, 0))
        elif self.type == "random":
            low = self.minInterval or timedelta(0)
            high = self.maxInterval or self.interval
            # deterministic "random": spread by attempt number so a replay makes the same choice
            delay = low + (high - low) * ((attempt * 0.618033988749) % 1.0)
            return delay
        else:
            delay = self.interval
        if self.maxInterval is not None:
            delay = min(delay, self.maxInterval)
        return delay


class TaskBase(Strict):
    id: str = Field(pattern=ID_PATTERN, description="Unique within the flow")
    description: str | None = None
    retry: Retry | None = None
    timeout: timedelta | None = Field(default=None, description="ISO-8601 duration, per attempt")
    allowFailure: bool = False
    disabled: bool = False

    # Where a task runs: in a worker pod, or inside the executor itself.
    runs_in_worker: ClassVar[bool] = True

    @property
    def kind(self) -> str:
        """The canonical (Kestra) type name."""
        return KIND_BY_CLASS[type(self)]

    def children(self) -> list[Sequence[TaskBase]]:
        """Nested task lists (for flowable tasks)."""
        return []


class Log(TaskBase):
    type: Literal["Log", "io.kestra.plugin.core.log.Log", "io.kestra.core.tasks.log.Log"]
    message: str | list[str]
    level: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] = "INFO"


class Return(TaskBase):
    type: Literal["Return", "io.kestra.plugin.core.debug.Return", "io.kestra.core.tasks.debugs.Return"]
    format: str | None = None


class OutputValues(TaskBase):
    type: Literal["OutputValues", "io.kestra.plugin.core.output.OutputValues"]
    values: dict[str, Any] = Field(default_factory=dict)


class Sleep(TaskBase):
    type: Literal["Sleep", "io.kestra.plugin.core.flow.Sleep"]
    duration: timedelta


class Fail(TaskBase):
    type: Literal["Fail", "io.kestra.plugin.core.execution.Fail"]
    condition: str | None = None
    errorMessage: str = "Task failure"


class HttpRequest(TaskBase):
    type: Literal["http.Request", "io.kestra.plugin.core.http.Request", "io.kestra.plugin.fs.http.Request"]
    uri: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    contentType: str | None = None


# Kestra's script task runners: Process runs the commands in the worker itself; the container runners
# (Docker, Kubernetes) mean "in the task's containerImage", which in flowpods is this task's own pod.
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
CONTAINER_RUNNERS = frozenset({
    "io.kestra.plugin.scripts.runner.docker.Docker",
    "io.kestra.plugin.ee.kubernetes.runner.Kubernetes",
    "io.kestra.plugin.kubernetes.runner.Kubernetes",
})  # fmt: skip
NO_FILE_STORAGE = "outputFiles needs file storage, not available yet"


class TaskRunner(BaseModel):
    """Kestra's `taskRunner`: its type decides where the commands run; its other settings are Kestra's."""

    model_config = ConfigDict(extra="allow")
    type: str

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != PROCESS_RUNNER and value not in CONTAINER_RUNNERS:
            known = ", ".join(sorted({PROCESS_RUNNER, *CONTAINER_RUNNERS}))
            raise ValueError(f"unknown task runner {value!r}; flowpods knows {known}")
        return value


class ScriptTask(TaskBase):
    """Kestra's script tasks (shell and python, Script and Commands): the fields they share."""

    containerImage: str | None = Field(default=None, description="run in this image (needs only /bin/sh)")
    env: dict[str, str] = Field(default_factory=dict)
    beforeCommands: list[str] = Field(default_factory=list, description="run first, in the same shell")
    interpreter: list[str] = Field(default_factory=lambda: ["/bin/sh", "-c"], min_length=1)
    inputFiles: dict[str, str] = Field(default_factory=dict, description="file name -> inline content")
    warningOnStdErr: bool = True
    outputFiles: list[str] | None = None
    taskRunner: TaskRunner | None = None

    @field_validator("outputFiles")
    @classmethod
    def _no_file_storage(cls, value: list[str] | None) -> list[str] | None:
        if value:
            raise ValueError(NO_FILE_STORAGE)
        return value

    @field_validator("inputFiles")
    @classmethod
    def _relative_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            parts = name.split("/")
            if not name or name.startswith("/") or ".." in parts:
                raise ValueError(f"inputFiles name {name!r} must be a relative path inside the working directory")
        return value

    @property
    def image(self) -> str | None:
        """The image the commands run in; None: the worker's own (no image, or the Process runner)."""
        if self.taskRunner is not None and self.taskRunner.type == PROCESS_RUNNER:
            return None
        return self.containerImage


class Shell(ScriptTask):
    type: Literal["Shell", "io.kestra.plugin.scripts.shell.Commands"]
    commands: list[str]


class ShellScript(ScriptTask):
    type: Literal["ShellScript", "io.kestra.plugin.scripts.shell.Script"]
    script: str


class Python(ScriptTask):
    type: Literal["Python", "io.kestra.plugin.scripts.python.Script"]
    script: str


class PythonCommands(ScriptTask):
    type: Literal["PythonCommands", "io.kestra.plugin.scripts.python.Commands"]
    commands: list[str]


class Subflow(TaskBase):
    type: Literal["Subflow", "io.kestra.plugin.core.flow.Subflow", "io.kestra.core.tasks.flows.Subflow"]
    runs_in_worker: ClassVar[bool] = False
    namespace: str
    flowId: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    wait: bool = True
    transmitFailed: bool = True


class Sequential(TaskBase):
    type: Literal["Sequential", "io.kestra.plugin.core.flow.Sequential"]
    runs_in_worker: ClassVar[bool] = False
    tasks: list[AnyTask] = Field(min_length=1)

    def children(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


class Parallel(TaskBase):
    type: Literal["Parallel", "io.kestra.plugin.core.flow.Parallel"]
    runs_in_worker: ClassVar[bool] = False
    tasks: list[AnyTask] = Field(min_length=1)
    concurrency: int = Field(default=0, ge=0, description="0: all at once")

    def children(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


class If(TaskBase):
    type: Literal["If", "io.kestra.plugin.core.flow.If"]
    runs_in_worker: ClassVar[bool] = False
    condition: str
    then: list[AnyTask] = Field(min_length=1)
    else_: list[AnyTask] = Field(default_factory=list, alias="else")

    def children(self) -> list[Sequence[TaskBase]]:
        return [list(self.then), list(self.else_)]


class Switch(TaskBase):
    type: Literal["Switch", "io.kestra.plugin.core.flow.Switch"]
    runs_in_worker: ClassVar[bool] = False
    value: str
    cases: dict[str, list[AnyTask]] = Field(default_factory=dict)
    defaults: list[AnyTask] = Field(default_factory=list)

    def children(self) -> list[Sequence[TaskBase]]:
        return [*self.cases.values(), self.defaults]


class ForEach(TaskBase):
    type: Literal["ForEach", "io.kestra.plugin.core.flow.ForEach"]
    runs_in_worker: ClassVar[bool] = False
    values: str | list[Any]
    concurrencyLimit: int = Field(default=1, ge=0, description="0: all iterations at once")
    tasks: list[AnyTask] = Field(min_length=1)

    def children(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


TASK_CLASSES: tuple[type[TaskBase], ...] = (
    Log, Return, OutputValues, Sleep, Fail, HttpRequest, Shell, ShellScript, Python, PythonCommands,
    Subflow, Sequential, Parallel, If, Switch, ForEach,
)  # fmt: skip


def _type_names(cls: type[TaskBase]) -> tuple[str, ...]:
    """The names a task class accepts in `type`: its short name first, then the Kestra ones."""
    return get_args(cls.model_fields["type"].annotation)


TYPE_ALIASES: dict[str, type[TaskBase]] = {name: cls for cls in TASK_CLASSES for name in _type_names(cls)}
# The canonical name is the current Kestra one (second in each list): it names spans and pods.
KIND_BY_CLASS: dict[type[TaskBase], str] = {cls: _type_names(cls)[1] for cls in TASK_CLASSES}
SHORT_BY_CLASS: dict[type[TaskBase], str] = {cls: _type_names(cls)[0] for cls in TASK_CLASSES}


def _task_tag(value: Any) -> str | None:
    raw = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    cls = TYPE_ALIASES.get(raw) if isinstance(raw, str) else None
    return SHORT_BY_CLASS[cls] if cls else None


AnyTask = Annotated[
    Annotated[Log, Tag("Log")]
    | Annotated[Return, Tag("Return")]
    | Annotated[OutputValues, Tag("OutputValues")]
    | Annotated[Sleep, Tag("Sleep")]
    | Annotated[Fail, Tag("Fail")]
    | Annotated[HttpRequest, Tag("http.Request")]
    | Annotated[Shell, Tag("Shell")]
    | Annotated[ShellScript, Tag("ShellScript")]
    | Annotated[Python, Tag("Python")]
    | Annotated[PythonCommands, Tag("PythonCommands")]
    | Annotated[Subflow, Tag("Subflow")]
    | Annotated[Sequential, Tag("Sequential")]
    | Annotated[Parallel, Tag("Parallel")]
    | Annotated[If, Tag("If")]
    | Annotated[Switch, Tag("Switch")]
    | Annotated[ForEach, Tag("ForEach")],
    Discriminator(
        _task_tag,
        custom_error_type="unknown_task_type",
        custom_error_message="unknown task type",
    ),
]

for _cls in (Sequential, Parallel, If, Switch, ForEach):
    _cls.model_rebuild()


# --- flows --------------------------------------------------------------------------------------------


class Schedule(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: Literal["Schedule", "io.kestra.plugin.core.trigger.Schedule", "io.kestra.core.models.triggers.types.Schedule"]
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    disabled: bool = False

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a valid cron expression")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value


class Webhook(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: Literal["Webhook", "io.kestra.plugin.core.trigger.Webhook", "io.kestra.core.models.triggers.types.Webhook"]
    key: str = Field(min_length=16, description="The secret part of the webhook URL; at least 16 characters")
    disabled: bool = False


_SCHEDULE = Annotated[Schedule, Tag("Schedule")]
_WEBHOOK = Annotated[Webhook, Tag("Webhook")]
Trigger = Annotated[
    _SCHEDULE | _WEBHOOK,
    Discriminator(
        lambda v: next(
            (tag for tag in ("Schedule", "Webhook")
             if tag in str((v.get("type") if isinstance(v, dict) else getattr(v, "type", "")) or "")),
            None,
        ),
        custom_error_type="unknown_trigger_type",
        custom_error_message="unknown trigger type (Schedule or Webhook)",
    ),
]  # fmt: skip


class FlowOutput(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: InputType = Field(default=InputType.STRING, description="The value is converted to this type")
    value: Any
    description: str | None = None


class Concurrency(Strict):
    limit: int = Field(ge=1)
    behavior: Literal["QUEUE", "CANCEL", "FAIL"] = "QUEUE"


class Flow(Strict):
    """A flow: what to run, in which order, with which inputs."""

    id: str = Field(pattern=ID_PATTERN)
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    revision: int | None = None
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: list[Input] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    tasks: list[AnyTask] = Field(min_length=1)
    errors: list[AnyTask] = Field(default_factory=list)
    finally_: list[AnyTask] = Field(default_factory=list, alias="finally")
    outputs: list[FlowOutput] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    concurrency: Concurrency | None = None
    disabled: bool = False

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_list(cls, value: Any) -> Any:
        # Kestra accepts labels as a map or as a list of {key, value}
        if isinstance(value, list):
            return {item["key"]: item["value"] for item in value if isinstance(item, dict) and "key" in item}
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Flow:
        seen: set[str] = set()
        dupes = [t.id for t in self.all_tasks() if t.id in seen or seen.add(t.id)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"task ids must be unique in a flow; repeated: {', '.join(sorted(set(dupes)))}")
        input_ids = [i.id for i in self.inputs]
        if len(set(input_ids)) != len(input_ids):
            raise ValueError("input ids must be unique")
        return self

    def all_tasks(self) -> list[TaskBase]:
        """Every task, nested ones included, in declaration order."""
        found: list[TaskBase] = []

        def walk(tasks: Sequence[TaskBase]) -> None:
            for task in tasks:
                found.append(task)
                for branch in task.children():
                    walk(branch)

        walk([*self.tasks, *self.errors, *self.finally_])
        return found

    def task(self, task_id: str) -> TaskBase:
        for task in self.all_tasks():
            if task.id == task_id:
                return task
        raise KeyError(task_id)


# --- parsing with errors a person can act on -----------------------------------------------------------


def flow_document(resource: dict[str, Any]) -> dict[str, Any]:
    """The Kestra-shaped flow inside a Flow resource; `id` and `namespace` default from its metadata."""
    is_resource = resource.get("kind") == "Flow" or {"metadata", "spec"} <= resource.keys()
    if not is_resource or "spec" not in resource:
        return resource
    metadata = resource.get("metadata") or {}
    spec = dict(resource.get("spec") or {})
    spec.setdefault("id", metadata.get("name"))
    spec.setdefault("namespace", metadata.get("namespace") or "default")
    return spec


def parse_flow(data: dict[str, Any]) -> Flow:
    """Validate a flow document; raise FlowError whose problems name the task id and the field."""
    if not isinstance(data, dict):
        raise FlowError([f"a flow must be a mapping, not {type(data).__name__}"])
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowError(describe_errors(exc, data)) from None


def describe_errors(exc: ValidationError, data: Any) -> list[str]:
    """Turn pydantic's locations into "task 'x' (Log): unknown field 'foo'"-style messages."""
    problems: list[str] = []
    for error in exc.errors():
        where, field = _locate(error["loc"], data)
        kind = error["type"]
        if kind == "extra_forbidden":
            what = f"unknown field '{field}'"
        elif kind == "missing":
            what = f"missing required field '{field}'"
        elif kind == "unknown_task_type":
            raw = _dig(data, error["loc"])
            what = f"unknown task type '{raw.get('type') if isinstance(raw, dict) else raw}'"
            if isinstance(raw, dict) and "type" not in raw:
                what = "missing required field 'type'"
        elif kind == "union_tag_invalid":
            what = "unknown type"
        else:
            message = error["msg"].removeprefix("Value error, ")
            what = f"field '{field}': {message}" if field else message
        problems.append(f"{where}: {what}" if where else what)
    return list(dict.fromkeys(problems))


def _dig(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_list or (isinstance(data, dict) and part in data):
            data = data[part]
        else:
            break
    return data


SECTION_NAMES = {
    "tasks": "task",
    "errors": "task",
    "finally": "task",
    "then": "task",
    "else": "task",
    "defaults": "task",
    "inputs": "input",
    "triggers": "trigger",
    "outputs": "output",
}


def _locate(loc: tuple[Any, ...], data: Any) -> tuple[str, str]:
    """Find the innermost task (or input, trigger, output) on the path and the field name under it."""
    where, field_parts, section = "", [], ""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            field_parts.append(str(part))
            section = str(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            field_parts = []
            noun = SECTION_NAMES.get(section, "task")
            if isinstance(node, dict) and "id" in node:
                where = f"{noun} '{node['id']}'"
                if noun == "task" and isinstance(node.get("type"), str):
                    where += f" ({node['type']})"
            else:
                where = f"{noun} #{part + 1}"
        elif isinstance(part, str) and part not in TYPE_ALIASES and part not in ("Schedule", "Webhook"):
            # a missing key names the field; a discriminator tag is skipped
            field_parts.append(part)
    return where, ".".join(field_parts)
