"""The flow model: a Kestra-shaped flow as typed data.

A Kestra user pastes a flow in unchanged, so every task type is accepted under its short name and its
Kestra name, and field names follow Kestra's. The model knows nothing of Kubernetes or of execution;
it only says what a valid flow is, and says precisely what is wrong with an invalid one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    SerializeAsAny,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowpods.core.bounds import ShapeError, check_shape
from flowpods.core.patterns import PatternError, compile_pattern

ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"
INPUT_ID_PATTERN = r"^[a-zA-Z0-9][.a-zA-Z0-9_-]*$"  # Kestra nests `a.b` as inputs.a.b
NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
FILE_STORAGE = "needs file storage, not available yet"


def _scalar_text(value: Any) -> Any:
    """Kestra reads YAML scalars as text where text is meant: `id: 1`, `format: 2`, a Switch case `1:`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


def _kestra_duration(value: Any) -> Any:
    """Kestra reads ISO-8601 durations in any case (`PT0.25s`)."""
    return value.strip().upper() if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_scalar_text)]
TaskId = Annotated[str, BeforeValidator(_scalar_text), Field(pattern=ID_PATTERN, description="Unique within the flow")]


class FlowError(ValueError):
    """A flow (or an input to it) is invalid; `problems` names each thing that is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class Strict(BaseModel):
    """Unknown fields are errors: a typo must not silently change what a flow does.

    Schemas are built on first use (`defer_build`): the task models are recursive (flowable tasks hold
    `AnyTask`), and building each one at import cost 0.2-0.3 s of every `flowpods run` and worker start;
    deferred, a model's schema is built when the first flow that uses it is read."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


# --- durations ----------------------------------------------------------------------------------------

MAX_DURATION = timedelta(days=366)
"""The longest timeout, retry interval or sleep a flow may ask for: beyond it dates overflow."""


