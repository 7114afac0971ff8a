"""The floor: a minimal watch-and-create loop with the same Python kubernetes client as the operator.

`python -m bench.floor --kubeconfig K --namespace NS --chains C --length L --prefix P`: creates pod
P-<chain>-000; whenever the watch shows the current pod Succeeded, creates the next one, chain after
chain. Nothing else: no status write, no reconcile. It runs as its own process, like the operator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines


def pod(name: str, chain: int, index: int, template: dict | None = None) -> dict:
    """A bare pod; or `template` (a worker pod of the operator's) under this name, with the floor's labels."""
    if template is not None:
        body = json.loads(json.dumps(template))
        body["metadata"]["name"] = name
        body["metadata"]["labels"] = {
            **body["metadata"].get("labels", {}),
            **pod(name, chain, index)["metadata"]["labels"],
        }
        return body
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "bench.flowpods.io/floor": "true",
                "bench.flowpods.io/chain": str(chain),
                "bench.flowpods.io/index": str(index),
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [{"name": "task", "image": "flowpods-bench-floor", "command": ["true"]}],
        },
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--chains", type=int, required=True)
    p.add_argument("--length", type=int, required=True)
    p.add_argument("--prefix", default="floor")
    p.add_argument("--concurrent", action="store_true", help="run all chains at once (throughput floor)")
    p.add_argument("--template", help="a pod's JSON to create instead of the bare pod (renamed, relabelled)")
    args = p.parse_args()
    template = json.loads(Path(args.template).read_text()) if args.template else None
    core = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    ns = args.namespace
    rv = json.loads(core.list_namespaced_pod(ns, _preload_content=False).data)["metadata"]["resourceVersion"]
    response = core.list_namespaced_pod(
        ns, watch=True, resource_version=rv, timeout_seconds=900, _preload_content=False
    )

    def name(chain: int, index: int) -> str:
        return f"{args.prefix}-{chain}-{index:03d}"

    # all chains at once (the control plane's throughput floor) or one after the other (the latency floor)
    current = dict.fromkeys(range(args.chains), 0) if args.concurrent else {0: 0}
    for chain, index in list(current.items()):
        core.create_namespaced_pod(ns, pod(name(chain, index), chain, index, template), _preload_content=False)
    by_name = {name(c, i): c for c, i in current.items()}
    for line in iter_resp_lines(response):
        if not line:
            continue
        event = json.loads(line)
        obj = event["object"]
        chain = by_name.get(obj["metadata"]["name"])
        if event["type"] != "MODIFIED" or chain is None:
            continue
        if (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            continue
        del by_name[obj["metadata"]["name"]]
        index = current[chain] + 1
        if index == args.length:
            del current[chain]
            if args.concurrent or chain + 1 == args.chains:
                if not current:
                    break
                continue
            chain, index = chain + 1, 0
        current[chain] = index
        by_name[name(chain, index)] = chain
        core.create_namespaced_pod(ns, pod(name(chain, index), chain, index, template), _preload_content=False)
    response.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
