"""The rollout graph under mocks (issue #13), for every valid stack and a generated 1,000-node
cluster: one upgrade rollout and one config rollout per cluster walk the waves themselves, so no
resource waits on another node's step and every resource's ancestry stays a handful of resources
whatever the cluster's size. The orders inside the rollouts are the day-2 steps' (tests/test_rollouts.py).

Expected values come from the stack file and talos_fleet.waves, never from the registrations under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import fleet_config
from talos_fleet import naming
from talos_fleet.loader import load_pulumi_config, load_stack_file
from talos_fleet.spec import Fleet
from tests.conftest import VALID_STACKS, stack_id
from tests.fakes import tool as fake
from tests.harness import Registration, Run, is_secret, mutated_stack, plain, run_program, run_stack_file
from tests.test_day2 import CA_B64, Result, Steps
from tests.test_operations import expected_waves

COMMAND = "command:local:Command"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
MACHINES = ("libvirt:index/domain:Domain", "matchbox:index/group:Group")
BIG = 1000


@cache
def big_run() -> tuple[Run, Fleet]:
    """One generated cluster of 1,000 metal nodes (3 control planes), run once for this module."""
    config = fleet_config(BIG, 1)
    return run_program(config), load_pulumi_config(config, [])


@pytest.fixture(params=[*VALID_STACKS, None], ids=lambda p: "1000-nodes" if p is None else stack_id(p))
def case(request: pytest.FixtureRequest) -> tuple[Run, Fleet]:
    """Every valid stack, and the generated 1,000-node cluster."""
    path: Path | None = request.param
    if path is None:
        return big_run()
    return run_stack_file(path), load_stack_file(path)


def _named(run: Run) -> dict[str, Registration]:
    return {r.name: r for r in run.registrations}


def ancestry(run: Run, start: Registration) -> set[str]:
    """Every resource `start` waits for, directly or through others (dependencies include the
    resources its Output inputs came from)."""
    by_urn, seen, todo = run.by_urn(), set(), list(start.dependencies)
    while todo:
        urn = todo.pop()
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        todo += by_urn[urn].dependencies
    return seen


def _first_control_plane(fleet: Fleet, cname: str) -> str:
    return sorted(h for h, n in fleet.clusters[cname].nodes.items() if n.role == "controlplane")[0]


def _machine_of(run: Run, cname: str, host: str) -> str | None:
    names = {naming.vm_domain(cname, host), naming.pxe_group(cname, host)}
    return next((r.urn for r in run.registrations if r.type in MACHINES and r.name in names), None)


def _nodes(fleet: Fleet) -> Iterator[tuple[str, str]]:
    for cname, host, _ in fleet.all_nodes():
        yield cname, host


def test_no_node_step_waits_for_another_node_but_the_endpoint(case: tuple[Run, Fleet]) -> None:
    """Lifecycles have no edges between them but one: each reads the endpoint (the first control
    plane) through that node's own lifecycle, so when several nodes leave in one `pulumi up` the
    endpoint is removed last and every other removal still reaches the cluster. Each reads its own
    machine, so its delete (drain, reset) runs before the machine's; removals serialize on the
    step's own lock."""
    run, fleet = case
    named, by_urn = _named(run), run.by_urn()
    for cname, host in _nodes(fleet):
        first = _first_control_plane(fleet, cname)
        life = named[naming.node_lifecycle(cname, host)]
        waits = {by_urn[u].name for u in life.dependencies if u in by_urn and by_urn[u].type == COMMAND}
        assert waits == (set() if host == first else {naming.node_lifecycle(cname, first)}), (host, waits)
        machines = {u for u in life.dependencies if u in by_urn and by_urn[u].type in MACHINES}
        assert machines == {m for m in (_machine_of(run, cname, host),) if m}, host
        env = plain(life.inputs["environment"])
        assert env["TALOS_FLEET_CONTROL_PLANE"] == fleet.clusters[cname].nodes[first].ip
        assert not any(k.startswith(("TALOS_FLEET_TALOS_VERSION", "TALOS_FLEET_INSTALLER")) for k in env), (
            "a version bump must not update every lifecycle"
        )


def test_upgrade_rollout_reads_the_gate_and_one_machine_and_every_node_as_plain_values(
    case: tuple[Run, Fleet],
) -> None:
    run, fleet = case
    named, by_urn = _named(run), run.by_urn()
    for cname, cluster in fleet.clusters.items():
        rollout = named[naming.upgrade_rollout(cname)]
        gate = named[naming.version_gate(cname)]
        assert gate.urn in rollout.property_dependencies["environment"]
        first = _machine_of(run, cname, _first_control_plane(fleet, cname))
        machines = {u for u in rollout.dependencies if by_urn[u].type in MACHINES}
        assert machines == ({first} if first else set())
        env = plain(rollout.inputs["environment"])
        targets = {
            k.removeprefix("TALOS_FLEET_TARGET_"): json.loads(v)
            for k, v in env.items()
            if k.startswith("TALOS_FLEET_TARGET_")
        }
        assert targets == {
            host: {"arch": fleet.sources[node.source].architecture, "ip": node.ip, "role": node.role}
            for host, node in cluster.nodes.items()
        }
        assert env["TALOS_FLEET_TALOS_VERSION"] == fleet.talos_version(cluster)
        assert env["TALOS_FLEET_WORKER_BATCH_SIZE"] == str(fleet.upgrade(cluster).worker_batch_size)
        assert is_secret(rollout.inputs["stdin"])


