"""The benchmark's pure helpers (bench/stats.py): no servers, no timing."""

import math

import pytest

from bench import stats


def test_percentile_interpolates_between_closest_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert stats.percentile([7.0], 95) == 7.0
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


def test_summary_and_sustained_rate():
    s = stats.summary([1.0, 2.0, 3.0])
    assert s == {"n": 3, "p50": 2.0, "p95": pytest.approx(2.9), "mean": 2.0, "max": 3.0}
    # 101 events one every 0.1 s: 10 per second whatever the cut-off
    assert stats.sustained_rate([i / 10 for i in range(101)]) == pytest.approx(10.0)
    assert math.isnan(stats.sustained_rate([1.0]))


def test_request_counts_sum_apiserver_request_total_by_verb_and_resource():
    text = "\n".join([
        "# HELP apiserver_request_total Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        'apiserver_request_total{code="200",component="apiserver",group="flowpods.io",resource="executions",'
        'scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 7',
        'apiserver_request_total{code="409",component="apiserver",group="flowpods.io",resource="executions",'
        'scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 2',
        'apiserver_request_total{code="201",component="apiserver",group="",resource="pods",scope="resource",'
        'subresource="",verb="POST",version="v1"} 5',
        'apiserver_request_total_other{verb="POST"} 99',
        'apiserver_request_duration_seconds_count{verb="POST"} 3',
    ])  # fmt: skip
    counts = stats.request_counts(text)
    assert counts[("PUT", "flowpods.io", "executions", "status")] == 9
    assert counts[("POST", "", "pods", "")] == 5
    assert len(counts) == 2


def test_prometheus_labels_may_hold_commas_and_escaped_quotes():
    text = 'm{a="x,y",b="say \\"hi\\""} 1.5'
    assert stats.parse_prometheus(text, "m") == [({"a": "x,y", "b": 'say "hi"'}, 1.5)]


def test_collapsed_profile_shares_self_and_total_per_function():
    text = "\n".join([
        "main (/x/run.py:1);work (/site-packages/lib/a.py:10);hot (/site-packages/lib/a.py:20) 3",
        "main (/x/run.py:1);work (/site-packages/lib/a.py:11) 1",
        "main (/x/run.py:2);idle (/repo/operator/flowpods/operator.py:5) 1",
    ])  # fmt: skip
    profile = stats.collapsed_profile(text)
    assert dict(profile["self"])["hot (lib/a.py)"] == pytest.approx(0.6)
    assert dict(profile["total"])["work (lib/a.py)"] == pytest.approx(0.8)
    assert dict(profile["total"])["main (run.py)"] == pytest.approx(1.0)
    assert "idle (flowpods/operator.py)" in dict(profile["self"])


def test_write_deltas_counts_the_writes_made_between_two_reads_without_the_heartbeat():
    before = {
        ("POST", "", "pods", ""): 10.0,
        ("GET", "", "pods", ""): 5.0,
        ("PUT", "coordination.k8s.io", "leases", ""): 3.0,
    }
    after = {
        ("POST", "", "pods", ""): 13.0,
        ("POST", "", "pods", "binding"): 3.0,
        ("GET", "", "pods", ""): 50.0,
        ("PUT", "coordination.k8s.io", "leases", ""): 9.0,
        ("PATCH", "", "nodes", "status"): 2.0,
        ("PATCH", "", "pods", "status"): 6.0,
    }
    assert stats.write_deltas(before, after) == {
        "POST//pods/": 3.0,
        "POST//pods/binding": 3.0,
        "PATCH//pods/status": 6.0,
    }


def test_tracing_alternations_sets_each_default_run_against_the_disabled_runs_around_it():
    def run(traces: str, wall: float, cpu: float) -> dict:
        return {"traces": traces, "wall_s": wall, "cpu_s": cpu}

    runs = [run("DISABLED", 10, 4), run("DEFAULT", 11, 5), run("DISABLED", 12, 6), run("DEFAULT", 12, 6),
            run("DISABLED", 12, 6)]  # fmt: skip
    assert stats.tracing_alternations(runs) == [
        {"wall": pytest.approx(1.0), "cpu": pytest.approx(1.0)},
        {"wall": pytest.approx(1.0), "cpu": pytest.approx(1.0)},
    ]
    runs[3] = run("DEFAULT", 13.2, 6.6)
    assert stats.tracing_alternations(runs)[1] == {"wall": pytest.approx(1.1), "cpu": pytest.approx(1.1)}
    # a DEFAULT run without a DISABLED one on each side is no alternation
    assert stats.tracing_alternations([run("DEFAULT", 1, 1), run("DISABLED", 1, 1), run("DEFAULT", 1, 1)]) == []


def test_per_unit_ms_is_each_process_cpu_between_two_readings_per_unit():
    before = {"etcd": 1.0, "kube-apiserver": 10.0, "gone": 3.0}
    after = {"etcd": 1.5, "kube-apiserver": 12.0, "new": 1.0}
    assert stats.per_unit_ms(before, after, 100) == {"etcd": 5.0, "kube-apiserver": 20.0}


def test_cpu_spent_adds_the_operator_to_the_environment_and_keeps_the_node_agent_apart():
    runs = [
        {"cpu_ms_per_task_run": 6.0, "env_cpu_ms_per_task_run": {"kube-apiserver": 25.0, "nodeagent": 5.5}},
        {"cpu_ms_per_task_run": 8.0, "env_cpu_ms_per_task_run": {}},  # a run measured without the environment
    ]
    assert stats.cpu_spent(runs) == [(36.5, 5.5)]
