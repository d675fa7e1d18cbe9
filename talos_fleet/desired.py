"""The desired state: every resource the program registers (and every provider call it makes),
computed from the validated Fleet alone. Pure: no Pulumi, no network, no secret values.

Components read only this and wire it to Pulumi (components/wire.py resolves the placeholders);
`make plan` diffs it (it is part of the snapshot, talos_fleet.snapshot), so nothing a component
reads can be missing from the plan. tests/test_desired.py proves it: every input of every
resource registered under mocks is the resolved form of what is here.

Inputs are in the providers' wire form (camelCase, as the engine receives them). A value only the
providers know is a typed placeholder, and every placeholder names what it depends on, so a
change upstream changes the placeholder text:

* `<id:KIND:NAME>`: the id of another resource (unknown offline; new when that one is replaced);
* `<via:KIND:NAME|VALUE>`: VALUE, known from the spec, read through that resource (a data edge:
  whatever reads it waits until the resource exists);
* `<factory:WHAT:CLUSTER/ARCH@MEDIA>`: an Image Factory URL (installer, iso, kernel, initramfs,
  or initramfs-file, its last segment) of the cluster's schematic; MEDIA names the Talos version,
  schematic content and architecture (naming.media_key), so it changes with any of them;
* `<secret:NAME>`: the stack secret NAME under `talos-fleet:secrets`;
* `<secret:KIND:NAME.OUTPUT>`: a secret output of a resource or provider call;
* `<local:project-directory>`: where `talos_fleet` is importable from, relative to the directory
  Pulumi runs the program in (components/cluster_operations.py project_directory).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from talos_fleet import day2, dhcp_hosts, naming, patches, reboots
from talos_fleet.plan import (
    BootMedia,
    ClusterPlan,
    HypervisorPlan,
    PxePlan,
    VmPlan,
    config_target,
    gate_environment,
    kubernetes_environment,
    node_environment,
    plan_cluster,
    plan_hypervisors,
    plan_pxe,
    rollout_environment,
    upgrade_targets,
)
from talos_fleet.spec import ROLES, Fleet, LibvirtSource, MetalSource, Role

# Short kind -> Pulumi type token (resources) or invoke token (provider calls, `data`).
KINDS: dict[str, str] = {
    "TalosImages": naming.IMAGES_COMPONENT_TYPE,
    "LibvirtHypervisor": naming.HYPERVISOR_COMPONENT_TYPE,
    "MatchboxPxe": naming.MATCHBOX_COMPONENT_TYPE,
    "TalosCluster": naming.COMPONENT_TYPE,
    "ClusterOperations": naming.OPERATIONS_TYPE,
    "provider:talos": "pulumi:providers:talos",
    "provider:libvirt": "pulumi:providers:libvirt",
    "provider:matchbox": "pulumi:providers:matchbox",
    "Schematic": "talos:imageFactory/schematic:Schematic",
    "Network": "libvirt:index/network:Network",
    "Volume": "libvirt:index/volume:Volume",
    "Domain": "libvirt:index/domain:Domain",
    "Profile": "matchbox:index/profile:Profile",
    "Group": "matchbox:index/group:Group",
    "Command": "command:local:Command",
    "Secrets": "talos:machine/secrets:Secrets",
    "ConfigurationApply": "talos:machine/configurationApply:ConfigurationApply",
    "Bootstrap": "talos:machine/bootstrap:Bootstrap",
    "Kubeconfig": "talos:cluster/kubeconfig:Kubeconfig",
    "getUrls": "talos:imageFactory/getUrls:getUrls",
    "getConfiguration": "talos:machine/getConfiguration:getConfiguration",
    "getHealth": "talos:cluster/getHealth:getHealth",
    "getClientConfiguration": "talos:client/getConfiguration:getConfiguration",
}
COMPONENTS = ("TalosImages", "LibvirtHypervisor", "MatchboxPxe", "TalosCluster", "ClusterOperations")
DATA = ("getUrls", "getConfiguration", "getHealth", "getClientConfiguration")

PROJECT_DIRECTORY = "<local:project-directory>"
TOKEN = re.compile(r"<(id|via|factory|secret|local):([^<>]*)>")

# Domain, NIC and volume constants of the program (components/libvirt_hypervisor.py explains them).
GIB = 1024**3
NVRAM_FILE = "/var/lib/libvirt/qemu/nvram/{domain}_VARS.fd"

# The options the components set on the resources they register, with the reason beside each
# use below; the secret outputs the providers' SDKs add by themselves are not listed.
COMMAND_SECRET_OUTPUTS = ("stdout", "stderr")


class Resource(BaseModel):
    """One resource (or provider call, `data`) the program registers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str
    inputs: dict[str, Any] = {}
    parent: str | None = None
    """Key of the component it is a child of; None: the stack."""
    provider: str | None = None
    """Key of its explicit provider; None: the default provider of its package."""
    protect: bool = False
    delete_before_replace: bool = False
    ignore_changes: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    """Keys of resources it waits for without reading them."""
    additional_secret_outputs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    """`parent:KEY`: it was created under that component before."""
    cluster: str | None = None
    source: str | None = None
    nodes: tuple[str, ...] = ()
    """The nodes (`cluster/hostname`) that a change of it affects."""

    @property
    def key(self) -> str:
        return key(self.kind, self.name)

    @property
    def data(self) -> bool:
        return self.kind in DATA

    @property
    def type(self) -> str:
        return KINDS[self.kind]


