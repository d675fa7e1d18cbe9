"""talos-fleet: Talos Linux Kubernetes clusters from one stack file (stacks/Pulumi.<env>.yaml).

Load and validate the spec once, build the provider, create one TalosCluster per cluster, export.
"""

import pulumi
import pulumiverse_talos as talos

from components.stack_config import engine_config
from components.talos_cluster import TalosCluster, TalosClusterArgs
from talos_fleet import naming
from talos_fleet.loader import SpecError, load_pulumi_config

try:
    fleet = load_pulumi_config(*engine_config())
except SpecError as error:
    # RunError ends the program with this message and no traceback, before any resource exists.
    raise pulumi.RunError(str(error)) from None

# One explicit provider, handed to every component, so nothing falls back to a default provider.
talos_provider = talos.Provider(naming.talos_provider())

clusters = {
    name: TalosCluster(
        naming.cluster_component(name),
        TalosClusterArgs(fleet=fleet, cluster=name),
        opts=pulumi.ResourceOptions(providers=[talos_provider]),
    )
    for name in fleet.clusters
}

pulumi.export("endpoints", {name: c.endpoint for name, c in clusters.items()})
pulumi.export("nodes", {name: c.node_ips for name, c in clusters.items()})
pulumi.export("kubeconfig", {name: c.kubeconfig for name, c in clusters.items()})
pulumi.export("talosconfig", {name: c.talosconfig for name, c in clusters.items()})
