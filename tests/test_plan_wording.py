"""What the plan says (issue #12's wording list): each point with a change that shows it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from talos_fleet import report
from talos_fleet.loader import load_stack_file
from talos_fleet.review import Review, review
from talos_fleet.snapshot import snapshot
from tests.conftest import ROOT
from tests.harness import bump_talos, mutated_stack

HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"
EDGE = ROOT / "stacks" / "Pulumi.edge.yaml"


def plan(stack: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], name: str = "t") -> Review:
    return review(
        name, snapshot(load_stack_file(stack)), snapshot(load_stack_file(mutated_stack(stack, tmp_path, change)))
    )


def defaults(d: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = d["config"]["talos-fleet:defaults"]
    return found


def labels(result: Review) -> set[str]:
    return {a.label for c in result.clusters for n in c.nodes for a in n.actions}


def test_a_downgrade_is_labelled_a_downgrade(tmp_path: Path) -> None:
    def down(d: dict[str, Any]) -> None:
        defaults(d).update(talosVersion="v1.13.9", kubernetesVersion="v1.36.2")
        defaults(d).setdefault("upgrade", {})["allowDowngrade"] = True

    result = plan(HOMELAB, tmp_path, down)
    assert {"Talos downgrade", "Kubernetes downgrade"} <= labels(result)
    assert not {"Talos upgrade", "Kubernetes upgrade"} & labels(result)


def test_no_changes_is_never_said_above_a_caution_box(tmp_path: Path) -> None:
    def move(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:clusters"]["homelab"]["nodes"]["worker-1"]["address"] = "10.17.3.31"

    text = report.markdown(plan(HOMELAB, tmp_path, move))
    assert "[!CAUTION]" in text
    assert "No changes" not in text


def test_a_disk_growth_shows_its_note_instead_of_no_changes(tmp_path: Path) -> None:
    def grow(d: dict[str, Any]) -> None:
        defaults(d)["roles"]["worker"]["vm"]["diskGib"] += 10

    text = report.markdown(plan(HOMELAB, tmp_path, grow))
    assert "**No changes.**" not in text
    assert "No resource changes, but read the notes" in text
    assert "> [!NOTE]" in text
    assert "virsh vol-resize" in text.split("### Cluster")[0], "the note is at the top, not only in the details"


def test_a_new_metal_node_says_a_person_must_boot_it(tmp_path: Path) -> None:
    def add(d: dict[str, Any]) -> None:
        cluster = next(iter(d["config"]["talos-fleet:clusters"].values()))
        first = next(iter(cluster["nodes"].values()))
        cluster["nodes"]["edge-042-z"] = {**first, "role": "worker", "address": "10.20.42.30/24"}

    result = plan(EDGE, tmp_path, add, name="edge")
    (new,) = [a for c in result.clusters for n in c.nodes for a in n.actions if a.kind == "new-node"]
    assert "a person must boot it" in new.detail
    assert "make urls STACK=edge" in new.detail
    create = next(s for c in result.clusters for s in c.rollout if s.kind == "create")
    assert "edge-042-z must be booted by a person" in create.detail


def test_a_single_node_cluster_talos_upgrade_says_the_api_goes_down(tmp_path: Path) -> None:
    fleet = load_stack_file(EDGE)
    (cluster,) = fleet.clusters.values()
    assert len(cluster.nodes) == 1, "edge is the single-node stack"
    (only,) = cluster.nodes
    result = plan(EDGE, tmp_path, bump_talos)
    assert any(f"{only} is the cluster's only node" in w and "Kubernetes API" in w for w in result.warnings)


def test_a_single_node_cluster_config_reboot_says_the_api_goes_down(tmp_path: Path) -> None:
    (cluster,) = load_stack_file(EDGE).clusters
    (only,) = load_stack_file(EDGE).clusters[cluster].nodes
    # Environment variables need a reboot (siderolabs/docs 40a533f:public/talos/v1.15/
    # configure-your-talos-cluster/system-configuration/editing-machine-configuration.mdx).
    env = {"machine": {"env": {"HTTP_PROXY": "http://proxy.example.net:3128"}}}
    result = plan(EDGE, tmp_path, lambda d: d["config"]["talos-fleet:clusters"][cluster].update(patches=[env]))
    assert "config change needs a reboot" in labels(result)
    assert any(f"{only} is the cluster's only node: it reboots for its config change" in w for w in result.warnings)


def test_the_generated_config_block_shows_the_config_contract(tmp_path: Path) -> None:
    view = snapshot(load_stack_file(HOMELAB))
    generated = next(d for d in view.clusters[0].nodes[0].documents if d.layer == "generated")
    inputs = yaml.safe_load(generated.yaml)
    assert inputs["configContract"] == load_stack_file(HOMELAB).defaults.contract
    assert "talosVersion" not in inputs


def test_the_topology_has_a_legend_removed_nodes_and_two_upgrade_colours(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        bump_talos(d)
        del d["config"]["talos-fleet:clusters"]["homelab"]["nodes"]["worker-2"]

    chart = report.topology(plan(HOMELAB, tmp_path, change).head, plan(HOMELAB, tmp_path, change))
    assert 'subgraph legend["legend"]' in chart
    assert '["worker-2<br/>worker<br/>10.17.3.22"]' in chart
    assert "class n_homelab_worker_2 removed_node" in chart
    styles = dict(line.split()[1:3] for line in chart.splitlines() if line.strip().startswith("classDef"))
    assert styles["talos_upgrade"] != styles["kubernetes_upgrade"]


def test_lowering_the_config_contract_warns(tmp_path: Path) -> None:
    result = plan(HOMELAB, tmp_path, lambda d: defaults(d).update(configContract="v1.12"))
    assert any("configContract is lowered v1.13 → v1.12" in w for w in result.warnings)
    # The contract changes generated v1alpha1 defaults, which Talos 1.13 applies only with a
    # reboot (siderolabs/talos v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go
    # CanApplyImmediate): every node is staged and rebooted, and says why.
    actions = [a for c in result.clusters for n in c.nodes for a in n.actions]
    assert actions
    assert all(a.kind == "config-reboot" and a.detail.startswith("configContract v1.13 → v1.12") for a in actions)
    unchanged = plan(HOMELAB, tmp_path, lambda d: None)
    assert not unchanged.warnings
