"""Image Factory URLs for a schematic id, Talos version and architecture: pure, offline.

The Talos provider's `imagefactory.get_urls` builds its URLs from these three inputs without
asking the factory (siderolabs/terraform-provider-talos v0.11.0, the provider pulumiverse-talos
0.8.1 bridges: pkg/talos/talos_image_factory_urls_data_source.go, platform "metal"), with the
file names of Talos' metal platform (siderolabs/talos v1.13.9:pkg/machinery/platforms/platforms.go,
ISOPath, PXEScriptPath, KernelPath, InitramfsPath), on the factory's routes `/image/...`,
`/pxe/...` and its registry (siderolabs/image-factory v1.1.0:internal/frontend/http/http.go).
So `make urls` prints, before any `pulumi up`, exactly what the program's `bootMedia` output will
say, and the graph tests check the two agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

# The provider's default factory (terraform-provider-talos v0.11.0:pkg/talos/provider.go,
# ImageFactoryURL); talos-fleet never configures another one.
FACTORY = "https://factory.talos.dev"
PLATFORM = "metal"


@dataclass(frozen=True)
class FactoryUrls:
    installer: str
    """The installer image every node installs and upgrades to."""
    iso: str
    """Boot ISO (USB stick, virtual media, libvirt's CD-ROM)."""
    pxe: str
    """iPXE script that boots kernel and initramfs (chain it from your PXE server)."""
    kernel: str
    initramfs: str
    """Kernel and initramfs for a PXE server that serves them itself (matchbox)."""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def factory_urls(schematic_id: str, talos_version: str, architecture: str, base: str = FACTORY) -> FactoryUrls:
    """The metal-platform URLs the factory at `base` serves for this schematic, version and architecture."""
    version = "v" + talos_version.removeprefix("v")
    parts = urlsplit(base)
    image = f"{base}/image/{schematic_id}/{version}"
    return FactoryUrls(
        installer=f"{parts.netloc}/{PLATFORM}-installer/{schematic_id}:{version}",
        iso=f"{image}/{PLATFORM}-{architecture}.iso",
        pxe=f"{parts.scheme}://pxe.{parts.netloc}/pxe/{schematic_id}/{version}/{PLATFORM}-{architecture}",
        kernel=f"{image}/kernel-{architecture}",
        initramfs=f"{image}/initramfs-{architecture}.xz",
    )


def schematic_post_command(base: str = FACTORY) -> str:
    """How to get a schematic's id from the factory: POST its YAML to `/schematics`, which answers
    `{"id": "<schematic id>"}` (siderolabs/image-factory v1.1.0: internal/frontend/http/http.go
    routes it to handleSchematicCreate in internal/frontend/http/configuration.go, which reads YAML)."""
    return f"curl -sS -X POST --data-binary @schematic.yaml {base}/schematics"
