"""Day-2 graph under mocks, for every valid stack and mutated copies of it: the version gate, one
lifecycle command per node, the upgrade and config rollouts, the Kubernetes upgrade, and what
each change updates. The environment and stdin the graph gives the rollouts are fed to the day-2
steps themselves, so the contract between the two is tested end to end; the walk inside the
rollouts is tests/test_rollouts.py, the graph's edges tests/test_rollout_graph.py.

Expected orders are computed here from the stack file (control planes in hostname order, then
workers in batches), never read from the plan under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from talos_fleet import day2
from talos_fleet.loader import load_stack_file
from tests import harness
from tests.conftest import ROOT, VALID_STACKS, stack_id
from tests.harness import (
    FAKE_CLIENT_CONFIGURATION,
    FAKE_CREDENTIAL_STRINGS,
    FAKE_MACHINE_SECRETS,
    Registration,
    Run,
    add_extension,
    bump_talos,
    diffed_inputs,
    engine_config_of,
    is_secret,
    mutated_stack,
    plain,
    plaintext_strings,
    run_failing_program,
    run_stack_file,
)

COMMAND = "command:local:Command"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
GEN_CONFIG = "talos:machine/getConfiguration:getConfiguration"
KEEP = ("libvirt:index/domain:Domain", "libvirt:index/volume:Volume", "libvirt:index/network:Network")
SECRETS = "talos:machine/secrets:Secrets"


def commands(run: Run) -> dict[str, Registration]:
    """The day-2 commands (other components run commands of their own)."""
    texts = {day2.command(s) for s in day2.STEPS}
    return {r.name: r for r in run.of_type(COMMAND) if r.inputs.get("create") in texts}


def expected_waves(stack: Path, cname: str, without: str = "") -> list[list[str]]:
    """Control planes one by one, then workers in batches of the batch size, in hostname order:
    the engine hands structured config to the program as JSON with its map keys sorted (Go's
    encoding/json), so file order cannot survive `pulumi up` (see talos_fleet/loader.py)."""
    document = yaml.safe_load(stack.read_text())["config"]
    cluster = document["talos-fleet:clusters"][cname]
    policy = cluster.get("upgrade") or document["talos-fleet:defaults"].get("upgrade") or {}
    size = policy.get("workerBatchSize", 1)
    nodes = {h: n for h, n in sorted(cluster["nodes"].items()) if h != without}
    cps = [[h] for h, n in nodes.items() if n["role"] == "controlplane"]
    workers = [h for h, n in nodes.items() if n["role"] == "worker"]
    return cps + [workers[i : i + size] for i in range(0, len(workers), size)]


def test_per_cluster_a_gate_two_rollouts_a_kubernetes_upgrade_and_a_lifecycle_per_node(valid_stack: Path) -> None:
    run, fleet = run_stack_file(valid_stack), load_stack_file(valid_stack)
    expected = set()
    for cname, cluster in fleet.clusters.items():
        expected |= {f"{cname}-version-gate", f"{cname}-kubernetes-upgrade"}
        expected |= {f"{cname}-upgrade-rollout", f"{cname}-config-rollout"}
        expected |= {f"{cname}-{h}-lifecycle" for h in cluster.nodes}
    found = commands(run)
    assert set(found) == expected
    texts = {day2.command(s) for s in day2.STEPS}
    for name, reg in found.items():
        # A constant text: what runs is chosen by the step name, the values come from elsewhere.
        for verb in ("create", "update", "delete"):
            assert reg.inputs.get(verb) in (texts | {None}), (name, verb)
        assert {"stdout", "stderr"} <= set(reg.additional_secret_outputs), name
    for cname, cluster in fleet.clusters.items():
        for host in cluster.nodes:
            life = found[f"{cname}-{host}-lifecycle"]
            # Creation and update only record (pulumi-command runs `create` again when there is
            # no `update`: pulumi/pulumi-command v1.2.1 provider/pkg/provider/local/
            # commandController.go Update); delete removes the node from the cluster.
            assert life.inputs["create"] == day2.command("record-node")
            assert life.inputs.get("update") in (None, day2.command("record-node"))
            assert life.inputs["delete"] == day2.command("remove-node")
        for rollout, create, update in (
            ("upgrade-rollout", "record-upgrades", "upgrade-rollout"),
            ("kubernetes-upgrade", "record-kubernetes", "upgrade-kubernetes"),
            ("config-rollout", "record-config", "roll-config"),
        ):
            reg = found[f"{cname}-{rollout}"]
            assert (reg.inputs["create"], reg.inputs["update"]) == (day2.command(create), day2.command(update))
            assert reg.inputs.get("delete") is None


def _step_output(name: str, reg: Registration, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """What the day-2 step `name` prints for the command's registered environment and stdin."""
    stdin = reg.inputs.get("stdin")
    code = day2.main([name], plain(reg.inputs["environment"]), plain(stdin) if stdin is not None else "")
    out = capsys.readouterr()
    assert code == 0, out.err
    record: dict[str, Any] = json.loads(out.out.splitlines()[-1])
    return record


