"""The day-2 steps as pulumi-command runs them: `python3 -m talos_fleet.day2 <step>` in the project
directory, inputs in the environment and on stdin, against a fake talosctl and kubectl that log
every call. Plus the version gate's guard rails, one fixture each (tests/fixtures/upgrade).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_fleet import day2
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.plan import gate_environment, plan_cluster
from tests.harness import FAKE_CLIENT_CONFIGURATION, FAKE_CREDENTIAL_STRINGS, ROOT, fixture_header, mutated_stack

FAKE_TOOL = Path(__file__).parent / "fakes" / "tool.py"
UPGRADE_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "upgrade").glob("*.yaml"))
NODE, CONTROL_PLANE = "10.17.3.12", "10.17.3.11"
OLD_SCHEMATIC, NEW_SCHEMATIC = "a" * 64, "b" * 64


def installer(schematic: str, version: str) -> str:
    return f"factory.talos.dev/metal-installer/{schematic}:{version}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def argv(self) -> list[str]:
        return [" ".join([c["tool"], *c["args"]]) for c in self.calls]

    def index(self, needle: str) -> int:
        """The position of the first call containing `needle`."""
        return next(i for i, a in enumerate(self.argv()) if needle in a)

    def ran(self, needle: str) -> bool:
        return any(needle in a for a in self.argv())


@pytest.fixture
def step(tmp_path: Path) -> Callable[..., Result]:
    """Run a step like pulumi-command does, with the fake `tools` alone on PATH."""

    def run(
        name: str,
        env: dict[str, str],
        state: dict[str, Any] | None = None,
        tools: tuple[str, ...] = ("talosctl", "kubectl"),
        stdin: str = "",
    ) -> Result:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in tools:
            wrapper = bin_dir / tool
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOL}" {tool} "$@"\n')
            wrapper.chmod(0o755)
        state_file, log_file = tmp_path / "state.json", tmp_path / "calls.jsonl"
        state_file.write_text(json.dumps(state or {"nodes": {}}))
        log_file.write_text("")
        python = Path(sys.executable).parent
        environ = {
            # The step finds python3 on PATH, as under pulumi-command; no real talosctl or
            # kubectl can be found, only the fakes asked for.
            "PATH": f"{bin_dir}:{python}",
            "FAKE_STATE": str(state_file),
            "FAKE_LOG": str(log_file),
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            **env,
        }
        done = subprocess.run(
            ["python3", "-m", "talos_fleet.day2", name],
            cwd=ROOT,
            env=environ,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        calls = [json.loads(line) for line in log_file.read_text().splitlines()]
        return Result(done.returncode, done.stdout, done.stderr, calls, json.loads(state_file.read_text()))

    return run


CREDENTIALS = json.dumps(FAKE_CLIENT_CONFIGURATION)


def node_env(**overrides: str) -> dict[str, str]:
    env = {
        "TALOS_FLEET_CLUSTER": "homelab",
        "TALOS_FLEET_HOSTNAME": "cp-2",
        "TALOS_FLEET_ROLE": "controlplane",
        "TALOS_FLEET_NODE": NODE,
        "TALOS_FLEET_CONTROL_PLANE": CONTROL_PLANE,
        "TALOS_FLEET_TALOS_VERSION": "v1.13.11",
        "TALOS_FLEET_INSTALLER": installer(OLD_SCHEMATIC, "v1.13.11"),
        "TALOS_FLEET_ALLOW_DOWNGRADE": "false",
        "TALOS_FLEET_DRAIN_TIMEOUT_MINUTES": "10",
        "TALOS_FLEET_HEALTH_TIMEOUT_MINUTES": "15",
    }
    return {**env, **{f"TALOS_FLEET_{k.upper()}": v for k, v in overrides.items()}}


def cluster_state(version: str = "v1.13.10", schematic: str | None = OLD_SCHEMATIC, **extra: Any) -> dict[str, Any]:
    nodes = {ip: {"version": version, "schematic": schematic} for ip in (NODE, CONTROL_PLANE)}
    return {"nodes": nodes, **extra}


# ---------------------------------------------------------------------------------------------
# upgrade-node


def test_upgrade_checks_drains_upgrades_waits_checks_and_uncordons_in_that_order(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    order = [
        f"--nodes {NODE} --endpoints {NODE} version",
        f"--nodes {CONTROL_PLANE} --endpoints {CONTROL_PLANE} health",
        "kubectl cordon cp-2",
        "kubectl drain cp-2 --ignore-daemonsets",
        f"--nodes {NODE} --endpoints {NODE} upgrade --image={installer(OLD_SCHEMATIC, 'v1.13.11')}",
    ]
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    after_upgrade = result.argv()[positions[-1] + 1 :]
    # Back at the target, the whole cluster healthy, and only then schedulable again.
    assert any(f"--nodes {NODE} --endpoints {NODE} version" in a for a in after_upgrade)
    health = next(i for i, a in enumerate(after_upgrade) if " health " in a)
    assert after_upgrade[-1] == "kubectl uncordon cp-2"
    assert health < len(after_upgrade) - 1
    assert (result.state["nodes"][NODE]["version"], result.state["nodes"][NODE]["schematic"]) == (
        "v1.13.11",
        OLD_SCHEMATIC,
    )
    assert json.loads(result.stdout.splitlines()[-1])["talos"] == "v1.13.11"


def test_a_node_already_at_the_target_is_not_drained_or_upgraded(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state("v1.13.11"), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert not result.ran("drain")
    assert not result.ran(" upgrade ")
    # Resuming after a stop between upgrade and health check still finishes those checks.
    assert result.ran(" health ")
    assert result.argv()[-1] == "kubectl uncordon cp-2"
    assert "no upgrade" in result.stderr


def test_an_extension_change_upgrades_a_node_on_the_same_version(step: Callable[..., Result]) -> None:
    env = node_env(talos_version="v1.13.10", installer=installer(NEW_SCHEMATIC, "v1.13.10"))
    result = step("upgrade-node", env, cluster_state("v1.13.10", OLD_SCHEMATIC), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran(f"upgrade --image={installer(NEW_SCHEMATIC, 'v1.13.10')}")
    assert result.state["nodes"][NODE]["schematic"] == NEW_SCHEMATIC


def test_waiting_for_the_node_tolerates_it_not_answering_while_it_reboots(step: Callable[..., Result]) -> None:
    env = node_env(poll_seconds="0")
    result = step("upgrade-node", env, cluster_state(reboot_calls=2), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.stderr.count("waiting:") == 2
    assert result.argv()[-1] == "kubectl uncordon cp-2"


def test_a_node_that_does_not_show_its_schematic_is_judged_by_the_steps_own_record(
    step: Callable[..., Result],
) -> None:
    target = installer(OLD_SCHEMATIC, "v1.13.11")
    state = cluster_state("v1.13.11", None)
    # Never upgraded by this step to this installer: upgrade (the image may differ).
    first = step("upgrade-node", node_env(), state, stdin=CREDENTIALS)
    assert first.code == 0, first.stderr
    assert first.ran(" upgrade ")
    # Recorded as done: a re-run skips it.
    env = {**node_env(), "PULUMI_COMMAND_STDOUT": json.dumps({"talos": "v1.13.11", "installer": target})}
    again = step("upgrade-node", env, state, stdin=CREDENTIALS)
    assert again.code == 0, again.stderr
    assert not again.ran(" upgrade ")


def test_a_failed_health_check_stops_before_the_node_is_touched(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(fail=["health"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert not result.ran("cordon")
    assert not result.ran(" upgrade ")
    assert "health failed" in result.stderr


def test_the_running_version_is_checked_before_touching_a_node(step: Callable[..., Result]) -> None:
    # The gate compares recorded versions; the node step compares what the node really runs.
    result = step("upgrade-node", node_env(), cluster_state("v1.11.6"), stdin=CREDENTIALS)
    assert result.code == 1
    assert "skips Talos v1.12" in result.stderr
    assert not result.ran("cordon")
    assert not result.ran(" upgrade ")


def test_a_talosctl_older_than_the_target_is_refused(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(client="v1.12.4"), stdin=CREDENTIALS)
    assert result.code == 1
    assert "talosctl v1.12.4 is older than the target Talos v1.13.11" in result.stderr
    assert not result.ran("cordon")


def test_a_missing_talosctl_is_named_with_where_to_get_it(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(), tools=(), stdin=CREDENTIALS)
    assert result.code == 1
    assert "talosctl is not installed" in result.stderr
    assert day2.TALOSCTL_INSTALL in result.stderr


def test_kubectl_missing_is_named_too(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(), tools=("talosctl",), stdin=CREDENTIALS)
    assert result.code == 1
    assert "kubectl is not installed" in result.stderr
    assert day2.KUBECTL_INSTALL in result.stderr


# ---------------------------------------------------------------------------------------------
# Credentials


@pytest.mark.parametrize("name", ["upgrade-node", "remove-node", "upgrade-kubernetes"])
def test_credentials_live_in_private_files_only_while_the_step_runs(
    step: Callable[..., Result], name: str, tmp_path: Path
) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    result = step(name, env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls
    for call in result.calls:
        assert (call["talosconfig_mode"], call["talosconfig_dir_mode"]) == ("0o600", "0o700"), call
        if call["tool"] == "kubectl":
            assert call["kubeconfig_mode"] == "0o600", call
        assert not any(secret in arg for arg in call["args"] for secret in FAKE_CREDENTIAL_STRINGS)
    # Removed afterwards, and never printed.
    assert not Path(result.calls[0]["talosconfig"]).parent.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith("talos-fleet-")] == []
    for secret in FAKE_CREDENTIAL_STRINGS:
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_credentials_are_removed_when_a_step_fails(step: Callable[..., Result], tmp_path: Path) -> None:
    result = step("upgrade-node", node_env(), cluster_state(fail=["upgrade"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert [p for p in tmp_path.iterdir() if p.name.startswith("talos-fleet-")] == []


# ---------------------------------------------------------------------------------------------
# record steps and Kubernetes


@pytest.mark.parametrize("name", ["record-node", "record-kubernetes", "gate"])
def test_creation_steps_run_no_tool(step: Callable[..., Result], name: str) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.3"}
    result = step(name, env, cluster_state(), tools=())
    assert result.code == 0, result.stderr
    assert result.calls == []


def test_kubernetes_upgrade_runs_upgrade_k8s_once_then_checks_health(step: Callable[..., Result]) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    result = step("upgrade-kubernetes", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    upgrades = [a for a in result.argv() if "upgrade-k8s" in a]
    assert upgrades == [f"talosctl --nodes {CONTROL_PLANE} --endpoints {CONTROL_PLANE} upgrade-k8s --to=1.36.4"]
    assert result.index("upgrade-k8s") < result.index(" health ")


# ---------------------------------------------------------------------------------------------
# remove-node


@pytest.mark.parametrize(("role", "members", "graceful"), [("worker", 3, True), ("controlplane", 3, True)])
def test_removal_drains_resets_gracefully_then_deletes_the_node(
    step: Callable[..., Result], role: str, members: int, graceful: bool
) -> None:
    result = step("remove-node", node_env(role=role), cluster_state(etcd_members=members), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    order = ["kubectl cordon cp-2", "kubectl drain cp-2", f"reset --graceful={str(graceful).lower()}"]
    order.append("kubectl delete node cp-2")
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    assert result.state["nodes"][NODE]["reset"] is True


def test_the_last_etcd_member_is_reset_without_leaving_etcd(step: Callable[..., Result]) -> None:
    result = step("remove-node", node_env(), cluster_state(etcd_members=1), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran("reset --graceful=false")


def test_an_unreachable_node_is_not_forgotten_silently(step: Callable[..., Result]) -> None:
    state = cluster_state()
    state["nodes"][NODE]["down"] = True
    result = step("remove-node", node_env(), state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "TALOS_FLEET_FORCE_REMOVE=1 pulumi up" in result.stderr
    assert not result.ran("kubectl delete")
    forced = step("remove-node", node_env(force_remove="1"), state, stdin=CREDENTIALS)
    assert forced.code == 0, forced.stderr
    assert forced.ran("kubectl delete node cp-2")
    assert not forced.ran(" reset ")


# ---------------------------------------------------------------------------------------------
# The version gate: one fixture per guard rail


def _fixture(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    document["expect"] = fixture_header(path)
    return document


@pytest.mark.parametrize("fixture", UPGRADE_FIXTURES, ids=lambda p: p.name)
def test_guard_rail(fixture: Path, step: Callable[..., Result], tmp_path: Path) -> None:
    case = _fixture(fixture)
    base = ROOT / "stacks" / f"Pulumi.{case['stack']}.yaml"

    def change(document: dict[str, Any]) -> None:
        document["config"]["talos-fleet:defaults"].update(case["change"])

    changed = mutated_stack(base, tmp_path, change)
    expected = case["expect"]
    if expected.get("expect-stage") == "spec":
        with pytest.raises(SpecError) as raised:
            load_stack_file(changed)
        assert expected["expect-message"] in str(raised.value)
        return
    fleet = load_stack_file(changed)
    for cname in fleet.clusters:
        env = {**gate_environment(plan_cluster(fleet, cname)), "PULUMI_COMMAND_STDOUT": json.dumps(case["deployed"])}
        result = step("gate", env, tools=())
        assert result.calls == []
        if "expect-message" in expected:
            assert result.code == 1
            assert expected["expect-message"] in result.stderr
            assert "before any node is touched" in result.stderr
        else:
            assert result.code == 0, result.stderr
            assert json.loads(result.stdout) == {
                "talos": fleet.talos_version(fleet.clusters[cname]),
                "kubernetes": fleet.kubernetes_version(fleet.clusters[cname]),
            }


def test_every_guard_rail_has_a_fixture() -> None:
    messages = " ".join(_fixture(p)["expect"].get("expect-message", "") for p in UPGRADE_FIXTURES)
    for rail in (
        "downgrade is refused",
        "skips Talos",
        "jumps more than one minor",
        "while Talos upgrades",
        "supports Kubernetes",
    ):
        assert rail in messages, rail
