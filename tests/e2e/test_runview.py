"""The run view (web page and CLI) on the real control plane, API server tokens, Jaeger and a real browser.

Debian's chromium, headless, driven by chromium-driver through Selenium: log in with a token, the list,
an execution of examples/parent.yaml (bars against the stored status's times, the critical path, the
trace link whose trace Jaeger has, the task's log from its pod, a comparison with a second run), a 403
for a user without rights and a read-only view for one who may only get and list, and an execution of
2,000 task runs (its open time printed, not asserted). The CLI's list, get and logs on the same runs.
Screenshots go to .testenv/run-view/; `FLOWPODS_RUNVIEW_SHOTS=docs/run-view` makes them the docs' pictures
(a test run leaves the repository as it found it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from flowpods.cli.main import main
from tests import testenv
from tests.e2e.harness import GROUP, REPO, VERSION

SHOTS = REPO / os.environ.get("FLOWPODS_RUNVIEW_SHOTS", ".testenv/run-view")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"]  # fmt: skip
BULK_TASKS = 2000


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def site(parent_example, core_v1) -> Iterator[dict[str, Any]]:
    """The namespace of the shared runs of examples/parent.yaml (harness.parent_example: its operator serves the
    API; `parent_runs` waits for the runs), and a second namespace that no operator watches, for the 2,000-task
    execution written directly."""
    bulk = f"runview-bulk-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=bulk, labels={"flowpods.io/test": "true"})))
    try:
        yield {"namespace": parent_example["namespace"], "bulk": bulk, "api": parent_example["api"]}
    finally:
        with contextlib.suppress(Exception):
            core_v1.delete_namespace(bulk)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = tempfile.mkdtemp(prefix="flowpods-chromium-")
    for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, check: Any, timeout: float = 30, what: str = "the page") -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: check(d))
    except Exception:
        errors = [driver.find_element(By.ID, i).get_attribute("textContent") for i in
                  ("login-error", "list-error", "exec-error")]  # fmt: skip
        console = driver.get_log("browser")
        raise AssertionError(
            f"timed out waiting for {what}; errors on the page: {errors}; console: {console}"
        ) from None


def goto(driver: WebDriver, url: str | None = None) -> None:
    """Load (or reload) the page; on a loaded machine chromium's renderer may miss chromedriver's 10 s: try again."""
    for attempt in range(3):
        try:
            driver.get(url) if url else driver.refresh()
            return
        except TimeoutException:
            if attempt == 2:
                raise


def log_in(driver: WebDriver, url: str, namespace: str, token: str) -> None:
    goto(driver, f"{url}/ui/")
    driver.execute_script("sessionStorage.clear(); location.hash = '#/';")
    goto(driver)
    wait(driver, lambda d: d.find_element(By.ID, "login-namespace").is_displayed(), what="the login form")
    field = driver.find_element(By.ID, "login-namespace")
    field.clear()
    field.send_keys(namespace)
    driver.find_element(By.ID, "login-token").send_keys(token)
    driver.find_element(By.ID, "login-submit").click()


def open_execution(driver: WebDriver, name: str) -> float:
    """Click the execution in the list; seconds until its timeline is drawn."""
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"a[data-name='{name}']"), what=f"{name} listed")
    started = time.perf_counter()
    click(driver, f"a[data-name='{name}']")
    wait(driver, lambda d: d.find_element(By.ID, "timeline").get_attribute("data-ready") == name, 120,
         f"the timeline of {name} (at {driver.current_url.split('#')[-1]})")  # fmt: skip
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline .row"), what="rows")
    return time.perf_counter() - started


def rows(driver: WebDriver) -> list[dict[str, Any]]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#timeline .row')].map(r => ({
          key: r.dataset.key, name: r.querySelector('.name').textContent, cls: r.className,
          segs: [...r.querySelectorAll('.seg')].map(s => ({phase: s.dataset.phase, start: s.dataset.start,
            end: s.dataset.end, left: parseFloat(s.style.left), width: parseFloat(s.style.width)}))}));
    """)


def click(driver: WebDriver, selector: str) -> None:
    """A click in the page itself: the timeline redraws while an execution runs, so a found element may go stale."""
    wait(driver, lambda d: d.execute_script("const e = document.querySelector(arguments[0]); if (e) e.click(); "
                                            "return !!e;", selector), what=selector)  # fmt: skip


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))


