"""Graph tests: the real program under Pulumi mocks, for every valid stack file.

What is registered, with which options and dependencies, and the exact wire shape every provider
call receives. Each test builds the program itself (fresh mocks) so no runtime state leaks.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from talos_fleet import certs, naming, patches
from talos_fleet.loader import load_stack_file
from talos_fleet.plan import plan_cluster
from tests import harness
from tests.certificates import Material, b64, certificate, kubeconfig, talosconfig
from tests.harness import (
    FAKE_CLIENT_CONFIGURATION,
    FAKE_CREDENTIAL_STRINGS,
    FAKE_MACHINE_SECRETS,
    Invoke,
    Registration,
    Run,
    engine_config_of,
    engine_urn,
    fake_schematic_id,
    installer_for,
    is_secret,
    plain,
    plaintext_strings,
    run_failing_program,
    run_stack_file,
)

SECRETS = "talos:machine/secrets:Secrets"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
BOOTSTRAP = "talos:machine/bootstrap:Bootstrap"
KUBECONFIG = "talos:cluster/kubeconfig:Kubeconfig"
SCHEMATIC = "talos:imageFactory/schematic:Schematic"
GEN_CONFIG = "talos:machine/getConfiguration:getConfiguration"
CLIENT_CONFIG = "talos:client/getConfiguration:getConfiguration"
HEALTH = "talos:cluster/getHealth:getHealth"
GET_URLS = "talos:imageFactory/getUrls:getUrls"
COMPONENT = "talos-fleet:index:TalosCluster"


@pytest.fixture
def run(valid_stack: Path) -> Run:
    return run_stack_file(valid_stack)


def component_urn(run: Run, cluster: str) -> str:
    (component,) = [r for r in run.of_type(COMPONENT) if r.name == cluster]
    return component.urn


def test_one_protected_secrets_per_cluster(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    secrets = run.of_type(SECRETS)
    assert sorted(s.name for s in secrets) == sorted(f"{c}-secrets" for c in fleet.clusters)
    for s in secrets:
        cluster = s.name.removesuffix("-secrets")
        assert s.protect, "losing Secrets loses the cluster PKI: it must be protected"
        assert "talosVersion" in s.ignore_changes
        assert {"machineSecrets", "clientConfiguration"} <= set(s.additional_secret_outputs)
        assert s.parent == component_urn(run, cluster)


def test_two_config_generations_per_cluster(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    generated = run.calls(GEN_CONFIG)
    assert len(generated) == 2 * len(fleet.clusters)
    for cname, cluster in fleet.clusters.items():
        mine = [c for c in generated if plain(c.args["clusterName"]) == cname]
        assert sorted(plain(c.args["machineType"]) for c in mine) == ["controlplane", "worker"]
        plan = plan_cluster(fleet, cname)
        for call in mine:
            args = plain(call.args)
            assert args["clusterEndpoint"] == cluster.endpoint.url
            assert args["talosVersion"] == plan.contract
            assert args["kubernetesVersion"] == plan.kubernetes_version
            secrets = {n: f"FAKE-decrypted-talos-fleet:secrets.{n}" for n in fleet.secrets}
            assert args["configPatches"] == patches.role_config_patches(fleet, cluster, args["machineType"], secrets)


def test_machine_secrets_reach_the_provider_in_its_own_camel_case(run: Run) -> None:
    """pulumiverse/pulumi-talos#93: what the provider returned must come back unchanged."""
    for call in run.calls(GEN_CONFIG):
        assert plain(call.args["machineSecrets"]) == FAKE_MACHINE_SECRETS
    for token in (CLIENT_CONFIG, HEALTH):
        for call in run.calls(token):
            assert plain(call.args["clientConfiguration"]) == FAKE_CLIENT_CONFIGURATION
    for reg in run.of_type(APPLY) + run.of_type(BOOTSTRAP) + run.of_type(KUBECONFIG):
        assert plain(reg.inputs["clientConfiguration"]) == FAKE_CLIENT_CONFIGURATION


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_keys(v)]]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_no_snake_case_key_in_any_provider_call(run: Run) -> None:
    talos_events: list[Invoke | Registration] = [
        *(i for i in run.invokes if i.token.startswith("talos:")),
        *(r for r in run.registrations if r.type.startswith("talos:")),
    ]
    assert talos_events
    for event in talos_events:
        payload = plain(event.args if isinstance(event, Invoke) else event.inputs)
        snake = [k for k in _keys(payload) if "_" in k]
        assert not snake, f"{event}: snake_case keys {snake}"


