"""TalosCluster: one Talos Kubernetes cluster from its validated spec.

Graph (https://github.com/pulumiverse/pulumi-talos, provider 0.8.1 / Talos machinery 1.13):

    Secrets (protected) ──► ClusterOperations: version gate ─► node upgrades in waves ─►
          │                 Kubernetes upgrade (components/cluster_operations.py)
          │                                │ Kubernetes version, once upgrade-k8s is done
          ▼                                ▼
    get_configuration(controlplane), get_configuration(worker)     installer image per arch
                                   │                                 (TalosImages)
                                   ▼                                      │
          ConfigurationApply per node (role config + plaintext node patch) ◄┘
                                   │ first control plane's apply
                                   ▼
          Bootstrap (that node's own IP) ─► Kubeconfig, health check

Two config generations per cluster whatever the node count; everything per node is a small
plaintext patch, so previews show readable diffs on exactly the nodes a change touches.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumiverse_talos as talos

from components.cluster_operations import ClusterOperations, ClusterOperationsArgs
from components.wire import secret_wire
from talos_fleet import certs, naming, patches
from talos_fleet.plan import plan_cluster
from talos_fleet.spec import ROLES, Fleet, Role


@dataclass(frozen=True)
class TalosClusterArgs:
    fleet: Fleet
    """The validated fleet; the component reads only its own cluster and the fleet defaults."""
    cluster: str
    """Name of the cluster under `fleet.clusters`."""
    installers: Mapping[str, pulumi.Input[str]]
    """The Image Factory installer image by architecture (from TalosImages)."""
    node_addresses: Mapping[str, pulumi.Input[str]] | None = None
    """Where each node's Talos API is reached, by hostname. A node left out is reached at its spec
    address (bare metal booted by hand waits there in maintenance mode); machine sources that
    create or serve the machine pass an output of it, so applying waits for the machine."""


class TalosCluster(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]
    talosconfig: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    node_ips: pulumi.Output[dict[str, str]]
    certificate_expiry: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: TalosClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.COMPONENT_TYPE, name, None, opts)
        fleet, cname = args.fleet, args.cluster
        plan = plan_cluster(fleet, cname)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        secrets = talos.machine.Secrets(
            naming.secrets(cname),
            talos_version=plan.contract,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Losing this resource loses the cluster's PKI: every node would have to be reset.
                protect=True,
                # Generated once: a later contract bump must never regenerate (replace) the PKI.
                ignore_changes=["talosVersion"],
                # Real providers mark these secret; say so here too, so no engine or mock can leak them.
                additional_secret_outputs=["machineSecrets", "clientConfiguration"],
            ),
        )
        machine_secrets = secret_wire(secrets.machine_secrets)
        client_configuration = secret_wire(secrets.client_configuration)

        served = args.node_addresses or {}
        addresses: dict[str, pulumi.Input[str]] = {n.hostname: served.get(n.hostname, n.ip) for n in plan.nodes}
        operations = ClusterOperations(
            naming.operations_component(cname),
            ClusterOperationsArgs(
                plan=plan,
                installers=args.installers,
                addresses=addresses,
                machine_secrets=machine_secrets,
            ),
            opts=child,
        )

        role_configs = {
            role: talos.machine.get_configuration_output(
                cluster_name=cname,
                machine_type=role,
                cluster_endpoint=plan.endpoint,
                machine_secrets=machine_secrets,
                talos_version=plan.contract,
                # Data edge: configs carry the target Kubernetes version only once
                # `talosctl upgrade-k8s` has moved the cluster there (it rewrites the nodes'
                # configs itself); an apply can neither run ahead of it nor push an older one.
                kubernetes_version=operations.kubernetes_version,
                config_patches=self._role_patches(fleet, cname, role),
                docs=False,
                examples=False,
                opts=invoke,
            ).machine_configuration
            for role in ROLES
        }

        applies: dict[str, talos.machine.ConfigurationApply] = {}
        for node in plan.nodes:
            host = node.hostname
            applies[host] = talos.machine.ConfigurationApply(
                naming.node_apply(cname, host),
                node=addresses[host],
                endpoint=addresses[host],
                client_configuration=client_configuration,
                machine_configuration_input=role_configs[node.role],
                config_patches=pulumi.Output.from_input(args.installers[node.architecture]).apply(
                    functools.partial(patches.node_config_patches, fleet, cname, host)
                ),
                # No on_destroy reset: removing a node is the lifecycle command's delete (drain,
                # graceful reset, delete the Node), which runs before its machine is deleted.
                opts=child,
            )

        first = applies[plan.bootstrap_node.hostname]
        bootstrap = talos.machine.Bootstrap(
            naming.bootstrap(cname),
            # Data edge: bootstrap after the first control plane's config is applied, on its own
            # address (the VIP only exists after bootstrap).
            node=first.node,
            endpoint=first.node,
            client_configuration=client_configuration,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Bootstrap happens exactly once; if the first control plane changes later
                # (reordered or removed), a second bootstrap would fail with AlreadyExists.
                ignore_changes=["node", "endpoint"],
            ),
        )
        kubeconfig = talos.cluster.Kubeconfig(
            naming.kubeconfig(cname),
            node=bootstrap.node,
            endpoint=bootstrap.node,
            client_configuration=client_configuration,
            opts=child,
        )

        control_plane_ips = [n.ip for n in plan.control_planes]
        health = talos.cluster.get_health_output(
            client_configuration=client_configuration,
            control_plane_nodes=control_plane_ips,
            worker_nodes=[n.ip for n in plan.workers],
            endpoints=control_plane_ips,
            timeouts=talos.cluster.GetHealthTimeoutsArgs(read="10m"),
            # An invoke has no input to carry the edge: asking before bootstrap and every
            # node's apply could only time out.
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[bootstrap, *applies.values()]),
        )
        talosconfig = talos.client.get_configuration_output(
            cluster_name=cname,
            client_configuration=client_configuration,
            # Control planes' own addresses, never the VIP: talosctl must reach a node even when
            # etcd (and so the VIP) is down.
            endpoints=control_plane_ips,
            nodes=control_plane_ips,
            opts=invoke,
        ).talos_config

        # The provider does not mark the talosconfig secret; wrap both credentials explicitly.
        # The kubeconfig is handed out once the cluster reports healthy.
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(health.id, kubeconfig.kubeconfig_raw).apply(lambda v: str(v[1]))
        )
        self.talosconfig = pulumi.Output.secret(talosconfig)
        self.endpoint = pulumi.Output.from_input(plan.endpoint)
        self.node_ips = pulumi.Output.from_input({n.hostname: n.ip for n in plan.nodes})
        # NotAfter of the two client certificates and the two CAs, read from the credentials
        # above. Derived from secrets, so Pulumi would mark them secret; they are not: a
        # certificate is presented to every peer it talks to (only its key is secret), and only
        # its dates leave the apply. Plain, they show in `pulumi stack output` and the console
        # without --show-secrets, for anyone watching expiry.
        self.certificate_expiry = pulumi.Output.unsecret(
            pulumi.Output.all(self.talosconfig, self.kubeconfig).apply(lambda v: certs.exported_dates(v[0], v[1]))
        )
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "talosconfig": self.talosconfig,
                "endpoint": self.endpoint,
                "nodeIps": self.node_ips,
                "certificateExpiry": self.certificate_expiry,
            }
        )

    @staticmethod
    def _role_patches(fleet: Fleet, cname: str, role: Role) -> pulumi.Input[list[str]]:
        """Cluster and role layers for the role's config generation. When a layer needs a secret
        (a static disk key), the patches are built under an Output so they stay secret."""
        cluster = fleet.clusters[cname]
        names = sorted(set(cluster.secret_names()))
        if not names:
            return patches.role_config_patches(fleet, cluster, role, {})
        values: dict[str, Any] = {n: pulumi.Output.secret(fleet.secrets[n].value or "") for n in names}
        return pulumi.Output.all(**values).apply(
            lambda resolved: patches.role_config_patches(fleet, cluster, role, resolved)
        )
