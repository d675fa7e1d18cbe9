"""The order rollouts walk a cluster's nodes. Standard library only: the day-2 steps
(talos_fleet.day2, run by pulumi-command with whatever `python3` is on PATH) compute the order
from their plain environment with the same function the plan and `make plan` use.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTROL_PLANE = "controlplane"


def waves(nodes: Iterable[tuple[str, str]], worker_batch_size: int) -> tuple[tuple[str, ...], ...]:
    """`(hostname, role)` pairs -> waves: each control plane alone (etcd keeps quorum), in
    hostname order, then the workers in hostname order in batches of `worker_batch_size`. A wave
    starts when the previous one is done and the cluster is healthy."""
    pairs = sorted(nodes)
    control_planes = [(h,) for h, role in pairs if role == CONTROL_PLANE]
    workers = [h for h, role in pairs if role != CONTROL_PLANE]
    size = max(worker_batch_size, 1)
    return (*control_planes, *(tuple(workers[i : i + size]) for i in range(0, len(workers), size)))
