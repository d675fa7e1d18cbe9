"""Fleet status (`make status`): every node's real state against its stack file.

    pulumi stack output --stack <env> --show-secrets --json \\
        | python -m talos_fleet status stacks/Pulumi.<env>.yaml [--format table|markdown|json]

Credentials come from the stack's secret outputs `talosconfig` and `kubeconfig` (per cluster) and
live only in 0600 files in a private 0700 temporary directory, removed afterwards. Nothing secret
is printed: the running configuration is redacted before anything is compared or shown.

What is asked, in parallel with a bounded pool and a time budget per node (an unreachable node
costs at most the budget and is reported, never raised):

    talosctl version --short              the node answers; its Talos version (day2.server_version)
    talosctl get extensions -o json       its Image Factory schematic (day2.schematic_of)
    talosctl get machineconfig -o yaml    the running configuration (id `v1alpha1`) and, when
                                          present, the one persisted to disk (id `persistent`)
    talosctl etcd members                 control planes: is the node an etcd member
    kubectl get nodes -o json             once per cluster: kubelet version, Ready, cordoned

Control planes are asked directly (each its own endpoint); workers through the first control
plane that answered, as the day-2 steps reach nodes (apid proxies to any node).

**Staged configuration.** `talosctl apply-config --mode=staged` only writes the `persistent`
MachineConfig (SetPersistedConfig), while every other mode also replaces the active `v1alpha1`
one; at boot a config read back from the STATE partition becomes the active one and is not
persisted again (siderolabs/talos v1.13.9: internal/app/machined/internal/server/v1alpha1/
v1alpha1_server.go ApplyConfiguration, internal/app/machined/pkg/runtime/v1alpha1/
v1alpha1_runtime.go SetConfig/SetPersistedConfig, internal/app/machined/pkg/controllers/config/
acquire.go, pkg/machinery/resources/config/machine_config.go: "PersistentID might be ahead of the
current ID if the config was submitted in e.g. staged mode"). So a node has a staged configuration
waiting for a reboot when its `persistent` MachineConfig exists and differs from `v1alpha1`. (A
config applied in `try` mode looks the same until it is rolled back or applied for good.)

**Drift.** The generated base configuration (and its secrets) is not available offline, so the
comparison covers what the stack controls: the documents `snapshot()` lists for the node, without
the config-generation inputs.

* A multi-document kind (HostnameConfig, LinkConfig, Layer2VIPConfig, VolumeConfig, ...) must be
  present in the running configuration and equal to what the stack renders. Documents of the same
  (apiVersion, kind, name) are merged in layer order first, as Talos does (siderolabs/talos
  v1.13.9: pkg/machinery/config/configpatcher/strategic.go StrategicMerge). A document in the
  running configuration that the stack does not render is drift too, except the kinds config
  generation adds itself (pkg/machinery/config/generate/network.go: HostnameConfig).
* A partial v1alpha1 patch must be contained in the running v1alpha1 document: every field the
  patch sets has that value. Maps are compared key by key (the running document holds the
  generated fields as well); a list must appear in the running list in its order, possibly among
  other items, because Talos merges a patch's list by appending it to the generated one
  (pkg/machinery/config/merge/merge.go: "if it is a slice, merged by concatenating the right to
  the left"), so equality would flag every clean node whose base list is not empty. A field a
  later layer sets again is checked in that later document only, and a patch's zero values
  ("", 0, null) are skipped, since Talos' merge ignores them.

**Secrets.** Before anything is compared or printed, both sides are redacted: the fields Talos
itself redacts (pkg/machinery/config/types/v1alpha1/v1alpha1_provider.go Config.Redact; the
SecretDocument kinds' Redact: block/encryption.go EncryptionSpec, cri/registry_auth.go,
cri/registry_tls.go, network/wireguard.go, network/hcloud_vip.go, siderolink/siderolink.go),
and anything that decodes to a PEM private key. Where the stack renders a secret reference
(`<secret:name>`, patches.secret_stand_ins), the node's value at that place is shown as that
reference: the stack's value is not available here, so a secret is compared by presence, never by
value, and a secret value never reaches any output.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import dataclasses
import difflib
import html
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from talos_fleet import certs, commands, day2, naming
from talos_fleet.report import COMMENT_LIMIT
from talos_fleet.snapshot import ClusterView, Document, NodeView, snapshot
from talos_fleet.spec import Fleet

Format = Literal["table", "markdown", "json"]
FORMATS: tuple[Format, ...] = ("table", "markdown", "json")
JSON_FORMAT = 1
# Seconds one node may take for all its questions; one cluster's `kubectl get nodes` likewise.
DEFAULT_TIMEOUT = 30.0
DEFAULT_PARALLEL = 16
REDACTED = "<redacted>"
NOT_SET = "<not set>"
# Config generation adds these multi-document kinds itself (siderolabs/talos v1.13.9:
# pkg/machinery/config/generate/network.go: HostnameConfig{auto: stable} for contracts with
# multi-document network config); they are not drift when the stack does not render them.
GENERATED_KINDS = frozenset({"HostnameConfig"})

Tree = Any


class UsageError(Exception):
    """Status cannot run: a missing output, a missing tool. One message, exit status 2."""


def marker(stack: str) -> str:
    """The first line of the Markdown report: the scheduled workflow finds its issue by it."""
    return f"<!-- talos-fleet-status: {stack} -->"


# ---------------------------------------------------------------------------------------------
# Stack outputs


@dataclass(frozen=True)
class Credentials:
    talosconfig: str
    kubeconfig: str


def read_outputs(text: str, clusters: Iterable[str], stack: str) -> tuple[dict[str, Credentials], dict[str, set[str]]]:
    """Each cluster's credentials from `pulumi stack output --json --show-secrets`, and the
    hostnames the stack's `nodes` output lists per cluster (the machines `pulumi up` created)."""
    up = f"make up STACK={stack}"
    try:
        outputs = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError):
        outputs = None
    if not isinstance(outputs, dict) or not outputs:
        raise UsageError(f"no stack outputs on standard input: has `{up}` finished for this stack?")
    found: dict[str, Credentials] = {}
    for cluster in clusters:
        texts = []
        for name in ("talosconfig", "kubeconfig"):
            per_cluster = outputs.get(name)
            value = per_cluster.get(cluster) if isinstance(per_cluster, dict) else None
            if value == "[secret]":
                raise UsageError(f"the {name} output is hidden: pass --show-secrets to `pulumi stack output`")
            if not isinstance(value, str) or not value.strip():
                raise UsageError(
                    f"the stack outputs have no {name} for cluster {cluster!r}: run `{up}` first "
                    "(the kubeconfig is exported once the cluster passes its health check)"
                )
            texts.append(value)
        found[cluster] = Credentials(*texts)
    nodes = outputs.get("nodes")
    created = {
        c: set(hosts) for c, hosts in (nodes.items() if isinstance(nodes, dict) else ()) if isinstance(hosts, dict)
    }
    return found, created


