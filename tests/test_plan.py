"""`make plan`: snapshots, predicted actions per kind of change, rollout order, Markdown, secrets.

The expected actions and orders come from the stack files (node names, roles, order), never from
the plan under test.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_fleet import naming, patches, report
from talos_fleet.loader import load_stack_file
from talos_fleet.review import Review, review
from talos_fleet.snapshot import Snapshot, installer, snapshot
from talos_fleet.spec import ROLES, ImageSpec, patch_secret_references
from tests.conftest import ROOT, STACK_FILES, VALID_STACKS
from tests.harness import add_extension, bump_talos, mutated_stack

HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"
GOLDEN = ROOT / "tests" / "golden"
CONTROL_PLANES = ["cp-1", "cp-2", "cp-3"]
WORKERS = ["worker-1", "worker-2"]


def snap(path: Path) -> Snapshot:
    return snapshot(load_stack_file(path))


def plan_change(tmp_path: Path, change: Callable[[dict[str, Any]], None], stack: Path = HOMELAB) -> Review:
    return review("homelab", snap(stack), snap(mutated_stack(stack, tmp_path, change)), base_ref="main")


def actions(result: Review, cluster: str = "homelab") -> dict[str, list[str]]:
    found = next(c for c in result.clusters if c.name == cluster)
    return {n.hostname: list(n.kinds) for n in found.nodes}


def rollout(result: Review, cluster: str = "homelab") -> list[tuple[str, list[str]]]:
    found = next(c for c in result.clusters if c.name == cluster)
    return [(s.kind, list(s.nodes)) for s in found.rollout]


def nodes(document: dict[str, Any]) -> dict[str, Any]:
    nodes: dict[str, Any] = document["config"]["talos-fleet:clusters"]["homelab"]["nodes"]
    return nodes


def config_walk(changed: list[str], batch: int = 1) -> list[tuple[str, list[str]]]:
    """The config rollout's order as issue #13 and the design give it
    (docs/design/issue-13-rollouts-research.md E.2, item 7): the canary is the first changed node in
    wave order (the first changed control plane, else the first changed worker); then the other
    changed control planes one at a time, then the changed workers in batches; then the existing
    nodes' applies re-send what the rollout applied. Hostname order (the stack's waves)."""
    planes = [h for h in CONTROL_PLANES if h in changed]
    workers = [h for h in WORKERS if h in changed]
    canary = (planes + workers)[0]
    rest = [h for h in workers if h != canary]
    steps = [("canary", [canary])] + [("config", [h]) for h in planes if h != canary]
    steps += [("config", rest[i : i + batch]) for i in range(0, len(rest), batch)]
    return [*steps, ("resend", [h for _, wave in steps for h in wave])]


def step_details(result: Review, kind: str, cluster: str = "homelab") -> list[str]:
    found = next(c for c in result.clusters if c.name == cluster)
    return [s.detail for s in found.rollout if s.kind == kind]


# ---------------------------------------------------------------------------------------------
# Schematic id, snapshot


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        # siderolabs/image-factory pkg/schematic/schematic_test.go ("empty", "config1"), and the
        # id the factory publishes for the qemu-guest-agent-only schematic.
        (ImageSpec(), "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
        (
            ImageSpec(kernel_args=("noapic", "nolapic")),
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
        ),
        (
            ImageSpec(extensions=("siderolabs/qemu-guest-agent",)),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        ),
    ],
)
def test_schematic_id_is_the_image_factorys(image: ImageSpec, expected: str) -> None:
    assert patches.schematic_id(image) == expected


@pytest.mark.parametrize("arg", ["ip=dhcp on", "on", "'quoted'", "a: b", "1234"])
def test_schematic_id_is_unknown_rather_than_wrong(arg: str) -> None:
    """yaml.v3 would quote these: the id is not guessed, the plan shows the schematic instead."""
    assert patches.schematic_id(ImageSpec(kernel_args=(arg,))) is None
    assert "<schematic id" in installer(None, "v1.13.10")


def test_every_node_gets_exactly_what_the_program_sends(valid_stack: Path) -> None:
    """The snapshot's documents, in order, are the role config generation's patches followed by
    the node apply's patches, as `render_fleet` (what the components send) renders them."""
    fleet = load_stack_file(valid_stack)
    secrets = {name: f"<secret:{name}>" for name in fleet.secrets}
    ids = {c: patches.schematic_id(fleet.image(cl)) for c, cl in fleet.clusters.items()}
    rendered = patches.render_fleet(fleet, secrets, lambda c, version, arch: installer(ids[c], version))
    for cluster in snapshot(fleet).clusters:
        for node in cluster.nodes:
            sent = [
                *rendered[naming.role_config_label(cluster.name, node.role)],
                *rendered[naming.node_apply(cluster.name, node.hostname)],
            ]
            expected = [doc for text in sent for doc in yaml.safe_load_all(text)]
            got = [yaml.safe_load(d.yaml) for d in node.documents if d.layer != "generated"]
            assert got == expected, f"{cluster.name}/{node.hostname}"


