"""`python -m tests.testenv up|down|status [--state-dir DIR]`: what `make testenv` runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cluster import REPO, EnvInfo, TestEnvError, healthy, start, status, stop


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.testenv")
    p.add_argument("command", choices=["up", "down", "status"])
    p.add_argument("--state-dir", default=str(REPO / ".testenv"))
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument(
        "--instant-message",
        default=None,
        help="node agent benchmark mode: complete pods at once with this termination message",
    )
    args = p.parse_args()
    state = Path(args.state_dir).resolve()
    if args.command == "up":
        t0 = time.monotonic()
        try:
            agent_args = ["--instant-message", args.instant_message] if args.instant_message is not None else []
            info = start(state, timeout=args.timeout, agent_args=agent_args)
        except TestEnvError as e:
            print(f"testenv: failed to start: {e}", file=sys.stderr)
            return 1
        print(f"testenv up in {time.monotonic() - t0:.1f}s (state: {state}, logs: {info.log_dir})")
        print(f"  kube-apiserver {info.api_url}   jaeger {info.jaeger_url}   OTLP {info.otlp_grpc_endpoint}")
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
