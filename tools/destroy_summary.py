"""What `make destroy STACK=<stack>` deletes, read from the stack's state before anything happens.

    pulumi stack export --stack edge | python -m tools.destroy_summary edge

`pulumi destroy` deletes every resource in the stack's state, so the state is the exact list; a
destroy preview cannot stand in for it, because the engine reports a protected resource as an
error even in a preview (pulumi/pulumi v3.259.0:pkg/resource/deploy/step.go, DeleteStep.Apply
checks `protect` before its dry-run branch). The protected resources are named apart: they are
each cluster's Talos secrets, the cluster PKI, and deleting them is what the operator confirms.

Exit 0 when there is something to delete, 3 when the stack has no resources, 2 when the input is
not a stack export.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from talos_fleet.desired import KINDS as TYPES

# What the operator recognises, by Pulumi type token; everything else is counted as "other".
KINDS = {
    TYPES["Domain"]: "VM",
    TYPES["Volume"]: "VM disk or boot ISO",
    TYPES["Network"]: "libvirt network",
    TYPES["Group"]: "matchbox group (PXE entry)",
    TYPES["Profile"]: "matchbox profile",
    TYPES["ConfigurationApply"]: "node config apply",
    TYPES["Command"]: "day-2 step (node removals drain and reset the machine first)",
}
SECRETS = TYPES["Secrets"]
NOTHING = 3


def resources(export: Any) -> list[dict[str, Any]] | None:
    """The resources of a `pulumi stack export` document, or None if it is not one. The shape is
    apitype.UntypedDeployment {version, deployment} around DeploymentV3 {resources: [ResourceV3
    {urn, type, protect, delete, ...}]} (pulumi/pulumi v3.259.0:sdk/go/common/apitype/core.go);
    `resources` is omitted when empty."""
    if not isinstance(export, dict) or not isinstance(export.get("deployment"), dict):
        return None
    found = export["deployment"].get("resources") or []
    if not isinstance(found, list) or not all(isinstance(r, dict) and "urn" in r and "type" in r for r in found):
        return None
    # Pulumi's own bookkeeping (the stack and provider resources) is not something to list.
    return [r for r in found if not str(r["type"]).startswith("pulumi:")]


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def summary(stack: str, found: list[dict[str, Any]]) -> list[str]:
    counts = Counter(KINDS.get(r["type"], "other resources (components, images, credentials)") for r in found)
    lines = [f"make destroy STACK={stack} deletes all {len(found)} resources of the stack:"]
    lines += [f"  {count:>4}  {kind}" for kind, count in counts.most_common()]
    machines = sorted(name_of(r["urn"]) for r in found if r["type"] == TYPES["Domain"])
    if machines:
        lines.append(f"  VMs: {', '.join(machines)}")
    protected = [r for r in found if r.get("protect")]
    for r in protected:
        what = "the cluster's Talos secrets (its PKI: CAs, keys, tokens)" if r["type"] == SECRETS else r["type"]
        lines.append(f"  PROTECTED: {name_of(r['urn'])}: {what}")
    if protected:
        lines += [
            "The protected resources are deleted too. Without a cluster's secrets nothing can manage",
            "its machines any more; a later `make up` creates new clusters with a new PKI. Back up",
            ".pulumi-state/ (or your backend) first if you may need them.",
        ]
    lines += [
        "Machines that no longer answer do not stop it: their drain and reset are skipped",
        "(TALOS_FLEET_DESTROY=1). The stack, its stack file and its history are kept.",
    ]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pulumi stack export --stack STACK | python -m tools.destroy_summary STACK", file=sys.stderr)
        return 2
    stack = argv[1]
    try:
        found = resources(json.load(sys.stdin))
    except (ValueError, RecursionError):
        found = None
    if found is None:
        print(f"make destroy: could not read the state of stack {stack} (`pulumi stack export`)", file=sys.stderr)
        return 2
    if not found:
        print(f"make destroy: stack {stack} has no resources; nothing to delete")
        return NOTHING
    print("\n".join(summary(stack, found)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
