"""Kubernetes shapes, as pure functions: Execution and Flow resources in, pods and status bodies out.

Nothing here calls the API. Pod specs are built as data and tested as data; pods and child executions
read back into the executor's events.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from flowpods.core import compaction, flowtriggers, ids, schedule, secrets
from flowpods.core.bounds import ShapeError, check_shape
from flowpods.core.clock import format_duration
from flowpods.core.executor import (
    AttemptFinished,
    AttemptStarted,
    ChildFinished,
    RunTask,
    StartSubflow,
    StepReported,
)
from flowpods.core.model import Flow, FlowError, Schedule, flow_document, parse_flow
from flowpods.core.records import RESULTS_ENV, STEP_ENV, TASKRUN_ENV, WORKDIR_ENV
from flowpods.core.results import attempt_finished, parse_termination_message
from flowpods.core.scripts import ATTACHED_DIR
from flowpods.core.status import Attempt, ExecutionStatus, RunInfo, State
from flowpods.core.workdir import secret_names
from flowpods.core.workerenv import TRACE_VARIABLES, worker_environment
from flowpods.kube import jsoncodec
from flowpods.kube.config import OperatorConfig
from flowpods.telemetry.otlp_settings import TraceLevel

GROUP = "flowpods.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

LABEL_EXECUTION = f"{GROUP}/execution"
LABEL_FLOW = f"{GROUP}/flow"
LABEL_TASK_ID = f"{GROUP}/task-id"
LABEL_TASKRUN_ID = f"{GROUP}/taskrun-id"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_PARENT = f"{GROUP}/parent-execution"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ROOT = f"{GROUP}/root-execution"

ANNOTATION_TRACEPARENT = f"{GROUP}/traceparent"
ANNOTATION_TRACESTATE = f"{GROUP}/tracestate"
ANNOTATION_BAGGAGE = f"{GROUP}/baggage"
ANNOTATION_KILL = f"{GROUP}/kill"
ANNOTATION_REPLAY_OF = f"{GROUP}/replay-of"
ANNOTATION_REPLAY_FROM = f"{GROUP}/replay-from"
ANNOTATION_TRACE_ID = f"{GROUP}/trace-id"
ANNOTATION_SPAN_ID = f"{GROUP}/span-id"
ANNOTATION_DEPTH = f"{GROUP}/subflow-depth"
ANNOTATION_LINK = f"{GROUP}/link"  # a W3C traceparent the RUN span links to (the execution that triggered it)

WORKER_UID = 65532
TASK_CONTAINER = "task"
ENDED_PHASES = ("Succeeded", "Failed")
"""The phases of a pod whose containers have all stopped for good (restartPolicy: Never)."""

WORKER_CONTAINER = "worker"
IMAGE_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}
DEADLINE_GRACE_SECONDS = 5
# a script in its own image: the deadline also covers the init container and the sidecar's start
ATTACHED_DEADLINE_GRACE_SECONDS = 30


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def label_value(text: str) -> str:
    """A valid label value (63 characters, alphanumeric ends); long values keep a hash for uniqueness."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-_.")
    if len(cleaned) > 63:
        cleaned = f"{cleaned[:52].rstrip('-_.')}-{ids.short_id(text)}"
    return cleaned or "x"


def pod_name(execution: str, taskrun_id: str, attempt: int) -> str:
    return f"{ids.dns_label(execution, 200)}-{taskrun_id}-{attempt}"


# --- flows ---------------------------------------------------------------------------------------------


def load_flow(resource: dict[str, Any]) -> Flow:
    """The Flow resource's flow; raises FlowError with what is wrong."""
    return parse_flow(flow_document(resource))


def read_flow(resource: dict[str, Any] | None) -> Flow | FlowError | None:
    """The Flow resource's flow, the error that makes it invalid, or None when there is no resource."""
    if resource is None:
        return None
    try:
        return load_flow(resource)
    except FlowError as exc:
        return exc


