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

ENDED = ("Succeeded", "Failed")


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

    def name(chain: int, index: int) -> str:
        return f"{args.prefix}-{chain}-{index:03d}"

    def create(chain: int, index: int) -> None:
        by_name[name(chain, index)] = chain
        core.create_namespaced_pod(ns, pod(name(chain, index), chain, index, template), _preload_content=False)

    def ended(pod_name: str) -> None:
        """The pod ended: the next of its chain, or the next chain (one after the other)."""
        chain = by_name.pop(pod_name)
        index = current[chain] + 1
        if index == args.length:
            del current[chain]
            if args.concurrent or chain + 1 == args.chains:
                return
            chain, index = chain + 1, 0
        current[chain] = index
        create(chain, index)

    def listed() -> str:
        """The pods as they are now: any of ours that ended while no watch was open counts as seen ending."""
        pods = json.loads(core.list_namespaced_pod(ns, _preload_content=False).data)
        for obj in pods["items"]:
            if obj["metadata"]["name"] in by_name and (obj.get("status") or {}).get("phase") in ENDED:
                ended(obj["metadata"]["name"])
        return str(pods["metadata"]["resourceVersion"])

    # all chains at once (the control plane's throughput floor) or one after the other (the latency floor)
    current = dict.fromkeys(range(args.chains), 0) if args.concurrent else {0: 0}
    by_name: dict[str, int] = {}
    rv = listed()
    for chain, index in list(current.items()):
        create(chain, index)
    while current:
        # the API server closes a watch whose reader falls behind ("unresponsive"), or at its timeout: open it
        # again from a fresh list, or the loop would end with chains unfinished
        response = core.list_namespaced_pod(
            ns, watch=True, resource_version=rv, timeout_seconds=900, _preload_content=False
        )
        for line in iter_resp_lines(response):
            if not line:
                continue
            event = json.loads(line)
            obj = event["object"]
            ours = event["type"] == "MODIFIED" and obj["metadata"]["name"] in by_name
            if ours and (obj.get("status") or {}).get("phase") in ENDED:
                ended(obj["metadata"]["name"])
                if not current:
                    break
        response.close()
        if current:
            rv = listed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