class DesiredState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    resources: tuple[Resource, ...]

    def by_key(self) -> dict[str, Resource]:
        return {r.key: r for r in self.resources}

    def children(self, parent: str) -> list[Resource]:
        return [r for r in self.resources if r.parent == parent]


def key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def node_ref(cluster: str, hostname: str) -> str:
    return f"{cluster}/{hostname}"


def via(kind: str, name: str, value: str) -> str:
    return f"<via:{key(kind, name)}|{value}>"


def ref_id(kind: str, name: str) -> str:
    return f"<id:{key(kind, name)}>"


def factory(what: str, cluster: str, architecture: str, media: str) -> str:
    return f"<factory:{what}:{cluster}/{architecture}@{media}>"


def secret_output(kind: str, name: str, output: str) -> str:
    return f"<secret:{key(kind, name)}.{output}>"


def tokens(value: Any) -> Iterator[tuple[str, str]]:
    """Every placeholder in `value`, as (type, body)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from tokens(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tokens(v)
    elif isinstance(value, str):
        yield from ((m.group(1), m.group(2)) for m in TOKEN.finditer(value))


# ---------------------------------------------------------------------------------------------


def _media_key(fleet: Fleet, cname: str, architecture: str) -> str:
    cluster = fleet.clusters[cname]
    return naming.media_key(fleet.talos_version(cluster), patches.schematic_yaml(fleet.image(cluster)), architecture)


def installer(fleet: Fleet, cname: str, architecture: str) -> str:
    return factory("installer", cname, architecture, _media_key(fleet, cname, architecture))


def _images(fleet: Fleet) -> list[Resource]:
    component = Resource(kind="TalosImages", name=naming.images_component(), provider=key("provider:talos", "talos"))
    out = [component]
    for cname, cluster in fleet.clusters.items():
        everyone = tuple(node_ref(cname, h) for h in cluster.nodes)
        out.append(
            Resource(
                kind="Schematic",
                name=naming.schematic(cname),
                inputs={"schematic": patches.schematic_yaml(fleet.image(cluster))},
                parent=component.key,
                provider=key("provider:talos", "talos"),
                # Earlier versions created the schematic under its TalosCluster: same resource, moved.
                aliases=(f"parent:{key('TalosCluster', naming.cluster_component(cname))}",),
                cluster=cname,
                nodes=everyone,
            )
        )
        for arch in fleet.architectures(cname):
            out.append(
                Resource(
                    kind="getUrls",
                    name=naming.installer_urls(cname, arch),
                    inputs={
                        "architecture": arch,
                        "platform": "metal",
                        "schematicId": ref_id("Schematic", naming.schematic(cname)),
                        "talosVersion": fleet.talos_version(cluster),
                    },
                    parent=component.key,
                    provider=key("provider:talos", "talos"),
                    cluster=cname,
                    nodes=tuple(
                        node_ref(cname, h)
                        for h, n in cluster.nodes.items()
                        if fleet.sources[n.source].architecture == arch
                    ),
                )
            )
    return out


def domain_description(vm: VmPlan) -> str:
    """The domain's description: ForceNew, so every existing VM carries exactly this text and any
    edit to it would replace every VM. Frozen: it names only the node's own stable facts."""
    return f"Talos {vm.role} {vm.hostname} of cluster {vm.cluster} (managed by talos-fleet)"


