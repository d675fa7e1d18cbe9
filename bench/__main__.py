"""`make bench`: evaluate the program under Pulumi mocks for generated fleets of 10, 100, 1,000 and
3,000 metal nodes in one cluster, 1,000 over 10 clusters, and a multi-region fleet of 1,000 VMs
over 10 libvirt hypervisors; print wall and CPU seconds, resources, provider calls, config
generations, boot ISOs, and each row's floor.

The floor (bench/floor.py) registers the same desired state under the same mocks with the same
types, names, inputs and options but no dependency edge at all: what the program would cost if
its graph cost nothing. It is measured in the same process right after the program, so the two
see the same machine. "x floor" is the program's CPU time over the floor's.

CPU seconds (this process) stand beside wall time because the machines are shared: a busy
neighbour stretches wall time, not CPU time. Every comparison below is in CPU seconds. The
program sets CPython's collection thresholds (`__main__.py`: it frees almost nothing until it
exits); the setting holds for the rest of the process, so every floor after the first program run
is measured under it too. Even so, the floor grows a little faster than the node count (more live
objects for each collection to walk: docs/design/issue-13-rollouts-research.md D.4), which is
why the 3,000/1,000 ratio is printed beside the floor's own.

Targets (issue #13): time grows linearly with nodes; a 1,000-node cluster within 2x of its floor;
3,000 nodes within 3.3x of 1,000 nodes' time; config generations stay at two per cluster and boot
ISOs at one per hypervisor. Numbers are for a reader to compare across changes, not asserted (a
timed test would be flaky on CI).

BENCH_MAX_NODES=N leaves out every row of more than N nodes: for development only, while a large
row takes minutes; the numbers the targets speak of come from a run of every row.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from bench.floor import run_floor
from talos_fleet import report
from talos_fleet.loader import load_pulumi_config
from talos_fleet.review import review
from talos_fleet.snapshot import snapshot
from tests.harness import Run, run_program

SIZES = (10, 100, 1000, 3000)
"""Single-cluster fleets; the multi-cluster and VM rows have 1,000 nodes."""
MAX_NODES_VARIABLE = "BENCH_MAX_NODES"


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


def timed(evaluate: Callable[[], Run]) -> tuple[Run, float, float]:
    """What `evaluate` recorded, its wall and CPU seconds. Collected first, so garbage left by
    an earlier row is not charged to this one."""
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    run = evaluate()
    return run, time.perf_counter() - start, time.process_time() - cpu_start


def measure(nodes: int, clusters: int, vms: bool = False) -> dict[str, Any]:
    config = fleet_config(nodes, clusters, vms)
    run, seconds, cpu = timed(lambda: run_program(config))
    generations = len(run.calls("talos:machine/getConfiguration:getConfiguration"))
    row: dict[str, Any] = {
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
    }
    # The program's records are garbage before the floor runs: its collections must not walk them.
    del run
    _, _, floor_cpu = timed(lambda: run_floor(config))
    row["floor cpu s"] = floor_cpu
    row["x floor"] = cpu / floor_cpu
    row["maxrss MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


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


def max_nodes() -> int | None:
    """BENCH_MAX_NODES, or None (every row) when unset or empty."""
    value = os.environ.get(MAX_NODES_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise SystemExit(f"make bench: {MAX_NODES_VARIABLE} must be a whole number of nodes, not {value!r}")
    return int(value)


def single(rows: list[dict[str, Any]], nodes: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["nodes"] == nodes and r["clusters"] == 1), None)


def main() -> None:
    limit = max_nodes()
    plans = [(100, 1, False), (1000, 1, False), (1000, 10, True)]
    wanted = [(n, 1, False) for n in SIZES] + [(1000, 10, False), (1000, 10, True)]
    skipped = [w for w in wanted if limit is not None and w[0] > limit]
    rows = [measure(*w) for w in wanted if w not in skipped]
    if rows:
        header = list(rows[0])
        print("  ".join(f"{h:>15}" for h in header))
        for row in rows:
            print("  ".join(f"{row[h]:>15.2f}" if isinstance(row[h], float) else f"{row[h]:>15}" for h in header))
    if skipped:
        left_out = ", ".join(f"{n} nodes in {c} cluster(s)" + (" on VMs" if v else "") for n, c, v in skipped)
        print(f"\n{MAX_NODES_VARIABLE}={limit} left out: {left_out}. Not a run the targets can be read from.")
    # From the middle row: the smallest fleet is dominated by fixed start-up cost.
    first, last, largest = single(rows, 100), single(rows, 1000), single(rows, 3000)
    print()
    if first and last:
        growth = (last["cpu seconds"] / first["cpu seconds"]) / (last["nodes"] / first["nodes"])
        print(f"CPU time growth relative to node growth, 100 -> 1,000 nodes: {growth:.2f} (1.0 = linear)")
    if last:
        print(f"1,000 nodes in one cluster: {last['x floor']:.2f}x its floor in CPU time (target: within 2)")
    if last and largest:
        ratio = largest["cpu seconds"] / last["cpu seconds"]
        floor_ratio = largest["floor cpu s"] / last["floor cpu s"]
        print(
            f"CPU time, 3,000 / 1,000 nodes in one cluster: {ratio:.2f} (target: within 3.3); "
            f"the floor's own: {floor_ratio:.2f} (more live objects for each collection to walk: not linear either)"
        )
    print("maxrss is the process peak so far (it only grows across rows).")
    for args in plans:
        if limit is None or args[0] <= limit:
            print(measure_plan(*args))


if __name__ == "__main__":
    main()