# ---------------------------------------------------------------------------------------------
# No change


def test_a_stack_against_itself_is_unchanged_and_deterministic(valid_stack: Path) -> None:
    first = review("s", snap(valid_stack), snap(valid_stack), base_ref="main")
    second = review("s", snap(valid_stack), snap(valid_stack), base_ref="main")
    assert not first.changed
    assert not first.problems
    assert all(c.rollout == () for c in first.clusters)
    assert all(n.kinds == ("unchanged",) and not n.documents for c in first.clusters for n in c.nodes)
    assert report.markdown(first) == report.markdown(second)
    assert report.to_json(first) == report.to_json(second)
    assert "**No changes.**" in report.markdown(first)
    assert Review.model_validate_json(report.to_json(first)) == first


# ---------------------------------------------------------------------------------------------
# One kind of change at a time: the predicted action of every node, and the rollout


def test_adding_a_node_touches_no_other_node(tmp_path: Path) -> None:
    def add(doc: dict[str, Any]) -> None:
        nodes(doc)["worker-3"] = {"role": "worker", "source": "kvm", "address": "10.17.3.23"}

    result = plan_change(tmp_path, add)
    assert actions(result) == {**{h: ["unchanged"] for h in CONTROL_PLANES + WORKERS}, "worker-3": ["new-node"]}
    assert rollout(result) == [("create", ["worker-3"]), ("apply", ["worker-3"])]


def test_removing_nodes_runs_last_in_reverse_rollout_order(tmp_path: Path) -> None:
    def remove(doc: dict[str, Any]) -> None:
        for host in WORKERS:
            del nodes(doc)[host]

    result = plan_change(tmp_path, remove)
    assert actions(result) == {**{h: ["unchanged"] for h in CONTROL_PLANES}, **{h: ["removed-node"] for h in WORKERS}}
    assert rollout(result) == [("remove", ["worker-2"]), ("remove", ["worker-1"])]


def test_changing_a_label_applies_live_to_that_node_only(tmp_path: Path) -> None:
    def relabel(doc: dict[str, Any]) -> None:
        nodes(doc)["worker-1"]["labels"] = {"node.kubernetes.io/pool": "gpu"}

    result = plan_change(tmp_path, relabel)
    assert actions(result) == {
        **{h: ["unchanged"] for h in CONTROL_PLANES},
        "worker-1": ["config-live"],
        "worker-2": ["unchanged"],
    }
    # A canary of its own, health-checked, then its apply re-sends the same bytes.
    assert rollout(result) == config_walk(["worker-1"])
    (canary,) = step_details(result, "canary")
    assert canary.startswith("health check, then applied live (no reboot), then a health check")
    (change,) = [n for c in result.clusters for n in c.nodes if n.documents]
    (doc,) = change.documents
    assert "-    node.kubernetes.io/pool: general" in doc.diff
    assert "+    node.kubernetes.io/pool: gpu" in doc.diff


