"""Metrics as a user's Prometheus sees them: a real Prometheus scrapes the operator while flows succeed, fail,
retry and queue; series and values are read back through its query API, an exemplar leads to a trace in
Jaeger, an operator restart neither counts a finished run again nor forgets the waiting ones, and every
query of the chart's Grafana dashboard names a metric Prometheus really scraped."""

from __future__ import annotations

import textwrap
import time
import urllib.request
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard import dashboard_metric_names
from tests.e2e.harness import (
    GROUP,
    VERSION,
    OperatorProcess,
    execution_yaml,
    get_execution,
    settle,
    wait_for_state,
    wait_until,
)
from tests.testenv.prometheus import Prometheus

FLOWS = {
    "ok": """
        id: ok
        namespace: company.team
        tasks:
          - id: hello
            type: Log
            message: hello
    """,
    "broken": """
        id: broken
        namespace: company.team
        tasks:
          - id: boom
            type: Fail
            errorMessage: broken on purpose
    """,
    "flaky": """
        id: flaky
        namespace: company.team
        tasks:
          - id: flaky
            type: io.kestra.plugin.scripts.shell.Commands
            retry: {type: constant, maxAttempts: 3, interval: PT0.2S}
            commands:
              - '[ {{ taskrun.attemptsCount }} -ge 1 ] || exit 1'
    """,
    # one at a time, each run held for `hold` seconds
    "single": """
        id: single
        namespace: company.team
        concurrency: {limit: 1}
        inputs:
          - id: hold
            type: INT
        tasks:
          - id: wait
            type: io.kestra.plugin.scripts.shell.Commands
            commands:
              - 'sleep {{ inputs.hold }}'
    """,
}


def flow_yaml(name: str) -> str:
    spec = textwrap.indent(textwrap.dedent(FLOWS[name]), "  ")
    return f"apiVersion: {GROUP}/{VERSION}\nkind: Flow\nmetadata:\n  name: {name}\nspec:\n{spec}"


@pytest.fixture
def prometheus(operator: OperatorProcess, tmp_path):
    """A real Prometheus scraping this test's operator every second."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = Prometheus(directory, [f"127.0.0.1:{operator.metrics_port}"])
    yield server
    server.stop()


def eventually(prometheus: Prometheus, expr: str, expected: float, timeout: float = 60.0) -> None:
    """Wait until the query's single value equals `expected` (Prometheus scrapes every second)."""
    wait_until(lambda: prometheus.value(expr) == expected, timeout, f"{expr} == {expected}")


