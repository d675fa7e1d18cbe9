"""Compare two snapshots: per node, what changes, what `pulumi up` will do to it, and in which
order. Pure. Two views are combined:

* the documents and versions of each node (what the cluster sees): a Talos version or installer
  image change is a rolling upgrade (#4: the upgrade rollout), control planes one at a time, then
  worker batches, each drained and health-checked; a Kubernetes version change is one `talosctl
  upgrade-k8s` for the cluster; a change to a node's config (its documents, the Kubernetes
  version or the installer image in it) reaches existing nodes through the cluster's config
  rollout (#13): a canary, then the waves, health-gated, each node live or staged and rebooted,
  drained, exactly as the program decides it (talos_fleet.reboots: the hashes in the rollout's
  environment); new nodes install after it, in parallel;
* the desired state, resource by resource (talos_fleet.changes, judged by the providers' rules in
  talos_fleet.providers): every created, updated, replaced or deleted resource is shown on the
  nodes it belongs to, and what the documents do not explain becomes an action of its own (a VM
  replaced, a disk deleted, a PXE entry replaced, a network replaced, a machine source changed, a
  lifecycle step re-run).

Losses of data are warned, and are problems when the stack did not ask for them (the node and
disk are still in it) unless `acknowledgeDataLoss` says so. Removals run last (Pulumi deletes after
creating and updating), in reverse rollout order.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

import yaml

from talos_fleet import commands, day2, naming, reboots, versions
from talos_fleet.changes import ResourceChange, diff, name_clashes
from talos_fleet.desired import DATA, Resource
from talos_fleet.snapshot import ClusterView, Document, NodeView, Snapshot, View

ActionKind = Literal[
    "unchanged",
    "new-node",
    "removed-node",
    "config-live",
    "config-reboot",
    "talos-upgrade",
    "kubernetes-upgrade",
    "vm-change",
    "data-loss",
    "pxe-change",
    "network-change",
    "source-change",
    "step-rerun",
    "other-change",
]
ACTION_LABELS: dict[ActionKind, str] = {
    "unchanged": "unchanged",
    "new-node": "new node",
    "removed-node": "removed node",
    "config-live": "config change applied live",
    "config-reboot": "config change needs a reboot",
    "talos-upgrade": "Talos upgrade",
    "kubernetes-upgrade": "Kubernetes upgrade",
    "vm-change": "VM replaced, disks kept",
    "data-loss": "data deleted",
    "pxe-change": "PXE entry replaced",
    "network-change": "network replaced",
    "source-change": "machine source changed",
    "step-rerun": "lifecycle step runs again",
    "other-change": "resource change",
}


class Action(View):
    kind: ActionKind
    detail: str = ""
    replaces_vm: bool = False
    downgrade: bool = False
    """A Talos or Kubernetes version change to an older version."""
    loses_disks: bool = False
    """A VM change that deletes or empties some of its disks (see the node's `data deleted`)."""

    @property
    def label(self) -> str:
        if self.loses_disks:
            return "VM replaced, disks deleted"
        if self.downgrade:
            return {"talos-upgrade": "Talos downgrade", "kubernetes-upgrade": "Kubernetes downgrade"}[self.kind]
        return ACTION_LABELS[self.kind]


class DocumentChange(View):
    label: str
    change: Literal["added", "removed", "changed"]
    diff: str


class NodeChange(View):
    hostname: str
    role: str
    actions: tuple[Action, ...]
    documents: tuple[DocumentChange, ...]
    notes: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    """What `pulumi up` does to each of the node's resources (talos_fleet.changes)."""

    @property
    def kinds(self) -> tuple[ActionKind, ...]:
        return tuple(a.kind for a in self.actions)


StepKind = Literal[
    "replace-vms",
    "create",
    "recheck",
    "upgrade",
    "kubernetes",
    "canary",
    "config",
    "apply",
    "resend",
    "bootstrap",
    "remove",
]


class Step(View):
    kind: StepKind
    nodes: tuple[str, ...]
    detail: str


class ClusterReview(View):
    name: str
    status: Literal["new", "removed", "changed", "unchanged"]
    nodes: tuple[NodeChange, ...]
    rollout: tuple[Step, ...]
    problems: tuple[str, ...]
    """What makes `pulumi up` stop (or fail) before it could do this change."""
    warnings: tuple[str, ...] = ()
    """What `pulumi up` will do that costs availability."""


class Review(View):
    stack: str
    base_ref: str | None
    base_note: str | None
    """How the base was rendered, when not by its own code; or why there is no base."""
    head: Snapshot
    base: Snapshot | None
    clusters: tuple[ClusterReview, ...]
    resources: tuple[ResourceChange, ...] = ()
    """Every resource `pulumi up` creates, updates, replaces or deletes."""
    stack_warnings: tuple[str, ...] = ()
    """Warnings about resources of no cluster (machine sources)."""
    stack_problems: tuple[str, ...] = ()
    """Problems of the stack's machine sources (objects whose name a new resource would take)."""

    @property
    def changed(self) -> bool:
        registered = [r for r in self.resources if r.kind not in DATA]
        return bool(registered) or any(c.status != "unchanged" for c in self.clusters)

    @property
    def problems(self) -> list[str]:
        return [*self.stack_problems, *(f"{c.name}: {p}" for c in self.clusters for p in c.problems)]

    @property
    def warnings(self) -> list[str]:
        return [*self.stack_warnings, *(f"{c.name}: {w}" for c in self.clusters for w in c.warnings)]


# ---------------------------------------------------------------------------------------------
# Documents


def _without_installer(doc: Document) -> str:
    """A node's v1alpha1 document without `machine.install.image`: the installer moves with the
    Talos upgrade, which is its own action (the config rollout then applies it live, and Talos
    only reads it at the next upgrade)."""
    if doc.layer != "node" or doc.origin != "talos-fleet" or doc.name != "v1alpha1":
        return doc.yaml
    data = yaml.safe_load(doc.yaml)
    data.get("machine", {}).get("install", {}).pop("image", None)
    return yaml.safe_dump(data, sort_keys=True)


def _diff(before: str, after: str, label: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"base: {label}", f"head: {label}", lineterm=""
    )
    return "\n".join(lines)


def document_changes(base: tuple[Document, ...], head: tuple[Document, ...]) -> list[DocumentChange]:
    """Per document, matched by layer, origin and name: added, removed or changed, with a diff."""
    before = {d.key: d for d in base}
    after = {d.key: d for d in head}
    changes = []
    for key, doc in after.items():
        old = before.get(key)
        if old is None:
            changes.append(DocumentChange(label=doc.label, change="added", diff=_diff("", doc.yaml, doc.label)))
        elif old.yaml != doc.yaml:
            changes.append(DocumentChange(label=doc.label, change="changed", diff=_diff(old.yaml, doc.yaml, doc.label)))
    for key, doc in before.items():
        if key not in after:
            changes.append(DocumentChange(label=doc.label, change="removed", diff=_diff(doc.yaml, "", doc.label)))
    return changes


def _config_changed(base: NodeView, head: NodeView) -> list[str]:
    """Labels of the documents whose change the config apply carries (not the installer)."""
    before = {d.key: _without_installer(d) for d in base.documents}
    after = {d.key: _without_installer(d) for d in head.documents}
    labels = {d.key: d.label for d in (*base.documents, *head.documents)}
    return [labels[k] for k in dict.fromkeys([*after, *before]) if before.get(k) != after.get(k)]


# ---------------------------------------------------------------------------------------------
# Config changes: live or reboot, decided as the config rollout decides

Hashes = Mapping[str, str]
"""A node's {"live": ..., "reboot": ...} (talos_fleet.reboots.node_hashes)."""
ConfigPath = Literal["live", "reboot"]

# The config rollout's variable per node (talos_fleet.desired, plan.config_target).
CONFIG_VARIABLE = "TALOS_FLEET_CONFIG_"
# A per-node variable of the upgrade rollout (plan.upgrade_targets).
TARGET_VARIABLE = "TALOS_FLEET_TARGET_"


def rollout_hashes(resources: tuple[Resource, ...], cluster: ClusterView) -> dict[str, Hashes] | None:
    """Per node, the hashes the program's config rollout compares, read from its environment in
    the desired state: the plan decides from the very values the rollout gets. None: the
    snapshot has no config rollout for the cluster (made by code from before it existed)."""
    name = naming.config_rollout(cluster.name)
    rollout = next((r for r in resources if r.kind == "Command" and r.name == name), None)
    if rollout is None:
        return None
    env: dict[str, str] = rollout.inputs.get("environment") or {}
    found = {k: json.loads(v) for k, v in env.items() if k.startswith(CONFIG_VARIABLE)}
    by_ip = {v.get("ip"): v for v in found.values()}
    out: dict[str, Hashes] = {}
    for node in cluster.nodes:
        value = found.get(CONFIG_VARIABLE + node.hostname) or by_ip.get(node.address)
        if value is not None:
            out[node.hostname] = {"live": value["live"], "reboot": value["reboot"]}
    return out


@lru_cache(maxsize=256)
def _role_parts(inputs: str) -> reboots.RoleParts:
    """Once per role and cluster, not per node (`inputs` as canonical JSON)."""
    return reboots.RoleParts.from_inputs(json.loads(inputs))


def document_hashes(node: NodeView) -> Hashes:
    """The same two hashes from a snapshot's documents, for snapshots without a config rollout:
    the generation's inputs (the `generated` document, the contract as `talosVersion`, the
    Kubernetes version), the cluster and role documents as the role's patches, the node's
    documents as its own. Not equal to the rollout's (other input names), but decided by the
    same rule over the same documents, so compare them only with each other."""
    inputs: dict[str, object] = {"kubernetesVersion": node.kubernetes_version}
    for doc in node.documents:
        if doc.layer == "generated":
            generated = dict(yaml.safe_load(doc.yaml) or {})
            inputs["talosVersion"] = generated.pop("configContract", None)
            inputs.update(generated)
    inputs["configPatches"] = [d.yaml for d in node.documents if d.layer in ("cluster", "role")]
    role = _role_parts(json.dumps(inputs, sort_keys=True))
    return reboots.node_hashes(role, [d.yaml for d in node.documents if d.layer == "node"])


def config_path(before: Hashes, after: Hashes) -> ConfigPath | None:
    """How the config rollout brings a node from one config to the other: it reboots the node
    (staged, drained) iff the reboot hash moves; otherwise a moved live hash applies live."""
    if before["reboot"] != after["reboot"]:
        return "reboot"
    return "live" if before["live"] != after["live"] else None


def _reboot_settings(base_cluster: ClusterView, head_cluster: ClusterView, base: NodeView, head: NodeView) -> list[str]:
    """The settings of the node's config change that need a reboot, for humans."""
    said = []
    if base_cluster.contract != head_cluster.contract:
        said.append(f"configContract {base_cluster.contract} → {head_cluster.contract}")

    def texts(node: NodeView) -> list[str]:
        return [d.yaml for d in node.documents if d.layer != "generated"]

    return said + reboots.reboot_changes(texts(base), texts(head))


# ---------------------------------------------------------------------------------------------
# Actions per node


def _schematic_change(base: ClusterView, head: ClusterView) -> str:
    def parts(schematic: str) -> tuple[set[str], list[str]]:
        custom = (yaml.safe_load(schematic) or {}).get("customization", {})
        return set(custom.get("systemExtensions", {}).get("officialExtensions", [])), custom.get("extraKernelArgs", [])

    (old_ext, old_args), (new_ext, new_args) = parts(base.schematic), parts(head.schematic)
    said = [f"+{e}" for e in sorted(new_ext - old_ext)] + [f"-{e}" for e in sorted(old_ext - new_ext)]
    if old_args != new_args:
        said.append(f"kernel args {' '.join(old_args) or '(none)'} → {' '.join(new_args) or '(none)'}")
    return "installer image: " + (", ".join(said) or "new schematic")


def _vm_actions(base: NodeView, head: NodeView) -> tuple[list[Action], list[str]]:
    old, new = base.vm, head.vm
    if old is None and new is None:
        if base.source != head.source:
            return [], [f"moves from machine source {base.source} to {head.source}: boot it there before pulumi up"]
        return [], []
    if new is None:
        detail = (
            f"moves from {base.source} to metal source {head.source}: its VM and disks are deleted; a person "
            "must boot the machine from Talos media at its address"
        )
        return [Action(kind="vm-change", detail=detail, replaces_vm=True)], []
    if old is None:
        detail = f"moves from metal source {base.source} to {head.source}: a VM is created for it and boots empty"
        return [Action(kind="vm-change", detail=detail, replaces_vm=True)], []
    if old.hypervisor != new.hypervisor:
        return [], []  # judged resource by resource: another provider configuration moves nothing
    reasons, notes = [], []
    if old.cpus != new.cpus:
        reasons.append(f"vCPUs {old.cpus} → {new.cpus}")
    if old.memory_mib != new.memory_mib:
        reasons.append(f"memory {old.memory_mib} → {new.memory_mib} MiB")
    reasons += [f"data disk {d} added (new, empty)" for d in new.data_disks if d not in old.data_disks]
    reasons += [
        f"data disk {d} removed (its volume and data are deleted)" for d in old.data_disks if d not in new.data_disks
    ]
    if base.role != head.role:
        reasons.append("role (the VM's description)")
    resized = [f"system disk {old.disk_gib} → {new.disk_gib} GiB"] if old.disk_gib != new.disk_gib else []
    resized += [
        f"data disk {d} {old.data_disks[d]} → {size} GiB"
        for d, size in new.data_disks.items()
        if d in old.data_disks and old.data_disks[d] != size
    ]
    if resized:
        notes.append(
            f"{', '.join(resized)}: not applied, disk sizes are fixed after creation "
            "(grow the volume with `virsh vol-resize`, see components/libvirt_hypervisor.py)"
        )
    if not reasons:
        return [], notes
    detail = (
        f"{', '.join(reasons)}: libvirt provider 0.8.1 cannot change this in place, so the VM is deleted "
        "and created again from its disks (the node reboots, without a drain)"
    )
    return [Action(kind="vm-change", detail=detail, replaces_vm=True)], notes


def node_actions(
    base_cluster: ClusterView,
    head_cluster: ClusterView,
    base: NodeView,
    head: NodeView,
    hashes: tuple[Hashes, Hashes] | None = None,
) -> NodeChange:
    """`hashes`: the node's (base, head) config hashes as the config rollout sees them; without
    them, computed from the documents (document_hashes)."""
    actions: list[Action] = []
    talos = []
    if base.talos_version != head.talos_version:
        talos.append(f"{base.talos_version} → {head.talos_version}")
    if base_cluster.schematic != head_cluster.schematic:
        talos.append(_schematic_change(base_cluster, head_cluster))
    elif base.installer != head.installer and base.talos_version == head.talos_version:
        talos.append(f"installer image {base.installer} → {head.installer}")
    if talos:
        older = versions.parse_version(head.talos_version) < versions.parse_version(base.talos_version)
        actions.append(Action(kind="talos-upgrade", detail="; ".join(talos), downgrade=older))
    if base.kubernetes_version != head.kubernetes_version:
        older = versions.parse_version(head.kubernetes_version) < versions.parse_version(base.kubernetes_version)
        detail = (
            f"{base.kubernetes_version} → {head.kubernetes_version} (talosctl upgrade-k8s, once for the cluster, "
            "then the config rollout applies every node's config with the new version, live, in waves)"
        )
        actions.append(Action(kind="kubernetes-upgrade", detail=detail, downgrade=older))
    vm, notes = _vm_actions(base, head)
    changed = _config_changed(base, head)
    before, after = hashes or (document_hashes(base), document_hashes(head))
    path = config_path(before, after)
    if path == "reboot":
        settings = ", ".join(_reboot_settings(base_cluster, head_cluster, base, head)) or "its config"
        detail = f"{settings}: staged, then the node is drained and rebooted in its wave of the config rollout"
        actions.append(
            Action(kind="config-reboot", detail=detail + (f" (changed: {', '.join(changed)})" if changed else ""))
        )
    elif changed:
        actions.append(Action(kind="config-live", detail=", ".join(changed)))
    actions += vm
    return NodeChange(
        hostname=head.hostname,
        role=head.role,
        actions=tuple(actions or [Action(kind="unchanged")]),
        documents=tuple(document_changes(base.documents, head.documents)),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Clusters


def _problems(stack: str, base: ClusterView | None, head: ClusterView | None) -> list[str]:
    if base is None:
        return []
    if head is None:
        urn = (
            f"urn:pulumi:{stack}::talos-fleet::{naming.COMPONENT_TYPE}$talos:machine/secrets:Secrets::"
            f"{naming.secrets(base.name)}"
        )
        unprotect = commands.pulumi_command(stack, f"state unprotect '{urn}'")
        return [
            f"the whole cluster is removed, but its Talos secrets are protected: pulumi up stops at them. "
            f"When you mean it, first run, from the repository root, `{unprotect}`"
        ]
    problems = versions.rollout_problems(
        versions.parse_version(base.talos_version),
        versions.parse_version(base.kubernetes_version),
        versions.parse_version(head.talos_version),
        versions.parse_version(head.kubernetes_version),
        head.allow_downgrade,
    )
    for node in head.nodes:
        old = base.node(node.hostname)
        if old is None:
            continue
        if old.role != node.role:
            problems.append(
                f"{node.hostname} changes role {old.role} → {node.role}: Talos cannot change a node's machine "
                "type in place; remove the node in one change and add it back with its new role in another"
            )
        if old.address != node.address:
            problems.append(
                f"{node.hostname} changes address {old.address} → {node.address}: the config apply would reach "
                "it at an address it does not have yet; remove the node in one change and add it back in another"
            )
    return problems


def _new_node_detail(stack: str, node: NodeView) -> str:
    """Who brings the machine up: the program (a VM), or a person (metal, PXE or boot media)."""
    if node.vm is not None:
        return "a VM is created and boots into maintenance mode; its documents are listed in full below"
    media = f"make urls STACK={stack}"
    if node.pxe:
        how = f"power it on to network-boot (its PXE entry is created first; URLs: `{media}`)"
    else:
        how = f"boot it from the Talos ISO or USB image (`{media}` prints the URLs)"
    return (
        f"metal: a person must {how}; `pulumi up` waits at {node.address} until it answers in maintenance "
        "mode. Its documents are listed in full below"
    )


def _how(wave: tuple[str, ...], paths: Mapping[str, ConfigPath]) -> str:
    live = [h for h in wave if paths[h] == "live"]
    staged = [h for h in wave if paths[h] == "reboot"]
    reboot = "staged, then drained and rebooted" + (" together" if len(staged) > 1 else "")
    if not staged:
        return "applied live (no reboot)"
    if not live:
        return reboot
    return f"{', '.join(live)} applied live; {', '.join(staged)} {reboot}"


def _config_rollout(
    base: ClusterView, head: ClusterView, paths: Mapping[str, ConfigPath], new: list[str], rolled: bool
) -> list[Step]:
    """The config rollout's waves, with the schedule the rollout itself computes
    (day2.config_schedule), then the config applies: new nodes install, existing ones re-send."""
    if not rolled:
        # The rollout is created by this change, and a created rollout only records: the
        # provider's applies carry the change, at once, as before the rollout existed.
        changed = list(dict.fromkeys([*new, *(n.hostname for n in head.nodes if n.hostname in paths)]))
        detail = "config applies, at once (mode auto): the config rollout is created by this change and only records"
        return [Step(kind="apply", nodes=tuple(changed), detail=detail)] if changed else []
    steps: list[Step] = []
    existing = [(n.hostname, n.role) for n in head.nodes if base.node(n.hostname) is not None]
    schedule = day2.config_schedule(existing, set(paths), head.worker_batch_size)
    for number, wave in enumerate(schedule):
        if number == 0:
            detail = (
                f"health check, then {_how(wave, paths)}, then a health check; if it fails the rollout stops "
                "here and no other node is touched"
            )
            steps.append(Step(kind="canary", nodes=wave, detail=detail))
        else:
            steps.append(Step(kind="config", nodes=wave, detail=f"{_how(wave, paths)}, then a health check"))
    if new:
        detail = "new nodes install in parallel: their config applies run once the config rollout is done"
        steps.append(Step(kind="apply", nodes=tuple(new), detail=detail))
    if schedule:
        detail = (
            "their config applies re-send the config the rollout applied, byte for byte: nothing changes on the nodes"
        )
        steps.append(Step(kind="resend", nodes=tuple(h for wave in schedule for h in wave), detail=detail))
    return steps


def _rechecked(base: ClusterView | None, head: ClusterView | None) -> bool:
    return base is not None and head is not None and base.recheck != head.recheck


def _rollout(
    base: ClusterView | None,
    head: ClusterView | None,
    nodes: list[NodeChange],
    paths: Mapping[str, ConfigPath],
    rolled: bool,
) -> list[Step]:
    """`paths`: how the config rollout brings each existing node whose config changes (a
    Kubernetes or Talos bump moves every node's: the version, the installer image); `rolled`:
    whether the base has a config rollout to do it."""
    by_kind: dict[ActionKind, list[str]] = {}
    for n in nodes:
        for kind in n.kinds:
            by_kind.setdefault(kind, []).append(n.hostname)
    replaced = [n.hostname for n in nodes if any(a.replaces_vm for a in n.actions)]
    steps: list[Step] = []
    if replaced:
        steps.append(Step(kind="replace-vms", nodes=tuple(replaced), detail="at once, first, without a drain"))
    if new := by_kind.get("new-node"):
        by_hand = [h for h in new if head is not None and (v := head.node(h)) is not None and v.vm is None]
        detail = "machines created, booted into maintenance mode"
        if by_hand:
            detail += f"; {', '.join(by_hand)} must be booted by a person (metal)"
        steps.append(Step(kind="create", nodes=tuple(new), detail=detail))
    if _rechecked(base, head):
        assert base is not None
        assert head is not None
        existing = tuple(h for wave in head.waves for h in wave if base.node(h) is not None)
        detail = (
            f"upgrade.recheck {base.recheck} → {head.recheck}: the upgrade rollout asks every node for its Talos "
            "version and image and the config rollout dry-runs every node's config; a node that differs from the "
            "stack is brought to it wave by wave (each control plane alone, then worker batches), health-gated; a "
            "config difference canary first, staged and rebooted, drained"
        )
        steps.append(Step(kind="recheck", nodes=existing, detail=detail))
    if head is not None and (upgrading := set(by_kind.get("talos-upgrade", []))):
        for wave in head.waves:
            if picked := tuple(h for h in wave if h in upgrading):
                steps.append(
                    Step(kind="upgrade", nodes=picked, detail="drain, talosctl upgrade, health check, uncordon")
                )
    if head is not None and by_kind.get("kubernetes-upgrade"):
        detail = f"talosctl upgrade-k8s --to {head.kubernetes_version}, then a health check"
        steps.append(Step(kind="kubernetes", nodes=(), detail=detail))
    new = by_kind.get("new-node", [])
    if base is not None and head is not None:
        # The role configs are generated with the Kubernetes version only once upgrade-k8s is
        # done, so the config rollout runs after it (and after the upgrade rollout).
        steps += _config_rollout(base, head, paths, new, rolled)
    elif new:
        steps.append(Step(kind="apply", nodes=tuple(new), detail="config applies, in parallel"))
    if base is None and head is not None:
        first = next(n.hostname for n in head.nodes if n.role == "controlplane")
        steps.append(Step(kind="bootstrap", nodes=(first,), detail="etcd bootstrapped once, on its own address"))
    if base is not None and (removed := set(by_kind.get("removed-node", []))):
        for wave in reversed(base.waves):
            if picked := tuple(h for h in reversed(wave) if h in removed):
                steps.append(
                    Step(kind="remove", nodes=picked, detail="drain, reset, delete the Node, then the machine")
                )
    return steps


DISRUPTIVE: frozenset[ActionKind] = frozenset({"network-change", "source-change"})


def _down(node: NodeChange) -> bool:
    """Whether `pulumi up` takes the node down without a drain (its VM replaced, its network or
    machine source changed under it)."""
    return any(a.replaces_vm or a.kind in DISRUPTIVE for a in node.actions)


def _warnings(head: ClusterView | None, nodes: list[NodeChange]) -> list[str]:
    if head is None:
        return []
    down = [n for n in nodes if _down(n) and head.node(n.hostname) is not None]
    control_planes = [n.hostname for n in down if n.role == "controlplane"]
    workers = [n.hostname for n in head.nodes if n.role == "worker"]
    out = []
    upgraded = [n for n in nodes if {"talos-upgrade", "config-reboot"} & set(n.kinds) and head.node(n.hostname)]
    if len(head.nodes) == 1 and upgraded and not down:
        why = "the Talos upgrade" if "talos-upgrade" in upgraded[0].kinds else "its config change"
        out.append(
            f"{upgraded[0].hostname} is the cluster's only node: it reboots for {why} and the "
            "Kubernetes API and every workload are down until it is back (a drain has nowhere to move them)"
        )
    if len(head.nodes) == 1 and down:
        out.append(
            f"{down[0].hostname} is the cluster's only node and goes down without a drain: the Kubernetes "
            "API and every workload are down until it is back"
        )
    elif len(control_planes) >= 2:
        out.append(
            f"control planes {', '.join(control_planes)} go down at the same time: etcd loses quorum and the "
            "Kubernetes API is down until they are back. To keep it up, change one control plane per pull "
            "request (a node's own `vm:` overrides the role's size)"
        )
    down_workers = [n.hostname for n in down if n.role == "worker"]
    if workers and len(down_workers) == len(workers):
        out.append(
            f"every worker ({', '.join(workers)}) goes down at the same time, without a drain: workloads have "
            "nowhere to run until they are back. To keep them up, change the workers a few per pull request "
            "(a node's own `vm:` overrides the role's size)"
        )
    elif len(down_workers) >= 2:
        out.append(
            f"workers {', '.join(down_workers)} go down at the same time, without a drain (not in "
            "`workerBatchSize` batches): their workloads restart elsewhere"
        )
    return out


def _contract_warnings(base: ClusterView | None, head: ClusterView | None) -> list[str]:
    if base is None or head is None:
        return []
    old, new = versions.parse_contract(base.contract), versions.parse_contract(head.contract)
    if new >= old:
        return []
    return [
        f"configContract is lowered {base.contract} → {head.contract}: every node's config is generated "
        "for the older contract, and every node is staged and rebooted for it (drained, in waves); features "
        "of the newer contract are turned off"
    ]


def _disk_of(base: NodeView, volume: str, cluster: str) -> str | None:
    """The stack's name for a node's volume: `system` or its data disk's name (None: not the node's)."""
    if volume == naming.vm_system_disk(cluster, base.hostname):
        return "system"
    data = base.vm.data_disks if base.vm else {}
    return next((d for d in data if naming.vm_data_disk(cluster, base.hostname, d) == volume), None)


def _moves(base: ClusterView | None, head: ClusterView | None, resources: tuple[ResourceChange, ...]) -> list[str]:
    """Nodes whose machine would only be re-pointed at another machine source (see changes.diff)."""
    if base is None or head is None:
        return []
    out = []
    for node in head.nodes:
        old = base.node(node.hostname)
        ref = f"{head.name}/{node.hostname}"
        if old is None or old.source == node.source:
            continue
        if any(r.moved and ref in r.nodes and len(r.nodes) == 1 for r in resources):
            out.append(
                f"{node.hostname} moves from machine source {old.source} to {node.source}: Pulumi does not "
                "move or recreate its machine (another provider configuration replaces nothing), it would "
                f"look for it on {node.source}. Remove the node in one change and add it back on "
                f"{node.source} in another"
            )
    return out


def _unasked_losses(
    base: ClusterView | None, head: ClusterView | None, resources: tuple[ResourceChange, ...]
) -> list[str]:
    """Disks deleted or replaced although the stack still has their node and disk: a problem
    unless the head acknowledges it (`acknowledgeDataLoss`)."""
    if base is None or head is None:
        return []
    out = []
    for r in resources:
        if not (r.loses_data and r.kind == "Volume" and len(r.nodes) == 1):
            continue
        host = r.nodes[0].split("/", 1)[1]
        old, new = base.node(host), head.node(host)
        disk = _disk_of(old, r.name, base.name) if old else None
        if old is None or new is None or disk is None:
            continue  # the node leaves the stack: asked for
        kept = disk == "system" or (new.vm is not None and disk in new.vm.data_disks)
        if r.change == "delete" and new.vm is not None and not kept:
            continue  # the data disk leaves the node's spec: asked for
        if host in head.acknowledged_data_loss or f"{host}/{disk}" in head.acknowledged_data_loss:
            continue
        if "provider" in r.fields:
            why = "(it moves to another machine source)"
        else:
            why = f"({', '.join(r.fields)} changes)" if r.fields else "(the node stays but its VM goes)"
        verb = "replaced by an empty one" if r.change == "replace" else "deleted"
        out.append(
            f"{host}: disk {disk} (volume {r.name}) is {verb} {why} although the stack keeps it: its data is "
            f"lost. If that is what you want, add `{host}/{disk}` to clusters.{head.name}.acknowledgeDataLoss "
            "in this change (and remove it afterwards)"
        )
    return out


def _config_paths(
    base: ClusterView | None,
    head: ClusterView | None,
    base_resources: tuple[Resource, ...] | None,
    head_resources: tuple[Resource, ...] | None,
) -> tuple[dict[str, tuple[Hashes, Hashes]], bool]:
    """Per existing node, its (base, head) config hashes: the config rollout's own when both
    snapshots have one, else both from the documents; and whether the base has a rollout."""
    if base is None or head is None:
        return {}, False
    before = rollout_hashes(base_resources, base) if base_resources is not None else None
    after = rollout_hashes(head_resources, head) if head_resources is not None else None
    out = {}
    for node in head.nodes:
        old = base.node(node.hostname)
        if old is None:
            continue
        if before is not None and after is not None and node.hostname in before and node.hostname in after:
            out[node.hostname] = (before[node.hostname], after[node.hostname])
        else:
            out[node.hostname] = (document_hashes(old), document_hashes(node))
    return out, before is not None or base_resources is None


def review_cluster(
    stack: str,
    base: ClusterView | None,
    head: ClusterView | None,
    resources: tuple[ResourceChange, ...] = (),
    base_resources: tuple[Resource, ...] | None = None,
    head_resources: tuple[Resource, ...] | None = None,
) -> ClusterReview:
    """`base_resources`, `head_resources`: the snapshots' desired states, where the config
    rollout's hashes are read (without them the documents decide, and the base counts as having
    a config rollout)."""
    view = head or base
    assert view is not None, "a cluster is in the base, the head or both"
    hashes, rolled = _config_paths(base, head, base_resources, head_resources)
    paths = {h: p for h, (b, a) in hashes.items() if (p := config_path(b, a)) is not None}
    nodes: list[NodeChange] = []
    for node in head.nodes if head else ():
        old = base.node(node.hostname) if base else None
        if base is None or head is None or old is None:
            nodes.append(
                NodeChange(
                    hostname=node.hostname,
                    role=node.role,
                    actions=(Action(kind="new-node", detail=_new_node_detail(stack, node)),),
                    documents=(),
                )
            )
        else:
            nodes.append(node_actions(base, head, old, node, hashes[node.hostname]))
    for node in base.nodes if base else ():
        if head is None or head.node(node.hostname) is None:
            nodes.append(
                NodeChange(
                    hostname=node.hostname,
                    role=node.role,
                    actions=(Action(kind="removed-node"),),
                    documents=(),
                )
            )
    # Provider calls are not resources: a change of theirs reaches a node through what reads them.
    by_node: dict[str, list[ResourceChange]] = {}
    for r in resources:
        if r.kind not in DATA:
            for ref, mine in _reached(view.name, r):
                by_node.setdefault(ref, []).append(mine)
    nodes = [_with_resources(view.name, n, by_node.get(f"{view.name}/{n.hostname}", [])) for n in nodes]
    status: Literal["new", "removed", "changed", "unchanged"]
    if base is None:
        status = "new"
    elif head is None:
        status = "removed"
    else:
        unchanged = all(n.kinds == ("unchanged",) for n in nodes) and not _rechecked(base, head)
        status = "unchanged" if unchanged else "changed"
    return ClusterReview(
        name=view.name,
        status=status,
        nodes=tuple(nodes),
        rollout=tuple(_rollout(base, head, nodes, paths, rolled)),
        problems=tuple(
            _problems(stack, base, head) + _moves(base, head, resources) + _unasked_losses(base, head, resources)
        ),
        warnings=tuple(
            _losses(view.name, resources)
            + _warnings(head, nodes)
            + _contract_warnings(base, head)
            + _unrolled_reboots(paths, rolled)
        ),
    )


def review(
    stack: str, base: Snapshot | None, head: Snapshot, base_ref: str | None = None, base_note: str | None = None
) -> Review:
    removed = [c.name for c in base.clusters if head.cluster(c.name) is None] if base else []
    names = [c.name for c in head.clusters] + removed
    resources = tuple(diff(base.resources if base else (), head.resources))
    clusters = [
        review_cluster(
            stack,
            base.cluster(n) if base else None,
            head.cluster(n),
            tuple(r for r in resources if r.cluster == n or any(node.split("/", 1)[0] == n for node in r.nodes)),
            base.resources if base else None,
            head.resources,
        )
        for n in names
    ]
    # Resources no cluster owns (a machine source without nodes): their losses still show.
    orphans = tuple(r for r in resources if r.cluster is None and not r.nodes)
    return Review(
        stack=stack,
        base_ref=base_ref,
        base_note=base_note,
        head=head,
        base=base,
        clusters=tuple(clusters),
        resources=resources,
        stack_warnings=tuple(_losses(None, orphans)),
        stack_problems=tuple(name_clashes(base.resources if base else (), head.resources, resources)),
    )


# ---------------------------------------------------------------------------------------------
# Resources per node (talos_fleet.changes, by the providers' rules in talos_fleet.providers)


def _with_resources(cluster: str, node: NodeChange, mine: list[ResourceChange]) -> NodeChange:
    """The node's change with every resource change that reaches it, and an action for each
    one its documents and versions do not already account for."""
    ref = f"{cluster}/{node.hostname}"
    kinds = set(node.kinds)
    actions = [a for a in node.actions if a.kind != "unchanged"]
    domains = [r for r in mine if r.kind == "Domain" and r.change != "update"]
    # A VM whose domain the engine keeps (its source renamed, same host) is not replaced.
    if not kinds & {"new-node", "removed-node"} and not domains:
        actions = [a for a in actions if not a.replaces_vm]
    if not mine:
        return node.model_copy(update={"actions": tuple(actions or [Action(kind="unchanged")])})
    if kinds & {"new-node", "removed-node"}:
        lost = [r for r in mine if r.loses_data and r.kind == "Volume" and ref in r.nodes and len(r.nodes) == 1]
        if "removed-node" in kinds and lost:
            actions = [
                a.model_copy(update={"detail": "its disks are deleted: " + ", ".join(r.name for r in lost)})
                if a.kind == "removed-node"
                else a
                for a in actions
            ]
        return node.model_copy(update={"actions": tuple(actions), "resources": _described(mine)})

    def add(kind: ActionKind, detail: str, **flags: bool) -> None:
        actions.append(Action(kind=kind, detail=detail, **flags))

    if domains and not any(a.replaces_vm for a in actions):
        fields = sorted({f.split("[")[0].split(".")[0] for r in domains for f in r.fields}) or [domains[0].change]
        add(
            "vm-change",
            f"{', '.join(fields)}: libvirt provider 0.8.1 replaces the VM (ForceNew), deleting it first "
            "(its name is fixed); the node reboots without a drain",
            replaces_vm=True,
        )
    lost = [r for r in mine if r.loses_data and r.kind == "Volume"]
    if lost:
        actions = [a.model_copy(update={"loses_disks": True}) if a.kind == "vm-change" else a for a in actions]
        add(
            "data-loss",
            "; ".join(
                f"disk {r.name} {'deleted' if r.change == 'delete' else 'replaced by an empty one'}" for r in lost
            )
            + ": its data is lost",
        )
    pxe = [r for r in mine if r.kind in ("Group", "Profile") and r.change != "update"]
    if pxe:
        add(
            "pxe-change",
            "; ".join(f"{r.kind.lower()} {r.name} {r.change}d" for r in pxe)
            + ": matchbox keys entries by name, so each is deleted before its replacement is created",
        )
    networks = [r for r in mine if r.kind == "Network" and r.change in ("replace", "delete")]
    if networks:
        add(
            "network-change",
            f"libvirt network {networks[0].name} {networks[0].change}d "
            f"({', '.join(networks[0].fields)}); the provider's domain update does not move a running "
            "VM's NIC to the new network (resource_libvirt_domain.go): restart the VMs after pulumi up",
        )
    sources = [r for r in mine if r.kind.startswith("provider:") and r.change == "update"]
    if sources:
        add(
            "source-change",
            "; ".join(f"{r.name}: {', '.join(r.fields)}" for r in sources)
            + ": every resource of this machine source is reached through the new setting; a provider "
            "configuration change replaces nothing, so nothing is moved or created there",
        )
    moved = [r for r in mine if r.moved]
    if moved and not sources:
        add(
            "source-change",
            f"{', '.join(f'{r.kind} {r.name}' for r in moved)} would be reached through machine source "
            f"{moved[0].source}'s provider: Pulumi replaces nothing for another provider configuration, "
            "so nothing is created there and the existing ones are looked for on the new host",
        )
    steps = [
        r
        for r in mine
        if r.kind == "Command" and r.change == "update" and _node_step(r, cluster, node.hostname, kinds, actions)
    ]
    if steps and "talos-upgrade" not in kinds:
        fields = sorted({f.removeprefix("environment.") for r in steps for f in r.fields})
        add(
            "step-rerun",
            f"{', '.join(r.name for r in steps)} ({', '.join(fields)}): pulumi-command runs the step's "
            "update again; a node already at its target is only checked",
        )
    applies = [r for r in mine if r.kind == "ConfigurationApply" and r.change == "update"]
    # With an upgrade, the apply carries the new installer image, which Talos only records.
    if applies and not kinds & {"config-live", "config-reboot", "talos-upgrade", "kubernetes-upgrade"}:
        # What the documents do not show (e.g. the installer image for another architecture);
        # a change that needs a reboot has its action already (node_actions).
        add("config-live", f"the config apply's inputs change ({', '.join(applies[0].fields)})")
    if not actions:
        add("other-change", "; ".join(r.describe() for r in mine))
    return node.model_copy(update={"actions": tuple(actions), "resources": _described(mine)})


def _described(changes: list[ResourceChange]) -> tuple[str, ...]:
    """What happens to each resource (provider calls are not resources: what they feed is listed)."""
    return tuple(r.describe() for r in changes if r.kind not in DATA)


def _node_step(
    step: ResourceChange, cluster: str, hostname: str, kinds: set[ActionKind], actions: list[Action]
) -> bool:
    """Whether a command's update is worth its own action on the node: not the cluster's gate or
    Kubernetes step when the versions say so already, not the DHCP-entry step of a VM that is
    replaced anyway."""
    if step.name in (naming.version_gate(cluster), naming.kubernetes_upgrade(cluster)):
        return not kinds & {"kubernetes-upgrade", "talos-upgrade"}
    if step.name in (naming.config_rollout(cluster), naming.upgrade_rollout(cluster)):
        # What its walk does to the node is the node's config or upgrade action (and a step of
        # the cluster's rollout); a node already at its target is only checked.
        return False
    if step.name == naming.vm_dhcp_entry(cluster, hostname):
        return not any(a.replaces_vm for a in actions)
    return True


def _is_rollout(cluster: str, change: ResourceChange) -> bool:
    return change.kind == "Command" and change.name in (naming.config_rollout(cluster), naming.upgrade_rollout(cluster))


def _own_fields(change: ResourceChange, host: str) -> tuple[str, ...]:
    """A rollout's changed inputs that are the node's own: its variable, its patches."""
    own = (f"environment.{CONFIG_VARIABLE}{host}", f"environment.{TARGET_VARIABLE}{host}")
    patches = f"stdin.patches.{host}"
    return tuple(f for f in change.fields if f in own or f == patches or f.startswith((patches + "[", patches + ".")))


def _reached(cluster: str, change: ResourceChange) -> list[tuple[str, ResourceChange]]:
    """The nodes a resource change is shown on, each with the change as it concerns the node. A
    rollout belongs to every node of its cluster, but its update reaches a node only through the
    node's own inputs; a change of its shared ones (the policy, the versions) is told by the
    nodes' actions and the rollout steps, and its creation or deletion walks no node."""
    if not _is_rollout(cluster, change):
        return [(ref, change) for ref in change.nodes]
    if change.change != "update":
        return []  # created or deleted, it only records (or goes with its cluster)
    out = []
    for ref in change.nodes:
        if fields := _own_fields(change, ref.split("/", 1)[1]):
            out.append((ref, change.model_copy(update={"fields": fields})))
    return out


def _unrolled_reboots(paths: Mapping[str, ConfigPath], rolled: bool) -> list[str]:
    rebooted = [h for h, p in paths.items() if p == "reboot"]
    if rolled or not rebooted:
        return []
    return [
        f"{', '.join(rebooted)} need a reboot for their config change, and the config rollout is only created by "
        "this change: the provider's applies (mode auto) reboot them all at once, without a drain. To roll them "
        "out in waves, land the config rollout first and make this change in the next pull request"
    ]


LOSS = {
    "Volume": ("disk {name}", "its data is lost"),
    "Secrets": ("the cluster's Talos secrets {name}", "its PKI is lost: every node would have to be reset"),
    "Group": (
        "PXE entry {name}",
        "matchbox deletes it first, so the machine cannot network-boot until the new one exists",
    ),
}


def _losses(cluster: str | None, resources: tuple[ResourceChange, ...]) -> list[str]:
    """Every data-holding resource deleted or replaced, naming its nodes."""
    out = []
    for r in resources:
        if not r.loses_data:
            continue
        nodes = ", ".join(n.split("/", 1)[1] for n in r.nodes) or "no node"
        what, cost = LOSS[r.kind]
        verb = "deleted" if r.change == "delete" else "replaced"
        out.append(f"{nodes}: {what.format(name=r.name)} is {verb}: {cost}")
    return out
