"""The two rollouts as pulumi-command runs them (`python3 -m talos_fleet.day2 <step>`), against the
fake talosctl and kubectl (tests/fakes/tool.py), on a small cluster: three control planes and up
to four workers. The previous record each update sees is what the step's own creation printed
(pulumi-command hands the last stdout back as PULUMI_COMMAND_STDOUT), and every expected order is
computed here from the cluster (control planes alone in hostname order, then workers in hostname
order in batches), never read from the step. Plus the config rollout's schedule on generated
fleets of thousands of nodes, and the records' size limit.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talos_fleet import day2
from tests.fakes import tool as fake
from tests.test_day2 import (
    CA_B64,
    CREDENTIALS,
    MARK,
    NEW_SCHEMATIC,
    OLD_SCHEMATIC,
    Result,
    Steps,
    cordon_story,
    cordoned_by_a_stopped_run,
    installer,
    leftovers,
    marked,
)

CONTROL_PLANE = "controlplane"
CLUSTER = (
    ("cp-1", "10.17.3.11", CONTROL_PLANE),
    ("cp-2", "10.17.3.12", CONTROL_PLANE),
    ("cp-3", "10.17.3.13", CONTROL_PLANE),
    ("worker-1", "10.17.3.21", "worker"),
    ("worker-2", "10.17.3.22", "worker"),
    ("worker-3", "10.17.3.23", "worker"),
    ("worker-4", "10.17.3.24", "worker"),
)
IP = {h: ip for h, ip, _ in CLUSTER}
HOST = {ip: h for h, ip, _ in CLUSTER}
ROLE = {h: role for h, _, role in CLUSTER}
Node = tuple[str, str, str]


def expected_waves(hosts: Iterable[str], batch: int) -> list[list[str]]:
    """Control planes one by one, then workers in batches, each in hostname order."""
    ordered = sorted(hosts)
    workers = [h for h in ordered if ROLE[h] != CONTROL_PLANE]
    return [[h] for h in ordered if ROLE[h] == CONTROL_PLANE] + [
        workers[i : i + batch] for i in range(0, len(workers), batch)
    ]


def compact(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def policy(batch: int) -> dict[str, str]:
    return {
        "TALOS_FLEET_CLUSTER": "homelab",
        "TALOS_FLEET_CONTROL_PLANE": IP["cp-1"],
        "TALOS_FLEET_ALLOW_DOWNGRADE": "false",
        "TALOS_FLEET_HEALTH_TIMEOUT_MINUTES": "15",
        "TALOS_FLEET_DRAIN_TIMEOUT_MINUTES": "10",
        "TALOS_FLEET_WORKER_BATCH_SIZE": str(batch),
        "TALOS_FLEET_POLL_SECONDS": "0",
    }


@pytest.fixture
def steps(tmp_path: Path) -> Steps:
    return Steps(tmp_path)


def node_calls(result: Result, verb: str, *needles: str) -> list[str]:
    """The hostnames of the talosctl `verb` calls whose arguments contain every needle, in order."""
    found = []
    for call in result.calls:
        args = call["args"]
        if (
            call["tool"] == "talosctl"
            and "--nodes" in args
            and verb in args
            and all(any(n in a for a in args) for n in needles)
        ):
            found.append(HOST[args[args.index("--nodes") + 1]])
    return found


def event(call: dict[str, Any]) -> tuple[str, str] | None:
    """What a call did to whom: kubectl's cordon, drain and uncordon, talosctl's upgrade, applies
    (by mode, dry-runs apart), reboots, and cluster health checks; None for any other call."""
    args = call["args"]
    if call["tool"] == "kubectl" and args[0] in ("cordon", "drain", "uncordon"):
        return (args[0], args[1])
    if call["tool"] == "talosctl" and "--nodes" in args:
        host = HOST.get(args[args.index("--nodes") + 1], "")
        verb = args[4]
        if verb == "health":
            return ("health", "")
        if verb in ("upgrade", "reboot"):
            return (verb, host)
        if verb == "apply-config":
            mode = next((a.split("=", 1)[1] for a in args if a.startswith("--mode=")), "auto")
            return ("dry-run" if "--dry-run" in args else f"apply {mode}", host)
    return None


def events(result: Result) -> list[tuple[str, str]]:
    """Every call's event, in order."""
    return [e for e in map(event, result.calls) if e is not None]


def assert_health_only_while_nothing_is_cordoned(result: Result) -> None:
    cordoned: set[str] = set()
    for what, host in events(result):
        if what in ("cordon", "drain"):
            cordoned.add(host)
        elif what == "uncordon":
            cordoned.discard(host)
        elif what == "health":
            assert cordoned == set(), events(result)


def assert_every_check_sees_no_mark(result: Result) -> None:
    """Each wave's nodes are unmarked again before the health check that ends the wave: a mark
    outliving its wave could later claim a cordon made by hand."""
    carrying: set[str] = set()
    for call in result.calls:
        args = call["args"]
        if call["tool"] == "kubectl" and args[0] == "annotate":
            (carrying.discard if f"{MARK}-" in args else carrying.add)(args[2])
        elif call["tool"] == "talosctl" and "health" in args:
            assert carrying == set(), (carrying, result.argv())


def touched_in_waves(happened: list[tuple[str, str]], touch: tuple[str, ...]) -> list[list[str]]:
    """The nodes `touch` events reached between two health checks, wave by wave (in hostname
    order: a batch's nodes run at the same time)."""
    waves: list[list[str]] = [[]]
    for what, host in happened:
        if what == "health":
            waves.append([])
        elif what in touch and host not in waves[-1]:
            waves[-1].append(host)
    return [sorted(w) for w in waves if w]


def confirmed_canary(happened: list[tuple[str, str]], canary: str) -> list[tuple[str, str]]:
    """Checks the canary's live change went in try mode, then a health check, then the same config
    in no-reboot mode (the confirmation, nothing in between); returns the events without that
    confirmation, so the waves read as applies between health checks."""
    tried = happened.index(("apply try", canary))
    assert happened[tried + 1 : tried + 3] == [("health", ""), ("apply no-reboot", canary)], happened
    return happened[: tried + 2] + happened[tried + 3 :]


# ---------------------------------------------------------------------------------------------
# The upgrade rollout


def upgrade_env(
    nodes: Iterable[Node] = CLUSTER, version: str = "v1.13.11", schematic: str = OLD_SCHEMATIC, batch: int = 2
) -> dict[str, str]:
    env = {**policy(batch), "TALOS_FLEET_TALOS_VERSION": version}
    env["TALOS_FLEET_INSTALLER_amd64"] = installer(schematic, version)
    for host, ip, role in nodes:
        env[f"TALOS_FLEET_TARGET_{host}"] = compact({"arch": "amd64", "ip": ip, "role": role})
    return env


def fleet(
    nodes: Iterable[Node] = CLUSTER, version: str = "v1.13.10", schematic: str | None = OLD_SCHEMATIC, **extra: Any
) -> dict[str, Any]:
    state = {ip: {"hostname": h, "role": role, "version": version, "schematic": schematic} for h, ip, role in nodes}
    return {"nodes": state, "etcd_members": 3, **extra}


def updating(steps: Steps, old: dict[str, str], new: dict[str, str], create: str, stdin: str = "") -> dict[str, str]:
    """`new` as the update after `old` was created: with the record `create` printed for `old`."""
    first = steps.run(create, old, tools=(), stdin=stdin)
    assert first.code == 0, first.stderr
    return {**new, "PULUMI_COMMAND_STDOUT": first.stdout}


