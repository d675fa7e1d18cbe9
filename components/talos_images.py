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

from talos_fleet import factory, naming, patches
from talos_fleet.spec import Fleet


@dataclass(frozen=True)
class TalosImagesArgs:
    fleet: Fleet
    """The validated fleet: one schematic per cluster, URLs per architecture its nodes use."""


class TalosImages(pulumi.ComponentResource):
    schematic_ids: dict[str, pulumi.Output[str]]
    """Schematic id by cluster."""
    urls: dict[str, pulumi.Output[talos.imagefactory.outputs.GetUrlsUrlsResult]]
    """Factory URLs by `naming.installer_urls(cluster, architecture)`."""
    boot_media: dict[str, dict[str, pulumi.Output[dict[str, str]]]]
    """By cluster and architecture: the schematic id and the URLs `make urls` prints."""

    def __init__(self, name: str, args: TalosImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.IMAGES_COMPONENT_TYPE, name, None, opts)
        fleet = args.fleet
        self.schematic_ids = {}
        self.urls = {}
        self.boot_media = {}
        for cname, cluster in fleet.clusters.items():
            schematic = talos.imagefactory.Schematic(
                naming.schematic(cname),
                schematic=patches.schematic_yaml(fleet.image(cluster)),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # Earlier versions created the schematic under its TalosCluster: same resource, moved.
                    aliases=[
                        pulumi.Alias(parent=pulumi.create_urn(naming.cluster_component(cname), naming.COMPONENT_TYPE))
                    ],
                ),
            )
            self.schematic_ids[cname] = schematic.id
            for arch in fleet.architectures(cname):
                self.urls[naming.installer_urls(cname, arch)] = talos.imagefactory.get_urls_output(
                    architecture=arch,
                    platform="metal",
                    schematic_id=schematic.id,
                    talos_version=fleet.talos_version(cluster),
                    opts=pulumi.InvokeOutputOptions(parent=self),
                ).urls
                media = self.urls[naming.installer_urls(cname, arch)].apply(_named_urls)
                self.boot_media.setdefault(cname, {})[arch] = pulumi.Output.all(schematic.id, media).apply(
                    lambda got: {"schematicId": got[0], **got[1]}
                )
        self.register_outputs({"schematicIds": self.schematic_ids, "bootMedia": self.boot_media})


def _named_urls(urls: talos.imagefactory.outputs.GetUrlsUrlsResult) -> dict[str, str]:
    """The provider's URLs that talos_fleet.factory computes offline, under the same names."""
    return {f.name: getattr(urls, f.name) for f in fields(factory.FactoryUrls)}
