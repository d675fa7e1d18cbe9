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
  Under `make destroy` (`day2.DESTROY_ENV` in the operator's environment) the delete only asks
  a machine that answers to wipe itself and reboot, and never fails.
- Nodes are reached through the cluster's first control plane as endpoint, with the node in
  `--nodes`: the first control plane (by hostname) changes only when that node is removed or a
  control plane whose name sorts before it is added, so adding a worker, or a control plane named
  after the first, changes no other node's inputs.
- Each wave depends on the whole previous wave, and every step ends with a cluster health check,
  so a failure stops the rollout there; nodes not reached keep the old version. The next
  `pulumi up` retries the failed step (Pulumi kept the old inputs) and skips nodes at the target.
- The Kubernetes upgrade waits for every node's step, and the role configs (so the applies) are
  generated with its output: no apply can carry the new Kubernetes version before
  `talosctl upgrade-k8s` has run, and none can push back an older one after it.
- The gate, first, compares the versions it recorded last time with the target and refuses
  changes Talos does not support, before any node is touched.

Every input change is an update that re-runs the step (pulumi/pulumi-command v1.2.1: only
`triggers` replaces), so the inputs hold only what must re-run it, and nothing that moves by
itself:

- stdin is the cluster's Talos OS CA (certificate and key from the protected Secrets' machine
  secrets), which never changes; each step mints its own short-lived client certificate. The
  provider's client certificate, which it renews in its last month
  (siderolabs/terraform-provider-talos v0.11.0: pkg/talos/talos_machine_secrets_resource.go
  ModifyPlan), reaches no step.
- `dir` is the project root *relative to* the directory Pulumi runs the program and its providers
  in (both the project's directory: pulumi/pulumi v3.259.0 pkg/engine/project.go getPwdMain,
  sdk/go/common/resource/plugin/provider_plugin.go, sdk/python/cmd/pulumi-language-python-exec),
  so `python3 -m talos_fleet.day2` imports this checkout wherever it lives, and moving the
  checkout changes no input.
- A step whose last successful run already reached the target does nothing else (a failed run
  never records), so a change of the upgrade policy, the endpoint or the directory re-checks
  nodes at most.

Credentials land only in 0600 files that the step removes; command texts are constant, and
stdout/stderr are secret outputs.
https://www.pulumi.com/registry/packages/command/api-docs/local/command/ (pulumi-command 1.2.1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
    machine_secrets: pulumi.Output[Any]
    """The cluster's machine secrets (secret, camelCase wire shape); only the OS CA is used."""


class ClusterOperations(pulumi.ComponentResource):
    kubernetes_version: pulumi.Output[str]
    """The target Kubernetes version, resolved only once the Kubernetes upgrade step is done."""

    def __init__(self, name: str, args: ClusterOperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.OPERATIONS_TYPE, name, None, opts)
        plan = args.plan
        secret = pulumi.ResourceOptions(parent=self, additional_secret_outputs=SECRET_OUTPUTS)
        credentials: pulumi.Output[str] = pulumi.Output.secret(args.machine_secrets.apply(talos_ca_stdin))
        directory = project_directory()
        # talosctl kubeconfig and health run against the first control plane (by hostname), which
        # only changes when that node is removed or a control plane named before it is added.
        control_plane = args.addresses[plan.bootstrap_node.hostname]

        gate = command.local.Command(
            naming.version_gate(plan.name),
            create=day2.command("gate"),
            dir=directory,
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
                    dir=directory,
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
            dir=directory,
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


def talos_ca_stdin(machine_secrets: Mapping[str, Any]) -> str:
    """The steps' stdin: the OS CA pair only (`certs.os`, base64 PEM as the provider stores it)."""
    ca = machine_secrets["certs"]["os"]
    return json.dumps({"osCa": {"cert": ca["cert"], "key": ca["key"]}})


def project_directory() -> str:
    """Where `talos_fleet` is importable from, relative to the working directory of the program,
    which is the one Pulumi starts the command provider in."""
    return os.path.relpath(Path(day2.__file__).resolve().parent.parent, Path.cwd())
