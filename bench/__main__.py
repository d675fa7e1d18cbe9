"""`make bench`: evaluate the program under Pulumi mocks for generated fleets of 10, 100 and 1,000
metal nodes, 1,000 over 10 clusters, and a multi-region fleet of 1,000 VMs over 10 libvirt
hypervisors; print wall and CPU seconds, resources, provider calls, config generations and boot
ISOs. CPU seconds (this process) stand beside wall time because the machines are shared: a busy
neighbour stretches wall time, not CPU time.

Targets: time grows linearly with nodes; config generations stay at two per cluster and boot
ISOs at one per hypervisor. Numbers are
for a reader to compare across changes, not asserted (a timed test would be flaky on CI).
"""

from __future__ import annotations

import gc
import json
import resource
import time
from typing import Any

from talos_fleet import report
from talos_fleet.loader import load_pulumi_config
from talos_fleet.review import review
from talos_fleet.snapshot import snapshot
from tests.harness import run_program

SIZES = (10, 100, 1000)


def fleet_config(nodes: int, clusters: int, vms: bool = False) -> dict[str, str]:
    """Engine config for `clusters` clusters sharing `nodes` nodes: 3 control planes each, VIP,
    labels on every node. Metal with static addressing; or (`vms`) a multi-region fleet: one
    libvirt hypervisor per cluster (region) with a managed network, roles sized once for all."""
    per_cluster = nodes // clusters
    tree: dict[str, Any] = {
        "defaults": {
            "talosVersion": "v1.13.10",
            "kubernetesVersion": "v1.36.3",
            "configContract": "v1.13",
            "image": {"extensions": ["siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent"]},
            "roles": {"worker": {"vm": {"cpus": 4, "memoryMib": 8192, "dataDisks": [{"name": "data", "sizeGib": 50}]}}},
        },
        "sources": {} if vms else {"metal": {"kind": "metal"}},
        "clusters": {},
    }
    for c in range(clusters):
        source = f"kvm-{c}" if vms else "metal"
        if vms:
            tree["sources"][source] = {
                "kind": "libvirt",
                "uri": f"qemu+ssh://admin@kvm-{c}.example.net/system",
                "network": {"managed": {"cidr": f"10.{c}.0.0/16", "gateway": f"10.{c}.0.1"}},
            }
        members: dict[str, Any] = {}
        for n in range(per_cluster):
            members[f"c{c}-n{n}"] = {
                "role": "controlplane" if n < 3 else "worker",
                "source": source,
                "address": f"10.{c}.{n // 250 + 1}.{n % 250 + 2}",
                "labels": {
                    "topology.kubernetes.io/region": f"region-{c}",
                    "topology.kubernetes.io/zone": f"zone-{n % 3}",
                },
            }
        network = {"cidr": f"10.{c}.0.0/16", "gateway": f"10.{c}.0.1"}
        network.update({"link": "net0"} if vms else {"link": "eno1", "addressing": "static"})
        tree["clusters"][f"cluster-{c}"] = {
            "endpoint": {"vip": f"10.{c}.255.254"},
            "network": network,
            "nodes": members,
        }
    return {f"talos-fleet:{key}": json.dumps(value) for key, value in tree.items()}


def measure(nodes: int, clusters: int, vms: bool = False) -> dict[str, Any]:
    config = fleet_config(nodes, clusters, vms)
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    run = run_program(config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    generations = len(run.calls("talos:machine/getConfiguration:getConfiguration"))
    return {
        "nodes": nodes,
        "clusters": clusters,
        "hypervisors": len(run.of_type("pulumi:providers:libvirt")),
        "boot ISOs": sum(1 for r in run.of_type("libvirt:index/volume:Volume") if r.inputs["name"].endswith(".iso")),
        "seconds": seconds,
        "cpu seconds": cpu,
        "ms/node": 1000 * seconds / nodes,
        "resources": len(run.registrations),
        "calls": len(run.invokes),
        "configs/cluster": generations / clusters,
        "maxrss MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure_plan(nodes: int, clusters: int, vms: bool) -> str:
    """`make plan` without git: both snapshots, the review of a Talos bump, the Markdown."""
    base_config = fleet_config(nodes, clusters, vms)
    head_config = {
        **base_config,
        "talos-fleet:defaults": base_config["talos-fleet:defaults"].replace("v1.13.10", "v1.13.11"),
    }
    start, cpu_start = time.perf_counter(), time.process_time()
    base, head = (snapshot(load_pulumi_config(c, [])) for c in (base_config, head_config))
    text = report.markdown(review("bench", base, head, base_ref="main"))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    where = f"{nodes} nodes in {clusters} cluster(s)" + (" on VMs" if vms else "")
    return f"make plan, {where}: {seconds:.2f} s ({cpu:.2f} s CPU), {len(text):,} characters of Markdown"


def main() -> None:
    rows = [measure(n, 1) for n in SIZES] + [measure(1000, 10), measure(1000, 10, vms=True)]
    header = list(rows[0])
    print("  ".join(f"{h:>15}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]:>15.2f}" if isinstance(row[h], float) else f"{row[h]:>15}" for h in header))
    # From the middle row: the smallest fleet is dominated by fixed start-up cost.
    first, last = rows[1], rows[len(SIZES) - 1]
    growth = (last["cpu seconds"] / first["cpu seconds"]) / (last["nodes"] / first["nodes"])
    print(
        f"\nCPU time growth relative to node growth, {first['nodes']} -> {last['nodes']} nodes: {growth:.2f} "
        "(1.0 = linear)"
    )
    print("maxrss is the process peak so far (it only grows across rows).")
    for args in ((100, 1, False), (1000, 1, False), (1000, 10, True)):
        print(measure_plan(*args))


if __name__ == "__main__":
    main()