def bulk_status(created: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """A realistic stored status of a ForEach over 2,000 values, written as the operator writes one: a Log task
    per value with real-looking attempt times (some retried, the last ones still queued or running)."""
    flow = {"id": "bulk", "namespace": "company.team", "tasks": [
        {"id": "each", "type": "io.kestra.plugin.core.flow.ForEach", "values": [str(i) for i in range(BULK_TASKS)],
         "concurrencyLimit": 100, "tasks": [{"id": "work", "type": "io.kestra.plugin.core.log.Log", "message": "x"}]},
        {"id": "report", "type": "io.kestra.plugin.core.log.Log", "message": "done"}]}  # fmt: skip
    start = created  # the whole run fits in its first 10 s, so by the time the page opens it is in the past

    def t(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    runs: list[dict[str, Any]] = [{"id": "each0000000000000", "taskId": "each", "state": "RUNNING",
                                   "history": [{"state": "CREATED", "at": t(1)}, {"state": "RUNNING", "at": t(1)}],
                                   "iterations": []}]  # fmt: skip
    for i in range(BULK_TASKS):
        begin = 0.2 + (i // 100) * 0.45 + (i % 7) * 0.03
        took = 0.3 + ((i * 37) % 50) / 100
        attempts, retried = [], i % 97 == 0
        running = i >= BULK_TASKS - 20
        for n in (1, 2) if retried else (1,):
            at = begin + (n - 1) * (took + 0.05)
            last = n == (2 if retried else 1)
            attempt = {"number": n, "createdAt": t(at), "scheduledAt": t(at + 0.02), "startedAt": t(at + 0.1),
                       "pod": f"bulk-1-w{i:04d}-{n}", "node": "node-1"}  # fmt: skip
            attempt["state"] = "SUCCESS" if last else "FAILED"
            if running and last:
                attempt.update(state="RUNNING", endedAt=None)
            else:
                attempt["endedAt"] = t(at + took)
            attempts.append(attempt)
        end = None if running else begin + (2 if retried else 1) * took + (0.05 if retried else 0)
        history = [{"state": "CREATED", "at": t(begin)}, {"state": "RUNNING", "at": t(begin + 0.1)}]
        if end is not None:
            history.append({"state": "SUCCESS", "at": t(end)})
        state = "RUNNING" if running else "SUCCESS"
        runs.append({"id": f"w{i:015d}", "taskId": "work", "parentId": "each0000000000000", "value": str(i),
                     "state": state, "history": history, "attempts": attempts})  # fmt: skip
    status = {"state": "RUNNING", "history": [{"state": "CREATED", "at": t(0)}, {"state": "RUNNING", "at": t(0.5)}],
              "taskRuns": runs, "flow": flow, "startDate": t(0), "changes": []}  # fmt: skip
    return flow, status


# First: it needs no run of examples/parent.yaml, so it goes on while they run.
def test_a_2000_task_execution_opens_windowed_and_rights_decide_what_is_shown(site, browser, testenv_info,
                                                                                  custom_objects, kubectl):  # fmt: skip
    """The 2,000-task execution is written directly (running 2,000 pods would take too long here): an Execution
    is created, then a realistic status (a ForEach's 2,000 task runs with their attempts' times) is put through
    the status subresource, in a namespace no operator watches, so it stays as written."""
    api, bulk = site["api"], site["bulk"]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Execution", "metadata": {"name": "bulk-1", "namespace": bulk},
            "spec": {"flowRef": {"name": "bulk"}}}  # fmt: skip
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, bulk, "executions", body)
    _, status = bulk_status(parse(created["metadata"]["creationTimestamp"]))
    created["status"] = status
    size = len(json.dumps(status))
    custom_objects.replace_namespaced_custom_object_status(GROUP, VERSION, bulk, "executions", "bulk-1", created)
    print(f"2,000-task execution: stored status {size / 1024:.0f} KiB")

    # a user without rights: 403, said on the page
    log_in(browser, api.api_url, bulk, testenv_info.user_token)
    wait(browser, lambda d: "may not list" in d.find_element(By.ID, "list-error").text, what="the 403")
    refused = httpx.get(f"{api.api_url}/api/v1/executions/{bulk}/bulk-1/timeline", timeout=30,
                        headers={"Authorization": f"Bearer {testenv_info.user_token}"})  # fmt: skip
    assert refused.status_code == 403 and "may not get" in refused.json()["error"]["message"]

    # the same user, once RBAC lets them get and list: read-only (no kill button on a running execution)
    role = f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: viewer}}
