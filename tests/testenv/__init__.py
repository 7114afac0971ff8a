"""flowpods test environment: a real control plane, the test node agent and Jaeger on loopback.

See docs/testenv.md. `python -m tests.testenv up|down|status` is what `make testenv` runs.
"""

from .cluster import (
    ADMIN_USER,
    NODE_NAME,
    TEST_USER,
    EnvInfo,
    TestEnvError,
    all_log_tails,
    bin_dir,
    healthy,
    missing_binaries,
    require_binaries,
    start,
    start_component,
    status,
    stop,
    stop_component,
)
from .jaeger import Jaeger, SpanNode, TraceNotReady, assert_tree, root, span_names, tree
from .kube import (
    api_client,
    apply_objects,
    kubectl,
    kubectl_apply,
    pod_log,
    pod_log_path,
    wait_for,
    wait_for_pod_phase,
)

__all__ = [
    "ADMIN_USER",
    "NODE_NAME",
    "TEST_USER",
    "EnvInfo",
    "Jaeger",
    "SpanNode",
    "TestEnvError",
    "TraceNotReady",
    "all_log_tails",
    "api_client",
    "apply_objects",
    "assert_tree",
    "bin_dir",
    "healthy",
    "kubectl",
    "kubectl_apply",
    "missing_binaries",
    "pod_log",
    "pod_log_path",
    "require_binaries",
    "root",
    "span_names",
    "start",
    "start_component",
    "status",
    "stop",
    "stop_component",
    "tree",
    "wait_for",
    "wait_for_pod_phase",
]
