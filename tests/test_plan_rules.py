"""Per field of the machine sources, the upgrade policy, VMs and nodes: the action predicted for
every node and the warnings, against the providers' rules (talos_fleet.providers).

Expected nodes come from the stack files (which nodes sit on which source, their roles), never
from the plan under test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talos_fleet import naming
from talos_fleet.loader import load_stack_file
from talos_fleet.review import Review, review
from talos_fleet.snapshot import snapshot
from talos_fleet.spec import LibvirtSource, MetalSource
from tests.conftest import ROOT
from tests.harness import mutated_stack

HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"
PXE = ROOT / "tests" / "fixtures" / "good" / "pxe-and-bridge.yaml"
EDGE = ROOT / "stacks" / "Pulumi.edge.yaml"


def plan(stack: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Review:
    return review(
        "t", snapshot(load_stack_file(stack)), snapshot(load_stack_file(mutated_stack(stack, tmp_path, change)))
    )


def kinds(result: Review) -> dict[str, set[str]]:
    return {f"{c.name}/{n.hostname}": set(n.kinds) for c in result.clusters for n in c.nodes}


def on_source(stack: Path, source: str) -> set[str]:
    fleet = load_stack_file(stack)
    return {f"{c}/{h}" for c, h, n in fleet.all_nodes() if n.source == source}


def everyone(stack: Path) -> set[str]:
    return {f"{c}/{h}" for c, h, _ in load_stack_file(stack).all_nodes()}


def sources(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc["config"]["talos-fleet:sources"]
    return found


def libvirt_source(stack: Path) -> str:
    return next(n for n, s in load_stack_file(stack).sources.items() if isinstance(s, LibvirtSource))


def pxe_source(stack: Path) -> str:
    return next(
        n for n, s in load_stack_file(stack).sources.items() if isinstance(s, MetalSource) and s.matchbox is not None
    )


def test_a_new_pool_replaces_every_disk_and_vm_and_warns_per_disk(tmp_path: Path) -> None:
    kvm = libvirt_source(HOMELAB)
    result = plan(HOMELAB, tmp_path, lambda d: sources(d)[kvm].update(pool="fast"))
    for node in on_source(HOMELAB, kvm):
        assert {"vm-change", "data-loss"} <= kinds(result)[node], node
        host = node.split("/")[1]
        assert any(f"-{host}-system" in w and "replaced" in w for w in result.warnings), host
    assert "**No changes.**" not in str(result)


def test_new_firmware_replaces_every_vm_and_keeps_disks(tmp_path: Path) -> None:
    kvm = libvirt_source(HOMELAB)
    result = plan(HOMELAB, tmp_path, lambda d: sources(d)[kvm].update(firmware="/usr/share/OVMF/OVMF_CODE.fd"))
    for node in on_source(HOMELAB, kvm):
        assert kinds(result)[node] == {"vm-change"}, node
    assert not any("Volume" in w for w in result.warnings)
    assert any("control planes" in w for w in result.warnings), "every control plane replaced at once"


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(name="talos-other"),
        lambda m: m.update(mode="route"),
        lambda m: m.update(dns=["10.17.3.1"]),
    ],
    ids=["name", "mode", "dns"],
)
def test_a_managed_network_change_replaces_the_network(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    kvm = libvirt_source(HOMELAB)
    result = plan(HOMELAB, tmp_path, lambda d: edit(sources(d)[kvm]["network"]["managed"]))
    for node in on_source(HOMELAB, kvm):
        assert "network-change" in kinds(result)[node], node
    network = next(r for r in result.resources if r.kind == "Network")
    assert network.change == "replace"


def test_a_new_uri_reaches_every_vm_through_another_host(tmp_path: Path) -> None:
    kvm = libvirt_source(HOMELAB)
    result = plan(HOMELAB, tmp_path, lambda d: sources(d)[kvm].update(uri="qemu+ssh://root@kvm-2.lan/system"))
    for node in on_source(HOMELAB, kvm):
        assert "source-change" in kinds(result)[node], node


def test_a_new_bridge_is_recorded_but_not_applied_to_the_vms(tmp_path: Path) -> None:
    bridge = next(n for n, s in load_stack_file(PXE).sources.items() if isinstance(s, LibvirtSource))
    result = plan(PXE, tmp_path, lambda d: sources(d)[bridge]["network"].update(bridge="br9"))
    domains = [r for r in result.resources if r.kind == "Domain"]
    assert domains
    assert all(r.change == "update" and not r.applied for r in domains)
    for node in on_source(PXE, bridge):
        assert kinds(result)[node] != {"unchanged"}


def test_a_matchbox_endpoint_change_reaches_every_pxe_node(tmp_path: Path) -> None:
    nuc = pxe_source(PXE)
    result = plan(PXE, tmp_path, lambda d: sources(d)[nuc]["matchbox"].update(endpoint="matchbox2.lan:8081"))
    for node in on_source(PXE, nuc):
        assert "source-change" in kinds(result)[node], node


def test_a_talos_bump_replaces_every_pxe_group_deleting_first_and_warns(tmp_path: Path) -> None:
    nuc = pxe_source(PXE)
    result = plan(PXE, tmp_path, lambda d: d["config"]["talos-fleet:defaults"].update(talosVersion="v1.13.11"))
    for node in on_source(PXE, nuc):
        assert {"talos-upgrade", "pxe-change"} <= kinds(result)[node], node
        assert any(f"-{node.split('/')[1]}-pxe" in w for w in result.warnings), node


def test_a_pxe_nodes_mac_replaces_only_its_group(tmp_path: Path) -> None:
    nuc = pxe_source(PXE)
    fleet = load_stack_file(PXE)
    cluster, host = next((c, h) for c, h, n in fleet.all_nodes() if n.source == nuc)

    def change(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:clusters"][cluster]["nodes"][host]["mac"] = "1c:69:7a:00:00:99"

    result = plan(PXE, tmp_path, change)
    changed = {n for n, k in kinds(result).items() if k != {"unchanged"}}
    assert changed == {f"{cluster}/{host}"}
    assert "pxe-change" in kinds(result)[f"{cluster}/{host}"]


@pytest.mark.parametrize("field", ["allowDowngrade", "drainTimeoutMinutes", "healthTimeoutMinutes", "workerBatchSize"])
def test_an_upgrade_policy_change_reruns_every_nodes_step(tmp_path: Path, field: str) -> None:
    values = {"allowDowngrade": True, "drainTimeoutMinutes": 30, "healthTimeoutMinutes": 30, "workerBatchSize": 2}
    result = plan(
        HOMELAB,
        tmp_path,
        lambda d: d["config"]["talos-fleet:defaults"].setdefault("upgrade", {}).update({field: values[field]}),
    )
    # workerBatchSize reaches only the rollouts (the order of their walks): they update and walk
    # no node, so no node has an action.
    expected = everyone(HOMELAB) if field != "workerBatchSize" else set()
    for node in expected:
        assert "step-rerun" in kinds(result)[node], node
    if field == "workerBatchSize":
        assert all(k == {"unchanged"} for k in kinds(result).values())
        clusters = {c.name for c in result.clusters}
        rollouts = {n for c in clusters for n in (naming.upgrade_rollout(c), naming.config_rollout(c))}
        assert {r.name for r in result.resources} == rollouts
    assert result.changed


def test_raising_recheck_rechecks_every_existing_node_in_both_rollouts(tmp_path: Path) -> None:
    """After reverting a change a failed rollout left on some nodes there is nothing to diff
    (Pulumi kept the rollouts' old inputs): raising upgrade.recheck makes both rollouts look at
    every node, and the plan says so, naming every node in wave order."""

    def bump(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:defaults"].setdefault("upgrade", {})["recheck"] = 3

    result = plan(HOMELAB, tmp_path, bump)
    cluster = result.clusters[0]
    assert cluster.status == "changed"
    steps = [s for s in cluster.rollout if s.kind == "recheck"]
    assert len(steps) == 1
    fleet = load_stack_file(HOMELAB)
    nodes = fleet.clusters[cluster.name].nodes
    cps = sorted(h for h, n in nodes.items() if n.role == "controlplane")
    workers = sorted(h for h, n in nodes.items() if n.role == "worker")
    assert steps[0].nodes == (*cps, *workers)
    assert "0 → 3" in steps[0].detail
    rollouts = {naming.upgrade_rollout(cluster.name), naming.config_rollout(cluster.name)}
    assert {r.name for r in result.resources} == rollouts


def test_removing_a_data_disk_deletes_its_volume_and_warns(tmp_path: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:defaults"]["roles"]["worker"]["vm"]["dataDisks"] = []

    fleet = load_stack_file(HOMELAB)
    workers = {f"{c}/{h}" for c, h, n in fleet.all_nodes() if n.role == "worker"}
    result = plan(HOMELAB, tmp_path, drop)
    for node in workers:
        assert {"vm-change", "data-loss"} <= kinds(result)[node], node
        change = next(n for c in result.clusters for n in c.nodes if f"{c.name}/{n.hostname}" == node)
        assert "VM replaced, disks deleted" in {a.label for a in change.actions}
        assert any(f"-{node.split('/')[1]}-data" in w and "deleted" in w for w in result.warnings)


def test_a_first_control_plane_address_change_reaches_every_node(tmp_path: Path) -> None:
    def move(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:clusters"]["homelab"]["nodes"]["cp-1"]["address"] = "10.17.3.14"

    result = plan(HOMELAB, tmp_path, move)
    for node in everyone(HOMELAB):
        assert kinds(result)[node] != {"unchanged"}, node


def test_metal_architecture_reaches_the_node(tmp_path: Path) -> None:
    """The installer is asked of the factory per architecture: the upgrade rollout reads the
    node's architecture, and its config carries the installer image (`.machine.install`, live:
    siderolabs/talos v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go
    CanApplyImmediate), so the config rollout applies it live, one node at a time."""
    metal = next(n for n, s in load_stack_file(EDGE).sources.items() if isinstance(s, MetalSource))
    result = plan(EDGE, tmp_path, lambda d: sources(d)[metal].update(architecture="arm64"))
    changes = {f"{c.name}/{n.hostname}": n for c in result.clusters for n in c.nodes}
    for node in on_source(EDGE, metal):
        assert kinds(result)[node] == {"config-live"}, node
        assert "configPatches" in changes[node].actions[0].detail
        cluster, host = node.split("/")
        assert any(r.startswith(f"Command {naming.upgrade_rollout(cluster)}:") for r in changes[node].resources)
        steps = next(c for c in result.clusters if c.name == cluster).rollout
        assert any(s.kind in ("canary", "config") and host in s.nodes for s in steps), node


def test_a_single_node_cluster_going_down_is_warned(tmp_path: Path) -> None:
    def single(d: dict[str, Any]) -> None:
        cluster = d["config"]["talos-fleet:clusters"]["homelab"]
        cluster["nodes"] = {"cp-1": cluster["nodes"]["cp-1"]}
        cluster["allowSchedulingOnControlPlanes"] = True

    (tmp_path / "base").mkdir()
    base = mutated_stack(HOMELAB, tmp_path / "base", single)

    def bigger(d: dict[str, Any]) -> None:
        d["config"]["talos-fleet:defaults"]["roles"]["controlplane"]["vm"]["cpus"] += 2

    result = plan(base, tmp_path, bigger)
    assert kinds(result) == {"homelab/cp-1": {"vm-change"}}
    assert any("cp-1 is the cluster's only node" in w for w in result.warnings), result.warnings


def test_renaming_a_libvirt_source_rehomes_its_vms_and_clashes_on_shared_names(tmp_path: Path) -> None:
    """Same host, new name: the VMs and disks keep their URNs and their provider's configuration."""
    kvm = libvirt_source(HOMELAB)

    def rename(d: dict[str, Any]) -> None:
        sources(d)["kvm-renamed"] = sources(d).pop(kvm)
        for node in d["config"]["talos-fleet:clusters"]["homelab"]["nodes"].values():
            if node.get("source", kvm) == kvm:
                node["source"] = "kvm-renamed"

    result = plan(HOMELAB, tmp_path, rename)
    moved = [r for r in result.resources if (r.holds_data or r.kind == "Domain") and r.change != "update"]
    assert not moved
    for node in on_source(HOMELAB, kvm):
        assert "vm-change" not in kinds(result)[node], node
    # The network's and the boot ISO's Pulumi names carry the source's name, their names on the
    # host do not: the new ones are created while the old ones still hold those names.
    network, iso = sorted(result.problems)
    assert network.startswith("Network kvm-renamed-network (name talos-homelab) is created before kvm-network")
    assert "already has a network of that name" in network
    assert iso.startswith("Volume kvm-renamed-boot-")
    assert "which the deletion of kvm-boot-" in iso


def test_a_vm_moved_to_metal_loses_its_disks_unless_acknowledged(tmp_path: Path) -> None:
    def to_metal(d: dict[str, Any]) -> None:
        sources(d)["rack"] = {"kind": "metal"}
        d["config"]["talos-fleet:clusters"]["homelab"]["nodes"]["worker-2"]["source"] = "rack"

    refused = plan(HOMELAB, tmp_path, to_metal)
    assert {"data-loss"} <= kinds(refused)["homelab/worker-2"]
    assert any(p.startswith("homelab: worker-2: disk system") and "acknowledgeDataLoss" in p for p in refused.problems)

    def acknowledged(d: dict[str, Any]) -> None:
        to_metal(d)
        d["config"]["talos-fleet:clusters"]["homelab"]["acknowledgeDataLoss"] = ["worker-2"]

    accepted = plan(HOMELAB, tmp_path, acknowledged)
    assert not [p for p in accepted.problems if "disk" in p]
    assert any("worker-2: disk homelab-worker-2-system is deleted" in w for w in accepted.warnings)
