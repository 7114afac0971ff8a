"""Fixtures for end-to-end tests on the real test environment (tests/testenv).

One environment per session (or the running `make testenv` one, if healthy), a fresh
namespace per test, and the component log tails attached to every failing e2e test.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import testenv  # noqa: E402
from tests.e2e.harness import crds, operator, parent_example, parent_runs  # noqa: E402, F401 - fixtures for every e2e test

_ENV: testenv.EnvInfo | None = None


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e is an e2e test."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _ENV is not None and "e2e" in item.keywords:
        rep.sections.append(("testenv component logs (tails)", testenv.all_log_tails(_ENV, 25)))


def _reusable(state: Path) -> testenv.EnvInfo | None:
    """`make testenv`'s environment, for one pytest process only: under pytest-xdist (`make test`), the first
    worker's. Each other worker starts its own, so that a test that stops the API server has it to itself."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return None
    if os.environ.get("FLOWPODS_TESTENV_FRESH") or not (state / "state.json").exists():
        return None
    try:
        info = testenv.EnvInfo.load(state)
        info.enter()  # the real node's servers listen inside its sandbox
    except Exception:
        return None
    return info if testenv.healthy(info) else None


@pytest.fixture(scope="session")
def testenv_info(tmp_path_factory) -> testenv.EnvInfo:
    """The running environment: reuses `make testenv` (.testenv/) when healthy, else starts one for this
    session (each pytest-xdist worker's own) in a temp dir and stops it at the end. Missing binaries fail the
    test. With the real node, this process (and so every test and its children) joins the sandbox's network."""
    global _ENV
    missing = testenv.missing_binaries()
    if missing:
        pytest.fail(
            f"test environment binaries missing in {testenv.bin_dir()}: {', '.join(missing)}; run `make testenv-bins`",
            pytrace=False,
        )
    info = _reusable(REPO / ".testenv")
    owned = info is None
    if owned:
        # Short path: the state dir ends up in argv of the components.
        info = testenv.start(tmp_path_factory.mktemp("testenv"))
    _ENV = info
    old = os.environ.get("KUBECONFIG")
    # Safety net: anything that falls back to $KUBECONFIG gets this env's file, not ~/.kube/config.
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    try:
        yield info
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
        if owned:
            testenv.stop(info.dir)
        _ENV = None


@pytest.fixture(scope="session")
def kubeconfig(testenv_info) -> Path:
    """Admin kubeconfig path written by the environment."""
    return testenv_info.kubeconfig


@pytest.fixture(scope="session")
def api_client(testenv_info):
    """kubernetes.client.ApiClient for the admin user (system:masters)."""
    client = testenv.api_client(testenv_info.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def user_api_client(testenv_info):
    """ApiClient for `flowpods-test-user`, which has no RBAC bindings."""
    client = testenv.api_client(testenv_info.user_kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def custom_objects(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


@pytest.fixture(scope="session")
def jaeger(testenv_info) -> testenv.Jaeger:
    return testenv.Jaeger(testenv_info.jaeger_url)


@pytest.fixture
def kubectl(testenv_info):
    """kubectl(*args, input=None, check=True, user=False) -> CompletedProcess (env's kubeconfig)."""

    def run(*args, **kwargs):
        return testenv.kubectl(testenv_info, *args, **kwargs)

    return run


@pytest.fixture
def namespace(request, core_v1) -> str:
    """A fresh namespace for this test, deleted afterwards (without waiting)."""
    from kubernetes import client

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"flowpods.io/test": "true"}))
    )
    yield name
    with contextlib.suppress(Exception):  # the env may already be gone
        core_v1.delete_namespace(name)


@pytest.fixture
def apply_yaml(testenv_info, namespace):
    """apply_yaml(text, via="kubectl"|"python", namespace=<test ns>) applies server-side."""

    def apply(text: str, via: str = "kubectl", ns: str | None = None):
        ns = ns or namespace
        if via == "kubectl":
            return testenv.kubectl_apply(testenv_info, text, namespace=ns)
        client = testenv.api_client(testenv_info.kubeconfig)
        try:
            return testenv.apply_objects(client, text, namespace=ns)
        finally:
            client.close()

    return apply
