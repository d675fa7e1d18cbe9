"""Planning: the decisions about a cluster that do not need Pulumi, apart from the wiring.

The component turns a `ClusterPlan` into resources; tests and `make plan` read it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from talos_fleet import patches
from talos_fleet.spec import Fleet, Role


@dataclass(frozen=True)
class NodePlan:
    hostname: str
    role: Role
    ip: str
    architecture: str
    # Graceful reset leaves etcd first; the only control plane has no etcd peer to leave to,
    # so its reset must be forced or destroy would hang (https://www.talos.dev/v1.13/talos-guides/resetting-a-machine/).
    graceful_reset: bool


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    endpoint: str
    talos_version: str
    kubernetes_version: str
    contract: str
    schematic: str
    nodes: tuple[NodePlan, ...]

    @property
    def control_planes(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == "controlplane"]

    @property
    def workers(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def bootstrap_node(self) -> NodePlan:
        """The first control plane in stack-file order bootstraps etcd, on its own address."""
        return self.control_planes[0]

    @property
    def architectures(self) -> list[str]:
        return sorted({n.architecture for n in self.nodes})


def plan_cluster(fleet: Fleet, name: str) -> ClusterPlan:
    cluster = fleet.clusters[name]
    single_control_plane = len(cluster.nodes_of("controlplane")) == 1
    nodes = tuple(
        NodePlan(
            hostname=host,
            role=node.role,
            ip=node.ip,
            architecture=fleet.sources[node.source].architecture,
            graceful_reset=not (single_control_plane and node.role == "controlplane"),
        )
        for host, node in cluster.nodes.items()
    )
    return ClusterPlan(
        name=name,
        endpoint=cluster.endpoint.url,
        talos_version=fleet.talos_version(cluster),
        kubernetes_version=fleet.kubernetes_version(cluster),
        contract=fleet.defaults.contract,
        schematic=patches.schematic_yaml(fleet.image(cluster)),
        nodes=nodes,
    )
