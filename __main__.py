"""talos-fleet: Talos Linux Kubernetes clusters from one stack file (stacks/Pulumi.<env>.yaml).

Load and validate the spec once, build the Talos provider, create the components, export.
Machines come first (VMs on libvirt hosts, PXE entries in matchbox) so each node's config apply
reads its address through the machine that serves it; bare metal without PXE waits at its address.
"""

import sys

import pulumi
import pulumiverse_talos as talos

from components.libvirt_hypervisor import LibvirtHypervisor, LibvirtHypervisorArgs
from components.matchbox_pxe import MatchboxPxe, MatchboxPxeArgs, PxeAssets
from components.stack_config import engine_config
from components.talos_cluster import TalosCluster, TalosClusterArgs
from components.talos_images import TalosImages, TalosImagesArgs
from talos_fleet import commands, naming
from talos_fleet.loader import SpecError, load_pulumi_config
from talos_fleet.plan import plan_cluster, plan_hypervisors, plan_pxe

try:
    fleet = load_pulumi_config(*engine_config())
except SpecError as error:
    # RunError ends the program with this message and no traceback, before any resource exists.
    raise pulumi.RunError(commands.fill_stack(str(error), pulumi.get_stack())) from None

# Pulumi's Python SDK checks every new dependency for cycles by walking the dependency chain
# recursively (pulumi/runtime/resource_cycle_breaker.py, 3.272.0); a rollout chains each upgrade
# wave to the previous one, so a big cluster upgraded one worker at a time is a chain as deep as
# its worker count. Allow that depth rather than fail with RecursionError.
_deepest_rollout = max(len(plan_cluster(fleet, name).upgrade_waves) for name in fleet.clusters)
sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000 + 4 * _deepest_rollout))

# One explicit Talos provider, handed to every Talos component, so nothing falls back to a default
# provider. Machine-source components build their own, one per hypervisor or matchbox server.
talos_provider = talos.Provider(naming.talos_provider())
with_talos = pulumi.ResourceOptions(providers=[talos_provider])
images = TalosImages(naming.images_component(), TalosImagesArgs(fleet=fleet), opts=with_talos)


def urls(media_cluster: str, architecture: str) -> pulumi.Output[talos.imagefactory.outputs.GetUrlsUrlsResult]:
    return images.urls[naming.installer_urls(media_cluster, architecture)]


node_addresses: dict[str, pulumi.Output[str]] = {}
for hypervisor in plan_hypervisors(fleet):
    host = LibvirtHypervisor(
        hypervisor.name,
        LibvirtHypervisorArgs(
            plan=hypervisor,
            iso_urls={m.key: urls(m.cluster, m.architecture).iso for m in hypervisor.boot_media},
        ),
    )
    node_addresses.update(host.node_addresses)
for pxe in plan_pxe(fleet):
    server = MatchboxPxe(
        pxe.source,
        MatchboxPxeArgs(
            plan=pxe,
            credentials={k: fleet.secrets[name].value or "" for k, name in pxe.matchbox.secret_names().items()},
            assets={
                m.key: PxeAssets(
                    kernel=urls(m.cluster, m.architecture).kernel,
                    initramfs=urls(m.cluster, m.architecture).initramfs,
                    image=fleet.image(fleet.clusters[m.cluster]),
                )
                for m in pxe.boot_media
            },
        ),
    )
    node_addresses.update(server.node_addresses)

clusters = {
    name: TalosCluster(
        naming.cluster_component(name),
        TalosClusterArgs(
            fleet=fleet,
            cluster=name,
            installers={arch: urls(name, arch).installer for arch in fleet.architectures(name)},
            node_addresses=node_addresses,
        ),
        opts=with_talos,
    )
    for name in fleet.clusters
}

pulumi.export("endpoints", {name: c.endpoint for name, c in clusters.items()})
pulumi.export("nodes", {name: c.node_ips for name, c in clusters.items()})
# MACs are plain facts from the spec: bridge and metal users reserve them on their LAN's DHCP.
pulumi.export(
    "macs",
    {c: {h: mac for h in cl.nodes if (mac := fleet.known_mac(c, h))} for c, cl in fleet.clusters.items()},
)
# What to boot metal from (ISO, PXE) and the installer, per cluster and architecture: the same as
# `make urls` prints before the first `up`.
pulumi.export("bootMedia", images.boot_media)
pulumi.export("kubeconfig", {name: c.kubeconfig for name, c in clusters.items()})
pulumi.export("talosconfig", {name: c.talosconfig for name, c in clusters.items()})
# Not secret: each cluster's certificate NotAfter dates (ISO-8601), for watching expiry.
pulumi.export("certificateExpiry", {name: c.certificate_expiry for name, c in clusters.items()})