def _bounded(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    if value > MAX_DURATION:
        raise ValueError(f"a duration cannot be longer than {MAX_DURATION.days} days")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    return _bounded(value)


Duration = Annotated[timedelta, BeforeValidator(_kestra_duration), AfterValidator(_bounded)]
"""An ISO-8601 duration between zero and MAX_DURATION."""
PositiveDuration = Annotated[timedelta, BeforeValidator(_kestra_duration), AfterValidator(_positive)]
"""An ISO-8601 duration longer than zero and at most MAX_DURATION."""


# --- inputs -------------------------------------------------------------------------------------------


def _bound_text(bound: float | timedelta) -> str:
    """An input's min or max as the flow wrote it: `5`, not `5.0`."""
    return f"{bound:g}" if isinstance(bound, float | int) else str(bound)


class InputType(StrEnum):
    STRING = "STRING"
    INT = "INT"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    JSON = "JSON"
    YAML = "YAML"
    DATETIME = "DATETIME"
    DATE = "DATE"
    TIME = "TIME"
    DURATION = "DURATION"
    ENUM = "ENUM"
    MULTISELECT = "MULTISELECT"
    ARRAY = "ARRAY"
    SECRET = "SECRET"
    URI = "URI"
    EMAIL = "EMAIL"
    FILE = "FILE"


# Kestra's other names for the same types
INPUT_TYPE_ALIASES = {"BOOL": "BOOLEAN", "SELECT": "ENUM"}
_BOUNDED_BY_NUMBER = {InputType.INT, InputType.FLOAT}
_BOUNDED_BY_TIME = {InputType.DATETIME, InputType.DATE, InputType.TIME}
_ITEM_TYPES = set(InputType) - {InputType.ARRAY, InputType.FILE, InputType.MULTISELECT}


class DependsOn(Strict):
    """Kestra's `dependsOn`: the input is asked for once these inputs are known (and `condition` holds)."""

    inputs: list[str] = Field(default_factory=list)
    condition: str | None = None


class Input(Strict):
    id: str = Field(pattern=INPUT_ID_PATTERN)
    type: InputType = InputType.STRING
    description: str | None = None
    required: bool = True
    defaults: Any = None
    displayName: str | None = None
    dependsOn: DependsOn | None = None
    # validation, by type (Kestra's names)
    validator: str | None = Field(default=None, description="STRING: a regular expression the value must match")
    min: float | Duration | None = Field(default=None, description="INT, FLOAT: a number; DURATION: a duration")
    max: float | Duration | None = None
    after: datetime | date | time | None = Field(default=None, description="DATETIME, DATE, TIME: the earliest")
    before: datetime | date | time | None = None
    values: list[Text] | None = Field(default=None, description="ENUM (SELECT), MULTISELECT: the allowed values")
    options: list[Text] | None = Field(default=None, description="MULTISELECT: Kestra's older name of `values`")
    allowCustomValue: bool = False
    itemType: InputType | None = Field(default=None, description="ARRAY: the type of each item")

    @model_validator(mode="before")
    @classmethod
    def _accept_old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" in data and "id" not in data:
            data = {("id" if key == "name" else key): value for key, value in data.items()}
        return data

    @field_validator("type", "itemType", mode="before")
    @classmethod
    def _kestra_aliases(cls, value: Any) -> Any:
        return INPUT_TYPE_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("validator")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_pattern(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _rules_fit_the_type(self) -> Input:
        if self.type == InputType.FILE:
            raise ValueError(f"a FILE input {FILE_STORAGE}")
        if self.type in (InputType.ENUM, InputType.MULTISELECT) and not (self.values or self.options):
            raise ValueError(
                f"an {self.type.value} input needs a list of `values`"
                if self.type == InputType.ENUM
                else f"a {self.type.value} input needs a list of `values`"
            )
        if self.itemType is not None and self.itemType not in _ITEM_TYPES:
            raise ValueError(f"an ARRAY's itemType cannot be {self.itemType.value}")
        for bound in (self.min, self.max):
            if bound is None:
                continue
            if isinstance(bound, timedelta) != (self.type == InputType.DURATION):
                raise ValueError(
                    "min and max take a duration for DURATION and a number for INT and FLOAT, "
                    f"not for {self.type.value}"
                )
        if (self.after is not None or self.before is not None) and self.type not in _BOUNDED_BY_TIME:
            raise ValueError(f"after and before apply to DATETIME, DATE and TIME inputs, not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"min ({_bound_text(self.min)}) is greater than max ({_bound_text(self.max)})")
        return self

    @model_validator(mode="after")
    def _valid_defaults(self) -> Input:
        """A default that its own input would refuse is a flow error, found before any execution."""
        if self.defaults is None:
            return self
        from flowpods.core.inputs import coerce  # inputs imports this module

        try:
            coerce(self, self.defaults)
        except ValueError as exc:
            raise ValueError(f"the default value is invalid: {exc}") from None
        return self


# --- tasks --------------------------------------------------------------------------------------------


class Retry(Strict):
    """Kestra's retry block. `maxAttempts` counts every attempt, the first included."""

    type: Literal["constant", "exponential", "random"] = "constant"
    behavior: Literal["RETRY_FAILED_TASK", "CREATE_NEW_EXECUTION"] = "RETRY_FAILED_TASK"
    maxAttempts: int | None = Field(
        default=None, ge=1, le=1000, description="Unlimited (within maxDuration) when unset"
    )
    interval: Duration = timedelta(seconds=1)
    maxInterval: Duration | None = None
    delayFactor: float = Field(default=2.0, gt=0, le=100)
    minInterval: Duration | None = None
    maxDuration: Duration | None = None
    warningOnRetry: bool = False

    @model_validator(mode="before")
    @classmethod
    def _accept_old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "maxAttempt" in data:
            data = dict(data)
            data.setdefault("maxAttempts", data.pop("maxAttempt"))
        return data

    def allows(self, attempt: int) -> bool:
        """Whether attempt number `attempt` may start (maxDuration is checked where time is known)."""
        if self.maxAttempts is None:
            return self.maxDuration is not None
        return attempt <= self.maxAttempts

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before attempt number `attempt` (2 is the first retry)."""
        if self.type == "exponential":
            # the exponent is capped so the float cannot overflow; the delay is capped below
            seconds = self.interval.total_seconds() * self.delayFactor ** min(max(attempt - 2, 0), 64)
            delay = timedelta(seconds=min(seconds, MAX_DURATION.total_seconds()))
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


class WorkerGroup(Strict):
    key: str
    fallback: str | None = None


class TaskBase(Strict):
    id: TaskId
    description: str | None = None
    retry: Retry | None = None
    timeout: PositiveDuration | None = Field(default=None, description="ISO-8601 duration, per attempt")
    pendingTimeout: PositiveDuration | None = Field(
        default=None,
        description="How long an attempt's pod may wait to start (unschedulable, image not pulled) before the "
        "attempt fails with the pod's reason; default: the operator's FLOWPODS_PENDING_TIMEOUT (5 minutes)",
    )
    allowFailure: bool = False
    allowWarning: bool = Field(default=False, description="A task run ending WARNING ends SUCCESS")
    disabled: bool = False
    runIf: str | None = Field(default=None, description="Rendered; a false value skips the task (SKIPPED)")
    logLevel: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] | None = None
    logToFile: bool = False
    workerGroup: WorkerGroup | None = None

    # Where a task runs: in a worker pod, or inside the executor itself.
    runs_in_worker: ClassVar[bool] = True
    # Why flowpods cannot run this task (type) yet; a flow using it is refused with this reason.
    not_yet: ClassVar[str | None] = None

    @property
    def kind(self) -> str:
        """The canonical (Kestra) type name."""
        return KIND_BY_CLASS[type(self)]

    def children(self) -> list[Sequence[TaskBase]]:
        """Nested task lists (for flowable tasks), error handlers included."""
        return []

    def not_runnable(self) -> list[str]:
        """What stops flowpods from running this task as Kestra would (empty: it runs)."""
        problems = [f"not yet supported: {self.not_yet}"] if self.not_yet else []
        if self.workerGroup is not None:
            problems.append("field 'workerGroup': worker groups are a Kestra Enterprise feature, not available")
        if self.retry is not None and self.retry.behavior == "CREATE_NEW_EXECUTION":
            problems.append("field 'retry.behavior': CREATE_NEW_EXECUTION is not yet supported (RETRY_FAILED_TASK is)")
        return problems


class Flowable(TaskBase):
    """A task that runs in the executor and holds nested tasks, with its own `errors` and `finally`."""

    runs_in_worker: ClassVar[bool] = False
    errors: list[AnyTask] = Field(default_factory=list)
    finally_: list[AnyTask] = Field(default_factory=list, alias="finally")

    def branches(self) -> list[Sequence[TaskBase]]:
        return []

    def children(self) -> list[Sequence[TaskBase]]:
        return [*self.branches(), list(self.errors), list(self.finally_)]


LogLevel = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]


class Log(TaskBase):
    type: Literal["Log", "io.kestra.plugin.core.log.Log", "io.kestra.core.tasks.log.Log"]
    message: Text | list[Text]
    level: LogLevel = "INFO"


class Echo(TaskBase):
    """Kestra's deprecated Log: `format` logged at `level`."""

    type: Literal["Echo", "io.kestra.plugin.core.debug.Echo", "io.kestra.core.tasks.debugs.Echo"]
    format: Text
    level: LogLevel = "INFO"


class Return(TaskBase):
    type: Literal["Return", "io.kestra.plugin.core.debug.Return", "io.kestra.core.tasks.debugs.Return"]
    format: Text | None = None


class OutputValues(TaskBase):
    type: Literal[
        "OutputValues", "io.kestra.plugin.core.output.OutputValues", "io.kestra.core.tasks.outputs.OutputValues"
    ]
    values: dict[str, Any] = Field(default_factory=dict)


class Sleep(TaskBase):
    type: Literal["Sleep", "io.kestra.plugin.core.flow.Sleep", "io.kestra.core.tasks.flows.Sleep"]
    duration: Duration


class Fail(TaskBase):
    type: Literal["Fail", "io.kestra.plugin.core.execution.Fail", "io.kestra.core.tasks.executions.Fail"]
    condition: str | None = None
    errorMessage: Text = "Task failure"


class HttpRequest(TaskBase):
    type: Literal["http.Request", "io.kestra.plugin.core.http.Request", "io.kestra.plugin.fs.http.Request"]
    uri: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, Text] = Field(default_factory=dict)
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


class TaskRunner(BaseModel):
    """Kestra's `taskRunner`: its type decides where the commands run; its other settings are Kestra's."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    type: str

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != PROCESS_RUNNER and value not in CONTAINER_RUNNERS:
            known = ", ".join(sorted({PROCESS_RUNNER, *CONTAINER_RUNNERS}))
            raise ValueError(f"unknown task runner {value!r}; flowpods knows {known}")
        return value


def _relative_file_names(value: dict[str, str], field: str) -> dict[str, str]:
    """Files a task writes stay inside its working directory."""
    for name in value:
        parts = name.split("/")
        if not name or name.startswith("/") or ".." in parts:
            raise ValueError(f"{field} name {name!r} must be a relative path inside the working directory")
    return value


class ScriptTask(TaskBase):
    """Kestra's script tasks (shell and python, Script and Commands): the fields they share."""

    containerImage: str | None = Field(default=None, description="run in this image (needs only /bin/sh)")
    env: dict[str, Text] = Field(default_factory=dict)
    beforeCommands: list[str] = Field(default_factory=list, description="run first, in the same shell")
    interpreter: list[str] = Field(default_factory=lambda: ["/bin/sh", "-c"], min_length=1)
    inputFiles: dict[str, str] = Field(default_factory=dict, description="file name -> inline content")
    warningOnStdErr: bool = True
    outputFiles: list[str] | None = None
    taskRunner: TaskRunner | None = None

    def not_runnable(self) -> list[str]:
        problems = super().not_runnable()
        if self.outputFiles:
            problems.append(f"field 'outputFiles': {FILE_STORAGE}")
        return problems

    @field_validator("inputFiles")
    @classmethod
    def _relative_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _relative_file_names(value, "inputFiles")

    @property
    def image(self) -> str | None:
        """The image the commands run in; None: the worker's own (no image, or the Process runner)."""
        if self.taskRunner is not None and self.taskRunner.type == PROCESS_RUNNER:
            return None
        return self.containerImage


class Shell(ScriptTask):
    type: Literal["Shell", "io.kestra.plugin.scripts.shell.Commands"]
    commands: list[Text]


class ShellScript(ScriptTask):
    type: Literal["ShellScript", "io.kestra.plugin.scripts.shell.Script"]
    script: str


class Python(ScriptTask):
    type: Literal["Python", "io.kestra.plugin.scripts.python.Script"]
    script: str


class PythonCommands(ScriptTask):
    type: Literal["PythonCommands", "io.kestra.plugin.scripts.python.Commands"]
    commands: list[Text]


class Subflow(TaskBase):
    type: Literal[
        "Subflow", "io.kestra.plugin.core.flow.Subflow", "io.kestra.core.tasks.flows.Subflow",
        "io.kestra.core.tasks.flows.Flow",
    ]  # fmt: skip
    runs_in_worker: ClassVar[bool] = False
    namespace: str
    flowId: str
    revision: int | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Text] = Field(default_factory=dict)
    wait: bool = True
    transmitFailed: bool = True
    inheritLabels: bool = Field(default=False, description="The child also gets this execution's labels")
    outputs: dict[str, Any] | None = Field(default=None, description="Kestra's deprecated outputs map")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_list(cls, value: Any) -> Any:
        return _label_map(value)

    def not_runnable(self) -> list[str]:
        problems = super().not_runnable()
        if self.outputs:
            problems.append(
                "field 'outputs': not yet supported (deprecated in Kestra: declare `outputs` in the subflow)"
            )
        return problems


class Sequential(Flowable):
    type: Literal["Sequential", "io.kestra.plugin.core.flow.Sequential", "io.kestra.core.tasks.flows.Sequential"]
    tasks: list[AnyTask] = Field(min_length=1)

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


class AllowFailure(Sequential):
    """A Sequential whose failure ends WARNING: the flow goes on."""

    type: Literal[  # type: ignore[assignment]
        "AllowFailure", "io.kestra.plugin.core.flow.AllowFailure", "io.kestra.core.tasks.flows.AllowFailure"
    ]
    allowFailure: bool = True


class Parallel(Flowable):
    type: Literal["Parallel", "io.kestra.plugin.core.flow.Parallel", "io.kestra.core.tasks.flows.Parallel"]
    tasks: list[AnyTask] = Field(min_length=1)
    concurrency: int = Field(default=0, ge=0, description="0: all at once")

    @model_validator(mode="before")
    @classmethod
    def _accept_old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "concurrent" in data:
            data = dict(data)
            data.setdefault("concurrency", data.pop("concurrent"))
        return data

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


class If(Flowable):
    type: Literal["If", "io.kestra.plugin.core.flow.If", "io.kestra.core.tasks.flows.If"]
    condition: str
    then: list[AnyTask] = Field(min_length=1)
    else_: list[AnyTask] = Field(default_factory=list, alias="else")

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.then), list(self.else_)]