def test_kubernetes_after_the_upgrade_rollout_and_configs_after_kubernetes(case: tuple[Run, Fleet]) -> None:
    """Kubernetes moves after every node runs the target Talos (the upgrade rollout finishes only
    after its last wave), and nothing carries the new Kubernetes version before upgrade-k8s."""
    run, fleet = case
    named = _named(run)
    for cname in fleet.clusters:
        k8s = named[naming.kubernetes_upgrade(cname)]
        assert named[naming.upgrade_rollout(cname)].urn in k8s.property_dependencies["environment"]
        config = named[naming.config_rollout(cname)]
        # The role configs reach the config rollout through its stdin; they were generated with
        # the Kubernetes step's output, so that edge comes along.
        assert k8s.urn in config.property_dependencies["stdin"]
        for host in fleet.clusters[cname].nodes:
            apply = named[naming.node_apply(cname, host)]
            assert config.urn in apply.dependencies, host
            assert k8s.urn in apply.property_dependencies["machineConfigurationInput"], host


def test_config_rollout_carries_what_each_apply_sends_and_one_variable_per_node(case: tuple[Run, Fleet]) -> None:
    run, fleet = case
    named = _named(run)
    for cname, cluster in fleet.clusters.items():
        rollout = named[naming.config_rollout(cname)]
        assert is_secret(rollout.inputs["stdin"])
        stdin = json.loads(plain(rollout.inputs["stdin"]))
        applies = {host: named[naming.node_apply(cname, host)] for host in cluster.nodes}
        assert stdin["patches"] == {h: plain(a.inputs["configPatches"]) for h, a in applies.items()}
        assert set(stdin["roleConfigs"]) == {"controlplane", "worker"}
        assert set(stdin["osCa"]) == {"cert", "key"}
        env = plain(rollout.inputs["environment"])
        configs = {
            k.removeprefix("TALOS_FLEET_CONFIG_"): json.loads(v)
            for k, v in env.items()
            if k.startswith("TALOS_FLEET_CONFIG_")
        }
        assert set(configs) == set(cluster.nodes)
        for host, node in cluster.nodes.items():
            assert (configs[host]["ip"], configs[host]["role"]) == (node.ip, node.role)
            assert {len(configs[host]["live"]), len(configs[host]["reboot"])} == {12}


def test_every_ancestry_is_small_whatever_the_cluster_size() -> None:
    """What makes evaluation linear: the SDK's cycle check walks each new dependency's ancestry
    (docs/design/issue-13-rollouts-research.md D), so no ancestry may grow with the cluster. The
    largest ancestry of a 1,000-node cluster equals the homelab's (5 nodes)."""
    big, _ = big_run()
    small = run_stack_file(Path(__file__).parent.parent / "stacks" / "Pulumi.homelab.yaml")

    def largest(run: Run) -> int:
        return max(len(ancestry(run, r)) for r in run.registrations)

    assert largest(big) <= largest(small) + 2, (largest(big), largest(small))


def _env(reg: Registration) -> dict[str, Any]:
    return dict(plain(reg.inputs["environment"]))


def test_a_cluster_patch_changes_every_config_variable_and_no_upgrade_target(tmp_path: Path) -> None:
    stack = Path(__file__).parent.parent / "stacks" / "Pulumi.homelab.yaml"

    def patch(document: dict[str, Any]) -> None:
        cluster = document["config"]["talos-fleet:clusters"]["homelab"]
        cluster.setdefault("patches", []).append({"machine": {"sysctls": {"talos-fleet.test/rollout": "1"}}})

    before, after = run_stack_file(stack), run_stack_file(mutated_stack(stack, tmp_path, patch))
    old, new = _named(before), _named(after)
    assert _env(old[naming.upgrade_rollout("homelab")]) == _env(new[naming.upgrade_rollout("homelab")])
    env_old, env_new = _env(old[naming.config_rollout("homelab")]), _env(new[naming.config_rollout("homelab")])
    for key, value in env_old.items():
        if key.startswith("TALOS_FLEET_CONFIG_"):
            was, now = json.loads(value), json.loads(env_new[key])
            # sysctls apply live (Talos 1.13 CanApplyImmediate copies .machine.sysctls).
            assert was["live"] != now["live"], key
            assert was["reboot"] == now["reboot"], key


# ---------------------------------------------------------------------------------------------
# From the graph to the step: a cluster patch on each stack, rolled against the fakes