def scrape(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as response:
        return response.read().decode()


def test_prometheus_scrapes_run_metrics_with_an_exemplar_that_leads_to_the_trace(
    operator, prometheus, apply_yaml, custom_objects, namespace, jaeger, tmp_path
):
    since = time.time()
    for name in FLOWS:
        apply_yaml(flow_yaml(name))
    wait_until(prometheus.targets_up, 60, "prometheus to scrape the operator")

    # a queued run: the first holds the flow's only place for 20 s once its container runs
    apply_yaml(execution_yaml("single-1", "single", {"hold": 20}))
    wait_for_state(custom_objects, namespace, "single-1", {"RUNNING"}, operator=operator)
    apply_yaml(execution_yaml("single-2", "single", {"hold": 0}))
    wait_for_state(custom_objects, namespace, "single-2", {"QUEUED"}, operator=operator)
    eventually(prometheus, 'flowpods_executions_waiting{cicd_pipeline_name="single",flowpods_state="QUEUED"}', 1)
    eventually(prometheus, 'cicd_pipeline_run_active{cicd_pipeline_name="single",cicd_pipeline_run_state="pending"}', 1)
    eventually(
        prometheus, 'cicd_pipeline_run_active{cicd_pipeline_name="single",cicd_pipeline_run_state="executing"}', 1
    )
    wait_until(lambda: (prometheus.value('cicd_worker_count{cicd_worker_state="busy"}') or 0) >= 1, 60, "a busy worker")

    for name in ("ok", "broken", "flaky"):
        apply_yaml(execution_yaml(f"{name}-1", name))
    ended = {
        name: wait_for_state(custom_objects, namespace, name, operator=operator, timeout=120)["status"]
        for name in ("ok-1", "broken-1", "flaky-1", "single-1", "single-2")
    }
    assert ended["ok-1"]["state"] == "SUCCESS" and ended["flaky-1"]["state"] == "SUCCESS"
    assert ended["broken-1"]["state"] == "FAILED"
    assert [len(tr["attempts"]) for tr in ended["flaky-1"]["taskRuns"]] == [2]

    # CI/CD conventions: run durations by flow, state and result; errors by type
    runs = "cicd_pipeline_run_duration_seconds_count"
    eventually(
        prometheus,
        f'{runs}{{cicd_pipeline_name="ok",cicd_pipeline_run_state="executing",cicd_pipeline_result="success"}}',
        1,
    )
    eventually(
        prometheus,
        f'{runs}{{cicd_pipeline_name="broken",cicd_pipeline_run_state="executing",'
        f'cicd_pipeline_result="failure",error_type="FAILED"}}',
        1,
    )
    eventually(prometheus, f'sum({runs}{{cicd_pipeline_name="single",cicd_pipeline_run_state="pending"}})', 2)
    eventually(prometheus, 'cicd_pipeline_run_errors_total{cicd_pipeline_name="flaky",error_type="task_failed"}', 1)
    eventually(prometheus, 'cicd_pipeline_run_errors_total{cicd_pipeline_name="broken",error_type="task_failed"}', 1)
    assert prometheus.value('cicd_pipeline_run_errors_total{cicd_pipeline_name="ok"}') is None
    # the queued run could start only once the first had ended: that wait is in its pending time
    pending = prometheus.value(
        'cicd_pipeline_run_duration_seconds_sum{cicd_pipeline_name="single",cicd_pipeline_run_state="pending"}'
    )
    created = get_execution(custom_objects, namespace, "single-2")["metadata"]["creationTimestamp"]
    assert pending is not None and pending >= _seconds_between(created, ended["single-1"]["endDate"])
    # the gauges went back to zero
    eventually(prometheus, 'flowpods_executions_waiting{cicd_pipeline_name="single",flowpods_state="QUEUED"}', 0)
    eventually(prometheus, 'sum(cicd_pipeline_run_active{cicd_pipeline_name="single"})', 0)
    eventually(prometheus, 'cicd_worker_count{cicd_worker_state="busy"}', 0)

    # flowpods' own: task-run attempts by flow, task and result; first task and pod start delays
    attempts = "flowpods_taskrun_duration_seconds_count"
    eventually(
        prometheus,
        f'{attempts}{{cicd_pipeline_name="flaky",cicd_pipeline_task_name="flaky",'
        f'cicd_pipeline_task_run_result="failure"}}',
        1,
    )
    eventually(
        prometheus,
        f'{attempts}{{cicd_pipeline_name="flaky",cicd_pipeline_task_name="flaky",'
        f'cicd_pipeline_task_run_result="success"}}',
        1,
    )
    eventually(prometheus, "sum(flowpods_execution_first_task_delay_seconds_count)", 5)
    eventually(prometheus, "sum(flowpods_pod_start_delay_seconds_count)", 6)  # ok, broken, 2 flaky, 2 single
    assert (prometheus.value('sum(flowpods_reconcile_duration_seconds_count{flowpods_result="ok"})') or 0) > 0
    assert (
        prometheus.value(
            'sum(flowpods_k8s_request_duration_seconds_count{http_request_method="PUT",'
            'http_response_status_code="200"})'
        )
        or 0
    ) > 0
    assert (prometheus.value('flowpods_spans_exported_total{flowpods_result="success"}') or 0) > 0
    names = prometheus.metric_names()
    assert not any("run_id" in label for series in prometheus.query(f"{attempts}") for label in series["metric"])

    # an exemplar on ok's task-run histogram is the TASKRUN span of ok-1 in Jaeger
    exemplars = wait_until(
        lambda: prometheus.exemplars('flowpods_taskrun_duration_seconds_bucket{cicd_pipeline_name="ok"}', since),
        60,
        "an exemplar of ok's task run",
    )
    labels = exemplars[0]["labels"]
    assert labels["trace_id"] == ended["ok-1"]["traceId"]
    trace = wait_until(lambda: jaeger.trace(labels["trace_id"]), 60, "the exemplar's trace in Jaeger")
    (span,) = [s for s in trace["spans"] if s["spanID"] == labels["span_id"]]
    assert span["operationName"] == "TASKRUN hello"

    # the Grafana dashboard asks only for metrics Prometheus scraped
    for title, metric_names in dashboard_metric_names().items():
        assert metric_names, f"panel {title!r} names no metric"
        assert metric_names <= names, f"panel {title!r} asks for {sorted(metric_names - names)}, not scraped"


def test_a_restarted_operator_rebuilds_gauges_and_counts_no_finished_run_again(
    operator, apply_yaml, custom_objects, namespace, tmp_path
):
    for name in ("ok", "single"):
        apply_yaml(flow_yaml(name))
    apply_yaml(execution_yaml("ok-1", "ok"))
    assert wait_for_state(custom_objects, namespace, "ok-1", operator=operator)["status"]["state"] == "SUCCESS"
    # single-1 holds the flow's one place for 60 s once its container runs, far longer than the restart below
    # takes (a gate file on this machine would not be seen from the pod's container on the real node)
    apply_yaml(execution_yaml("single-1", "single", {"hold": 60}))
    wait_for_state(custom_objects, namespace, "single-1", {"RUNNING"}, operator=operator)
    apply_yaml(execution_yaml("single-2", "single", {"hold": 0}))
    wait_for_state(custom_objects, namespace, "single-2", {"QUEUED"}, operator=operator)
    ok_runs = (
        "cicd_pipeline_run_duration_seconds_count",
        {"cicd_pipeline_name": "ok", "cicd_pipeline_run_state": "executing", "cicd_pipeline_result": "success"},
    )
    wait_until(lambda: sample(operator, *ok_runs) == 1, 60, "ok-1 counted once")

    operator.kill()
    operator.start()
    waiting = ("flowpods_executions_waiting", {"cicd_pipeline_name": "single", "flowpods_state": "QUEUED"})
    executing = ("cicd_pipeline_run_active", {"cicd_pipeline_name": "single", "cicd_pipeline_run_state": "executing"})
    wait_until(
        lambda: sample(operator, *waiting) == 1 and sample(operator, *executing) == 1,
        60,
        "the gauges rebuilt from the cluster",
    )
    settle(3)  # the finished ok-1 was reconciled again at start: it must not be counted again
    assert sample(operator, *ok_runs) is None
    assert get_execution(custom_objects, namespace, "ok-1")["status"]["state"] == "SUCCESS"

    for name in ("single-1", "single-2"):
        assert (
            wait_for_state(custom_objects, namespace, name, operator=operator, timeout=180)["status"]["state"]
            == "SUCCESS"
        )
    single = (
        "cicd_pipeline_run_duration_seconds_count",
        {"cicd_pipeline_name": "single", "cicd_pipeline_run_state": "executing"},
    )
    wait_until(lambda: sample(operator, *single) == 2, 60, "both single runs counted once, by the restarted operator")
    settle(2)
    assert sample(operator, *single) == 2


def sample(operator: OperatorProcess, name: str, labels: dict[str, str]) -> float | None:
    """The sum of the operator's samples `name` whose labels include `labels` (None: no such sample, or no
    answer yet), read from its /metrics in the Prometheus text format."""
    try:
        text = scrape(operator)
    except OSError:
        return None
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(values) if values else None


def _seconds_between(start: str, end: str) -> float:
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()