def domain_xslt(data_disks: tuple[str, ...]) -> str:
    """The stylesheet the provider applies to its domain XML, for what its schema cannot say.

    * CD-ROMs on SATA: the provider puts ISOs on IDE, which q35 does not have
      (dmacvicar/terraform-provider-libvirt#885).
    * `startupPolicy="optional"` on the CD-ROM: a boot ISO removed after an upgrade must not
      stop the (installed) VM from starting.
    * Data disks get their name as serial, so Talos volume selectors find them by
      `disk.serial` whatever their order.
    * The guest-agent channel, if the provider did not define it; no memory balloon (Talos
      does not support ballooning).

    Only node-stable inputs go in: any change to the stylesheet replaces the domain.
    """
    serials = "".join(
        f"""
  <xsl:template match="/domain/devices/disk[target/@dev='vd{chr(ord("b") + i)}']">
    <xsl:copy><xsl:apply-templates select="@*|node()"/><serial>{name}</serial></xsl:copy>
  </xsl:template>"""
        for i, name in enumerate(data_disks)
    )
    return f"""<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/devices/disk[@device='cdrom']/target/@bus">
    <xsl:attribute name="bus">sata</xsl:attribute>
  </xsl:template>
  <xsl:template match="/domain/devices/disk[@device='cdrom']/source">
    <xsl:copy>
      <xsl:apply-templates select="@*"/>
      <xsl:attribute name="startupPolicy">optional</xsl:attribute>
      <xsl:apply-templates select="node()"/>
    </xsl:copy>
  </xsl:template>{serials}
  <xsl:template match="/domain/devices/memballoon"/>
  <xsl:template match="/domain/devices">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()"/>
      <xsl:if test="not(channel[target/@name='org.qemu.guest_agent.0'])">
        <channel type="unix"><target type="virtio" name="org.qemu.guest_agent.0"/></channel>
      </xsl:if>
      <memballoon model="none"/>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
"""


def _media_nodes(plan_vms: tuple[Any, ...], media: BootMedia) -> tuple[str, ...]:
    return tuple(node_ref(v.cluster, v.hostname) for v in plan_vms if v.boot_media == media.key)


def _hypervisor(plan: HypervisorPlan) -> list[Resource]:
    component = Resource(kind="LibvirtHypervisor", name=plan.name, source=plan.name)
    parent = component.key
    everyone = tuple(node_ref(v.cluster, v.hostname) for v in plan.vms)
    provider = Resource(
        kind="provider:libvirt",
        name=naming.libvirt_provider(plan.name),
        inputs={"uri": plan.uri},
        parent=parent,
        source=plan.name,
        nodes=everyone,
    )
    out = [component, provider]
    on_host = {"parent": parent, "provider": provider.key, "source": plan.name}
    network: Resource | None = None
    if plan.managed is not None:
        dns: dict[str, Any] = {"enabled": True, "localOnly": False}
        if plan.managed.dns:
            dns["forwarders"] = [{"address": ip} for ip in plan.managed.dns]
        network = Resource(
            kind="Network",
            name=naming.libvirt_network(plan.name),
            inputs={
                "name": plan.network_name,
                "mode": plan.managed.mode,
                "addresses": [plan.managed.cidr],
                "autostart": True,
                "dhcp": {"enabled": True},
                "dns": dns,
            },
            nodes=everyone,
            **on_host,
        )
        out.append(network)
    isos = {}
    for media in plan.boot_media:
        isos[media.key] = Resource(
            kind="Volume",
            name=naming.boot_media(plan.name, media.key),
            inputs={
                # The key names the content; the .iso suffix makes the provider attach it as a CD-ROM.
                "name": f"talos-{media.key}.iso",
                "pool": plan.pool,
                "source": factory("iso", media.cluster, media.architecture, media.key),
                "format": "raw",
            },
            nodes=_media_nodes(plan.vms, media),
            **on_host,
        )
        out.append(isos[media.key])
    for vm in plan.vms:
        out += _vm(vm, plan, network, isos[vm.boot_media], on_host)
    return out