def test_an_upgrade_walks_the_waves_one_after_another_health_gated(steps: Steps) -> None:
    env = updating(steps, upgrade_env(version="v1.13.10"), upgrade_env(), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(slow={"upgrade": 0.2}), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("upgrade",)) == expected_waves(IP, 2)
    # Health before the first wave and after each: every wave starts on a healthy cluster.
    checks = [i for i, (what, _) in enumerate(events(result)) if what == "health"]
    assert len(checks) == len(expected_waves(IP, 2)) + 1
    assert checks[0] < events(result).index(("cordon", "cp-1"))
    assert_health_only_while_nothing_is_cordoned(result)
    # One kubectl drain per node, talosctl's own switched off, and everything at the target.
    assert sorted(result.state["drained"]) == sorted(IP)
    assert all("--drain=false" in c["args"] for c in result.calls if "upgrade" in c["args"])
    assert {n["version"] for n in result.state["nodes"].values()} == {"v1.13.11"}
    assert result.state["cordoned"] == []
    # Each node marked as talos-fleet's before its cordon, unmarked after its uncordon, before
    # the wave's health check.
    for host in IP:
        assert cordon_story(result.calls, host) == ["mark=homelab", "cordon", "drain", "uncordon", "unmark"], host
    assert_every_check_sees_no_mark(result)
    assert marked(result.state) == set()
    # A batch's workers upgrade together: both upgrades start before either is waited for.
    pair = expected_waves(IP, 2)[3]
    starts = [i for i, c in enumerate(result.calls) if "upgrade" in c["args"] and HOST[c["args"][1]] in pair]
    assert len(starts) == 2
    assert starts[1] == starts[0] + 1
    record = result.record()
    assert (record["talos"], record["installers"]) == ("v1.13.11", {"amd64": env["TALOS_FLEET_INSTALLER_amd64"]})
    assert day2.unpack(record["nodes"]) == sorted(IP)


def test_a_failed_upgrade_stops_the_rollout_and_a_rerun_resumes_where_it_stopped(steps: Steps) -> None:
    nodes = CLUSTER[:5]
    hosts = [h for h, _, _ in nodes]
    env = updating(steps, upgrade_env(nodes, version="v1.13.10"), upgrade_env(nodes), "record-upgrades")
    first = steps.run("upgrade-rollout", env, fleet(nodes, fail=[f"upgrade@{IP['cp-3']}"]), stdin=CREDENTIALS)
    assert first.code == 1
    versions = {h: first.state["nodes"][IP[h]]["version"] for h in hosts}
    assert (versions["cp-1"], versions["cp-2"], versions["cp-3"]) == ("v1.13.11", "v1.13.11", "v1.13.10")
    # The failed wave's node is schedulable and unmarked again; the workers were never touched.
    assert first.state["cordoned"] == []
    assert marked(first.state) == set()
    assert not [h for _, h in events(first) if h.startswith("worker")]
    # Pulumi kept the old record: the same update runs again.
    again = steps.run("upgrade-rollout", env, {**first.state, "fail": []}, stdin=CREDENTIALS)
    assert again.code == 0, again.stderr
    assert touched_in_waves(events(again), ("upgrade",)) == expected_waves(hosts, 2)[2:]
    assert {n["version"] for n in again.state["nodes"].values()} == {"v1.13.11"}


