"""LibvirtHypervisor: one libvirt/KVM host and the Talos VMs talos-fleet runs on it.

Every libvirt call of the program is in this file: pulumi-libvirt 0.5.4 bridges the legacy
terraform-provider-libvirt 0.8.1, deprecated upstream; moving to its successor touches only here.
Schema and behaviour followed: https://github.com/dmacvicar/terraform-provider-libvirt/tree/v0.8.1/website/docs

    Provider (this host's URI; every child uses it, nothing falls back to a default provider)
      ├─ Network (managed: NAT/routed, DHCP; each VM's NIC reserves its IP for its MAC)
      ├─ Volume per boot medium (the Image Factory ISO, downloaded once per host)
      └─ per VM: system Volume, data Volumes, Domain (q35, UEFI, host-passthrough CPU)

Boot media: the ISO, not the nocloud disk image. A VM boots the ISO into maintenance mode at its
reserved address and Talos installs itself to the empty system disk: the same flow as metal, so
one apply path serves both. A disk cloned from the nocloud image would be backed by that image
(libvirt needs it uncompressed, i.e. a .raw.xz unpacked on the host first), pinning every node
disk to the Talos version it was created with, and a version bump would replace either the base
or the disks. With the ISO, node disks never depend on the Talos version: upgrades happen in
place with `talosctl upgrade` (#4), and a new ISO only serves VMs created after it.

ForceNew: a change to any of these Domain inputs destroys and recreates the VM (its volumes are
separate resources and stay), per the schema in dmacvicar/terraform-provider-libvirt
v0.8.1:libvirt/resource_libvirt_domain.go: `name`, `description`, `vcpu`, `memory`, `firmware`,
`nvram` (`file`, `template`), `type` (left at its default), `disk` (the whole list), `cpu`,
`console` (`type`, `target_port`, `target_type`) and `xml.xslt` (FORCE_NEW_DOMAIN_INPUTS, by
their wire names). Each is derived only from the node's own stable facts (cluster, hostname,
role, size, data disks) and its hypervisor's fixed settings (pool, firmware, NVRAM template):
adding or removing another node, a Talos or Kubernetes version, a schematic or a patch never
reaches them, and no text a code change might casually edit does (`domain_description` is
frozen). The boot ISO in `disk` is ignored after creation. `network_interface`, `autostart`,
`running`, `boot_device` and `qemu_agent` are not ForceNew.

DHCP host entries: on a managed network the provider adds each NIC's (MAC, hostname, IP) to the
network and never removes it (libvirt/network_def.go updateOrAddHost; resourceLibvirtDomainDelete
does not touch the network), so a per-VM pulumi-command step (`talos_fleet.dhcp_hosts`) clears
colliding stale entries before the VM is created and releases the VM's entry once it is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_libvirt as libvirt

from components.cluster_operations import project_directory
from components.wire import after
from talos_fleet import dhcp_hosts, naming
from talos_fleet.plan import HypervisorPlan, VmPlan

GIB = 1024**3

# The Domain inputs whose change replaces the VM (module docstring), as sent on the wire.
FORCE_NEW_DOMAIN_INPUTS = (
    "name",
    "description",
    "vcpu",
    "memory",
    "firmware",
    "nvram",
    "type",
    "disks",
    "cpu",
    "consoles",
    "xml",
)


@dataclass(frozen=True)
class LibvirtHypervisorArgs:
    plan: HypervisorPlan
    """This host, its network, boot media and VMs (from `plan_hypervisors`)."""
    iso_urls: Mapping[str, pulumi.Input[str]]
    """Image Factory ISO URL by boot-media key (from TalosImages)."""


class LibvirtHypervisor(pulumi.ComponentResource):
    node_addresses: dict[str, pulumi.Output[str]]
    """Each VM's IP by hostname, resolved once its domain exists: a data edge for config apply."""

    def __init__(self, name: str, args: LibvirtHypervisorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.HYPERVISOR_COMPONENT_TYPE, name, None, opts)
        plan = args.plan
        provider = libvirt.Provider(
            naming.libvirt_provider(plan.name), uri=plan.uri, opts=pulumi.ResourceOptions(parent=self)
        )
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)

        network = None
        if plan.managed is not None:
            network = libvirt.Network(
                naming.libvirt_network(plan.name),
                name=plan.network_name,
                mode=plan.managed.mode,
                addresses=[plan.managed.cidr],
                autostart=True,
                dhcp=libvirt.NetworkDhcpArgs(enabled=True),
                dns=libvirt.NetworkDnsArgs(
                    enabled=True,
                    local_only=False,
                    forwarders=[libvirt.NetworkDnsForwarderArgs(address=ip) for ip in plan.managed.dns] or None,
                ),
                opts=on_host,
            )

        isos = {
            media.key: libvirt.Volume(
                naming.boot_media(plan.name, media.key),
                # The key names the content; the .iso suffix makes the provider attach it as a CD-ROM.
                name=f"talos-{media.key}.iso",
                pool=plan.pool,
                source=args.iso_urls[media.key],
                format="raw",
                opts=on_host,
            )
            for media in plan.boot_media
        }

        self.node_addresses = {}
        for vm in plan.vms:
            entry = None if network is None else self._dhcp_entry(vm, plan, network)
            domain = self._vm(vm, plan, network, entry, isos[vm.boot_media], on_host)
            # The address is known from the spec; reading it through the domain makes config apply
            # wait until the VM exists (and, on a managed network, holds its DHCP lease).
            self.node_addresses[vm.hostname] = after(domain, vm.ip)
        self.register_outputs({"nodeAddresses": self.node_addresses})

    def _dhcp_entry(self, vm: VmPlan, plan: HypervisorPlan, network: libvirt.Network) -> command.local.Command:
        """Clears stale entries colliding with this VM's before it is created; releases its entry
        after it is deleted. Inputs are the node's own facts only: another node never updates it."""
        return command.local.Command(
            naming.vm_dhcp_entry(vm.cluster, vm.hostname),
            create=dhcp_hosts.command("clear-stale"),
            delete=dhcp_hosts.command("release"),
            environment={
                "TALOS_FLEET_LIBVIRT_URI": plan.uri,
                # A data edge: the network exists first and is deleted only after the entry is released.
                "TALOS_FLEET_NETWORK": network.name,
                "TALOS_FLEET_HOSTNAME": vm.hostname,
                "TALOS_FLEET_MAC": vm.mac,
                "TALOS_FLEET_IP": vm.ip,
            },
            # pulumi-command runs in the provider's working directory unless `dir` is set
            # (pulumi/pulumi-command v1.2.1:provider/pkg/provider/local/commandOutputs.go run);
            # the same relative project root as the day-2 steps, so a moved checkout changes nothing.
            dir=project_directory(),
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _vm(
        self,
        vm: VmPlan,
        plan: HypervisorPlan,
        network: libvirt.Network | None,
        dhcp_entry: command.local.Command | None,
        iso: libvirt.Volume,
        on_host: pulumi.ResourceOptions,
    ) -> libvirt.Domain:
        # Disk sizes are ignored after creation: provider 0.8.1 can only change a volume's size by
        # replacing it, which would erase the node. Grow a disk with `virsh vol-resize` instead.
        keep_size = pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(ignore_changes=["size"]))
        domain_name = naming.vm_domain(vm.cluster, vm.hostname)
        system = libvirt.Volume(
            naming.vm_system_disk(vm.cluster, vm.hostname),
            name=f"{domain_name}.qcow2",
            pool=plan.pool,
            format="qcow2",
            size=vm.disk_gib * GIB,
            opts=keep_size,
        )
        data = [
            libvirt.Volume(
                naming.vm_data_disk(vm.cluster, vm.hostname, disk.name),
                name=f"{domain_name}-{disk.name}.qcow2",
                pool=plan.pool,
                format="qcow2",
                size=disk.size_gib * GIB,
                opts=keep_size,
            )
            for disk in vm.data_disks
        ]
        # Disk order fixes the guest's device names: system disk vda, data disks vdb..., then the
        # boot ISO as a CD-ROM (libvirt target hda, moved to SATA by the stylesheet).
        disks = [
            libvirt.DomainDiskArgs(volume_id=system.id),
            *(libvirt.DomainDiskArgs(volume_id=volume.id) for volume in data),
            # A directory pool's volume key is the file's path.
            libvirt.DomainDiskArgs(file=iso.id),
        ]
        iso_index = len(disks) - 1
        nic = libvirt.DomainNetworkInterfaceArgs(
            mac=vm.mac,
            hostname=vm.hostname,
            **(
                # The provider adds a DHCP host entry (MAC -> IP) to the network for this NIC, and
                # creation waits for the lease: the VM is up in maintenance mode at its address.
                {"network_id": network.id, "addresses": [vm.ip], "wait_for_lease": True}
                if network is not None
                else {"bridge": plan.bridge}
            ),
        )
        return libvirt.Domain(
            naming.vm_domain(vm.cluster, vm.hostname),
            name=domain_name,
            description=domain_description(vm),
            machine="q35",
            firmware=plan.firmware,
            nvram=libvirt.DomainNvramArgs(
                file=f"/var/lib/libvirt/qemu/nvram/{domain_name}_VARS.fd", template=plan.nvram_template
            ),
            # Talos needs x86-64-v2; the default qemu64 model halts at boot.
            cpu=libvirt.DomainCpuArgs(mode="host-passthrough"),
            vcpu=vm.cpus,
            memory=vm.memory_mib,
            disks=disks,
            network_interfaces=[nic],
            boot_devices=[libvirt.DomainBootDeviceArgs(devs=["hd", "cdrom"])],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            # The provider always defines the org.qemu.guest_agent.0 channel; the stylesheet makes
            # sure of it. qemu_agent would make the provider read addresses through the agent,
            # which talos-fleet never needs: addresses come from the spec.
            qemu_agent=False,
            autostart=True,
            running=True,
            xml=libvirt.DomainXmlArgs(xslt=domain_xslt(tuple(d.name for d in vm.data_disks))),
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    # Ordering only: the stale-entry check runs before the VM is created, and the
                    # entry is released only after the VM is deleted (Pulumi deletes dependents first).
                    depends_on=[dhcp_entry] if dhcp_entry is not None else [],
                    # vCPUs, memory, disks and the stylesheet are ForceNew in provider 0.8.1, and
                    # the domain's name is fixed: Pulumi's default (create the replacement first)
                    # would clash with the old domain's name. Its volumes are separate and stay.
                    delete_before_replace=True,
                    ignore_changes=[
                        # A new boot ISO (Talos version or schematic bump) serves only new VMs; an
                        # installed node boots from its disk and upgrades in place (#4). Every disk
                        # change would otherwise replace the domain.
                        f"disks[{iso_index}]",
                        # libvirt reports the NVRAM file back in its own form: a perpetual diff.
                        "nvram",
                        # Read back from DHCP leases (and empty while the VM is off): a perpetual
                        # diff. The reservation itself is made at creation from the spec's address.
                        *(["networkInterfaces[0].addresses"] if network is not None else []),
                    ],
                ),
            ),
        )


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
