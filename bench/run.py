"""The benchmark runner: `python -m bench [--quick] [--profile] [--keep]`.

Starts a fresh test environment (never .testenv) with the node agent in instant mode, runs the phases,
stops everything, prints a table and writes bench/results/<date>.json. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import stats
from bench.watch import GROUP, TERMINAL, VERSION, Watcher
from flowpods.core.compaction import task_run_rows
from tests import testenv
from tests.e2e.harness import apply_crds, free_port, operator_environ

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FLOWPODS = str(BIN / "flowpods")  # the flowpods benched: this venv's, or another checkout's (`--source`)
INSTANT_MESSAGE = json.dumps({"outputs": {}, "error": None})


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s, to say how busy the machine was."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="load")
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopping.is_set():
            self.samples.append((round(time.monotonic() - start, 1), os.getloadavg()[0]))
            self.stopping.wait(5)


# --- the operator process ------------------------------------------------------------------------------


class OperatorProcess:
    """`flowpods operator` for one namespace, optionally under `py-spy record`."""

    def __init__(
        self,
        env: testenv.EnvInfo,
        namespace: str,
        log_dir: Path,
        traces: str,
        profile: Path | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.env, self.namespace, self.log_dir, self.traces, self.profile = env, namespace, log_dir, traces, profile
        self.settings = {"FLOWPODS_API_PORT": "0", **(settings or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def start(self) -> None:
        environ = operator_environ(self.env, self.namespace, FLOWPODS_TRACES=self.traces, **self.settings)
        argv = [FLOWPODS, "operator"]
        if self.profile is not None:
            argv = [
                str(BIN / "py-spy"),
                "record",
                "--format",
                "raw",
                "--gil",  # samples of the thread holding the GIL only: where the CPU goes, not who waits for it
                "--rate",
                "100",
                "--output",
                str(self.profile),
                "--",
                *argv,
            ]
        with (self.log_dir / f"operator-{self.namespace}.log").open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.proc.pid
        if self.profile is not None:  # the operator is py-spy's child
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
                if children:
                    self.pid = int(children[0])
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("py-spy did not start the operator")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return stats.cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return stats.memory_kb(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)  # py-spy writes its profile when its child exits
            self.proc.wait(30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# --- the cluster side ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, env: testenv.EnvInfo, work: Path, profile: bool):
        from kubernetes import client

        self.env, self.work, self.profile = env, work, profile
        self.api = testenv.api_client(env.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.operators: list[OperatorProcess] = []
        self.watchers: list[Watcher] = []
        self.worker_pod: dict[str, Any] | None = None  # one of the operator's worker pods (floor_throughput)

    def close(self) -> None:
        for w in self.watchers:
            w.stop()
        for op in self.operators:
            op.stop()

    # helpers

    def clean_pods(self, ns: str, timeout: float = 180) -> None:
        """Delete a phase's finished pods before the next phase.

        The test node agent keeps one thread per pod it saw, polling every second until the pod is deleted;
        thousands of retained Succeeded pods would load the machine (and the next phase) for nothing.
        """

        def delete() -> bool:
            # a busy API server may answer 504 while it goes on deleting: ask again, then wait for the pods
            self.core.delete_collection_namespaced_pod(ns, _preload_content=False)
            return True

        testenv.wait_for(delete, timeout, f"the pods of {ns} to be deleted", interval=2)

        def gone() -> bool:
            listed = json.loads(self.core.list_namespaced_pod(ns, limit=1, _preload_content=False).data)
            return not listed["items"]

        testenv.wait_for(gone, timeout, f"the pods of {ns} to be deleted")

    def namespace(self, name: str) -> str:
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        testenv.wait_for(lambda: self._exists_sa(name), 60, f"serviceaccount {name}/default")
        return name

    def _exists_sa(self, ns: str) -> bool:
        return any(sa.metadata.name == "default" for sa in self.core.list_namespaced_service_account(ns).items)

    def flow(self, ns: str, name: str, tasks: list[dict[str, Any]]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Flow",
            "metadata": {"name": name},
            "spec": {"id": name, "namespace": "bench", "tasks": tasks},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "flows", body)

    def execution(self, ns: str, name: str, flow: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Execution",
            "metadata": {"name": name},
            "spec": {"flowRef": {"name": flow}, "inputs": {}},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "executions", body, _preload_content=False)

    def watch(self, ns: str, kind: str = "pods") -> Watcher:
        w = Watcher(self.api, ns, kind)
        w.start()
        self.watchers.append(w)
        return w

    def operator(
        self, ns: str, traces: str = "DEFAULT", profile: Path | None = None, settings: dict[str, str] | None = None
    ) -> OperatorProcess:
        op = OperatorProcess(self.env, ns, self.work, traces, profile, settings)
        op.start()
        self.operators.append(op)
        return op

    def run_one(self, ns: str, executions: Watcher, name: str, flow: str, timeout: float = 120) -> dict[str, Any]:
        self.execution(ns, name, flow)
        executions.wait(
            lambda seen: name in seen and seen[name].terminated is not None, timeout, f"execution {ns}/{name} to finish"
        )
        body = executions.seen[name].body or {}
        state = (body.get("status") or {}).get("state")
        if state != "SUCCESS":
            raise RuntimeError(f"execution {ns}/{name} ended {state}: {(body.get('status') or {}).get('error')}")
        return body

    def metrics(self) -> Any:
        code, text = testenv.cluster._https_get(f"{self.env.api_url}/metrics", self.env.admin_token, self.env.ca_file)
        if code != 200:
            raise RuntimeError(f"GET /metrics: {code}")
        return stats.request_counts(text.decode())

    # phase 1: overhead against the floor

    def overhead(self, rounds: int, chains: int, length: int) -> dict[str, Any]:
        floor_ns, op_ns = self.namespace("bench-floor"), self.namespace("bench-overhead")
        self.flow(op_ns, "chain", [{"id": f"t{i:02d}", "type": "Log", "message": "x"} for i in range(length)])
        floor_pods, op_pods, executions = self.watch(floor_ns), self.watch(op_ns), self.watch(op_ns, "executions")
        op = self.operator(op_ns)
        self.run_one(op_ns, executions, "warm-up", "chain", timeout=180)
        floor_samples: list[float] = []
        op_samples: list[float] = []
        for r in range(rounds):
            log(f"overhead round {r + 1}/{rounds}: floor ({chains} chains of {length} pods)")
            prefix = f"floor{r}"
            self.run_floor(floor_ns, chains, length, prefix)
            floor_pods.wait(
                lambda seen, p=prefix: (
                    sum(1 for n, s in seen.items() if n.startswith(p) and s.terminated) == chains * length
                ),
                30,
                "the floor's pods",
            )
            for c in range(chains):
                for i in range(1, length):
                    done = floor_pods.seen[f"{prefix}-{c}-{i - 1:03d}"].terminated
                    added = floor_pods.seen[f"{prefix}-{c}-{i:03d}"].added
                    floor_samples.append(added - done)
            log(f"overhead round {r + 1}/{rounds}: operator ({chains} executions of {length} tasks)")
            for c in range(chains):
                name = f"chain-{r}-{c}"
                self.run_one(op_ns, executions, name, "chain", timeout=300)
                mine = sorted(
                    (s.labels.get("flowpods.io/task-id", ""), s)
                    for n, s in list(op_pods.seen.items())
                    if s.labels.get("flowpods.io/execution") == name
                )
                if len(mine) != length:
                    raise RuntimeError(f"execution {name}: {len(mine)} pods, expected {length}")
                for (_, before), (_, after) in itertools.pairwise(mine):
                    op_samples.append(after.added - before.terminated)
        result = {
            "floor_ms": {k: v * 1000 if k != "n" else v for k, v in stats.summary(floor_samples).items()},
            "operator_ms": {k: v * 1000 if k != "n" else v for k, v in stats.summary(op_samples).items()},
            "load_after": os.getloadavg()[0],
        }
        result["ratio_p50"] = result["operator_ms"]["p50"] / result["floor_ms"]["p50"]
        result["ratio_p95"] = result["operator_ms"]["p95"] / result["floor_ms"]["p95"]
        op.stop()
        self.clean_pods(floor_ns)
        self.clean_pods(op_ns)
        return result

    # phases 2-4: throughput with and without tracing

    def env_cpu(self) -> dict[str, float]:
        """utime + stime of each process of the environment (those still alive), in seconds."""
        found = {}
        for name, pid in self.env.pids.items():
            try:
                found[name] = stats.cpu_seconds(pid)
            except OSError:
                continue
        return found

    def throughput(
        self, traces: str, executions: int, tasks: int, profile: Path | None, run: int = 1
    ) -> dict[str, Any]:
        ns = self.namespace(f"bench-tput-{run}-{traces.lower()}")
        self.flow(ns, "five", [{"id": f"t{i}", "type": "Log", "message": "x"} for i in range(tasks)])
        pods, execs = self.watch(ns), self.watch(ns, "executions")
        op = self.operator(ns, traces, profile)
        self.run_one(ns, execs, "warm-up", "five", timeout=180)
        time.sleep(2)  # the warm-up's Events are posted after its final status
        before, cpu0, load0 = self.metrics(), op.cpu(), os.getloadavg()[0]
        env0 = self.env_cpu()
        t0 = time.monotonic()
        names = [f"run-{i:04d}" for i in range(executions)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: self.execution(ns, n, "five"), names))
        created = time.monotonic()
        execs.wait(
            lambda seen: sum(1 for n in names if n in seen and seen[n].terminated) == executions,
            600,
            f"{executions} executions in {ns} to finish",
        )
        t1 = time.monotonic()
        cpu1 = op.cpu()
        env1 = self.env_cpu()
        rss = op.memory()
        time.sleep(2)  # the final Events are posted after the final status
        after = self.metrics()
        failed = [n for n in names if execs.seen[n].state != "SUCCESS"]
        op.stop()
        pods.stop()

        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
        every_write = stats.write_deltas(before, after)
        task_runs = executions * tasks

        def count(verb: str, group: str, resource: str, sub: str = "") -> int:
            return int(delta.get((verb, group, resource, sub), 0))

        writes = {
            "executions/status PUT": count("PUT", GROUP, "executions", "status"),
            "executions/status PATCH": count("PATCH", GROUP, "executions", "status"),
            "executions PATCH/PUT": count("PATCH", GROUP, "executions") + count("PUT", GROUP, "executions"),
            "pods POST": count("POST", "", "pods"),
            "pods DELETE": count("DELETE", "", "pods"),
            "events POST/PATCH (core/v1)": count("POST", "", "events") + count("PATCH", "", "events"),
            "configmaps PUT/POST (the span ledger)": count("PUT", "", "configmaps") + count("POST", "", "configmaps"),
        }
        # Cross-check from what the cluster keeps: status changes + pods + Events about these executions.
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "executions")["items"]
        mine = [e for e in items if e["metadata"]["name"] in set(names)]
        changes = sum(len((e.get("status") or {}).get("changes") or []) for e in mine)
        pod_count = sum(1 for n, s in pods.seen.items() if s.labels.get("flowpods.io/execution", "").startswith("run-"))
        events = [
            ev
            for ev in self.core.list_namespaced_event(ns).items
            if ev.involved_object.kind == "Execution" and ev.involved_object.name in set(names)
        ]
        finished = [s.terminated for n, s in pods.seen.items() if n.startswith("run-") and s.terminated is not None]
        wall = t1 - t0
        result = {
            "traces": traces,
            "run": run,
            "executions": executions,
            "task_runs": task_runs,
            "failed": len(failed),
            "wall_s": wall,
            "create_s": created - t0,
            "task_runs_per_s": task_runs / wall,
            "task_runs_per_s_sustained": stats.sustained_rate(finished),
            "cpu_s": cpu1 - cpu0,
            "cpu_ms_per_task_run": (cpu1 - cpu0) / task_runs * 1000,
            # where the rest of the machine's CPU went meanwhile (the API server, etcd, Jaeger, ...)
            "env_cpu_ms_per_task_run": stats.per_unit_ms(env0, env1, task_runs),
            "rss_mb_after": rss.get("VmRSS", 0) / 1024,
            "api_writes_measured": writes,
            "api_writes_per_task_run": sum(writes.values()) / task_runs,
            "api_writes_counted_from_cluster": {"status changes": changes, "pods": pod_count, "events": len(events)},
            "api_writes_per_task_run_from_cluster": (changes + pod_count + len(events)) / task_runs,
            "apiserver_write_deltas": every_write,
            # the same count as the floor's api_writes_per_pod: every write, the operator's and the control plane's
            "all_api_writes_per_task_run": sum(every_write.values()) / task_runs,
            "load_before": load0,
            "load_after": os.getloadavg()[0],
        }
        if self.worker_pod is None:  # what the floor runs again with the operator's own pod (floor_throughput)
            self.worker_pod = worker_pod_template(self.core, ns)
        self.clean_pods(ns)
        return result

    def run_floor(self, ns: str, chains: int, length: int, prefix: str, *extra: str) -> None:
        """The floor (bench/floor.py) as its own process, on the same control plane."""
        argv = ["--kubeconfig", str(self.env.kubeconfig), "--namespace", ns, "--chains", str(chains),
                "--length", str(length), "--prefix", prefix, *extra]  # fmt: skip
        subprocess.run([sys.executable, "-m", "bench.floor", *argv], check=True, cwd=REPO, timeout=600)

    def floor_throughput(self, chains: int, length: int, template: dict[str, Any] | None = None) -> dict[str, Any]:
        """The same watch-and-create loop with all chains at once: the control plane's own task-run rate.
        With `template`, each pod is that one (a worker pod of the operator's, renamed) instead of a bare one."""
        ns = self.namespace("bench-floor-tput" + ("-worker-pod" if template is not None else ""))
        pods = self.watch(ns)
        extra = ["--concurrent"]
        if template is not None:
            path = self.work / "worker-pod.json"
            path.write_text(json.dumps(template))
            extra += ["--template", str(path)]
        before, env0 = self.metrics(), self.env_cpu()
        t0 = time.monotonic()
        self.run_floor(ns, chains, length, "f", *extra)
        pods.wait(lambda seen: sum(1 for s in seen.values() if s.terminated) == chains * length, 60, "the floor's pods")
        wall = time.monotonic() - t0
        env1 = self.env_cpu()
        time.sleep(2)  # the scheduler's Events are posted after the binding
        writes = stats.write_deltas(before, self.metrics())
        finished = [s.terminated for s in pods.seen.values() if s.terminated is not None]
        pods.stop()
        self.clean_pods(ns)
        return {
            "pods": chains * length,
            # every write of the control plane per pod (create, binding, the node's status, the scheduler's Event):
            # what each of the operator's task runs needs at the least, the unit of the API server's work
            "api_writes_per_pod": sum(writes.values()) / (chains * length),
            "apiserver_write_deltas": writes,
            "wall_s": wall,
            "pods_per_s": chains * length / wall,
            "pods_per_s_sustained": stats.sustained_rate(finished),
            "env_cpu_ms_per_pod": stats.per_unit_ms(env0, env1, chains * length),
            "load_after": os.getloadavg()[0],
        }

    # phase 3: memory with many executions in flight

    def memory(self, executions: int) -> dict[str, Any]:
        ns = self.namespace("bench-memory")
        self.flow(ns, "sleepy", [{"id": "nap", "type": "Sleep", "duration": "PT1H"}])
        self.flow(ns, "quick", [{"id": "hi", "type": "Log", "message": "x"}])
        pods, execs = self.watch(ns), self.watch(ns, "executions")
        op = self.operator(ns, "DEFAULT")
        self.run_one(ns, execs, "warm-up", "quick", timeout=180)
        time.sleep(2)
        baseline = op.memory()
        testenv.kubectl(self.env, "cordon", self.env.node_name)
        try:
            cpu0, t0 = op.cpu(), time.monotonic()
            names = [f"held-{i:04d}" for i in range(executions)]
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda n: self.execution(ns, n, "sleepy"), names))
            pods.wait(
                lambda seen: sum(1 for n in seen if n.startswith("held-")) >= executions,
                max(600, executions // 5),
                f"{executions} pods in {ns}",
            )
            t1 = time.monotonic()
            cpu1 = op.cpu()
            time.sleep(5)  # let the scheduler's Unschedulable updates and the reconciles they cause settle
            loaded = op.memory()
            running = sum(1 for n in names if execs.seen.get(n) and execs.seen[n].state == "RUNNING")
        finally:
            op.stop()
            testenv.kubectl(self.env, "uncordon", self.env.node_name, check=False)
        return {
            "executions_in_flight": executions,
            "executions_seen_running": running,
            "rss_mb_idle": baseline.get("VmRSS", 0) / 1024,
            "rss_mb": loaded.get("VmRSS", 0) / 1024,
            "peak_rss_mb": loaded.get("VmHWM", 0) / 1024,
            "rss_kb_per_execution": (loaded.get("VmRSS", 0) - baseline.get("VmRSS", 0)) / executions,
            "start_s": t1 - t0,
            "cpu_ms_per_execution_start": (cpu1 - cpu0) / executions * 1000,
            "load_after": os.getloadavg()[0],
        }

    # phase 5 (on request: --only foreach): one ForEach of many values, its status and its spans

    def foreach(self, values: int, concurrency: int) -> dict[str, Any]:
        """A ForEach over `values` values, a pod each (instant), to its end: the status size as it grows, the
        spans in Jaeger (each once), the operator's CPU and how long /healthz took to answer meanwhile."""
        ns = self.namespace("bench-foreach")
        work = {"id": "work", "type": "Log", "message": "{{ taskrun.value }}"}
        each = {"id": "each", "type": "ForEach", "values": f"{{{{ range(0, {values - 1}) }}}}",
                "concurrencyLimit": concurrency, "tasks": [work]}  # fmt: skip
        self.flow(ns, "big", [each, {"id": "after", "type": "Log", "message": "done"}])
        api_port = free_port()
        # ended pods are deleted (the node agent polls every pod it keeps), Succeeded ones at once
        op = self.operator(ns, "DEFAULT", settings={"FLOWPODS_API_PORT": str(api_port),
                                                     "FLOWPODS_POD_CLEANUP": "on-success"})  # fmt: skip
        health = HealthSampler(f"http://127.0.0.1:{api_port}/healthz")
        testenv.wait_for(health.ready, 120, "the operator's API")
        health.start()
        cpu0, t0 = op.cpu(), time.monotonic()
        self.execution(ns, "big-1", "big")
        samples: list[dict[str, Any]] = []
        status: dict[str, Any] = {}
        while time.monotonic() - t0 < 3 * 3600:
            body = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "executions", "big-1")
            status = body.get("status") or {}
            samples.append({"s": round(time.monotonic() - t0, 1), "bytes": stats.json_size(status),
                            "state": status.get("state"), "load": os.getloadavg()[0]})  # fmt: skip
            log(f"foreach: {samples[-1]}")
            if status.get("state") in TERMINAL:
                break
            time.sleep(10)
        wall, cpu = time.monotonic() - t0, op.cpu() - cpu0
        rss = op.memory()
        health.stopping.set()
        rows = task_run_rows(status)
        changes = status["changes"][-1]["n"] if status.get("changes") else status["folded"]["lastChange"]
        # RUN, the ForEach's EXECUTOR span, a TASKRUN per value and for `after` (instant pods run no worker, so
        # no WORKER span), an EXECUTOR span per change
        expected = 1 + 1 + values + 1 + changes
        copies = self.jaeger_span_copies(status.get("traceId", ""), expected)
        op.stop()
        return {
            "values": values,
            "concurrency": concurrency,
            "state": status.get("state"),
            "error": status.get("error"),
            "wall_s": wall,
            "values_per_s": values / wall,
            "cpu_s": cpu,
            "cpu_ms_per_task_run": cpu / max(len(rows), 1) * 1000,
            "rss_mb_after": rss.get("VmRSS", 0) / 1024,
            "task_runs": len(rows),
            "task_runs_succeeded": sum(1 for row in rows if row["state"] == "SUCCESS"),
            "changes": changes,
            "status_bytes_closing": stats.json_size(status),
            "status_bytes_max_seen": max(sample["bytes"] for sample in samples),
            "folded_task_runs": (status.get("folded") or {}).get("taskRuns"),
            "spans_expected": expected,
            "spans_stored": sum(copies.values()),
            "spans_distinct": len(copies),
            "spans_max_copies": max(copies.values(), default=0),
            "healthz": health.summary(),
            "samples": samples,
        }

    def jaeger_span_copies(self, trace_id: str, expected: int, timeout: float = 300) -> dict[str, int]:
        """How many times Jaeger stores each span of the trace, once it holds `expected` distinct ones (or the
        timeout passed), and 10 s more so that a span sent twice would have arrived."""
        deadline, copies = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            copies = jaeger_copies(self.env.jaeger_url, trace_id)
            if len(copies) >= expected:
                break
            time.sleep(10)
        time.sleep(10)
        return jaeger_copies(self.env.jaeger_url, trace_id)


