"""Pure-core properties: adding nodes never changes another node's output or name; rendering is
deterministic; credentials files are private. No Pulumi here."""

from __future__ import annotations

import copy
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talos_fleet import naming, patches
from talos_fleet.loader import tree_from_stack_file, validate_tree
from talos_fleet.plan import plan_cluster, plan_hypervisors
from talos_fleet.spec import Fleet
from tests.conftest import ROOT, VALID_STACKS, stack_id
from tools.write_credentials import write_secret_file

HOSTNAME = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
LABEL_VALUE = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    """A valid fleet tree (one or two clusters on 10.<c>.0.0/16) and the host numbers in use."""
    # Roles come from membership, never from parsing names: a drawn worker hostname may look
    # like anything, so workers are kept out of the control planes' `cp-` names.
    control_planes = [f"cp-{i}" for i in range(draw(st.sampled_from([1, 3, 5])))]
    workers = draw(st.lists(HOSTNAME.filter(lambda h: not h.startswith("cp-")), max_size=12, unique=True))
    hosts = control_planes + workers
    numbers = draw(st.lists(st.integers(10, 250), min_size=len(hosts), max_size=len(hosts), unique=True))
    vip = draw(st.booleans())
    static = draw(st.booleans())
    nodes: dict[str, Any] = {}
    for i, (host, number) in enumerate(zip(hosts, numbers, strict=True)):
        node: dict[str, Any] = {
            "role": "controlplane" if host in control_planes else "worker",
            "source": draw(st.sampled_from(["metal", "arm"])),
            "address": f"10.0.0.{number}",
        }
        if draw(st.booleans()):
            node["labels"] = {"example.com/pool": draw(LABEL_VALUE), "zone": f"z{i % 3}"}
        if draw(st.booleans()):
            node["patches"] = [{"machine": {"sysctls": {"net.core.somaxconn": str(number)}}}]
        nodes[host] = node
    cluster: dict[str, Any] = {
        "endpoint": {"vip": "10.0.0.5"} if vip else {"host": "api.example.net"},
        "network": {
            "cidr": "10.0.0.0/24",
            "gateway": "10.0.0.1",
            "link": "eno1",
            "addressing": "static" if static else "dhcp",
        },
        "patches": [{"machine": {"sysctls": {"vm.swappiness": "10"}}}],
        "nodes": nodes,
    }
    tree = {
        "defaults": {
            "talosVersion": "v1.13.10",
            "kubernetesVersion": "v1.36.3",
            "configContract": "v1.13",
            "image": {"extensions": draw(st.lists(st.sampled_from(["siderolabs/iscsi-tools", "siderolabs/i915"])))},
        },
        "sources": {"metal": {"kind": "metal"}, "arm": {"kind": "metal", "architecture": "arm64"}},
        "clusters": {"fleet-a": cluster},
    }
    return tree, numbers


def _outputs(fleet: Fleet) -> dict[str, Any]:
    """Everything rendered per node and per role, keyed by the resource name it lands in."""
    return dict(patches.render_fleet(fleet, {}, lambda cname, version, arch: f"installer-{cname}-{version}-{arch}"))


@given(fleets(), st.data())
def test_adding_a_worker_changes_no_other_node_output_or_name(
    generated: tuple[dict[str, Any], list[int]], data: st.DataObject
) -> None:
    tree, used = generated
    before = _outputs(validate_tree(tree))
    nodes = tree["clusters"]["fleet-a"]["nodes"]
    host = data.draw(HOSTNAME.filter(lambda h: h not in nodes))
    number = data.draw(st.integers(10, 250).filter(lambda n: n not in used))
    labels = {"example.com/pool": data.draw(LABEL_VALUE)}
    nodes[host] = {"role": "worker", "source": "metal", "address": f"10.0.0.{number}", "labels": labels}
    after = _outputs(validate_tree(tree))
    added = naming.node_apply("fleet-a", host)
    assert set(after) - set(before) == {added}
    assert {k: v for k, v in after.items() if k != added} == before


@given(fleets())
def test_adding_two_control_planes_changes_no_other_node_output(generated: tuple[dict[str, Any], list[int]]) -> None:
    tree, used = generated
    before = _outputs(validate_tree(tree))
    free = [n for n in range(10, 251) if n not in used][:2]
    nodes = tree["clusters"]["fleet-a"]["nodes"]
    for i, number in enumerate(free):
        nodes[f"new-cp-{i}"] = {"role": "controlplane", "source": "metal", "address": f"10.0.0.{number}"}
    fleet = validate_tree(tree)
    after = _outputs(fleet)
    assert {k: v for k, v in after.items() if k in before} == before
    # The first control plane stays the bootstrap node: appending never moves it.
    assert plan_cluster(fleet, "fleet-a").bootstrap_node.hostname not in ("new-cp-0", "new-cp-1")