def _waves_in_file_order(upgraded: list[str]) -> list[tuple[str, list[str]]]:
    # homelab: control planes one at a time, then workers in batches of 1 (its upgrade policy).
    return [("upgrade", [h]) for h in upgraded]


def test_a_talos_bump_upgrades_every_node_in_waves_then_rolls_the_new_installer_live(tmp_path: Path) -> None:
    """The installer image is in every node's config (`.machine.install`, live: Talos reads it
    at the next upgrade), so the config rollout walks every node after the upgrade, live."""
    result = plan_change(tmp_path, bump_talos)
    assert actions(result) == {h: ["talos-upgrade"] for h in CONTROL_PLANES + WORKERS}
    assert rollout(result) == _waves_in_file_order(CONTROL_PLANES + WORKERS) + config_walk(CONTROL_PLANES + WORKERS)
    assert all("applied live" in d for d in step_details(result, "canary") + step_details(result, "config"))
    assert not result.problems


def test_a_bigger_worker_batch_upgrades_workers_together(tmp_path: Path) -> None:
    def batch(doc: dict[str, Any]) -> None:
        bump_talos(doc)
        doc["config"]["talos-fleet:defaults"]["upgrade"] = {"workerBatchSize": 2}

    assert rollout(plan_change(tmp_path, batch)) == [
        *_waves_in_file_order(CONTROL_PLANES),
        ("upgrade", WORKERS),
        *config_walk(CONTROL_PLANES + WORKERS, batch=2),
    ]


