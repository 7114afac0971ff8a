"""The environment every worker gets (flowpods.core.workerenv)."""

from __future__ import annotations

from flowpods.core.executor import RunTask
from flowpods.core.records import WorkItem
from flowpods.core.workerenv import worker_environment
from tests.core.simulation import RUN

WORK = WorkItem(executionId="ex-1", namespace="company.team", flowId="f", taskRunId="tr1", taskId="hello",
                attempt=1, taskType="io.kestra.plugin.core.log.Log", task={})  # fmt: skip
PARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


class TestWorkerEnvironment:
    def test_the_worker_continues_the_attempts_trace_with_its_state_and_baggage(self) -> None:
        env = worker_environment(RunTask(work=WORK, traceparent=PARENT, tracestate="k=v", baggage="b=1"), RUN)
        assert (env["TRACEPARENT"], env["TRACESTATE"], env["BAGGAGE"]) == (PARENT, "k=v", "b=1")

    def test_untraced_workers_get_no_trace_context(self) -> None:
        env = worker_environment(RunTask(work=WORK, traceparent=PARENT, baggage="b=1"), RUN, traced=False)
        assert not {"TRACEPARENT", "TRACESTATE", "BAGGAGE"} & env.keys()

    def test_resource_attributes_name_the_run_and_task_after_the_adapters_own(self) -> None:
        env = worker_environment(RunTask(work=WORK, traceparent=PARENT), RUN, attributes={"k8s.pod.name": "p"})
        assert env["OTEL_SERVICE_NAME"] == "flowpods-worker"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
            "k8s.pod.name=p,cicd.pipeline.name=f,cicd.pipeline.run.id=ex-1,"
            "cicd.pipeline.task.name=hello,cicd.pipeline.task.run.id=tr1"
        )