BASE_CONFIG = (
    "version: v1alpha1\nmachine:\n  type: {role}\n  token: FAKE-machine-token\ncluster:\n  clusterName: {cluster}\n"
)


def _step_inputs(run: Run, cname: str) -> tuple[dict[str, str], str]:
    """The config rollout's registered environment and stdin, as pulumi-command would hand them
    over, with the two things the mocks cannot give: role configs rendered from the cluster's
    role patches (as getConfiguration would: tests/fakes/tool.py render), and a real OS CA (the
    step signs a client certificate with it)."""
    reg = _named(run)[naming.config_rollout(cname)]
    env = {**plain(reg.inputs["environment"]), "TALOS_FLEET_POLL_SECONDS": "0"}
    stdin = json.loads(plain(reg.inputs["stdin"]))
    for call in run.calls("talos:machine/getConfiguration:getConfiguration"):
        if plain(call.args["clusterName"]) == cname:
            role = plain(call.args["machineType"])
            base = BASE_CONFIG.format(role=role, cluster=cname)
            stdin["roleConfigs"][role] = fake.encode(fake.render(base, list(plain(call.args["configPatches"]))))
    stdin["osCa"] = CA_B64
    return env, json.dumps(stdin)


def _events(result: Result, hosts: dict[str, str]) -> list[tuple[str, str]]:
    """Health checks, drains and applies (by mode; dry-runs apart) in the order they ran."""
    out = []
    for call in result.calls:
        args = call["args"]
        if call["tool"] == "talosctl" and "health" in args:
            out.append(("health", ""))
        elif call["tool"] == "talosctl" and "apply-config" in args and "--dry-run" not in args:
            mode = next((a.split("=", 1)[1] for a in args if a.startswith("--mode=")), "auto")
            out.append((mode, hosts[args[args.index("--nodes") + 1]]))
        elif call["tool"] == "kubectl" and args[0] in ("cordon", "drain"):
            out.append((args[0], args[1]))
    return out


def test_a_cluster_patch_on_each_stack_rolls_canary_first_then_wave_by_wave(valid_stack: Path, tmp_path: Path) -> None:
    """The registered inputs before and after a live cluster patch, run as pulumi-command runs
    the config rollout (create, then update with the creation's record): the first control plane
    first (in try mode, confirmed once healthy), then every wave, health checked before the first
    and after each; no drain (live)."""

    def patch(document: dict[str, Any]) -> None:
        for cluster in document["config"]["talos-fleet:clusters"].values():
            cluster.setdefault("patches", []).append({"machine": {"sysctls": {"talos-fleet.test/rollout": "1"}}})

    before, after = run_stack_file(valid_stack), run_stack_file(mutated_stack(valid_stack, tmp_path, patch))
    fleet = load_stack_file(valid_stack)
    for cname, cluster in fleet.clusters.items():
        steps = Steps(tmp_path / cname)
        steps.directory.mkdir()
        hosts = {node.ip: host for host, node in cluster.nodes.items()}
        old_env, old_stdin = _step_inputs(before, cname)
        new_env, new_stdin = _step_inputs(after, cname)
        created = steps.run("record-config", old_env, tools=(), stdin=old_stdin)
        assert created.code == 0, created.stderr
        # The cluster as the provider left it: each node runs its role config and its patches.
        old = json.loads(old_stdin)
        state: dict[str, Any] = {
            "nodes": {},
            "etcd_members": len([n for n in cluster.nodes.values() if n.role == "controlplane"]),
        }
        for host, node in cluster.nodes.items():
            text = fake.encode(fake.render(old["roleConfigs"][node.role], old["patches"][host]))
            state["nodes"][node.ip] = {
                "hostname": host,
                "role": node.role,
                "version": fleet.talos_version(cluster),
                "schematic": None,
                "config": {"v1alpha1": text},
            }
        result = steps.run("roll-config", {**new_env, "PULUMI_COMMAND_STDOUT": created.stdout}, state, stdin=new_stdin)
        assert result.code == 0, result.stderr
        waves, events = expected_waves(valid_stack, cname), _events(result, hosts)
        assert [e for e in events if e[0] in ("cordon", "drain")] == [], "a live change drains nothing"
        # The canary (the first control plane) goes in try mode, confirmed right after the health
        # check that follows it; every other node is applied live.
        canary = waves[0][0]
        assert events[:3] == [("health", ""), ("try", canary), ("health", "")], events[:4]
        assert events[3] == ("no-reboot", canary), "the canary is confirmed once the cluster is healthy"
        walked: list[list[str]] = [[canary], []]
        for what, host in events[4:]:
            if what == "health":
                walked.append([])
            else:
                assert what == "no-reboot", (what, host)
                walked[-1].append(host)
        assert walked[-1] == [], "health is checked after the last wave"
        assert [sorted(w) for w in walked[:-1]] == waves, (valid_stack.name, cname, result.stderr)
