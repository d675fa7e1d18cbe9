"""TalosImages: the Image Factory side of the fleet, shared by clusters and machine sources.

One `Schematic` per cluster (its id is the content hash, so equal schematics get equal ids) and
one `get_urls` per cluster and architecture. Clusters take the installer image from here;
hypervisors take the ISO, matchbox the PXE kernel and initramfs, and the `bootMedia` output shows
operators the same URLs `make urls` prints offline (talos_fleet.factory). Kept apart from TalosCluster
because machines must exist (and so their boot media) before a cluster can configure them.
https://www.talos.dev/v1.13/learn-more/image-factory/
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pulumi
import pulumiverse_talos as talos

from components.wire import Wiring
from talos_fleet import desired, factory, naming


@dataclass(frozen=True)
class TalosImagesArgs:
    resource: desired.Resource
    """The images record in the desired state (talos_fleet.desired)."""
    state: desired.DesiredState
    """The whole desired state: one schematic per cluster, URLs per architecture its nodes use."""
    wiring: Wiring
    """Where the factory URLs go for the other components, by `naming.installer_urls`."""


class TalosImages(pulumi.ComponentResource):
    boot_media: dict[str, dict[str, pulumi.Output[dict[str, str]]]]
    """By cluster and architecture: the schematic id and the URLs `make urls` prints."""

    def __init__(self, name: str, args: TalosImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.IMAGES_COMPONENT_TYPE, name, None, opts)
        wiring = args.wiring
        wiring.add(args.resource, self)
        self.boot_media = {}
        invoke = pulumi.InvokeOutputOptions(parent=self)
        for child in args.state.children(args.resource.key):
            inputs = wiring.inputs(child)
            if child.kind == "Schematic":
                wiring.add(child, talos.imagefactory.Schematic(child.name, **inputs, opts=wiring.options(child)))
                continue
            if child.kind != "getUrls":
                raise ValueError(f"{child.key}: not an Image Factory call")
            urls = talos.imagefactory.get_urls_output(
                architecture=inputs["architecture"],
                platform=inputs["platform"],
                schematic_id=inputs["schematicId"],
                talos_version=inputs["talosVersion"],
                opts=invoke,
            ).urls
            wiring.factory[child.name] = urls
            media = urls.apply(_named_urls)
            self.boot_media.setdefault(child.cluster or "", {})[str(child.inputs["architecture"])] = pulumi.Output.all(
                inputs["schematicId"], media
            ).apply(lambda got: {"schematicId": got[0], **got[1]})
        self.register_outputs({"bootMedia": self.boot_media})


def _named_urls(urls: talos.imagefactory.outputs.GetUrlsUrlsResult) -> dict[str, str]:
    """The provider's URLs that talos_fleet.factory computes offline, under the same names."""
    return {f.name: getattr(urls, f.name) for f in fields(factory.FactoryUrls)}