class Switch(Flowable):
    type: Literal["Switch", "io.kestra.plugin.core.flow.Switch", "io.kestra.core.tasks.flows.Switch"]
    value: str
    cases: dict[Text, list[AnyTask]] = Field(default_factory=dict)
    defaults: list[AnyTask] = Field(default_factory=list)

    @field_validator("defaults", mode="before")
    @classmethod
    def _null_is_none(cls, value: Any) -> Any:
        return [] if value is None else value

    @model_validator(mode="after")
    def _has_tasks(self) -> Switch:
        if not any(self.cases.values()) and not self.defaults:
            raise ValueError("a Switch needs tasks in `cases` or `defaults`; both are empty")
        return self

    def branches(self) -> list[Sequence[TaskBase]]:
        return [*(list[TaskBase](tasks) for tasks in self.cases.values()), list(self.defaults)]


class Each(Flowable):
    """The fan-out over values shared by ForEach, EachSequential and EachParallel."""

    tasks: list[AnyTask] = Field(min_length=1)

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]

    def each_values(self) -> str | list[Any]:
        raise NotImplementedError

    def each_limit(self) -> int:
        """How many iterations run at once (0: all)."""
        raise NotImplementedError


class ForEach(Each):
    type: Literal["ForEach", "io.kestra.plugin.core.flow.ForEach", "io.kestra.core.tasks.flows.ForEach"]
    values: str | list[Any]
    concurrencyLimit: int = Field(default=1, ge=0, description="0: all iterations at once")

    def each_values(self) -> str | list[Any]:
        return self.values

    def each_limit(self) -> int:
        return self.concurrencyLimit