@pytest.mark.parametrize("downgrades", ["false", "true"], ids=["", "downgrades-allowed"])
@pytest.mark.parametrize("change", ["policy", "added"])
def test_an_upgrade_rollout_without_a_new_target_for_an_existing_node_runs_nothing(
    steps: Steps, change: str, downgrades: str
) -> None:
    """A node added (it installs the target itself) or a policy change: only a new record. No
    health check could even pass while the new node is not installed. Also in a stack that keeps
    downgrades allowed: that alone must not make every node be asked, and maybe moved."""
    old = upgrade_env(CLUSTER[:-1]) if change == "added" else upgrade_env(batch=1)
    allowed = {"TALOS_FLEET_ALLOW_DOWNGRADE": downgrades}
    env = updating(steps, {**old, **allowed}, {**upgrade_env(), **allowed}, "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(), tools=(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls == []
    assert day2.unpack(result.record()["nodes"]) == sorted(IP)


def test_a_new_target_with_only_new_nodes_runs_nothing(steps: Steps) -> None:
    env = updating(steps, upgrade_env([], version="v1.13.10"), upgrade_env(CLUSTER[:2]), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(), tools=(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls == []


@pytest.mark.parametrize("name", ["record-upgrades", "record-config"])
def test_creating_a_rollout_only_records(steps: Steps, name: str) -> None:
    env = upgrade_env() if name == "record-upgrades" else config_env()
    result = steps.run(name, env, fleet(), tools=(), stdin=config_stdin())
    assert result.code == 0, result.stderr
    assert result.calls == []


SMALL = (CLUSTER[0], CLUSTER[3], CLUSTER[4])


def test_nodes_at_the_target_are_skipped_and_one_left_cordoned_is_uncordoned_first(steps: Steps) -> None:
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    state = cordoned_by_a_stopped_run(fleet(SMALL), "worker-1")
    state["nodes"][IP["cp-1"]]["version"] = "v1.13.11"
    result = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert sorted(node_calls(result, "upgrade")) == ["worker-1", "worker-2"]
    assert result.index("kubectl uncordon worker-1") < result.index(" health ")
    assert marked(result.state) == set()


def test_a_node_left_cordoned_after_it_reached_the_target_is_uncordoned_before_the_first_check(steps: Steps) -> None:
    """An earlier run killed between a node's upgrade and its uncordon: the node is at the target
    (nothing to do for it) but cordoned with talos-fleet's mark, which fails every health check
    until it is uncordoned."""
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    state = cordoned_by_a_stopped_run(fleet(SMALL), "worker-1")
    state["nodes"][IP["worker-1"]]["version"] = "v1.13.11"
    result = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.index("kubectl uncordon worker-1") < result.index(" health ")
    assert cordon_story(result.calls, "worker-1") == ["uncordon", "unmark"]
    assert sorted(node_calls(result, "upgrade")) == ["cp-1", "worker-2"]
    assert result.state["cordoned"] == []
    assert marked(result.state) == set()


def hand_cordoned_rollout(steps: Steps, rollout: str) -> Result:
    """A rollout with work on every node, where worker-2 was cordoned by hand (no mark) and
    worker-1 left cordoned and marked by a killed run."""
    if rollout == "upgrade":
        env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
        state = cordoned_by_a_stopped_run(fleet(SMALL, cordoned=["worker-2"]), "worker-1")
        return steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    state = cordoned_by_a_stopped_run(configured(cordoned=["worker-2"]), "worker-1")
    return roll(steps, roles, state, config_env(live=moved(IP)))


@pytest.mark.parametrize("rollout", ["upgrade", "config"])
def test_a_node_cordoned_by_hand_stays_cordoned_and_stops_the_rollout_at_its_first_check(
    steps: Steps, rollout: str
) -> None:
    """Only talos-fleet's own cordon is lifted: worker-1's. worker-2 (maintenance) stays cordoned,
    the step says why, and the first health check stops the rollout before it touches a node."""
    result = hand_cordoned_rollout(steps, rollout)
    assert result.code == 1
    assert "worker-2 is cordoned, not by talos-fleet: the health check will fail until you uncordon it" in result.stderr
    assert "not schedulable: [worker-2]" in result.stderr
    assert result.state["cordoned"] == ["worker-2"]
    assert cordon_story(result.calls, "worker-2") == []
    assert cordon_story(result.calls, "worker-1") == ["uncordon", "unmark"]
    assert result.index("kubectl uncordon worker-1") < result.index(" health ")
    assert [what for what, _ in events(result) if what != "uncordon"] == ["health"]
    assert not result.ran("apply-config")


def test_a_stale_mark_on_a_schedulable_node_is_removed_and_nothing_else_done_to_it(steps: Steps) -> None:
    """A run killed between its mark and its cordon (or its uncordon and unmark): the mark goes,
    so it can never claim a cordon the operator makes later."""
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    state = fleet(SMALL, "v1.13.11", annotations={"worker-1": {MARK: "homelab", "keep": "me"}})
    result = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert cordon_story(result.calls, "worker-1") == ["unmark"]
    assert result.state["annotations"]["worker-1"] == {"keep": "me"}


def test_a_recorded_node_that_never_joined_kubernetes_does_not_block_the_upgrade(steps: Steps) -> None:
    """worker-4 was recorded when it was added, but its install failed: no Kubernetes node, and
    its Talos API does not answer with the cluster's CA. Its ConfigurationApply installs it."""
    nodes = (*SMALL, CLUSTER[-1])
    env = updating(steps, upgrade_env(nodes, version="v1.13.10"), upgrade_env(nodes), "record-upgrades")
    state = fleet(nodes)
    state["nodes"][IP["worker-4"]].update(no_kubernetes=True, down=True)
    result = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert "worker-4 is not a Kubernetes node" in result.stderr
    assert sorted(node_calls(result, "upgrade")) == sorted(h for h, _, _ in SMALL)
    assert not [c for c in result.calls if IP["worker-4"] in c["args"]]


def test_a_kubernetes_api_that_does_not_answer_stops_the_upgrade_before_any_node(steps: Steps) -> None:
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(SMALL, kubernetes_down=True), stdin=CREDENTIALS)
    assert result.code == 1
    assert "kubectl get nodes" in result.stderr
    assert node_calls(result, "upgrade") == []
    assert node_calls(result, "version") == []


def failed_upgrade(steps: Steps, old: dict[str, str], new: dict[str, str], state: dict[str, Any]) -> Result:
    """`new` rolled out over `old` and failed at cp-3: cp-1 and cp-2 run the new target. Pulumi
    keeps the old inputs and record."""
    env = updating(steps, old, new, "record-upgrades")
    first = steps.run("upgrade-rollout", env, {**state, "fail": [f"upgrade@{IP['cp-3']}"]}, stdin=CREDENTIALS)
    assert first.code == 1
    return first


def test_a_revert_after_a_failed_extension_change_needs_a_recheck_to_reach_the_rolled_nodes(steps: Steps) -> None:
    old = upgrade_env(CLUSTER[:3], version="v1.13.10")
    new = upgrade_env(CLUSTER[:3], version="v1.13.10", schematic=NEW_SCHEMATIC)
    first = failed_upgrade(steps, old, new, fleet(CLUSTER[:3]))
    rolled = {h for h in ("cp-1", "cp-2", "cp-3") if first.state["nodes"][IP[h]]["schematic"] == NEW_SCHEMATIC}
    assert rolled == {"cp-1", "cp-2"}
    state = {**first.state, "fail": []}
    # The stack reverted: the same inputs as the kept record, so Pulumi runs nothing, and a run
    # would have nothing to do by the record alone.
    revert = updating(steps, old, old, "record-upgrades")
    assert steps.run("upgrade-rollout", revert, state, tools=(), stdin=CREDENTIALS).calls == []
    result = steps.run("upgrade-rollout", {**revert, "TALOS_FLEET_RECHECK": "1"}, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("upgrade",)) == [[h] for h in sorted(rolled)]
    assert {n["schematic"] for n in result.state["nodes"].values()} == {OLD_SCHEMATIC}
    assert result.record()["recheck"] == "1"


def test_a_revert_of_a_failed_upgrade_downgrades_the_rolled_nodes_with_a_recheck(steps: Steps) -> None:
    """Allowing downgrades does not ask the nodes by itself: the record holds the old target, so
    only a new recheck value reaches cp-1 and cp-2, which run the failed rollout's version."""
    old, new = upgrade_env(CLUSTER[:3], version="v1.13.10"), upgrade_env(CLUSTER[:3])
    first = failed_upgrade(steps, old, new, fleet(CLUSTER[:3]))
    allowed = {**old, "TALOS_FLEET_ALLOW_DOWNGRADE": "true"}
    revert = updating(steps, allowed, allowed, "record-upgrades")
    state = {**first.state, "fail": []}
    assert steps.run("upgrade-rollout", revert, state, tools=(), stdin=CREDENTIALS).calls == []
    result = steps.run("upgrade-rollout", {**revert, "TALOS_FLEET_RECHECK": "1"}, state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("upgrade",)) == [["cp-1"], ["cp-2"]]
    assert {n["version"] for n in result.state["nodes"].values()} == {"v1.13.10"}


def test_a_recheck_with_every_node_at_the_target_asks_them_and_checks_no_health(steps: Steps) -> None:
    env = updating(steps, upgrade_env(SMALL), upgrade_env(SMALL), "record-upgrades")
    result = steps.run(
        "upgrade-rollout", {**env, "TALOS_FLEET_RECHECK": "7"}, fleet(SMALL, "v1.13.11"), stdin=CREDENTIALS
    )
    assert result.code == 0, result.stderr
    assert sorted(node_calls(result, "version")) == sorted(h for h, _, _ in SMALL)
    assert not result.ran(" health ")
    assert node_calls(result, "upgrade") == []


def test_a_node_on_the_previous_minor_takes_the_legacy_path_and_ends_schedulable(steps: Steps) -> None:
    """Nodes before Talos 1.13 answer the legacy upgrade API, whose server-side sequence drains
    and only uncordons what it cordoned itself: kubectl's cordon stays until the step lifts it."""
    env = updating(steps, upgrade_env(SMALL, version="v1.12.11"), upgrade_env(SMALL), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(SMALL, "v1.12.11"), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert {n["version"] for n in result.state["nodes"].values()} == {"v1.13.11"}
    assert result.state["cordoned"] == []
    assert_health_only_while_nothing_is_cordoned(result)


def test_an_extension_change_upgrades_nodes_on_the_same_version_and_waits_through_reboots(steps: Steps) -> None:
    old = upgrade_env(SMALL, version="v1.13.10")
    env = updating(steps, old, upgrade_env(SMALL, version="v1.13.10", schematic=NEW_SCHEMATIC), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(SMALL, reboot_calls=2), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert {n["schematic"] for n in result.state["nodes"].values()} == {NEW_SCHEMATIC}
    # Each upgraded node answered nothing twice while it rebooted: waited for, not failed.
    assert result.stderr.count("waiting:") == 2 * len(SMALL)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (fleet(SMALL, "v1.11.6"), "skips Talos v1.12"),
        (fleet(SMALL, "v1.13.12"), "downgrade is refused"),
        (fleet(SMALL, client="v1.12.4"), "talosctl v1.12.4 is older than the target Talos v1.13.11"),
        (fleet(SMALL, client="v1.14.0-beta.1"), "pre-releases"),
        (fleet(SMALL, "v1.14.0-beta.1"), "pre-releases"),
    ],
    ids=["skips-a-minor", "downgrade", "old-talosctl", "pre-release-talosctl", "pre-release-node"],
)
def test_a_refused_upgrade_touches_no_node(steps: Steps, state: dict[str, Any], message: str) -> None:
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    result = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert result.code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not result.ran("kubectl cordon")
    assert node_calls(result, "upgrade") == []


@pytest.mark.parametrize("tools", [(), ("talosctl",)], ids=["no-talosctl", "no-kubectl"])
def test_a_missing_tool_is_named_with_where_to_get_it(steps: Steps, tools: tuple[str, ...]) -> None:
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    result = steps.run("upgrade-rollout", env, fleet(SMALL), tools=tools, stdin=CREDENTIALS)
    assert result.code == 1
    missing = "kubectl" if tools else "talosctl"
    assert f"{missing} is not installed" in result.stderr
    assert (day2.KUBECTL_INSTALL if tools else day2.TALOSCTL_INSTALL) in result.stderr


# ---------------------------------------------------------------------------------------------
# The config rollout

# Role configs as getConfiguration renders them: secrets inside (a changed secret changes nothing
# the plan's hashes see, so the fingerprint covers the text).
ROLE_CONFIGS = {
    role: (
        "version: v1alpha1\n"
        f"machine:\n  type: {role}\n  token: FAKE-machine-token\n"
        "  kubelet:\n    extraArgs:\n      rotate-server-certificates: 'true'\n"
        "cluster:\n  clusterName: homelab\n  secretboxEncryptionSecret: FAKE-secretbox-key\n"
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"
    )
    for role in (CONTROL_PLANE, "worker")
}
SECRET_WORDS = ("FAKE-machine-token", "FAKE-secretbox-key", *CA_B64.values())
LIVE_CHANGE = "machine:\n  nodeLabels:\n    rollout: two\n"
REBOOT_CHANGE = "machine:\n  env:\n    HTTP_PROXY: http://proxy:3128\n"
NOT_READY = "FAKE-not-ready"


def node_patches(hosts: Iterable[str]) -> dict[str, list[str]]:
    return {h: [f"machine:\n  nodeLabels:\n    talos-fleet/host: {h}\n"] for h in hosts}


def changed(config: str, patch: str) -> str:
    """A role config with a cluster or role patch applied, as regenerated."""
    return fake.encode(fake.render(config, [patch]))


def config_stdin(roles: dict[str, str] | None = None, hosts: Iterable[str] = IP) -> str:
    document = {"osCa": CA_B64, "roleConfigs": roles or ROLE_CONFIGS, "patches": node_patches(hosts)}
    return json.dumps(document)


def config_env(
    nodes: Iterable[Node] = CLUSTER,
    reboot: dict[str, str] | None = None,
    live: dict[str, str] | None = None,
    batch: int = 2,
) -> dict[str, str]:
    """The plan's hashes per host (defaults: one per role, as for a cluster without node-level
    changes): `live` and `reboot` name the hosts whose hash moved, and to what."""
    env = policy(batch)
    for host, ip, role in nodes:
        hashes = {"live": (live or {}).get(host, "1" * 12), "reboot": (reboot or {}).get(host, "2" * 12)}
        env[f"TALOS_FLEET_CONFIG_{host}"] = compact({"ip": ip, "role": role, **hashes})
    return env


def moved(hosts: Iterable[str], to: str = "4" * 12) -> dict[str, str]:
    return dict.fromkeys(hosts, to)


def configured(nodes: Iterable[Node] = CLUSTER, version: str = "v1.13.10", **extra: Any) -> dict[str, Any]:
    """A cluster running ROLE_CONFIGS plus each node's patches, as the provider applied them."""
    state = fleet(nodes, version, **extra)
    for node in state["nodes"].values():
        text = fake.encode(fake.render(ROLE_CONFIGS[node["role"]], node_patches([node["hostname"]])[node["hostname"]]))
        node["config"] = {"v1alpha1": text}
    return state


def active(state: dict[str, Any], host: str) -> str:
    config: str = state["nodes"][IP[host]]["config"]["v1alpha1"]
    return config


def settled(state: dict[str, Any], host: str) -> bool:
    """Nothing waits on the node: no config staged for a later boot, no try-mode rollback."""
    node = state["nodes"][IP[host]]
    return node["config"].get("persistent", active(state, host)) == active(state, host) and "rollback" not in node


def running(roles: dict[str, str], host: str) -> str:
    """What a node runs once `roles` reached it."""
    return fake.encode(fake.render(roles[ROLE[host]], node_patches([host])[host]))


def roll(steps: Steps, roles: dict[str, str], state: dict[str, Any], env: dict[str, str] | None = None) -> Result:
    """`roll-config` for `roles`, updating a rollout created with ROLE_CONFIGS."""
    new_env = env or config_env()
    update = updating(steps, config_env(), new_env, "record-config", config_stdin())
    return steps.run("roll-config", update, state, stdin=config_stdin(roles))


def test_a_cluster_change_rolls_as_a_canary_then_control_planes_then_worker_batches(steps: Steps) -> None:
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    result = roll(steps, roles, configured(), config_env(live=moved(IP)))
    assert result.code == 0, result.stderr
    waves = expected_waves(IP, 2)
    # The canary (the first control plane) is the first wave; here it is also the first wave of
    # control planes, so the order is the cluster's waves. The canary alone goes in try mode.
    happened = confirmed_canary(events(result), waves[0][0])
    assert touched_in_waves(happened, ("apply try", "apply no-reboot")) == waves
    assert node_calls(result, "apply-config", "--mode=try") == [waves[0][0]]
    checks = [what for what, _ in happened].count("health")
    assert checks == len(waves) + 1
    assert all(active(result.state, h) == running(roles, h) and settled(result.state, h) for h in IP)
    assert not result.state.get("reboots")
    assert_health_only_while_nothing_is_cordoned(result)
    # The rollback waits longer than the health check between the try and its confirmation.
    [tried] = [c["args"] for c in result.calls if "--mode=try" in c["args"]]
    health = int(policy(2)["TALOS_FLEET_HEALTH_TIMEOUT_MINUTES"])
    assert any(a.startswith("--timeout=") and int(a.split("=")[1].removesuffix("m")) > health for a in tried)


def test_a_worker_batch_applies_its_live_change_side_by_side(steps: Steps) -> None:
    """A batch's live applies start together (a batch of hundreds must not take hundreds of apply
    round trips in a row): with every apply taking a while, the second starts before the first
    has finished."""
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], LIVE_CHANGE)}
    slow = 0.5
    result = roll(steps, roles, configured(slow={"apply-config": slow}), config_env(live=moved(IP)))
    assert result.code == 0, result.stderr
    batch = expected_waves(sorted(h for h in IP if ROLE[h] == "worker")[1:], 2)[0]
    starts = [
        c["at"]
        for c in result.calls
        if "--mode=no-reboot" in c["args"] and HOST[c["args"][c["args"].index("--nodes") + 1]] in batch
    ]
    # One live apply per node of the batch (no confirmation: nothing was tried there).
    assert len(starts) == len(batch) == 2
    assert abs(starts[1] - starts[0]) < slow