# ---------------------------------------------------------------------------------------------
# What the tools print


def parse_machine_configs(output: str) -> dict[str, list[Tree]]:
    """`talosctl get machineconfig -o yaml`: per resource a YAML document `node:`, `metadata:`
    (with `id`), `spec:` (the whole configuration as one multi-document YAML string), separated
    by `---` (siderolabs/talos v1.13.9: cmd/talosctl/cmd/talos/output/yaml.go WriteResource;
    cosi-project/runtime v1.14.1: pkg/resource/resource.go MarshalYAML; the spec string is
    pkg/machinery/resources/config/machine_config.go v1alpha1Spec.MarshalYAML). Returns the
    parsed documents by resource id."""
    configs: dict[str, list[Tree]] = {}
    for resource in yaml.safe_load_all(output):
        if not isinstance(resource, dict):
            continue
        metadata, spec = resource.get("metadata") or {}, resource.get("spec")
        if isinstance(metadata, dict) and isinstance(spec, str):
            configs[str(metadata.get("id"))] = [d for d in yaml.safe_load_all(spec) if d is not None]
    return configs


def etcd_members(output: str) -> dict[str, bool]:
    """`talosctl etcd members`: hostname -> is a learner. A header line (NODE first when the
    request named a node), then one tabwriter row per member: [NODE] ID HOSTNAME PEER-URLS
    CLIENT-URLS LEARNER, URLs comma-joined (siderolabs/talos v1.13.9: cmd/talosctl/cmd/talos/
    etcd.go etcdMemberListCmd)."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    if not lines:
        return {}
    column = 2 if lines[0][0] == "NODE" else 1
    return {row[column]: row[-1] == "true" for row in lines[1:] if len(row) > column + 1}


@dataclass(frozen=True)
class KubeNode:
    kubelet: str | None
    ready: bool
    cordoned: bool


def kubernetes_nodes(output: str) -> dict[str, KubeNode]:
    """`kubectl get nodes -o json`: a `List` of Node objects (kubernetes/kubectl v0.36.3:
    pkg/cmd/get/get.go printGeneric). Per Node (kubernetes/api v0.36.3: core/v1/types.go):
    `status.nodeInfo.kubeletVersion`, the `Ready` entry of `status.conditions` (status "True"),
    `spec.unschedulable` (cordoned; omitted when false)."""
    document = json.loads(output)
    items = document.get("items", []) if isinstance(document, dict) and "items" in document else [document]
    found = {}
    for item in items:
        name = item.get("metadata", {}).get("name")
        status = item.get("status") or {}
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        found[str(name)] = KubeNode(
            kubelet=(status.get("nodeInfo") or {}).get("kubeletVersion"),
            ready=ready,
            cordoned=bool((item.get("spec") or {}).get("unschedulable", False)),
        )
    return found


# ---------------------------------------------------------------------------------------------
# Redaction

# Paths of the fields Talos redacts, `*` for any map key or list item. v1alpha1: siderolabs/talos
# v1.13.9 pkg/machinery/config/types/v1alpha1/v1alpha1_provider.go Config.Redact, yaml names from
# v1alpha1_types.go.
_VIP_TOKENS = (("equinixMetal", "apiToken"), ("hcloud", "apiToken"))
V1ALPHA1_SECRETS: tuple[tuple[str, ...], ...] = (
    ("machine", "token"),
    ("machine", "ca", "key"),
    ("machine", "registries", "config", "*", "auth", "password"),
    ("machine", "registries", "config", "*", "auth", "auth"),
    ("machine", "registries", "config", "*", "auth", "identityToken"),
    ("machine", "registries", "config", "*", "tls", "clientIdentity", "key"),
    ("machine", "network", "interfaces", "*", "wireguard", "privateKey"),
    *(("machine", "network", "interfaces", "*", "vip", *t) for t in _VIP_TOKENS),
    *(("machine", "network", "interfaces", "*", "vlans", "*", "vip", *t) for t in _VIP_TOKENS),
    ("machine", "systemDiskEncryption", "state", "keys", "*", "static", "passphrase"),
    ("machine", "systemDiskEncryption", "ephemeral", "keys", "*", "static", "passphrase"),
    ("cluster", "secret"),
    ("cluster", "token"),
    ("cluster", "aescbcEncryptionSecret"),
    ("cluster", "secretboxEncryptionSecret"),
    ("cluster", "serviceAccount", "key"),
    ("cluster", "ca", "key"),
    ("cluster", "aggregatorCA", "key"),
    ("cluster", "etcd", "ca", "key"),
)
# The SecretDocument kinds (same tag, pkg/machinery/config/types/...): block/encryption.go
# EncryptionSpec.Redact for every volume kind, cri/registry_auth.go, cri/registry_tls.go,
# network/wireguard.go, network/hcloud_vip.go, siderolink/siderolink.go (uniqueToken here,
# apiUrl's jointoken below).
_STATIC_KEYS = (("encryption", "keys", "*", "static", "passphrase"),)
DOCUMENT_SECRETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "VolumeConfig": _STATIC_KEYS,
    "UserVolumeConfig": _STATIC_KEYS,
    "RawVolumeConfig": _STATIC_KEYS,
    "SwapVolumeConfig": _STATIC_KEYS,
    "RegistryAuthConfig": (("password",), ("auth",), ("identityToken",)),
    "RegistryTLSConfig": (("clientIdentity", "key"),),
    "WireguardConfig": (("privateKey",), ("peers", "*", "presharedKey")),
    "HCloudVIPConfig": (("apiToken",),),
    "SideroLinkConfig": (("uniqueToken",),),
}


def _redact_path(tree: Tree, path: Sequence[str]) -> Tree:
    if not path:
        # Talos redacts only what is set (redactStr/redactBytes keep an empty value).
        return REDACTED if tree not in (None, "", b"") and not _is_stand_in(tree) else tree
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        keys = list(tree) if head == "*" else [head] if head in tree else []
        return {k: (_redact_path(v, rest) if k in keys else v) for k, v in tree.items()}
    if isinstance(tree, list) and head == "*":
        return [_redact_path(v, rest) for v in tree]
    return tree


# How renders hold a secret: its name, never its value (patches.secret_stand_ins).
_STAND_IN = re.compile(r"^<secret:[^<>]+>$")


def _is_stand_in(value: Tree) -> bool:
    return isinstance(value, str) and bool(_STAND_IN.match(value))


def _private_key(value: str) -> bool:
    """PEM private keys, also as the base64 Talos stores key bytes in (x509.PEMEncoded*)."""
    if "PRIVATE KEY" in value:
        return True
    compact = "".join(value.split())
    if len(compact) < 40 or not compact.startswith("LS0t"):  # base64 of "---"
        return False
    try:
        return b"PRIVATE KEY" in base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return False


def _redact_keys(tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {k: _redact_keys(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_redact_keys(v) for v in tree]
    if isinstance(tree, str) and _private_key(tree):
        return REDACTED
    return tree


def _redact_url(url: Tree) -> Tree:
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    query = [(k, REDACTED if k == "jointoken" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="<>"))) if parts.query else url


# Field names that hold a secret in any kind: used only on documents the stack does not render
# (shown whole, never compared), whose kind may be one this list of Talos' fields does not know.
_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passphrase|privatekey|presharedkey|apikey|^key$)")


def _redact_named(tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {
            k: REDACTED if _SECRET_NAME.search(str(k)) and v not in (None, "") else _redact_named(v)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_redact_named(v) for v in tree]
    return tree


def redact(document: Tree) -> Tree:
    """One configuration document with every secret field replaced by REDACTED."""
    if not isinstance(document, dict):
        return _redact_keys(document)
    kind = document.get("kind")
    paths = V1ALPHA1_SECRETS if kind is None else DOCUMENT_SECRETS.get(str(kind), ())
    for path in paths:
        document = _redact_path(document, path)
    if kind == "SideroLinkConfig" and "apiUrl" in document:
        document = {**document, "apiUrl": _redact_url(document["apiUrl"])}
    return _redact_keys(document)


def adopt_references(stack: Tree, running: Tree) -> Tree:
    """`running`, with the stack's secret references put where the stack has one and the node
    has a value: the secret is compared by presence, and printed as its reference."""
    if _is_stand_in(stack):
        return stack if running not in (None, "", NOT_SET) else running
    if isinstance(stack, dict) and isinstance(running, dict):
        return {k: (adopt_references(stack[k], v) if k in stack else v) for k, v in running.items()}
    if isinstance(stack, list) and isinstance(running, list):
        return [adopt_references(stack[i], v) if i < len(stack) else v for i, v in enumerate(running)]
    return running


# ---------------------------------------------------------------------------------------------
# Drift


@dataclass(frozen=True)
class Drift:
    """One document of one node that differs: its name, where it comes from, a unified diff of
    redacted text."""

    document: str
    sources: tuple[str, ...]
    diff: str


class _Missing:
    def __repr__(self) -> str:
        return NOT_SET


MISSING: Any = _Missing()


def _doc_id(document: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(document.get("apiVersion", "")), str(document["kind"]), str(document.get("name", "")))


def _doc_name(doc_id: tuple[str, str, str]) -> str:
    return f"{doc_id[1]} {doc_id[2]}".strip()


def merge(left: Tree, right: Tree) -> Tree:
    """Talos' merge of a patch onto a document: maps key by key, lists appended, other values
    replaced unless zero (siderolabs/talos v1.13.9: pkg/machinery/config/merge/merge.go)."""
    if isinstance(left, dict) and isinstance(right, dict):
        out = dict(left)
        for key, value in right.items():
            out[key] = merge(left[key], value) if key in left else value
        return out
    if isinstance(left, list) and isinstance(right, list):
        return [*left, *right]
    return left if _zero(right) else right


def _zero(value: Tree) -> bool:
    return value is None or (not isinstance(value, bool) and value in ("", 0))


def contains(expected: Tree, running: Tree) -> bool:
    """Every field `expected` sets has that value in `running`; lists in order, among others."""
    if isinstance(expected, dict):
        return isinstance(running, dict) and all(
            _zero(v) or contains(v, running.get(k, MISSING)) for k, v in expected.items()
        )
    if isinstance(expected, list):
        if not isinstance(running, list):
            return False
        items = iter(running)
        return all(any(contains(want, have) for have in items) for want in expected)
    return running is not MISSING and bool(expected == running and type(expected) is type(running))


def _leaves(tree: Tree, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Tree]]:
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, (*prefix, str(key)))
    else:
        yield prefix, tree


def _without(tree: Tree, paths: set[tuple[str, ...]], prefix: tuple[str, ...] = ()) -> Tree:
    """`tree` minus the leaves at `paths` (fields a later layer sets again)."""
    if not isinstance(tree, dict):
        return tree
    out = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if path in paths:
            continue
        kept = _without(value, paths, path)
        if not (isinstance(kept, dict) and not kept and isinstance(value, dict) and value):
            out[key] = kept
    return out


def _overridden(earlier: Tree, later: Sequence[Tree]) -> set[tuple[str, ...]]:
    """Leaves of `earlier` that a later patch replaces (lists are appended to, not replaced)."""
    later_leaves = [(p, v) for doc in later for p, v in _leaves(doc) if not _zero(v)]
    out = set()
    for path, value in _leaves(earlier):
        for other, other_value in later_leaves:
            same = other == path and not (isinstance(value, list) and isinstance(other_value, list))
            nested = other[: len(path)] == path or path[: len(other)] == other
            if same or (nested and other != path):
                out.add(path)
    return out


def _project(expected: Tree, running: Tree) -> Tree:
    """The running values at the places `expected` sets, shaped like it."""
    if running is MISSING:
        return NOT_SET
    if isinstance(expected, dict) and isinstance(running, dict):
        return {k: _project(v, running.get(k, MISSING)) for k, v in expected.items() if not _zero(v)}
    return running


def _text(tree: Tree) -> str:
    if tree is MISSING:
        return "(absent)\n"
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _diff(stack: Tree, running: Tree, label: str, host: str) -> str:
    lines = difflib.unified_diff(
        _text(stack).splitlines(keepends=True),
        _text(running).splitlines(keepends=True),
        fromfile=f"stack: {label}",
        tofile=f"running on {host}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def drift(documents: Sequence[Document], running: Sequence[Tree], host: str) -> list[Drift]:
    """The node's drift, per document: `documents` is what the stack renders for the node
    (snapshot order), `running` its parsed running configuration. Both sides are redacted here."""
    rendered = [(d, yaml.safe_load(d.yaml)) for d in documents if d.layer != "generated"]
    live = [redact(d) for d in running if isinstance(d, dict)]
    live_v1alpha1: Tree = next((d for d in live if "kind" not in d), {})
    live_docs = {_doc_id(d): d for d in live if "kind" in d}
    out: list[Drift] = []

    v1alpha1 = [(d, redact(tree)) for d, tree in rendered if isinstance(tree, dict) and "kind" not in tree]
    for i, (doc, patch) in enumerate(v1alpha1):
        effective = _without(patch, _overridden(patch, [t for _, t in v1alpha1[i + 1 :]]))
        if not effective:
            continue
        if not contains(effective, adopt_references(effective, live_v1alpha1)):
            projected = adopt_references(effective, _project(effective, live_v1alpha1))
            out.append(Drift(doc.label, (doc.label,), _diff(effective, projected, doc.label, host)))

    merged: dict[tuple[str, str, str], tuple[list[Document], Tree]] = {}
    for doc, tree in rendered:
        if isinstance(tree, dict) and "kind" in tree:
            key = _doc_id(tree)
            sources, so_far = merged.get(key, ([], None))
            merged[key] = ([*sources, doc], redact(tree) if so_far is None else merge(so_far, redact(tree)))
    for key, (sources, expected) in merged.items():
        have = adopt_references(expected, live_docs.get(key, MISSING))
        if have != expected:
            label = " + ".join(d.label for d in sources)
            out.append(Drift(label, tuple(d.label for d in sources), _diff(expected, have, label, host)))
    for key, document in live_docs.items():
        if key not in merged and key[1] not in GENERATED_KINDS:
            label = f"{_doc_name(key)} (not in the stack)"
            out.append(Drift(label, (), _diff(MISSING, _redact_named(document), label, host)))
    return out


def staged(configs: Mapping[str, list[Tree]]) -> bool:
    """A configuration waiting for a reboot (module docstring): compared unredacted, in memory."""
    persistent = configs.get("persistent")
    return persistent is not None and persistent != configs.get("v1alpha1")


# ---------------------------------------------------------------------------------------------
# Collection


@dataclass
class NodeStatus:
    cluster: str
    hostname: str
    role: str
    address: str
    talos_target: str
    schematic_target: str | None
    kubernetes_target: str
    reachable: bool = False
    error: str | None = None
    talos: str | None = None
    schematic: str | None = None
    kubernetes: str | None = None
    ready: bool | None = None
    cordoned: bool | None = None
    etcd: Literal["member", "learner", "not a member"] | None = None
    staged: bool | None = None
    drift: list[Drift] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.cluster}/{self.hostname}"

    @property
    def schematic_ok(self) -> bool | None:
        if self.schematic is None or self.schematic_target is None:
            return None
        return self.schematic == self.schematic_target

    def problems(self) -> list[str]:
        if not self.reachable:
            return [f"unreachable: {self.error}"]
        out = [f"Talos {self.talos}, target {self.talos_target}"] if self.talos != self.talos_target else []
        if self.schematic_ok is False:
            out.append(f"schematic {_short(self.schematic)}, target {_short(self.schematic_target)}")
        if self.kubernetes is not None and self.kubernetes != self.kubernetes_target:
            out.append(f"Kubernetes {self.kubernetes}, target {self.kubernetes_target}")
        if self.ready is False:
            out.append("not Ready")
        if self.cordoned:
            out.append("cordoned")
        if self.role == "controlplane" and self.etcd in ("learner", "not a member"):
            out.append(f"etcd: {self.etcd}")
        if self.staged:
            out.append("a staged configuration waits for a reboot")
        if self.drift:
            out.append("config drift: " + "; ".join(d.document for d in self.drift))
        return out + self.notes


@dataclass
class ClusterStatus:
    name: str
    nodes: list[NodeStatus]
    errors: list[str] = field(default_factory=list)
    certificates: list[certs.Expiry] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"cluster {self.name}: {e}" for e in self.errors]
        for cert in self.certificates:
            if cert.warning:
                out.append(f"cluster {self.name}: {cert.name} {_expires(cert)}; renew: {cert.renew}")
        return out + [f"{n.name}: {p}" for n in self.nodes for p in n.problems()]


@dataclass
class Status:
    stack: str
    clusters: list[ClusterStatus]

    def problems(self) -> list[str]:
        return [p for c in self.clusters for p in c.problems()]

    @property
    def nodes(self) -> list[NodeStatus]:
        return [n for c in self.clusters for n in c.nodes]


def reapply_command(stack: str, cluster: str, hostname: str) -> str:
    """Apply the stack's configuration to one node again. A plain `make up` changes nothing: the
    provider never reads a node back (siderolabs/terraform-provider-talos v0.11.0:
    pkg/talos/talos_machine_configuration_apply_resource.go, Read is empty), so the node's
    ConfigurationApply is replaced, which applies its configuration again (Create; the delete
    does nothing without on_destroy, Delete), and nothing else is touched (`--target-replace`:
    pulumi/pulumi v3.259.0 pkg/cmd/pulumi/operations/up.go)."""
    urn = (
        f"urn:pulumi:{stack}::talos-fleet::{naming.COMPONENT_TYPE}$talos:machine/configurationApply:"
        f"ConfigurationApply::{naming.node_apply(cluster, hostname)}"
    )
    return commands.pulumi_command(stack, f"up --target-replace '{urn}'")


def _short(schematic: str | None) -> str:
    return "?" if schematic is None else schematic[:12]


def _expires(cert: certs.Expiry) -> str:
    if cert.days_left < 0:
        return f"expired {-cert.days_left} day(s) ago ({cert.not_after:%Y-%m-%d})"
    return f"expires in {cert.days_left} day(s) ({cert.not_after:%Y-%m-%d})"


class Progress:
    """`queried n/N nodes` on stderr, about twenty times in a run, and always the last."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.lock = total, 0, threading.Lock()
        self.step = max(1, math.ceil(total / 20))

    def tick(self) -> None:
        with self.lock:
            self.done += 1
            if self.done % self.step == 0 or self.done == self.total:
                print(f"talos-fleet: queried {self.done}/{self.total} nodes", file=sys.stderr, flush=True)


