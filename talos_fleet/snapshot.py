"""What every node of a stack receives, from the stack file and the code alone: no Pulumi, no
network, no secrets. `make plan` compares two snapshots (talos_fleet.review).

A snapshot is plain data (pydantic, JSON round-trip): `make plan` takes the base's snapshot from
the base commit's own code when it has this module, so a change to the code shows up in the plan
just like a change to the stack file. `FORMAT` changes whenever the shape does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from talos_fleet import patches
from talos_fleet.desired import Resource, desired_state
from talos_fleet.plan import plan_cluster
from talos_fleet.spec import Cluster, Fleet, LibvirtSource, MetalSource, Role

# 2: the snapshot carries the desired state (every resource the program registers).
FORMAT: Literal[2] = 2

# The installer the Image Factory serves for a schematic id (FACTS.md, "Image Factory"): the
# provider's get_urls answers exactly this for platform metal.
INSTALLER = "factory.talos.dev/metal-installer/{id}:{version}"
UNKNOWN_ID = "<schematic id: see the schematic>"


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Layer = Literal["generated", "cluster", "role", "node"]


class Document(View):
    """One YAML document a node receives, in the order Talos applies them (talos_fleet.patches)."""

    layer: Layer
    origin: str
    """Where it comes from: `talos-fleet` (derived from the spec) or the stack-file path of a patch."""
    name: str
    """Its kind, and its name where the kind has one (`VolumeConfig STATE`); v1alpha1 has no kind."""
    yaml: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.layer, self.origin, self.name)

    @property
    def label(self) -> str:
        where = "" if self.origin == "talos-fleet" else f" from {self.origin}"
        return f"{self.layer} · {self.name}{where}"


class Vm(View):
    hypervisor: str
    cpus: int
    memory_mib: int
    disk_gib: int
    data_disks: dict[str, int]
    """Size in GiB by disk name."""


class NodeView(View):
    hostname: str
    role: Role
    source: str
    source_kind: Literal["libvirt", "metal"]
    address: str
    addressing: Literal["static", "dhcp"]
    mac: str | None
    architecture: str
    talos_version: str
    kubernetes_version: str
    installer: str
    vm: Vm | None
    documents: tuple[Document, ...]
    pxe: bool = False
    """Metal booted through a matchbox PXE entry."""


class ClusterView(View):
    name: str
    endpoint: str
    talos_version: str
    kubernetes_version: str
    contract: str
    schematic: str
    schematic_id: str | None
    """Computed like the Image Factory does (patches.schematic_id); None when it cannot be."""
    worker_batch_size: int
    allow_downgrade: bool
    recheck: int = 0
    """`upgrade.recheck`: raising it makes both rollouts check every node again."""
    waves: tuple[tuple[str, ...], ...]
    nodes: tuple[NodeView, ...]
    acknowledged_data_loss: tuple[str, ...] = ()
    """`acknowledgeDataLoss`: disks the change may delete although the stack keeps them."""

    def node(self, hostname: str) -> NodeView | None:
        return next((n for n in self.nodes if n.hostname == hostname), None)


class SourceView(View):
    name: str
    kind: Literal["libvirt", "metal"]
    where: str
    network: str | None


class Snapshot(View):
    format: Literal[2] = FORMAT
    sources: tuple[SourceView, ...]
    clusters: tuple[ClusterView, ...]
    resources: tuple[Resource, ...]
    """The desired state (talos_fleet.desired): what the components register, resource by resource."""

    def cluster(self, name: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.name == name), None)


def _name(doc: patches.Document) -> str:
    kind = str(doc.get("kind", "v1alpha1"))
    return f"{kind} {doc['name']}" if "name" in doc and "kind" in doc else kind


def _derived(layer: Layer, docs: list[patches.Document]) -> list[Document]:
    return [Document(layer=layer, origin="talos-fleet", name=_name(d), yaml=patches.to_yaml([d])) for d in docs]


def _user(layer: Layer, path: str, docs: tuple[patches.Document, ...], stand_ins: dict[str, str]) -> list[Document]:
    """A stack file's patches, `{secret: <name>}` shown as `<secret:name>` (patches.secret_stand_ins)."""
    return [
        Document(
            layer=layer,
            origin=f"{path}[{i}]",
            name=_name(d),
            yaml=patches.to_yaml([patches.resolve_references(d, stand_ins)]),
        )
        for i, d in enumerate(docs)
    ]


def _node_patches(path: str, docs: tuple[patches.Document, ...]) -> list[Document]:
    """A node's own patches as its apply sends them: one that references a secret is split into
    its plaintext part and an overlay of the secret fields (patches.split_references)."""
    out = []
    for i, doc in enumerate(docs):
        plain, overlay = patches.split_references(doc)
        if plain is not None:
            out.append(Document(layer="node", origin=f"{path}[{i}]", name=_name(plain), yaml=patches.to_yaml([plain])))
        if overlay is not None:
            out.append(
                Document(
                    layer="node",
                    origin=f"{path}[{i}] (secret fields)",
                    name=_name(overlay),
                    yaml=patches.to_yaml([overlay]),
                )
            )
    return out