def test_a_worker_only_change_starts_with_the_first_worker_as_canary(steps: Steps) -> None:
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], LIVE_CHANGE)}
    workers = sorted(h for h in IP if ROLE[h] == "worker")
    before = configured()
    result = roll(steps, roles, before, config_env(live=moved(workers)))
    assert result.code == 0, result.stderr
    happened = confirmed_canary(events(result), workers[0])
    assert touched_in_waves(happened, ("apply try", "apply no-reboot")) == [
        [workers[0]],
        *expected_waves(workers[1:], 2),
    ]
    # Control planes: not even asked.
    assert not [h for _, h in events(result) if ROLE.get(h) == CONTROL_PLANE]
    assert all(active(result.state, h) == active(before, h) for h in IP if ROLE[h] == CONTROL_PLANE)


def failed_canary(steps: Steps) -> tuple[dict[str, str], dict[str, str], Result, dict[str, Any]]:
    """A live change that keeps the canary from being Ready: the step stops after the canary's
    health check. Returns the update's env, the new role configs, the run and the state before."""
    roles = {
        role: changed(text, f"machine:\n  nodeLabels:\n    bad: {NOT_READY}\n") for role, text in ROLE_CONFIGS.items()
    }
    before = configured(not_ready_marker=NOT_READY)
    update = updating(steps, config_env(), config_env(live=moved(IP)), "record-config", config_stdin())
    first = steps.run("roll-config", update, before, stdin=config_stdin(roles))
    assert first.code == 1
    assert "not ready: [cp-1]" in first.stderr
    return update, roles, first, before


def test_a_canary_that_fails_its_health_check_is_left_unconfirmed_and_rolls_back_by_itself(steps: Steps) -> None:
    _, roles, first, before = failed_canary(steps)
    assert node_calls(first, "apply-config", "--mode=try") == ["cp-1"]
    assert node_calls(first, "apply-config", "--mode=no-reboot") == []  # never confirmed
    assert active(first.state, "cp-1") == running(roles, "cp-1")
    assert all(active(first.state, h) == active(before, h) for h in IP if h != "cp-1")
    assert "rolls back" in first.stderr
    # Its timeout passes: the canary runs its old config again, nothing else changed.
    fake.expire_rollbacks(first.state)
    assert all(active(first.state, h) == active(before, h) and settled(first.state, h) for h in IP)


