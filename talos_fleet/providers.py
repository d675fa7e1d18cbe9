"""What each provider does with a changed input: replace the resource, or update it, and what an
update actually applies. Read from the providers' sources at the versions the program pins;
`make plan` (talos_fleet.changes) predicts from these rules only.

Paths are wire names (camelCase, as talos_fleet.desired writes inputs); `a.b` is a nested field
of the object (or of every element of the list) at `a`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    replace: tuple[str, ...] | None
    """Inputs whose change replaces the resource; None: every input does."""
    applies: tuple[str, ...] | None
    """Inputs an update really applies; None: an update applies every input it is given. A change
    to any other input is recorded in the state and nothing else happens."""
    source: str
    """Where the rule is read from (repository, tag, file)."""


RULES: dict[str, Rule] = {
    # Schema fields marked ForceNew in resourceLibvirtDomain (file, attribute, nested attribute):
    # name, description, vcpu, memory, firmware, type, nvram (file, template), coreos_ignition,
    # fw_cfg_name, filesystem, disk, graphics (type, autoport, listen_*), console (type,
    # source_*, target_port, target_type), cpu, cmdline, tpm (model, backend_*), xml.xslt.
    # resourceLibvirtDomainUpdate applies only autostart, cloudinit and, per network interface
    # with a network_id, a changed hostname/addresses/mac as the network's DHCP host entry
    # (updateOrAddHost); it never touches the domain's own NIC, so a new network_id or bridge is
    # recorded but not applied.
    "Domain": Rule(
        replace=(
            "name",
            "description",
            "vcpu",
            "memory",
            "firmware",
            "type",
            "nvram",
            "coreosIgnition",
            "fwCfgName",
            "filesystems",
            "disks",
            "graphics",
            "consoles",
            "cpu",
            "cmdlines",
            "tpms",
            "xml",
        ),
        applies=(
            "autostart",
            "cloudinit",
            "networkInterfaces.hostname",
            "networkInterfaces.addresses",
            "networkInterfaces.mac",
        ),
        source="dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_domain.go",
    ),
    # Every attribute of resourceLibvirtVolume is ForceNew and it has no Update.
    "Volume": Rule(
        replace=None,
        applies=(),
        source="dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_volume.go",
    ),
    # ForceNew: name, domain, mode, bridge, addresses, dns.forwarders, dns.srvs, dhcp, routes,
    # xml.xslt. resourceLibvirtNetworkUpdate applies autostart and the DNS host entries
    # (updateDNSHosts); dns.enabled, dns.local_only, mtu and dnsmasq options are recorded only.
    "Network": Rule(
        replace=(
            "name",
            "domain",
            "mode",
            "bridge",
            "addresses",
            "dns.forwarders",
            "dns.srvs",
            "dhcp",
            "routes",
            "xml",
        ),
        applies=("autostart", "dns.hosts"),
        source="dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_network.go",
    ),
    # Every field of the group and profile schemas is ForceNew (no Update).
    "Group": Rule(
        replace=None,
        applies=(),
        source="poseidon/terraform-provider-matchbox v0.5.4:matchbox/resource_group.go",
    ),
    "Profile": Rule(
        replace=None,
        applies=(),
        source="poseidon/terraform-provider-matchbox v0.5.4:matchbox/resource_profile.go",
    ),
    # Only `triggers` is replaceOnChanges (common/inputs.go); any other change is an Update, which
    # runs `update`, or `create` when there is no update (local/commandController.go Update).
    "Command": Rule(
        replace=("triggers",),
        applies=None,
        source=(
            "pulumi/pulumi-command v1.2.1:provider/pkg/provider/common/inputs.go, "
            "provider/pkg/provider/local/commandController.go"
        ),
    ),
    # No attribute requires replacement; Update applies the config again (apply mode auto).
    "ConfigurationApply": Rule(
        replace=(),
        applies=None,
        source="siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_machine_configuration_apply_resource.go",
    ),
    # talosMachineFeaturesVersionPlanModifier: a lower talos_version requires replacement (a new
    # PKI). The program ignores talosVersion after creation, so it never reaches the provider.
    "Secrets": Rule(
        replace=("talosVersion",),
        applies=None,
        source="siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_machine_secrets_resource.go",
    ),
    # Update only stores the plan: bootstrap happens once.
    "Bootstrap": Rule(
        replace=(),
        applies=(),
        source="siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_machine_bootstrap_resource.go",
    ),
    "Kubeconfig": Rule(
        replace=(),
        applies=None,
        source="siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_cluster_kubeconfig_resource.go",
    ),
    # Update posts the new schematic and stores the id the factory answers.
    "Schematic": Rule(
        replace=(),
        applies=None,
        source="siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_image_factory_schematic_resource.go",
    ),
}

# A provider whose configuration changes replaces nothing it manages: every resource is reached
# through the new configuration from then on (../shared/talos/FACTS.md; talos_fleet.changes.diff).


def rule(kind: str) -> Rule | None:
    return RULES.get(kind)


def matches(path: str, field: str) -> bool:
    """Whether a changed `path` (e.g. `networkInterfaces[0].bridge`) is the rule's `field`
    (`networkInterfaces.bridge`) or inside it."""
    plain = _without_indices(path)
    return plain == field or plain.startswith(field + ".")


def _without_indices(path: str) -> str:
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