class EachSequential(Each):
    """Kestra's deprecated ForEach, one value after the other."""

    type: Literal[
        "EachSequential", "io.kestra.plugin.core.flow.EachSequential", "io.kestra.core.tasks.flows.EachSequential"
    ]
    value: str | list[Any]

    def each_values(self) -> str | list[Any]:
        return self.value

    def each_limit(self) -> int:
        return 1


class EachParallel(Each):
    """Kestra's deprecated ForEach, `concurrent` values at once (0: all)."""

    type: Literal["EachParallel", "io.kestra.plugin.core.flow.EachParallel", "io.kestra.core.tasks.flows.EachParallel"]
    value: str | list[Any]
    concurrent: int = Field(default=0, ge=0)

    def each_values(self) -> str | list[Any]:
        return self.value

    def each_limit(self) -> int:
        return self.concurrent


class DagTask(Strict):
    task: AnyTask
    dependsOn: list[Text] = Field(default_factory=list)


class Dag(Flowable):
    """Tasks that start as soon as the tasks they depend on succeeded."""

    type: Literal["Dag", "io.kestra.plugin.core.flow.Dag", "io.kestra.core.tasks.flows.Dag"]
    tasks: list[DagTask] = Field(min_length=1)
    concurrent: int = Field(default=0, ge=0, description="0: no limit")

    @model_validator(mode="after")
    def _a_dag(self) -> Dag:
        ids = [entry.task.id for entry in self.tasks]
        for entry in self.tasks:
            unknown = [dep for dep in entry.dependsOn if dep not in ids]
            if unknown:
                raise ValueError(f"task '{entry.task.id}' depends on {', '.join(unknown)}, not a task of the Dag")
        cycle = _find_cycle({entry.task.id: entry.dependsOn for entry in self.tasks})
        if cycle:
            raise ValueError(f"cyclic dependency: {' -> '.join(cycle)}")
        return self

    def branches(self) -> list[Sequence[TaskBase]]:
        return [[entry.task for entry in self.tasks]]


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A path that comes back to its start, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for dep in graph.get(node, []):
            found = visit(dep, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for node in graph:
        found = visit(node, [])
        if found:
            return found
    return None


class Pause(Flowable):
    """Pause the execution until it is resumed (with its `onResume` inputs), or for at most `pauseDuration`
    (Kestra's older `delay`), after which `behavior` applies."""

    type: Literal["Pause", "io.kestra.plugin.core.flow.Pause", "io.kestra.core.tasks.flows.Pause"]
    delay: str | None = Field(default=None, description="Kestra's older name of pauseDuration")
    pauseDuration: str | None = Field(default=None, description="A duration, or a template rendering one")
    behavior: Literal["RESUME", "WARN", "CANCEL", "FAIL"] = "RESUME"
    onResume: list[Input] = Field(default_factory=list)
    tasks: list[AnyTask] = Field(default_factory=list)

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]

    @property
    def duration(self) -> str | None:
        return self.pauseDuration or self.delay


class CheckFrequency(Strict):
    maxIterations: int = Field(default=100, ge=1)
    maxDuration: Duration = timedelta(hours=1)
    interval: Duration = timedelta(seconds=1)


class WaitFor(Flowable):
    type: Literal["WaitFor", "io.kestra.plugin.core.flow.WaitFor"]
    condition: str
    tasks: list[AnyTask] = Field(min_length=1)
    checkFrequency: CheckFrequency = Field(default_factory=CheckFrequency)
    failOnMaxReached: bool = False

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]


