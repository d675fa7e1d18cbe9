"""ClusterOperations: a cluster's day-2 steps as pulumi-command `local.Command`s.

pulumiverse-talos 0.8.1 has no upgrade resource, so upgrades and removals are commands that run
`python3 -m talos_fleet.day2 <step>` (talosctl, kubectl) on the machine running `pulumi up`:

    version gate ──► upgrade rollout ──► Kubernetes upgrade ──► (TalosCluster) role configs ──►
    config rollout ──► every node's config apply
    node lifecycle, one per node, with no edge to the others: records the node; removes it on delete

- A command runs `create` when it first appears and `update` when any of its inputs changes. The
  rollouts *record* on creation (a new cluster installs its targets directly) and walk the waves
  on update (talos_fleet.waves: each control plane alone, then worker batches, health-gated;
  stop at the first failure). Nodes missing from their last record are new and are skipped: they
  install the target directly. When no existing node's target changed (a node was added), they
  only record: no health check waits on a cluster that may not be up yet.
- The rollouts read plain spec values for every node (one variable per node, readable in a
  preview) and one machine's address, the first control plane's: an edge to every node would make
  each resource's ancestry grow with the cluster, and the Pulumi SDK's cycle check walks that
  ancestry for each new edge (docs/design/issue-13-rollouts-research.md D).
- A node's lifecycle command *removes* it on delete: drains it, resets it gracefully and deletes
  its Node object, one node of the cluster at a time (a lock on the machine running Pulumi, since
  deletes without edges between them run in parallel); the node's machine (VM) is deleted only
  afterwards, because the command reads the machine's address. Under `make destroy`
  (`day2.DESTROY_ENV` in the operator's environment) it only asks a machine that answers to wipe
  itself and reboot, and never fails.
- Nodes are reached through the cluster's first control plane as endpoint, with the node in
  `--nodes`: the first control plane (by hostname) changes only when that node is removed or a
  control plane whose name sorts before it is added.
- A failed rollout exits non-zero; Pulumi keeps its old inputs and record, so nothing after it
  runs (no Kubernetes upgrade, no apply) and the next `pulumi up` runs it again: nodes already at
  the target are skipped, the rest were never touched.
- The Kubernetes upgrade reads the upgrade rollout, and the role configs (so the config rollout
  and the applies) are generated with its output: no apply can carry the new Kubernetes version
  before `talosctl upgrade-k8s` has run, and none can push back an older one after it.
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

from components.wire import Wiring
from talos_fleet import day2, desired, naming


@dataclass(frozen=True)
class ClusterOperationsArgs:
    resource: desired.Resource
    """The cluster's operations record in the desired state (talos_fleet.desired)."""
    state: desired.DesiredState
    """The whole desired state: this component builds its record's children (the version gate,
    each node's lifecycle step, the upgrade rollout, the Kubernetes upgrade)."""
    wiring: Wiring
    """Resolves placeholders (addresses through machines, the installer, the OS CA) and options."""


class ClusterOperations(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterOperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(naming.OPERATIONS_TYPE, name, None, opts)
        wiring = args.wiring
        wiring.add(args.resource, self)
        for child in args.state.children(args.resource.key):
            wiring.add(child, local_command(child, wiring.inputs(child), wiring.options(child)))
        self.register_outputs({})


def local_command(
    resource: desired.Resource, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions
) -> command.local.Command:
    """A pulumi-command `local.Command` from its resolved desired inputs."""
    if resource.kind != "Command":
        raise ValueError(f"{resource.key}: not a command")
    return command.local.Command(
        resource.name,
        create=inputs.get("create"),
        update=inputs.get("update"),
        delete=inputs.get("delete"),
        dir=inputs.get("dir"),
        environment=inputs.get("environment"),
        stdin=_stdin(inputs.get("stdin")),
        logging=command.local.Logging(inputs["logging"]) if "logging" in inputs else None,
        opts=opts,
    )


def _stdin(value: Any) -> Any:
    """A structured stdin (the config rollout's: CA, role configs, node patches) goes in as one
    JSON text, secret as a whole since it holds the CA and the role configs. Only its Outputs are
    awaited (a few, however many nodes): wrapping every plain leaf in an Output of its own would
    cost the program allocations per node (bench/)."""
    if not isinstance(value, Mapping):
        return value
    outputs: list[pulumi.Output[Any]] = []

    def collect(item: Any) -> Any:
        if isinstance(item, pulumi.Output):
            outputs.append(item)
            return _Slot(len(outputs) - 1)
        if isinstance(item, Mapping):
            return {k: collect(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [collect(v) for v in item]
        return item

    shape = collect(value)
    return pulumi.Output.secret(pulumi.Output.all(*outputs).apply(lambda got: rollout_stdin(_fill(shape, got))))


@dataclass(frozen=True)
class _Slot:
    index: int


def _fill(shape: Any, got: list[Any]) -> Any:
    if isinstance(shape, _Slot):
        return got[shape.index]
    if isinstance(shape, dict):
        return {k: _fill(v, got) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_fill(v, got) for v in shape]
    return shape


def rollout_stdin(value: Mapping[str, Any]) -> str:
    """`osCa` arrives as the steps' usual stdin text (talos_ca_stdin); the rest as it is."""
    return json.dumps({**json.loads(value["osCa"]), **{k: v for k, v in value.items() if k != "osCa"}}, sort_keys=True)


def talos_ca_stdin(machine_secrets: Mapping[str, Any]) -> str:
    """The steps' stdin: the OS CA pair only (`certs.os`, base64 PEM as the provider stores it)."""
    ca = machine_secrets["certs"]["os"]
    return json.dumps({"osCa": {"cert": ca["cert"], "key": ca["key"]}})


def project_directory() -> str:
    """Where `talos_fleet` is importable from, relative to the working directory of the program,
    which is the one Pulumi starts the command provider in."""
    return os.path.relpath(Path(day2.__file__).resolve().parent.parent, Path.cwd())