def _vm(
    vm: VmPlan, plan: HypervisorPlan, network: Resource | None, iso: Resource, on_host: dict[str, Any]
) -> list[Resource]:
    me = (node_ref(vm.cluster, vm.hostname),)
    owned = {**on_host, "cluster": vm.cluster, "nodes": me}
    out: list[Resource] = []
    entry = None
    if network is not None:
        # Clears stale entries colliding with this VM's before it is created; releases its entry
        # after it is deleted. Inputs are the node's own facts only: another node never updates it.
        entry = Resource(
            kind="Command",
            name=naming.vm_dhcp_entry(vm.cluster, vm.hostname),
            inputs={
                "create": dhcp_hosts.command("clear-stale"),
                "delete": dhcp_hosts.command("release"),
                "environment": {
                    "TALOS_FLEET_LIBVIRT_URI": plan.uri,
                    # A data edge: the network exists first and is deleted only after the entry is released.
                    "TALOS_FLEET_NETWORK": via("Network", network.name, str(network.inputs["name"])),
                    "TALOS_FLEET_HOSTNAME": vm.hostname,
                    "TALOS_FLEET_MAC": vm.mac,
                    "TALOS_FLEET_IP": vm.ip,
                },
                "dir": PROJECT_DIRECTORY,
                "logging": "stderr",
            },
            parent=on_host["parent"],
            source=plan.name,
            cluster=vm.cluster,
            nodes=me,
        )
        out.append(entry)
    domain_name = naming.vm_domain(vm.cluster, vm.hostname)
    # Disk sizes are ignored after creation: provider 0.8.1 can only change a volume's size by
    # replacing it, which would erase the node. Grow a disk with `virsh vol-resize` instead.
    system = Resource(
        kind="Volume",
        name=naming.vm_system_disk(vm.cluster, vm.hostname),
        inputs={"name": f"{domain_name}.qcow2", "pool": plan.pool, "format": "qcow2", "size": vm.disk_gib * GIB},
        ignore_changes=("size",),
        **owned,
    )
    data = [
        Resource(
            kind="Volume",
            name=naming.vm_data_disk(vm.cluster, vm.hostname, disk.name),
            inputs={
                "name": f"{domain_name}-{disk.name}.qcow2",
                "pool": plan.pool,
                "format": "qcow2",
                "size": disk.size_gib * GIB,
            },
            ignore_changes=("size",),
            **owned,
        )
        for disk in vm.data_disks
    ]
    out += [system, *data]
    # Disk order fixes the guest's device names: system disk vda, data disks vdb..., then the
    # boot ISO as a CD-ROM (libvirt target hda, moved to SATA by the stylesheet). A directory
    # pool's volume key is the file's path.
    disks = [
        {"volumeId": ref_id("Volume", system.name)},
        *({"volumeId": ref_id("Volume", d.name)} for d in data),
        {"file": ref_id("Volume", iso.name)},
    ]
    nic: dict[str, Any] = {"mac": vm.mac, "hostname": vm.hostname}
    if network is not None:
        # The provider adds a DHCP host entry (MAC -> IP) to the network for this NIC, and
        # creation waits for the lease: the VM is up in maintenance mode at its address.
        nic.update(networkId=ref_id("Network", network.name), addresses=[vm.ip], waitForLease=True)
    else:
        nic["bridge"] = plan.bridge
    out.append(
        Resource(
            kind="Domain",
            name=domain_name,
            inputs={
                "name": domain_name,
                "description": domain_description(vm),
                "machine": "q35",
                "firmware": plan.firmware,
                "nvram": {"file": NVRAM_FILE.format(domain=domain_name), "template": plan.nvram_template},
                # Talos needs x86-64-v2; the default qemu64 model halts at boot.
                "cpu": {"mode": "host-passthrough"},
                "vcpu": vm.cpus,
                "memory": vm.memory_mib,
                "disks": disks,
                "networkInterfaces": [nic],
                "bootDevices": [{"devs": ["hd", "cdrom"]}],
                "consoles": [{"type": "pty", "targetPort": "0", "targetType": "serial"}],
                # The provider always defines the org.qemu.guest_agent.0 channel; the stylesheet
                # makes sure of it. qemu_agent would make the provider read addresses through the
                # agent, which talos-fleet never needs: addresses come from the spec.
                "qemuAgent": False,
                "autostart": True,
                "running": True,
                "xml": {"xslt": domain_xslt(tuple(d.name for d in vm.data_disks))},
            },
            # Ordering only: the stale-entry check runs before the VM is created, and the entry is
            # released only after the VM is deleted (Pulumi deletes dependents first).
            depends_on=(entry.key,) if entry is not None else (),
            # vCPUs, memory, disks and the stylesheet are ForceNew in provider 0.8.1, and the
            # domain's name is fixed: Pulumi's default (create the replacement first) would clash
            # with the old domain's name. Its volumes are separate and stay.
            delete_before_replace=True,
            ignore_changes=(
                # A new boot ISO (Talos version or schematic bump) serves only new VMs; an
                # installed node boots from its disk and upgrades in place (#4). Every disk change
                # would otherwise replace the domain.
                f"disks[{len(disks) - 1}]",
                # libvirt reports the NVRAM file back in its own form: a perpetual diff.
                "nvram",
                # Read back from DHCP leases (and empty while the VM is off): a perpetual diff.
                # The reservation itself is made at creation from the spec's address.
                *(["networkInterfaces[0].addresses"] if network is not None else []),
            ),
            **owned,
        )
    )
    return out


