"""Which config changes need a reboot (talos_fleet.reboots), against the upstream lists.

The tables here are transcribed from upstream independently of the module under test, so a
wrong entry in the module makes a row fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from talos_fleet import reboots
from tests.conftest import ROOT

# Talos 1.13 applies these v1alpha1 subtrees live: siderolabs/talos
# v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go lines 150-175 (the
# comment) and 177-205 (the code), spelled with the YAML names of
# v1.13.9:pkg/machinery/config/types/v1alpha1/v1alpha1_types.go. The comment says `certCANs` and
# `controlplane`; the fields copied are MachineCertSANs (`certSANs`) and MachineControlPlane
# (`controlPlane`).
LIVE_1_13 = [
    ("debug",),
    ("cluster",),
    ("machine", "ca"),
    ("machine", "acceptedCAs"),
    ("machine", "time"),
    ("machine", "certSANs"),
    ("machine", "install"),
    ("machine", "network"),
    ("machine", "sysfs"),
    ("machine", "sysctls"),
    ("machine", "logging"),
    ("machine", "controlPlane"),
    ("machine", "kubelet"),
    ("machine", "kernel"),
    ("machine", "registries"),
    ("machine", "pods"),
    ("machine", "seccompProfiles"),
    ("machine", "nodeAnnotations"),
    ("machine", "nodeLabels"),
    ("machine", "nodeTaints"),
    ("machine", "features", "kubernetesTalosAPIAccess"),
    ("machine", "features", "kubePrism"),
    ("machine", "features", "hostDNS"),
    ("machine", "features", "imageCache"),
    ("machine", "features", "nodeAddressSortAlgorithm"),
]
# Talos 1.14 "Changes which might need a reboot" inside the subtrees above: siderolabs/docs
# 40a533f:public/talos/v1.15/configure-your-talos-cluster/system-configuration/editing-machine-configuration.mdx
REBOOT_1_14_INSIDE_LIVE = [("cluster", "etcd"), ("machine", "kernel", "modules")]
# Fields outside the 1.13 list (so 1.13 reboots for them); the YAML names of v1alpha1_types.go
# at v1.13.9 (MachineType `type`, MachineEnv `env`, ConfigPersist `persist`, ...).
REBOOT_1_13 = [
    ("machine", "type"),
    ("machine", "token"),
    ("machine", "env"),
    ("machine", "files"),
    ("machine", "udev"),
    ("machine", "disks"),
    ("machine", "systemDiskEncryption"),
    ("machine", "features", "rbac"),
    ("machine", "features", "diskQuotaSupport"),
    ("machine", "features", "apidCheckExtKeyUsage"),
    ("machine", "features", "stableHostname"),
    ("persist",),
]
# Documents: 1.13 never compares them (live); 1.14 lists environment variables, kernel modules
# and SecurityProfileConfig as whole documents (the docs page above; kinds from siderolabs/talos
# v1.14.0-rc.1:pkg/machinery/config/types/runtime/{environment,kernel_module,security_profile_config}.go).
REBOOT_KINDS: dict[str, dict[str, Any]] = {
    "EnvironmentConfig": {"variables": {"HTTP_PROXY": "http://proxy"}},
    "KernelModuleConfig": {"name": "btrfs", "parameters": ["a=1"]},
    "SecurityProfileConfig": {"workloadIsolation": True},
}
# "the encryption section of a volume document" (docs page above); the kinds with an `encryption`
# field: siderolabs/talos v1.14.0-rc.1:pkg/machinery/config/types/block/*_config.go.
VOLUME_KINDS = ["VolumeConfig", "UserVolumeConfig", "RawVolumeConfig", "SwapVolumeConfig"]
# Documents with nothing in the 1.14 list: live in both versions. UnattendedInstallConfig is only
# read at install or upgrade (same docs page).
LIVE_KINDS: dict[str, dict[str, Any]] = {
    "HostnameConfig": {"hostname": "n1", "auto": "off"},
    "LinkConfig": {"name": "eth0", "addresses": [{"address": "10.0.0.2/24"}]},
    "Layer2VIPConfig": {"name": "10.0.0.10", "link": "eth0"},
    "ResolverConfig": {"nameservers": [{"address": "1.1.1.1"}]},
    "UnattendedInstallConfig": {"disk": "/dev/sda"},
}


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    assert isinstance(out, dict)
    return out


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def dotted(path: tuple[str, ...]) -> str:
    return "." + ".".join(path)


def document(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


# A value under the path that is not itself a listed child (`.cluster.etcd`, `.machine.kernel.modules`).
SETTING = {"someSetting": "value-1"}


@pytest.mark.parametrize("path", LIVE_1_13, ids=dotted)
def test_live_subtrees_of_1_13_apply_live(path: tuple[str, ...]) -> None:
    patch = dump(nested(path, SETTING))
    live, reboot = reboots.split([patch])
    assert live == [nested(path, SETTING)]
    assert reboot == []
    assert reboots.reboot_paths([patch]) == []


@pytest.mark.parametrize("path", REBOOT_1_13 + REBOOT_1_14_INSIDE_LIVE, ids=dotted)
def test_other_v1alpha1_fields_and_the_1_14_list_need_a_reboot(path: tuple[str, ...]) -> None:
    patch = dump(nested(path, SETTING))
    live, reboot = reboots.split([patch])
    assert live == []
    assert reboot == [nested(path, SETTING)]
    assert reboots.reboot_paths([patch]) == [dotted(path)]


@pytest.mark.parametrize("kind", sorted(REBOOT_KINDS))
def test_documents_of_the_1_14_list_need_a_reboot(kind: str) -> None:
    patch = dump(document(kind, REBOOT_KINDS[kind]))
    live, reboot = reboots.split([patch])
    assert live == []
    assert reboot == [document(kind, REBOOT_KINDS[kind])]
    name = REBOOT_KINDS[kind].get("name")
    assert reboots.reboot_paths([patch]) == [f"{kind} {name}" if name else kind]


@pytest.mark.parametrize("kind", VOLUME_KINDS)
def test_volume_encryption_needs_a_reboot_and_the_rest_of_the_volume_does_not(kind: str) -> None:
    encryption = {"provider": "luks2", "keys": [{"slot": 0, "tpm": {}}]}
    provisioning = {"maxSize": "10GiB"}
    patch = dump(document(kind, {"name": "STATE", "encryption": encryption, "provisioning": provisioning}))
    live, reboot = reboots.split([patch])
    # Both parts keep the document's name, so each still merges into the same document.
    assert live == [document(kind, {"name": "STATE", "provisioning": provisioning})]
    assert reboot == [document(kind, {"name": "STATE", "encryption": encryption})]
    assert reboots.reboot_paths([patch]) == [f"{kind} STATE .encryption"]


@pytest.mark.parametrize("kind", sorted(LIVE_KINDS))
def test_other_documents_apply_live(kind: str) -> None:
    patch = dump(document(kind, LIVE_KINDS[kind]))
    assert reboots.split([patch]) == ([document(kind, LIVE_KINDS[kind])], [])


def test_one_document_is_divided_by_path() -> None:
    labels = {"zone": "a"}
    env = {"HTTP_PROXY": "http://proxy"}
    live, reboot = reboots.split([dump({"machine": {"nodeLabels": labels, "env": env}})])
    assert live == [{"machine": {"nodeLabels": labels}}]
    assert reboot == [{"machine": {"env": env}}]


def test_several_documents_in_one_patch_and_placeholders_as_text() -> None:
    secret = "<secret:Secrets/c-secrets.machineSecrets>"
    patch = dump(
        {"machine": {"env": {"TOKEN": secret}}},
        document("HostnameConfig", {"hostname": "n1"}),
    )
    live, reboot = reboots.split([patch])
    assert live == [document("HostnameConfig", {"hostname": "n1"})]
    assert reboot == [{"machine": {"env": {"TOKEN": secret}}}]


def test_reboot_changes_names_only_the_settings_that_differ() -> None:
    base = dump({"machine": {"env": {"A": "1"}, "files": [{"path": "/x"}], "nodeLabels": {"a": "1"}}})
    head = dump({"machine": {"env": {"A": "2"}, "files": [{"path": "/x"}], "nodeLabels": {"a": "2"}}})
    assert reboots.reboot_changes([base], [head]) == [".machine.env"]
    assert reboots.reboot_changes([base], [base]) == []
    # A setting added or removed is a change too.
    assert reboots.reboot_changes([base], [base, dump(document("EnvironmentConfig", {"variables": {}}))]) == [
        "EnvironmentConfig"
    ]


def test_a_delete_directive_above_reboot_settings_counts_for_both() -> None:
    """`$patch: delete` drops the whole mapping it sits in (siderolabs/talos
    v1.13.9:pkg/machinery/config/configloader/internal/decoder/delete.go), so deleting
    `.machine.kernel` also drops `.machine.kernel.modules`."""
    delete = dump({"machine": {"kernel": {"$patch": "delete"}}})
    live, reboot = reboots.split([delete])
    assert live == reboot == [{"machine": {"kernel": {"$patch": "delete"}}}]
    assert reboots.reboot_changes([], [delete]) == [".machine.kernel.$patch"]
    # Below a subtree of one class it stays in that class.
    assert reboots.split([dump({"machine": {"nodeLabels": {"$patch": "delete"}}})])[1] == []


# ---------------------------------------------------------------------------------------------
# Hashes

ROLE_INPUTS: dict[str, Any] = {
    "clusterName": "c",
    "machineType": "worker",
    "clusterEndpoint": "https://10.0.0.10:6443",
    "machineSecrets": "<secret:Secrets/c-secrets.machineSecrets>",
    "talosVersion": "v1.13",
    "kubernetesVersion": "<via:Command/c-kubernetes|v1.36.3>",
    "configPatches": [
        dump({"machine": {"features": {"kubePrism": {"enabled": True, "port": 7445}}}}),
        dump(document("VolumeConfig", {"name": "STATE", "encryption": {"provider": "luks2"}})),
    ],
    "docs": False,
    "examples": False,
}


def role(**changes: Any) -> reboots.RoleParts:
    return reboots.RoleParts.from_inputs({**ROLE_INPUTS, **changes})


def node_patches(host: str) -> list[str]:
    return [
        dump({"machine": {"install": {"disk": "/dev/sda", "image": "installer:v1.13.9"}}}),
        dump(document("HostnameConfig", {"auto": "off", "hostname": host})),
    ]


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before if before[k] != after[k]}


def test_hashes_are_twelve_hex_digits() -> None:
    hashes = reboots.node_hashes(role(), node_patches("n1"))
    assert set(hashes) == {"live", "reboot"}
    assert all(re.fullmatch(r"[0-9a-f]{12}", h) for h in hashes.values())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # A contract change moves the generated v1alpha1 defaults: reboot.
        ({"talosVersion": "v1.14"}, {"reboot"}),
        ({"kubernetesVersion": "<via:Command/c-kubernetes|v1.36.4>"}, {"live"}),
        ({"clusterEndpoint": "https://10.0.0.11:6443"}, {"live"}),
        ({"configPatches": [*ROLE_INPUTS["configPatches"], dump({"machine": {"env": {"A": "1"}}})]}, {"reboot"}),
        ({"configPatches": [*ROLE_INPUTS["configPatches"], dump({"cluster": {"network": {"cni": None}}})]}, {"live"}),
        ({"configPatches": [*ROLE_INPUTS["configPatches"], dump({"cluster": {"etcd": {"image": "x"}}})]}, {"reboot"}),
    ],
    ids=["contract", "kubernetes", "endpoint", "role-env", "role-cni", "role-etcd"],
)
def test_role_inputs_move_the_hash_their_class_says(changes: dict[str, Any], expected: set[str]) -> None:
    patches = node_patches("n1")
    assert moved(reboots.node_hashes(role(), patches), reboots.node_hashes(role(**changes), patches)) == expected


def test_a_new_installer_image_applies_live() -> None:
    before = node_patches("n1")
    after = [before[0].replace("v1.13.9", "v1.14.0"), before[1]]
    assert before != after
    assert moved(reboots.node_hashes(role(), before), reboots.node_hashes(role(), after)) == {"live"}


def test_hashes_are_deterministic_across_processes_and_key_order() -> None:
    patches = node_patches("n1")
    here = reboots.node_hashes(role(), patches)
    # The same document with its keys in another order is the same config.
    reordered = [dump({"machine": {"install": {"image": "installer:v1.13.9", "disk": "/dev/sda"}}}), patches[1]]
    assert reboots.node_hashes(role(), reordered) == here
    script = (
        "import json, sys; from talos_fleet import reboots; a = json.load(sys.stdin); "
        "print(json.dumps(reboots.node_hashes(reboots.RoleParts.from_inputs(a[0]), a[1])))"
    )
    for seed in ("0", "1"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps([ROLE_INPUTS, patches]),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert json.loads(out.stdout) == here


def test_a_hash_depends_only_on_its_own_node_and_role() -> None:
    hosts = [f"n{i}" for i in range(5)]
    parts = role()
    alone = {h: reboots.node_hashes(role(), node_patches(h)) for h in hosts}
    together = {h: reboots.node_hashes(parts, node_patches(h)) for h in reversed(hosts)}
    assert together == alone
    # Another node's patches moving leaves this node's hashes alone, but its own do not.
    changed = [*node_patches("n2"), dump({"machine": {"env": {"A": "1"}}})]
    assert reboots.node_hashes(parts, changed)["reboot"] != alone["n2"]["reboot"]
    assert {h: reboots.node_hashes(parts, node_patches(h)) for h in hosts if h != "n2"} == {
        h: alone[h] for h in hosts if h != "n2"
    }


# Paths entirely of one class (every setting below them is too), for generated patches.
PURE_LIVE = [p for p in LIVE_1_13 if p not in {("cluster",), ("machine", "kernel")}] + [
    ("cluster", "network"),
    ("cluster", "apiServer"),
    ("machine", "kernel", "someFutureField"),
]
PURE_REBOOT = REBOOT_1_13 + REBOOT_1_14_INSIDE_LIVE

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.text(alphabet="xyz<>:|", max_size=4))
values = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=5)


def deep_set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


@st.composite
def patch_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A node's patches as documents: one v1alpha1 document with settings of both classes, and
    some other documents (live and reboot kinds, a volume with and without encryption)."""
    v1alpha1: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(PURE_LIVE + PURE_REBOOT), max_size=6, unique=True)):
        deep_set(v1alpha1, (*path, draw(keys)), draw(values))
    docs: list[dict[str, Any]] = [v1alpha1]
    for kind in draw(st.lists(st.sampled_from(sorted({**LIVE_KINDS, **REBOOT_KINDS})), max_size=3, unique=True)):
        docs.append(document(kind, {"name": draw(keys), "setting": draw(values)}))
    docs.append(document("VolumeConfig", {"name": "EPHEMERAL", "encryption": {"k": draw(values)}, "grow": True}))
    return docs


