"""The plan as Markdown (a pull-request comment) and JSON (for tools). Pure, deterministic: the
same review gives the same bytes, so a comment only changes when the plan does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from talos_fleet.review import ACTION_LABELS, ActionKind, ClusterReview, NodeChange, Review, Step
from talos_fleet.snapshot import ClusterView, NodeView, Snapshot

# GitHub rejects comments over 65,536 characters; leave room for the marker and the note.
COMMENT_LIMIT = 60_000

STEP_TITLES = {
    "replace-vms": "Replace VMs",
    "create": "Create machines",
    "recheck": "Re-check",
    "upgrade": "Talos upgrade",
    "kubernetes": "Kubernetes upgrade",
    "canary": "Config canary",
    "config": "Config rollout",
    "apply": "Apply configs",
    "resend": "Re-send configs",
    "bootstrap": "Bootstrap",
    "remove": "Remove",
}


def marker(stack: str) -> str:
    """The hidden line the pull-request workflow finds its own comment by (one per stack)."""
    return f"<!-- talos-fleet-plan: {stack} -->"


def to_json(review: Review) -> str:
    return review.model_dump_json(indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown


def _code(text: str) -> str:
    return f"`{text}`"


def _versions(base: str | None, head: str | None) -> str:
    if base is None or head is None or base == head:
        return head or base or ""
    return f"{base} → {head}"


def _node_row(change: NodeChange, base: NodeView | None, head: NodeView | None) -> str:
    node = head or base
    assert node is not None
    source = f"{node.source} ({node.source_kind})"
    cells = [
        _code(change.hostname),
        node.role,
        source,
        _versions(base.address if base else None, head.address if head else None),
        _versions(base.talos_version if base else None, head.talos_version if head else None),
        _versions(base.kubernetes_version if base else None, head.kubernetes_version if head else None),
        "<br>".join(f"**{a.label}**" + (f": {a.detail}" if a.detail else "") for a in change.actions),
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _step(number: int, step: Step) -> str:
    nodes = ", ".join(_code(n) for n in step.nodes)
    return f"{number}. **{STEP_TITLES[step.kind]}**" + (f" {nodes}" if nodes else "") + f": {step.detail}"


def _cluster_header(base: ClusterView | None, head: ClusterView | None) -> list[str]:
    view = head or base
    assert view is not None
    facts = [
        f"endpoint {_code(view.endpoint)}",
        "Talos " + _versions(base.talos_version if base else None, head.talos_version if head else None),
        "Kubernetes " + _versions(base.kubernetes_version if base else None, head.kubernetes_version if head else None),
        f"config contract {view.contract}",
    ]
    lines = [" · ".join(facts), ""]
    if view.schematic_id:
        lines.append(f"Installer: {_code(view.nodes[0].installer if view.nodes else '')}")
    else:
        lines += [
            "Installer: the Image Factory's image for this schematic (its id is computed at `pulumi up`):",
            "",
            "```yaml",
            view.schematic.rstrip(),
            "```",
        ]
    return [*lines, ""]


def _diffs(cluster: ClusterReview) -> list[str]:
    out: list[str] = []
    for change in cluster.nodes:
        if not change.documents and not change.notes and not change.resources:
            continue
        out.append(
            f"<details><summary>{change.hostname}: {len(change.documents)} document(s) changed, "
            f"{len(change.resources)} resource(s) changed</summary>"
        )
        out.append("")
        out += [f"> {note}" for note in change.notes]
        out += [f"- {line}" for line in change.resources]
        for doc in change.documents:
            out += ["", f"{doc.change}: {doc.label}", "", "```diff", doc.diff, "```"]
        out += ["", "</details>"]
    return out


def _patches(view: ClusterView) -> list[str]:
    out: list[str] = []
    for node in view.nodes:
        out += [f"<details><summary>{node.hostname}: every document it receives, in order</summary>", ""]
        for doc in node.documents:
            out += [f"{doc.label}", "", "```yaml", doc.yaml.rstrip(), "```", ""]
        out.append("</details>")
    return out


def _action_counts(nodes: Iterable[NodeChange]) -> Counter[str]:
    return Counter(action.label for node in nodes for action in node.actions)


def _cluster_summary(cluster: ClusterReview) -> list[str]:
    """Action counts and the rollout by kind of step, for fleets whose tables do not fit."""
    out = [f"- {label}: {n} node(s)" for label, n in sorted(_action_counts(cluster.nodes).items())]
    steps: dict[str, list[Step]] = {}
    for step in cluster.rollout:
        steps.setdefault(step.kind, []).append(step)
    out += ["", "Rollout order (`pulumi up`):", ""]
    for i, same in enumerate(steps.values(), 1):
        first, last = same[0], same[-1]
        nodes = sum(len(s.nodes) for s in same)
        span = (
            f" in {len(same)} step(s), {nodes} node(s), from `{first.nodes[0]}` to `{last.nodes[-1]}`" if nodes else ""
        )
        unique = list(dict.fromkeys(s.detail for s in same))
        details = "; ".join(unique[:2]) + (f"; and {len(unique) - 2} more" if len(unique) > 2 else "")
        out.append(f"{i}. **{STEP_TITLES[first.kind]}**{span}: {details}")
    return out


def _cluster(review: Review, cluster: ClusterReview, detail: Detail) -> list[str]:
    base = review.base.cluster(cluster.name) if review.base else None
    head = review.head.cluster(cluster.name)
    out = [f"### Cluster `{cluster.name}` ({cluster.status})", "", *_cluster_header(base, head)]
    if detail == "summary":
        return [*out, *_cluster_summary(cluster), ""]
    out += [
        "| Node | Role | Source | Address | Talos | Kubernetes | Action |",
        "|---|---|---|---|---|---|---|",
    ]
    for change in cluster.nodes:
        out.append(
            _node_row(
                change,
                base.node(change.hostname) if base else None,
                head.node(change.hostname) if head else None,
            )
        )
    out.append("")
    if cluster.rollout:
        out += ["Rollout order (`pulumi up`):", ""]
        out += [_step(i, step) for i, step in enumerate(cluster.rollout, 1)]
        out.append("")
    if detail == "full":
        out += _diffs(cluster)
        if head is not None:
            out += ["", *_patches(head)]
    return [*out, ""]


def _mermaid_id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


# The colour of a node in the topology: its most consequential action.
COLOURS: dict[ActionKind, str] = {
    "data-loss": "fill:#ffb3b3",
    "vm-change": "fill:#ffd9b3",
    "network-change": "fill:#ffd9b3",
    "source-change": "fill:#ffd9b3",
    "removed-node": "fill:#eeeeee,stroke-dasharray: 5 5",
    "new-node": "fill:#d4f7d4",
    "talos-upgrade": "fill:#fff2b3",
    "kubernetes-upgrade": "fill:#e6d4ff",
    "pxe-change": "fill:#ffe6f2",
    "config-reboot": "fill:#b8d0ff",
    "config-live": "fill:#dbe9ff",
    "step-rerun": "fill:#e8f4f4",
    "other-change": "fill:#e8f4f4",
}


def _colour(kinds: Iterable[str]) -> ActionKind | None:
    present = set(kinds)
    return next((k for k in COLOURS if k in present), None)


def topology(head: Snapshot, review: Review | None = None, per_node: bool = True) -> str:
    """Mermaid flowchart: machine sources (hypervisors, sites), the clusters on each, their nodes
    with role and address, removed nodes too (dashed); nodes a change touches are coloured by their
    most consequential action, with a legend of the colours used. Without `per_node`, each
    cluster on a source is one box with its node counts (for big fleets)."""
    kinds = {(c.name, n.hostname): n.kinds for c in (review.clusters if review else ()) for n in c.nodes}
    base = review.base if review else None
    sources = [
        *head.sources,
        *(s for s in (base.sources if base else ()) if s.name not in {h.name for h in head.sources}),
    ]
    clusters = [*head.clusters, *(c for c in (base.clusters if base else ()) if head.cluster(c.name) is None)]
    used: set[ActionKind] = set()
    lines = ["flowchart LR"]
    for source in sources:
        sid = _mermaid_id("src", source.name)
        title = f"{source.name} · {source.kind} · {source.where}" + (f" · {source.network}" if source.network else "")
        lines.append(f'  subgraph {sid}["{title}"]')
        for cluster in clusters:
            old = base.cluster(cluster.name) if base else None
            gone = [n for n in (old.nodes if old and old is not cluster else ()) if cluster.node(n.hostname) is None]
            nodes = [n for n in (*cluster.nodes, *gone) if n.source == source.name]
            if not nodes:
                continue
            if not per_node:
                roles = ", ".join(f"{sum(n.role == r for n in nodes)} {r}" for r in ("controlplane", "worker"))
                lines.append(f'    {_mermaid_id(sid, cluster.name)}["cluster {cluster.name}<br/>{roles}"]')
                continue
            lines.append(f'    subgraph {_mermaid_id(sid, cluster.name)}["cluster {cluster.name}"]')
            for n in nodes:
                nid = _mermaid_id("n", cluster.name, n.hostname)
                lines.append(f'      {nid}["{n.hostname}<br/>{n.role}<br/>{n.address}"]:::{n.role}')
                colour = _colour(kinds.get((cluster.name, n.hostname), ()))
                if colour is not None:
                    used.add(colour)
                    lines.append(f"      class {nid} {colour.replace('-', '_')}")
            lines.append("    end")
        lines.append("  end")
    if used:
        lines.append('  subgraph legend["legend"]')
        for kind in (k for k in COLOURS if k in used):
            label = ACTION_LABELS[kind]
            lines.append(f'    legend_{kind.replace("-", "_")}["{label}"]:::{kind.replace("-", "_")}')
        lines.append("  end")
    lines += ["  classDef controlplane stroke-width:3px", "  classDef worker stroke-width:1px"]
    lines += [f"  classDef {kind.replace('-', '_')} {style}" for kind, style in COLOURS.items()]
    return "\n".join(lines)


def _summary(review: Review) -> str:
    counts = _action_counts(n for cluster in review.clusters for n in cluster.nodes)
    return ", ".join(f"{label} {n}" for label, n in sorted(counts.items())) or "no nodes"


Detail = Literal["full", "tables", "summary"]


def markdown(review: Review, lint: list[str] | None = None) -> str:
    """The pull-request comment. When the full plan would not fit in a comment, the per-node
    diffs and documents are left out, then the per-node tables (the JSON has everything), and
    the comment says so; a plan that still does not fit is cut."""
    for detail in ("full", "tables", "summary"):
        text = _markdown(review, lint or [], detail)
        if len(text) <= COMMENT_LIMIT:
            return text
    return text[:COMMENT_LIMIT] + "\n\n> (cut: the plan does not fit in a comment)\n"


def _markdown(review: Review, lint: list[str], detail: Detail) -> str:
    base = f"`{review.base_ref}`" if review.base_ref else "nothing (no base)"
    out = [marker(review.stack), f"## talos-fleet plan: `{review.stack}`", ""]
    notes = [f"{c.name}: {n.hostname}: {note}" for c in review.clusters for n in c.nodes for note in n.notes]
    if review.changed:
        verdict = "**Changes:**"
    elif review.problems:
        verdict = "**`pulumi up` would stop at this change (below).**"
    elif notes:
        verdict = "**No resource changes, but read the notes below.**"
    else:
        verdict = "**No changes.**"
    out += [f"Compared with {base}. {verdict} Nodes: {_summary(review)}.", ""]
    if review.base_note:
        out += [f"> {review.base_note}", ""]
    if notes:
        out += ["> [!NOTE]", "> Not applied by `pulumi up`:"] + [f"> - {n}" for n in notes] + [""]
    if review.problems:
        out += ["> [!CAUTION]", "> `pulumi up` will stop before doing this change:"]
        out += [f"> - {p}" for p in review.problems]
        out.append("")
    if review.warnings:
        out += ["> [!WARNING]", "> `pulumi up` will do this, at a cost:"]
        out += [f"> - {w}" for w in review.warnings]
        out.append("")
    if lint:
        out += ["> [!WARNING]", "> Patch lint:"] + [f"> - {line}" for line in lint] + [""]
    for cluster in review.clusters:
        out += _cluster(review, cluster, detail)
    if detail != "full":
        out += [
            "> The per-node details do not fit in a comment: run "
            f"`make plan STACK={review.stack}` locally, or read the JSON plan (`FORMAT=json`).",
            "",
        ]
    out += [
        "<details><summary>Topology</summary>",
        "",
        "```mermaid",
        topology(review.head, review, per_node=detail != "summary"),
        "```",
        "",
        "</details>",
    ]
    return "\n".join(out) + "\n"