def _pxe(fleet: Fleet, plan: PxePlan) -> list[Resource]:
    component = Resource(kind="MatchboxPxe", name=plan.source, source=plan.source)
    everyone = tuple(node_ref(h.cluster, h.hostname) for h in plan.hosts)
    names = plan.matchbox.secret_names()
    provider = Resource(
        kind="provider:matchbox",
        name=naming.matchbox_provider(plan.source),
        inputs={"endpoint": plan.matchbox.endpoint, **{k: f"<secret:{names[k]}>" for k in sorted(names)}},
        parent=component.key,
        source=plan.source,
        nodes=everyone,
    )
    out = [component, provider]
    # Every group and profile field is ForceNew, and the matchbox provider creates by upserting the
    # *name* and deletes by name (poseidon/terraform-provider-matchbox v0.5.4:
    # matchbox/resource_group.go GroupPut/GroupDelete with Id = name; resource_profile.go the
    # same). Pulumi's default create-then-delete replacement would upsert the new entry, then
    # delete it under the shared name: the machine would no longer PXE-boot. Delete first.
    on_server = {
        "parent": component.key,
        "provider": provider.key,
        "source": plan.source,
        "delete_before_replace": True,
    }
    profiles = {}
    for media in plan.boot_media:
        profiles[media.key] = Resource(
            kind="Profile",
            name=naming.pxe_profile(plan.source, media.key),
            inputs={
                "name": f"talos-{media.key}",
                "kernel": factory("kernel", media.cluster, media.architecture, media.key),
                "initrds": [factory("initramfs", media.cluster, media.architecture, media.key)],
                "args": [
                    f"initrd={factory('initramfs-file', media.cluster, media.architecture, media.key)}",
                    *patches.PXE_KERNEL_ARGS,
                    # The schematic's own kernel arguments go on the PXE command line too.
                    *fleet.image(fleet.clusters[media.cluster]).kernel_args,
                ],
            },
            nodes=tuple(node_ref(h.cluster, h.hostname) for h in plan.hosts if h.boot_media == media.key),
            **on_server,
        )
        out.append(profiles[media.key])
    for host in plan.hosts:
        profile = profiles[host.boot_media]
        out.append(
            Resource(
                kind="Group",
                name=naming.pxe_group(host.cluster, host.hostname),
                inputs={
                    "name": naming.vm_domain(host.cluster, host.hostname),
                    "profile": via("Profile", profile.name, str(profile.inputs["name"])),
                    "selector": {"mac": host.mac},
                },
                cluster=host.cluster,
                nodes=(node_ref(host.cluster, host.hostname),),
                **on_server,
            )
        )
    return out


def _address(fleet: Fleet, cname: str, hostname: str, ip: str) -> str:
    """Where the node's Talos API is reached: its spec address, read through the machine that
    serves it (a VM or a PXE entry), so config apply waits for the machine; metal booted by hand
    waits at its address."""
    node = fleet.clusters[cname].nodes[hostname]
    source = fleet.sources[node.source]
    if isinstance(source, LibvirtSource):
        return via("Domain", naming.vm_domain(cname, hostname), ip)
    if isinstance(source, MetalSource) and source.matchbox is not None:
        return via("Group", naming.pxe_group(cname, hostname), ip)
    return ip