@pytest.mark.parametrize("expired", [False, True], ids=["before-the-rollback", "after-the-rollback"])
def test_a_rerun_after_a_failed_canary_resumes(steps: Steps, expired: bool) -> None:
    """The operator fixed what kept the node from being Ready; Pulumi kept the old record. Before
    the rollback, the canary runs its new config: the dry-run skips it (and cancels the rollback)
    and the same config is written for good; after it, the canary is tried again."""
    update, roles, first, _ = failed_canary(steps)
    healed = {k: v for k, v in first.state.items() if k != "not_ready_marker"}
    if expired:
        fake.expire_rollbacks(healed)
    again = steps.run("roll-config", update, healed, stdin=config_stdin(roles))
    assert again.code == 0, again.stderr
    happened = events(again)
    if expired:
        happened = confirmed_canary(happened, "cp-1")
    else:
        assert node_calls(again, "apply-config", "--mode=try") == []
        assert [what for what, h in happened if h == "cp-1"] == ["dry-run", "apply no-reboot"]
        happened = [e for e in happened if e[1] != "cp-1"]
    rest = expected_waves(set(IP) - {"cp-1"}, 2)
    assert touched_in_waves(happened, ("apply try", "apply no-reboot")) == ([["cp-1"]] if expired else []) + rest
    assert all(active(again.state, h) == running(roles, h) and settled(again.state, h) for h in IP)


def test_a_change_that_needs_a_reboot_stages_and_reboots_one_control_plane_at_a_time_drained(steps: Steps) -> None:
    roles = {**ROLE_CONFIGS, CONTROL_PLANE: changed(ROLE_CONFIGS[CONTROL_PLANE], REBOOT_CHANGE)}
    control_planes = sorted(h for h in IP if ROLE[h] == CONTROL_PLANE)
    env = config_env(reboot=moved(control_planes, "3" * 12))
    result = roll(steps, roles, configured(), env)
    assert result.code == 0, result.stderr
    assert [r["host"] for r in result.state["reboots"]] == control_planes
    assert all(r["cordoned"] for r in result.state["reboots"])  # drained before, by kubectl
    assert node_calls(result, "apply-config", "--mode=no-reboot") == []
    assert node_calls(result, "apply-config", "--mode=try") == []
    for host in control_planes:
        mine = [what for what, h in events(result) if h == host]
        assert mine == ["dry-run", "cordon", "drain", "apply staged", "reboot", "dry-run", "uncordon"], mine
        assert cordon_story(result.calls, host) == ["mark=homelab", "cordon", "drain", "uncordon", "unmark"], host
        assert active(result.state, host) == running(roles, host)
    # One at a time: a health check between one node's uncordon and the next one's drain.
    assert touched_in_waves(events(result), ("reboot",)) == [[h] for h in control_planes]
    assert_health_only_while_nothing_is_cordoned(result)
    assert_every_check_sees_no_mark(result)


def test_a_change_talos_refuses_live_falls_back_to_a_drained_reboot_a_batch_at_a_time(steps: Steps) -> None:
    """The plan classified it live (only its live hash moved), but a 1.13 node refuses it in try
    and no-reboot mode before changing anything: staged, drained and rebooted. The batch's workers
    are drained together, then each is staged and rebooted."""
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], REBOOT_CHANGE)}
    workers = sorted(h for h in IP if ROLE[h] == "worker")
    result = roll(steps, roles, configured(), config_env(live=moved(workers)))
    assert result.code == 0, result.stderr
    assert node_calls(result, "apply-config", "--mode=try") == workers[:1]
    # Refused side by side within each batch, batch after batch.
    assert touched_in_waves(events(result), ("apply no-reboot",)) == expected_waves(workers[1:], 2)
    assert touched_in_waves(events(result), ("reboot",)) == [[workers[0]], *expected_waves(workers[1:], 2)]
    batch = expected_waves(workers[1:], 2)[0]
    order = events(result)
    assert max(order.index(("drain", h)) for h in batch) < min(order.index(("apply staged", h)) for h in batch)
    assert all(order.index(("apply staged", h)) < order.index(("reboot", h)) for h in batch)
    assert all(active(result.state, h) == running(roles, h) and settled(result.state, h) for h in workers)
    assert result.state["cordoned"] == []


def test_a_failure_inside_a_batch_never_leaves_a_node_staged_without_its_reboot(steps: Steps) -> None:
    """worker-3's staged apply fails while worker-2, its batch mate, goes through: worker-2 is
    rebooted into its config, worker-3 keeps its old one, and no node waits with a staged config
    that any later reboot (a crash, an upgrade) would boot undrained."""
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], REBOOT_CHANGE)}
    workers = sorted(h for h in IP if ROLE[h] == "worker")
    env = config_env(reboot=moved(workers, "3" * 12))
    state = configured(fail=[f"apply-config --mode=staged@{IP['worker-3']}"])
    result = roll(steps, roles, state, env)
    assert result.code == 1
    assert expected_waves(workers[1:], 2)[0] == ["worker-2", "worker-3"]
    assert active(result.state, "worker-2") == running(roles, "worker-2")
    assert active(result.state, "worker-3") == active(state, "worker-3")
    assert all(settled(result.state, h) for h in IP)
    assert result.state["cordoned"] == []
    assert not [h for _, h in events(result) if h == "worker-4"]


def test_on_talos_1_14_the_same_change_applies_live(steps: Steps) -> None:
    """1.14 has no live-or-reboot check: only the plan's hashes send a node to a reboot."""
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], REBOOT_CHANGE)}
    workers = sorted(h for h in IP if ROLE[h] == "worker")
    result = roll(steps, roles, configured(version="v1.14.1"), config_env(live=moved(workers)))
    assert result.code == 0, result.stderr
    assert not result.state.get("reboots")
    assert all(active(result.state, h) == running(roles, h) and settled(result.state, h) for h in workers)


@pytest.mark.parametrize("change", ["nothing", "added", "policy", "old-record"])
def test_a_config_rollout_with_nothing_changed_on_existing_nodes_runs_nothing(steps: Steps, change: str) -> None:
    """Also for a record from before `recheck` existed: it counts as 0."""
    old_nodes = CLUSTER[:-1] if change == "added" else CLUSTER
    env = updating(
        steps,
        config_env(old_nodes),
        config_env(batch=3 if change == "policy" else 2),
        "record-config",
        config_stdin(hosts=[h for h, _, _ in old_nodes]),
    )
    if change == "old-record":
        record = json.loads(env["PULUMI_COMMAND_STDOUT"])
        del record["recheck"]
        env = {**env, "PULUMI_COMMAND_STDOUT": json.dumps(record), "TALOS_FLEET_RECHECK": "0"}
    result = steps.run("roll-config", env, configured(), tools=(), stdin=config_stdin())
    assert result.code == 0, result.stderr
    assert result.calls == []


def test_a_changed_secret_that_the_plan_hashes_cannot_see_rolls_by_reboot(steps: Steps) -> None:
    """The fingerprint moved, neither plan hash did: the change may sit in a reboot setting."""
    roles = {role: text.replace("FAKE-secretbox-key", "FAKE-rotated-key") for role, text in ROLE_CONFIGS.items()}
    result = roll(steps, roles, configured())
    assert result.code == 0, result.stderr
    assert node_calls(result, "apply-config", "--mode=no-reboot") == []
    assert node_calls(result, "apply-config", "--mode=try") == []
    assert touched_in_waves(events(result), ("reboot",)) == expected_waves(IP, 2)
    assert all(r["cordoned"] for r in result.state["reboots"])
    assert all(active(result.state, h) == running(roles, h) for h in IP)


