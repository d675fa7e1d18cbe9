"""Which config changes apply live and which need a (drained) reboot. Pure.

A node's config is its role's generated config (the getConfiguration inputs and the cluster and
role patches) plus the node's own patches. Each patch is divided, per path, into the part Talos
applies to a running node and the part that needs a reboot; the config rollout reboots a node
iff the hash of its reboot part changes (`node_hashes`), and `make plan` names the same paths
(`reboot_changes`).

The rule is the union of two upstream statements, because the nodes run Talos 1.13 machinery
(through the provider) today and 1.14 next:

* Talos 1.13 applies a v1alpha1 change live only when it is confined to a fixed list of
  subtrees; any other v1alpha1 change needs a reboot, and documents other than v1alpha1 are
  never compared, so they are live (siderolabs/talos
  v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go lines 129-216,
  `CanApplyImmediate`; the same list is published on
  https://docs.siderolabs.com/talos/v1.13/configure-your-talos-cluster/system-configuration/editing-machine-configuration
  except that the code also keeps `.machine.seccompProfiles` live).
* Talos 1.14 never reboots by itself and publishes "Changes which might need a reboot":
  `.cluster.etcd`, environment variables, kernel modules, volume encryption keys and
  SecurityProfileConfig (siderolabs/docs
  40a533f:public/talos/v1.15/configure-your-talos-cluster/system-configuration/editing-machine-configuration.mdx,
  canonical URL the v1.14 page). That list says it is not exhaustive; the 1.13 rule covers the
  rest of v1alpha1.

`.machine.install` (and UnattendedInstallConfig) counts as live: 1.13 keeps it live, and the
same 1.14 page says it is only read at install or upgrade, "not even after a reboot". A change
to it (a new installer image) is therefore applied without a reboot and takes effect at the
next upgrade.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import yaml

Document = Any
"""One parsed YAML document of a patch: a mapping, or a JSON patch (a list of operations)."""

LIVE: Final = "live"
REBOOT: Final = "reboot"

# A rule is LIVE, REBOOT, or a mapping key -> rule with "*" for every other key.
Rule = str | Mapping[str, "Rule"]

# The subtrees 1.13 copies from the running config before comparing (so changes there are
# live), keyed by their YAML names: siderolabs/talos
# v1.13.9:internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go lines 177-205, the
# names from the yaml tags in v1.13.9:pkg/machinery/config/types/v1alpha1/v1alpha1_types.go
# (e.g. MachineCertSANs is `certSANs`, MachineControlPlane is `controlPlane`).
MACHINE_LIVE_1_13: Final = (
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
)
FEATURES_LIVE_1_13: Final = (
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
)

# The 1.14 "might need a reboot" list (siderolabs/docs 40a533f, page above), as paths inside
# subtrees 1.13 keeps live, and as whole document kinds (their kinds: siderolabs/talos
# v1.14.0-rc.1:pkg/machinery/config/types/runtime/{environment,kernel_module,security_profile_config}.go).
REBOOT_1_14_V1ALPHA1: Final = (("cluster", "etcd"), ("machine", "env"), ("machine", "kernel", "modules"))
REBOOT_1_14_KINDS: Final = ("EnvironmentConfig", "KernelModuleConfig", "SecurityProfileConfig")
# "the encryption section of a volume document": every volume kind with an `encryption` field
# (siderolabs/talos v1.14.0-rc.1:pkg/machinery/config/types/block/{volume,user_volume,
# raw_volume,swap_volume}_config.go). The whole section, not only its keys: changing a cipher or
# provider of an existing volume is no more live than rotating a key.
ENCRYPTED_VOLUME_KINDS: Final = ("VolumeConfig", "UserVolumeConfig", "RawVolumeConfig", "SwapVolumeConfig")

# Documents with equal apiVersion, kind and name merge (siderolabs/talos
# v1.13.9:pkg/machinery/config/configpatcher/strategic.go), so both parts keep them.
_NAME_KEYS: Final = ("apiVersion", "kind", "name")
# `$patch: delete` removes the mapping it sits in (siderolabs/talos
# v1.13.9:pkg/machinery/config/configloader/internal/decoder/delete.go): below a mixed subtree it
# may remove reboot and live settings alike, so it goes into both parts.
_DIRECTIVE: Final = "$patch"


def _v1alpha1_rule() -> Rule:
    machine: dict[str, Rule] = {"*": REBOOT, **dict.fromkeys(MACHINE_LIVE_1_13, LIVE)}
    machine["features"] = {"*": REBOOT, **dict.fromkeys(FEATURES_LIVE_1_13, LIVE)}
    rule: dict[str, Rule] = {"*": REBOOT, "debug": LIVE, "cluster": LIVE, "machine": machine}
    for path in REBOOT_1_14_V1ALPHA1:
        node = rule
        for key in path[:-1]:
            child = node[key]
            if isinstance(child, str):
                child = node[key] = {"*": child}
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = REBOOT
    return rule


V1ALPHA1_RULE: Final[Rule] = _v1alpha1_rule()


def kind_rule(kind: str) -> Rule:
    """The rule for a document other than v1alpha1 (1.13 applies all of them live)."""
    if kind in REBOOT_1_14_KINDS:
        return REBOOT
    if kind in ENCRYPTED_VOLUME_KINDS:
        return {"*": LIVE, "encryption": REBOOT}
    return LIVE


class _Missing:
    """Marks "this part has nothing here" (None is a YAML value)."""


_MISSING: Final = _Missing()


def _split_value(value: Any, rule: Rule) -> tuple[Any, Any]:
    if rule == LIVE:
        return value, _MISSING
    if rule == REBOOT:
        return _MISSING, value
    assert not isinstance(rule, str)
    if not isinstance(value, dict):
        # A scalar or list where the rule expects a mapping (e.g. `machine: null`): it may touch
        # any setting below, so it counts as both.
        return value, value
    live: dict[str, Any] = {}
    reboot: dict[str, Any] = {}
    for key, item in value.items():
        if key == _DIRECTIVE:
            live[key] = reboot[key] = item
            continue
        left, right = _split_value(item, rule.get(key, rule["*"]))
        if left is not _MISSING:
            live[key] = left
        if right is not _MISSING:
            reboot[key] = right
    return (live if live else _MISSING), (reboot if reboot else _MISSING)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _rule_at(rule: Rule, keys: Sequence[str]) -> Rule:
    for key in keys:
        if isinstance(rule, str):
            return rule
        rule = rule.get(key, rule["*"])
    return rule


def _split_document(doc: Any) -> tuple[Any, Any]:
    if isinstance(doc, list):
        # A JSON patch (RFC 6902), applied to the v1alpha1 document: each operation by its path;
        # an operation above a mixed subtree (e.g. replacing all of `/machine`) counts as both.
        live_ops: list[Any] = []
        reboot_ops: list[Any] = []
        for op in doc:
            path = op.get("path") if isinstance(op, dict) else None
            rule = _rule_at(V1ALPHA1_RULE, _pointer(path)) if isinstance(path, str) else REBOOT
            if rule != REBOOT:
                live_ops.append(op)
            if rule != LIVE:
                reboot_ops.append(op)
        return (live_ops or _MISSING), (reboot_ops or _MISSING)
    if not isinstance(doc, dict):
        return (_MISSING, _MISSING) if doc is None else (_MISSING, doc)
    kind = doc.get("kind")
    if not isinstance(kind, str):
        return _split_value(doc, V1ALPHA1_RULE)
    named = {k: doc[k] for k in _NAME_KEYS if k in doc}
    rest = {k: v for k, v in doc.items() if k not in named}
    if not rest:
        return doc, _MISSING
    left, right = _split_value(rest, kind_rule(kind))
    return (
        _MISSING if left is _MISSING else {**named, **left},
        _MISSING if right is _MISSING else {**named, **right},
    )


def _plain(value: Any) -> Any:
    """A JSON-safe copy with string keys (YAML allows `1:` or `on:` as keys)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(k, default=str): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(patch: str) -> list[Any]:
    return [_plain(doc) for doc in yaml.load_all(patch, Loader=_Loader)]