def _last_line(error: str) -> str:
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no answer")[:300]


class _Budget:
    """One node's time budget: each call gets what is left of it."""

    def __init__(self, tools: day2.Tools, seconds: float) -> None:
        self.tools, self.deadline, self.seconds = tools, time.monotonic() + seconds, seconds

    def talosctl(self, node: str, *args: str) -> tuple[int, str, str]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise day2.StepError(f"no answer within {self.seconds:.0f} s")
        done = dataclasses.replace(self.tools, timeout=left).talosctl(node, *args, check=False)
        return done.returncode, done.stdout, done.stderr


def query_node(status: NodeStatus, tools: day2.Tools, seconds: float, documents: Sequence[Document]) -> NodeStatus:
    """Everything talosctl tells about one node, within `seconds`; never raises."""
    budget = _Budget(tools, seconds)
    try:
        code, out, err = budget.talosctl(status.address, "version", "--short")
        if code != 0:
            status.error = _last_line(err or out)
            return status
        status.reachable = True
        try:
            status.talos = str(day2.server_version(out, status.hostname))
        except day2.StepError as error:
            status.talos, status.notes = "?", [*status.notes, str(error)]
        code, out, err = budget.talosctl(status.address, "get", "extensions", "--output", "json")
        if code == 0:
            status.schematic = day2.schematic_of(out)
        code, out, err = budget.talosctl(status.address, "get", "machineconfig", "--output", "yaml")
        if code != 0:
            status.notes.append(f"could not read the running configuration: {_last_line(err or out)}")
        else:
            configs = parse_machine_configs(out)
            if "v1alpha1" not in configs:
                status.notes.append("the node lists no active machine configuration")
            else:
                status.staged = staged(configs)
                status.drift = drift(documents, configs["v1alpha1"], status.hostname)
        if status.role == "controlplane":
            code, out, err = budget.talosctl(status.address, "etcd", "members")
            members = etcd_members(out) if code == 0 else {}
            learner = members.get(status.hostname)
            if learner is None:
                status.etcd = "not a member"
            else:
                status.etcd = "learner" if learner else "member"
            if code != 0:
                status.notes.append(f"etcd members: {_last_line(err or out)}")
    except day2.StepError as error:
        # A timeout: the node stopped answering within its budget.
        if not status.reachable:
            status.error = str(error)
        else:
            status.notes.append(str(error))
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as error:
        status.notes.append(f"could not read talosctl's answer ({type(error).__name__})")
    return status


