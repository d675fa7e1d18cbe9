"""The day-2 steps as pulumi-command runs them: `python3 -m talos_fleet.day2 <step>` in the project
directory, inputs in the environment and on stdin, against a fake talosctl and kubectl that log
every call. Plus the version gate's guard rails, one fixture each (tests/fixtures/upgrade).
"""

from __future__ import annotations

import base64
import hashlib
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
from tests.harness import ROOT, fixture_header, mutated_stack

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


def fake_bin(directory: Path, tools: tuple[str, ...] = ("talosctl", "kubectl")) -> Path:
    """`directory` holding a wrapper per tool that runs the fake."""
    directory.mkdir(exist_ok=True)
    for tool in tools:
        wrapper = directory / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOL}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    return directory


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
        bin_dir = fake_bin(tmp_path / "bin", tools)
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


# The cluster's OS CA as the provider's machine secrets hold it: base64 of PEM
# (siderolabs/terraform-provider-talos v0.11.0 pkg/talos/util.go secretsBundleTomachineSecrets).
CA_PEM = "-----BEGIN CERTIFICATE-----\nFAKE-os-ca-cert\n-----END CERTIFICATE-----\n"
CA_KEY_PEM = "-----BEGIN ED25519 PRIVATE KEY-----\nFAKE-os-ca-key\n-----END ED25519 PRIVATE KEY-----\n"
CA_B64 = {k: base64.b64encode(v.encode()).decode() for k, v in (("cert", CA_PEM), ("key", CA_KEY_PEM))}
CREDENTIALS = json.dumps({"osCa": CA_B64})
SECRETS = ["FAKE-os-ca-cert", "FAKE-os-ca-key", *CA_B64.values()]
WORKER = "10.17.3.21"


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


def worker_env(**overrides: str) -> dict[str, str]:
    return node_env(hostname="worker-1", role="worker", node=WORKER, **overrides)


def cluster_state(version: str = "v1.13.10", schematic: str | None = OLD_SCHEMATIC, **extra: Any) -> dict[str, Any]:
    nodes = {
        ip: {"hostname": host, "role": role, "version": version, "schematic": schematic}
        for ip, host, role in (
            (CONTROL_PLANE, "cp-1", "controlplane"),
            (NODE, "cp-2", "controlplane"),
            (WORKER, "worker-1", "worker"),
        )
    }
    return {"nodes": nodes, **extra}


def previous(env: dict[str, str]) -> dict[str, str]:
    """The environment of an update whose last successful run reached this same target."""
    record = {"talos": env["TALOS_FLEET_TALOS_VERSION"], "installer": env["TALOS_FLEET_INSTALLER"]}
    return {**env, "PULUMI_COMMAND_STDOUT": json.dumps(record)}


def through(endpoint: str, node: str) -> str:
    return f"talosctl --nodes {node} --endpoints {endpoint}"


# ---------------------------------------------------------------------------------------------
# upgrade-node