class WorkingDirectory(Flowable):
    type: Literal[
        "WorkingDirectory", "io.kestra.plugin.core.flow.WorkingDirectory", "io.kestra.core.tasks.flows.WorkingDirectory"
    ]
    tasks: list[AnyTask] = Field(min_length=1)
    cache: dict[str, Any] | None = None
    namespaceFiles: dict[str, Any] | None = None
    inputFiles: dict[str, str] | str | None = None
    outputFiles: list[str] | None = None

    def branches(self) -> list[Sequence[TaskBase]]:
        return [list(self.tasks)]

    @field_validator("inputFiles")
    @classmethod
    def _relative_names(cls, value: dict[str, str] | str | None) -> dict[str, str] | str | None:
        return _relative_file_names(value, "inputFiles") if isinstance(value, dict) else value

    def not_runnable(self) -> list[str]:
        """Its tasks run one after the other in one pod: worker tasks only, without what a pod cannot redo."""
        problems = super().not_runnable()
        if self.outputFiles:
            problems.append(f"field 'outputFiles': {FILE_STORAGE}")
        if self.cache:
            problems.append(f"field 'cache': {FILE_STORAGE}")
        if self.namespaceFiles and self.namespaceFiles.get("enabled", True) is not False:
            problems.append(f"field 'namespaceFiles': namespace files {FILE_STORAGE}")
        if isinstance(self.inputFiles, str):
            problems.append(f"field 'inputFiles': a file of input files {FILE_STORAGE}")
        if self.retry is not None:
            problems.append("field 'retry': not yet supported on a WorkingDirectory (its tasks are not retried)")
        for child in self.tasks:
            named = f"task '{child.id}'"
            if not child.runs_in_worker:
                problems.append(f"{named}: a WorkingDirectory runs worker tasks only, not {child.kind}")
            if child.retry is not None:
                problems.append(f"{named}: field 'retry': not yet supported inside a WorkingDirectory")
            if child.runIf is not None:
                problems.append(f"{named}: field 'runIf': not yet supported inside a WorkingDirectory")
            if isinstance(child, ScriptTask) and child.image is not None:
                problems.append(
                    f"{named}: field 'containerImage': not supported inside a WorkingDirectory "
                    "(its tasks run one after the other in the worker image, in one pod)"
                )
        return problems


class Template(TaskBase):
    type: Literal["Template", "io.kestra.plugin.core.flow.Template", "io.kestra.core.tasks.flows.Template"]
    runs_in_worker: ClassVar[bool] = False
    not_yet = "Template (deprecated in Kestra; stored templates are not available: use a Subflow)"
    namespace: str
    templateId: str
    tenantId: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)


class Labels(TaskBase):
    type: Literal[
        "execution.Labels", "io.kestra.plugin.core.execution.Labels", "io.kestra.core.tasks.executions.Labels"
    ]
    runs_in_worker: ClassVar[bool] = False
    not_yet = "execution.Labels (changing an execution's labels while it runs)"
    labels: dict[str, Any] | list[Any] | str


class Resume(TaskBase):
    type: Literal["execution.Resume", "io.kestra.plugin.core.execution.Resume"]
    runs_in_worker: ClassVar[bool] = False
    not_yet = "execution.Resume (needs Pause and execution controls)"
    executionId: str | None = None
    namespace: str | None = None
    flowId: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)


class _FileStorageTask(TaskBase):
    """Kestra tasks that read or write Kestra's internal storage."""

    not_yet = FILE_STORAGE
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class ForEachItem(_FileStorageTask):
    type: Literal["ForEachItem", "io.kestra.plugin.core.flow.ForEachItem", "io.kestra.core.tasks.flows.ForEachItem"]
    runs_in_worker: ClassVar[bool] = False
    not_yet = f"ForEachItem (it splits a file of items) {FILE_STORAGE}"
    items: str
    namespace: str
    flowId: str


class LocalFiles(TaskBase):
    """Files written into the working directory (a WorkingDirectory's, shared with the tasks after it)."""

    type: Literal[
        "storage.LocalFiles", "io.kestra.plugin.core.storage.LocalFiles", "io.kestra.core.tasks.storages.LocalFiles"
    ]
    inputs: dict[Text, Text] = Field(default_factory=dict, description="file name -> content (rendered)")
    outputs: list[str] | None = Field(default=None, description="files kept in Kestra's storage")

    @field_validator("inputs")
    @classmethod
    def _relative_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _relative_file_names(value, "inputs")

    def not_runnable(self) -> list[str]:
        problems = super().not_runnable()
        if self.outputs:
            problems.append(f"field 'outputs': {FILE_STORAGE}")
        return problems


class FetchLogs(_FileStorageTask):
    type: Literal["log.Fetch", "io.kestra.plugin.core.log.Fetch", "io.kestra.core.tasks.log.Fetch"]
    not_yet = f"log.Fetch (it writes the logs to a file) {FILE_STORAGE}"


class StateSet(_FileStorageTask):
    type: Literal["state.Set", "io.kestra.plugin.core.state.Set", "io.kestra.core.tasks.states.Set"]
    not_yet = f"state.Set (the state is a file) {FILE_STORAGE}"


class StateGet(_FileStorageTask):
    type: Literal["state.Get", "io.kestra.plugin.core.state.Get", "io.kestra.core.tasks.states.Get"]
    not_yet = f"state.Get (the state is a file) {FILE_STORAGE}"


class StateDelete(_FileStorageTask):
    type: Literal["state.Delete", "io.kestra.plugin.core.state.Delete", "io.kestra.core.tasks.states.Delete"]
    not_yet = f"state.Delete (the state is a file) {FILE_STORAGE}"