def _cluster(fleet: Fleet, cname: str) -> list[Resource]:
    plan = plan_cluster(fleet, cname)
    talos = key("provider:talos", "talos")
    component = Resource(kind="TalosCluster", name=naming.cluster_component(cname), cluster=cname, provider=talos)
    everyone = tuple(node_ref(cname, n.hostname) for n in plan.nodes)
    child = {"parent": component.key, "provider": talos, "cluster": cname}
    secrets = Resource(
        kind="Secrets",
        name=naming.secrets(cname),
        inputs={"talosVersion": plan.contract},
        # Losing this resource loses the cluster's PKI: every node would have to be reset.
        protect=True,
        # Generated once: a later contract bump must never regenerate (replace) the PKI.
        ignore_changes=("talosVersion",),
        # Real providers mark these secret; say so here too, so no engine or mock can leak them.
        additional_secret_outputs=("machineSecrets", "clientConfiguration"),
        nodes=everyone,
        **child,
    )
    out = [component, secrets]
    addresses = {n.hostname: _address(fleet, cname, n.hostname, n.ip) for n in plan.nodes}
    # Once per architecture, not per node: the media key renders the schematic.
    installers = {arch: installer(fleet, cname, arch) for arch in plan.architectures}
    out += _operations(plan, component.key, addresses, installers)
    client = secret_output("Secrets", secrets.name, "clientConfiguration")
    role_inputs: dict[Role, dict[str, Any]] = {}
    for role in ROLES:
        role_inputs[role] = {
            "clusterName": cname,
            "machineType": role,
            "clusterEndpoint": plan.endpoint,
            "machineSecrets": secret_output("Secrets", secrets.name, "machineSecrets"),
            "talosVersion": plan.contract,
            # Data edge: configs carry the target Kubernetes version only once
            # `talosctl upgrade-k8s` has moved the cluster there.
            "kubernetesVersion": via("Command", naming.kubernetes_upgrade(cname), plan.kubernetes_version),
            "configPatches": patches.role_config_patches(
                fleet, fleet.clusters[cname], role, patches.secret_stand_ins(fleet)
            ),
            "docs": False,
            "examples": False,
        }
        out.append(
            Resource(
                kind="getConfiguration",
                name=naming.role_config_label(cname, role),
                inputs=role_inputs[role],
                nodes=tuple(node_ref(cname, n.hostname) for n in plan.nodes if n.role == role),
                **child,
            )
        )
    node_patches = {
        n.hostname: patches.node_config_patches(fleet, cname, n.hostname, installers[n.architecture])
        for n in plan.nodes
    }
    rollout = _config_rollout(plan, component.key, addresses[plan.bootstrap_node.hostname], role_inputs, node_patches)
    out.append(rollout)
    for node in plan.nodes:
        host = node.hostname
        out.append(
            Resource(
                kind="ConfigurationApply",
                name=naming.node_apply(cname, host),
                inputs={
                    "node": addresses[host],
                    "endpoint": addresses[host],
                    "clientConfiguration": client,
                    "machineConfigurationInput": secret_output(
                        "getConfiguration", naming.role_config_label(cname, node.role), "machineConfiguration"
                    ),
                    "configPatches": node_patches[host],
                },
                # Ordering only (no value of the rollout's is read): an existing node's change was
                # rolled out canary first and health-gated, so this re-sends the bytes the node
                # runs; a new node installs once the rollout is done; a stopped rollout stops here.
                depends_on=(rollout.key,),
                # No on_destroy reset: removing a node is the lifecycle command's delete (drain,
                # graceful reset, delete the Node), which runs before its machine is deleted.
                nodes=(node_ref(cname, host),),
                **child,
            )
        )
    first = plan.bootstrap_node
    first_ip = via("ConfigurationApply", naming.node_apply(cname, first.hostname), first.ip)
    bootstrap = Resource(
        kind="Bootstrap",
        name=naming.bootstrap(cname),
        # Data edge: bootstrap after the first control plane's config is applied, on its own
        # address (the VIP only exists after bootstrap).
        inputs={"node": first_ip, "endpoint": first_ip, "clientConfiguration": client},
        # Bootstrap happens exactly once; if the first control plane changes later (reordered or
        # removed), a second bootstrap would fail with AlreadyExists.
        ignore_changes=("node", "endpoint"),
        nodes=(node_ref(cname, first.hostname),),
        **child,
    )
    booted = via("Bootstrap", bootstrap.name, first.ip)
    control_plane_ips = [n.ip for n in plan.control_planes]
    out += [
        bootstrap,
        Resource(
            kind="Kubeconfig",
            name=naming.kubeconfig(cname),
            inputs={"node": booted, "endpoint": booted, "clientConfiguration": client},
            nodes=(node_ref(cname, first.hostname),),
            **child,
        ),
        # The kubeconfig is handed out once the cluster reports healthy.
        Resource(
            kind="getHealth",
            name=f"{cname}/health",
            inputs={
                "clientConfiguration": client,
                "controlPlaneNodes": control_plane_ips,
                "workerNodes": [n.ip for n in plan.workers],
                "endpoints": control_plane_ips,
                "timeouts": {"read": "10m"},
            },
            # An invoke has no input to carry the edge: asking before bootstrap and every node's
            # apply could only time out.
            depends_on=(
                bootstrap.key,
                *(key("ConfigurationApply", naming.node_apply(cname, n.hostname)) for n in plan.nodes),
            ),
            nodes=everyone,
            **child,
        ),
        Resource(
            kind="getClientConfiguration",
            name=f"{cname}/talosconfig",
            # Control planes' own addresses, never the VIP: talosctl must reach a node even when
            # etcd (and so the VIP) is down.
            inputs={
                "clusterName": cname,
                "clientConfiguration": client,
                "endpoints": control_plane_ips,
                "nodes": control_plane_ips,
            },
            nodes=everyone,
            **child,
        ),
    ]
    return out