def query_kubernetes(tools: day2.Tools, seconds: float) -> dict[str, KubeNode] | str:
    """The cluster's Nodes, or why they could not be read."""
    try:
        done = dataclasses.replace(tools, timeout=seconds).kubectl(
            "get", "nodes", "--output", "json", f"--request-timeout={max(1, int(seconds))}s", check=False
        )
    except day2.StepError as error:
        return str(error)
    if done.returncode != 0:
        return f"kubectl get nodes: {_last_line(done.stderr or done.stdout)}"
    try:
        return kubernetes_nodes(done.stdout)
    except (ValueError, AttributeError, TypeError):
        return "kubectl get nodes printed something that is not a node list"


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    day2._write_private(path, text)
    return path


@contextmanager
def _credential_files(credentials: Mapping[str, Credentials]) -> Iterator[dict[str, dict[str, str]]]:
    """Per cluster, an environment with TALOSCONFIG and KUBECONFIG: 0600 files in a private
    (0700) directory that is removed afterwards, whatever happens."""
    directory = tempfile.mkdtemp(prefix="talos-fleet-status-")
    try:
        environments = {}
        for i, (cluster, creds) in enumerate(credentials.items()):
            environments[cluster] = {
                **os.environ,
                "TALOSCONFIG": _write_private(directory, f"{i}.talosconfig", creds.talosconfig),
                "KUBECONFIG": _write_private(directory, f"{i}.kubeconfig", creds.kubeconfig),
            }
        yield environments
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _require_tools() -> None:
    missing = [tool for tool in ("talosctl", "kubectl") if shutil.which(tool) is None]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} not installed (not on PATH); make status asks every node with them. "
            f"Install talosctl ({day2.TALOSCTL_INSTALL}) and kubectl ({day2.KUBECTL_INSTALL})"
        )