TASK_CLASSES: tuple[type[TaskBase], ...] = (
    Log, Echo, Return, OutputValues, Sleep, Fail, HttpRequest, Shell, ShellScript, Python, PythonCommands,
    Subflow, Sequential, AllowFailure, Parallel, If, Switch, ForEach, EachSequential, EachParallel, Dag,
    Pause, WaitFor, WorkingDirectory, Template, Labels, Resume,
    ForEachItem, LocalFiles, FetchLogs, StateSet, StateGet, StateDelete,
)  # fmt: skip


def _type_names(cls: type[TaskBase]) -> tuple[str, ...]:
    """The names a task class accepts in `type`: its short name first, then the Kestra ones."""
    return get_args(cls.model_fields["type"].annotation)


TYPE_ALIASES: dict[str, type[TaskBase]] = {name: cls for cls in TASK_CLASSES for name in _type_names(cls)}
# The canonical name is the current Kestra one (second in each list): it names spans and pods.
KIND_BY_CLASS: dict[type[TaskBase], str] = {cls: _type_names(cls)[1] for cls in TASK_CLASSES}
SHORT_BY_CLASS: dict[type[TaskBase], str] = {cls: _type_names(cls)[0] for cls in TASK_CLASSES}


def _task_of_its_type(value: Any) -> TaskBase:
    """Validate a task against its own type's model alone, picked by `type`, instead of a union of every task
    type: each model's schema is then built on its first use (`defer_build`), so a flow builds only the types it
    uses (a hello-world flow: 2 of 34 models, 0.1 s less at every `flowpods run`), and a recursive task's schema
    no longer holds the whole union."""
    if isinstance(value, TaskBase):
        return value
    raw = value.get("type") if isinstance(value, dict) else None
    cls = TYPE_ALIASES.get(raw) if isinstance(raw, str) else None
    if cls is None:
        raise PydanticCustomError("unknown_task_type", "unknown task type")
    return cls.model_validate(value)


if TYPE_CHECKING:
    AnyTask = (
        Log
        | Echo
        | Return
        | OutputValues
        | Sleep
        | Fail
        | HttpRequest
        | Shell
        | ShellScript
        | Python
        | PythonCommands
        | Subflow
        | Sequential
        | AllowFailure
        | Parallel
        | If
        | Switch
        | ForEach
        | EachSequential
        | EachParallel
        | Dag
        | Pause
        | WaitFor
        | WorkingDirectory
        | Template
        | Labels
        | Resume
        | ForEachItem
        | LocalFiles
        | FetchLogs
        | StateSet
        | StateGet
        | StateDelete
    )
else:  # dumped as what it is (SerializeAsAny), not as the TaskBase it is declared as
    AnyTask = Annotated[SerializeAsAny[TaskBase], PlainValidator(_task_of_its_type)]


# --- flows --------------------------------------------------------------------------------------------


class Condition(BaseModel):
    """A Kestra condition (ExecutionStatus, ExecutionFlow, Expression, ...): its fields depend on its type."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    type: str = Field(min_length=1)


class Schedule(Strict):
    id: TaskId
    type: Literal["Schedule", "io.kestra.plugin.core.trigger.Schedule", "io.kestra.core.models.triggers.types.Schedule"]
    description: str | None = None
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    disabled: bool = False
    conditions: list[Condition] = Field(default_factory=list)
    backfill: dict[str, Any] | None = None

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

    def warnings(self) -> list[str]:
        found = []
        if self.conditions:
            found.append(f"trigger '{self.id}': `conditions` are not evaluated yet; it fires at every cron time")
        if self.backfill is not None:
            found.append(f"trigger '{self.id}': `backfill` is not supported yet; missed times are not run")
        return found


WEBHOOK_KEY_MIN = 16


class Webhook(Strict):
    id: TaskId
    type: Literal["Webhook", "io.kestra.plugin.core.trigger.Webhook", "io.kestra.core.models.triggers.types.Webhook"]
    description: str | None = None
    key: Text = Field(min_length=1, description="The secret part of the webhook URL")
    disabled: bool = False
    conditions: list[Condition] = Field(default_factory=list)

    def warnings(self) -> list[str]:
        found = []
        if len(self.key) < WEBHOOK_KEY_MIN:
            found.append(
                f"trigger '{self.id}': the webhook key has {len(self.key)} characters; use at least "
                f"{WEBHOOK_KEY_MIN}, anyone who guesses it can start the flow"
            )
        if self.conditions:
            found.append(f"trigger '{self.id}': `conditions` are not evaluated yet; every call starts the flow")
        return found


class UpstreamFlow(Strict):
    namespace: str
    flowId: str | None = None
    states: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None


class ExecutionFilter(Strict):
    """One test on the ending execution (Kestra's ExecutionFilters condition; `where` of preconditions)."""

    field: Literal["FLOW_ID", "NAMESPACE", "STATE", "EXPRESSION", "LABEL"]
    type: Literal[
        "EQUAL_TO", "NOT_EQUAL_TO", "IN", "NOT_IN", "IS_TRUE", "IS_FALSE", "IS_NULL", "IS_NOT_NULL",
        "STARTS_WITH", "ENDS_WITH", "REGEX", "CONTAINS",
    ]  # fmt: skip
    value: Text | None = None
    values: list[Text] | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Where(Strict):
    id: str
    operand: Literal["AND", "OR"] = "AND"
    filters: list[ExecutionFilter] = Field(min_length=1)


class Preconditions(Strict):
    id: str | None = None
    flows: list[UpstreamFlow] = Field(default_factory=list)
    where: list[Where] = Field(default_factory=list)
    timeWindow: dict[str, Any] | None = None
    resetOnSuccess: bool = True


class FlowTrigger(Strict):
    """Starts this flow when executions of other flows end (Kestra's Flow trigger)."""

    id: TaskId
    type: Literal["Flow", "io.kestra.plugin.core.trigger.Flow", "io.kestra.core.models.triggers.types.Flow"]
    description: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)
    preconditions: Preconditions | None = None
    states: list[str] = Field(default_factory=list)
    disabled: bool = False

    def warnings(self) -> list[str]:
        from flowpods.core.flowtriggers import limitations  # the rules live with the matching

        return [f"trigger '{self.id}': {problem}" for problem in limitations(self)]