rules: [{{apiGroups: [{GROUP}], resources: [executions], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: viewer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}}
subjects: [{{kind: User, name: {testenv.TEST_USER}, apiGroup: rbac.authorization.k8s.io}}]
"""
    testenv.kubectl_apply(testenv_info, role, namespace=bulk)
    testenv.wait_for(lambda: httpx.get(f"{api.api_url}/api/v1/executions/{bulk}", timeout=30, headers={
        "Authorization": f"Bearer {testenv_info.user_token}"}).status_code == 200, 30, "the Role to apply")  # fmt: skip
    log_in(browser, api.api_url, bulk, testenv_info.user_token)
    took = open_execution(browser, "bulk-1")
    drawn = rows(browser)
    in_page = browser.find_element(By.ID, "timeline").get_attribute("data-render-ms")
    print(
        f"2,000-task execution: {BULK_TASKS + 2} rows, page open (click to drawn timeline) {took:.2f} s, "
        f"timeline request and render in the page {in_page} ms, {len(drawn)} rows in the DOM"
    )
    assert 0 < len(drawn) < 100, "only the rows in view are rendered"
    assert drawn[0]["name"] == "each" and drawn[1]["name"] == "work [0] \u00d72", "value 0 was retried once"
    assert (
        browser.find_elements(By.ID, "kill") == [] and "read-only" in browser.find_element(By.ID, "exec-actions").text
    )
    assert browser.find_element(By.ID, "exec-state").text == "RUNNING"
    browser.execute_script("const t = document.getElementById('timeline'); t.scrollTop = t.scrollHeight;")
    wait(browser, lambda d: any(r["name"] == "report" for r in rows(d)), what="the last rows after scrolling")
    last = rows(browser)
    assert any(r["name"] == "work [1999]" for r in last) and len(last) < 100
    assert next(r for r in last if r["name"] == "report")["segs"] == [], "a task not run yet has no bar"
    click(browser, "#timeline .row[data-key='bulk-1/w000000000001999']")
    wait(browser, lambda d: d.find_element(By.ID, "detail-title").text.startswith("work [1999]"), what="the detail")
    click(browser, "#detail .show-logs")
    wait(browser, lambda d: "the pod is gone" in d.find_element(By.CSS_SELECTOR, "#detail pre.logs").text,
         what="the log's absence said plainly")  # fmt: skip
    shot(browser, "execution-2000.png")

    # the admin may create: the kill button is there
    log_in(browser, api.api_url, bulk, testenv_info.admin_token)
    open_execution(browser, "bulk-1")
    assert browser.find_element(By.ID, "kill").is_displayed()


def test_list_and_the_parent_execution_in_a_browser(site, parent_runs, browser, testenv_info, jaeger):
    api, namespace = site["api"], site["namespace"]
    page = httpx.get(f"{api.api_url}/ui/", timeout=30)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"

    log_in(browser, api.api_url, namespace, testenv_info.admin_token)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a[data-name='parent-2']"), what="the list")
    listed = [e.get_attribute("data-name") for e in browser.find_elements(By.CSS_SELECTOR, "#executions tbody tr")]
    children = [n for n in listed if n.startswith("hello-world-")]
    assert {"parent-1", "parent-2"} <= set(listed) and len(children) == 2, listed
    Select(browser.find_element(By.ID, "f-sort")).select_by_value("duration-desc")

    def durations(d: WebDriver) -> list[float]:
        return d.execute_script("return [...document.querySelectorAll('#executions td[data-seconds]')]"
                                ".map(e => parseFloat(e.dataset.seconds))")  # fmt: skip

    wait(browser, lambda d: (s := durations(d)) == sorted(s, reverse=True) and len(s) == 4, what="sorted by duration")
    browser.find_element(By.ID, "f-flow").send_keys("parent")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executions tbody tr")) == 2, what="the filter")
    shot(browser, "list.png")
    assert testenv_info.admin_token not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('flowpods.token')") == testenv_info.admin_token
    assert browser.execute_script("return localStorage.length") == 0

    open_execution(browser, "parent-1")
    status = parent_runs[0]["status"]
    child_name = next(t["child"] for t in status["taskRuns"] if t["taskId"] == "subflow")
    drawn = rows(browser)
    assert [r["name"] for r in drawn] == ["hello", "subflow", f"▸ subflow {child_name}", "hello"]

    # the bars are the stored times: the hello attempt's phases start and end where its status says
    created = parse(parent_runs[0]["metadata"]["creationTimestamp"])
    end = parse(status["history"][-1]["at"])
    (attempt,) = next(t for t in status["taskRuns"] if t["taskId"] == "hello")["attempts"]
    segs = drawn[0]["segs"]
    assert [s["phase"] for s in segs] == ["queued", "starting", "working"], segs
    marks = [attempt["createdAt"], attempt["scheduledAt"], attempt["startedAt"]]
    assert [parse(s["start"]) for s in segs] == [parse(m) for m in marks]
    assert parse(segs[-1]["end"]) == parse(attempt["endedAt"])

    # as the page computes them: JavaScript's Date keeps milliseconds (the stored microseconds are dropped),
    # and the style's percentage is read back with 6 significant digits
    def js_ms(moment: datetime) -> int:
        return int(moment.timestamp()) * 1000 + moment.microsecond // 1000

    total_ms = max(js_ms(end) - js_ms(created), 1)
    for seg in segs:
        expected = (js_ms(parse(seg["start"])) - js_ms(created)) / total_ms * 100
        assert abs(seg["left"] - expected) < 0.001, (seg, expected)
    # one sequence through the subflow: every row is on the critical path
    assert all("critical" in r["cls"] for r in drawn), [r["cls"] for r in drawn]

    link = browser.find_element(By.ID, "jaeger-link").get_attribute("href")
    assert link == f"{testenv_info.jaeger_url}/trace/{status['traceId']}"
    trace = jaeger.wait_for_trace(status["traceId"], timeout=60)
    assert any(s["operationName"] == "RUN parent" for s in trace["spans"])

    click(browser, "#timeline .row[data-index='0']")
    wait(browser, lambda d: d.find_element(By.ID, "detail-title").text.startswith("hello"), what="the detail")
    click(browser, "#detail .show-logs")
    wait(browser, lambda d: "I'm your father" in d.find_element(By.CSS_SELECTOR, "#detail pre.logs").text, 30,
         "the task's log from its pod")  # fmt: skip
    assert browser.find_elements(By.ID, "kill") == [], "no kill button on an execution that ended"
    shot(browser, "execution.png")

    Select(wait(browser, lambda d: d.find_element(By.ID, "compare-with"), what="compare")).select_by_value("parent-2")
    browser.find_element(By.ID, "compare-go").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")) >= 2, what="comparison")
    compared = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")]
    assert compared[0].startswith("hello") and compared[1].startswith("subflow"), compared


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The `flowpods` command in this process (the same code as the installed one, without its start-up cost
    on a loaded machine), on the environment's kubeconfig (KUBECONFIG, set for the session)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_list_get_and_logs(site, parent_runs, testenv_info, capsys):
    namespace = site["namespace"]
    assert os.environ["KUBECONFIG"] == str(testenv_info.kubeconfig)
    code, out, err = cli(capsys, "list", "-n", namespace, "--flow", "parent")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "FLOW", "STATE", "CREATED", "DURATION"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["parent-1", "parent-2"]
    assert all(" SUCCESS " in line for line in lines[1:])

    code, out, err = cli(capsys, "get", "parent-1", "-n", namespace)
    assert code == 0, err
    with capsys.disabled():
        print(f"\n$ flowpods get parent-1 -n {namespace}\n{out}")
    status = parent_runs[0]["status"]
    assert f"trace id: {status['traceId']}" in out
    for name in ("RUN parent", "TASKRUN hello", "EXECUTOR - io.kestra.plugin.core.flow.Subflow", "RUN hello-world"):
        assert name in out, out
    assert out.count("◀ slowest") == 1
    critical = [line for line in out.splitlines() if "◆ critical path" in line]
    assert len(critical) == 3 and any("Subflow" in line for line in critical), out  # hello, the subflow, its hello

    code, out, err = cli(capsys, "logs", "parent-1", "hello", "-n", namespace)
    assert code == 0, err
    assert "== hello attempt 1 (SUCCESS) pod parent-1-" in out and "I'm your father" in out
    code, out, err = cli(capsys, "logs", "parent-1", "nope", "-n", namespace)
    assert code == 1 and "no run of task 'nope'" in err
    code, out, err = cli(capsys, "get", "nope", "-n", namespace)
    assert code == 1 and "no execution 'nope'" in err
