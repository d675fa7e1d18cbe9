"""ClusterOperations: a cluster's day-2 steps as pulumi-command `local.Command`s.

pulumiverse-talos 0.8.1 has no upgrade resource, so upgrades and removals are commands that run
`python3 -m talos_fleet.day2 <step>` (talosctl, kubectl) on the machine running `pulumi up`:

    version gate ──► node lifecycle, control planes one at a time ──► worker batches ──►
    Kubernetes upgrade ──► (TalosCluster) role config generation ──► every node's config apply

- A command runs `create` when it first appears and `update` when any of its inputs changes,
  so a node's lifecycle command *records* on creation (a new node installs the target image
  directly: no upgrade) and *upgrades* on update, which only the node's own target (Talos version
  and installer image) or the cluster's upgrade policy can cause. Its `delete`, when the node
  leaves the stack file, drains it, resets it gracefully and deletes its Node object; the node's
  machine (VM) is deleted only afterwards, because the command reads the machine's address.
- Each wave depends on the whole previous wave, and every step ends with a cluster health check,
  so a failure stops the rollout there; nodes not reached keep the old version. The next
  `pulumi up` retries the failed step (Pulumi kept the old inputs) and skips nodes at the target.
- The Kubernetes upgrade waits for every node's step, and the role configs (so the applies) are
  generated with its output: no apply can carry the new Kubernetes version before
  `talosctl upgrade-k8s` has run, and none can push back an older one after it.
- The gate, first, compares the versions it recorded last time with the target and refuses
  changes Talos does not support, before any node is touched.

Credentials travel on stdin (a secret input) and land only in 0600 files that the step removes;
command texts are constant, and stdout/stderr are secret outputs.
https://www.pulumi.com/registry/packages/command/api-docs/local/command/ (pulumi-command 1.2.1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from components.wire import after
from talos_fleet import day2, naming
from talos_fleet.plan import ClusterPlan, gate_environment, kubernetes_environment, node_environment

# The commands' records and logs say which node did what; keep them out of plaintext state anyway.
SECRET_OUTPUTS = ["stdout", "stderr"]


@dataclass(frozen=True)
class ClusterOperationsArgs:
    plan: ClusterPlan
    """The cluster's plan: nodes, versions, upgrade policy and waves."""
    installers: Mapping[str, pulumi.Input[str]]
    """The Image Factory installer image by architecture."""
    addresses: Mapping[str, pulumi.Input[str]]
    """Each node's Talos API address by hostname, read through the machine that serves it."""
    client_configuration: pulumi.Output[Any]
    """The cluster's Talos client credentials (secret, camelCase wire shape)."""


class ClusterOperations(pulumi.ComponentResource):
    kubernetes_version: pulumi.Output[str]
    """The target Kubernetes version, resolved only once the Kubernetes upgrade step is done."""

    def __init__(self, name: str, args: ClusterOperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.OPERATIONS_TYPE, name, None, opts)
        plan = args.plan
        secret = pulumi.ResourceOptions(parent=self, additional_secret_outputs=SECRET_OUTPUTS)
        credentials: pulumi.Output[str] = pulumi.Output.secret(args.client_configuration.apply(json.dumps))
        # talosctl kubeconfig and health run against the first control plane, which only changes
        # when that node is reordered or removed: adding nodes never touches another node's step.
        control_plane = args.addresses[plan.bootstrap_node.hostname]

        gate = command.local.Command(
            naming.version_gate(plan.name),
            create=day2.command("gate"),
            environment=gate_environment(plan),
            logging=command.local.Logging.STDERR,
            opts=secret,
        )

        nodes = {n.hostname: n for n in plan.nodes}
        lifecycles: dict[str, command.local.Command] = {}
        previous_wave: list[command.local.Command] = []
        for wave in plan.upgrade_waves:
            current: list[command.local.Command] = []
            for host in wave:
                node = nodes[host]
                environment = {
                    **node_environment(plan, node),
                    # Data edges: the gate has passed, and the node's machine exists.
                    "TALOS_FLEET_TALOS_VERSION": after(gate, plan.talos_version),
                    "TALOS_FLEET_INSTALLER": args.installers[node.architecture],
                    "TALOS_FLEET_NODE": args.addresses[host],
                    "TALOS_FLEET_CONTROL_PLANE": control_plane,
                }
                lifecycles[host] = command.local.Command(
                    naming.node_lifecycle(plan.name, host),
                    create=day2.command("record-node"),
                    update=day2.command("upgrade-node"),
                    delete=day2.command("remove-node"),
                    environment=environment,
                    stdin=credentials,
                    logging=command.local.Logging.STDERR,
                    opts=pulumi.ResourceOptions.merge(
                        secret,
                        # Ordering only, no data flows: a wave starts when the previous one has
                        # finished (and passed its health checks); deletes run in reverse.
                        pulumi.ResourceOptions(depends_on=list(previous_wave)),
                    ),
                )
                current.append(lifecycles[host])
            previous_wave = current

        kubernetes = command.local.Command(
            naming.kubernetes_upgrade(plan.name),
            create=day2.command("record-kubernetes"),
            update=day2.command("upgrade-kubernetes"),
            environment={
                **kubernetes_environment(plan),
                "TALOS_FLEET_KUBERNETES_VERSION": after(gate, plan.kubernetes_version),
                "TALOS_FLEET_CONTROL_PLANE": control_plane,
            },
            stdin=credentials,
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions.merge(
                secret,
                # Ordering only: Kubernetes moves after every node runs the target Talos
                # (Talos first, then Kubernetes: https://www.talos.dev/v1.13/kubernetes-guides/upgrading-kubernetes/).
                pulumi.ResourceOptions(depends_on=list(lifecycles.values())),
            ),
        )
        self.kubernetes_version = after(kubernetes, plan.kubernetes_version)
        self.register_outputs({"kubernetesVersion": self.kubernetes_version})