@st.composite
def edits(draw: st.DrawFn, cls: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(before, after): node documents, then the same with one setting of class `cls` given a
    value it did not have."""
    before = draw(patch_lists())
    after = json.loads(json.dumps(before))
    target = draw(st.sampled_from(["v1alpha1", "document"]))
    fresh = {"edited": draw(values)}
    if cls == "live" and target == "v1alpha1":
        deep_set(after[0], (*draw(st.sampled_from(PURE_LIVE)), "edited-key"), fresh)
    elif cls == "reboot" and target == "v1alpha1":
        deep_set(after[0], (*draw(st.sampled_from(PURE_REBOOT)), "edited-key"), fresh)
    elif cls == "live":
        kind = draw(st.sampled_from(sorted(LIVE_KINDS)))
        after.append(document(kind, {"name": "added", "setting": fresh}))
        after[-2]["grow"] = fresh  # the volume's live part
    else:
        kind = draw(st.sampled_from(sorted(REBOOT_KINDS)))
        after.append(document(kind, {"name": "added", "setting": fresh}))
        after[-2]["encryption"] = fresh
    return before, after


def hashes_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    # One string per document, as node patches come.
    return reboots.node_hashes(role(), [dump(d) for d in docs])


@given(edits("live"))
def test_a_live_edit_never_moves_the_reboot_hash(edit: tuple[list[Any], list[Any]]) -> None:
    before, after = edit
    assert moved(hashes_of(before), hashes_of(after)) == {"live"}
    assert reboots.reboot_changes([dump(d) for d in before], [dump(d) for d in after]) == []


@given(edits("reboot"))
def test_a_reboot_edit_never_moves_the_live_hash(edit: tuple[list[Any], list[Any]]) -> None:
    before, after = edit
    assert moved(hashes_of(before), hashes_of(after)) == {"reboot"}
    assert reboots.reboot_changes([dump(d) for d in before], [dump(d) for d in after]) != []


MIRROR = Path("/work/.mirror/siderolabs+talos/repo")


@pytest.mark.skipif(not MIRROR.is_dir(), reason="no siderolabs/talos mirror here")
def test_the_live_table_matches_the_upstream_comment() -> None:
    """Guards the table above against a transcription slip: the `// * .path` lines of
    CanApplyImmediate at v1.13.9, with the two spellings the code does not use corrected."""
    source = subprocess.run(
        ["git", "-C", str(MIRROR), "show", "v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = source.split("func (r *Runtime) CanApplyImmediate", 1)[1].split("\n}\n", 1)[0]
    listed = re.findall(r"//\s+\*\s+\.([A-Za-z.]+)", body)
    spelled = {"machine.certCANs": "machine.certSANs", "machine.controlplane": "machine.controlPlane"}
    assert sorted(tuple(spelled.get(p, p).split(".")) for p in listed) == sorted(LIVE_1_13)