def test_a_recorded_node_that_never_joined_kubernetes_does_not_block_the_config_rollout(steps: Steps) -> None:
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    state = configured()
    state["nodes"][IP["worker-4"]].update(no_kubernetes=True, down=True)
    result = roll(steps, roles, state, config_env(live=moved(IP)))
    assert result.code == 0, result.stderr
    assert "worker-4 is not a Kubernetes node" in result.stderr
    assert not [c for c in result.calls if IP["worker-4"] in c["args"]]
    assert all(active(result.state, h) == running(roles, h) for h in IP if h != "worker-4")


def test_a_revert_after_a_failed_config_rollout_needs_a_recheck_and_reboots_the_rolled_nodes(steps: Steps) -> None:
    """A live change rolled to cp-1 and cp-2, then failed at cp-3. The operator reverts the stack:
    the inputs equal the kept record's, so Pulumi runs nothing, and the record alone shows no
    change. A new recheck value asks every node: the two that run the new config go back by
    reboot, the others are skipped by their dry-run."""
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    update = updating(steps, config_env(), config_env(live=moved(IP)), "record-config", config_stdin())
    state = configured(fail=[f"apply-config@{IP['cp-3']}"])
    first = steps.run("roll-config", update, state, stdin=config_stdin(roles))
    assert first.code == 1
    rolled = sorted(h for h in IP if active(first.state, h) != active(state, h))
    assert rolled == ["cp-1", "cp-2"]
    reverted = {**first.state, "fail": []}
    revert = updating(steps, config_env(), config_env(), "record-config", config_stdin())
    assert steps.run("roll-config", revert, reverted, tools=(), stdin=config_stdin()).calls == []
    result = steps.run("roll-config", {**revert, "TALOS_FLEET_RECHECK": "1"}, reverted, stdin=config_stdin())
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("reboot",)) == [[h] for h in rolled]
    assert node_calls(result, "apply-config", "--mode=try") == []
    assert all(active(result.state, h) == active(state, h) and settled(result.state, h) for h in IP)
    assert result.record()["recheck"] == "1"


@pytest.mark.parametrize("asking", ["recheck", "no-record"])
def test_a_recheck_dry_runs_every_node_first_and_its_canary_is_the_first_that_differs(
    steps: Steps, asking: str
) -> None:
    """A worker change rolled to worker-1 (the canary) and worker-2, then failed at worker-3, its
    batch mate. The revert asks every node. The control planes run their config already, so the
    first changed node in wave order is a worker: it goes alone, as the canary, before the next
    wave; never with its batch mate as the first real wave. Also when the record cannot be read."""
    roles = {**ROLE_CONFIGS, "worker": changed(ROLE_CONFIGS["worker"], LIVE_CHANGE)}
    workers = sorted(h for h in IP if ROLE[h] == "worker")
    update = updating(steps, config_env(), config_env(live=moved(workers)), "record-config", config_stdin())
    state = configured(fail=[f"apply-config --mode=no-reboot@{IP['worker-3']}"])
    first = steps.run("roll-config", update, state, stdin=config_stdin(roles))
    assert first.code == 1
    rolled = sorted(h for h in IP if active(first.state, h) != active(state, h))
    assert rolled == ["worker-1", "worker-2"]
    assert expected_waves(workers, 2)[0] == rolled  # the batch the old way would reboot together
    reverted = {**first.state, "fail": []}
    revert = updating(steps, config_env(), config_env(), "record-config", config_stdin())
    if asking == "recheck":
        revert["TALOS_FLEET_RECHECK"] = "1"
    else:
        revert["PULUMI_COMMAND_STDOUT"] = "not a record"
    result = steps.run("roll-config", revert, reverted, stdin=config_stdin())
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("reboot",)) == [[h] for h in rolled]
    # Every node's dry-run before the first check; the rolled nodes asked once before their reboot.
    happened = events(result)
    before_check = happened[: happened.index(("health", ""))]
    assert sorted(h for what, h in before_check if what == "dry-run") == sorted(IP)
    for host in rolled:
        mine = [what for what, h in happened if h == host]
        assert mine[: mine.index("reboot")] == ["dry-run", "cordon", "drain", "apply staged"], mine
    assert all(active(result.state, h) == active(state, h) and settled(result.state, h) for h in IP)


@pytest.mark.parametrize("rollout", ["upgrade", "config"])
def test_a_node_registered_under_another_name_stops_the_rollout_before_any_node(steps: Steps, rollout: str) -> None:
    """worker-2's kubelet registered its FQDN: found by its address, under another Node name. Its
    drain and cordon would miss it, and skipping it would leave its change to the provider's
    apply, which reaches every node at once: the rollout stops and says why."""
    if rollout == "upgrade":
        env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
        state, step, stdin = fleet(SMALL), "upgrade-rollout", CREDENTIALS
    else:
        roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
        env = updating(steps, config_env(SMALL), config_env(SMALL, live=moved(IP)), "record-config", config_stdin())
        state, step, stdin = configured(SMALL), "roll-config", config_stdin(roles)
    state["nodes"][IP["worker-2"]]["node_name"] = "worker-2.lab.example.org"
    result = steps.run(step, env, state, stdin=stdin)
    assert result.code == 1
    assert "node worker-2 registered as worker-2.lab.example.org: talos-fleet drains and cordons by hostname" in (
        result.stderr
    )
    # Only the listing was asked: no node's version, config or health, no cordon, no mark.
    assert [c["args"][0] for c in result.calls if c["tool"] == "kubectl"] == ["get"]
    assert [c for c in result.calls if c["tool"] == "talosctl" and "--nodes" in c["args"]] == [
        c for c in result.calls if "kubeconfig" in c["args"]
    ]


def unhealthy_until_fixed(steps: Steps, skip: bool) -> tuple[Result, dict[str, str]]:
    """cp-1 runs a broken patch (its kubelet is NotReady: the marker), the rest of the cluster is
    fine; the change rolled out is the fix, a live one for every node."""
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    state = configured(not_ready_marker=NOT_READY)
    broken = [*node_patches(["cp-1"])["cp-1"], f"machine:\n  nodeLabels:\n    cni: {NOT_READY}\n"]
    state["nodes"][IP["cp-1"]]["config"] = {"v1alpha1": fake.encode(fake.render(ROLE_CONFIGS[CONTROL_PLANE], broken))}
    env = config_env(live=moved(IP))
    if skip:
        env[day2.SKIP_PRECHECK_ENV] = "1"
    return roll(steps, roles, state, env), roles


def test_a_fix_for_an_unhealthy_cluster_rolls_only_when_the_first_check_is_skipped(steps: Steps) -> None:
    stopped, _ = unhealthy_until_fixed(steps, skip=False)
    assert stopped.code == 1
    assert "not ready: [cp-1]" in stopped.stderr
    assert [what for what, _ in events(stopped)] == ["health"]
    result, roles = unhealthy_until_fixed(steps, skip=True)
    assert result.code == 0, result.stderr
    assert f"{day2.SKIP_PRECHECK_ENV} is set: the cluster's health was NOT checked" in result.stderr
    # No check before the canary's try; after it, every check ran as usual.
    happened = confirmed_canary(events(result), "cp-1")
    assert happened.index(("apply try", "cp-1")) < happened.index(("health", ""))
    waves = expected_waves(IP, 2)
    assert touched_in_waves(happened, ("apply try", "apply no-reboot")) == waves
    assert [what for what, _ in happened].count("health") == len(waves)
    assert all(active(result.state, h) == running(roles, h) and settled(result.state, h) for h in IP)