def test_a_kubernetes_bump_is_one_cluster_step(tmp_path: Path) -> None:
    def bump(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["kubernetesVersion"] = "v1.36.4"

    result = plan_change(tmp_path, bump)
    assert actions(result) == {h: ["kubernetes-upgrade"] for h in CONTROL_PLANES + WORKERS}
    # upgrade-k8s, then the config rollout walks every node, live (the role configs carry the
    # version: `.cluster` and `.machine.kubelet` apply live).
    assert rollout(result) == [("kubernetes", []), *config_walk(CONTROL_PLANES + WORKERS)]
    assert all("applied live" in d for d in step_details(result, "canary") + step_details(result, "config"))


def test_an_extension_change_is_a_talos_upgrade_with_a_new_installer(tmp_path: Path) -> None:
    result = plan_change(tmp_path, add_extension)
    assert actions(result) == {h: ["talos-upgrade"] for h in CONTROL_PLANES + WORKERS}
    assert rollout(result) == _waves_in_file_order(CONTROL_PLANES + WORKERS) + config_walk(CONTROL_PLANES + WORKERS)
    detail = result.clusters[0].nodes[0].actions[0].detail
    assert "+siderolabs/util-linux-tools" in detail
    base, head = (r.clusters[0] for r in (result.base, result.head) if r is not None)
    assert base.schematic_id != head.schematic_id


def test_resizing_a_vm_replaces_it_and_keeps_its_disks(tmp_path: Path) -> None:
    def resize(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["roles"]["worker"]["vm"]["memoryMib"] = 12288

    result = plan_change(tmp_path, resize)
    assert actions(result) == {**{h: ["unchanged"] for h in CONTROL_PLANES}, **{h: ["vm-change"] for h in WORKERS}}
    assert rollout(result) == [("replace-vms", WORKERS)]
    vm = [a for c in result.clusters for n in c.nodes for a in n.actions if a.kind == "vm-change"]
    assert all(a.replaces_vm and "8192 → 12288 MiB" in a.detail for a in vm)
    assert all(a.label == "VM replaced, disks kept" for a in vm)
    (warning,) = result.warnings  # the control plane keeps quorum; the workers do not stay up
    assert f"every worker ({', '.join(WORKERS)}) goes down at the same time, without a drain" in warning


def test_resizing_every_control_plane_at_once_warns_of_quorum(tmp_path: Path) -> None:
    def resize(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["roles"]["controlplane"]["vm"]["cpus"] = 4

    result = plan_change(tmp_path, resize)
    assert actions(result) == {**{h: ["vm-change"] for h in CONTROL_PLANES}, **{h: ["unchanged"] for h in WORKERS}}
    (warning,) = result.warnings
    assert "cp-1, cp-2, cp-3 go down at the same time" in warning
    assert "etcd loses quorum" in report.markdown(result)


def test_moving_a_vm_to_another_hypervisor_is_refused_since_nothing_would_move(tmp_path: Path) -> None:
    """Another provider configuration replaces nothing: the VM and its disks would only be looked
    for on the other host. The plan says so and stops."""

    def move(doc: dict[str, Any]) -> None:
        sources = doc["config"]["talos-fleet:sources"]
        sources["kvm2"] = {**sources["kvm"], "uri": "qemu+ssh://admin@kvm2.example.net/system"}
        sources["kvm2"]["network"] = {"managed": {**sources["kvm"]["network"]["managed"], "name": "talos-2"}}
        nodes(doc)["worker-2"]["source"] = "kvm2"

    result = plan_change(tmp_path, move)
    assert actions(result) == {
        **{h: ["unchanged"] for h in [*CONTROL_PLANES, "worker-1"]},
        # Its DHCP-entry step has another URI and network: pulumi-command runs it again.
        "worker-2": ["source-change", "step-rerun"],
    }
    (problem,) = result.problems
    assert problem.startswith("homelab: worker-2 moves from machine source kvm to kvm2")
    assert "Remove the node in one change and add it back on kvm2 in another" in problem
    assert not [r for r in result.resources if r.kind in ("Volume", "Domain") and r.change == "replace"]
    assert "**machine source changed**" in report.markdown(result)


def test_a_bigger_disk_is_a_note_not_an_action(tmp_path: Path) -> None:
    def grow(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["roles"]["worker"]["vm"]["diskGib"] = 80

    result = plan_change(tmp_path, grow)
    assert actions(result) == {h: ["unchanged"] for h in CONTROL_PLANES + WORKERS}
    notes = {n.hostname: n.notes for c in result.clusters for n in c.nodes if n.notes}
    assert sorted(notes) == WORKERS
    assert all("virsh vol-resize" in n[0] for n in notes.values())


def test_a_cluster_patch_applies_to_every_node(tmp_path: Path) -> None:
    def patch(doc: dict[str, Any]) -> None:
        cluster = doc["config"]["talos-fleet:clusters"]["homelab"]
        cluster["patches"] = [{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}]

    result = plan_change(tmp_path, patch)
    assert actions(result) == {h: ["config-live"] for h in CONTROL_PLANES + WORKERS}
    assert rollout(result) == config_walk(CONTROL_PLANES + WORKERS)
    labels = {d.label for c in result.clusters for n in c.nodes for d in n.documents}
    assert labels == {"cluster · v1alpha1 from clusters.homelab.patches[0]"}


# ---------------------------------------------------------------------------------------------
# Config changes: live or reboot (talos_fleet.reboots), in the config rollout's order

# Talos 1.14 lists environment variables as a change that needs a reboot (siderolabs/docs
# 40a533f:public/talos/v1.15/configure-your-talos-cluster/system-configuration/editing-machine-configuration.mdx);
# Talos 1.13 applies `.machine.env` only with a reboot (siderolabs/talos
# v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go CanApplyImmediate).
ENV_PATCH = {"machine": {"env": {"HTTP_PROXY": "http://proxy.example.net:3128"}}}
# `.machine.sysctls` is in 1.13's live list and in no 1.14 reboot list (same sources).
SYSCTL_PATCH = {"machine": {"sysctls": {"vm.max_map_count": "262144"}}}


def test_a_setting_that_needs_a_reboot_is_staged_and_rebooted_drained_in_waves(tmp_path: Path) -> None:
    def patch(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:clusters"]["homelab"]["patches"] = [ENV_PATCH]
        doc["config"]["talos-fleet:defaults"]["upgrade"] = {"workerBatchSize": 2}

    result = plan_change(tmp_path, patch)
    assert actions(result) == {h: ["config-reboot"] for h in CONTROL_PLANES + WORKERS}
    for node in result.clusters[0].nodes:
        (action,) = node.actions
        assert action.detail.startswith(".machine.env: staged, then the node is drained and rebooted"), action.detail
    assert rollout(result) == config_walk(CONTROL_PLANES + WORKERS, batch=2)
    for detail in step_details(result, "canary") + step_details(result, "config"):
        assert "staged, then drained and rebooted" in detail
        assert "applied live" not in detail
        assert detail.endswith("then a health check") or "if it fails the rollout stops here" in detail
    (together,) = [s for s in result.clusters[0].rollout if s.kind == "config" and len(s.nodes) > 1]
    assert list(together.nodes) == WORKERS
    assert "rebooted together" in together.detail
    text = report.markdown(result)
    assert "**config change needs a reboot**: .machine.env" in text
    order = [text.index(f"**{title}**") for title in ("Config canary", "Config rollout", "Re-send configs")]
    assert order == sorted(order)


def test_a_worker_only_change_makes_the_first_changed_worker_the_canary(tmp_path: Path) -> None:
    def patch(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["roles"]["worker"]["patches"] = [SYSCTL_PATCH]

    result = plan_change(tmp_path, patch)
    assert actions(result) == {**{h: ["unchanged"] for h in CONTROL_PLANES}, **{h: ["config-live"] for h in WORKERS}}
    assert rollout(result) == config_walk(WORKERS)
    assert rollout(result)[0] == ("canary", [WORKERS[0]])


def test_live_and_reboot_nodes_share_a_batch_each_by_its_own_path(tmp_path: Path) -> None:
    def patch(doc: dict[str, Any]) -> None:
        doc["config"]["talos-fleet:defaults"]["upgrade"] = {"workerBatchSize": 2}
        nodes(doc)["cp-2"]["patches"] = [ENV_PATCH]
        for host in WORKERS:
            nodes(doc)[host]["patches"] = [ENV_PATCH if host == WORKERS[1] else SYSCTL_PATCH]

    result = plan_change(tmp_path, patch)
    assert actions(result) == {
        "cp-1": ["unchanged"],
        "cp-2": ["config-reboot"],
        "cp-3": ["unchanged"],
        WORKERS[0]: ["config-live"],
        WORKERS[1]: ["config-reboot"],
    }
    assert rollout(result) == config_walk(["cp-2", *WORKERS], batch=2)
    canary, batch = step_details(result, "canary")[0], step_details(result, "config")[0]
    assert "staged, then drained and rebooted" in canary
    assert f"{WORKERS[0]} applied live; {WORKERS[1]} staged, then drained and rebooted" in batch


def _rollout_environment(snapshot_: Snapshot, cluster: str) -> dict[str, dict[str, str]]:
    """What the program's config rollout gets per node (TALOS_FLEET_CONFIG_<host>, see
    talos_fleet.desired), read straight from the desired state."""
    (rollout_,) = [r for r in snapshot_.resources if r.name == naming.config_rollout(cluster)]
    env = rollout_.inputs["environment"]
    return {k.removeprefix("TALOS_FLEET_CONFIG_"): json.loads(v) for k, v in env.items() if "_CONFIG_" in k}


EDITS: list[Callable[[dict[str, Any]], None]] = [
    lambda d: d["config"]["talos-fleet:clusters"]["homelab"].update(patches=[ENV_PATCH]),
    lambda d: d["config"]["talos-fleet:clusters"]["homelab"].update(patches=[SYSCTL_PATCH]),
    lambda d: nodes(d)["worker-2"].update(patches=[ENV_PATCH, SYSCTL_PATCH]),
    lambda d: nodes(d)["cp-1"].update(labels={"zone": "b"}),
    lambda d: d["config"]["talos-fleet:defaults"].update(configContract="v1.12"),
    lambda d: d["config"]["talos-fleet:defaults"].update(kubernetesVersion="v1.36.4"),
    bump_talos,
]


@pytest.mark.parametrize("edit", EDITS, ids=["env", "sysctl", "node-env", "label", "contract", "kubernetes", "talos"])
def test_the_plan_reboots_exactly_the_nodes_the_rollout_reboots(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    """The program reboots a node iff the reboot hash in its rollout variable moves; the plan
    says "needs a reboot" for exactly those nodes, and walks exactly the nodes whose hashes move.
    A base without a config rollout (older code) is decided from its documents, alike."""
    base, head = snap(HOMELAB), snap(mutated_stack(HOMELAB, tmp_path, edit))
    before, after = _rollout_environment(base, "homelab"), _rollout_environment(head, "homelab")
    rebooted = {h for h in after if before[h]["reboot"] != after[h]["reboot"]}
    walked = {h for h in after if before[h] != after[h]}
    assert walked, "every edit here changes some node's config"
    result = review("homelab", base, head)
    assert {h for h, k in actions(result).items() if "config-reboot" in k} == rebooted
    assert {h for kind, wave in rollout(result) if kind in ("canary", "config") for h in wave} == walked
    old = base.model_copy(
        update={"resources": tuple(r for r in base.resources if r.name != naming.config_rollout("homelab"))}
    )
    without = review("homelab", old, head)
    assert actions(without) == actions(result)
    # The rollout is created by that change and only records: the applies carry it, at once.
    assert rollout(without)[-1] == ("apply", [h for h in CONTROL_PLANES + WORKERS if h in walked])
    assert not {k for k, _ in rollout(without)} & {"canary", "config", "resend"}
    assert any("reboot them all at once, without a drain" in w for w in without.warnings) == bool(rebooted)


# ---------------------------------------------------------------------------------------------
# What pulumi up would refuse


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["config"]["talos-fleet:defaults"].update(talosVersion="v1.13.9"), "downgrade is refused"),
        (lambda d: nodes(d)["worker-1"].update(address="10.17.3.31"), "worker-1 changes address"),
        (lambda d: nodes(d)["worker-1"].update(role="controlplane"), "worker-1 changes role"),
    ],
    ids=["downgrade", "address", "role"],
)
def test_changes_pulumi_up_would_stop_at_are_named(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    def apply(doc: dict[str, Any]) -> None:
        change(doc)
        if "controlplane" in str(nodes(doc)["worker-1"]):  # keep an odd control plane count
            del nodes(doc)["cp-3"]

    result = plan_change(tmp_path, apply)
    assert any(problem in p for p in result.problems), result.problems
    assert problem in report.markdown(result)


def test_removing_a_cluster_names_its_protected_secrets(tmp_path: Path) -> None:
    multi = ROOT / "stacks" / "Pulumi.multi-region.yaml"

    def drop(doc: dict[str, Any]) -> None:
        del doc["config"]["talos-fleet:clusters"]["ap-south"]

    result = review("multi-region", snap(multi), snap(mutated_stack(multi, tmp_path, drop)))
    (removed,) = [c for c in result.clusters if c.status == "removed"]
    assert removed.name == "ap-south"
    assert all(n.kinds == ("removed-node",) for n in removed.nodes)
    assert "pulumi state unprotect 'urn:pulumi:multi-region::talos-fleet::" in removed.problems[0]


# ---------------------------------------------------------------------------------------------
# Markdown


def _combined(doc: dict[str, Any]) -> None:
    bump_talos(doc)
    nodes(doc)["worker-3"] = {"role": "worker", "source": "kvm", "address": "10.17.3.23"}
    del nodes(doc)["worker-2"]
    nodes(doc)["worker-1"]["labels"] = {"node.kubernetes.io/pool": "gpu"}


def test_the_markdown_of_a_combined_change_matches_the_golden_file(tmp_path: Path) -> None:
    """Our own rendering, reviewed once: regenerate with UPDATE_GOLDEN=1 and read the diff."""
    text = report.markdown(plan_change(tmp_path, _combined))
    golden = GOLDEN / "homelab-combined.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_the_topology_shows_every_source_cluster_and_node(valid_stack: Path) -> None:
    fleet = load_stack_file(valid_stack)
    chart = report.topology(snapshot(fleet))
    assert chart.startswith("flowchart LR")
    for name in fleet.sources:
        assert f'subgraph src_{re.sub(r"[^A-Za-z0-9]", "_", name)}["{name} · ' in chart
    for cname, host, node in fleet.all_nodes():
        assert f'["{host}<br/>{node.role}<br/>{node.ip}"]' in chart, (cname, host)
    assert chart.count("subgraph") == chart.count("\n  end") + chart.count("\n    end")


def test_a_plan_too_big_for_a_comment_leaves_out_the_details(tmp_path: Path) -> None:
    def many(doc: dict[str, Any]) -> None:
        bump_talos(doc)
        for i in range(60):
            nodes(doc)[f"extra-{i}"] = {"role": "worker", "source": "kvm", "address": f"10.17.3.{100 + i}"}

    text = report.markdown(plan_change(tmp_path, many))
    assert len(text) <= report.COMMENT_LIMIT
    assert "every document it receives" not in text
    assert "do not fit in a comment" in text
    assert "`extra-59`" in text


def test_a_fleet_too_big_for_tables_is_summarised(tmp_path: Path) -> None:
    def many(doc: dict[str, Any]) -> None:
        bump_talos(doc)
        doc["config"]["talos-fleet:sources"]["kvm"]["network"]["managed"]["cidr"] = "10.17.0.0/16"
        doc["config"]["talos-fleet:clusters"]["homelab"]["network"]["cidr"] = "10.17.0.0/16"
        for i in range(600):
            nodes(doc)[f"extra-{i}"] = {
                "role": "worker",
                "source": "kvm",
                "address": f"10.17.{10 + i // 200}.{i % 200 + 10}",
            }

    text = report.markdown(plan_change(tmp_path, many))
    assert len(text) <= report.COMMENT_LIMIT
    assert "- Talos upgrade: 5 node(s)" in text, "the existing nodes upgrade"
    assert "- new node: 600 node(s)" in text
    assert "| `extra-1` |" not in text
    assert "cluster homelab<br/>3 controlplane, 602 worker" in text


# ---------------------------------------------------------------------------------------------
# Secrets


def _secret_strings(stack: Path) -> list[str]:
    """Every secure ciphertext in the stack file, and what the test harness decrypts it to."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                cipher = str(value["secure"])
                found.extend([cipher, base64.b64decode(cipher.removeprefix("v1:")).decode()])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(yaml.safe_load(stack.read_text()))
    return found


@pytest.mark.parametrize("stack", [s for s in VALID_STACKS if _secret_strings(s)], ids=lambda p: p.stem)
def test_the_plan_never_holds_a_secret(stack: Path, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        bump_talos(doc)

    result = review("s", snap(stack), snap(mutated_stack(stack, tmp_path, change)))
    text = report.markdown(result) + report.to_json(result)
    for secret in _secret_strings(stack):
        assert secret not in text
    fleet = load_stack_file(stack)
    disk_secrets = {n for c in fleet.clusters.values() for n in c.secret_names()}
    referenced = {
        n
        for c in fleet.clusters.values()
        for patch in (
            *c.patches,
            *(p for role in ROLES for p in fleet.role_patches(c, role)),
            *(p for node in c.nodes.values() for p in node.patches),
        )
        for n in patch_secret_references(patch)
    }
    for name in sorted(disk_secrets | referenced):
        assert f"<secret:{name}>" in text, "a secret field shows as its name"


def test_the_shipped_stacks_are_all_planned() -> None:
    """`make plans` walks stacks/; every shipped stack renders a plan of its own."""
    for stack in STACK_FILES:
        result = review(stack.stem, None, snap(stack))
        assert all(c.status == "new" for c in result.clusters)
        assert all(s.kind != "remove" for c in result.clusters for s in c.rollout)
        assert {r for r in ROLES} >= {n.role for c in result.clusters for n in c.nodes}