def test_upgrade_checks_drains_upgrades_waits_uncordons_then_checks_in_that_order(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    upgrade = f"{through(CONTROL_PLANE, NODE)} upgrade --image={installer(OLD_SCHEMATIC, 'v1.13.11')} --drain=false"
    order = [
        f"{through(CONTROL_PLANE, NODE)} version",
        "talosctl version --client --short",
        f"{through(CONTROL_PLANE, CONTROL_PLANE)} health",
        "kubectl cordon cp-2",
        "kubectl drain cp-2 --ignore-daemonsets",
        upgrade,
    ]
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    after_upgrade = result.argv()[positions[-1] + 1 :]
    # Back at the target, schedulable again, and only then the whole cluster's health, which
    # counts a cordoned node as unhealthy.
    back = next(i for i, a in enumerate(after_upgrade) if f"--nodes {NODE}" in a and " version" in a)
    uncordon = after_upgrade.index("kubectl uncordon cp-2")
    assert back < uncordon
    assert " health " in after_upgrade[-1]
    assert uncordon < len(after_upgrade) - 1
    assert result.state["cordoned"] == []
    # One drain only, by kubectl: talosctl's own was switched off.
    assert result.state["drained"] == ["cp-2"]
    assert set(result.state["cordoned_by"].values()) == {"kubectl"}
    assert (result.state["nodes"][NODE]["version"], result.state["nodes"][NODE]["schematic"]) == (
        "v1.13.11",
        OLD_SCHEMATIC,
    )
    assert json.loads(result.stdout.splitlines()[-1])["talos"] == "v1.13.11"


def test_a_worker_is_upgraded_through_a_control_plane_endpoint(step: Callable[..., Result]) -> None:
    """talosctl's drain builds its Kubernetes client from the endpoint's kubeconfig, a control-plane
    API: a worker as endpoint fails after the image is on disk (the fake refuses like Talos)."""
    result = step("upgrade-node", worker_env(), cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran(f"{through(CONTROL_PLANE, WORKER)} upgrade")
    assert not any(f"--endpoints {WORKER}" in a for a in result.argv())
    assert result.state["nodes"][WORKER]["version"] == "v1.13.11"
    assert result.state["cordoned"] == []


def test_a_node_on_the_previous_minor_takes_the_legacy_path_and_ends_schedulable(step: Callable[..., Result]) -> None:
    """Nodes before Talos 1.13 answer the legacy upgrade API, whose server-side sequence drains
    and only uncordons what it cordoned itself: the node kubectl cordoned stays cordoned until
    this step uncordons it, before the final health check."""
    result = step("upgrade-node", node_env(), cluster_state("v1.12.11"), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.state["nodes"][NODE]["version"] == "v1.13.11"
    assert result.state["cordoned"] == []
    argv = result.argv()
    last_uncordon = max(i for i, a in enumerate(argv) if a == "kubectl uncordon cp-2")
    assert last_uncordon > result.index(" upgrade ")
    assert " health " in argv[-1]


def test_a_node_already_at_the_target_is_uncordoned_then_checked(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state("v1.13.11", cordoned=["cp-2"]), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert not result.ran("drain")
    assert not result.ran(" upgrade ")
    # Resuming after a stop between upgrade and uncordon finishes the step: schedulable, healthy.
    assert result.index("kubectl uncordon cp-2") < result.index(" health ")
    assert " health " in result.argv()[-1]
    assert "no upgrade" in result.stderr


def test_a_node_left_cordoned_by_a_failed_attempt_does_not_block_the_retry(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(cordoned=["cp-2"]), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.index("kubectl uncordon cp-2") < result.index(" health ")
    assert result.ran(" upgrade ")


@pytest.mark.parametrize("failing", ["drain", "upgrade"])
def test_a_failed_upgrade_leaves_its_node_schedulable(step: Callable[..., Result], failing: str) -> None:
    result = step("upgrade-node", node_env(), cluster_state(fail=[failing]), stdin=CREDENTIALS)
    assert result.code == 1
    assert result.ran("kubectl cordon cp-2")
    assert result.state["cordoned"] == []
    # So the retry's first health check can pass.
    retry = step("upgrade-node", node_env(), {**result.state, "fail": []}, stdin=CREDENTIALS)
    assert retry.code == 0, retry.stderr


def test_a_rerun_for_the_same_target_touches_nothing(step: Callable[..., Result]) -> None:
    """An update caused by anything but the target (policy, directory, endpoint) only looks."""
    result = step("upgrade-node", previous(node_env()), cluster_state("v1.13.11"), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert [c for c in result.calls if c["tool"] == "kubectl"] == []
    assert not result.ran(" health ")
    assert "nothing to do" in result.stderr
    # A node that is not where the record says is still upgraded.
    behind = step("upgrade-node", previous(node_env()), cluster_state(), stdin=CREDENTIALS)
    assert behind.code == 0, behind.stderr
    assert behind.ran(" upgrade ")


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
    assert " health " in result.argv()[-1]


def test_a_node_that_does_not_show_its_schematic_is_judged_by_the_steps_own_record(
    step: Callable[..., Result],
) -> None:
    state = cluster_state("v1.13.11", None)
    # Never upgraded by this step to this installer: upgrade (the image may differ).
    first = step("upgrade-node", node_env(), state, stdin=CREDENTIALS)
    assert first.code == 0, first.stderr
    assert first.ran(" upgrade ")
    # Recorded as done: a re-run skips it.
    again = step("upgrade-node", previous(node_env()), state, stdin=CREDENTIALS)
    assert again.code == 0, again.stderr
    assert not again.ran(" upgrade ")


def test_a_failed_health_check_stops_before_the_node_is_touched(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(fail=["health"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert not result.ran("kubectl cordon cp-2")
    assert not result.ran(" upgrade ")
    assert "health failed" in result.stderr


def test_another_cordoned_node_fails_the_health_check_before_anything_is_touched(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(cordoned=["worker-1"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert "not schedulable: [worker-1]" in result.stderr
    assert not result.ran(" upgrade ")


def test_the_running_version_is_checked_before_touching_a_node(step: Callable[..., Result]) -> None:
    # The gate compares recorded versions; the node step compares what the node really runs.
    result = step("upgrade-node", node_env(), cluster_state("v1.11.6"), stdin=CREDENTIALS)
    assert result.code == 1
    assert "skips Talos v1.12" in result.stderr
    assert not result.ran("kubectl cordon")
    assert not result.ran(" upgrade ")


def test_a_talosctl_older_than_the_target_is_refused(step: Callable[..., Result]) -> None:
    result = step("upgrade-node", node_env(), cluster_state(client="v1.12.4"), stdin=CREDENTIALS)
    assert result.code == 1
    assert "talosctl v1.12.4 is older than the target Talos v1.13.11" in result.stderr
    assert not result.ran("kubectl cordon")


@pytest.mark.parametrize("where", ["client", "node"])
def test_a_pre_release_version_is_a_step_error_not_a_traceback(step: Callable[..., Result], where: str) -> None:
    state = cluster_state(client="v1.14.0-beta.1") if where == "client" else cluster_state("v1.14.0-beta.1")
    result = step("upgrade-node", node_env(), state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "'v1.14.0-beta.1'" in result.stderr
    assert "pre-releases" in result.stderr
    assert not result.ran("kubectl cordon")


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
        if call["args"][:1] == ["gen"]:
            assert all(mode == "0o600" for mode in call["files_mode"].values()), call
            continue
        if call["talosconfig"] is not None:
            assert (call["talosconfig_mode"], call["talosconfig_dir_mode"]) == ("0o600", "0o700"), call
        if call["tool"] == "kubectl":
            assert call["kubeconfig_mode"] == "0o600", call
        assert not any(secret in arg for arg in call["args"] for secret in SECRETS)
    # Removed afterwards, and never printed.
    assert [p for p in tmp_path.iterdir() if p.name.startswith("talos-fleet-")] == []
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_each_step_mints_a_short_lived_admin_certificate_from_the_os_ca(step: Callable[..., Result]) -> None:
    env = node_env()
    result = step("upgrade-node", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    [minted] = result.state["minted"].values()
    assert minted["roles"] == ["os:admin"]
    # Long enough for the longest step (health, drain, upgrade, wait, health), short otherwise.
    longest = 4 * int(env["TALOS_FLEET_HEALTH_TIMEOUT_MINUTES"]) + int(env["TALOS_FLEET_DRAIN_TIMEOUT_MINUTES"])
    assert longest <= minted["hours"] * 60 <= 24 * 60
    gen = [c for c in result.calls if c["args"][:1] == ["gen"]]
    assert [c["args"][1] for c in gen] == ["key", "csr", "crt"]
    assert result.index("gen crt") < result.index(" version ")


@pytest.mark.parametrize(
    "stdin",
    [
        "",
        json.dumps({"osCa": {"cert": "not base64!", "key": CA_B64["key"]}}),
        json.dumps({"caCertificate": "FAKE-client-ca", "clientCertificate": "x", "clientKey": "y"}),
    ],
    ids=["empty", "not-base64", "client-configuration-not-base64"],
)
def test_credentials_that_are_not_a_base64_ca_are_refused_before_any_call(
    step: Callable[..., Result], stdin: str
) -> None:
    result = step("upgrade-node", node_env(), cluster_state(), stdin=stdin)
    assert result.code == 1
    assert "the Talos CA on stdin is missing or not base64" in result.stderr
    assert result.calls == []


def test_a_removal_with_the_client_configuration_stored_by_an_earlier_release_still_works(
    step: Callable[..., Result],
) -> None:
    """A node removed in the same `pulumi up` that moves to this release is deleted with the stdin
    its last run stored: the provider's client configuration (base64 PEM)."""
    pem = {
        "caCertificate": CA_PEM,
        "clientCertificate": "-----BEGIN CERTIFICATE-----\nFAKE-provider-client\n-----END CERTIFICATE-----\n",
        "clientKey": "-----BEGIN ED25519 PRIVATE KEY-----\nFAKE-provider-key\n-----END ED25519 PRIVATE KEY-----\n",
    }
    # The provider's certificate, signed by the cluster's CA, as the fake's nodes know it.
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in pem.items()}
    known = {digest["clientCertificate"]: {"ca": digest["caCertificate"], "roles": ["os:admin"], "hours": 8760}}
    stdin = json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in pem.items()})
    result = step("remove-node", worker_env(), cluster_state(minted=known), stdin=stdin)
    assert result.code == 0, result.stderr
    assert not result.ran("gen crt")
    assert result.ran("kubectl delete node worker-1")


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
    assert upgrades == [f"{through(CONTROL_PLANE, CONTROL_PLANE)} upgrade-k8s --to=1.36.4"]
    assert result.index("upgrade-k8s") < result.index(" health ")
    assert result.state["kubernetes"] == "1.36.4"


def test_kubernetes_rerun_for_the_same_target_runs_nothing(step: Callable[..., Result]) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    env["PULUMI_COMMAND_STDOUT"] = json.dumps({"kubernetes": "v1.36.4"})
    result = step("upgrade-kubernetes", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls == []


# ---------------------------------------------------------------------------------------------
# remove-node


@pytest.mark.parametrize(("env", "host"), [(worker_env(), "worker-1"), (node_env(), "cp-2")], ids=["worker", "cp"])
def test_removal_drains_resets_gracefully_then_deletes_the_node(
    step: Callable[..., Result], env: dict[str, str], host: str
) -> None:
    result = step("remove-node", env, cluster_state(etcd_members=3), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    node = env["TALOS_FLEET_NODE"]
    order = [f"kubectl cordon {host}", f"kubectl drain {host}", f"{through(CONTROL_PLANE, node)} reset --graceful=true"]
    order.append(f"kubectl delete node {host}")
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    reset = result.state["nodes"][node]
    assert reset["reset"] == {"graceful": True, "reboot": False}
    # The reset's own drain (best effort) found the node drained already: one effective drain.
    assert reset["reset_found_drained"] is True


def test_a_removal_whose_drain_fails_leaves_the_node_schedulable(step: Callable[..., Result]) -> None:
    result = step("remove-node", worker_env(), cluster_state(fail=["drain"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert not result.ran(" reset ")
    assert result.state["cordoned"] == []


def test_the_last_etcd_member_is_reset_without_leaving_etcd(step: Callable[..., Result]) -> None:
    result = step("remove-node", node_env(), cluster_state(etcd_members=1), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran("reset --graceful=false")


def test_an_unreachable_node_is_not_forgotten_silently(step: Callable[..., Result]) -> None:
    state = cluster_state()
    state["nodes"][NODE]["down"] = True
    result = step("remove-node", node_env(), state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "TALOS_FLEET_FORCE_REMOVE=1 make up STACK=" in result.stderr
    assert not result.ran("kubectl delete")
    forced = step("remove-node", node_env(force_remove="1"), state, stdin=CREDENTIALS)
    assert forced.code == 0, forced.stderr
    assert forced.ran("kubectl delete node cp-2")
    assert not forced.ran(" reset ")


# ---------------------------------------------------------------------------------------------
# Teardown (`make destroy` sets day2.DESTROY_ENV in the operator's environment)


def destroy(env: dict[str, str]) -> dict[str, str]:
    return {**env, day2.DESTROY_ENV: "1"}


def test_teardown_resets_a_reachable_machine_without_draining_or_waiting(step: Callable[..., Result]) -> None:
    state = cluster_state(kubernetes_down=True)
    state["nodes"][CONTROL_PLANE]["down"] = True  # the control planes may be gone already
    result = step("remove-node", destroy(worker_env()), state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert [c for c in result.calls if c["tool"] == "kubectl"] == []
    assert result.ran(f"{through(WORKER, WORKER)} reset --graceful=false --reboot --wait=false")
    # Back to maintenance mode on metal, so the machine can be installed again.
    assert result.state["nodes"][WORKER]["reset"] == {"graceful": False, "reboot": True}
    assert "reset requested" in result.stderr


@pytest.mark.parametrize("broken", ["down", "no-talosctl", "bad-stdin"])
def test_teardown_never_fails_on_what_is_already_gone(step: Callable[..., Result], broken: str) -> None:
    state = cluster_state(kubernetes_down=True)
    state["nodes"][WORKER]["down"] = broken == "down"
    tools = () if broken == "no-talosctl" else ("talosctl", "kubectl")
    stdin = "" if broken == "bad-stdin" else CREDENTIALS
    result = step("remove-node", destroy(worker_env()), state, tools=tools, stdin=stdin)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"removed": "worker-1"}
    assert not result.ran(" reset ")
    assert "worker-1" in result.stderr


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
