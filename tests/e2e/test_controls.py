"""Execution controls on the real control plane: a Pause resumed through the API and through the annotation,
a failed execution restarted (through the CLI) from its failed task in the same trace, labels, a replay, and
a 403."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import httpx

from tests import testenv
from tests.e2e.harness import FLOWPODS, execution_yaml, list_pods, tags, wait_for_spans, wait_for_state
from tests.e2e.test_api import api as api  # the fixture: an operator serving the API
from tests.e2e.test_api import flow_yaml

APPROVAL = flow_yaml("approval", """
    id: approval
    namespace: company.team
    tasks:
      - id: wait
        type: io.kestra.plugin.core.flow.Pause
        onResume:
          - id: approved
            type: BOOLEAN
      - id: answer
        type: io.kestra.plugin.core.debug.Return
        format: "approved={{ outputs.wait.onResume.approved }}"
""")  # fmt: skip

GATED = flow_yaml("gated", """
    id: gated
    namespace: company.team
    tasks:
      - id: first
        type: io.kestra.plugin.core.log.Log
        message: once
      - id: gate
        type: io.kestra.plugin.core.execution.Fail
        condition: "{{ (labels.ready ?? 'no') != 'yes' }}"
        errorMessage: not ready yet
""")  # fmt: skip


def answer_of(body: dict) -> str:
    (answer,) = [tr for tr in body["status"]["taskRuns"] if tr["taskId"] == "answer"]
    return str(answer["outputs"]["value"])


def test_a_pause_is_resumed_through_the_api_and_through_the_annotation(api, apply_yaml, testenv_info, namespace,
                                                                        custom_objects, kubectl):  # fmt: skip
    apply_yaml(APPROVAL)
    apply_yaml(execution_yaml("by-kubectl", "approval"))
    admin = {"Authorization": f"Bearer {testenv_info.admin_token}"}
    with httpx.Client(base_url=api.api_url, timeout=60, headers=admin) as client:
        started = client.post(f"/api/v1/executions/{namespace}/approval").json()
        base = started["links"]["self"]
        wait_for_state(custom_objects, namespace, started["name"], {"PAUSED"}, operator=api)
        bad = client.post(base + "/resume", json={"inputs": {"approved": "perhaps"}})
        assert bad.status_code == 400 and "input 'approved'" in bad.json()["error"]["message"]
        user = {"Authorization": f"Bearer {testenv_info.user_token}"}
        denied = client.post(base + "/resume", json={}, headers=user)
        assert denied.status_code == 403 and "may not update executions" in denied.json()["error"]["message"]
        resumed = client.post(base + "/resume", json={"inputs": {"approved": True}})
        assert resumed.status_code == 202, resumed.text
        done = wait_for_state(custom_objects, namespace, started["name"], operator=api)
        assert done["status"]["state"] == "SUCCESS" and answer_of(done) == "approved=true"
        again = client.post(base + "/resume", json={"inputs": {"approved": True}})
        assert again.status_code == 409 and "SUCCESS, not PAUSED" in again.json()["error"]["message"]

    wait_for_state(custom_objects, namespace, "by-kubectl", {"PAUSED"}, operator=api)
    value = json.dumps({"inputs": {"approved": "false"}})
    kubectl("annotate", "execution", "by-kubectl", f"flowpods.io/resume={value}", "-n", namespace)
    done = wait_for_state(custom_objects, namespace, "by-kubectl", operator=api)
    assert done["status"]["state"] == "SUCCESS" and answer_of(done) == "approved=false"
    assert [c["control"] for c in done["status"]["controls"]] == ["resume"]
    kubectl("annotate", "--overwrite", "execution", "by-kubectl", f"flowpods.io/resume={value}", "-n", namespace)
    kubectl("annotate", "--overwrite", "execution", "by-kubectl", "flowpods.io/resume=late", "-n", namespace)
    late = testenv.wait_for(
        lambda: (body := wait_for_state(custom_objects, namespace, "by-kubectl"))["status"]["controls"][1:] and body,
        60, "the operator to record the late resume",
    )  # fmt: skip
    assert [(c["value"], c["done"]) for c in late["status"]["controls"]] == [(value, True), ("late", False)]
    assert "not PAUSED" in late["status"]["controls"][1]["result"]


def test_a_failed_execution_restarts_from_its_failed_task_in_the_same_trace(api, apply_yaml, testenv_info,
                                                                            namespace, custom_objects, core_v1,
                                                                            jaeger):  # fmt: skip
    apply_yaml(GATED)
    env = {"PATH": "/usr/bin:/bin", "FLOWPODS_TOKEN": testenv_info.admin_token}
    admin = {"Authorization": f"Bearer {testenv_info.admin_token}"}

    def cli(command: str, *extra: str, token: str = testenv_info.admin_token) -> subprocess.CompletedProcess:
        argv = [FLOWPODS, command, namespace, name, *extra, "--server", api.api_url]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**env, "FLOWPODS_TOKEN": token})

    with httpx.Client(base_url=api.api_url, timeout=60, headers=admin) as client:
        name = client.post(f"/api/v1/executions/{namespace}/gated").json()["name"]
        failed = wait_for_state(custom_objects, namespace, name, operator=api)
        assert failed["status"]["state"] == "FAILED", failed["status"]
        refused = cli("restart", token=testenv_info.user_token)
        assert refused.returncode == 2 and "may not update executions.flowpods.io" in refused.stderr
        labelled = cli("labels", "ready=yes")  # the gate reads labels.ready at its next attempt
        assert labelled.returncode == 0, labelled.stderr
        restarted = cli("restart")
        assert restarted.returncode == 0 and "restart requested" in restarted.stdout, restarted.stderr
        done = wait_for_state(custom_objects, namespace, name, {"SUCCESS"}, operator=api)
        twice = client.post(f"/api/v1/executions/{namespace}/{name}/restart")
        assert twice.status_code == 409 and "only an execution that ended" in twice.json()["error"]["message"]
        (gate_run,) = [tr["id"] for tr in done["status"]["taskRuns"] if tr["taskId"] == "gate"]
        replay = client.post(f"/api/v1/executions/{namespace}/{name}/replay?taskRunId={gate_run}&wait=true")
        assert replay.status_code == 201, replay.text
        replayed = wait_for_state(custom_objects, namespace, replay.json()["name"], {"SUCCESS"}, operator=api)
        copied = {tr["taskId"]: len(tr["attempts"]) for tr in replayed["status"]["taskRuns"]}
        assert copied == {"first": 1, "gate": 1}  # first copied from the original, gate run again
        assert len(list_pods(core_v1, namespace, replay.json()["name"])) == 1  # only gate ran
        assert replayed["metadata"]["annotations"]["flowpods.io/replay-of"] == name

    status = done["status"]
    states = [h["state"] for h in status["history"]]
    assert states == ["CREATED", "RUNNING", "FAILED", "RESTARTED", "RUNNING", "SUCCESS"]
    attempts = {tr["taskId"]: [(a["number"], a["state"]) for a in tr["attempts"]] for tr in status["taskRuns"]}
    assert attempts == {"first": [(1, "SUCCESS")], "gate": [(1, "FAILED"), (2, "SUCCESS")]}
    pods = sorted(pod.metadata.name.rsplit("-", 2)[-1] for pod in list_pods(core_v1, namespace, name))
    assert len(pods) == 3, pods  # one pod per attempt: first once, gate twice
    assert done["metadata"]["labels"]["label.flowpods.io/ready"] == "yes"

    trace = wait_for_spans(jaeger, status["traceId"], {"RUN gated": 2, "TASKRUN gate": 2, "TASKRUN first": 1})
    by_id = Counter(span["spanID"] for span in trace["spans"])
    assert set(by_id.values()) == {1}
    runs = sorted((tags(s).get("flowpods.restart", 0), s) for s in trace["spans"] if s["operationName"] == "RUN gated")
    assert [(n, tags(s)["flowpods.state"]) for n, s in runs] == [(0, "FAILED"), (1, "SUCCESS")]
    causes = [tags(s).get("flowpods.cause") for s in trace["spans"] if s["operationName"].startswith("EXECUTOR - ")]
    assert "restart" in causes