@lru_cache(maxsize=4096)
def _split_patch(patch: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    live: list[Any] = []
    reboot: list[Any] = []
    for doc in _documents(patch):
        left, right = _split_document(doc)
        if left is not _MISSING:
            live.append(left)
        if right is not _MISSING:
            reboot.append(right)
    return tuple(live), tuple(reboot)


def split(patches: Sequence[str]) -> tuple[list[Document], list[Document]]:
    """Every document of `patches` (in order) divided into (the live part, the reboot part).
    Each part keeps a document's apiVersion, kind and name; a part with nothing else is left out.
    The returned documents are shared with a cache: do not modify them."""
    live: list[Document] = []
    reboot: list[Document] = []
    for patch in patches:
        left, right = _split_patch(patch)
        live += left
        reboot += right
    return live, reboot


def _leaves(value: Any, rule: Rule, prefix: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of every place in a reboot part where the rule decides REBOOT."""
    if rule == REBOOT or not isinstance(value, dict):
        yield prefix or ".", value
        return
    assert not isinstance(rule, str)
    for key, item in value.items():
        if key != _DIRECTIVE:
            yield from _leaves(item, rule.get(key, rule["*"]), f"{prefix}.{key}")
    if _DIRECTIVE in value:
        yield f"{prefix}.{_DIRECTIVE}", value[_DIRECTIVE]


def _labelled(reboot: Sequence[Document]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for doc in reboot:
        if isinstance(doc, list):
            for op in doc:
                path = op.get("path") if isinstance(op, dict) else None
                label = "." + ".".join(_pointer(path)) if isinstance(path, str) else "JSON patch"
                out.setdefault(label, []).append(op)
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if not isinstance(kind, str):
            for path, value in _leaves(doc, V1ALPHA1_RULE, ""):
                out.setdefault(path, []).append(value)
            continue
        name = doc.get("name")
        base = f"{kind} {name}" if isinstance(name, str) else kind
        rest = {k: v for k, v in doc.items() if k not in _NAME_KEYS}
        rule = kind_rule(kind)
        if rule == REBOOT:
            out.setdefault(base, []).append(rest)
        else:
            for path, value in _leaves(rest, rule, ""):
                out.setdefault(f"{base} {path}", []).append(value)
    return out


def reboot_paths(patches: Sequence[str]) -> list[str]:
    """The settings in `patches` that need a reboot, for humans: dotted v1alpha1 paths
    (`.machine.env`, `.cluster.etcd`), document kinds (`EnvironmentConfig`), or a kind, its name
    and a path (`VolumeConfig STATE .encryption`). Sorted, no duplicates."""
    return sorted(_labelled(split(patches)[1]))


def reboot_changes(base: Sequence[str], head: Sequence[str]) -> list[str]:
    """The reboot settings (as reboot_paths names them) whose values differ between two patch
    lists of one node: what a change that needs a reboot touches. Empty: no reboot needed."""
    before = _labelled(split(base)[1])
    after = _labelled(split(head)[1])
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


# The getConfiguration inputs that are not settings of the generated config.
_CONTRACT: Final = "talosVersion"
_PATCHES: Final = "configPatches"


@dataclass(frozen=True)
class RoleParts:
    """A role's generated config divided once, as canonical JSON: `live` (the generation's
    inputs and the live part of the cluster and role patches), `reboot` (the config contract
    and the reboot part of those patches). The contract counts as reboot: moving it changes the
    generated v1alpha1 defaults (features and the like), which 1.13 does not apply live."""

    live: str
    reboot: str

    @classmethod
    def from_inputs(cls, inputs: Mapping[str, Any]) -> RoleParts:
        """From a getConfiguration resource's inputs (wire names, placeholders kept as text:
        `<via:...|v1.36.3>` still changes when the version in it does)."""
        patches = inputs.get(_PATCHES) or []
        live, reboot = split(list(patches))
        settings = {k: v for k, v in inputs.items() if k not in (_CONTRACT, _PATCHES)}
        return cls(
            live=_canonical({"inputs": _plain(settings), "patches": live}),
            reboot=_canonical({"contract": inputs.get(_CONTRACT), "patches": reboot}),
        )


def node_hashes(role: RoleParts, node_patches: Sequence[str]) -> dict[str, str]:
    """{"live": 12 hex, "reboot": 12 hex}: digests of the node's live and reboot settings (its
    role's part, then its own). A change applies live iff only "live" moves; the node needs a
    reboot iff "reboot" moves. Depends only on the role and the node's own patches."""
    live, reboot = split(node_patches)
    return {"live": _digest(role.live, _canonical(live)), "reboot": _digest(role.reboot, _canonical(reboot))}