def test_a_skipped_first_check_leaves_every_later_check_in_place(steps: Steps) -> None:
    """worker-2 is down for good: the upgrade starts without the first check, upgrades the first
    wave, and the check after it stops the rollout."""
    env = updating(steps, upgrade_env(SMALL, version="v1.13.10"), upgrade_env(SMALL), "record-upgrades")
    state = fleet(SMALL)
    state["nodes"][IP["worker-2"]]["ready"] = False
    stopped = steps.run("upgrade-rollout", env, state, stdin=CREDENTIALS)
    assert stopped.code == 1
    assert node_calls(stopped, "upgrade") == []
    result = steps.run("upgrade-rollout", {**env, day2.SKIP_PRECHECK_ENV: "1"}, state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "NOT checked before the first wave" in result.stderr
    assert "not ready: [worker-2]" in result.stderr
    assert touched_in_waves(events(result), ("upgrade",)) == expected_waves([h for h, _, _ in SMALL], 2)[:1]
    assert [what for what, _ in events(result)][-1] == "health"


def gaps_before_checks(result: Result, after: tuple[str, ...]) -> list[float]:
    """Per health check, the seconds since the last call before it whose event is in `after`."""
    gaps, last = [], None
    for call in result.calls:
        happened = event(call)
        if happened is None:
            continue
        if happened[0] == "health":
            if last is not None:
                gaps.append(call["at"] - last)
            last = None
        elif happened[0] in after:
            last = call["at"]
    return gaps


def test_a_live_change_settles_before_each_health_check(steps: Steps) -> None:
    """Ready lags a kubelet the change broke, and Talos applies a config after it answers: the
    canary's try and each live wave wait TALOS_FLEET_SETTLE_SECONDS before their check."""
    settle = 0.4
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    hosts = [h for h, _, _ in SMALL]
    new = {**config_env(SMALL, live=moved(hosts)), "TALOS_FLEET_SETTLE_SECONDS": str(settle)}
    update = updating(steps, config_env(SMALL), new, "record-config", config_stdin())
    result = steps.run("roll-config", update, configured(SMALL), stdin=config_stdin(roles))
    assert result.code == 0, result.stderr
    gaps = gaps_before_checks(result, ("apply try", "apply no-reboot"))
    assert len(gaps) == len(expected_waves(hosts, 2))  # the canary and the worker batch
    assert all(gap >= settle for gap in gaps), gaps


def test_a_wave_of_reboots_does_not_settle(steps: Steps) -> None:
    """Its nodes went NotReady and came back, drained: the check follows at once."""
    settle = 3.0
    roles = {**ROLE_CONFIGS, CONTROL_PLANE: changed(ROLE_CONFIGS[CONTROL_PLANE], REBOOT_CHANGE)}
    new = {**config_env(SMALL, reboot=moved(["cp-1"], "3" * 12)), "TALOS_FLEET_SETTLE_SECONDS": str(settle)}
    update = updating(steps, config_env(SMALL), new, "record-config", config_stdin())
    result = steps.run("roll-config", update, configured(SMALL), stdin=config_stdin(roles))
    assert result.code == 0, result.stderr
    assert touched_in_waves(events(result), ("reboot",)) == [["cp-1"]]
    gaps = gaps_before_checks(result, ("reboot", "dry-run", "uncordon"))
    assert len(gaps) == 1
    assert gaps[0] < settle, gaps
    assert "settle" not in result.stderr


def test_configs_reach_talosctl_only_in_private_files_removed_afterwards(steps: Steps, tmp_path: Path) -> None:
    roles = {role: changed(text, LIVE_CHANGE) for role, text in ROLE_CONFIGS.items()}
    result = roll(steps, roles, configured(), config_env(live=moved(IP)))
    assert result.code == 0, result.stderr
    applies = [c for c in result.calls if "apply-config" in c["args"]]
    assert applies
    for call in applies:
        assert not any(word in arg for arg in call["args"] for word in SECRET_WORDS)
        assert any(a.startswith("--file=") for a in call["args"])
        assert any(a.startswith("--config-patch=@") for a in call["args"])
        assert set(call["files_mode"].values()) == {"0o600"}, call
    for word in SECRET_WORDS:
        assert word not in result.stdout + result.stderr
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# The schedule, on generated fleets


def generated(count: int, control_planes: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    names = [f"node-{i:05d}" for i in range(count)]
    rng.shuffle(names)
    return [(h, CONTROL_PLANE if i < control_planes else "worker") for i, h in enumerate(names)]


def check_schedule(nodes: list[tuple[str, str]], changed: set[str], batch: int) -> None:
    schedule = day2.config_schedule(nodes, changed, batch)
    roles = dict(nodes)
    flat = [h for wave in schedule for h in wave]
    # Each changed node exactly once, nothing else.
    assert sorted(flat) == sorted(changed)
    if not changed:
        assert schedule == ()
        return
    changed_cps = sorted(h for h in changed if roles[h] == CONTROL_PLANE)
    changed_workers = sorted(h for h in changed if roles[h] != CONTROL_PLANE)
    canary = (changed_cps or changed_workers)[0]
    assert schedule[0] == (canary,)
    rest = schedule[1:]
    # Control planes alone and before every worker wave; workers in full batches but the last,
    # each wave in hostname order after the whole previous one.
    cp_waves = [w for w in rest if roles[w[0]] == CONTROL_PLANE]
    assert all(len(w) == 1 for w in cp_waves)
    assert list(rest[: len(cp_waves)]) == cp_waves
    worker_waves = rest[len(cp_waves) :]
    assert all(roles[h] != CONTROL_PLANE for w in worker_waves for h in w)
    assert all(len(w) == batch for w in worker_waves[:-1])
    assert 1 <= len(worker_waves[-1]) <= batch if worker_waves else True
    assert [h for w in rest for h in w] == [h for h in changed_cps + changed_workers if h != canary]


@pytest.mark.parametrize(("count", "batch"), [(1000, 7), (3000, 25)])
def test_the_schedule_on_thousands_of_nodes(count: int, batch: int) -> None:
    nodes = generated(count, 5, seed=count)
    everything = {h for h, _ in nodes}
    workers_only = {h for h, role in nodes if role != CONTROL_PLANE}
    some = set(random.Random(count + 1).sample(sorted(everything), count // 3))
    for changed_set in (everything, workers_only, some):
        check_schedule(nodes, changed_set, batch)


@given(
    st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), st.booleans()), unique_by=lambda n: n[0]),
    st.integers(1, 6),
    st.randoms(use_true_random=False),
)
def test_the_schedule_for_any_fleet_and_change(raw: list[tuple[str, bool]], batch: int, rng: random.Random) -> None:
    nodes = [(h, CONTROL_PLANE if cp else "worker") for h, cp in raw]
    changed_set = {h for h, _ in nodes if rng.random() < 0.5}
    check_schedule(nodes, changed_set, batch)


# ---------------------------------------------------------------------------------------------
# Records: one environment string each on the next update


def hostnames(count: int) -> list[str]:
    """63-character DNS labels shaped like a large site's: place, rack, slot, role, index."""
    return [f"eu-west-1a-rack-{i // 40:03d}-slot-{i % 40:02d}-worker-{i:05d}".ljust(63, "x") for i in range(count)]


def test_records_of_5000_nodes_with_63_character_hostnames_fit_one_environment_string() -> None:
    """Each node's own patches (hostname, addresses: live settings) make its fingerprint and live
    hash its own; the reboot hash is its role's unless a node patch touches a reboot setting."""
    hosts = hostnames(5000)
    assert {len(h) for h in hosts} == {63}
    limit = 128 * 1024 - len("PULUMI_COMMAND_STDOUT=") - 1  # one string, name, `=` and NUL included
    ip, rng = "10.0.0.1", random.Random(13)
    lives = {h: f"{rng.getrandbits(48):012x}" for h in hosts}
    config = day2.Env(
        {
            f"TALOS_FLEET_CONFIG_{h}": compact({"ip": ip, "live": lives[h], "reboot": "2" * 12, "role": "worker"})
            for h in hosts
        }
        | {"TALOS_FLEET_RECHECK": "12"}
    )
    inputs = day2.ConfigInputs.parse(config_stdin(hosts=hosts))
    record = json.dumps(day2.config_record(config, inputs), sort_keys=True)
    assert len(record.encode()) <= limit
    targets = {f"TALOS_FLEET_TARGET_{h}": compact({"arch": "amd64", "ip": ip, "role": "worker"}) for h in hosts}
    upgrade = day2.Env({**targets, **upgrade_env([])})
    assert len(json.dumps(day2.upgrade_record(upgrade), sort_keys=True).encode()) <= limit
    # And what the next update reads back is every node's fingerprint, live and reboot hash.
    previous = day2.Env({"PULUMI_COMMAND_STDOUT": record}).previous()
    assert previous is not None
    assert previous["recheck"] == "12"
    table = day2.config_table(previous["config"])
    assert table is not None
    assert sorted(table) == sorted(hosts)
    assert {r.reboot for r in table.values()} == {"2" * 12}
    assert all(lives[h].startswith(table[h].live) for h in hosts)
    assert all(table[h].fingerprint == inputs.fingerprint(day2.Target(h, ip, "worker")) for h in hosts[:50])


def test_a_record_that_would_not_fit_is_refused_before_anything_is_touched(steps: Steps) -> None:
    rng = random.Random(5)
    hosts = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(63)) for _ in range(5000)]
    env = {
        **policy(1),
        **{
            f"TALOS_FLEET_CONFIG_{h}": compact(
                {"ip": "10.0.0.1", "live": "1" * 12, "reboot": os.urandom(6).hex(), "role": "worker"}
            )
            for h in hosts
        },
    }
    result = steps.run("roll-config", env, {"nodes": {}}, tools=(), stdin=config_stdin(hosts=hosts))
    assert result.code == 1
    assert "environment variable" in result.stderr
    assert result.calls == []