def _targets(view: ClusterView, node: NodeView) -> NodeStatus:
    return NodeStatus(
        cluster=view.name,
        hostname=node.hostname,
        role=node.role,
        address=node.address,
        talos_target=node.talos_version,
        schematic_target=view.schematic_id,
        kubernetes_target=node.kubernetes_version,
    )


def collect(
    fleet: Fleet,
    stack: str,
    credentials: Mapping[str, Credentials],
    created: Mapping[str, set[str]],
    now: datetime,
    timeout: float = DEFAULT_TIMEOUT,
    parallel: int = DEFAULT_PARALLEL,
) -> Status:
    """Ask every node of every cluster, control planes first (each its own endpoint), then the
    workers through the first control plane that answered; Kubernetes once per cluster."""
    _require_tools()
    views = snapshot(fleet).clusters
    clusters = {v.name: ClusterStatus(v.name, [_targets(v, n) for n in v.nodes]) for v in views}
    documents = {(v.name, n.hostname): n.documents for v in views for n in v.nodes}
    for cluster in clusters.values():
        try:
            cluster.certificates = certs.cluster_expiries(
                credentials[cluster.name].talosconfig, credentials[cluster.name].kubeconfig, stack, now
            )
        except certs.CertError as error:
            cluster.errors.append(f"certificates: {error}")
    pending: list[NodeStatus] = []
    for cluster in clusters.values():
        for node in cluster.nodes:
            if cluster.name in created and node.hostname not in created[cluster.name]:
                node.error = f"not created yet (not in the stack's `nodes` output): run `make up STACK={stack}`"
            else:
                pending.append(node)
    progress = Progress(len(pending))

    def ask(node: NodeStatus, tools: day2.Tools) -> NodeStatus:
        try:
            return query_node(node, tools, timeout, documents[(node.cluster, node.hostname)])
        finally:
            progress.tick()

    with (
        _credential_files(credentials) as environments,
        concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool,
    ):
        tools = {c: day2.Tools(env, "", timeout, echo=False) for c, env in environments.items()}
        kube = {c: pool.submit(query_kubernetes, tools[c], timeout) for c in clusters}
        first = [
            pool.submit(ask, n, dataclasses.replace(tools[n.cluster], endpoint=n.address))
            for n in pending
            if n.role == "controlplane"
        ]
        concurrent.futures.wait(first)
        later = []
        for cname, cluster in clusters.items():
            answering = [n for n in cluster.nodes if n.role == "controlplane" and n.reachable]
            for node in (n for n in pending if n.cluster == cname and n.role != "controlplane"):
                if answering:
                    endpoint = dataclasses.replace(tools[cname], endpoint=answering[0].address)
                    later.append(pool.submit(ask, node, endpoint))
                else:
                    node.error = "no control plane of the cluster answers (workers are reached through one)"
                    progress.tick()
        concurrent.futures.wait(later)
        for cname, cluster in clusters.items():
            nodes = kube[cname].result()
            if isinstance(nodes, str):
                cluster.errors.append(f"Kubernetes API: {nodes}")
                continue
            for node in cluster.nodes:
                known = nodes.get(node.hostname)
                if known is None:
                    if node.reachable:
                        node.notes.append("no Kubernetes Node of this name")
                    continue
                node.kubernetes, node.ready, node.cordoned = known.kubelet, known.ready, known.cordoned
    return Status(stack, list(clusters.values()))


