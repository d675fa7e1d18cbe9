"""MatchboxPxe: PXE-boot a metal source's blank machines into Talos maintenance mode.

Uses an existing matchbox server (https://matchbox.psdn.io/) through pulumiverse-matchbox: one
profile per boot medium (Talos version, schematic, architecture) pointing at the Image Factory's
PXE kernel and initramfs, and one group per machine, selected by its MAC. A machine that network
boots then comes up in maintenance mode at the address its DHCP reservation gives it, where
TalosCluster applies its config and Talos installs itself to disk (so later boots are local).
https://www.talos.dev/v1.13/talos-guides/install/bare-metal-platforms/matchbox/
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumiverse_matchbox as matchbox

from components.wire import Wiring
from talos_fleet import desired, naming


@dataclass(frozen=True)
class MatchboxPxeArgs:
    resource: desired.Resource
    """This metal source's record in the desired state (talos_fleet.desired)."""
    state: desired.DesiredState
    """The whole desired state: this component builds its record's children (the provider for
    its matchbox server, one profile per boot medium, one group per machine)."""
    wiring: Wiring
    """Resolves placeholders (PXE asset URLs, the matchbox credentials as secrets) and options."""


class MatchboxPxe(pulumi.ComponentResource):
    # Groups and profiles are deleted before they are replaced: the desired state says why
    # (talos_fleet.desired, _pxe).

    def __init__(self, name: str, args: MatchboxPxeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.MATCHBOX_COMPONENT_TYPE, name, None, opts)
        wiring = args.wiring
        wiring.add(args.resource, self)
        for child in args.state.children(args.resource.key):
            inputs, options = wiring.inputs(child), wiring.options(child)
            created: pulumi.Resource
            if child.kind == "provider:matchbox":
                created = matchbox.Provider(
                    child.name,
                    endpoint=inputs["endpoint"],
                    ca=inputs["ca"],
                    client_cert=inputs["clientCert"],
                    client_key=inputs["clientKey"],
                    opts=options,
                )
            elif child.kind == "Profile":
                created = matchbox.Profile(child.name, **inputs, opts=options)
            elif child.kind == "Group":
                created = matchbox.Group(child.name, **inputs, opts=options)
            else:
                raise ValueError(f"{child.key}: not a matchbox resource")
            wiring.add(child, created)
        self.register_outputs({})
