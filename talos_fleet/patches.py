"""Patch rendering, layered cluster -> role -> node. Pure functions of the spec.

Talos applies patches in order on top of the generated base config; a later document wins.
talos-fleet always uses this order:

1. cluster layer: what talos-fleet derives from the cluster spec (KubePrism, scheduling on
   control planes, nameservers, disk encryption), then the cluster's own `patches`;
2. role layer: what it derives for the role (the VIP on control planes), then the fleet's
   `defaults.roles.<role>.patches`, then the cluster's `roles.<role>.patches`;
3. node layer: hostname, link alias (VMs), static address, install disk and installer image,
   labels, then the node's own `patches`.

Layers 1 and 2 go into the role's config generation: one secret machine config per role, shared
byte for byte by every node of that role. Layer 3 is the node's plaintext `config_patches`, so a
preview shows exactly which nodes a change touches. Nothing secret is ever in layer 3.

Documents use the Talos 1.13 multi-document kinds where they exist (HostnameConfig, LinkConfig,
LinkAliasConfig, Layer2VIPConfig, ResolverConfig, VolumeConfig); v1alpha1 keeps only what has no document yet
(install, node labels, KubePrism, scheduling). Reference:
https://www.talos.dev/v1.13/reference/configuration/
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from talos_fleet import naming
from talos_fleet.spec import (
    ROLES,
    Cluster,
    EncryptionKey,
    Fleet,
    ImageSpec,
    LibvirtSource,
    Role,
    StaticKey,
    patch_secret_references,
    secret_reference,
)

Document = dict[str, Any]


def _doc(kind: str, **fields: Any) -> Document:
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


# ---------------------------------------------------------------------------------------------
# Layer 1: cluster


def cluster_documents(cluster: Cluster, secrets: Mapping[str, str]) -> list[Document]:
    """The cluster layer. `secrets` resolves secret names (static disk keys) to their values;
    this layer goes only into the secret config generation, never into a node patch."""
    v1alpha1: Document = {
        "machine": {"features": {"kubePrism": {"enabled": cluster.kube_prism.enabled, "port": cluster.kube_prism.port}}}
    }
    if cluster.allow_scheduling_on_control_planes:
        v1alpha1["cluster"] = {"allowSchedulingOnControlPlanes": True}
    docs = [v1alpha1]
    if cluster.network.nameservers:
        docs.append(_doc("ResolverConfig", nameservers=[{"address": ns} for ns in cluster.network.nameservers]))
    if cluster.disk_encryption is not None:
        volumes = (("STATE", cluster.disk_encryption.state), ("EPHEMERAL", cluster.disk_encryption.ephemeral))
        docs.extend(_volume_encryption(volume, keys, secrets) for volume, keys in volumes if keys)
    return docs


def _volume_encryption(volume: str, keys: tuple[EncryptionKey, ...], secrets: Mapping[str, str]) -> Document:
    rendered: list[Document] = []
    for slot, key in enumerate(keys):
        if isinstance(key, StaticKey):
            rendered.append({"slot": slot, "static": {"passphrase": secrets[key.static]}})
        else:
            rendered.append({"slot": slot, key: {}})
    return _doc("VolumeConfig", name=volume, encryption={"provider": "luks2", "keys": rendered})


# ---------------------------------------------------------------------------------------------
# Layer 2: role


def role_documents(cluster: Cluster, role: Role) -> list[Document]:
    docs: list[Document] = []
    if role == "controlplane" and cluster.endpoint.vip is not None:
        # The VIP is announced by the etcd leader among control planes; it exists only after
        # bootstrap, so nothing talos-fleet talks to (bootstrap, talosconfig) ever targets it.
        docs.append(_doc("Layer2VIPConfig", name=cluster.endpoint.vip, link=cluster.network.link))
    return docs


def role_config_patches(fleet: Fleet, cluster: Cluster, role: Role, secrets: Mapping[str, str]) -> list[str]:
    """`config_patches` of the role's config generation: the cluster layer, then the role layer.

    Each layer is its derived documents as one YAML string, then each user patch as a string of
    its own: a patch string may hold one v1alpha1 document at most. `{secret: <name>}` in a user
    patch is `secrets[name]`: the role's generated config is secret as a whole.
    """
    cluster_patches = tuple(resolve_references(p, secrets) for p in cluster.patches)
    role_patches = tuple(resolve_references(p, secrets) for p in fleet.role_patches(cluster, role))
    return _layer(cluster_documents(cluster, secrets), cluster_patches) + _layer(
        role_documents(cluster, role), role_patches
    )


def resolve_references(value: Any, secrets: Mapping[str, str]) -> Any:
    """`value` with every `{secret: <name>}` replaced by `secrets[name]`."""
    if (name := secret_reference(value)) is not None:
        return secrets[name]
    if isinstance(value, dict):
        return {k: resolve_references(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, secrets) for v in value]
    return value


# The fields that name a document: a secret overlay carries them so Talos merges it into the
# document it completes (documents with equal apiVersion, kind and name are merged:
# siderolabs/talos v1.13.9:pkg/machinery/config/configpatcher/strategic.go StrategicMerge).
_DOCUMENT_NAME = ("apiVersion", "kind", "name")


def split_references(patch: Document) -> tuple[Document | None, Document | None]:
    """A node patch as (its plaintext part, its secret overlay): the overlay holds only the
    fields that reference a secret (as `<secret:name>`, resolved inside a Pulumi secret), and
    the document's name, so the node's own patch stays readable in previews. None: empty."""

    def strip(value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        plain: dict[str, Any] = {}
        secret: dict[str, Any] = {}
        for k, v in value.items():
            if (name := secret_reference(v)) is not None:
                secret[k] = f"<secret:{name}>"
            elif isinstance(v, dict) and patch_secret_references(v):
                inner_plain, inner_secret = strip(v)
                if inner_plain:
                    plain[k] = inner_plain
                secret[k] = inner_secret
            else:
                plain[k] = v
        return plain, secret

    if not patch_secret_references(patch):
        return patch, None
    plain, secret = strip(patch)
    named = {k: patch[k] for k in _DOCUMENT_NAME if k in patch and isinstance(patch[k], str)}
    overlay = {**named, **{k: v for k, v in secret.items() if k not in named}}
    left = {**named, **plain} if set(plain) - set(named) else None
    return left, overlay


def _layer(derived: list[Document], user: tuple[Document, ...]) -> list[str]:
    return ([to_yaml(derived)] if derived else []) + [to_yaml([patch]) for patch in user]


# ---------------------------------------------------------------------------------------------
# Layer 3: node


def node_documents(fleet: Fleet, cname: str, hostname: str, installer_image: str) -> list[Document]:
    cluster = fleet.clusters[cname]
    node = cluster.nodes[hostname]
    link = node.link or cluster.network.link
    machine: Document = {
        "install": {"disk": fleet.install_disk(cluster, node), "image": installer_image},
    }
    if node.labels:
        machine["nodeLabels"] = dict(sorted(node.labels.items()))
    docs: list[Document] = [
        {"machine": machine},
        # The generated 1.13 config carries `HostnameConfig{auto: stable}` and patches merge into
        # it, so `auto: off` must be explicit or Talos rejects auto and hostname together
        # (siderolabs/talos#12891).
        _doc("HostnameConfig", auto="off", hostname=hostname),
    ]
    if isinstance(fleet.sources[node.source], LibvirtSource) and link is not None:
        # A VM's kernel NIC name depends on its PCI layout; the MAC is ours, so name the NIC by
        # it and every other document (address, VIP) can use the alias on any hypervisor.
        # https://www.talos.dev/v1.13/reference/configuration/network/linkaliasconfig/
        mac = fleet.mac(cname, hostname)
        docs.append(_doc("LinkAliasConfig", name=link, selector={"match": f'mac(link.permanent_addr) == "{mac}"'}))
    if cluster.addressing_of(node) == "static":
        prefix = ipaddress.ip_network(cluster.network.cidr).prefixlen
        docs.append(
            _doc(
                "LinkConfig",
                name=link,
                addresses=[{"address": f"{node.ip}/{prefix}"}],
                routes=[{"gateway": node.gateway or cluster.network.gateway}],
            )
        )
    return docs


def node_config_patches(fleet: Fleet, cname: str, hostname: str, installer_image: str) -> list[str]:
    """The `config_patches` of a node's apply: its derived documents, then its own patches. A
    patch that references a secret is split (split_references): its plaintext part, then an
    overlay with `<secret:name>` where the secret goes; only the overlay becomes a Pulumi secret."""
    derived = node_documents(fleet, cname, hostname, installer_image)
    own: list[Document] = []
    for patch in fleet.clusters[cname].nodes[hostname].patches:
        own += [part for part in split_references(patch) if part is not None]
    return _layer(derived, tuple(own))


def secret_stand_ins(fleet: Fleet) -> dict[str, str]:
    """Every secret as `<secret:name>`: what offline renderings (`render`, `make plan`) put where
    a secret value goes, so they never need, or show, one."""
    return {name: f"<secret:{name}>" for name in fleet.secrets}


def render_fleet(
    fleet: Fleet, secrets: Mapping[str, str], installer: Callable[[str, str, str], str]
) -> dict[str, list[str]]:
    """Every patch list of the fleet, keyed like its consumer: `naming.role_config_label` for the
    role config generations, `naming.node_apply` for the node applies. `installer(cluster,
    talos_version, architecture)` stands in for the Image Factory installer, which needs the factory."""
    out: dict[str, list[str]] = {}
    for cname, cluster in fleet.clusters.items():
        for role in ROLES:
            out[naming.role_config_label(cname, role)] = role_config_patches(fleet, cluster, role, secrets)
        for host, node in cluster.nodes.items():
            image = installer(cname, fleet.talos_version(cluster), fleet.sources[node.source].architecture)
            out[naming.node_apply(cname, host)] = node_config_patches(fleet, cname, host, image)
    return out


# ---------------------------------------------------------------------------------------------
# Image Factory


def schematic_documents(image: ImageSpec) -> Document:
    """The Image Factory schematic (https://www.talos.dev/v1.13/learn-more/image-factory/).
    Extensions are sorted so equal sets give one schematic id; kernel args keep their order."""
    customization: Document = {}
    if image.kernel_args:
        customization["extraKernelArgs"] = list(image.kernel_args)
    if image.extensions:
        customization["systemExtensions"] = {"officialExtensions": sorted(set(image.extensions))}
    return {"customization": customization}


def schematic_yaml(image: ImageSpec) -> str:
    return to_yaml([schematic_documents(image)])


# Strings Go's yaml.v3 writes plain (unquoted) in block style: starting with a letter, no space,
# no YAML indicator, and not a word YAML 1.1 or 1.2 reads as a bool or null.
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9._/=+-]*$")
_QUOTED_WORDS = {
    word
    for w in ("y", "yes", "n", "no", "true", "false", "on", "off", "null")
    for word in (w, w.capitalize(), w.upper())
}


def schematic_id(image: ImageSpec) -> str | None:
    """The Image Factory's id for this schematic, computed offline, or None when this function
    cannot be sure of it.

    The factory parses the posted schematic and hashes its canonical form: Go yaml.v3's
    `Marshal` of its struct (fields in declaration order, 4-space indent, empty customization as
    `{}`), SHA-256, hex (siderolabs/image-factory pkg/schematic/schematic.go, `ID`). Only lists of
    strings are written here, so the form is rebuilt exactly when every string is one yaml.v3
    writes plain; anything else (a kernel argument with a space or a quote) gives None, and
    callers show the schematic's content instead.
    """
    customization = schematic_documents(image)["customization"]
    strings = [
        *customization.get("extraKernelArgs", ()),
        *customization.get("systemExtensions", {}).get("officialExtensions", ()),
    ]
    if any(not _PLAIN.match(s) or s in _QUOTED_WORDS for s in strings):
        return None
    lines = ["customization:" + ("" if customization else " {}")]
    if "extraKernelArgs" in customization:
        lines += ["    extraKernelArgs:", *(f"        - {arg}" for arg in customization["extraKernelArgs"])]
    if "systemExtensions" in customization:
        extensions = customization["systemExtensions"]["officialExtensions"]
        lines += ["    systemExtensions:", "        officialExtensions:", *(f"            - {e}" for e in extensions)]
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


# ---------------------------------------------------------------------------------------------


def to_yaml(docs: list[Document]) -> str:
    """Multi-document YAML, keys in the order built (stable), strings quoted where YAML 1.1 would
    read them as something else (e.g. `off`)."""
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=False)


# Kernel arguments Talos needs when booted by PXE (the factory's ISO and disk images carry them
# already): https://www.talos.dev/v1.13/reference/kernel/ and the matchbox guide
# https://www.talos.dev/v1.13/talos-guides/install/bare-metal-platforms/matchbox/
PXE_KERNEL_ARGS = (
    "talos.platform=metal",
    "console=tty0",
    "console=ttyS0",
    "init_on_alloc=1",
    "slab_nomerge",
    "pti=on",
    "printk.devkmsg=on",
)


def pxe_kernel_args(image: ImageSpec, initramfs_url: str) -> list[str]:
    """The matchbox profile's kernel arguments: `initrd=` names the initramfs as iPXE loaded it
    (the URL's last segment), then Talos' required arguments, then the schematic's own."""
    return [f"initrd={initramfs_url.rsplit('/', 1)[-1]}", *PXE_KERNEL_ARGS, *image.kernel_args]
