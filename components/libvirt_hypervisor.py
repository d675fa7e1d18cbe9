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
`console` (`type`, `target_port`, `target_type`) and `xml.xslt` (by their wire names, with the
schema's other ForceNew fields, in talos_fleet.providers.RULES["Domain"]). Each is derived only
from the node's own stable facts (cluster, hostname, role, size, data disks) and its
hypervisor's fixed settings (pool, firmware, NVRAM template):
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

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_libvirt as libvirt

from components.cluster_operations import local_command
from components.wire import Wiring, snake
from talos_fleet import desired, naming
from talos_fleet.desired import GIB, domain_description, domain_xslt

__all__ = [
    "GIB",
    "LibvirtHypervisor",
    "LibvirtHypervisorArgs",
    "domain_description",
    "domain_xslt",
]


@dataclass(frozen=True)
class LibvirtHypervisorArgs:
    resource: desired.Resource
    """This host's record in the desired state (talos_fleet.desired)."""
    state: desired.DesiredState
    """The whole desired state: this component builds its record's children."""
    wiring: Wiring
    """Resolves placeholders (boot-media URLs, ids) and options."""


class LibvirtHypervisor(pulumi.ComponentResource):
    """The provider for this host's URI (every child uses it), its managed network, one boot
    ISO volume per boot medium, and per VM: its DHCP-entry step, volumes and domain."""

    def __init__(self, name: str, args: LibvirtHypervisorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.HYPERVISOR_COMPONENT_TYPE, name, None, opts)
        wiring = args.wiring
        wiring.add(args.resource, self)
        for child in args.state.children(args.resource.key):
            wiring.add(child, _create(child, wiring))
        self.register_outputs({})


def _create(resource: desired.Resource, wiring: Wiring) -> pulumi.Resource:
    inputs, opts = wiring.inputs(resource), wiring.options(resource)
    if resource.kind == "provider:libvirt":
        return libvirt.Provider(resource.name, uri=inputs["uri"], opts=opts)
    if resource.kind == "Network":
        dns = inputs["dns"]
        return libvirt.Network(
            resource.name,
            name=inputs["name"],
            mode=inputs["mode"],
            addresses=inputs["addresses"],
            autostart=inputs["autostart"],
            dhcp=libvirt.NetworkDhcpArgs(**snake(inputs["dhcp"])),
            dns=libvirt.NetworkDnsArgs(
                enabled=dns["enabled"],
                local_only=dns["localOnly"],
                forwarders=[libvirt.NetworkDnsForwarderArgs(**snake(f)) for f in dns.get("forwarders", [])] or None,
            ),
            opts=opts,
        )
    if resource.kind == "Volume":
        return libvirt.Volume(resource.name, **snake(inputs), opts=opts)
    if resource.kind == "Command":
        return local_command(resource, inputs, opts)
    if resource.kind == "Domain":
        return _domain(resource, inputs, opts)
    raise ValueError(f"{resource.key}: not a libvirt hypervisor's resource")


def _domain(resource: desired.Resource, inputs: dict[str, Any], opts: pulumi.ResourceOptions) -> libvirt.Domain:
    nested = {
        "nvram": libvirt.DomainNvramArgs(**snake(inputs["nvram"])),
        "cpu": libvirt.DomainCpuArgs(**snake(inputs["cpu"])),
        "disks": [libvirt.DomainDiskArgs(**snake(d)) for d in inputs["disks"]],
        "network_interfaces": [libvirt.DomainNetworkInterfaceArgs(**snake(n)) for n in inputs["networkInterfaces"]],
        "boot_devices": [libvirt.DomainBootDeviceArgs(**snake(b)) for b in inputs["bootDevices"]],
        "consoles": [libvirt.DomainConsoleArgs(**snake(c)) for c in inputs["consoles"]],
        "xml": libvirt.DomainXmlArgs(**snake(inputs["xml"])),
    }
    return libvirt.Domain(resource.name, **{**snake(inputs), **nested}, opts=opts)
