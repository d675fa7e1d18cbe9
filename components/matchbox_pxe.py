"""MatchboxPxe: PXE-boot a metal source's blank machines into Talos maintenance mode.

Uses an existing matchbox server (https://matchbox.psdn.io/) through pulumiverse-matchbox: one
profile per boot medium (Talos version, schematic, architecture) pointing at the Image Factory's
PXE kernel and initramfs, and one group per machine, selected by its MAC. A machine that network
boots then comes up in maintenance mode at the address its DHCP reservation gives it, where
TalosCluster applies its config and Talos installs itself to disk (so later boots are local).
https://www.talos.dev/v1.13/talos-guides/install/bare-metal-platforms/matchbox/
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumiverse_matchbox as matchbox

from components.wire import after
from talos_fleet import naming, patches
from talos_fleet.plan import PxePlan
from talos_fleet.spec import ImageSpec


@dataclass(frozen=True)
class PxeAssets:
    kernel: pulumi.Input[str]
    initramfs: pulumi.Input[str]
    image: ImageSpec
    """The schematic's content: its kernel arguments go on the PXE command line."""


@dataclass(frozen=True)
class MatchboxPxeArgs:
    plan: PxePlan
    """The metal source, its matchbox server, boot media and machines (from `plan_pxe`)."""
    credentials: Mapping[str, pulumi.Input[str]]
    """`ca`, `clientCert` and `clientKey` PEM values, as Pulumi secrets."""
    assets: Mapping[str, PxeAssets]
    """Image Factory PXE assets by boot-media key (from TalosImages)."""


class MatchboxPxe(pulumi.ComponentResource):
    node_addresses: dict[str, pulumi.Output[str]]
    """Each machine's IP by hostname, resolved once its group exists: a data edge for config apply."""

    def __init__(self, name: str, args: MatchboxPxeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.MATCHBOX_COMPONENT_TYPE, name, None, opts)
        plan = args.plan
        provider = matchbox.Provider(
            naming.matchbox_provider(plan.source),
            endpoint=plan.matchbox.endpoint,
            ca=pulumi.Output.secret(args.credentials["ca"]),
            client_cert=pulumi.Output.secret(args.credentials["clientCert"]),
            client_key=pulumi.Output.secret(args.credentials["clientKey"]),
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_server = pulumi.ResourceOptions(parent=self, provider=provider)
        # Every group and profile field is ForceNew, and the matchbox provider creates by upserting
        # the *name* and deletes by name (poseidon/terraform-provider-matchbox v0.5.4:
        # matchbox/resource_group.go GroupPut/GroupDelete with Id = name; resource_profile.go the
        # same). Pulumi's default create-then-delete replacement would upsert the new entry, then
        # delete it under the shared name: the machine would no longer PXE-boot. Delete first.
        replaced_in_place = pulumi.ResourceOptions.merge(on_server, pulumi.ResourceOptions(delete_before_replace=True))
        profiles = {}
        for media in plan.boot_media:
            assets = args.assets[media.key]
            profiles[media.key] = matchbox.Profile(
                naming.pxe_profile(plan.source, media.key),
                name=f"talos-{media.key}",
                kernel=assets.kernel,
                initrds=[assets.initramfs],
                args=pulumi.Output.from_input(assets.initramfs).apply(
                    functools.partial(patches.pxe_kernel_args, assets.image)
                ),
                opts=replaced_in_place,
            )
        self.node_addresses = {}
        for host in plan.hosts:
            group = matchbox.Group(
                naming.pxe_group(host.cluster, host.hostname),
                name=naming.vm_domain(host.cluster, host.hostname),
                profile=profiles[host.boot_media].name,
                selector={"mac": host.mac},
                opts=replaced_in_place,
            )
            self.node_addresses[host.hostname] = after(group, host.ip)
        self.register_outputs({"nodeAddresses": self.node_addresses})