def _step(*, create: str, environment: dict[str, Any], stdin: Any = None, **more: str) -> dict[str, Any]:
    """A day-2 command's inputs: `python3 -m talos_fleet.day2 <step>` for `create` (and `update`,
    `delete` in `more`), run in the project root, stderr streamed to the Pulumi log."""
    inputs: dict[str, Any] = {"create": day2.command(create)}
    inputs.update({k: day2.command(v) for k, v in more.items()})
    inputs.update({"dir": PROJECT_DIRECTORY, "environment": environment})
    if stdin is not None:
        inputs["stdin"] = stdin
    inputs["logging"] = "stderr"
    return inputs


def _operations(
    plan: ClusterPlan, parent: str, addresses: dict[str, str], installers: dict[str, str]
) -> list[Resource]:
    """The version gate, one lifecycle step per node (records it; removes it on delete), the
    cluster's Talos upgrade rollout and its Kubernetes upgrade (components/cluster_operations.py).

    No edge between nodes: each rollout walks the waves itself (talos_fleet.day2 with
    talos_fleet.waves), so every resource's ancestry stays a handful of resources whatever the
    cluster's size (a chain of N node steps made the Pulumi SDK's cycle check cubic:
    docs/design/issue-13-rollouts-research.md D)."""
    cname = plan.name
    component = Resource(
        kind="ClusterOperations", name=naming.operations_component(cname), parent=parent, cluster=cname
    )
    everyone = tuple(node_ref(cname, n.hostname) for n in plan.nodes)
    stdin = secret_output("Secrets", naming.secrets(cname), "osCa")
    # talosctl kubeconfig and health run against the first control plane (by hostname), which only
    # changes when that node is removed or a control plane named before it is added.
    control_plane = addresses[plan.bootstrap_node.hostname]
    step = {"parent": component.key, "cluster": cname, "additional_secret_outputs": COMMAND_SECRET_OUTPUTS}
    gate = Resource(
        kind="Command",
        name=naming.version_gate(cname),
        inputs=_step(create="gate", environment=gate_environment(plan)),
        nodes=everyone,
        **step,
    )
    out = [component, gate]
    first_node = plan.bootstrap_node  # once: it looks through every node
    first, endpoint = first_node.hostname, naming.node_lifecycle(cname, first_node.hostname)
    # The endpoint's lifecycle first: the others read it.
    for node in sorted(plan.nodes, key=lambda n: n.hostname != first):
        host = node.hostname
        out.append(
            Resource(
                kind="Command",
                name=naming.node_lifecycle(cname, host),
                # No `update`: pulumi-command runs `create` again on update (pulumi/pulumi-command
                # v1.2.1 provider/pkg/provider/local/commandController.go Update), which only records.
                inputs=_step(
                    create="record-node",
                    delete="remove-node",
                    environment={
                        **node_environment(plan, node),
                        # Data edge: the machine is deleted only after this step's delete has
                        # drained and reset the node (dependents are deleted first).
                        "TALOS_FLEET_NODE": addresses[host],
                        # The endpoint, read through its own lifecycle (its own machine for the
                        # first control plane itself): Pulumi deletes dependents first, so when
                        # several nodes leave at once the endpoint is drained and reset last and
                        # every other removal still reaches the cluster through it.
                        "TALOS_FLEET_CONTROL_PLANE": (
                            control_plane if host == first else via("Command", endpoint, first_node.ip)
                        ),
                    },
                    stdin=stdin,
                ),
                nodes=(node_ref(cname, host),),
                **step,
            )
        )
    upgrades = Resource(
        kind="Command",
        name=naming.upgrade_rollout(cname),
        inputs=_step(
            create="record-upgrades",
            update="upgrade-rollout",
            environment={
                **rollout_environment(plan),
                **upgrade_targets(plan),
                # Data edge: the gate has passed.
                "TALOS_FLEET_TALOS_VERSION": via("Command", gate.name, plan.talos_version),
                **{f"TALOS_FLEET_INSTALLER_{arch}": installers[arch] for arch in plan.architectures},
                # The only machine it reads: the other nodes are plain spec addresses, so the
                # rollout's ancestry does not grow with the cluster.
                "TALOS_FLEET_CONTROL_PLANE": control_plane,
            },
            stdin=stdin,
        ),
        nodes=everyone,
        **step,
    )
    out.append(upgrades)
    out.append(
        Resource(
            kind="Command",
            name=naming.kubernetes_upgrade(cname),
            inputs=_step(
                create="record-kubernetes",
                update="upgrade-kubernetes",
                environment={
                    **kubernetes_environment(plan),
                    # Data edge: Kubernetes moves after the upgrade rollout has brought every node
                    # to the target Talos (Talos first, then Kubernetes:
                    # https://www.talos.dev/v1.13/kubernetes-guides/upgrading-kubernetes/).
                    "TALOS_FLEET_KUBERNETES_VERSION": via("Command", upgrades.name, plan.kubernetes_version),
                    "TALOS_FLEET_CONTROL_PLANE": control_plane,
                },
                stdin=stdin,
            ),
            nodes=everyone,
            **step,
        )
    )
    return out


