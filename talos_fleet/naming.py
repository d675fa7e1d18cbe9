"""Pulumi resource names, derived only from stable keys (cluster name and hostname).

Never from list positions or counts: adding, removing or reordering nodes in a stack file must
leave every other resource's name, and so its URN, untouched. Child URNs do not include the
parent's name, so every child name carries its cluster's name to stay unique in the stack.
A rename here must ship with `aliases` on the resource, or Pulumi replaces it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # spec derives MACs through this module; types only, no import cycle
    from talos_fleet.spec import Role

COMPONENT_TYPE = "talos-fleet:index:TalosCluster"
OPERATIONS_TYPE = "talos-fleet:index:ClusterOperations"


def cluster_component(cluster: str) -> str:
    return cluster


def secrets(cluster: str) -> str:
    return f"{cluster}-secrets"


def schematic(cluster: str) -> str:
    return f"{cluster}-schematic"


def node_apply(cluster: str, hostname: str) -> str:
    return f"{cluster}-{hostname}"


def bootstrap(cluster: str) -> str:
    return f"{cluster}-bootstrap"


def kubeconfig(cluster: str) -> str:
    return f"{cluster}-kubeconfig"


def operations_component(cluster: str) -> str:
    return f"{cluster}-operations"


def version_gate(cluster: str) -> str:
    return f"{cluster}-version-gate"


def node_lifecycle(cluster: str, hostname: str) -> str:
    """The node's day-2 command: upgrades it on update, drains and resets it on delete."""
    return f"{cluster}-{hostname}-lifecycle"


def upgrade_rollout(cluster: str) -> str:
    """The cluster's Talos upgrade rollout: walks the upgrade waves itself (talos_fleet.day2)."""
    return f"{cluster}-upgrade-rollout"


def config_rollout(cluster: str) -> str:
    """The cluster's config rollout: canary, then the waves, health-gated (talos_fleet.day2)."""
    return f"{cluster}-config-rollout"


def kubernetes_upgrade(cluster: str) -> str:
    return f"{cluster}-kubernetes-upgrade"


def talos_provider() -> str:
    return "talos"


def role_config_label(cluster: str, role: Role) -> str:
    """Not a resource name: how the role's generated config is referred to in outputs and plans."""
    return f"{cluster}/{role}"


def derived_mac(cluster: str, hostname: str) -> str:
    """A VM NIC's MAC from its stable keys: locally administered, unicast (first octet 02), 40 bits
    of SHA-256. Never changes while cluster and hostname stay, so DHCP reservations and link
    aliases never move; the spec refuses the (rare) collision within a fleet."""
    digest = hashlib.sha256(f"{cluster}/{hostname}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


# ---------------------------------------------------------------------------------------------
# Machine sources. Pulumi names carry the source (hypervisor) or cluster and hostname; the names
# of objects on a hypervisor (domains, volumes) are unique there because hostnames are unique in
# the fleet and carry their cluster.

IMAGES_COMPONENT_TYPE = "talos-fleet:index:TalosImages"
HYPERVISOR_COMPONENT_TYPE = "talos-fleet:index:LibvirtHypervisor"
MATCHBOX_COMPONENT_TYPE = "talos-fleet:index:MatchboxPxe"


def images_component() -> str:
    return "images"


def installer_urls(cluster: str, architecture: str) -> str:
    """Not a resource: the Image Factory URLs of a cluster's schematic for one architecture."""
    return f"{cluster}/{architecture}"


def libvirt_provider(source: str) -> str:
    return f"{source}-libvirt"


def libvirt_network(source: str) -> str:
    return f"{source}-network"


def boot_media(source: str, key: str) -> str:
    return f"{source}-boot-{key}"


def vm_domain(cluster: str, hostname: str) -> str:
    return f"{cluster}-{hostname}"


def vm_system_disk(cluster: str, hostname: str) -> str:
    return f"{cluster}-{hostname}-system"


def vm_data_disk(cluster: str, hostname: str, disk: str) -> str:
    return f"{cluster}-{hostname}-{disk}"


def matchbox_provider(source: str) -> str:
    return f"{source}-matchbox"


def pxe_profile(source: str, key: str) -> str:
    return f"{source}-pxe-{key}"


def pxe_group(cluster: str, hostname: str) -> str:
    return f"{cluster}-{hostname}-pxe"


def media_key(talos_version: str, schematic: str, architecture: str) -> str:
    """Names boot media by what is in them: Talos version, schematic content (hashed locally, so
    the key is known offline) and architecture. Equal media share one download per hypervisor."""
    digest = hashlib.sha256(schematic.encode()).hexdigest()[:10]
    return f"{talos_version.replace('.', '-')}-{digest}-{architecture}"


def vm_dhcp_entry(cluster: str, hostname: str) -> str:
    """The pulumi-command step that keeps a VM's DHCP host entry on a managed network clean."""
    return f"{cluster}-{hostname}-dhcp"