# ---------------------------------------------------------------------------------------------
# The fake's apply-config, against the rules it cites (in process: no step involved)


@pytest.mark.parametrize(
    ("version", "mode", "patch", "outcome"),
    [
        ("v1.13.10", "no-reboot", REBOOT_CHANGE, "refused"),
        ("v1.13.10", "try", REBOOT_CHANGE, "refused"),
        ("v1.13.10", "no-reboot", LIVE_CHANGE, "live"),
        ("v1.13.10", "auto", LIVE_CHANGE, "live"),
        ("v1.13.10", "auto", REBOOT_CHANGE, "rebooted"),
        ("v1.13.10", "reboot", LIVE_CHANGE, "rebooted"),
        ("v1.13.10", "staged", LIVE_CHANGE, "staged"),
        ("v1.13.10", "try", LIVE_CHANGE, "tried"),
        ("v1.14.1", "try", REBOOT_CHANGE, "tried"),
        ("v1.14.1", "no-reboot", REBOOT_CHANGE, "live"),
        ("v1.14.1", "auto", REBOOT_CHANGE, "live"),
        ("v1.14.1", "reboot", LIVE_CHANGE, "refused"),
        ("v1.14.1", "staged", REBOOT_CHANGE, "staged"),
    ],
)
def test_the_fake_applies_configs_as_talos_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str, mode: str, patch: str, outcome: str
) -> None:
    base = ROLE_CONFIGS["worker"]
    old, new = fake.encode(fake.render(base, [])), fake.encode(fake.render(base, [patch]))
    (tmp_path / "config.yaml").write_text(base)
    (tmp_path / "patch.yaml").write_text(patch)
    args = [f"--file={tmp_path / 'config.yaml'}", f"--config-patch=@{tmp_path / 'patch.yaml'}", f"--mode={mode}"]
    node = {"hostname": "worker-1", "version": version, "config": {"v1alpha1": old}}
    state: dict[str, Any] = {"nodes": {"10.17.3.21": node}}
    # A dry-run changes nothing and shows the diff against the active config (or is refused).
    try:
        fake._apply_config([*args, "--dry-run"], node, state)
        assert "No changes." not in capsys.readouterr().err
    except fake.RefusedError:
        assert outcome == "refused"
    assert node["config"] == {"v1alpha1": old}
    if outcome == "refused":
        with pytest.raises(fake.RefusedError):
            fake._apply_config(args, node, state)
        assert node["config"] == {"v1alpha1": old}
        return
    fake._apply_config(args, node, state)
    expected = {
        "live": {"v1alpha1": new, "persistent": new},
        "staged": {"v1alpha1": old, "persistent": new},
        "rebooted": {"v1alpha1": new},
        "tried": {"v1alpha1": new},
    }[outcome]
    assert node["config"] == expected
    assert node.get("rollback") == (old if outcome == "tried" else None)
    assert bool(state.get("reboots")) == (outcome == "rebooted")
    capsys.readouterr()
    if outcome == "staged":
        # Still the old config until a reboot: a resumed rollout sees the change, then the boot
        # makes the staged config the active one.
        fake._apply_config([*args, "--dry-run"], node, state)
        assert "No changes." not in capsys.readouterr().err
        fake._boot(node, state)
        assert node["config"] == {"v1alpha1": new}
    fake._apply_config([*args, "--dry-run"], node, state)
    assert capsys.readouterr().err.rstrip().endswith("Config diff:\n\nNo changes.")


@pytest.mark.parametrize("then", ["expires", "dry-run", "no-reboot", "reboot", "try-again"])
def test_the_fake_keeps_a_try_pending_until_its_timeout_another_apply_or_a_reboot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], then: str
) -> None:
    """TRY sets the active config only and arms a rollback to the one active before; every other
    mode, dry-runs included, cancels it; a reboot boots the config on disk; a second try re-arms
    the rollback with the config active then (siderolabs/talos v1.13.9 v1alpha1_server.go
    ApplyConfiguration, v1alpha1_runtime.go RollbackToConfigAfter)."""
    base = ROLE_CONFIGS["worker"]
    old, new = fake.encode(fake.render(base, [])), fake.encode(fake.render(base, [LIVE_CHANGE]))
    third = fake.encode(fake.render(base, [LIVE_CHANGE, "machine:\n  nodeLabels:\n    third: 'yes'\n"]))
    (tmp_path / "config.yaml").write_text(base)
    (tmp_path / "patch.yaml").write_text(LIVE_CHANGE)
    (tmp_path / "third.yaml").write_text("machine:\n  nodeLabels:\n    third: 'yes'\n")
    files = [f"--file={tmp_path / 'config.yaml'}", f"--config-patch=@{tmp_path / 'patch.yaml'}"]
    node = {"hostname": "worker-1", "version": "v1.13.10", "config": {"v1alpha1": old}}
    state: dict[str, Any] = {"nodes": {"10.17.3.21": node}}
    fake._apply_config([*files, "--mode=try", "--timeout=20m"], node, state)
    assert (node["config"], node["rollback_after"]) == ({"v1alpha1": new}, "20m")
    if then == "expires":
        fake.expire_rollbacks(state)
        assert node["config"] == {"v1alpha1": old}
    elif then == "dry-run":
        fake._apply_config([*files, "--dry-run"], node, state)
        fake.expire_rollbacks(state)
        assert node["config"] == {"v1alpha1": new}  # cancelled, yet nothing on disk
    elif then == "no-reboot":
        fake._apply_config([*files, "--mode=no-reboot"], node, state)
        fake.expire_rollbacks(state)
        assert node["config"] == {"v1alpha1": new, "persistent": new}
    elif then == "reboot":
        fake._boot(node, state)
        assert node["config"] == {"v1alpha1": old}
    else:
        fake._apply_config([*files, f"--config-patch=@{tmp_path / 'third.yaml'}", "--mode=try"], node, state)
        assert (node["config"], node["rollback_after"]) == ({"v1alpha1": third}, "1m0s")  # talosctl's default
        fake.expire_rollbacks(state)
        assert node["config"] == {"v1alpha1": new}
    capsys.readouterr()