def _generated(fleet: Fleet, cname: str, role: Role) -> Document:
    """The config generation's own inputs, as a document: a change to any of them changes the
    whole generated config of the role (the Kubernetes version is not here: upgrade-k8s moves it)."""
    cluster = fleet.clusters[cname]
    inputs = {
        "clusterName": cname,
        "machineType": role,
        "endpoint": cluster.endpoint.url,
        "configContract": fleet.defaults.contract,
    }
    return Document(layer="generated", origin="talos-fleet", name="config generation", yaml=patches.to_yaml([inputs]))


def role_documents(fleet: Fleet, cname: str, role: Role) -> list[Document]:
    """Layers 1 and 2: what the role's (secret) config generation gets. Secret values are
    replaced by their names: the plan never holds a secret."""
    cluster = fleet.clusters[cname]
    base = f"clusters.{cname}"
    stand_ins = patches.secret_stand_ins(fleet)
    return [
        _generated(fleet, cname, role),
        *_derived("cluster", patches.cluster_documents(cluster, stand_ins)),
        *_user("cluster", f"{base}.patches", cluster.patches, stand_ins),
        *_derived("role", patches.role_documents(cluster, role)),
        *_user("role", f"defaults.roles.{role}.patches", fleet.defaults.roles.of(role).patches, stand_ins),
        *_user("role", f"{base}.roles.{role}.patches", cluster.roles.of(role).patches, stand_ins),
    ]


def _vm(fleet: Fleet, cname: str, hostname: str) -> Vm | None:
    node = fleet.clusters[cname].nodes[hostname]
    if not isinstance(fleet.sources[node.source], LibvirtSource):
        return None
    size, _ = fleet.vm(cname, hostname)
    return Vm(
        hypervisor=node.source,
        cpus=size.cpus,
        memory_mib=size.memory_mib,
        disk_gib=size.disk_gib,
        data_disks={d.name: d.size_gib for d in size.data_disks},
    )


def installer(schematic_id: str | None, version: str) -> str:
    return INSTALLER.format(id=schematic_id or UNKNOWN_ID, version=version)


def _cluster(fleet: Fleet, cname: str, cluster: Cluster) -> ClusterView:
    plan = plan_cluster(fleet, cname)
    schematic_id = patches.schematic_id(fleet.image(cluster))
    image = installer(schematic_id, plan.talos_version)
    roles = {role: role_documents(fleet, cname, role) for role in {n.role for n in plan.nodes}}
    nodes = []
    for node in plan.nodes:
        spec = cluster.nodes[node.hostname]
        own = f"clusters.{cname}.nodes.{node.hostname}.patches"
        nodes.append(
            NodeView(
                hostname=node.hostname,
                role=node.role,
                source=spec.source,
                source_kind=fleet.sources[spec.source].kind,
                address=node.ip,
                addressing=cluster.addressing_of(spec),
                mac=fleet.known_mac(cname, node.hostname),
                architecture=node.architecture,
                talos_version=plan.talos_version,
                kubernetes_version=plan.kubernetes_version,
                installer=image,
                vm=_vm(fleet, cname, node.hostname),
                pxe=isinstance(source := fleet.sources[spec.source], MetalSource) and source.matchbox is not None,
                documents=(
                    *roles[node.role],
                    *_derived("node", patches.node_documents(fleet, cname, node.hostname, image)),
                    *_node_patches(own, spec.patches),
                ),
            )
        )
    return ClusterView(
        name=cname,
        endpoint=plan.endpoint,
        talos_version=plan.talos_version,
        kubernetes_version=plan.kubernetes_version,
        contract=plan.contract,
        schematic=plan.schematic,
        schematic_id=schematic_id,
        worker_batch_size=plan.upgrade.worker_batch_size,
        allow_downgrade=plan.upgrade.allow_downgrade,
        recheck=plan.upgrade.recheck,
        waves=plan.upgrade_waves,
        nodes=tuple(nodes),
        acknowledged_data_loss=cluster.acknowledge_data_loss,
    )


def _source(name: str, source: LibvirtSource | MetalSource) -> SourceView:
    if isinstance(source, LibvirtSource):
        managed, bridge = source.network.managed, source.network.bridge
        network = f"bridge {bridge}" if managed is None else f"{managed.mode} {managed.cidr}"
        return SourceView(name=name, kind="libvirt", where=source.uri, network=network)
    where = f"PXE via matchbox {source.matchbox.endpoint}" if source.matchbox else "booted from Talos media by hand"
    return SourceView(name=name, kind="metal", where=where, network=None)


def snapshot(fleet: Fleet) -> Snapshot:
    return Snapshot(
        sources=tuple(_source(name, s) for name, s in fleet.sources.items()),
        clusters=tuple(_cluster(fleet, cname, c) for cname, c in fleet.clusters.items()),
        resources=desired_state(fleet).resources,
    )