@given(fleets())
def test_nodes_of_a_role_differ_only_in_their_node_patch(generated: tuple[dict[str, Any], list[int]]) -> None:
    fleet = validate_tree(generated[0])
    outputs = _outputs(fleet)
    cluster = fleet.clusters["fleet-a"]
    for role in ("controlplane", "worker"):
        # One config generation per role: what nodes share is rendered once, not per node.
        assert outputs[naming.role_config_label("fleet-a", role)] == patches.role_config_patches(
            fleet, cluster, role, {}
        )
    for host in cluster.nodes:
        text = "".join(outputs[naming.node_apply("fleet-a", host)])
        assert host in text
        others = [h for h in cluster.nodes if h != host and len(h) > 3]
        assert not any(f"hostname: {h}\n" in text for h in others)


@given(fleets())
def test_rendering_is_deterministic(generated: tuple[dict[str, Any], list[int]]) -> None:
    tree = generated[0]
    assert _outputs(validate_tree(tree)) == _outputs(validate_tree(tree))


@given(fleets())
def test_resource_names_are_unique_and_derive_from_keys(generated: tuple[dict[str, Any], list[int]]) -> None:
    fleet = validate_tree(generated[0])
    names = [
        naming.secrets("fleet-a"),
        naming.schematic("fleet-a"),
        naming.bootstrap("fleet-a"),
        naming.kubeconfig("fleet-a"),
    ]
    names += [naming.node_apply("fleet-a", h) for h in fleet.clusters["fleet-a"].nodes]
    assert len(names) == len(set(names))
    reordered = dict(reversed(list(generated[0]["clusters"]["fleet-a"]["nodes"].items())))
    generated[0]["clusters"]["fleet-a"]["nodes"] = reordered
    # Node order decides only which control plane bootstraps, never any node's output.
    assert {k: v for k, v in _outputs(validate_tree(generated[0])).items()} == _outputs(fleet)


@pytest.mark.parametrize("stack", VALID_STACKS, ids=stack_id)
def test_render_is_identical_across_processes_and_hash_seeds(stack: Path) -> None:
    """Set and dict ordering must not leak into output: two interpreters, two hash seeds."""
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-m", "talos_fleet", "render", str(stack)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert "node patch" in outputs[0]


def test_credentials_file_is_private_from_the_start(tmp_path: Path) -> None:
    target = tmp_path / "creds" / "edge.kubeconfig"
    old_umask = os.umask(0)  # the most permissive umask: the mode must not depend on it
    try:
        write_secret_file(target, "apiVersion: v1\n")
        target.chmod(0o644)  # an existing, too-open file is tightened on rewrite
        write_secret_file(target, "apiVersion: v1\nkind: Config\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert target.read_text() == "apiVersion: v1\nkind: Config\n"
    assert not list(target.parent.glob(".*.tmp"))


HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"


@given(
    st.lists(
        st.tuples(HOSTNAME, st.integers(30, 250)), min_size=1, max_size=8, unique_by=(lambda t: t[0], lambda t: t[1])
    )
)
def test_adding_vms_changes_no_other_vm_or_node_output(added: list[tuple[str, int]]) -> None:
    tree = tree_from_stack_file(HOMELAB)
    before = validate_tree(tree)
    nodes = copy.deepcopy(tree)
    for host, number in added:
        if host in before.clusters["homelab"].nodes:
            return
        nodes["clusters"]["homelab"]["nodes"][host] = {
            "role": "worker",
            "source": "kvm",
            "address": f"10.17.3.{number}",
        }
    after = validate_tree(nodes)
    old_vms = {vm.hostname: vm for hv in plan_hypervisors(before) for vm in hv.vms}
    new_vms = {vm.hostname: vm for hv in plan_hypervisors(after) for vm in hv.vms}
    assert {h: new_vms[h] for h in old_vms} == old_vms
    assert len({vm.mac for vm in new_vms.values()}) == len(new_vms)
    old_out, new_out = _outputs(before), _outputs(after)
    assert {k: new_out[k] for k in old_out} == old_out