def flow_status(resource: dict[str, Any], now: datetime) -> tuple[dict[str, Any], Flow | None, str | None]:
    """The Flow's status (Ready or Invalid condition), the parsed flow, and the problem if invalid."""
    generation = resource.get("metadata", {}).get("generation")
    flow: Flow | None = None
    problem: str | None = None
    try:
        flow = load_flow(resource)
    except FlowError as exc:
        problem = "; ".join(exc.problems)
    if problem is not None:
        condition: dict[str, Any] = {"type": "Ready", "status": "False", "reason": "Invalid", "message": problem}
    else:
        warnings = flow.warnings() if flow else []
        message = "the flow is valid" + (f"; warnings: {'; '.join(warnings)}" if warnings else "")
        reason = "ValidWithWarnings" if warnings else "Valid"
        condition = {"type": "Ready", "status": "True", "reason": reason, "message": message}
    condition.update(lastTransitionTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"), observedGeneration=generation)
    status: dict[str, Any] = {
        "conditions": [condition],
        "observedGeneration": generation,
        "revision": generation,
        "message": problem,
        "taskCount": len(flow.all_tasks()) if flow else None,
        "triggers": ",".join(sorted({type(t).__name__ for t in flow.triggers})) if flow and flow.triggers else None,
    }
    return status, flow, problem


# --- executions ----------------------------------------------------------------------------------------


def flow_ref(execution: dict[str, Any]) -> str:
    """The name of the Flow resource an Execution runs ("" when it names none)."""
    return str(((execution.get("spec") or {}).get("flowRef") or {}).get("name") or "")


def run_info(execution: dict[str, Any], flow: Flow, revision: int | None, now: datetime) -> RunInfo:
    """What never changes about an execution, read from its resource."""
    meta = execution["metadata"]
    spec = execution.get("spec") or {}
    annotations = meta.get("annotations") or {}
    trigger = spec.get("trigger") or {}
    parent = annotations.get(ANNOTATION_TRACEPARENT)
    valid_parent = ids.parse_traceparent(parent) is not None
    link = annotations.get(ANNOTATION_LINK)
    return RunInfo(
        id=meta["name"],
        uid=meta["uid"],
        namespace=flow.namespace,
        flowId=flow.id,
        flowRevision=revision,
        k8sNamespace=meta.get("namespace"),
        trigger=trigger.get("type") or "kubectl",
        triggerId=str(trigger["id"]) if trigger.get("id") else None,
        triggerData=trigger.get("data") or {},
        links=[link] if isinstance(link, str) and ids.parse_traceparent(link) else [],
        labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
        parentTraceparent=parent if valid_parent else None,
        tracestate=annotations.get(ANNOTATION_TRACESTATE) if valid_parent else None,
        baggage=annotations.get(ANNOTATION_BAGGAGE) or None,
        originalId=annotations.get(ANNOTATION_REPLAY_OF) or None,
        createdAt=parse_time(meta.get("creationTimestamp")) or now,
    )


def stored_status(execution: dict[str, Any]) -> ExecutionStatus | None:
    status = execution.get("status") or {}
    if not status.get("history"):
        return None
    return ExecutionStatus.model_validate(status)


def stored_flow(execution: dict[str, Any]) -> tuple[Flow, int | None] | None:
    """The flow snapshot the execution started with: later edits of the Flow do not change a running execution."""
    status = execution.get("status") or {}
    if not status.get("flow"):
        return None
    document = jsoncodec.dumps(status["flow"])
    if len(document) > SNAPSHOT_KEPT_BYTES:
        return parse_flow(status["flow"]), status.get("flowRevision")
    return parsed_snapshot(document), status.get("flowRevision")


SNAPSHOT_KEPT_BYTES = 64 * 1024
"""The largest flow snapshot `parsed_snapshot` keeps (a flow of a few hundred tasks): larger ones are parsed at
each reconcile as before, so that 32 kept snapshots hold a few MB, whatever the Flows of a cluster are."""


@functools.lru_cache(maxsize=32)
def parsed_snapshot(document: bytes) -> Flow:
    """A flow snapshot parsed once for every reconcile of every execution that holds it (the operator parsed it at
    each reconcile: 0.08 ms for five tasks, ~3 % of its CPU). Shared, since a parsed Flow is never changed; keyed
    by the document itself, so an edited snapshot is parsed anew; a snapshot that does not parse is not kept."""
    return parse_flow(jsoncodec.loads(document))


TRIGGERS_PENDING = "pending"
"""`status.triggered` of every status this operator writes until the end fired the Flow triggers. A status
written before Flow triggers existed has none, so an upgrade does not fire them for executions long ended."""


def status_body(
    run: RunInfo | None,
    status: ExecutionStatus,
    flow_doc: dict[str, Any] | None,
    revision: int | None,
    traces: TraceLevel = TraceLevel.DEFAULT,
) -> dict[str, Any]:
    """The Execution's whole `.status`: the executor's state plus what printer columns and people read."""
    body = status.model_dump(mode="json")
    start, end = status.startDate, status.endDate
    body.update(
        startDate=start.isoformat().replace("+00:00", "Z") if start else None,
        endDate=end.isoformat().replace("+00:00", "Z") if end else None,
        duration=format_duration((end - start).total_seconds()) if start and end else None,
        message=status.error,
        flow=flow_doc,
        flowRevision=revision,
        triggered=status.triggered if status.triggered is not None else TRIGGERS_PENDING,
    )
    if run is not None and traces != TraceLevel.DISABLED:
        body["traceId"] = ids.trace_id(run)
        body["traceparent"] = ids.traceparent_of(run, ids.run_span_id(run))
    return body


# --- Events about Executions ---------------------------------------------------------------------------


REPORTING_COMPONENT = "flowpods"
"""Who reports the operator's Events (`kubectl describe`'s "From"): its own and kopf's (Flows)."""
EVENT_NAME_PREFIX = "flowpods-event-"
MAX_EVENT_MESSAGE = 1024
"""An Event's message is cut in the middle beyond this (as kopf did)."""


def event_body(
    obj: dict[str, Any], kind: str, reason: str, message: str, now: datetime, instance: str
) -> dict[str, Any]:
    """A core v1 Event about `obj` (type Normal or Warning), as `kubectl describe` and `kubectl get events` show."""
    if len(message) > MAX_EVENT_MESSAGE:
        half = (MAX_EVENT_MESSAGE - 5) // 2
        message = f"{message[:half]} ... {message[-half:]}"
    meta = obj["metadata"]
    stamp, micro = now.strftime("%Y-%m-%dT%H:%M:%SZ"), now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": meta["namespace"], "generateName": EVENT_NAME_PREFIX},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message,
        "action": reason,
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro,
        "count": 1,
    }


