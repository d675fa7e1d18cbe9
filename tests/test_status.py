"""`make status` / `python -m talos_fleet status` end to end, against the fake talosctl and kubectl
(tests/fakes/tool.py) and, through make, the fake pulumi.

Each test builds a running fleet for a stack file: per node, the configuration Talos would run
after `pulumi up` (a small generated-looking base with the stack's documents merged onto it, by
this file's own merge), the stack's Talos version and schematic, a Kubernetes Node; per cluster,
real certificates in a talosconfig and kubeconfig (tests/certificates.py), the talosconfig's
client certificate signed by that cluster's OS CA as the fake checks it. Then it changes one
thing out of band and reads the report in every format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_fleet import certs, commands
from talos_fleet.loader import load_stack_file
from talos_fleet.snapshot import NodeView, snapshot
from tests import certificates
from tests.conftest import STACK_FILES, VALID_STACKS, stack_id
from tests.harness import ROOT, engine_urn, run_stack_file
from tests.test_day2 import fake_bin
from tests.test_make import Clone, make_clone

HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"
EDGE = ROOT / "stacks" / "Pulumi.edge.yaml"
VIP_METAL = ROOT / "tests" / "fixtures" / "good" / "vip-metal.yaml"
DAY = timedelta(days=1)

# What each secret of a stack is on the machines: never in any output.
SECRET_VALUES = {
    "rack-luks": "FAKE-luks-passphrase-correct-horse",
    # tests/fixtures/good/secret-references.yaml: credentials referenced from patches.
    "registry-pw": "FAKE-registry-password-battery-staple",
    "mirror-token": "FAKE-mirror-token-tr0ub4dor",
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# A running fleet


def generated_base(cluster: str, endpoint: str, node: NodeView, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """An abridged configuration as Talos 1.13 config generation makes it (siderolabs/talos
    v1.13.9: pkg/machinery/config/generate/init.go, controlplane.go, worker.go, network.go):
    a v1alpha1 document holding the cluster's secrets, then HostnameConfig{auto: stable}."""
    control_plane = node.role == "controlplane"
    machine: dict[str, Any] = {
        "type": node.role,
        "token": secrets["machine token"],
        "ca": {"crt": b64("-----BEGIN CERTIFICATE-----\nos\n-----END CERTIFICATE-----\n"), "key": secrets["os ca key"]},
        "certSANs": [],
        "kubelet": {"image": f"ghcr.io/siderolabs/kubelet:{node.kubernetes_version}", "extraArgs": {}},
        "network": {},
        "install": {"disk": "/dev/sda", "image": f"ghcr.io/siderolabs/installer:{node.talos_version}", "wipe": False},
        "features": {"rbac": True, "kubePrism": {"enabled": True, "port": 7445}},
    }
    if control_plane:
        machine["nodeLabels"] = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}
    cluster_doc: dict[str, Any] = {
        "id": secrets["cluster id"],
        "secret": secrets["cluster secret"],
        "controlPlane": {"endpoint": endpoint},
        "clusterName": cluster,
        "network": {"dnsDomain": "cluster.local", "podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]},
        "token": secrets["bootstrap token"],
        "ca": {"crt": b64("-----BEGIN CERTIFICATE-----\nk8s\n-----END CERTIFICATE-----\n")},
    }
    if control_plane:
        cluster_doc["secretboxEncryptionSecret"] = secrets["secretbox"]
        cluster_doc["ca"]["key"] = secrets["k8s ca key"]
        cluster_doc["serviceAccount"] = {"key": secrets["service account key"]}
        cluster_doc["apiServer"] = {"certSANs": [endpoint.split("//")[1].split(":")[0]]}
        cluster_doc["etcd"] = {"ca": {"crt": b64("etcd ca"), "key": secrets["etcd ca key"]}}
    v1alpha1 = {"version": "v1alpha1", "debug": False, "persist": True, "machine": machine, "cluster": cluster_doc}
    return [v1alpha1, {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}]


def merged(left: Any, right: Any) -> Any:
    """A patch onto a document the way Talos merges (maps deep, lists appended, values replaced)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return {**left, **{k: merged(left[k], v) if k in left else v for k, v in right.items()}}
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    return right


def with_secrets(tree: Any) -> Any:
    """The stack's `<secret:name>` references replaced by the values the machines hold."""
    if isinstance(tree, dict):
        return {k: with_secrets(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [with_secrets(v) for v in tree]
    if isinstance(tree, str) and tree.startswith("<secret:"):
        return SECRET_VALUES[tree.removeprefix("<secret:").removesuffix(">")]
    return tree


def running_config(cluster: str, endpoint: str, node: NodeView, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """What the node runs after `pulumi up`: the stack's documents applied in order onto the base."""
    docs = generated_base(cluster, endpoint, node, secrets)
    for document in node.documents:
        if document.layer == "generated":
            continue
        patch = with_secrets(yaml.safe_load(document.yaml))
        if "kind" not in patch:
            docs[0] = merged(docs[0], patch)
            continue
        ident = (patch.get("apiVersion"), patch["kind"], patch.get("name"))
        same = [i for i, d in enumerate(docs[1:], 1) if (d.get("apiVersion"), d.get("kind"), d.get("name")) == ident]
        if same:
            docs[same[0]] = merged(docs[same[0]], patch)
        else:
            docs.append(patch)
    return docs


def config_text(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


@dataclass
class Fleet:
    """A running fleet for one stack file: the fake tools' state and the stack outputs."""

    path: Path
    state: dict[str, Any]
    outputs: dict[str, Any]
    secrets: list[str] = field(default_factory=list)
    """Every secret value on the machines or in the credentials: none may show in any output."""
    addresses: dict[str, str] = field(default_factory=dict)
    """hostname -> address"""
    expiries: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """(cluster, certificate) -> NotAfter"""

    @property
    def stack(self) -> str:
        return commands.stack_name(self.path) or self.path.stem

    def node(self, hostname: str) -> dict[str, Any]:
        node: dict[str, Any] = self.state["nodes"][self.addresses[hostname]]
        return node

    def config(self, hostname: str, resource: str = "v1alpha1") -> list[dict[str, Any]]:
        return list(yaml.safe_load_all(self.node(hostname)["config"][resource]))

    def edit(self, hostname: str, change: Callable[[list[dict[str, Any]]], None]) -> None:
        """An out-of-band `talosctl edit machineconfig`: the active and persisted config change."""
        docs = self.config(hostname)
        change(docs)
        self.node(hostname)["config"] = {"v1alpha1": config_text(docs)}


def cluster_credentials(
    fleet: Fleet, cluster: str, server: str, control_planes: list[str], talos_days: float, kube_days: float
) -> tuple[str, str, dict[str, Any], list[str]]:
    """talosconfig and kubeconfig texts, the fake's record of the signed client certificate, and
    the secret material in them; each certificate's NotAfter goes to `fleet.expiries`."""
    now = datetime.now(UTC)
    made = {}
    for name, days in (
        (certs.TALOS_CA, 3650),
        (certs.TALOSCONFIG_CLIENT, talos_days),
        (certs.KUBERNETES_CA, 3650),
        (certs.KUBECONFIG_CLIENT, kube_days),
    ):
        fleet.expiries[(cluster, name)] = certificates.whole_seconds(now + days * DAY)
        made[name] = certificates.certificate(fleet.expiries[(cluster, name)], f"{cluster} {name}", ca="CA" in name)
    talos_ca, talos_client = made[certs.TALOS_CA], made[certs.TALOSCONFIG_CLIENT]
    kube_ca, kube_client = made[certs.KUBERNETES_CA], made[certs.KUBECONFIG_CLIENT]
    talosconfig = certificates.talosconfig(
        cluster,
        certificates.b64(talos_ca.certificate),
        certificates.b64(talos_client.certificate),
        certificates.b64(talos_client.key),
        control_planes,
    )
    # The fake kubectl answers for kubeconfigs it recognises by this line (tests/fakes/tool.py).
    kubeconfig = "# FAKE-kubeconfig\n" + certificates.kubeconfig(cluster, server, kube_ca, kube_client)
    signed = {sha(talos_client.certificate): {"ca": sha(talos_ca.certificate), "roles": ["os:admin"], "hours": 8760}}
    keys = [m.key for m in (talos_ca, talos_client, kube_ca, kube_client)]
    secret_material = [*keys, *(certificates.b64(k) for k in keys)]
    return talosconfig, kubeconfig, {"minted": signed, "ca": sha(talos_ca.certificate)}, secret_material


def secret_output(value: Any) -> dict[str, str]:
    """A secret stack output as the fake pulumi's state holds it (see its stack output)."""
    return {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(value)}


def build_fleet(path: Path, talos_client_days: float = 400.5, kube_client_days: float = 400.5) -> Fleet:
    view = snapshot(load_stack_file(path))
    fleet = Fleet(path, {"nodes": {}, "minted": {}, "cordoned": []}, {})
    talosconfigs, kubeconfigs, nodes = {}, {}, {}
    for cluster in view.clusters:
        control_planes = [n.address for n in cluster.nodes if n.role == "controlplane"]
        talosconfig, kubeconfig, trust, material = cluster_credentials(
            fleet, cluster.name, cluster.endpoint, control_planes, talos_client_days, kube_client_days
        )
        talosconfigs[cluster.name], kubeconfigs[cluster.name] = talosconfig, kubeconfig
        fleet.state["minted"].update(trust["minted"])
        fleet.secrets += material
        names = ["machine token", "os ca key", "cluster id", "cluster secret", "bootstrap token", "secretbox"]
        names += ["k8s ca key", "service account key", "etcd ca key"]
        secrets = {n: f"FAKE-{cluster.name}-{n.replace(' ', '-')}" for n in names}
        for key in ("os ca key", "k8s ca key", "etcd ca key", "service account key"):
            secrets[key] = b64(f"-----BEGIN EC PRIVATE KEY-----\n{secrets[key]}\n-----END EC PRIVATE KEY-----\n")
        fleet.secrets += [*secrets.values(), *SECRET_VALUES.values()]
        nodes[cluster.name] = {n.hostname: n.address for n in cluster.nodes}
        for node in cluster.nodes:
            fleet.addresses[node.hostname] = node.address
            fleet.state["nodes"][node.address] = {
                "cluster": cluster.name,
                "ca": trust["ca"],
                "hostname": node.hostname,
                "role": node.role,
                "version": node.talos_version,
                "schematic": cluster.schematic_id,
                "kubelet": node.kubernetes_version,
                "config": {"v1alpha1": config_text(running_config(cluster.name, cluster.endpoint, node, secrets))},
                "etcd_hostnames": [n.hostname for n in cluster.nodes if n.role == "controlplane"],
            }
    fleet.outputs = {
        "endpoints": {c.name: c.endpoint for c in view.clusters},
        "nodes": nodes,
        "kubeconfig": kubeconfigs,
        "talosconfig": talosconfigs,
    }
    return fleet


# ---------------------------------------------------------------------------------------------
# Running the command


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]
    tmp: Path
    seconds: float

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["hostname"]: n for c in self.json()["clusters"] for n in c["nodes"]}


@pytest.fixture
def status(tmp_path: Path) -> Callable[..., Run]:
    def run(
        fleet: Fleet,
        fmt: str = "json",
        *args: str,
        outputs: str | None = None,
        tools: tuple[str, ...] = ("talosctl", "kubectl"),
        path: Path | None = None,
    ) -> Run:
        bin_dir = fake_bin(tmp_path / f"bin-{'-'.join(tools) or 'none'}", tools)
        state_file, log_file, tmp = tmp_path / "state.json", tmp_path / "calls.jsonl", tmp_path / "tmp"
        tmp.mkdir(exist_ok=True)
        state_file.write_text(json.dumps(fleet.state))
        log_file.write_text("")
        environ = {
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}",
            "FAKE_STATE": str(state_file),
            "FAKE_LOG": str(log_file),
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp),
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "talos_fleet", "status", str(path or fleet.path), "--format", fmt, *args],
            cwd=ROOT,
            env=environ,
            input=json.dumps(fleet.outputs) if outputs is None else outputs,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        calls = [json.loads(line) for line in log_file.read_text().splitlines()]
        return Run(done.returncode, done.stdout, done.stderr, calls, tmp, time.monotonic() - started)

    return run


def assert_nothing_secret(fleet: Fleet, *runs: Run) -> None:
    for run in runs:
        for value in fleet.secrets:
            for line in value.splitlines() or [value]:
                if len(line) >= 8 and "-----" not in line:
                    assert line not in run.stdout, "a secret reached the report"
                    assert line not in run.stderr, "a secret reached stderr"


# ---------------------------------------------------------------------------------------------
# A clean fleet


@pytest.mark.parametrize("path", VALID_STACKS, ids=stack_id)
def test_a_clean_fleet_reports_no_drift_and_exits_0(status: Callable[..., Run], path: Path) -> None:
    fleet = build_fleet(path)
    run = status(fleet)
    assert run.code == 0, run.stderr + run.stdout
    report = run.json()
    assert report["ok"] is True
    assert report["problems"] == []
    expected = {h for c in fleet.outputs["nodes"].values() for h in c}
    assert set(run.nodes()) == expected
    for node in run.nodes().values():
        assert node["reachable"], node
        assert node["drift"] == [], node
        assert node["staged"] is False, node
        assert node["talos"]["running"] == node["talos"]["target"] == fleet.node(node["hostname"])["version"]
        assert node["ready"] is True
        assert node["cordoned"] is False
        assert node["etcd"] == ("member" if node["role"] == "controlplane" else None)
    assert f"queried {len(expected)}/{len(expected)} nodes" in run.stderr
    assert "queried" not in run.stdout
    assert "Traceback" not in run.stderr
    assert_nothing_secret(fleet, run)


def test_the_table_has_one_line_per_node(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    run = status(fleet, "table")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("cluster"))
    for word in ("node", "role", "reachable", "Talos", "schematic", "Kubernetes", "Ready", "cordoned", "etcd"):
        assert word in lines[header]
    rows = lines[header + 1 : header + 1 + len(fleet.addresses)]
    assert [row.split()[1] for row in rows] == list(fleet.addresses)
    assert all(row.split()[-1] == "none" for row in rows)
    assert_nothing_secret(fleet, run)


def test_credentials_are_private_files_removed_afterwards(status: Callable[..., Run]) -> None:
    run = status(build_fleet(HOMELAB))
    assert run.code == 0, run.stderr
    assert run.calls, "the fakes were never called"
    talos_calls = [c for c in run.calls if c["tool"] == "talosctl"]
    kube_calls = [c for c in run.calls if c["tool"] == "kubectl"]
    assert talos_calls
    assert kube_calls
    for call in run.calls:
        assert call["talosconfig_mode"] == "0o600", call
        assert call["talosconfig_dir_mode"] == "0o700", call
        assert call["kubeconfig_mode"] == "0o600", call
        assert not Path(call["talosconfig"]).exists()
    assert list(run.tmp.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Drift


def test_an_out_of_band_label_edit_shows_exactly_that_node_and_document(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    fleet.edit("worker-1", lambda docs: docs[0]["machine"]["nodeLabels"].update({"node.kubernetes.io/pool": "gpu"}))
    run, table = status(fleet), status(fleet, "table")
    assert run.code == table.code == 1
    drifted = {h: n["drift"] for h, n in run.nodes().items() if n["drift"]}
    assert list(drifted) == ["worker-1"]
    (document,) = drifted["worker-1"]
    assert document["document"] == "node · v1alpha1"
    assert "-    node.kubernetes.io/pool: general" in document["diff"].splitlines()
    assert "+    node.kubernetes.io/pool: gpu" in document["diff"].splitlines()
    assert "worker-1: node · v1alpha1" in table.stdout
    assert [p for p in run.json()["problems"] if "drift" in p] == ["homelab/worker-1: config drift: node · v1alpha1"]
    assert_nothing_secret(fleet, run, table)


def test_the_reapply_command_replaces_that_nodes_config_apply_only(status: Callable[..., Run]) -> None:
    """The URN in the command is the one the engine gives the node's ConfigurationApply (the
    program run under mocks), on the stack's backend."""
    fleet = build_fleet(HOMELAB)
    fleet.edit("worker-1", lambda docs: docs[0]["machine"]["nodeLabels"].update({"node.kubernetes.io/pool": "gpu"}))
    (apply,) = [
        r
        for r in run_stack_file(HOMELAB).registrations
        if r.type == "talos:machine/configurationApply:ConfigurationApply" and r.name.endswith("-worker-1")
    ]
    urn = engine_urn(apply.urn).replace("urn:pulumi:test::", "urn:pulumi:homelab::", 1)
    run, table, markdown = status(fleet), status(fleet, "table"), status(fleet, "markdown")
    command = run.nodes()["worker-1"]["reapply"]
    assert command.endswith(f"pulumi up --target-replace '{urn}' --stack homelab")
    assert command.startswith("PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state} ")
    assert [n["hostname"] for n in run.nodes().values() if n["reapply"]] == ["worker-1"]
    assert command in table.stdout
    assert command in markdown.stdout


def test_an_out_of_band_network_edit_shows_exactly_that_node_and_document(status: Callable[..., Run]) -> None:
    fleet = build_fleet(EDGE)

    def move(docs: list[dict[str, Any]]) -> None:
        (link,) = [d for d in docs if d.get("kind") == "LinkConfig"]
        link["addresses"] = [{"address": "10.20.42.99/24"}]

    fleet.edit("edge-042-a", move)
    run = status(fleet)
    assert run.code == 1
    (document,) = run.nodes()["edge-042-a"]["drift"]
    assert document["document"] == "node · LinkConfig enp1s0"
    diff = document["diff"].splitlines()
    assert "-- address: 10.20.42.10/24" in diff
    assert "+- address: 10.20.42.99/24" in diff
    assert_nothing_secret(fleet, run)


def test_a_document_added_out_of_band_is_drift(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    extra = {"apiVersion": "v1alpha1", "kind": "StaticHostConfig", "name": "10.17.3.200", "hostnames": ["registry"]}
    password = "FAKE-registry-password"
    fleet.secrets.append(password)
    auth = {"apiVersion": "v1alpha1", "kind": "RegistryAuthConfig", "name": "registry", "password": password}
    fleet.edit("cp-2", lambda docs: docs.extend([extra, auth]))
    run = status(fleet)
    assert run.code == 1
    assert [h for h, n in run.nodes().items() if n["drift"]] == ["cp-2"]
    hosts, registry = run.nodes()["cp-2"]["drift"]
    assert hosts["document"] == "StaticHostConfig 10.17.3.200 (not in the stack)"
    assert "+- registry" in hosts["diff"].splitlines()
    assert registry["document"] == "RegistryAuthConfig registry (not in the stack)"
    assert "+password: <redacted>" in registry["diff"].splitlines()
    assert_nothing_secret(fleet, run)


def test_a_field_set_again_by_a_later_layer_is_checked_there_only(status: Callable[..., Run], tmp_path: Path) -> None:
    """A node patch sets kubelet max-pods again after the role patch: the node runs the node's
    value, which is no drift of the role document; a wrong value is the node document's drift."""
    stack = yaml.safe_load(VIP_METAL.read_text())
    worker = stack["config"]["talos-fleet:clusters"]["rack"]["nodes"]["worker-1"]
    worker["patches"] = [{"machine": {"kubelet": {"extraArgs": {"max-pods": "200"}}}}]
    path = tmp_path / "Pulumi.override.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    fleet = build_fleet(path)
    clean = status(fleet)
    assert clean.code == 0, clean.json()["problems"]
    fleet.edit("worker-1", lambda docs: docs[0]["machine"]["kubelet"]["extraArgs"].update({"max-pods": "90"}))
    run = status(fleet)
    (document,) = run.nodes()["worker-1"]["drift"]
    assert document["document"] == "node · v1alpha1 from clusters.rack.nodes.worker-1.patches[0]"
    assert "-      max-pods: '200'" in document["diff"].splitlines()
    assert "+      max-pods: '90'" in document["diff"].splitlines()


def test_a_patch_list_is_found_among_the_generated_items(status: Callable[..., Run], tmp_path: Path) -> None:
    """Talos appends a patch's list to the generated one: a control plane's apiServer.certSANs is
    the endpoint's address, then the patch's names. That is no drift; a name removed is."""
    stack = yaml.safe_load(HOMELAB.read_text())
    extra_san = {"cluster": {"apiServer": {"certSANs": ["api.homelab.example"]}}}
    stack["config"]["talos-fleet:clusters"]["homelab"]["patches"] = [extra_san]
    path = tmp_path / "Pulumi.sans.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    fleet = build_fleet(path)
    assert fleet.config("cp-1")[0]["cluster"]["apiServer"]["certSANs"] == ["10.17.3.10", "api.homelab.example"]
    clean = status(fleet)
    assert clean.code == 0, clean.json()["problems"]
    fleet.edit("cp-3", lambda docs: docs[0]["cluster"]["apiServer"].update({"certSANs": ["10.17.3.10"]}))
    run = status(fleet)
    assert [h for h, n in run.nodes().items() if n["drift"]] == ["cp-3"]
    (document,) = run.nodes()["cp-3"]["drift"]
    assert document["document"] == "cluster · v1alpha1 from clusters.homelab.patches[0]"
    assert "-    - api.homelab.example" in document["diff"].splitlines()


def test_a_staged_configuration_is_reported(status: Callable[..., Run]) -> None:
    """`apply-config --mode=staged` writes only the persistent MachineConfig."""
    fleet = build_fleet(HOMELAB)
    docs = fleet.config("cp-2")
    docs[0]["machine"]["nodeLabels"]["example.com/staged"] = "yes"
    fleet.node("cp-2")["config"]["persistent"] = config_text(docs)
    # After a plain apply both are there and equal: nothing waits.
    fleet.node("cp-3")["config"]["persistent"] = fleet.node("cp-3")["config"]["v1alpha1"]
    run, table = status(fleet), status(fleet, "table")
    assert run.code == 1
    assert {h: n["staged"] for h, n in run.nodes().items()} == {h: h == "cp-2" for h in fleet.addresses}
    assert run.nodes()["cp-2"]["drift"] == []
    assert "homelab/cp-2: a staged configuration waits for a reboot" in run.json()["problems"]
    row = next(line for line in table.stdout.splitlines() if line.split()[:2] == ["homelab", "cp-2"])
    assert row.split()[-2:] == ["yes", "none"]


# ---------------------------------------------------------------------------------------------
# Secrets


def test_a_secret_field_that_differs_never_prints_its_value(status: Callable[..., Run]) -> None:
    fleet = build_fleet(VIP_METAL)
    rotated, added, token = "FAKE-rotated-luks-passphrase", "FAKE-added-luks-passphrase", "FAKE-edited-machine-token"
    fleet.secrets += [rotated, added, token]

    def edit(docs: list[dict[str, Any]]) -> None:
        (volume,) = [d for d in docs if d.get("kind") == "VolumeConfig" and d.get("name") == "EPHEMERAL"]
        volume["encryption"]["keys"][0]["static"]["passphrase"] = rotated
        volume["encryption"]["keys"].append({"slot": 1, "static": {"passphrase": added}})
        docs[0]["machine"]["token"] = token
        docs[0]["machine"]["nodeLabels"]["node.kubernetes.io/pool"] = "moved"

    fleet.edit("worker-1", edit)
    runs = [status(fleet, fmt) for fmt in ("table", "markdown", "json")]
    assert [r.code for r in runs] == [1, 1, 1]
    drift = {d["document"]: d["diff"] for d in runs[2].nodes()["worker-1"]["drift"]}
    assert set(drift) == {"node · v1alpha1", "cluster · VolumeConfig EPHEMERAL"}
    # The added key shows, redacted; the rotated one is compared by presence and shows as the
    # stack's reference.
    assert "+    static:" in drift["cluster · VolumeConfig EPHEMERAL"].splitlines()
    assert "+      passphrase: <redacted>" in drift["cluster · VolumeConfig EPHEMERAL"].splitlines()
    assert "<secret:rack-luks>" in drift["cluster · VolumeConfig EPHEMERAL"]
    for run in runs:
        for value in (rotated, added, token, SECRET_VALUES["rack-luks"]):
            assert value not in run.stdout
            assert value not in run.stderr
    assert_nothing_secret(fleet, *runs)


# ---------------------------------------------------------------------------------------------
# Health


def test_each_health_problem_is_reported_for_its_node(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    fleet.node("cp-1")["version"] = "v1.13.9"
    fleet.node("cp-2")["ready"] = False
    fleet.node("cp-3")["etcd_hostnames"] = ["cp-1", "cp-2"]
    fleet.state["cordoned"] = ["worker-1"]
    fleet.node("worker-2")["kubelet"] = "v1.36.2"
    fleet.node("worker-2")["schematic"] = "b" * 64
    run, table = status(fleet), status(fleet, "table")
    assert run.code == table.code == 1
    nodes = run.nodes()
    target = fleet.node("cp-2")["version"]
    assert nodes["cp-1"]["talos"] == {"running": "v1.13.9", "target": target}
    assert nodes["cp-2"]["ready"] is False
    assert nodes["cp-3"]["etcd"] == "not a member"
    assert nodes["worker-1"]["cordoned"] is True
    assert nodes["worker-2"]["kubernetes"]["running"] == "v1.36.2"
    assert nodes["worker-2"]["schematic"]["ok"] is False
    assert all(nodes[h]["problems"] for h in fleet.addresses), nodes
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if line.startswith("homelab ")}
    assert f"v1.13.9→{target}" in rows["cp-1"]
    assert "v1.36.2→v1.36.3" in rows["worker-2"]


def test_an_unreachable_node_is_reported_not_raised_and_costs_bounded_time(status: Callable[..., Run]) -> None:
    """cp-1 is gone (no route), worker-2 drops packets (talosctl would wait for minutes): both are
    reported, the others answer, and the workers are reached through the next control plane."""
    fleet = build_fleet(HOMELAB)
    fleet.node("cp-1")["down"] = True
    fleet.node("worker-2")["hang"] = 60
    run = status(fleet, "json", "--timeout", "2")
    assert run.code == 1
    assert "Traceback" not in run.stderr
    nodes = run.nodes()
    assert [h for h, n in nodes.items() if not n["reachable"]] == ["cp-1", "worker-2"]
    assert "no route to host" in nodes["cp-1"]["error"]
    assert "within 2 s" in nodes["worker-2"]["error"]
    # The budget ends it, not the fake's 60 s.
    assert run.seconds < 30
    workers = [c for c in run.calls if c["tool"] == "talosctl" and fleet.addresses["worker-1"] in c["args"]]
    assert workers
    assert all(c["args"][3] == fleet.addresses["cp-2"] for c in workers)
    assert f"queried {len(fleet.addresses)}/{len(fleet.addresses)} nodes" in run.stderr


def test_a_node_not_created_yet_is_reported_without_asking_it(status: Callable[..., Run], tmp_path: Path) -> None:
    """A node added to the stack file but not yet created by `make up` (not in the `nodes`
    output); the outputs read from a file this time."""
    fleet = build_fleet(HOMELAB)
    del fleet.outputs["nodes"]["homelab"]["worker-2"]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(fleet.outputs))
    run = status(fleet, "json", "--outputs", str(outputs), outputs="")
    assert run.code == 1
    assert "make up STACK=homelab" in run.nodes()["worker-2"]["error"]
    assert not any(fleet.addresses["worker-2"] in c["args"] for c in run.calls)
    assert f"queried {len(fleet.addresses) - 1}/{len(fleet.addresses) - 1} nodes" in run.stderr


def test_a_cluster_whose_control_planes_are_all_gone_reports_every_node(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    for host in ("cp-1", "cp-2", "cp-3"):
        fleet.node(host)["down"] = True
    fleet.state["kubernetes_down"] = True
    run = status(fleet)
    assert run.code == 1
    assert "Traceback" not in run.stderr
    assert not any(n["reachable"] for n in run.nodes().values())
    assert "no control plane" in run.nodes()["worker-1"]["error"]
    assert any("Kubernetes API" in e for e in run.json()["clusters"][0]["errors"])
    table = status(fleet, "table")
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith("homelab ")]
    assert [row[1] for row in rows] == list(fleet.addresses)
    assert {row[3] for row in rows} == {"NO"}


# ---------------------------------------------------------------------------------------------
# Certificates


def test_certificates_under_30_days_warn_with_the_renew_command(status: Callable[..., Run]) -> None:
    # Half a day past the whole days, so the count cannot move while the test runs.
    fleet = build_fleet(HOMELAB, talos_client_days=10.5, kube_client_days=400.5)
    runs = {fmt: status(fleet, fmt) for fmt in ("json", "table", "markdown")}
    assert {r.code for r in runs.values()} == {1}
    (cluster,) = runs["json"].json()["clusters"]
    by_name = {c["name"]: c for c in cluster["certificates"]}
    assert set(by_name) == set(certs.NAMES)
    assert (by_name[certs.TALOSCONFIG_CLIENT]["days_left"], by_name[certs.TALOSCONFIG_CLIENT]["warning"]) == (10, True)
    assert (by_name[certs.KUBECONFIG_CLIENT]["days_left"], by_name[certs.KUBECONFIG_CLIENT]["warning"]) == (400, False)
    assert not by_name[certs.TALOS_CA]["warning"]
    assert not by_name[certs.KUBERNETES_CA]["warning"]
    expires = fleet.expiries[("homelab", certs.TALOSCONFIG_CLIENT)]
    assert by_name[certs.TALOSCONFIG_CLIENT]["not_after"] == expires.isoformat()
    renew = certs.renew_command(certs.TALOSCONFIG_CLIENT, "homelab")
    warning = f"talosconfig client expires in 10 day(s) ({expires:%Y-%m-%d}); renew: {renew}"
    warnings = [line for line in runs["table"].stdout.splitlines() if line.startswith("WARNING")]
    assert warnings == [f"WARNING homelab: {warning}"]
    assert renew in runs["markdown"].stdout
    assert [p for p in runs["json"].json()["problems"] if "expires" in p] == [f"cluster homelab: {warning}"]
    assert_nothing_secret(fleet, *runs.values())


def test_all_certificates_over_30_days_pass(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB, talos_client_days=30.5, kube_client_days=31.5)
    run = status(fleet)
    assert run.code == 0, run.json()["problems"]


# ---------------------------------------------------------------------------------------------
# Formats and usage


def test_markdown_starts_with_the_stack_marker_and_json_has_stable_keys(status: Callable[..., Run]) -> None:
    fleet = build_fleet(HOMELAB)
    fleet.edit("worker-1", lambda docs: docs[0]["machine"]["nodeLabels"].update({"node.kubernetes.io/pool": "gpu"}))
    markdown, first, second = status(fleet, "markdown"), status(fleet), status(fleet)
    assert markdown.stdout.splitlines()[0] == "<!-- talos-fleet-status: homelab -->"
    assert "```diff" in markdown.stdout
    assert "+    node.kubernetes.io/pool: gpu" in markdown.stdout
    assert first.stdout == second.stdout
    assert first.stdout == json.dumps(json.loads(first.stdout), indent=2, sort_keys=True) + "\n"
    assert set(first.json()) == {"clusters", "format", "ok", "problems", "stack"}


def test_out_writes_the_report_to_a_file(status: Callable[..., Run], tmp_path: Path) -> None:
    out = tmp_path / "status" / "homelab.md"
    run = status(build_fleet(HOMELAB), "markdown", "--out", str(out))
    assert run.code == 0
    assert run.stdout == ""
    assert out.read_text().startswith("<!-- talos-fleet-status: homelab -->\n")


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ("", "no stack outputs on standard input"),
        ("not json", "no stack outputs on standard input"),
        (json.dumps({"talosconfig": {}}), "no talosconfig for cluster 'homelab'"),
        ("without kubeconfig", "no kubeconfig for cluster 'homelab'"),
        ("hidden", "pass --show-secrets"),
    ],
)
def test_missing_outputs_are_one_message_and_exit_2(status: Callable[..., Run], outputs: str, message: str) -> None:
    fleet = build_fleet(HOMELAB)
    if outputs == "without kubeconfig":
        outputs = json.dumps({**fleet.outputs, "kubeconfig": {}})
    elif outputs == "hidden":
        outputs = json.dumps({**fleet.outputs, "talosconfig": {"homelab": "[secret]"}})
    run = status(fleet, outputs=outputs)
    assert run.code == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    assert message in run.stderr
    assert "make up STACK=homelab" in run.stderr or "show-secrets" in run.stderr
    assert run.calls == []


def test_an_invalid_stack_file_or_missing_tools_are_exit_2(status: Callable[..., Run], tmp_path: Path) -> None:
    fleet = build_fleet(HOMELAB)
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text("config:\n  talos-fleet:clusters: 3\n")
    invalid = status(fleet, path=bad)
    assert invalid.code == 2
    assert "Traceback" not in invalid.stderr
    assert str(bad) in invalid.stderr
    no_tools = status(fleet, tools=())
    assert no_tools.code == 2
    assert "talosctl and kubectl not installed" in no_tools.stderr
    assert len(no_tools.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# make status, with the stack's outputs from the fake pulumi


@pytest.fixture(scope="module")
def make_tree(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    clone = make_clone(tmp_path_factory.mktemp("make-status"))
    fake_bin(clone.bin)
    clone.with_pulumi()
    return clone


def deploy(clone: Clone, fleet: Fleet) -> None:
    """The stack as after `make up` on the make targets' backend: its outputs, secrets marked."""
    home = clone.home / "pulumi-home"
    subprocess.run(
        [str(clone.bin / "pulumi"), "stack", "select", "--create", fleet.stack],
        env={"PATH": str(clone.bin), "PULUMI_BACKEND_URL": clone.backend, "FAKE_PULUMI_HOME": str(home),
             "FAKE_PULUMI_LOG": str(clone.home / "setup.log")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (state_file,) = home.glob(f"*/{fleet.stack}.state.json")
    outputs = {k: secret_output(v) if k in ("talosconfig", "kubeconfig") else v for k, v in fleet.outputs.items()}
    stack = {"urn": f"urn:pulumi:{fleet.stack}::talos-fleet::pulumi:pulumi:Stack::talos-fleet-{fleet.stack}",
             "type": "pulumi:pulumi:Stack", "custom": False, "outputs": outputs}  # fmt: skip
    state_file.write_text(json.dumps({"version": 3, "deployment": {"manifest": {}, "resources": [stack]}}))


@pytest.mark.parametrize("path", STACK_FILES, ids=stack_id)
def test_make_status_prints_the_table_with_no_drift(make_tree: Clone, path: Path) -> None:
    fleet = build_fleet(path)
    deploy(make_tree, fleet)
    state = make_tree.home / f"{fleet.stack}-state.json"
    state.write_text(json.dumps(fleet.state))
    env = {"FAKE_STATE": str(state), "FAKE_LOG": str(make_tree.home / "tools.log")}
    (make_tree.home / "tools.log").write_text("")
    done = make_tree.make("status", f"STACK={fleet.stack}", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "all healthy, no drift, certificates valid" in done.stdout
    assert all(line.split()[-1] == "none" for line in done.stdout.splitlines() if line.split()[:1] == [fleet.stack])
    calls = [c["argv"] for c in make_tree.pulumi_calls() if c["argv"][:2] == ["stack", "output"]]
    assert calls
    assert "--show-secrets" in calls[-1]
    assert calls[-1][calls[-1].index("--stack") + 1] == fleet.stack
    assert_nothing_secret(fleet, Run(done.returncode, done.stdout, done.stderr, [], make_tree.home, 0))


def test_make_status_format_and_out(make_tree: Clone) -> None:
    fleet = build_fleet(HOMELAB)
    fleet.edit("worker-1", lambda docs: docs[0]["machine"]["nodeLabels"].update({"node.kubernetes.io/pool": "gpu"}))
    deploy(make_tree, fleet)
    state = make_tree.home / "homelab-drift-state.json"
    state.write_text(json.dumps(fleet.state))
    env = {"FAKE_STATE": str(state), "FAKE_LOG": str(make_tree.home / "tools.log")}
    done = make_tree.make("status", "STACK=homelab", "FORMAT=markdown", "OUT=status/homelab.md", env=env)
    assert done.returncode != 0
    report = (make_tree.root / "status" / "homelab.md").read_text()
    assert report.startswith("<!-- talos-fleet-status: homelab -->\n")
    assert "homelab/worker-1: config drift: node · v1alpha1" in report