def test_the_rollouts_read_exactly_what_the_graph_gives_them(
    valid_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both creations run on the registered environment and stdin and record every node; the
    config rollout's schedule over them is the cluster's waves (canary first)."""
    run, fleet = run_stack_file(valid_stack), load_stack_file(valid_stack)
    found = commands(run)
    for cname, cluster in fleet.clusters.items():
        upgrades = _step_output("record-upgrades", found[f"{cname}-upgrade-rollout"], capsys)
        assert day2.unpack(upgrades["nodes"]) == sorted(cluster.nodes)
        assert upgrades["talos"] == fleet.talos_version(cluster)
        config = _step_output("record-config", found[f"{cname}-config-rollout"], capsys)
        table = day2.config_table(day2.unpack(config["config"]))
        assert table is not None
        assert sorted(table) == sorted(cluster.nodes)
        env = plain(found[f"{cname}-config-rollout"].inputs["environment"])
        roles = {
            k.removeprefix("TALOS_FLEET_CONFIG_"): json.loads(v)["role"] for k, v in env.items() if "_CONFIG_" in k
        }
        waves = expected_waves(valid_stack, cname)
        schedule = day2.config_schedule(roles.items(), set(roles), int(env["TALOS_FLEET_WORKER_BATCH_SIZE"]))
        first = waves[0][0]
        assert [list(w) for w in schedule] == [[first], *expected_waves(valid_stack, cname, without=first)]


def test_credentials_reach_commands_only_on_secret_stdin(valid_stack: Path) -> None:
    run = run_stack_file(valid_stack)
    for name, reg in commands(run).items():
        leaked = [s for s in plaintext_strings(reg.inputs) if any(f in s for f in FAKE_CREDENTIAL_STRINGS)]
        assert leaked == [], name
        if name.endswith("-version-gate"):
            assert "stdin" not in reg.inputs  # the gate needs no credentials
            continue
        assert is_secret(reg.inputs["stdin"]), name
        stdin = json.loads(plain(reg.inputs["stdin"]))
        # Only the OS CA, in the provider's camelCase machine-secrets shape: a renewed client
        # certificate can never reach a step. The config rollout also gets the role configs and
        # the node patches, what each apply sends.
        assert stdin.pop("osCa") == FAKE_MACHINE_SECRETS["certs"]["os"], name
        assert set(stdin) == ({"roleConfigs", "patches"} if name.endswith("-config-rollout") else set()), name


def test_a_renewed_client_certificate_changes_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider regenerates the client certificate and key in their last month
    (siderolabs/terraform-provider-talos v0.11.0: pkg/talos/talos_machine_secrets_resource.go
    ModifyPlan/Read); every changed input would be an update re-running every node's step."""
    stack = ROOT / "stacks" / "Pulumi.homelab.yaml"
    before = run_stack_file(stack)
    renewed = {**FAKE_CLIENT_CONFIGURATION, "clientCertificate": "RENEWED-cert", "clientKey": "RENEWED-key"}
    monkeypatch.setattr(harness, "FAKE_CLIENT_CONFIGURATION", renewed)
    after = run_stack_file(stack)
    # The renewal did reach the program (the applies use it) ...
    applies = [plain(r.inputs["clientConfiguration"]) for r in after.of_type(APPLY)]
    assert applies
    assert all(a == renewed for a in applies)
    # ... and no command.
    old, new = commands(before), commands(after)
    assert set(old) == set(new)
    for name in old:
        assert diffed_inputs(old[name]) == diffed_inputs(new[name]), name


def test_commands_run_in_the_project_root_wherever_the_checkout_lives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulumi starts the program and its providers in the project directory; `dir` points from
    there to the directory `python3 -m talos_fleet.day2` imports from, as a relative path, so a
    moved checkout changes no input (any input change would re-run the step)."""
    stack = ROOT / "stacks" / "Pulumi.homelab.yaml"
    for cwd in (ROOT, ROOT / "stacks"):
        monkeypatch.chdir(cwd)
        for name, reg in commands(run_stack_file(stack)).items():
            directory = reg.inputs.get("dir")
            assert isinstance(directory, str), name
            assert not Path(directory).is_absolute(), (name, directory)
            assert (cwd / directory).resolve() == ROOT, (name, directory)
            assert (cwd / directory / "talos_fleet" / "day2.py").is_file()


def test_the_rollouts_carry_the_worker_batch_size(tmp_path: Path) -> None:
    stack = Path(__file__).parent.parent / "stacks" / "Pulumi.homelab.yaml"

    def wide(document: dict[str, Any]) -> None:
        document["config"]["talos-fleet:defaults"]["upgrade"] = {"workerBatchSize": 2}

    found = commands(run_stack_file(mutated_stack(stack, tmp_path, wide)))
    for name in ("homelab-upgrade-rollout", "homelab-config-rollout"):
        assert plain(found[name].inputs["environment"])["TALOS_FLEET_WORKER_BATCH_SIZE"] == "2", name


def test_node_steps_read_the_machine_address_so_removal_precedes_machine_deletion(valid_stack: Path) -> None:
    """Pulumi deletes dependents first: a lifecycle reading the VM's (or PXE entry's) output is
    deleted, which drains and resets the node, before the machine it depends on."""
    run, fleet = run_stack_file(valid_stack), load_stack_file(valid_stack)
    found, by_urn = commands(run), run.by_urn()
    for cname, host, _ in fleet.all_nodes():
        life = found[f"{cname}-{host}-lifecycle"]
        machines = [
            by_urn[u].name
            for u in life.property_dependencies.get("environment", [])
            if by_urn[u].type.startswith(("libvirt:", "matchbox:"))
        ]
        served = any(
            r.name.startswith(f"{cname}-{host}")
            for r in run.registrations
            if r.type.startswith(("libvirt:index/domain", "matchbox:index/group"))
        )
        assert bool(machines) == served, (host, machines)


def test_config_generation_waits_for_the_kubernetes_upgrade(valid_stack: Path) -> None:
    """No apply can carry a Kubernetes version before upgrade-k8s ran: the role configs are
    generated with the upgrade step's output, and every apply takes its config from them."""
    run, fleet = run_stack_file(valid_stack), load_stack_file(valid_stack)
    found = commands(run)
    for cname in fleet.clusters:
        k8s = found[f"{cname}-kubernetes-upgrade"]
        generated = [c for c in run.calls(GEN_CONFIG) if plain(c.args["clusterName"]) == cname]
        assert len(generated) == 2
        for call in generated:
            assert run.index(call) > run.index(k8s)
            assert plain(call.args["kubernetesVersion"]) == fleet.kubernetes_version(fleet.clusters[cname])
        for apply in run.of_type(APPLY):
            if apply.name.startswith(f"{cname}-"):
                assert k8s.urn in apply.property_dependencies["machineConfigurationInput"], apply.name