# --- the span watermark ledger (kube/background_export.py) ----------------------------------------------

LEDGER_NAME = "flowpods-span-watermarks"
"""The ConfigMap, one per namespace, storing the confirmed span watermarks of its running Executions."""


LEDGER_KEY = "watermarks"
"""The ledger's one data key: a JSON object {Execution uid: watermark}. One key, not one per Execution: the API
server tracks each key of a ConfigMap's data in its managed fields, and a ledger PUT of 200 keys cost it 6.5 ms
of CPU against 3.5 ms for the same entries under one key (docs/benchmarks.md, stop 14)."""


def ledger_body(namespace: str, watermarks: dict[str, int]) -> dict[str, Any]:
    """The ledger as stored: each Execution's uid, and the last change whose spans the collector confirmed."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": LEDGER_NAME,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: "flowpods"},
            "annotations": {
                f"{GROUP}/about": f"{LEDGER_KEY}: Execution uid -> the last status change whose spans the collector "
                "confirmed, until the Execution's status.exported holds it (docs/tracing.md). Deleting it re-sends "
                "spans."
            },
        },
        "data": {LEDGER_KEY: jsoncodec.dumps(dict(sorted(watermarks.items()))).decode()},
    }


def ledger_watermarks(body: dict[str, Any]) -> dict[str, int]:
    """The watermarks a ledger holds: under LEDGER_KEY, or one key per uid as the ledgers of stop 13 were
    written. What is not a whole number (e.g. edited by hand) is left out."""
    data = dict(body.get("data") or {})
    entries: dict[str, Any] = {uid: value for uid, value in data.items() if uid != LEDGER_KEY}
    if LEDGER_KEY in data:
        try:
            held = jsoncodec.loads(data[LEDGER_KEY])
        except ValueError:
            held = None
        entries.update(held if isinstance(held, dict) else {})
    return {
        str(uid): int(value)
        for uid, value in entries.items()
        if (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        or (isinstance(value, str) and value.isdigit())
    }


# --- pods ----------------------------------------------------------------------------------------------


def secret_env(task: dict[str, Any]) -> list[dict[str, Any]]:
    """One variable per secret the rendered task refers to, filled by the kubelet from the Secret: the
    operator never reads it. Optional, so that a missing key is the worker's clear error, not a pod stuck
    in CreateContainerConfigError."""
    return [
        {
            "name": secrets.env_name(name),
            "valueFrom": {"secretKeyRef": {"name": secrets.SECRET_OBJECT, "key": name, "optional": True}},
        }
        for name in secrets.names(task)
    ]


MAX_TASKRUN_BYTES = 512 * 1024
"""The largest rendered task run handed to a pod (in an environment variable of its spec)."""
MAX_STATUS_BYTES = 1_400_000
"""The largest status written: etcd keeps objects up to about 1.5 MB, spec and metadata included."""


class TooLarge(ValueError):
    """An object flowpods would write cannot fit in the cluster; the message says which and how big."""


def check_status_size(status: dict[str, Any], name: str) -> None:
    """Raise TooLarge before a status that etcd would refuse is sent."""
    size = len(jsoncodec.dumps(status, default=str))
    if size > MAX_STATUS_BYTES:
        raise TooLarge(f"the status of execution {name} would be {size} bytes; at most {MAX_STATUS_BYTES} are "
                       "written (etcd's object limit): run fewer task runs in one execution (a ForEach over fewer "
                       "values, or subflows)")  # fmt: skip


def build_pod(
    config: OperatorConfig, execution: dict[str, Any], run: RunInfo, flow_resource: str, action: RunTask
) -> dict[str, Any]:
    """The worker pod of one task-run attempt."""
    meta = execution["metadata"]
    work = action.work
    rendered = work.model_dump_json()
    if len(rendered) > MAX_TASKRUN_BYTES:
        raise TooLarge(f"task '{work.taskId}': the rendered task run is {len(rendered)} bytes; at most "
                       f"{MAX_TASKRUN_BYTES} fit in a pod (pass large values in files)")  # fmt: skip
    name = pod_name(meta["name"], work.taskRunId, work.attempt)
    parent = ids.parse_traceparent(action.traceparent)
    traced = config.traces != TraceLevel.DISABLED
    pod_attributes = {"k8s.pod.name": "$(FLOWPODS_POD_NAME)", "k8s.namespace.name": meta["namespace"]}
    env: list[dict[str, Any]] = [
        {"name": "FLOWPODS_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": TASKRUN_ENV, "value": rendered},
        *({"name": k, "value": v} for k, v in worker_environment(action, run, traced, pod_attributes).items()),
        {"name": "FLOWPODS_TRACES", "value": config.traces.value},
    ]
    env += secret_env(work.task)
    if config.worker_otlp_endpoint and config.traces != TraceLevel.DISABLED:
        env += [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": config.worker_otlp_endpoint},
            {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": config.worker_otlp_protocol},
        ]
    labels = {
        LABEL_EXECUTION: label_value(meta["name"]),
        LABEL_FLOW: label_value(flow_resource),
        LABEL_TASK_ID: label_value(work.taskId),
        LABEL_TASKRUN_ID: work.taskRunId,
        LABEL_ATTEMPT: str(work.attempt),
        LABEL_MANAGED_BY: "flowpods",
    }
    annotations = {}
    if parent is not None and config.traces != TraceLevel.DISABLED:
        annotations = {ANNOTATION_TRACE_ID: parent.trace_id, ANNOTATION_SPAN_ID: parent.span_id}
    container: dict[str, Any] = {
        "name": TASK_CONTAINER,
        "image": config.worker_image,
        "command": list(config.worker_command),
        "env": env,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "workingDir": "/tmp",
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if action.containerImage:
        attach_to_own_image(spec, config, action.containerImage)
        annotations["kubectl.kubernetes.io/default-container"] = WORKER_CONTAINER
    if action.steps is not None:
        run_steps(spec, config, run, action, pod_attributes)
    if config.worker_service_account:
        spec["serviceAccountName"] = config.worker_service_account
    if action.timeoutSeconds:
        # the worker enforces the timeout itself and reports it; the deadline is the backstop
        grace = ATTACHED_DEADLINE_GRACE_SECONDS if action.containerImage else DEADLINE_GRACE_SECONDS
        grace *= len(action.steps or [None])
        spec["activeDeadlineSeconds"] = math.ceil(action.timeoutSeconds) + grace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(execution)],
        },
        "spec": spec,
    }


def attach_to_own_image(spec: dict[str, Any], config: OperatorConfig, image: str) -> None:
    """A script task in its own image (see worker.attached): the image runs the user's commands unchanged
    through a launcher that needs only /bin/sh; flowpods' part comes from the worker image, as an init
    container (`prepare`) and a native sidecar (`worker`), all three sharing an emptyDir at ATTACHED_DIR."""
    (worker,) = spec["containers"]
    mount = {"name": "flowpods", "mountPath": ATTACHED_DIR}
    worker["volumeMounts"] = [*worker["volumeMounts"], mount]
    prepare = {**worker, "name": "prepare", "command": [*config.worker_command, "--prepare", ATTACHED_DIR]}
    sidecar = {**worker, "name": WORKER_CONTAINER, "restartPolicy": "Always",
               "command": [*config.worker_command, "--relay", ATTACHED_DIR]}  # fmt: skip
    task = {
        **worker,
        "image": image,
        "command": ["/bin/sh", f"{ATTACHED_DIR}/launch.sh"],
        "env": [e for e in worker["env"] if e["name"] != TASKRUN_ENV],
        "workingDir": f"{ATTACHED_DIR}/work",
    }
    spec.update(initContainers=[prepare, sidecar], containers=[task], shareProcessNamespace=True)
    spec["volumes"] = [*spec["volumes"], {"name": "flowpods", "emptyDir": {}}]


WORKDIR = "/workdir"
STEP_RESULTS = "/tmp/flowpods-steps"


def step_container(index: int) -> str:
    return f"step-{index}"


def run_steps(
    spec: dict[str, Any], config: OperatorConfig, run: RunInfo, action: RunTask, pod_attributes: dict[str, str]
) -> None:
    """A WorkingDirectory's pod: one container per step (`flowpods worker --step`), run in order as init
    containers (a step that exits non-zero stops the pod: the steps after it never run), the last one as the
    pod's container; all share the emptyDir at WORKDIR. Each reports in its own termination message."""
    assert action.steps
    (template,) = spec["containers"]
    traced = config.traces != TraceLevel.DISABLED
    shared = [
        e for e in template["env"]
        if e["name"] not in (TASKRUN_ENV, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", *TRACE_VARIABLES)
        and not e["name"].startswith(secrets.ENV_PREFIX)
    ]  # fmt: skip
    containers, size = [], 0
    for step in action.steps:
        document = step.model_dump_json()
        size += len(document)
        own = worker_environment(RunTask(work=step.work, traceparent=step.traceparent, tracestate=action.tracestate,
                                         baggage=action.baggage), run, traced, pod_attributes)  # fmt: skip
        env = [*shared, {"name": STEP_ENV, "value": document}, *({"name": k, "value": v} for k, v in own.items()),
               {"name": WORKDIR_ENV, "value": WORKDIR}, {"name": RESULTS_ENV, "value": STEP_RESULTS}]  # fmt: skip
        env += [
            {"name": secrets.env_name(name),
             "valueFrom": {"secretKeyRef": {"name": secrets.SECRET_OBJECT, "key": name, "optional": True}}}
            for name in secret_names(step)
        ]  # fmt: skip
        containers.append({
            **template, "name": step_container(step.index), "env": env, "workingDir": WORKDIR,
            "command": [*config.worker_command, "--step"],
            "volumeMounts": [*template["volumeMounts"], {"name": "workdir", "mountPath": WORKDIR}],
        })  # fmt: skip
    if size > MAX_TASKRUN_BYTES:
        raise TooLarge(f"task '{action.work.taskId}': its steps are {size} bytes; at most {MAX_TASKRUN_BYTES} fit "
                       "in a pod (pass large values in files)")  # fmt: skip
    spec["containers"] = containers[-1:]
    if containers[:-1]:
        spec["initContainers"] = containers[:-1]
    spec["volumes"] = [*spec["volumes"], {"name": "workdir", "emptyDir": {}}]


def pod_ended(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ENDED_PHASES


def observe(pod: dict[str, Any], attempt: Attempt, now: datetime, steps: bool) -> list[Any]:
    """What a pod says about its attempt: a worker's pod (observe_pod), or a WorkingDirectory's (`steps`)."""
    if steps:
        return list(observe_steps(pod, attempt, now))
    observed = observe_pod(pod, attempt, now)
    return [observed] if observed is not None else []


def observe_steps(pod: dict[str, Any], attempt: Attempt, now: datetime) -> list[StepReported | AttemptFinished]:
    """What a WorkingDirectory's pod says: each step that started or ended (in order), then the pod's end."""
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    labels = meta.get("labels") or {}
    taskrun_id, number = str(labels.get(LABEL_TASKRUN_ID)), int(labels.get(LABEL_ATTEMPT, "0"))
    name, node = meta.get("name"), (pod.get("spec") or {}).get("nodeName")
    statuses = {c.get("name"): c for c in [*(status.get("initContainerStatuses") or []),
                                            *(status.get("containerStatuses") or [])]}  # fmt: skip
    events: list[StepReported | AttemptFinished] = []
    index = 0
    while (container := statuses.get(step_container(index))) is not None:
        state = container.get("state") or {}
        if (waiting := state.get("waiting") or {}).get("reason") in IMAGE_ERRORS:
            pull = f"image pull error: {waiting['reason']}: {waiting.get('message') or container.get('image', '')}"
            events.append(AttemptFinished(at=now, taskRunId=taskrun_id, attempt=number, success=False, node=node,
                                          reason=pull.strip(": "), imageUnavailable=True, pod=name))  # fmt: skip
            return events
        running, terminated = state.get("running"), state.get("terminated")
        if not running and not terminated:
            break
        started = parse_time((running or terminated or {}).get("startedAt")) or now
        finished = None
        if terminated:
            code = terminated.get("exitCode")
            result = parse_termination_message(terminated.get("message"), code)
            ended = parse_time(terminated.get("finishedAt")) or now
            if result.endedAt is not None:
                ended = max(ended, result.endedAt)
            failure = container_failure(terminated, code)
            # a step may exit 0 after a failure its allowFailure lets pass: its result says it failed
            finished = attempt_finished(taskrun_id, 1, result, code, ended, started, failure=failure,
                                        timed_out=code == 124, pod=name, node=node)  # fmt: skip
        events.append(StepReported(at=now, taskRunId=taskrun_id, attempt=number, step=index, startedAt=started,
                                   pod=name, node=node, finished=finished))  # fmt: skip
        index += 1
    phase = status.get("phase")
    if phase in ENDED_PHASES:
        reason = None
        if status.get("reason") == "DeadlineExceeded":
            reason = f"timeout: deadline exceeded ({status.get('message') or 'activeDeadlineSeconds'})"
        elif phase == "Failed":
            reason = f"{status.get('reason')}: {status.get('message') or ''}".rstrip(": ") if status.get(
                "reason") else "the pod failed"  # fmt: skip
        events.append(AttemptFinished(at=_condition_time(status) or now, taskRunId=taskrun_id, attempt=number,
                                      success=phase == "Succeeded", reason=reason, pod=name, node=node,
                                      timedOut=status.get("reason") == "DeadlineExceeded"))  # fmt: skip
    return events


def owner_reference(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource["metadata"]
    return {
        "apiVersion": resource.get("apiVersion", API_VERSION),
        "kind": resource.get("kind", "Execution"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def observe_pod(pod: dict[str, Any], attempt: Attempt, now: datetime) -> AttemptStarted | AttemptFinished | None:
    """What a worker pod says about its attempt, as an executor event (None: nothing new)."""
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    labels = meta.get("labels") or {}
    taskrun_id, number = str(labels.get(LABEL_TASKRUN_ID)), int(labels.get(LABEL_ATTEMPT, "0"))
    name, node = meta.get("name"), (pod.get("spec") or {}).get("nodeName")
    scheduled = next(
        (
            parse_time(c.get("lastTransitionTime"))
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "True"
        ),
        None,
    )
    container = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == TASK_CONTAINER),
        (status.get("containerStatuses") or [{}])[0] if status.get("containerStatuses") else {},
    )
    state = container.get("state") or {}
    phase = status.get("phase")

    waiting = state.get("waiting") or {}
    if waiting.get("reason") in IMAGE_ERRORS:
        pull = f"image pull error: {waiting['reason']}: {waiting.get('message') or container.get('image', '')}"
        return AttemptFinished(at=now, taskRunId=taskrun_id, attempt=number, success=False,
                               reason=pull.strip(": "), imageUnavailable=True, pod=name, node=node,
                               scheduledAt=scheduled)  # fmt: skip

    if phase in ENDED_PHASES:
        terminated = state.get("terminated") or {}
        code = terminated.get("exitCode")
        started = parse_time(terminated.get("startedAt")) or parse_time(status.get("startTime"))
        ended = parse_time(terminated.get("finishedAt")) or _condition_time(status) or now
        result = parse_termination_message(terminated.get("message"), code)
        if result.endedAt is not None:  # the worker's clock has sub-second precision; pod timestamps do not
            ended = max(ended, result.endedAt)
        failure = None
        if status.get("reason") == "DeadlineExceeded":
            failure = f"timeout: deadline exceeded ({status.get('message') or 'activeDeadlineSeconds'})"
        else:
            failure = container_failure(terminated, code)
        detail = f"{status['reason']}: {status.get('message') or ''}".rstrip(": ") if status.get("reason") else None
        return attempt_finished(
            taskrun_id, number, result, code, ended, started,
            exited=phase == "Succeeded", failure=failure, detail=detail,
            timed_out=status.get("reason") == "DeadlineExceeded" or code == 124,
            pod=name, node=node, scheduled_at=scheduled,
        )  # fmt: skip
    running = state.get("running")
    if running and attempt.startedAt is None:
        return AttemptStarted(at=parse_time(running.get("startedAt")) or now, taskRunId=taskrun_id, attempt=number,
                              pod=name, node=node, scheduledAt=scheduled)  # fmt: skip
    return None


PENDING_TIMEOUT = "pending timeout"


def pending_deadline(pod: dict[str, Any], limit: timedelta) -> datetime | None:
    """When a pod that has not started yet has waited too long (None: it started, or it is already done)."""
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    for container in status.get("containerStatuses") or []:
        if (container.get("state") or {}).keys() & {"running", "terminated"}:
            return None
    created = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
    return created + limit if created is not None else None


def pending_expired(
    pod: dict[str, Any], taskrun_id: str, attempt: Attempt, limit: timedelta, now: datetime
) -> AttemptFinished | None:
    """The attempt fails when its pod has waited longer than `limit` to start, with the pod's own reason
    (Unschedulable and the scheduler's message, or the container's waiting reason)."""
    deadline = pending_deadline(pod, limit)
    if deadline is None or now < deadline or attempt.startedAt is not None:
        return None
    status = pod.get("status") or {}
    unscheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
                        and c.get("status") == "False"), None)  # fmt: skip
    waiting = next(
        ((c.get("state") or {}).get("waiting") for c in status.get("containerStatuses") or []
         if (c.get("state") or {}).get("waiting")), None,
    )  # fmt: skip
    if unscheduled is not None:
        why = f"{unscheduled.get('reason') or 'not scheduled'}: {unscheduled.get('message') or ''}"
    elif waiting:
        why = f"{waiting.get('reason') or 'waiting'}: {waiting.get('message') or ''}"
    else:
        why = "the pod did not start"
    seconds = f"{limit.total_seconds():g}"
    return AttemptFinished(
        at=now,
        taskRunId=taskrun_id,
        attempt=attempt.number,
        pod=pod.get("metadata", {}).get("name"),
        success=False,
        reason=f"{PENDING_TIMEOUT}: not started after {seconds}s: {why}".rstrip(": "),
        pendingTimedOut=True,
    )


def container_failure(terminated: dict[str, Any], code: int | None) -> str | None:
    """What ended a container before its worker could say: out of memory, or the runtime could not start it
    (the runtime's message, whole: the worker never ran)."""
    if terminated.get("reason") == "OOMKilled":
        return f"OOMKilled: the container ran out of memory (exit code {code})"
    if terminated.get("reason") in START_ERRORS:
        return f"container did not start ({terminated['reason']}, exit code {code}): {terminated.get('message')}"
    return None


def _condition_time(status: dict[str, Any]) -> datetime | None:
    times = [parse_time(c.get("lastTransitionTime")) for c in status.get("conditions") or []]
    return max((t for t in times if t is not None), default=None)


# terminated.reason when the runtime could not start the container (e.g. no `flowpods` in the image)
START_ERRORS = ("StartError", "ContainerCannotRun")


def pod_deleted(name: str, taskrun_id: str, attempt: int, now: datetime) -> AttemptFinished:
    return AttemptFinished(
        at=now,
        taskRunId=taskrun_id,
        attempt=attempt,
        success=False,
        reason="pod deleted before it finished",
        pod=name,
    )


# --- new executions: from the API, a webhook, a schedule or a Subflow ----------------------------------


def execution_body(
    namespace: str,
    name: str,
    flow_resource: str,
    trigger: str,
    trigger_data: dict[str, Any],
    *,
    inputs: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    meta_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Execution of the Flow resource `flow_resource`; `labels` are the execution's (Kestra) labels,
    `meta_labels` default to the flow label; every new execution is marked as managed by flowpods."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**(meta_labels or {LABEL_FLOW: label_value(flow_resource)}), LABEL_MANAGED_BY: "flowpods"},
        "annotations": annotations or {},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": API_VERSION,
        "kind": "Execution",
        "metadata": metadata,
        "spec": {
            "flowRef": {"name": flow_resource},
            "inputs": inputs or {},
            "labels": labels or {},
            "trigger": {"type": trigger, "data": trigger_data},
        },
    }


def trace_annotations(traceparent: str | None, tracestate: str | None, baggage: str | None) -> dict[str, str]:
    """The W3C context a new execution continues: its RUN span hangs under `traceparent`."""
    annotations = {}
    if traceparent:
        annotations[ANNOTATION_TRACEPARENT] = traceparent
        if tracestate:
            annotations[ANNOTATION_TRACESTATE] = tracestate
    if baggage:
        annotations[ANNOTATION_BAGGAGE] = baggage
    return annotations


def child_execution(
    parent: dict[str, Any], action: StartSubflow, flow_resource: str, root: str | None = None
) -> dict[str, Any]:
    """The child Execution of a Subflow task: owned by its parent, its trace hung under the Subflow span,
    labelled with the root execution of its chain (what the bound on executions per root counts)."""
    meta = parent["metadata"]
    baggage = (meta.get("annotations") or {}).get(ANNOTATION_BAGGAGE)
    annotations = {**trace_annotations(action.traceparent, None, baggage), ANNOTATION_DEPTH: str(depth(parent) + 1)}
    return execution_body(
        meta["namespace"], action.name, flow_resource, "subflow",
        {"executionId": meta["name"], "taskRunId": action.taskRunId},
        inputs=action.inputs, labels=action.labels,
        meta_labels={LABEL_PARENT: label_value(meta["name"]), LABEL_ROOT: label_value(root or meta["name"])},
        annotations=annotations, owner=parent,
    )  # fmt: skip


def scheduled_execution(namespace: str, flow_resource: str, trigger: Schedule, due: datetime) -> dict[str, Any]:
    """The Execution a Schedule trigger starts at `due`: named from the due time, so it is created once."""
    return execution_body(
        namespace, schedule.execution_name(flow_resource, trigger, due), flow_resource, "schedule",
        {"triggerId": trigger.id, "date": due.isoformat()}, inputs=trigger.inputs,
    )  # fmt: skip


def triggered_execution(namespace: str, firing: flowtriggers.Firing) -> dict[str, Any]:
    """The Execution a Flow trigger starts: named from the ending execution, the flow and the trigger, so it
    is created once; its RUN span links to the ending execution's (a trace of its own, not a child)."""
    body = execution_body(
        namespace, firing.name, firing.resource, flowtriggers.TRIGGER_KIND, firing.data, inputs=firing.inputs,
        annotations={ANNOTATION_LINK: firing.link} if firing.link else None,
    )  # fmt: skip
    body["spec"]["trigger"]["id"] = firing.trigger_id
    return body


def depth(execution: dict[str, Any]) -> int:
    """The depth the annotation claims: shown to people, never trusted (see `parent_if_verified`)."""
    try:
        return int((execution["metadata"].get("annotations") or {}).get(ANNOTATION_DEPTH, "0"))
    except ValueError:
        return 0


def child_finished(child: dict[str, Any], taskrun_id: str, now: datetime) -> ChildFinished | None:
    status = child.get("status") or {}
    state = status.get("state")
    if state not in State._value2member_map_:  # a status edited by hand must not stop the parent
        return None
    if not state or not State(state).terminal:
        return None
    return ChildFinished(
        at=parse_time(status.get("endDate")) or now,
        taskRunId=taskrun_id,
        state=State(state),
        outputs=status.get("outputs") or {},
        error=status.get("error") if isinstance(status.get("error"), str) else None,
    )


def flow_json(flow_doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a flow document (YAML may hold dates)."""
    return json.loads(json.dumps(flow_doc, default=str))


# --- hostile input: what an execution's spec may hold, and how an execution ends when it cannot go on ---

MAX_REASON = 1000
"""Characters of an error kept in a status and an Event."""


def spec_problem(execution: dict[str, Any]) -> str | None:
    """Why the Execution's spec cannot be run at all (inputs, trigger data or labels too deep or too big)."""
    spec = execution.get("spec") or {}
    trigger = spec.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    for what, value in (("spec.inputs", spec.get("inputs")), ("spec.trigger.data", trigger.get("data")),
                        ("spec.labels", spec.get("labels"))):  # fmt: skip
        if value is None:
            continue
        try:
            check_shape(value, what)
        except ShapeError as exc:
            return str(exc)
    return None


def without_spec_data(execution: dict[str, Any]) -> dict[str, Any]:
    """The Execution with its inputs, labels and trigger data left out (to describe one that cannot run)."""
    spec = dict(execution.get("spec") or {})
    trigger = spec.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    spec.update(inputs={}, labels={}, trigger={"type": str(trigger.get("type") or "kubectl")})
    return {**execution, "spec": spec}


ADMISSION_REFUSALS = ("denied request", "admission webhook", "exceeded quota", "is forbidden")
"""What the API server says when an admission policy, webhook or quota refuses a create: the cluster's
rules, which an administrator can change (Argo retries pod creation on these too), unlike an invalid spec."""


def is_transient(exc: BaseException) -> bool:
    """An error that may pass by itself (the API server busy or unreachable, or a create refused by an
    admission policy or a quota that may be lifted): retried with a back-off and an Event, not a failure."""
    if isinstance(exc, ApiException):
        body = str(exc.body or "")
        if "too large" in body:  # etcd's object limit answers 500, and will again
            return False
        if exc.status in (403, 422) and any(words in body for words in ADMISSION_REFUSALS):
            return True
        return exc.status in (0, None, 408, 429, 500, 502, 503, 504)
    return isinstance(exc, OSError | TimeoutError | urllib3.exceptions.HTTPError)


def describe_error(exc: BaseException) -> str:
    """One line about an error, for a status, an Event and a log line (the API server's own message)."""
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(exc.body or "{}").get("message") or message
        text = f"the Kubernetes API refused a request ({exc.status}): {message}"
    elif isinstance(exc, TooLarge):
        text = str(exc)
    elif isinstance(exc, RecursionError):
        text = "a value in this execution is nested too deeply to handle"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def failed_status(previous: Any, reason: str, now: datetime) -> dict[str, Any]:
    """A status ending the execution FAILED when it cannot go on, written from scratch (the stored status
    may be what could not be read); the flow snapshot and the trace id are kept when they are there."""
    previous = previous if isinstance(previous, dict) else {}
    stamp = now.isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {
        "state": State.FAILED.value,
        "history": [{"state": State.FAILED.value, "at": stamp}],
        "error": reason,
        "message": reason,
        "endDate": stamp,
    }
    for key in ("flow", "flowRevision", "traceId", "traceparent"):
        if key in previous:
            body[key] = previous[key]
    body["triggered"] = TRIGGERS_PENDING  # its end fires the Flow triggers that listen to FAILED
    return body


def parent_reference(child: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference naming the child's parent Execution, if any."""
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return next((o for o in refs if isinstance(o, dict) and o.get("kind") == "Execution"), None)


def is_parent_of(parent: dict[str, Any] | None, child: dict[str, Any]) -> bool:
    """Whether `parent` started `child`: its uid is the one the child's ownerReference names and its stored
    status (written by the operator alone) lists the child. Annotations and labels, which whoever may
    create Executions may set, prove nothing."""
    ref = parent_reference(child)
    if parent is None or ref is None or parent.get("metadata", {}).get("uid") != ref.get("uid"):
        return False
    status = parent.get("status")
    name = child["metadata"]["name"]
    return isinstance(status, dict) and any(tr["child"] == name for tr in compaction.task_run_rows(status))
