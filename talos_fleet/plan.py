"""Planning: the decisions about a cluster that do not need Pulumi, apart from the wiring.

The component turns a `ClusterPlan` into resources; tests and `make plan` read it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from talos_fleet import naming, patches, waves
from talos_fleet.spec import Fleet, LibvirtSource, ManagedNetwork, Matchbox, MetalSource, Node, Role, UpgradePolicy


@dataclass(frozen=True)
class NodePlan:
    hostname: str
    role: Role
    ip: str
    architecture: str


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    endpoint: str
    talos_version: str
    kubernetes_version: str
    contract: str
    schematic: str
    upgrade: UpgradePolicy
    nodes: tuple[NodePlan, ...]

    @property
    def control_planes(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == "controlplane"]

    @property
    def workers(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def bootstrap_node(self) -> NodePlan:
        """The first control plane in hostname order bootstraps etcd, on its own address (the engine
        hands config over with sorted keys, so file order never reaches the program)."""
        return self.control_planes[0]

    @property
    def architectures(self) -> list[str]:
        return sorted({n.architecture for n in self.nodes})

    @property
    def upgrade_waves(self) -> tuple[tuple[str, ...], ...]:
        """The order `pulumi up` rolls a version or config change over existing nodes
        (talos_fleet.waves, the function the day-2 rollout steps walk with): each control plane
        alone, in hostname order, then the workers in batches of `upgrade.workerBatchSize`."""
        return waves.waves(((n.hostname, n.role) for n in self.nodes), self.upgrade.worker_batch_size)


def plan_cluster(fleet: Fleet, name: str) -> ClusterPlan:
    cluster = fleet.clusters[name]
    nodes = tuple(
        NodePlan(
            hostname=host,
            role=node.role,
            ip=node.ip,
            architecture=fleet.sources[node.source].architecture,
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
        upgrade=fleet.upgrade(cluster),
        nodes=nodes,
    )


# ---------------------------------------------------------------------------------------------
# Day-2 steps (`talos_fleet.day2`): their plain environment, from the spec alone. Addresses the
# machine sources serve (NODE, CONTROL_PLANE) are added by the component.


def _policy_environment(plan: ClusterPlan) -> dict[str, str]:
    return {
        "TALOS_FLEET_CLUSTER": plan.name,
        "TALOS_FLEET_ALLOW_DOWNGRADE": str(plan.upgrade.allow_downgrade).lower(),
        "TALOS_FLEET_HEALTH_TIMEOUT_MINUTES": str(plan.upgrade.health_timeout_minutes),
    }


def _drain_environment(plan: ClusterPlan) -> dict[str, str]:
    return {"TALOS_FLEET_DRAIN_TIMEOUT_MINUTES": str(plan.upgrade.drain_timeout_minutes)}


def gate_environment(plan: ClusterPlan) -> dict[str, str]:
    return {
        **_policy_environment(plan),
        "TALOS_FLEET_TALOS_VERSION": plan.talos_version,
        "TALOS_FLEET_KUBERNETES_VERSION": plan.kubernetes_version,
    }


def node_environment(plan: ClusterPlan, node: NodePlan) -> dict[str, str]:
    """What a node's lifecycle step needs to remove it: its own facts and the cluster's policy.
    No version: a Talos or Kubernetes bump, or adding or removing another node, leaves every
    lifecycle alone (the rollouts carry the versions)."""
    return {
        **_policy_environment(plan),
        **_drain_environment(plan),
        "TALOS_FLEET_HOSTNAME": node.hostname,
        "TALOS_FLEET_ROLE": node.role,
    }


def rollout_environment(plan: ClusterPlan) -> dict[str, str]:
    """The cluster's policy as both rollouts read it (talos_fleet.day2 walks talos_fleet.waves
    with the batch size)."""
    return {
        **_policy_environment(plan),
        **_drain_environment(plan),
        "TALOS_FLEET_WORKER_BATCH_SIZE": str(plan.upgrade.worker_batch_size),
        # Raised by the operator to re-check every node (after reverting a change a failed
        # rollout left on some nodes: Pulumi kept the rollout's old inputs, so a revert alone
        # has nothing to diff).
        "TALOS_FLEET_RECHECK": str(plan.upgrade.recheck),
    }


def _compact(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def upgrade_targets(plan: ClusterPlan) -> dict[str, str]:
    """One variable per node for the upgrade rollout: plain spec values (role, address,
    architecture), so the rollout reads no machine's Output and each node's line in a preview
    is its own. The version and the installer per architecture are the cluster's."""
    return {
        f"TALOS_FLEET_TARGET_{n.hostname}": _compact({"arch": n.architecture, "ip": n.ip, "role": n.role})
        for n in plan.nodes
    }


def config_target(node: NodePlan, hashes: dict[str, str]) -> str:
    """A node's variable for the config rollout: where it is, its role, and the hashes of the
    parts of its config that apply live and that need a reboot (talos_fleet.reboots)."""
    return _compact({"ip": node.ip, "role": node.role, **hashes})


