"""Pure helpers of the benchmark: percentiles, Prometheus text, /proc readers, py-spy summaries."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def json_size(value: object) -> int:
    """Bytes of a value as the API server stores it (compact JSON)."""
    return len(json.dumps(value, separators=(",", ":")))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, mean and max of a sample (in the sample's unit)."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": sum(values) / len(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


def sustained_rate(times: Sequence[float], low: float = 10, high: float = 90) -> float:
    """Events per second between the low-th and the high-th percentile of their times (ramp-up/down cut off)."""
    if len(times) < 2:
        return math.nan
    ordered = sorted(times)
    i, j = round((len(ordered) - 1) * low / 100), round((len(ordered) - 1) * high / 100)
    span = ordered[j] - ordered[i]
    return (j - i) / span if span > 0 else math.inf


def parse_prometheus(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in Prometheus text format, as (labels, value)."""
    found = []
    for line in text.splitlines():
        if not line.startswith(metric) or line.startswith("#"):
            continue
        rest = line[len(metric) :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            body, _, rest = rest[1:].partition("} ")
            for part in _split_labels(body):
                key, _, value = part.partition("=")
                labels[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        elif rest.startswith(" "):
            rest = rest[1:]
        else:
            continue  # another metric sharing the prefix
        found.append((labels, float(rest.split()[0])))
    return found


def _split_labels(body: str) -> Iterable[str]:
    part, quoted, escaped = [], False, False
    for ch in body:
        if escaped:
            part.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            part.append(ch)
        elif ch == "," and not quoted:
            yield "".join(part)
            part = []
        else:
            part.append(ch)
    if part:
        yield "".join(part)


def request_counts(text: str) -> Counter[tuple[str, str, str, str]]:
    """apiserver_request_total summed by (verb, group, resource, subresource)."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for labels, value in parse_prometheus(text, "apiserver_request_total"):
        key = (
            labels.get("verb", ""),
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
        )
        counts[key] += value
    return counts


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def collapsed_profile(text: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples by function from py-spy's raw (collapsed) output: `frame;frame;... count` lines.

    `self`: the share of samples where the function is the innermost frame; `total`: where it is anywhere
    on the stack (counted once per stack).
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    if not samples:
        return {"self": [], "total": []}
    return {
        "self": [(name, n / samples) for name, n in own.most_common(top)],
        "total": [(name, n / samples) for name, n in total.most_common(top)],
        "samples": [("samples", float(samples))],
    }


def _frame_name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "flowpods/" in path:
        path = "flowpods/" + path.rsplit("flowpods/", 1)[1]
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{name} ({path})" if path else name


def write_deltas(before: dict[Any, float], after: dict[Any, float]) -> dict[str, float]:
    """The API server's write requests between two reads of its metrics, by verb/group/resource/subresource;
    without the leases and the node's heartbeat, which run at their own pace whatever the load."""
    heartbeat = {"leases", "nodes"}
    return {
        "/".join(k): after[k] - before.get(k, 0)
        for k in sorted(after)
        if k[0] in ("POST", "PUT", "PATCH", "DELETE", "APPLY") and k[2] not in heartbeat and after[k] > before.get(k, 0)
    }


def tracing_alternations(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each DEFAULT run against the mean of the DISABLED runs just before and after it (wall time and CPU)."""
    out = []
    for before, on, after in zip(runs, runs[1:], runs[2:], strict=False):
        if on["traces"] == "DEFAULT" and before["traces"] == after["traces"] == "DISABLED":
            out.append({key: on[f"{key}_s"] * 2 / (before[f"{key}_s"] + after[f"{key}_s"]) for key in ("wall", "cpu")})
    return out


def per_unit_ms(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float]:
    """Each environment process's CPU between two `env_cpu` readings, in ms per unit (task run, pod)."""
    return {name: (after[name] - before[name]) / units * 1000 for name in after if name in before}


def cpu_spent(runs: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Per throughput run: all the CPU per task run, the operator's and the environment's (a CPU-bound run's
    rate is the machine's cores over it), and the node agent's part, which is the same work in every run:
    how fast the machine itself was."""
    return [
        (run["cpu_ms_per_task_run"] + sum(env.values()), env.get("nodeagent", 0.0))
        for run in runs
        if (env := run.get("env_cpu_ms_per_task_run"))
    ]