# ---------------------------------------------------------------------------------------------
# Reports

COLUMNS = (
    "cluster",
    "node",
    "role",
    "reachable",
    "Talos",
    "schematic",
    "Kubernetes",
    "Ready",
    "cordoned",
    "etcd",
    "staged",
    "drift",
)


def _yes(value: bool | None) -> str:
    return "?" if value is None else "yes" if value else "no"


def _arrow(running: str | None, target: str) -> str:
    if running is None:
        return "?"
    return running if running == target else f"{running}→{target}"


def _cells(node: NodeStatus) -> list[str]:
    if not node.reachable:
        etcd = "-" if node.role != "controlplane" else "?"
        return [node.cluster, node.hostname, node.role, "NO", "?", "?", "?", "?", "?", etcd, "?", "?"]
    drift = "?" if node.drift is None else "none" if not node.drift else f"{len(node.drift)} doc(s)"
    return [
        node.cluster,
        node.hostname,
        node.role,
        "yes",
        _arrow(node.talos, node.talos_target),
        _yes(node.schematic_ok),
        _arrow(node.kubernetes, node.kubernetes_target),
        _yes(node.ready),
        _yes(node.cordoned),
        "-" if node.role != "controlplane" else node.etcd or "?",
        _yes(node.staged),
        drift,
    ]


