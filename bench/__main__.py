"""`make bench`: evaluate the program under Pulumi mocks for generated fleets of 10, 100 and 1,000
nodes and print seconds, resources, provider calls and config generations.

Targets: time grows linearly with nodes; config generations stay at two per cluster. Numbers are
for a reader to compare across changes, not asserted (a timed test would be flaky on CI).
"""

from __future__ import annotations

import gc
import json
import resource
import time
from typing import Any

from tests.harness import run_program

SIZES = (10, 100, 1000)


def fleet_config(nodes: int, clusters: int) -> dict[str, str]:
    """Engine config for `clusters` clusters sharing `nodes` nodes: 3 control planes each, VIP,
    static addressing, labels on every node."""
    per_cluster = nodes // clusters
    tree: dict[str, Any] = {
        "defaults": {
            "talosVersion": "v1.13.10",
            "kubernetesVersion": "v1.36.3",
            "image": {"extensions": ["siderolabs/iscsi-tools"]},
        },
        "sources": {"metal": {"kind": "metal"}},
        "clusters": {},
    }
    for c in range(clusters):
        members: dict[str, Any] = {}
        for n in range(per_cluster):
            members[f"c{c}-n{n}"] = {
                "role": "controlplane" if n < 3 else "worker",
                "source": "metal",
                "address": f"10.{c}.{n // 250}.{n % 250 + 2}",
                "labels": {"topology.kubernetes.io/zone": f"zone-{n % 3}"},
            }
        tree["clusters"][f"cluster-{c}"] = {
            "endpoint": {"vip": f"10.{c}.255.254"},
            "network": {"cidr": f"10.{c}.0.0/16", "gateway": f"10.{c}.0.1", "link": "eno1", "addressing": "static"},
            "nodes": members,
        }
    return {f"talos-fleet:{key}": json.dumps(value) for key, value in tree.items()}


def measure(nodes: int, clusters: int) -> dict[str, Any]:
    config = fleet_config(nodes, clusters)
    gc.collect()
    start = time.perf_counter()
    run = run_program(config)
    seconds = time.perf_counter() - start
    generations = len(run.calls("talos:machine/getConfiguration:getConfiguration"))
    return {
        "nodes": nodes,
        "clusters": clusters,
        "seconds": seconds,
        "ms/node": 1000 * seconds / nodes,
        "resources": len(run.registrations),
        "calls": len(run.invokes),
        "configs/cluster": generations / clusters,
        "maxrss MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    rows = [measure(n, 1) for n in SIZES] + [measure(1000, 10)]
    header = list(rows[0])
    print("  ".join(f"{h:>15}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]:>15.2f}" if isinstance(row[h], float) else f"{row[h]:>15}" for h in header))
    # From the middle row: the smallest fleet is dominated by fixed start-up cost.
    first, last = rows[1], rows[len(SIZES) - 1]
    growth = (last["seconds"] / first["seconds"]) / (last["nodes"] / first["nodes"])
    print(
        f"\ntime growth relative to node growth, {first['nodes']} -> {last['nodes']} nodes: {growth:.2f} (1.0 = linear)"
    )
    print("maxrss is the process peak so far (it only grows across rows).")


if __name__ == "__main__":
    main()
