"""Pulumi resource names, derived only from stable keys (cluster name and hostname).

Never from list positions or counts: adding, removing or reordering nodes in a stack file must
leave every other resource's name, and so its URN, untouched. Child URNs do not include the
parent's name, so every child name carries its cluster's name to stay unique in the stack.
A rename here must ship with `aliases` on the resource, or Pulumi replaces it.
"""

from __future__ import annotations

from talos_fleet.spec import Role

COMPONENT_TYPE = "talos-fleet:index:TalosCluster"


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


def talos_provider() -> str:
    return "talos"


def role_config_label(cluster: str, role: Role) -> str:
    """Not a resource name: how the role's generated config is referred to in outputs and plans."""
    return f"{cluster}/{role}"
