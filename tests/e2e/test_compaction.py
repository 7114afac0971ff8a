"""Compaction of a long execution's status on the real control plane: a ForEach of 300 values ends SUCCESS with
its ended task runs stored in the compact form and its changes folded, and Jaeger holds each span once."""

from __future__ import annotations

import json
import time
from collections import Counter

from flowpods.core.compaction import task_run_rows
from flowpods.core.status import COMPACT_KEY
from tests.e2e.harness import execution_yaml, settle, wait_for_state
from tests.e2e.test_operator import flow_yaml

VALUES = 300
EVERY = 30  # one value in 30 runs a pod: the rest are executor-side task runs, so the test stays short


def test_a_foreach_of_300_values_is_compacted_and_each_span_reaches_jaeger_once(
    operator, apply_yaml, custom_objects, jaeger, namespace
):
    apply_yaml(
        flow_yaml(
            "many",
            f"""
            id: many
            namespace: company.team
            tasks:
              - id: each
                type: io.kestra.plugin.core.flow.ForEach
                values: "{{{{ range(0, {VALUES - 1}) }}}}"
                concurrencyLimit: 20
                tasks:
                  - id: pick
                    type: io.kestra.plugin.core.flow.If
                    condition: "{{{{ taskrun.value | number % {EVERY} == 0 }}}}"
                    then:
                      - id: work
                        type: io.kestra.plugin.core.log.Log
                        message: "value {{{{ parent.taskrun.value }}}}"
              - id: after
                type: io.kestra.plugin.core.log.Log
                message: done
            """,
        )
    )
    started = time.monotonic()
    apply_yaml(execution_yaml("many-1", "many"))
    body = wait_for_state(custom_objects, namespace, "many-1", timeout=300, operator=operator)
    took = time.monotonic() - started
    status = body["status"]
    assert status["state"] == "SUCCESS", status.get("message")

    rows = task_run_rows(status)
    pods = VALUES // EVERY + 1
    assert Counter(row["taskId"] for row in rows) == {"each": 1, "pick": VALUES, "work": pods - 1, "after": 1}
    assert all(row["state"] == "SUCCESS" for row in rows)
    groups = [entry for entry in status["taskRuns"] if COMPACT_KEY in entry]
    # those that ended in the last changes stay in full: their spans were exported after the last commit
    assert groups and status["folded"]["taskRuns"] >= VALUES // 2, "the ended task runs were compacted"
    assert status["folded"]["changes"] > 0, "exported changes were folded"
    changes = status["folded"]["lastChange"] if not status["changes"] else status["changes"][-1]["n"]
    size = len(json.dumps(status, separators=(",", ":")))

    # RUN, the ForEach's and each If's EXECUTOR span, TASKRUN and WORKER per pod, one EXECUTOR per change
    expected = 1 + 1 + VALUES + 2 * pods + changes
    jaeger.wait_for_trace(status["traceId"], min_spans=expected, timeout=60)
    settle(2.0)  # anything sent twice would have arrived by now
    stored = jaeger._get(f"/api/traces/{status['traceId']}", raw="true")["data"][0]["spans"]
    copies = Counter(span["spanID"] for span in stored)
    assert len(copies) == expected and set(copies.values()) == {1}, sorted(
        (span["operationName"], copies[span["spanID"]]) for span in stored if copies[span["spanID"]] > 1
    )
    compacted = status["folded"]["taskRuns"]
    print(f"\n{VALUES}-value ForEach: {took:.1f}s to SUCCESS, {changes} changes, {len(copies)} spans each stored once; "
          f"closing status {size} bytes, {compacted} task runs compacted in {len(groups)} groups")  # fmt: skip