def test_one_apply_per_node_with_its_own_plaintext_patch(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    applies = {r.name: r for r in run.of_type(APPLY)}
    assert sorted(applies) == sorted(f"{c}-{h}" for c, h, _ in fleet.all_nodes())
    for cname, host, node in fleet.all_nodes():
        apply = applies[f"{cname}-{host}"]
        cluster = fleet.clusters[cname]
        assert apply.parent == component_urn(run, cname)
        assert plain(apply.inputs["node"]) == node.ip
        assert plain(apply.inputs["endpoint"]) == node.ip
        # The role config is secret; the node's patch is plaintext and readable in a preview.
        assert is_secret(apply.inputs["machineConfigurationInput"])
        assert plain(apply.inputs["machineConfigurationInput"]) == f"FAKE-{node.role}-config"
        # A patch that references a stack secret sends its secret fields as a secret overlay of
        # their own (talos_fleet.patches.split_references); every other patch stays plaintext.
        sent = apply.wire["configPatches"]
        overlays = [i for i, p in enumerate(sent) if is_secret(p)]
        assert not is_secret(sent)
        assert all("FAKE-decrypted" not in p for p in sent if not is_secret(p))
        expected_overlays = sum(1 for p in node.patches if patches.split_references(p)[1] is not None)
        assert len(overlays) == expected_overlays
        arch = fleet.sources[node.source].architecture
        (schematic,) = [s for s in run.of_type(SCHEMATIC) if s.name == f"{cname}-schematic"]
        assert schematic.inputs["schematic"] == plan_cluster(fleet, cname).schematic
        # The fake factory's id is the schematic's content hash.
        installer = installer_for(
            fake_schematic_id(str(schematic.inputs["schematic"])),
            fleet.talos_version(cluster),
            arch,
        )
        secrets = {n: f"FAKE-decrypted-talos-fleet:secrets.{n}" for n in fleet.secrets}
        assert plain(sent) == _with_secrets(patches.node_config_patches(fleet, cname, host, installer), secrets)
        # Removal is the node's lifecycle command (drain first); an apply resetting on destroy
        # would race it.
        assert "onDestroy" not in apply.inputs


def _with_secrets(texts: list[str], secrets: dict[str, str]) -> list[str]:
    out = []
    for text in texts:
        for name, value in secrets.items():
            text = text.replace(f"<secret:{name}>", value)
        out.append(text)
    return out


def test_schematics_moved_out_of_clusters_keep_their_state(valid_stack: Path, run: Run) -> None:
    """Schematics used to be children of their TalosCluster; the move ships with an alias."""
    fleet = load_stack_file(valid_stack)
    (images,) = run.of_type("talos-fleet:index:TalosImages")
    schematics = {s.name: s for s in run.of_type(SCHEMATIC)}
    assert sorted(schematics) == sorted(f"{c}-schematic" for c in fleet.clusters)
    for cname in fleet.clusters:
        schematic = schematics[f"{cname}-schematic"]
        assert schematic.parent == images.urn
        assert schematic.aliases == [f"parent:{engine_urn(component_urn(run, cname))}"]


CREDENTIAL_FIELDS = {"machineSecrets", "clientConfiguration"}
SECRET_VALUES = [*FAKE_CREDENTIAL_STRINGS, "FAKE-decrypted", "FAKE-kubeconfig", "FAKE-talosconfig"]


def _leaks(texts: list[str]) -> list[str]:
    return [secret for text in texts for secret in SECRET_VALUES if secret in text]


def test_no_credential_in_plaintext_resource_inputs_or_exports(run: Run) -> None:
    """Resource inputs land in state and previews: every credential there must be a secret."""
    for reg in run.registrations:
        assert not _leaks(list(plaintext_strings(reg.inputs))), f"{reg.name}: plaintext credential"
    for name in ("endpoints", "nodes", "kubeconfig", "talosconfig"):
        assert not _leaks(list(plaintext_strings(run.export(name)))), f"export {name} leaks a credential"


def test_credentials_reach_invokes_only_in_their_own_fields(run: Run) -> None:
    """Invoke arguments travel without secret markers (Pulumi marks the result secret instead),
    so credentials may appear only where the provider needs them, never e.g. in a patch."""
    for call in run.invokes:
        rest = {k: v for k, v in plain(call.args).items() if k not in CREDENTIAL_FIELDS}
        if call.token == GEN_CONFIG:
            # The role's config generation is where stack secrets (static disk keys) belong: its
            # result is a secret. Talos PKI material must still not be copied into its patches.
            patches_text = rest.pop("configPatches")
            assert not [s for s in _leaks(patches_text) if not s.startswith("FAKE-decrypted")]
        assert not _leaks(list(plaintext_strings(rest))), f"{call.token}: credential outside {CREDENTIAL_FIELDS}"


def test_stack_secrets_go_only_into_secret_config_generation(run: Run) -> None:
    """Stack secrets reach the nodes through the secret role config, or as a node's secret patch
    overlay (talos_fleet.patches.split_references): never in a plaintext patch."""
    decrypted = [c for c in run.calls(GEN_CONFIG) if any("FAKE-decrypted" in p for p in plain(c.args["configPatches"]))]
    for apply in run.of_type(APPLY):
        assert not any("FAKE-decrypted" in p for p in plaintext_strings(apply.inputs["configPatches"]))
        if decrypted:
            assert is_secret(apply.inputs["machineConfigurationInput"])


def test_credentials_are_exported_as_secrets(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    for name in ("kubeconfig", "talosconfig"):
        exported = run.export(name)
        assert sorted(exported) == sorted(fleet.clusters)
        for cname, value in exported.items():
            assert is_secret(value), f"{name} of {cname} is not a secret"
    for cname, value in run.export("kubeconfig").items():
        first = plan_cluster(fleet, cname).bootstrap_node.ip
        assert plain(value) == f"FAKE-kubeconfig-for-{first}"


def test_bootstrap_once_on_first_control_plane_after_its_apply(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    applies = {r.name: r for r in run.of_type(APPLY)}
    bootstraps = run.of_type(BOOTSTRAP)
    assert len(bootstraps) == len(fleet.clusters)
    for cname, cluster in fleet.clusters.items():
        (bootstrap,) = [b for b in bootstraps if b.parent == component_urn(run, cname)]
        first_host, first = cluster.nodes_of("controlplane")[0]
        assert plain(bootstrap.inputs["node"]) == first.ip
        assert plain(bootstrap.inputs["endpoint"]) == first.ip
        assert plain(bootstrap.inputs["node"]) != cluster.endpoint.vip
        first_apply = applies[f"{cname}-{first_host}"]
        assert first_apply.urn in bootstrap.property_dependencies["node"], "bootstrap must wait for the apply"
        assert run.index(first_apply) < run.index(bootstrap)
        assert set(bootstrap.ignore_changes) == {"node", "endpoint"}
        (kubeconfig,) = [k for k in run.of_type(KUBECONFIG) if k.parent == bootstrap.parent]
        assert bootstrap.urn in kubeconfig.property_dependencies["node"]


def test_health_check_runs_only_after_bootstrap_and_every_apply(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    checks = run.calls(HEALTH)
    assert len(checks) == len(fleet.clusters)
    for cname, cluster in fleet.clusters.items():
        ips = {n.ip for n in cluster.nodes.values()}
        (check,) = [c for c in checks if set(plain(c.args["controlPlaneNodes"])) <= ips]
        assert plain(check.args["controlPlaneNodes"]) == [n.ip for _, n in cluster.nodes_of("controlplane")]
        assert plain(check.args["workerNodes"]) == [n.ip for _, n in cluster.nodes_of("worker")]
        component = component_urn(run, cname)
        gates = [r for r in run.registrations if r.parent == component and r.type in (BOOTSTRAP, APPLY)]
        assert gates
        assert all(run.index(g) < run.index(check) for g in gates)


def test_talosconfig_targets_control_plane_addresses_never_the_vip(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    for call in run.calls(CLIENT_CONFIG):
        cluster = fleet.clusters[plain(call.args["clusterName"])]
        cps = [n.ip for _, n in cluster.nodes_of("controlplane")]
        assert plain(call.args["endpoints"]) == cps
        assert plain(call.args["nodes"]) == cps
        assert cluster.endpoint.vip not in plain(call.args["endpoints"])


def test_everything_uses_the_explicit_talos_provider(run: Run) -> None:
    (provider,) = run.of_type("pulumi:providers:talos")
    reference = f"{provider.urn}::{provider.name}-id"
    talos_events: list[Invoke | Registration] = [
        *(e for e in run.invokes if e.token.startswith("talos:")),
        *(r for r in run.registrations if r.type.startswith("talos:")),
    ]
    for event in talos_events:
        assert event.provider == reference, f"{event} does not use the explicit provider"


def test_children_are_parented_to_their_component(run: Run) -> None:
    components = {r.urn for r in run.registrations if r.type.startswith("talos-fleet:index:")}
    for reg in run.registrations:
        if reg.type.startswith(
            ("talos:", "libvirt:", "matchbox:", "pulumi:providers:libvirt", "pulumi:providers:matchbox")
        ):
            assert reg.parent in components, f"{reg.name} ({reg.type}) is not a component's child"


def test_installer_is_fetched_once_per_architecture_per_cluster(valid_stack: Path, run: Run) -> None:
    fleet = load_stack_file(valid_stack)
    expected = sum(len(plan_cluster(fleet, c).architectures) for c in fleet.clusters)
    urls = run.calls(GET_URLS)
    assert len(urls) == expected
    assert all(plain(u.args["platform"]) == "metal" for u in urls)


def test_config_generations_do_not_grow_with_nodes(tmp_path: Path) -> None:
    """Twenty more workers: still exactly two config generations for the cluster."""
    base = Path(__file__).parent / "fixtures" / "good" / "vip-metal.yaml"
    document = yaml.safe_load(base.read_text())
    nodes = document["config"]["talos-fleet:clusters"]["rack"]["nodes"]
    for i in range(20):
        nodes[f"extra-{i}"] = {"role": "worker", "source": "metal", "address": f"192.168.50.{100 + i}"}
    grown = tmp_path / "Pulumi.grown.yaml"
    grown.write_text(yaml.safe_dump(document))
    run = run_stack_file(grown)
    assert len(run.calls(GEN_CONFIG)) == 2
    assert len(run.of_type(APPLY)) == 25


def test_adding_a_node_changes_no_other_resource(tmp_path: Path, valid_stack: Path) -> None:
    before = run_stack_file(valid_stack)
    document = yaml.safe_load(valid_stack.read_text())
    cname, cluster = next(iter(document["config"]["talos-fleet:clusters"].items()))
    network = cluster["network"]["cidr"].rsplit(".", 1)[0]
    used = {
        n["address"].split("/")[0]
        for c in document["config"]["talos-fleet:clusters"].values()
        for n in c["nodes"].values()
    }
    address = next(f"{network}.{i}" for i in range(200, 250) if f"{network}.{i}" not in used)
    source, spec = next(iter(document["config"]["talos-fleet:sources"].items()))
    cluster["nodes"]["added-worker"] = {"role": "worker", "source": source, "address": address}
    if spec["kind"] == "metal":  # its own MAC; VMs derive theirs
        cluster["nodes"]["added-worker"]["mac"] = "0c:c4:7a:99:99:99"
    changed = tmp_path / valid_stack.name
    changed.write_text(yaml.safe_dump(document, sort_keys=False))
    after = run_stack_file(changed)

    old, new = before.by_urn(), after.by_urn()
    assert set(old) < set(new)
    added = [r.name for urn, r in new.items() if urn not in old]
    # The node's own resources only: its apply and, on a hypervisor, its VM and disks.
    assert f"{cname}-added-worker" in added
    assert all(name.startswith(f"{cname}-added-worker") for name in added), added
    rollouts = {naming.upgrade_rollout(cname), naming.config_rollout(cname)}
    for urn, reg in old.items():
        if reg.name in rollouts:
            _only_gains_the_node(reg, new[urn], "added-worker")
            continue
        assert new[urn].inputs == reg.inputs, f"{reg.name} changed when a node was added"
    # Config generations are shared by role: unchanged too.
    # (Invokes of different clusters interleave in any order: compare them as sets.)
    assert _sorted_args(before.calls(GEN_CONFIG)) == _sorted_args(after.calls(GEN_CONFIG))


def _only_gains_the_node(before: Registration, after: Registration, host: str) -> None:
    """The cluster's rollouts gain the node's own variable (and, the config rollout, its patches)
    and nothing else changes in them: they only record the new node (tests/test_rollouts.py)."""
    env_old, env_new = plain(before.inputs["environment"]), plain(after.inputs["environment"])
    assert {k for k in env_new if k not in env_old} == {
        k for k in env_new if k.endswith(f"_{host}") and k.startswith(("TALOS_FLEET_TARGET_", "TALOS_FLEET_CONFIG_"))
    }, before.name
    assert len(env_new) == len(env_old) + 1, before.name
    assert {k: env_new[k] for k in env_old} == env_old, before.name
    stdin_old, stdin_new = plain(before.inputs["stdin"]), plain(after.inputs["stdin"])
    if stdin_old.startswith("{") and "patches" in json.loads(stdin_old):
        old_patches, new_patches = json.loads(stdin_old)["patches"], json.loads(stdin_new)["patches"]
        assert set(new_patches) - set(old_patches) == {host}
        assert {h: new_patches[h] for h in old_patches} == old_patches
    else:
        assert stdin_old == stdin_new, before.name


def _sorted_args(calls: list[Invoke]) -> list[str]:
    return sorted(json.dumps(c.args, sort_keys=True) for c in calls)


def test_invalid_config_stops_before_any_resource() -> None:
    config, secret_keys = engine_config_of(Path(__file__).parent.parent / "stacks" / "Pulumi.edge.yaml")
    clusters = json.loads(config["talos-fleet:clusters"])
    broken = copy.deepcopy(clusters)
    broken["edge-store-042"]["nodes"]["edge-042-a"]["adress"] = "10.20.42.11"
    config = {**config, "talos-fleet:clusters": json.dumps(broken)}
    run, error = run_failing_program(config, secret_keys)
    assert isinstance(error, pulumi.RunError)
    message = str(error)
    assert "talos-fleet:clusters.edge-store-042.nodes.edge-042-a.adress" in message
    assert "unknown key 'adress'" in message
    assert "Traceback" not in message
    # Nothing half-applied: not even the provider was registered.
    assert [r.type for r in run.registrations if r.type != "pulumi:pulumi:Stack"] == []


def test_runtime_secret_values_must_come_from_secret_config() -> None:
    config, _ = engine_config_of(Path(__file__).parent / "fixtures" / "good" / "vip-metal.yaml")
    # The engine says nothing is secret: the value was written in plaintext into the stack file.
    _, error = run_failing_program(config, secret_keys=[])
    assert isinstance(error, pulumi.RunError)
    assert "talos-fleet:secrets.rack-luks" in str(error)
    assert "make secret STACK=test NAME=" in str(error), "the fix names the stack the engine runs"


# ---------------------------------------------------------------------------------------------
# certificateExpiry: each cluster's certificate dates, exported in plain, from real certificates


CERTIFICATE_EPOCH = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class ClusterCertificates:
    """One cluster's four certificates, each with a NotAfter of its own."""

    talos_ca: Material
    client: Material
    kubernetes_ca: Material
    kube_client: Material
    not_after: dict[str, datetime]


def _cluster_certificates(index: int) -> ClusterCertificates:
    # Distinct per certificate and per cluster, so a date read from the wrong field or the wrong
    # cluster cannot match.
    not_after = {
        certs.TALOSCONFIG_CLIENT: CERTIFICATE_EPOCH + timedelta(days=index, hours=1),
        certs.TALOS_CA: CERTIFICATE_EPOCH + timedelta(days=3000 + index, hours=2),
        certs.KUBECONFIG_CLIENT: CERTIFICATE_EPOCH + timedelta(days=index, hours=3),
        certs.KUBERNETES_CA: CERTIFICATE_EPOCH + timedelta(days=3000 + index, hours=4),
    }
    return ClusterCertificates(
        talos_ca=certificate(not_after[certs.TALOS_CA], "talos", ca=True),
        client=certificate(not_after[certs.TALOSCONFIG_CLIENT], "os:admin"),
        kubernetes_ca=certificate(not_after[certs.KUBERNETES_CA], "kubernetes", ca=True),
        kube_client=certificate(not_after[certs.KUBECONFIG_CLIENT], "admin"),
        not_after=not_after,
    )


@pytest.fixture
def real_certificates(valid_stack: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, ClusterCertificates]:
    """Mocks whose Talos credentials carry real certificates, as the provider's would.

    A subclass of the harness' FakeTalos, swapped in for this test only (harness.run_program builds
    `FakeTalos()` when it runs):
    - talos_machine_secrets' client_configuration: the OS CA, an os:admin client certificate and
      its key, each base64 of PEM (siderolabs/terraform-provider-talos v0.11.0:pkg/talos/util.go,
      generateClientConfigurationWithTTL);
    - talos_client_configuration: a talosconfig from those three fields as given, one context named
      after the cluster (v0.11.0:pkg/talos/talos_client_configuration_data_source.go Read, through
      util.go talosClientTFConfigToTalosClientConfig and siderolabs/talos v1.13.9:
      pkg/machinery/client/config/config.go NewConfig);
    - talos_cluster_kubeconfig's kubeconfig_raw: what Talos hands out (tests/certificates.py).
    """
    fleet = load_stack_file(valid_stack)
    made = {cname: _cluster_certificates(i) for i, cname in enumerate(sorted(fleet.clusters))}
    by_secrets = {naming.secrets(c): m for c, m in made.items()}
    by_kubeconfig = {naming.kubeconfig(c): (c, m) for c, m in made.items()}

    class CertifiedTalos(harness.FakeTalos):
        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            resource_id, outputs = super().new_resource(args)
            if args.typ == SECRETS:
                material = by_secrets[args.name]
                outputs["clientConfiguration"] = {
                    "caCertificate": b64(material.talos_ca.certificate),
                    "clientCertificate": b64(material.client.certificate),
                    "clientKey": b64(material.client.key),
                }
            elif args.typ == KUBECONFIG:
                cname, material = by_kubeconfig[args.name]
                server = plan_cluster(fleet, cname).endpoint
                outputs["kubeconfigRaw"] = kubeconfig(cname, server, material.kubernetes_ca, material.kube_client)
            return resource_id, outputs

        def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            if args.token == CLIENT_CONFIG:
                a = plain(args.args)
                given = a["clientConfiguration"]
                text = talosconfig(
                    a["clusterName"],
                    given["caCertificate"],
                    given["clientCertificate"],
                    given["clientKey"],
                    a["endpoints"],
                )
                return {"talosConfig": text}, []
            return super().call(args)

    monkeypatch.setattr(harness, "FakeTalos", CertifiedTalos)
    return made


def test_certificate_expiry_is_exported_in_plain_from_the_real_credentials(
    valid_stack: Path, real_certificates: dict[str, ClusterCertificates]
) -> None:
    run = run_stack_file(valid_stack)
    exported = run.export("certificateExpiry")
    assert sorted(exported) == sorted(real_certificates)
    for cname, dates in exported.items():
        assert not is_secret(dates), f"certificateExpiry of {cname} is secret"
        expected = real_certificates[cname].not_after
        assert sorted(dates) == sorted(expected)
        for name, value in dates.items():
            assert not is_secret(value), f"{cname} {name} is secret"
            assert datetime.fromisoformat(value) == expected[name], f"{cname} {name}"
    # The credentials they come from stay secret, and are the ones carrying those certificates.
    for output in ("talosconfig", "kubeconfig"):
        for cname, value in run.export(output).items():
            assert is_secret(value), f"{output} of {cname} is no longer secret"
    for cname, material in real_certificates.items():
        assert b64(material.client.certificate) in plain(run.export("talosconfig")[cname])
        assert b64(material.kube_client.certificate) in plain(run.export("kubeconfig")[cname])
    # No key, and no certificate either, in any plaintext export.
    plaintext = [s for name in run.exports for s in plaintext_strings(run.export(name))]
    for material in real_certificates.values():
        for part in (material.client, material.kube_client, material.talos_ca, material.kubernetes_ca):
            for secret in (part.key, b64(part.key), b64(part.certificate)):
                assert not [s for s in plaintext if secret in s]


def test_certificate_expiry_of_unreadable_credentials_is_one_plain_message(valid_stack: Path, run: Run) -> None:
    """The harness' credentials are not certificates: the export says so and the program still runs."""
    fleet = load_stack_file(valid_stack)
    exported = run.export("certificateExpiry")
    assert sorted(exported) == sorted(fleet.clusters)
    for cname, value in exported.items():
        assert not is_secret(value)
        assert list(value) == ["error"], cname
        assert value["error"].startswith("talosconfig: ")
        assert not _leaks([value["error"]])
