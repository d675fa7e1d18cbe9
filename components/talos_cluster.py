"""TalosCluster: one Talos Kubernetes cluster from its validated spec.

Graph (https://github.com/pulumiverse/pulumi-talos, provider 0.8.1 / Talos machinery 1.13):

    Secrets (protected) ──► ClusterOperations: version gate ─► upgrade rollout (walks the waves) ─►
          │                 Kubernetes upgrade (components/cluster_operations.py)
          │                                │ Kubernetes version, once upgrade-k8s is done
          ▼                                ▼
    get_configuration(controlplane), get_configuration(worker)     installer image per arch
                                   │                                 (TalosImages)
                                   ▼                                      │
          config rollout (canary, waves, health-gated; staged, drained reboots) ◄┘
                                   │ ordering only
                                   ▼
          ConfigurationApply per node (role config + plaintext node patch)
                                   │ first control plane's apply
                                   ▼
          Bootstrap (that node's own IP) ─► Kubeconfig, health check

The config rollout brings existing nodes to their new config one wave at a time; the applies run
after it, so for those nodes they re-send what the node already runs (Talos answers a config equal
to the running one with no change), and new nodes install in parallel.
Two config generations per cluster whatever the node count; everything per node is a small
plaintext patch, so previews show readable diffs on exactly the nodes a change touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumiverse_talos as talos

from components.cluster_operations import ClusterOperations, ClusterOperationsArgs, local_command, talos_ca_stdin
from components.wire import Wiring, secret_wire, snake
from talos_fleet import certs, desired, naming
from talos_fleet.plan import ClusterPlan


@dataclass(frozen=True)
class TalosClusterArgs:
    resource: desired.Resource
    """The cluster's record in the desired state (talos_fleet.desired)."""
    state: desired.DesiredState
    """The whole desired state: this component builds its record's children."""
    wiring: Wiring
    """Resolves placeholders (addresses through machines, the installer, secrets) and options."""
    plan: ClusterPlan
    """The cluster's endpoint and node addresses, for the exports."""


class TalosCluster(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]
    talosconfig: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    node_ips: pulumi.Output[dict[str, str]]
    certificate_expiry: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: TalosClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.COMPONENT_TYPE, name, None, opts)
        wiring, plan = args.wiring, args.plan
        wiring.add(args.resource, self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        for child in args.state.children(args.resource.key):
            if child.kind == "ClusterOperations":
                ClusterOperations(
                    child.name,
                    ClusterOperationsArgs(resource=child, state=args.state, wiring=wiring),
                    opts=wiring.options(child),
                )
                continue
            inputs, options = wiring.inputs(child), wiring.options(child)
            if child.kind == "Secrets":
                secrets = talos.machine.Secrets(child.name, **snake(inputs), opts=options)
                wiring.add(child, secrets)
                machine_secrets = secret_wire(secrets.machine_secrets)
                wiring.outputs[f"{child.key}.machineSecrets"] = machine_secrets
                wiring.outputs[f"{child.key}.clientConfiguration"] = secret_wire(secrets.client_configuration)
                # The steps' stdin: the cluster's Talos OS CA, which never changes.
                wiring.outputs[f"{child.key}.osCa"] = pulumi.Output.secret(machine_secrets.apply(talos_ca_stdin))
            elif child.kind == "getConfiguration":
                wiring.outputs[f"{child.key}.machineConfiguration"] = talos.machine.get_configuration_output(
                    **snake(inputs), opts=invoke
                ).machine_configuration
            elif child.kind == "Command":
                # The config rollout: after the role configs it reads, before the applies.
                wiring.add(child, local_command(child, inputs, options))
            elif child.kind == "ConfigurationApply":
                wiring.add(child, talos.machine.ConfigurationApply(child.name, **snake(inputs), opts=options))
            elif child.kind == "Bootstrap":
                wiring.add(child, talos.machine.Bootstrap(child.name, **snake(inputs), opts=options))
            elif child.kind == "Kubeconfig":
                kubeconfig = talos.cluster.Kubeconfig(child.name, **snake(inputs), opts=options)
                wiring.add(child, kubeconfig)
            elif child.kind == "getHealth":
                health = talos.cluster.get_health_output(
                    **snake({k: v for k, v in inputs.items() if k != "timeouts"}),
                    timeouts=talos.cluster.GetHealthTimeoutsArgs(**snake(inputs["timeouts"])),
                    opts=pulumi.InvokeOutputOptions(
                        parent=self, depends_on=[wiring.resources[k] for k in child.depends_on]
                    ),
                )
            elif child.kind == "getClientConfiguration":
                talosconfig = talos.client.get_configuration_output(**snake(inputs), opts=invoke).talos_config
            else:
                raise ValueError(f"{child.key}: not a Talos cluster resource")
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