def kubernetes_environment(plan: ClusterPlan) -> dict[str, str]:
    return {**_policy_environment(plan), "TALOS_FLEET_KUBERNETES_VERSION": plan.kubernetes_version}


# ---------------------------------------------------------------------------------------------
# Machine sources


@dataclass(frozen=True)
class BootMedia:
    """One Talos boot medium (ISO or PXE assets) for a Talos version, schematic and architecture.
    `cluster` is the first cluster using it: its schematic id and factory URLs stand for all."""

    key: str
    cluster: str
    talos_version: str
    architecture: str
    schematic: str


@dataclass(frozen=True)
class DataDiskPlan:
    name: str
    size_gib: int


@dataclass(frozen=True)
class VmPlan:
    cluster: str
    hostname: str
    role: Role
    ip: str
    mac: str
    cpus: int
    memory_mib: int
    disk_gib: int
    data_disks: tuple[DataDiskPlan, ...]
    boot_media: str
    """Key of the BootMedia the VM first boots (maintenance mode) from."""


@dataclass(frozen=True)
class HypervisorPlan:
    name: str
    uri: str
    pool: str
    firmware: str
    nvram_template: str
    network_name: str | None
    """The libvirt network talos-fleet manages here, or None on a bridge."""
    managed: ManagedNetwork | None
    bridge: str | None
    boot_media: tuple[BootMedia, ...]
    vms: tuple[VmPlan, ...]


@dataclass(frozen=True)
class PxeHost:
    cluster: str
    hostname: str
    ip: str
    mac: str
    boot_media: str


@dataclass(frozen=True)
class PxePlan:
    source: str
    matchbox: Matchbox
    boot_media: tuple[BootMedia, ...]
    hosts: tuple[PxeHost, ...]


def _media(fleet: Fleet, cname: str, architecture: str) -> BootMedia:
    cluster = fleet.clusters[cname]
    version = fleet.talos_version(cluster)
    schematic = patches.schematic_yaml(fleet.image(cluster))
    key = naming.media_key(version, schematic, architecture)
    return BootMedia(key, cname, version, architecture, schematic)


def _nodes_on(fleet: Fleet, source: str) -> list[tuple[str, str, Node]]:
    return [(c, h, n) for c, h, n in fleet.all_nodes() if n.source == source]


def _media_of(fleet: Fleet, source: str) -> list[BootMedia]:
    """The boot medium of each node on `source`, in node order (rendered once per cluster)."""
    architecture = fleet.sources[source].architecture
    nodes = _nodes_on(fleet, source)
    per_cluster = {cname: _media(fleet, cname, architecture) for cname in dict.fromkeys(c for c, _, _ in nodes)}
    return [per_cluster[cname] for cname, _, _ in nodes]


def _unique(media: list[BootMedia]) -> tuple[BootMedia, ...]:
    first: dict[str, BootMedia] = {}
    for m in media:
        first.setdefault(m.key, m)
    return tuple(first.values())


def plan_hypervisors(fleet: Fleet) -> list[HypervisorPlan]:
    """Every libvirt source with the VMs it hosts, in name order (as the engine hands them over)."""
    plans = []
    for sname, source in fleet.sources.items():
        if not isinstance(source, LibvirtSource):
            continue
        vms: list[VmPlan] = []
        media = _media_of(fleet, sname)
        for (cname, host, node), medium in zip(_nodes_on(fleet, sname), media, strict=True):
            vm, _ = fleet.vm(cname, host)
            vms.append(
                VmPlan(
                    cluster=cname,
                    hostname=host,
                    role=node.role,
                    ip=node.ip,
                    mac=fleet.mac(cname, host),
                    cpus=vm.cpus,
                    memory_mib=vm.memory_mib,
                    disk_gib=vm.disk_gib,
                    data_disks=tuple(DataDiskPlan(d.name, d.size_gib) for d in vm.data_disks),
                    boot_media=medium.key,
                )
            )
        managed = source.network.managed
        plans.append(
            HypervisorPlan(
                name=sname,
                uri=source.uri,
                pool=source.pool,
                firmware=source.firmware,
                nvram_template=source.nvram_template,
                network_name=None if managed is None else (managed.name or f"talos-{sname}"),
                managed=managed,
                bridge=source.network.bridge,
                boot_media=_unique(media),
                vms=tuple(vms),
            )
        )
    return plans


def plan_pxe(fleet: Fleet) -> list[PxePlan]:
    """Every metal source served through matchbox, with the machines it boots."""
    plans = []
    for sname, source in fleet.sources.items():
        if not isinstance(source, MetalSource) or source.matchbox is None:
            continue
        media = _media_of(fleet, sname)
        hosts = [
            PxeHost(cname, host, node.ip, fleet.mac(cname, host), medium.key)
            for (cname, host, node), medium in zip(_nodes_on(fleet, sname), media, strict=True)
        ]
        plans.append(PxePlan(sname, source.matchbox, _unique(media), tuple(hosts)))
    return plans