TRIGGER_TAGS = ("Schedule", "Webhook", "Flow")
Trigger = Annotated[
    Annotated[Schedule, Tag("Schedule")] | Annotated[Webhook, Tag("Webhook")] | Annotated[FlowTrigger, Tag("Flow")],
    Discriminator(
        lambda v: next(
            (tag for tag in TRIGGER_TAGS
             if str((v.get("type") if isinstance(v, dict) else getattr(v, "type", "")) or "").split(".")[-1] == tag),
            None,
        ),
        custom_error_type="unknown_trigger_type",
        custom_error_message="unknown trigger type (Schedule, Webhook or Flow)",
    ),
]  # fmt: skip


class FlowOutput(Strict):
    id: TaskId
    type: InputType = Field(default=InputType.STRING, description="The value is converted to this type")
    value: Any
    description: str | None = None
    displayName: str | None = None


class Concurrency(Strict):
    limit: int = Field(ge=1)
    behavior: Literal["QUEUE", "CANCEL", "FAIL"] = "QUEUE"


class Listener(Strict):
    """Kestra's deprecated listeners: tasks run after an execution ends, when the conditions match."""

    description: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    tasks: list[AnyTask] = Field(default_factory=list)


class SLA(Strict):
    """Kestra's service-level agreement: a longest duration, or an assertion checked when the execution ends."""

    id: TaskId
    type: Literal["MAX_DURATION", "EXECUTION_ASSERTION"]
    behavior: Literal["FAIL", "CANCEL", "NONE"]
    duration: Duration | None = None
    assert_: str | None = Field(default=None, alias="assert")
    labels: dict[str, Text] | list[Any] | None = None

    @model_validator(mode="after")
    def _what_it_checks(self) -> SLA:
        if self.type == "MAX_DURATION" and self.duration is None:
            raise ValueError("a MAX_DURATION SLA needs a `duration`")
        if self.type == "EXECUTION_ASSERTION" and not self.assert_:
            raise ValueError("an EXECUTION_ASSERTION SLA needs an `assert`")
        return self


class PluginDefault(Strict):
    """Values for every task (or trigger) of a type; `forced` values win over the task's own."""

    type: str
    forced: bool = False
    values: dict[str, Any] = Field(default_factory=dict)


RESERVED_LABEL_PREFIX = "system."
ALLOWED_SYSTEM_LABELS = {"system.readOnly"}


def _label_map(value: Any) -> Any:
    # Kestra accepts labels as a map or as a list of {key, value}
    if isinstance(value, list):
        return {item["key"]: item["value"] for item in value if isinstance(item, dict) and "key" in item}
    return value


class Flow(Strict):
    """A flow: what to run, in which order, with which inputs."""

    id: TaskId
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    revision: int | None = None
    description: str | None = None
    labels: dict[str, Text] = Field(default_factory=dict)
    inputs: list[Input] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    tasks: list[AnyTask] = Field(min_length=1)
    errors: list[AnyTask] = Field(default_factory=list)
    finally_: list[AnyTask] = Field(default_factory=list, alias="finally")
    afterExecution: list[AnyTask] = Field(default_factory=list)
    listeners: list[Listener] = Field(default_factory=list)
    outputs: list[FlowOutput] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    concurrency: Concurrency | None = None
    retry: Retry | None = Field(default=None, description="The retry of every task without its own")
    sla: list[SLA] = Field(default_factory=list)
    pluginDefaults: list[PluginDefault] = Field(default_factory=list)
    taskDefaults: list[PluginDefault] = Field(default_factory=list, description="Kestra's older pluginDefaults")
    workerGroup: WorkerGroup | None = None
    disabled: bool = False
    deleted: bool = False

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_list(cls, value: Any) -> Any:
        return _label_map(value)

    @field_validator("labels")
    @classmethod
    def _no_system_labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [k for k in value if k.startswith(RESERVED_LABEL_PREFIX) and k not in ALLOWED_SYSTEM_LABELS]
        if reserved:
            raise ValueError(f"labels starting with 'system.' are set by the system only: {', '.join(reserved)}")
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
        trigger_ids = [t.id for t in self.triggers]
        if len(set(trigger_ids)) != len(trigger_ids):
            raise ValueError("trigger ids must be unique")
        for item in self.inputs:
            missing = [dep for dep in (item.dependsOn.inputs if item.dependsOn else []) if dep not in input_ids]
            if missing:
                raise ValueError(f"input '{item.id}' depends on undeclared input(s): {', '.join(missing)}")
        return self

    def all_tasks(self) -> list[TaskBase]:
        """Every task, nested ones included, in declaration order."""
        found: list[TaskBase] = []

        def walk(tasks: Sequence[TaskBase]) -> None:
            for task in tasks:
                found.append(task)
                for branch in task.children():
                    walk(branch)

        listened = [task for listener in self.listeners for task in listener.tasks]
        walk([*self.tasks, *self.errors, *self.finally_, *self.afterExecution, *listened])
        return found

    def task(self, task_id: str) -> TaskBase:
        for task in self.all_tasks():
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    def retry_of(self, task: TaskBase) -> Retry | None:
        """The retry that applies to a worker task: its own, else that of the nearest flowable task around
        it (Kestra retries the failed task, RETRY_FAILED_TASK), else the flow's. None inside a
        WorkingDirectory: its tasks run once each, in one pod."""
        if task.retry is not None:
            return task.retry
        parents = self._parents()
        parent = parents.get(task.id)
        if isinstance(parent, WorkingDirectory):
            return None
        while parent is not None:
            if parent.retry is not None:
                return parent.retry
            parent = parents.get(parent.id)
        return self.retry

    def _parents(self) -> dict[str, TaskBase]:
        """Each nested task's id to the flowable task holding it."""
        parents: dict[str, TaskBase] = {}
        for task in self.all_tasks():
            for branch in task.children():
                for child in branch:
                    parents[child.id] = task
        return parents

    def not_runnable(self) -> list[str]:
        """What stops flowpods from running this flow as Kestra would; each names the task or field."""
        problems: list[str] = []
        for task in self.all_tasks():
            named = f"task '{task.id}' ({getattr(task, 'type', task.kind)})"
            problems += [f"{named}: {problem}" for problem in task.not_runnable()]
            if isinstance(task, Subflow) and (task.namespace, task.flowId) == (self.namespace, self.id):
                problems.append(f"{named}: a flow cannot start itself as a subflow")
        if self.retry is not None and self.retry.behavior == "CREATE_NEW_EXECUTION":
            problems.append("field 'retry.behavior': CREATE_NEW_EXECUTION is not yet supported (RETRY_FAILED_TASK is)")
        if self.workerGroup is not None:
            problems.append("field 'workerGroup': worker groups are a Kestra Enterprise feature, not available")
        if self.listeners:
            problems.append("field 'listeners': not yet supported (deprecated in Kestra: use a Flow trigger)")
        return problems

    def warnings(self) -> list[str]:
        """What is accepted but does not behave as in Kestra yet, or is unsafe."""
        found = [warning for trigger in self.triggers for warning in trigger.warnings()]
        found += [
            f"sla '{sla.id}': its labels are not set on a violating execution yet" for sla in self.sla if sla.labels
        ]
        return found