# ---------------------------------------------------------------------------------------------
# Mutated copies


def _bump_kubernetes(document: dict[str, Any]) -> None:
    document["config"]["talos-fleet:defaults"]["kubernetesVersion"] = "v1.36.4"


def _boot_media(reg: Registration) -> bool:
    """A boot ISO or PXE profile: a new Talos version or schematic adds one, for machines that boot
    it later (#3); nodes already installed never boot it again."""
    return (reg.type == "libvirt:index/volume:Volume" and "-boot-" in reg.name) or (
        reg.type == "matchbox:index/profile:Profile"
    )


def _diff(before: Run, after: Run) -> dict[str, tuple[Registration, Registration]]:
    old = {u: r for u, r in before.by_urn().items() if not _boot_media(r)}
    new = {u: r for u, r in after.by_urn().items() if not _boot_media(r)}
    assert set(old) == set(new), "a version change must add or remove no resource but boot media"
    return {r.name: (r, new[u]) for u, r in old.items() if diffed_inputs(r) != diffed_inputs(new[u])}


@pytest.mark.parametrize("change", [bump_talos, add_extension], ids=["talos-version", "extension"])
def test_a_talos_or_image_change_updates_the_rollouts_only_and_replaces_nothing(
    valid_stack: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    """The upgrade rollout's target moves (version, installer per architecture) and nothing else
    of it; the config rollout sees each node's new install image (its node patch); no lifecycle
    and no Kubernetes upgrade runs."""
    fleet = load_stack_file(valid_stack)
    before, after = run_stack_file(valid_stack), run_stack_file(mutated_stack(valid_stack, tmp_path, change))
    changed = _diff(before, after)
    for cname in fleet.clusters:
        old, new = changed[f"{cname}-upgrade-rollout"]
        env_old, env_new = plain(old.inputs["environment"]), plain(new.inputs["environment"])
        moved = {k for k in env_old.keys() | env_new.keys() if env_old.get(k) != env_new.get(k)}
        assert moved
        assert all(k == "TALOS_FLEET_TALOS_VERSION" or k.startswith("TALOS_FLEET_INSTALLER_") for k in moved), moved
        assert {k: v for k, v in old.inputs.items() if k != "environment"} == {
            k: v for k, v in new.inputs.items() if k != "environment"
        }
        assert f"{cname}-config-rollout" in changed
    for name, (old, _) in changed.items():
        assert old.type not in (*KEEP, SECRETS), f"{name} would change"
        assert not name.endswith(("-kubernetes-upgrade", "-lifecycle")), f"a Talos change runs no {name}"


def test_a_kubernetes_change_runs_the_kubernetes_step_and_no_node_step(valid_stack: Path, tmp_path: Path) -> None:
    fleet = load_stack_file(valid_stack)
    before = run_stack_file(valid_stack)
    after = run_stack_file(mutated_stack(valid_stack, tmp_path, _bump_kubernetes))
    changed = _diff(before, after)
    for cname in fleet.clusters:
        assert f"{cname}-kubernetes-upgrade" in changed
        assert f"{cname}-version-gate" in changed
        assert f"{cname}-upgrade-rollout" not in changed
    assert not [n for n in changed if n.endswith("-lifecycle")]
    assert not [n for n, (r, _) in changed.items() if r.type in (*KEEP, SECRETS)]


def _a_worker(stack: Path) -> tuple[str, str] | None:
    clusters = yaml.safe_load(stack.read_text())["config"]["talos-fleet:clusters"]
    workers = [(c, h) for c, cl in clusters.items() for h, n in cl["nodes"].items() if n["role"] == "worker"]
    return workers[-1] if workers else None


@pytest.mark.parametrize("stack", [s for s in VALID_STACKS if _a_worker(s)], ids=stack_id)
def test_removing_a_node_removes_only_its_own_resources(stack: Path, tmp_path: Path) -> None:
    removed = _a_worker(stack)
    assert removed is not None
    cname, host = removed

    def remove(document: dict[str, Any]) -> None:
        del document["config"]["talos-fleet:clusters"][cname]["nodes"][host]

    before, after = run_stack_file(stack), run_stack_file(mutated_stack(stack, tmp_path, remove))
    old, new = ({u: r for u, r in run.by_urn().items() if r.type != "pulumi:pulumi:Stack"} for run in (before, after))
    gone = sorted(old[u].name for u in set(old) - set(new))
    # Its lifecycle command goes (its delete drains and resets the node), with its own resources.
    assert f"{cname}-{host}-lifecycle" in gone
    assert all(n.startswith(f"{cname}-{host}") for n in gone), gone
    rollouts = {f"{cname}-upgrade-rollout", f"{cname}-config-rollout"}
    for urn in set(old) & set(new):
        if old[urn].name in rollouts:
            # They lose the node's variable (and the installer of an architecture no node is
            # left on), nothing else.
            env_old, env_new = (plain(r.inputs["environment"]) for r in (old[urn], new[urn]))
            moved = {k for k in env_old if env_old[k] != env_new.get(k)}
            assert f"TALOS_FLEET_{'TARGET' if 'upgrade' in old[urn].name else 'CONFIG'}_{host}" in moved
            assert all(k.endswith(f"_{host}") or k.startswith("TALOS_FLEET_INSTALLER_") for k in moved), moved
            assert set(env_new) <= set(env_old)
            continue
        assert diffed_inputs(old[urn]) == diffed_inputs(new[urn]), old[urn].name


def test_removing_a_control_plane_down_to_an_even_count_is_refused() -> None:
    config, secret_keys = engine_config_of(Path(__file__).parent.parent / "stacks" / "Pulumi.homelab.yaml")
    clusters = json.loads(config["talos-fleet:clusters"])
    del clusters["homelab"]["nodes"]["cp-3"]
    run, error = run_failing_program({**config, "talos-fleet:clusters": json.dumps(clusters)}, secret_keys)
    assert isinstance(error, pulumi.RunError)
    assert "talos-fleet:clusters.homelab.nodes" in str(error)
    assert "use 1 or 3" in str(error)
    assert [r.type for r in run.registrations if r.type != "pulumi:pulumi:Stack"] == []