def _config_rollout(
    plan: ClusterPlan,
    parent: str,
    control_plane: str,
    role_inputs: dict[Role, dict[str, Any]],
    node_patches: dict[str, list[str]],
) -> Resource:
    """The cluster's config rollout (talos_fleet.day2 roll-config): applies a config change to
    existing nodes canary first, then wave by wave, health-gated, staging and rebooting (drained)
    the nodes whose change needs a reboot. The applies run after it, so for an existing node they
    re-send the bytes it already runs; if it stops, no apply runs."""
    cname = plan.name
    roles = {role: reboots.RoleParts.from_inputs(inputs) for role, inputs in role_inputs.items()}
    targets = {
        f"TALOS_FLEET_CONFIG_{n.hostname}": config_target(
            n, reboots.node_hashes(roles[n.role], node_patches[n.hostname])
        )
        for n in plan.nodes
    }
    return Resource(
        kind="Command",
        name=naming.config_rollout(cname),
        inputs=_step(
            create="record-config",
            update="roll-config",
            environment={**rollout_environment(plan), **targets, "TALOS_FLEET_CONTROL_PLANE": control_plane},
            # Secret, piped (no size limit): the CA, both role configs (data edges: they carry the
            # Kubernetes version once upgrade-k8s is done) and every node's patches, which is what
            # each node's apply sends.
            stdin={
                "osCa": secret_output("Secrets", naming.secrets(cname), "osCa"),
                "roleConfigs": {
                    role: secret_output(
                        "getConfiguration", naming.role_config_label(cname, role), "machineConfiguration"
                    )
                    for role in ROLES
                },
                "patches": node_patches,
            },
        ),
        parent=parent,
        cluster=cname,
        additional_secret_outputs=COMMAND_SECRET_OUTPUTS,
        nodes=tuple(node_ref(cname, n.hostname) for n in plan.nodes),
    )


def desired_state(fleet: Fleet) -> DesiredState:
    """Every resource and provider call, in the order the program registers them."""
    resources: list[Resource] = [Resource(kind="provider:talos", name=naming.talos_provider())]
    resources += _images(fleet)
    for hypervisor in plan_hypervisors(fleet):
        resources += _hypervisor(hypervisor)
    for pxe in plan_pxe(fleet):
        resources += _pxe(fleet, pxe)
    for cname in fleet.clusters:
        resources += _cluster(fleet, cname)
    return DesiredState(resources=tuple(resources))