# --- plugin defaults -----------------------------------------------------------------------------------


def apply_plugin_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The flow document with `pluginDefaults` (and the older `taskDefaults`) merged into its tasks and triggers.

    A default applies to a task whose type is the default's type, another name of the same task type, or
    under it (a package prefix). A task's own values win unless the default is `forced`.
    """
    defaults = [d for key in ("taskDefaults", "pluginDefaults") for d in data.get(key) or [] if isinstance(d, dict)]
    if not defaults:
        return data

    def matches(kind: Any, default_type: Any) -> bool:
        if not isinstance(kind, str) or not isinstance(default_type, str):
            return False
        if kind == default_type or kind.startswith(default_type + "."):
            return True
        cls = TYPE_ALIASES.get(kind)
        return cls is not None and TYPE_ALIASES.get(default_type) is cls

    def merge(node: dict[str, Any]) -> dict[str, Any]:
        for default in defaults:
            values = default.get("values")
            if isinstance(values, dict) and matches(node.get("type"), default.get("type")):
                node = _deep_merge(node, values) if default.get("forced") else _deep_merge(values, node)
        return node

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            node = {key: walk(item) for key, item in value.items()}
            return merge(node) if "type" in node and "id" in node else node
        return value

    return {key: (walk(value) if key in _TASK_SECTIONS else value) for key, value in data.items()}


_TASK_SECTIONS = {"tasks", "errors", "finally", "afterExecution", "listeners", "triggers"}


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


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


def build_validators(models: Iterable[type[BaseModel]] = (Flow, *TASK_CLASSES)) -> None:
    """Build these models' validators now instead of on first use (`defer_build`); by default the Flow's and
    every task type's. The operator calls it at start, so that no reconcile builds one while others run; the
    local fork server for the worker's task types, so that no forked attempt builds its own."""
    for model in models:
        model.model_rebuild(force=True)


def parse_flow(data: dict[str, Any]) -> Flow:
    """Validate a flow document; raise FlowError whose problems name the task id and the field."""
    if not isinstance(data, dict):
        raise FlowError([f"a flow must be a mapping, not {type(data).__name__}"])
    try:
        check_shape(data, "the flow")
    except ShapeError as exc:
        raise FlowError([str(exc)]) from None
    data = apply_plugin_defaults(data)
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowError(describe_errors(exc, data)) from None
    problems = flow.not_runnable()
    if problems:
        raise FlowError(problems)
    return flow


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
        elif part not in SHORT_TAGS:  # a discriminator tag is not a key: step over it
            break
    return data


SECTION_NAMES = {
    "tasks": "task",
    "errors": "task",
    "finally": "task",
    "then": "task",
    "else": "task",
    "afterExecution": "task",
    "defaults": "task",
    "inputs": "input",
    "triggers": "trigger",
    "outputs": "output",
    "sla": "sla",
    "onResume": "input",
}
SHORT_TAGS = {*TYPE_ALIASES, *SHORT_BY_CLASS.values(), *TRIGGER_TAGS}


def _locate(loc: tuple[Any, ...], data: Any) -> tuple[str, str]:
    """Find the innermost task (or input, trigger, output) on the path and the field name under it."""
    where, field_parts, section = "", [], ""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            field_parts.append(str(part))
            section = str(part)
            if part == "task" and isinstance(node, dict) and "id" in node:  # a Dag entry's task
                where, field_parts = f"task '{node['id']}'", []
                if isinstance(node.get("type"), str):
                    where += f" ({node['type']})"
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
        elif isinstance(part, str) and part not in SHORT_TAGS:
            # a missing key names the field; a discriminator tag is skipped
            field_parts.append(part)
    return where, ".".join(field_parts)
