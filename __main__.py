"""talos-fleet: Talos Linux Kubernetes clusters from one stack file (stacks/Pulumi.<env>.yaml).

Load and validate the spec once, build the Talos provider, create the components, export.
Machines come first (VMs on libvirt hosts, PXE entries in matchbox) so each node's config apply
reads its address through the machine that serves it; bare metal without PXE waits at its address.
"""

import gc

import pulumi
import pulumiverse_talos as talos

from components.cluster_operations import project_directory
from components.libvirt_hypervisor import LibvirtHypervisor, LibvirtHypervisorArgs
from components.matchbox_pxe import MatchboxPxe, MatchboxPxeArgs
from components.stack_config import engine_config
from components.talos_cluster import TalosCluster, TalosClusterArgs
from components.talos_images import TalosImages, TalosImagesArgs
from components.wire import Wiring
from talos_fleet import commands, desired
from talos_fleet.loader import SpecError, load_pulumi_config
from talos_fleet.plan import plan_cluster

# The program registers every resource up front and frees almost nothing until it exits, so
# CPython's default collection thresholds (700, 10, 10) walk an ever larger heap again and again:
# about 40% of evaluation time for a 1,000-node cluster, and more than linear in the node count
# (`make bench`). Collect less often; reference cycles are still collected.
# https://docs.python.org/3.11/library/gc.html#gc.set_threshold
gc.set_threshold(50_000, 20, 20)

try:
    fleet = load_pulumi_config(*engine_config())
except SpecError as error:
    # RunError ends the program with this message and no traceback, before any resource exists.
    raise pulumi.RunError(commands.fill_stack(str(error), pulumi.get_stack())) from None

# Everything the program registers, computed from the spec alone (what `make plan` diffs).
state = desired.desired_state(fleet)
wiring = Wiring({name: s.value or "" for name, s in fleet.secrets.items()}, project_directory())

# One explicit Talos provider, handed to every Talos component, so nothing falls back to a default
# provider. Machine-source components build their own, one per hypervisor or matchbox server.
talos_record, *top = [r for r in state.resources if r.parent is None and not r.data]
wiring.add(talos_record, talos.Provider(talos_record.name))

# Machines come before clusters (config applies read addresses through them); the order is the
# desired state's: images, hypervisors, PXE servers, clusters.
images: TalosImages | None = None
clusters: dict[str, TalosCluster] = {}
for record in top:
    options = wiring.options(record)
    if record.kind == "TalosImages":
        images = TalosImages(record.name, TalosImagesArgs(record, state, wiring), opts=options)
    elif record.kind == "LibvirtHypervisor":
        LibvirtHypervisor(record.name, LibvirtHypervisorArgs(record, state, wiring), opts=options)
    elif record.kind == "MatchboxPxe":
        MatchboxPxe(record.name, MatchboxPxeArgs(record, state, wiring), opts=options)
    elif record.kind == "TalosCluster" and record.cluster is not None:
        clusters[record.cluster] = TalosCluster(
            record.name,
            TalosClusterArgs(record, state, wiring, plan_cluster(fleet, record.cluster)),
            opts=options,
        )
assert images is not None, "the desired state always has the images component"

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