def jaeger_copies(jaeger_url: str, trace_id: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{jaeger_url}/api/traces/{trace_id}?raw=true", timeout=120) as answer:
        data = json.load(answer).get("data") or []
    return dict(Counter(span["spanID"] for span in (data[0]["spans"] if data else [])))


class HealthSampler(threading.Thread):
    """GET /healthz every 200 ms: how long each answer took (a slow one means a blocked event loop)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="healthz")
        self.url, self.times, self.failures = url, [], 0
        self.stopping = threading.Event()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            ok = self.ready()
            self.times.append(time.monotonic() - started)
            self.failures += 0 if ok else 1
            self.stopping.wait(0.2)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.times)
        return {
            "checks": len(ordered),
            "failures": self.failures,
            "p50_s": stats.percentile(ordered, 50) if ordered else None,
            "p99_s": stats.percentile(ordered, 99) if ordered else None,
            "max_s": ordered[-1] if ordered else None,
            "over_1s": sum(1 for t in ordered if t > 1.0),
        }


def worker_pod_template(core: Any, ns: str) -> dict[str, Any] | None:
    """One of the operator's worker pods in `ns` as a body to create again elsewhere: without what the API
    server, the scheduler and the node set (status, uid, node) and without its owner (an Execution of `ns`)."""
    items = json.loads(core.list_namespaced_pod(ns, limit=1, _preload_content=False).data)["items"]
    if not items:
        return None
    pod = items[0]
    meta = pod["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences", "namespace",
                "generateName"):  # fmt: skip
        meta.pop(key, None)
    pod.pop("status", None)
    for key in ("nodeName", "priority", "preemptionPolicy"):  # the scheduler's, and what admission computes
        pod["spec"].pop(key, None)
    return dict(pod)


# --- phase 5: the local runner -------------------------------------------------------------------------


def local_runner(runs: int, work: Path) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWPODS_", "KUBECONFIG"))}

    def timed(path: Path) -> float:
        t = time.perf_counter()
        done = subprocess.run([FLOWPODS, "run", str(path)], env=environ, capture_output=True, text=True, timeout=300)
        took = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"flowpods run {path} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return took

    def flow_file(name: str, n: int) -> Path:
        path = work / f"{name}.yaml"
        tasks = [{"id": f"t{i:02d}", "type": "io.kestra.plugin.core.log.Log", "message": "x"} for i in range(n)]
        path.write_text(yaml.safe_dump({"id": name, "namespace": "bench", "tasks": tasks}))
        return path

    hello = [timed(REPO / "examples" / "hello-world.yaml") for _ in range(runs)]
    one, ten = flow_file("one-task", 1), flow_file("ten-tasks", 10)
    ones = [timed(one) for _ in range(runs)]
    tens = [timed(ten) for _ in range(runs)]
    return {
        "hello_world_s": stats.median(hello),
        "hello_world_runs_s": hello,
        "one_task_s": stats.median(ones),
        "ten_tasks_s": stats.median(tens),
        "per_task_s": (stats.median(tens) - stats.median(ones)) / 9,
        "load_after": os.getloadavg()[0],
    }


# --- the table -----------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    ov = results.get("overhead")
    if ov:
        f, o = ov["floor_ms"], ov["operator_ms"]
        rows.append(
            (
                "transition overhead p50 (ms)",
                f"{o['p50']:.1f} (floor {f['p50']:.1f}, n={o['n']})",
                "<= 1.5x floor",
                _ok(ov["ratio_p50"] <= 1.5) + f" {ov['ratio_p50']:.2f}x",
            )
        )
        rows.append(
            (
                "transition overhead p95 (ms)",
                f"{o['p95']:.1f} (floor {f['p95']:.1f}, n={f['n']})",
                "<= 2x floor",
                _ok(ov["ratio_p95"] <= 2) + f" {ov['ratio_p95']:.2f}x",
            )
        )
    tp = results.get("throughput", [])
    tf = results.get("throughput_floor")
    if tf:
        rows.append(
            (
                "throughput floor (pods/s, watch-and-create)",
                f"{tf['pods_per_s']:.1f} overall, {tf['pods_per_s_sustained']:.1f} sustained",
                "",
                "",
            )
        )
    twp = results.get("throughput_floor_worker_pod")
    if twp:
        rows.append(
            (
                "throughput floor, the worker's pod (pods/s)",
                f"{twp['pods_per_s']:.1f} overall, {twp['pods_per_s_sustained']:.1f} sustained",
                "",
                "",
            )
        )
    for r in tp:
        ratio = r["task_runs_per_s"] / tf["pods_per_s"] if tf else None
        rows.append(
            (
                f"throughput #{r['run']} traces {r['traces']} (task runs/s)",
                f"{r['task_runs_per_s']:.1f} overall, {r['task_runs_per_s_sustained']:.1f} sustained",
                ">= 0.9x floor",
                (_ok(ratio >= 0.9) + f" {ratio:.2f}x") if ratio is not None else "",
            )
        )
    for r in tp:
        rows.append(
            (
                f"operator CPU per task run #{r['run']} {r['traces']} (ms)",
                f"{r['cpu_ms_per_task_run']:.1f}",
                "<= 8",
                _ok(r["cpu_ms_per_task_run"] <= 8),
            )
        )
    spent = stats.cpu_spent(tp)
    if spent:
        each = ", ".join(f"{total:.0f} ({agent:.1f})" for total, agent in spent)
        rows.append(("all CPU per task run, each run (ms; node agent)", each, "", ""))
    if tp:
        r = tp[0]
        rows.append(
            (
                "API writes per task run (apiserver metrics)",
                f"{r['api_writes_per_task_run']:.2f} (cluster count {r['api_writes_per_task_run_from_cluster']:.2f})",
                "",
                "",
            )
        )
    if tp and tf and "api_writes_per_pod" in tf:
        writes = [r["all_api_writes_per_task_run"] for r in tp if "all_api_writes_per_task_run" in r]
        if writes:
            # the floor runs at the scheduler's binding rate (its client's 50 QPS); the operator, CPU-bound here,
            # at the machine's CPU over what a task run costs everywhere, which goes about as the writes
            rows.append(("all API writes per task run / the floor's per pod",
                         f"{min(writes):.2f}-{max(writes):.2f} / {tf['api_writes_per_pod']:.2f}",
                         "", f"ratio {tf['api_writes_per_pod'] / min(writes):.2f}x"))  # fmt: skip
    alternations = stats.tracing_alternations(tp)
    if alternations:
        wall = statistics.median(a["wall"] for a in alternations)
        cpu = statistics.median(a["cpu"] for a in alternations)
        results["tracing_ratio"] = {"wall": wall, "cpu": cpu, "alternations": alternations}
        each = ", ".join(f"{a['wall']:.3f}" for a in alternations)
        rows.append(("tracing cost DEFAULT/DISABLED (wall, median)", f"{wall:.3f} ({each})", "<= 1.03",
                     _ok(wall <= 1.03)))  # fmt: skip
        rows.append(("tracing cost DEFAULT/DISABLED (CPU, median)", f"{cpu:.3f}", "", ""))
    mem = results.get("memory")
    if mem:
        rows.append(
            (
                f"operator RSS, {mem['executions_in_flight']} executions in flight (MB)",
                f"{mem['rss_mb']:.0f} (idle {mem['rss_mb_idle']:.0f}, peak {mem['peak_rss_mb']:.0f})",
                "<= 150",
                _ok(mem["rss_mb"] <= 150),
            )
        )
    each = results.get("foreach")
    if each:
        ok = each["state"] == "SUCCESS" and each["spans_distinct"] == each["spans_expected"] == each["spans_stored"]
        rows.append((f"foreach: {each['values']} values to {each['state']} (s)", f"{each['wall_s']:.0f}", "", ""))
        rows.append(("foreach: spans stored / distinct / expected", f"{each['spans_stored']} / "
                     f"{each['spans_distinct']} / {each['spans_expected']}", "each once", _ok(ok)))  # fmt: skip
        largest = each["status_bytes_max_seen"]
        rows.append(("foreach: status bytes, closing / largest seen", f"{each['status_bytes_closing']} / {largest}",
                     "< 1 MiB", _ok(largest < 2**20)))  # fmt: skip
        rows.append(("foreach: operator CPU per task run (ms)", f"{each['cpu_ms_per_task_run']:.1f}", "", ""))
        health = each["healthz"]
        rows.append(("foreach: /healthz p50 / p99 / max (s)", f"{health['p50_s']:.3f} / {health['p99_s']:.3f} / "
                     f"{health['max_s']:.3f}", "max < 1", _ok(health["max_s"] < 1.0)))  # fmt: skip
    loc = results.get("local")
    if loc:
        hello, per_task = loc["hello_world_s"], loc["per_task_s"]
        rows.append(("local: flowpods run hello-world (s, median)", f"{hello:.2f}", "<= 0.3", _ok(hello <= 0.3)))
        rows.append(("local: per-task overhead (s)", f"{per_task:.3f}", "<= 0.030", _ok(per_task <= 0.030)))
    widths = [max(len(r[i]) for r in [("metric", "measured", "target", "met"), *rows]) for i in range(4)]
    lines = []
    for r in [("metric", "measured", "target", "met"), tuple("-" * w for w in widths), *rows]:
        lines.append(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def _ok(met: bool) -> str:
    return "yes" if met else "NO"


def machine() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def short_commit(checkout: Path) -> str:
    """The checkout's HEAD, abbreviated ("" when it is not a git checkout)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return done.stdout.strip()


def launcher(source: Path, work: Path) -> str:
    """A `flowpods` command running the checkout at `source` (its operator/ folder) on this venv's packages, so
    that another build (the first one: docs/benchmarks.md's before and after) is benched by this bench, on the
    same machine, within the same hour. Its children (a local run's fork server, its workers) inherit the path."""
    code = (source / "operator").resolve()
    if not (code / "flowpods" / "cli" / "main.py").is_file():
        raise SystemExit(f"--source {source}: no operator/flowpods/cli/main.py there (a flowpods checkout?)")
    script = work / "flowpods"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"CODE = {str(code)!r}\n"
        'os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [CODE, os.environ.get("PYTHONPATH")]))\n'
        "sys.path.insert(0, CODE)\n"
        "# the harness's endpoint is the collector's HTTP port, today's default; the first builds defaulted to grpc\n"
        'if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):\n'
        '    os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")\n'
        "from flowpods.cli import main as cli\n"
        'sys.exit((getattr(cli, "entry", None) or cli.main)())\n'
    )
    script.chmod(0o755)
    return str(script)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, to check the bench itself")
    p.add_argument("--profile", action="store_true", help="run the DEFAULT throughput operator under py-spy")
    p.add_argument("--keep", action="store_true", help="keep the environment's state dir (logs) afterwards")
    p.add_argument(
        "--only",
        default="local,overhead,throughput,memory",
        help="comma-separated phases; `foreach` (one ForEach of --foreach-values values, ~1 h) only on request",
    )
    p.add_argument("--out", help="results JSON (default bench/results/<date>.json)")
    p.add_argument(
        "--source",
        type=Path,
        help="bench the flowpods of another checkout (its operator/ folder, run on this venv's packages), e.g. "
        "a `git worktree` of an older commit; the environment and the bench stay this checkout's",
    )
    p.add_argument("--foreach-values", type=int, default=10_000, help="phase foreach: values of the ForEach")
    p.add_argument("--foreach-concurrency", type=int, default=100, help="phase foreach: its concurrencyLimit")
    p.add_argument("--memory-executions", type=int, default=1000, help="phase memory: executions held in flight")
    p.add_argument(
        "--alternations",
        type=int,
        default=3,
        help="phase throughput: DEFAULT runs, each between two DISABLED ones (the tracing cost's median)",
    )
    args = p.parse_args(argv)
    # a SIGTERM (a background run stopped) ends like an error: the operators and the environment are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    phases = set(args.only.split(","))
    q = args.quick
    started = time.monotonic()
    stamp = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "uptime_start": uptime(),
        "quick": q,
        "commit": short_commit(REPO),
    }
    sampler = LoadSampler()
    sampler.start()
    work = Path(tempfile.mkdtemp(prefix="flowpods-bench-"))
    if args.source is not None:
        global FLOWPODS
        FLOWPODS = launcher(args.source, work)
        results["source"] = {"path": str(args.source.resolve()), "commit": short_commit(args.source)}
        log(f"benching the flowpods of {args.source} ({results['source']['commit'] or 'not a git checkout'})")
    try:
        if "local" in phases:
            log("local runner")
            results["local"] = local_runner(2 if q else 5, work)
        if phases & {"overhead", "throughput", "memory", "foreach"}:
            state = work / "testenv"
            log(f"starting a fresh test environment in {state} (node agent in instant mode)")
            env = testenv.start(state, agent_args=["--instant-message", INSTANT_MESSAGE])
            bench = Bench(env, work, args.profile)
            try:
                # not `kubectl wait --for condition=established`: it fails at once on a CRD that has no
                # conditions yet ("status.conditions accessor error"); this polls the condition
                apply_crds(env)
                if "overhead" in phases:
                    log("executor overhead against the floor")
                    results["overhead"] = bench.overhead(rounds=2, chains=1 if q else 2, length=6 if q else 21)
                    results["uptime_overhead"] = uptime()
                if "throughput" in phases:
                    results["throughput"] = []
                    # DISABLED, then (DEFAULT, DISABLED) per alternation: each DEFAULT between two DISABLED, so
                    # that a load drifting linearly cancels out of its ratio; the tracing cost is their median
                    order = ["DISABLED"] + ["DEFAULT", "DISABLED"] * (1 if q else args.alternations)
                    for run, traces in enumerate(order, 1):
                        n = 20 if q else 200
                        log(f"throughput: {n} executions of 5 tasks, FLOWPODS_TRACES={traces}")
                        prof = work / "operator-profile.txt" if args.profile and run == 2 else None
                        results["throughput"].append(bench.throughput(traces, n, 5, prof, run))
                        if prof is not None and prof.exists():
                            results["profile"] = {
                                k: [(name, round(share, 4)) for name, share in v]
                                for k, v in stats.collapsed_profile(prof.read_text(), 25).items()
                            }
                            shutil.copy(prof, REPO / "bench" / "results" / f"profile-{stamp:%Y-%m-%d}.txt")
                    n = 20 if q else 200
                    log(f"throughput floor: {n} concurrent chains of 5 pods (watch-and-create loop)")
                    results["throughput_floor"] = bench.floor_throughput(n, 5)
                    if bench.worker_pod is not None:
                        log(f"throughput floor with the operator's worker pod: {n} concurrent chains of 5 pods")
                        results["throughput_floor_worker_pod"] = bench.floor_throughput(n, 5, bench.worker_pod)
                    results["uptime_throughput"] = uptime()
                if "foreach" in phases:
                    n = 300 if q else args.foreach_values
                    log(f"foreach: one ForEach of {n} values, {args.foreach_concurrency} at once")
                    results["foreach"] = bench.foreach(n, args.foreach_concurrency)
                    results["uptime_foreach"] = uptime()
                if "memory" in phases:
                    n = 100 if q else args.memory_executions
                    log(f"memory: {n} executions in flight (node cordoned, pods Pending)")
                    results["memory"] = bench.memory(n)
                    results["uptime_memory"] = uptime()
            finally:
                bench.close()
                if args.keep:
                    log(f"kept {state}")
                testenv.stop(state)
    finally:
        sampler.stopping.set()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["load_samples"] = sampler.samples
    results["uptime_end"] = uptime()
    results["bench_s"] = time.monotonic() - started
    print()
    text = table(results)
    print(text)
    print(f"\nload: {results['uptime_end']}; bench took {results['bench_s']:.0f} s")
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"{stamp:%Y-%m-%d}{'-quick' if q else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {out}")
    return 0