def _headline(status: Status, problems: Sequence[str]) -> str:
    what = f"stack {status.stack}: {len(status.nodes)} node(s) in {len(status.clusters)} cluster(s)"
    verdict = f"{len(problems)} problem(s)" if problems else "all healthy, no drift, certificates valid"
    return f"{what}, {verdict}"


def _cert_line(cluster: str, cert: certs.Expiry) -> str:
    flag = "WARNING " if cert.warning else ""
    renew = f"; renew: {cert.renew}" if cert.warning else ""
    return f"{flag}{cluster}: {cert.name} {_expires(cert)}{renew}"


def table(status: Status) -> str:
    rows = [list(COLUMNS), *(_cells(n) for n in status.nodes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    problems = status.problems()
    lines = [_headline(status, problems), ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    drifted = [n for n in status.nodes if n.drift]
    if drifted:
        lines += ["", "Drift (adopt the change into the stack file and `make up`, or apply the stack's again):"]
        for node in drifted:
            for d in node.drift or ():
                lines += ["", f"{node.name}: {d.document}", d.diff.rstrip("\n")]
            lines += ["", f"To apply the stack's configuration to {node.name} again: {_reapply(status, node)}"]
    lines += ["", "Certificates:"]
    lines += [_cert_line(c.name, cert) for c in status.clusters for cert in c.certificates]
    if problems:
        lines += ["", "Problems:"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def _reapply(status: Status, node: NodeStatus) -> str:
    return reapply_command(status.stack, node.cluster, node.hostname)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def markdown(status: Status) -> str:
    """The scheduled issue's body: marker line first; diffs are left out past the comment limit."""
    problems = status.problems()
    out = [marker(status.stack), f"## talos-fleet status: `{status.stack}`", ""]
    headline = _headline(status, problems)
    out += [f"**{headline}**" if problems else headline, ""]
    if problems:
        out += ["> [!WARNING]", "> Needs attention:"] + [f"> - {_md_cell(p)}" for p in problems] + [""]
    out += ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    out += ["| " + " | ".join(_md_cell(c) for c in _cells(n)) + " |" for n in status.nodes]
    out += ["", "### Certificates", "", "| cluster | certificate | expires | days left | renew |"]
    out += ["| --- | --- | --- | --- | --- |"]
    for cluster in status.clusters:
        for cert in cluster.certificates:
            days = f"**{cert.days_left}**" if cert.warning else str(cert.days_left)
            out.append(
                f"| {cluster.name} | {cert.name} | {cert.not_after:%Y-%m-%d} | {days} | {_md_cell(cert.renew)} |"
            )
    drifted = [(n, d) for n in status.nodes for d in n.drift or ()]
    head = "\n".join(out) + "\n"
    if not drifted:
        return head
    parts = ["", "### Drift", "", "Adopt the change into the stack file and `make up`, or apply the stack's again:", ""]
    parts += [f"- {n.name}: `{_reapply(status, n)}`" for n in status.nodes if n.drift]
    body, left_out = "\n".join([*parts, ""]) + "\n", 0
    for node, d in drifted:
        fence = _fence(d.diff)
        summary = html.escape(f"{node.name}: {d.document}")
        block = f"<details><summary>{summary}</summary>\n\n{fence}diff\n{d.diff}{fence}\n\n</details>\n"
        if len(head) + len(body) + len(block) > COMMENT_LIMIT - 200:
            left_out += 1
            continue
        body += block
    if left_out:
        body += f"\n> {left_out} more diff(s) do not fit here: run `make status STACK={status.stack}`.\n"
    return head + body


def to_json(status: Status) -> str:
    def node(n: NodeStatus) -> dict[str, Any]:
        return {
            "cluster": n.cluster,
            "hostname": n.hostname,
            "role": n.role,
            "address": n.address,
            "reachable": n.reachable,
            "error": n.error,
            "talos": {"running": n.talos, "target": n.talos_target},
            "schematic": {"running": n.schematic, "target": n.schematic_target, "ok": n.schematic_ok},
            "kubernetes": {"running": n.kubernetes, "target": n.kubernetes_target},
            "ready": n.ready,
            "cordoned": n.cordoned,
            "etcd": n.etcd,
            "staged": n.staged,
            "drift": None
            if n.drift is None
            else [{"document": d.document, "sources": list(d.sources), "diff": d.diff} for d in n.drift],
            "notes": n.notes,
            "problems": n.problems(),
            "reapply": _reapply(status, n) if n.drift else None,
        }

    def cert(c: certs.Expiry) -> dict[str, Any]:
        return {
            "name": c.name,
            "not_after": c.not_after.isoformat(),
            "days_left": c.days_left,
            "warning": c.warning,
            "renew": c.renew,
        }

    problems = status.problems()
    document = {
        "format": JSON_FORMAT,
        "stack": status.stack,
        "ok": not problems,
        "problems": problems,
        "clusters": [
            {
                "name": c.name,
                "errors": c.errors,
                "certificates": [cert(x) for x in c.certificates],
                "nodes": [node(n) for n in c.nodes],
            }
            for c in status.clusters
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


RENDERERS: dict[str, Callable[[Status], str]] = {"table": table, "markdown": markdown, "json": to_json}


def command(
    fleet: Fleet,
    path: Path,
    outputs: str,
    fmt: str = "table",
    out: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    parallel: int = DEFAULT_PARALLEL,
    now: datetime | None = None,
) -> int:
    """`python -m talos_fleet status`: 0 all good, 1 anything needs a person, 2 status could
    not run (one message on stderr)."""
    stack = commands.stack_name(path) or path.stem
    try:
        credentials, created = read_outputs(outputs, fleet.clusters, stack)
        status = collect(fleet, stack, credentials, created, now or datetime.now(UTC), timeout, parallel)
    except UsageError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2
    text = RENDERERS[fmt](status)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    else:
        sys.stdout.write(text)
    return 1 if status.problems() else 0
