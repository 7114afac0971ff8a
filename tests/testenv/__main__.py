"""`python -m tests.testenv up|down|status|images|shell [--state-dir DIR]`: what `make testenv` runs.

`images` (= `make images`) installs the real node's Debian packages when missing and builds its images;
`shell` opens a shell inside a running real-node environment's network (where its servers listen).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import images
from .cluster import REPO, EnvInfo, TestEnvError, bin_dir, healthy, node_kind, start, status, stop
from .node import ensure_packages, node_bin_dir


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.testenv")
    p.add_argument("command", choices=["up", "down", "status", "images", "shell"])
    p.add_argument("--state-dir", default=str(REPO / ".testenv"))
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument(
        "--instant-message",
        default=None,
        help="node agent benchmark mode: complete pods at once with this termination message",
    )
    args = p.parse_args()
    state = Path(args.state_dir).resolve()
    if args.command == "images":
        if node_kind() == "agent":
            print("testenv: FLOWPODS_TESTENV_NODE=agent: no images needed")
            return 0
        t0 = time.monotonic()
        ensure_packages()
        archives = images.build_all(node_bin_dir(), bin_dir())
        print(f"testenv images ready in {time.monotonic() - t0:.1f}s: " + " ".join(str(a) for a in archives))
        return 0
    if args.command == "shell":
        info = EnvInfo.load(state)
        os.execvp("nsenter", ["nsenter", "-t", str(info.pids["sandbox"]), "-n", "--", "bash"])
    if args.command == "up":
        t0 = time.monotonic()
        try:
            agent_args = ["--instant-message", args.instant_message] if args.instant_message is not None else []
            info = start(state, timeout=args.timeout, agent_args=agent_args)
        except TestEnvError as e:
            print(f"testenv: failed to start: {e}", file=sys.stderr)
            return 1
        print(f"testenv up in {time.monotonic() - t0:.1f}s (state: {state}, logs: {info.log_dir})")
        print(
            f"  kube-apiserver {info.api_url}   jaeger {info.jaeger_url}   "
            f"OTLP {info.otlp_http_endpoint} (gRPC {info.otlp_grpc_endpoint})"
        )
        if info.real_node:
            print(f"use it:  python -m tests.testenv shell  (its network), then: source {state / 'env'}")
        else:
            print(f"use it:  source {state / 'env'}  &&  kubectl get nodes")
        print("  (env puts the built kubectl first on PATH and sets KUBECONFIG, FLOWPODS_JAEGER_URL,")
        print("   OTEL_EXPORTER_OTLP_ENDPOINT, FLOWPODS_ADMIN_TOKEN, FLOWPODS_TEST_USER_TOKEN)")
        print("stop it: make testenv-down")
        return 0
    if args.command == "down":
        stopped = stop(state) if state.exists() else []
        print(f"testenv down: stopped {', '.join(stopped) or 'nothing (not running)'}")
        return 0
    st = status(state) if state.exists() else {}
    if not st:
        print("testenv: not running")
        return 1
    for name, alive in st.items():
        print(f"  {name:26} {'running' if alive else 'DEAD'}")
    ok = healthy(EnvInfo.load(state))
    print("healthy" if ok else "NOT healthy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
