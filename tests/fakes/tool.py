"""A fake talosctl and kubectl for the day-2 step tests: `tool.py <talosctl|kubectl> args...`.

State lives in the JSON file named by FAKE_STATE: each node (by address) with its hostname, role,
Talos version and schematic, and for `make status` its machine configurations (`config`: the
multi-document YAML text per MachineConfig id), kubelet version, Ready and labels, and the name its
kubelet registered (`node_name`, the hostname unless a test renames it); which Kubernetes nodes
are cordoned, and each Node's annotations (`annotate`), both by Node name; the etcd member count
(or hostnames); which subcommands fail; the talosctl client version; the client certificates the
cluster CA signed (`minted`: by `gen crt`, or put there by a test for the provider's talosconfig).
Every call is appended to FAKE_LOG with what a test must check: the arguments, the credential
files the tool was given (their modes, and whether they were private at the time), and when it
started (`at`: time.monotonic, one clock for every process on Linux).

Day-2 rollouts add: `apply-config` (a config file plus patches, every mode, dry-run) against the
node's MachineConfigs, with Talos 1.13's live-or-reboot rule and 1.14's absence of it, and try
mode's pending rollback (`expire_rollbacks` lets its timeout pass); `reboot`, after which a staged
config is the active one; nodes that go NotReady when their active config
holds a marker (`not_ready_marker`), to fail a health check after a given apply; calls that take
a while (`slow`: seconds per verb), to show what runs at the same time. Calls may run in parallel
(make status, a rollout's worker batch, concurrent removals): each one's read, change and write of
the state holds a lock on it.

Every answer and behaviour below is what the real tool does, read from its source at the tag
cited beside it (siderolabs/talos v1.13.9, kubernetes/kubectl v0.36.3); texts are paraphrased in
shape, never copied beyond the words a parser looks at.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import fcntl
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

TALOS = "siderolabs/talos v1.13.9"
KUBECTL = "kubernetes/kubectl v0.36.3"


def _yaml() -> ModuleType:
    """PyYAML, imported only by the calls that read YAML: most calls read JSON only, and a
    rollout test makes hundreds of calls."""
    import yaml

    return yaml


def _load(text: str) -> Any:
    """YAML, which JSON is a subset of: the JSON parser first, it is much faster."""
    try:
        return json.loads(text)
    except ValueError:
        return _yaml().safe_load(text)


class RefusedError(Exception):
    """The tool exits 1 with this text on stderr (talosctl prints its error as is:
    siderolabs/talos v1.13.9 cmd/talosctl/cmd/root.go Execute; kubectl prefixes `error: `)."""


def _mode(path: str | None) -> str | None:
    if not path or not os.path.exists(path):
        return None
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def main() -> int:
    tool, *args = sys.argv[1:]
    talosconfig, kubeconfig = os.environ.get("TALOSCONFIG"), os.environ.get("KUBECONFIG")
    entry = {
        "tool": tool,
        "args": args,
        "talosconfig": talosconfig,
        "talosconfig_mode": _mode(talosconfig),
        "talosconfig_dir_mode": _mode(os.path.dirname(talosconfig)) if talosconfig else None,
        "kubeconfig_mode": _mode(kubeconfig),
        "files_mode": {p: _mode(p) for p in _paths(args)},
        "at": time.monotonic(),
    }
    # One write per line on an O_APPEND descriptor: calls run in parallel.
    fd = os.open(os.environ["FAKE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
    verb = _verb(tool, args)
    try:
        # Waiting happens outside the lock: other calls go on meanwhile, as on real machines.
        _wait(tool, verb, args)
        with _locked_state() as state:
            if _failing(tool, verb, args, state.get("fail", [])):
                raise RefusedError(f"fake {tool}: {verb} failed")
            out = _kubectl(verb, args, state) if tool == "kubectl" else _talosctl(verb, args, state)
    except RefusedError as refused:
        print(refused, file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


def _failing(tool: str, verb: str, args: list[str], failing: list[str]) -> bool:
    """A test's failure: `verb` everywhere, `verb@address` on one node only, `verb ARG@address`
    only when the call also has the argument ARG (e.g. `apply-config --mode=staged@10.0.0.1`)."""
    if verb in failing:
        return True
    if tool != "talosctl":
        return False
    for entry in failing:
        words, _, address = entry.rpartition("@")
        wanted, *needed = words.split(" ")
        if wanted == verb and address == _flag(args, "nodes") and all(n in args for n in needed):
            return True
    return False


@contextmanager
def _locked_state() -> Iterator[dict[str, Any]]:
    """The state, read and written back (also when the call is refused) under an exclusive lock,
    so calls running in parallel never lose each other's changes."""
    path = os.environ["FAKE_STATE"]
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path) as handle:
            before = handle.read()
        state = json.loads(before)
        try:
            yield state
        finally:
            after = json.dumps(state)
            if after != before:
                # Replaced whole, never rewritten in place: a reader without the lock sees either
                # version, not half of one.
                temporary = f"{path}.{os.getpid()}"
                with open(temporary, "w") as handle:
                    handle.write(after)
                os.replace(temporary, path)


def _wait(tool: str, verb: str, args: list[str]) -> None:
    """What takes time, read from the state without the lock (tests set it before the run)."""
    with open(os.environ["FAKE_STATE"]) as handle:
        state = json.load(handle)
    time.sleep(float(state.get("slow", {}).get(verb, 0)))
    if tool != "talosctl":
        return
    for ip in (_flag(args, "endpoints"), _flag(args, "nodes")):
        node = state["nodes"].get(ip or "")
        if node is not None and node.get("hang"):
            # A machine that drops packets: talosctl sets no dial or call deadline (TALOS
            # pkg/machinery/client/connection.go getConn, options.go defaultDialOptions), so it
            # waits for as long as the TCP connect takes; the caller's own timeout has to end it.
            time.sleep(float(node["hang"]))
            raise RefusedError("rpc error: code = DeadlineExceeded desc = context deadline exceeded")


def _paths(args: list[str]) -> list[str]:
    """Files the call was handed: keys and requests, configs and patches (`@file`)."""
    paths = [a.split("=", 1)[1].removeprefix("@") for a in args if a.startswith(("--key=", "--csr=", "--file="))]
    paths += [a.split("=", 1)[1].removeprefix("@") for a in args if a.startswith("--config-patch=@")]
    return [p for p in paths if os.path.exists(p)]


def _flag(args: list[str], name: str, default: str | None = None) -> str | None:
    """`--name=value`, `--name value`, or a bare boolean `--name` (cobra/pflag forms)."""
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return nxt if name in ("nodes", "endpoints") else "true"
    return default


def _flags(args: list[str], name: str, short: str = "") -> list[str]:
    """Every value of a repeatable flag (`--name=v`, `--name v`, `-s v`), in order."""
    values = []
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            values.append(arg.split("=", 1)[1])
        elif arg in (f"--{name}", *([f"-{short}"] if short else [])) and i + 1 < len(args):
            values.append(args[i + 1])
    return values


def _output(args: list[str]) -> str | None:
    """The output format: `--output X`, `--output=X`, `-o X` or `-oX` (pflag forms)."""
    for i, arg in enumerate(args):
        if arg in ("--output", "-o") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--output="):
            return arg.split("=", 1)[1]
        if arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:]
    return None


def _verb(tool: str, args: list[str]) -> str:
    rest = list(args)
    if tool == "talosctl":
        while rest and rest[0] in ("--nodes", "--endpoints"):
            rest = rest[2:]
    words = [a for a in rest if not a.startswith("-")]
    return words[0] if words else ""


# ---------------------------------------------------------------------------------------------
# talosctl


def _talosctl(verb: str, args: list[str], state: dict[str, Any]) -> str:
    if verb == "gen":
        return _gen(args, state)
    client = state.get("client", "v1.13.10")
    if verb == "version" and "--client" in args:
        # `Client:` then version.Short(): "<Name> <Tag>", Name = "Talos"
        # (TALOS cmd/talosctl/cmd/talos/version.go, pkg/machinery/version/version.go, gendata/data/name).
        return f"Client:\nTalos {client}"
    ca = _check_talosconfig(state)
    node_ip, endpoint_ip = _flag(args, "nodes") or "", _flag(args, "endpoints") or ""
    endpoint, node = _answering(state, endpoint_ip), _answering(state, node_ip)
    for machine in (endpoint, node):
        # Each cluster's machines trust its own OS CA only; apid proxies within its cluster.
        if machine.get("ca", ca) != ca:
            raise RefusedError(
                "rpc error: code = Unavailable desc = connection error: tls: failed to verify certificate: "
                "x509: certificate signed by unknown authority"
            )
    if verb == "version":
        # The server section is always the long form, `--short` or not, with a NODE line first
        # (TALOS cmd/talosctl/cmd/talos/version.go cmdVersion, version.go versionTemplate).
        return (
            f"Client:\nTalos {client}\nServer:\n\tNODE:        {node_ip}\n\tTag:         {node['version']}\n"
            "\tSHA:         0123abcd\n\tBuilt:       \n\tGo version:  go1.25.5\n\tOS/Arch:     linux/amd64\n"
            "\tEnabled:     RBAC"
        )
    if verb == "get":
        resource = [a for a in args if not a.startswith("-") and a not in (node_ip, endpoint_ip)][1]
        # MachineConfigs.config.talos.dev answers to its singular and plural lower-cased names and
        # its capitals (cosi-project/runtime v1.14.1 pkg/resource/meta/spec/resource_definition.go).
        if resource in ("machineconfig", "machineconfigs", "mc", "mcs"):
            return _machine_configs(args, node_ip, node)
        return _extensions(node_ip, node)
    if verb == "kubeconfig":
        # A control-plane API (TALOS internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go
        # Kubeconfig: machinehelper.CheckControlplane); written with os.WriteFile(path, data, 0o600)
        # (cmd/talosctl/cmd/talos/kubeconfig.go).
        _control_plane_only(node, "kubeconfig")
        path = [a for a in args if not a.startswith("-") and a != node_ip and a != endpoint_ip][-1]
        with open(path, "w") as handle:
            handle.write("apiVersion: v1\nkind: Config\n# FAKE-kubeconfig\n")
        return ""
    if verb == "health":
        return _health(node, state)
    if verb == "etcd":
        # `member list` is a control-plane API; with a node in the request the header starts with
        # NODE (TALOS cmd/talosctl/cmd/talos/etcd.go etcdMemberListCmd, tabwriter, 3 spaces).
        # QueryLocal: the members as the asked node's own etcd sees them.
        _control_plane_only(node, "member list")
        hostnames = node.get("etcd_hostnames") or [f"cp-{i}" for i in range(1, 1 + state.get("etcd_members", 3))]
        learners = node.get("etcd_learners", [])
        rows = [
            f"{node_ip}   {i:016x}   {host}   https://x:2380   https://x:2379   {str(host in learners).lower()}"
            for i, host in enumerate(hostnames, 1)
        ]
        return "\n".join(["NODE   ID   HOSTNAME   PEER URLS   CLIENT URLS   LEARNER", *rows])
    if verb == "upgrade":
        return _upgrade(args, node_ip, node, endpoint, state)
    if verb in ("apply-config", "apply"):
        return _apply_config(args, node, state)
    if verb == "reboot":
        return _reboot(args, node_ip, node, endpoint, state)
    if verb == "reset":
        return _reset(args, node, state)
    if verb == "upgrade-k8s":
        # Progress goes to stdout through UpgradeOptions.Log (TALOS pkg/cluster/kubernetes/upgrade.go,
        # cmd/talosctl/cmd/talos/upgrade-k8s.go, talos_managed.go).
        state["kubernetes"] = _flag(args, "to")
        detected = "automatically detected the lowest Kubernetes version 1.36.3"
        return f'{detected}\ndiscovered controlplane nodes ["{endpoint_ip}"]'
    raise RefusedError(f"fake talosctl: unknown command {verb!r}")


def _check_talosconfig(state: dict[str, Any]) -> str:
    """The context's ca, crt and key are standard base64, and crt/key a PEM key pair
    (TALOS pkg/machinery/client/connection.go getCA, CertificateFromConfigContext)."""
    with open(os.environ["TALOSCONFIG"]) as handle:
        # YAML (the provider's talosconfig output; the day-2 steps write JSON, which is YAML too):
        # TALOS pkg/machinery/client/config/config.go FromBytes decodes with a YAML decoder.
        config = _load(handle.read())
    context = config["contexts"][config["context"]]
    decoded = {}
    for field, what in (("ca", "CA"), ("crt", "certificate"), ("key", "key")):
        try:
            decoded[field] = base64.b64decode(context[field], validate=True).decode()
        except (binascii.Error, ValueError):
            raise RefusedError(f"error decoding {what}: illegal base64 data at input byte 0") from None
    if "BEGIN CERTIFICATE" not in decoded["crt"] or "PRIVATE KEY" not in decoded["key"]:
        raise RefusedError("could not load client key pair: tls: failed to find any PEM data in certificate input")
    # The fake CA signs what `gen crt` minted; the node trusts the OS CA and reads the roles.
    minted = state.get("minted", {}).get(hashlib.sha256(decoded["crt"].encode()).hexdigest())
    if minted is None or minted["ca"] != hashlib.sha256(decoded["ca"].encode()).hexdigest():
        raise RefusedError("rpc error: code = Unavailable desc = connection error: tls: bad certificate")
    if "os:admin" not in minted["roles"]:
        # TALOS pkg/grpc/middleware/authz/authorizer.go ErrNotAuthorized.
        raise RefusedError("rpc error: code = PermissionDenied desc = not authorized")
    return str(minted["ca"])


def _answering(state: dict[str, Any], ip: str) -> dict[str, Any]:
    node: dict[str, Any] | None = state["nodes"].get(ip)  # a hanging machine: _wait
    if node is None or node.get("down"):
        raise RefusedError(
            f"rpc error: code = Unavailable desc = connection error: dial tcp {ip}:50000: connect: no route to host"
        )
    if node.get("rebooting", 0) > 0:  # answers nothing for a few calls after an upgrade or reboot
        node["rebooting"] -= 1
        raise RefusedError(f"rpc error: code = Unavailable desc = {ip} is rebooting")
    return node


def _control_plane_only(node: dict[str, Any], api: str) -> None:
    # TALOS internal/app/internal/machinehelper/machinehelper.go CheckControlplane.
    if node.get("role", "controlplane") != "controlplane":
        raise RefusedError(f"rpc error: code = Unimplemented desc = {api} is only available on control plane nodes")


def _extensions(node_ip: str, node: dict[str, Any]) -> str:
    """One indented JSON object per resource, with `node` added (TALOS
    cmd/talosctl/cmd/talos/output/json.go); Image Factory images list an extension `schematic`
    whose version is the schematic id (siderolabs/image-factory internal/artifacts/schematic.go)."""

    def resource(i: int, name: str, version: str) -> str:
        document = {
            "node": node_ip,
            "metadata": {"namespace": "runtime", "type": "ExtensionStatuses.runtime.talos.dev", "id": str(i)},
            "spec": {"image": f"{i}.sqsh", "metadata": {"name": name, "version": version}},
        }
        return json.dumps(document, indent=4)

    out = [resource(0, "qemu-guest-agent", "10.0.2")]
    if node["schematic"] is not None:  # an image that does not say its schematic has none
        out.append(resource(1, "schematic", node["schematic"]))
    return "\n".join(out)


def _machine_configs(args: list[str], node_ip: str, node: dict[str, Any]) -> str:
    """`get machineconfig -o yaml`: every MachineConfig resource of the node, `v1alpha1` (the
    active config) and, when the node has one, `persistent` (what is on disk: ahead of the active
    one after a staged apply), listed in id order (TALOS pkg/machinery/resources/config/
    machine_config.go ActiveID, PersistentID; internal/app/machined/pkg/runtime/v1alpha1/
    v1alpha1_runtime.go SetConfig, SetPersistedConfig). Each resource: `---` between them, a
    `node:` line, then the resource as YAML (cmd/talosctl/cmd/talos/output/yaml.go WriteResource,
    with go.yaml.in/yaml/v4, here at the 4-space indent of its predecessor's encoder, go-yaml/yaml
    v3 encode.go; no parser depends on it): `metadata` (cosi-project/runtime v1.14.1
    pkg/resource/metadata.go MarshalYAML: namespace, type, id, version, owner, phase, created,
    updated, then annotations; MachineConfig sets `talos.dev/yaml-spec`) and `spec`, the whole
    configuration as one string (machine_config.go v1alpha1Spec.MarshalYAML: cfg.Bytes(), the
    v1alpha1 document then the others, `---` between: pkg/machinery/config/container/
    container.go encodeToBuf)."""
    if _output(args) != "yaml":
        raise RefusedError("fake talosctl: status asks for machine configs as YAML only")
    out = []
    for resource_id in sorted(node.get("config", {})):
        text = node["config"][resource_id]
        spec = "".join(f"    {line}\n" if line else "\n" for line in text.rstrip("\n").split("\n"))
        out.append(
            f"node: {node_ip}\nmetadata:\n    namespace: config\n    type: MachineConfigs.config.talos.dev\n"
            f'    id: {resource_id}\n    version: 2\n    owner: ""\n    phase: running\n'
            "    created: 2026-11-30T09:12:44Z\n    updated: 2026-11-30T09:12:44Z\n"
            f'    annotations:\n        talos.dev/yaml-spec: "1"\nspec: |\n{spec}'
        )
    return "---\n".join(out).rstrip("\n")


def _name(node: dict[str, Any]) -> str:
    """The node's Kubernetes Node name: what its kubelet registered, the hostname unless a test
    set another (as machine.kubelet.registerWithFQDN would)."""
    return str(node.get("node_name") or node["hostname"])


def _hostnames(state: dict[str, Any]) -> list[str]:
    """The Kubernetes Node names, those deleted left out."""
    return [_name(n) for n in state["nodes"].values() if _name(n) not in state.get("deleted", [])]


def _health(node: dict[str, Any], state: dict[str, Any]) -> str:
    """Server-side on a control plane (`--server` defaults to true); the default checks end with
    "all k8s nodes to report schedulable", which fails while any node is cordoned, until the wait
    timeout (TALOS cmd/talosctl/cmd/talos/health.go, pkg/cluster/check/default.go,
    kubernetes.go K8sAllNodesSchedulableAssertion, internal/app/machined/internal/server/v1alpha1/
    v1alpha1_cluster.go: progress lines on stderr, nothing on stdout)."""
    _control_plane_only(node, "cluster health check")
    cordoned = [h for h in _hostnames(state) if h in state.get("cordoned", [])]
    print("waiting for etcd to be healthy: OK", file=sys.stderr)
    # Readiness is checked before schedulability (default.go DefaultClusterChecks,
    # kubernetes.go K8sAllNodesReadyAssertion).
    members = _hostnames(state)
    not_ready = [_name(n) for n in state["nodes"].values() if _name(n) in members and not _ready(n, state)]
    if not_ready:
        print(f"waiting for all k8s nodes to report ready: some nodes are not ready: [{not_ready[0]}]", file=sys.stderr)
        raise RefusedError("rpc error: code = Unknown desc = context deadline exceeded")
    print("waiting for all k8s nodes to report ready: OK", file=sys.stderr)
    if cordoned:
        print(
            f"waiting for all k8s nodes to report schedulable: some nodes are not schedulable: [{cordoned[0]}]",
            file=sys.stderr,
        )
        raise RefusedError("rpc error: code = Unknown desc = context deadline exceeded")
    print("waiting for all k8s nodes to report schedulable: OK", file=sys.stderr)
    return ""


def _cordon(state: dict[str, Any], host: str, by: str) -> None:
    if host not in state.setdefault("cordoned", []):
        state["cordoned"].append(host)
        state.setdefault("cordoned_by", {})[host] = by


def _uncordon(state: dict[str, Any], host: str) -> None:
    if host in state.get("cordoned", []):
        state["cordoned"].remove(host)


def _upgrade(
    args: list[str], node_ip: str, node: dict[str, Any], endpoint: dict[str, Any], state: dict[str, Any]
) -> str:
    """TALOS cmd/talosctl/cmd/talos/upgrade.go: a node on 1.13+ takes the LifecycleService path:
    pull and install the image, then (`--drain` defaults to true) cordon and drain through a
    Kubernetes client made from the kubeconfig of the *endpoint* (drain.go drainNodes,
    kubeclient.go), then reboot and wait (`--wait` defaults to true, track.go), then uncordon.
    Older nodes take the legacy path, where the node's own upgrade sequence cordons and drains
    (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go Upgrade) and uncordons after
    boot only a node it cordoned itself (controllers/k8s/node_apply.go ApplyCordoned)."""
    image = _flag(args, "image") or ""
    schematic, version = image.rsplit("/", 1)[-1].split(":", 1)
    host = _name(node)
    drain = _flag(args, "drain", "true") == "true"
    legacy = tuple(int(p) for p in node["version"].lstrip("v").split(".")[:2]) < (1, 13)
    node["installed"] = image  # on disk: the node boots it at its next reboot, planned or not
    talos_cordoned = False
    if legacy:
        talos_cordoned = host not in state.get("cordoned", [])
        _cordon(state, host, "talos")
        state.setdefault("drained", []).append(host)
    elif drain:
        if endpoint.get("role", "controlplane") != "controlplane":
            raise RefusedError(
                "error creating Kubernetes client for drain: error fetching kubeconfig from Talos API: "
                "rpc error: code = Unimplemented desc = kubeconfig is only available on control plane nodes"
            )
        _cordon(state, host, "talosctl")
        state.setdefault("drained", []).append(host)
    node["version"] = version
    node["schematic"] = schematic if node["schematic"] is not None else None
    node["rebooting"] = state.get("reboot_calls", 0)
    if (legacy and talos_cordoned) or (not legacy and drain):
        _uncordon(state, host)
    # The reporter writes progress to stderr (TALOS pkg/reporter/reporter.go New).
    print(f"{node_ip}: upgrade completed", file=sys.stderr)
    return ""


# ---------------------------------------------------------------------------------------------
# Machine configuration: apply-config and reboot

# The v1alpha1 subtrees a 1.13 node copies from its running config into a new one before
# comparing them: a change confined to them applies without a reboot (TALOS
# internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go CanApplyImmediate; YAML names
# from the struct tags in pkg/machinery/config/types/v1alpha1/v1alpha1_types.go). The machine
# ones only when both configs have `machine`, the features ones only when both have `features`.
# Written out here, not imported from talos_fleet/reboots.py: the fake stands for the node, and a
# rule shared with the code under test could not catch that code's mistakes.
LIVE_TOP = ("debug", "cluster")
LIVE_MACHINE = (
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
LIVE_FEATURES = ("kubernetesTalosAPIAccess", "kubePrism", "hostDNS", "imageCache", "nodeAddressSortAlgorithm")


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.lstrip("v").split("-")[0].split(".")[:2])


def _documents(text: str) -> list[Any]:
    return [d for d in _yaml().safe_load_all(text) if d is not None]


def encode(documents: list[Any]) -> str:
    """How the node shows a config: its documents re-encoded, v1alpha1 first, `---` between
    (TALOS pkg/machinery/config/container/container.go encodeToBuf). Keys sorted here; the real
    encoder keeps struct order. Both sides of every comparison go through it, as both sides of
    the node's diff go through EncodeBytes (pkg/machinery/config/configdiff/configdiff.go)."""
    yaml = _yaml()
    return "---\n".join(yaml.safe_dump(d, sort_keys=True) for d in documents)


def _v1alpha1(documents: list[Any]) -> dict[str, Any] | None:
    return next((d for d in documents if isinstance(d, dict) and "kind" not in d), None)


def _merge(left: dict[str, Any], right: dict[str, Any]) -> None:
    """Maps merge key by key, lists append (TALOS pkg/machinery/config/merge/merge.go: slices
    append unless tagged `merge:"replace"`, which this fake does not know), scalars replace."""
    for key, value in right.items():
        if isinstance(value, dict) and isinstance(left.get(key), dict):
            _merge(left[key], value)
        elif isinstance(value, list) and isinstance(left.get(key), list):
            left[key] = left[key] + copy.deepcopy(value)
        else:
            left[key] = copy.deepcopy(value)


def _patch_text(patch: str) -> str:
    """`@file` reads the file; a value without a space, a newline or a leading `[`/`{` is taken for
    a file name too; anything else is the patch itself (TALOS
    pkg/machinery/config/configpatcher/load.go LoadPatches)."""
    if patch.startswith("@"):
        path = patch[1:]
    elif not any(c in patch for c in "\n ") and not patch.startswith(("[", "{")):
        path = patch
    else:
        return patch
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as error:
        raise RefusedError(f"open {path}: {error.strerror}") from None


def _identity(document: dict[str, Any]) -> tuple[Any, ...]:
    """v1alpha1 (no kind) is one document; the others are told apart by apiVersion, kind, name."""
    if "kind" not in document:
        return ("v1alpha1",)
    return (document.get("apiVersion"), document["kind"], document.get("name"))


def render(config: str, patches: list[str]) -> list[Any]:
    """The config talosctl sends: the file's documents with each patch applied in order as a
    strategic merge: documents with the same apiVersion, kind and name merge, others are appended
    (TALOS cmd/talosctl/cmd/talos/apply-config.go, pkg/machinery/config/configpatcher/strategic.go
    StrategicMerge). Delete selectors and JSON patches are not modelled: refused."""
    documents = _documents(config)
    for patch in patches:
        for document in _documents(_patch_text(patch)):
            if not isinstance(document, dict) or "$patch" in json.dumps(document):
                raise RefusedError("fake talosctl: only strategic merge patches without delete are modelled")
            target = next((d for d in documents if _identity(d) == _identity(document)), None)
            if target is None:
                documents.append(copy.deepcopy(document))
            else:
                _merge(target, document)
    return documents


def _immediate(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """CanApplyImmediate on the v1alpha1 documents: the new one with the live subtrees taken from
    the running one must equal the running one. No running config: not immediate."""
    if current is None:
        return False
    candidate = copy.deepcopy(new)

    def take(into: dict[str, Any], source: dict[str, Any], keys: tuple[str, ...]) -> None:
        for key in keys:
            if key in source:
                into[key] = copy.deepcopy(source[key])
            else:
                into.pop(key, None)

    take(candidate, current, LIVE_TOP)
    machine, running = candidate.get("machine"), current.get("machine")
    if isinstance(machine, dict) and isinstance(running, dict):
        take(machine, running, LIVE_MACHINE)
        features, running_features = machine.get("features"), running.get("features")
        if isinstance(features, dict) and isinstance(running_features, dict):
            take(features, running_features, LIVE_FEATURES)
    return candidate == current


def _apply_config(args: list[str], node: dict[str, Any], state: dict[str, Any]) -> str:
    """talosctl renders the config locally and sends it with the mode (default `auto`), then
    prints the answer's ModeDetails on stderr; an error after a short prefix, then the rpc
    error (TALOS cmd/talosctl/cmd/talos/apply-config.go, cmd/talosctl/pkg/talos/helpers/mode.go
    AddModeFlags, PrintApplyResults). The node (TALOS internal/app/machined/internal/server/
    v1alpha1/v1alpha1_server.go ApplyConfiguration, Talos 1.13): no v1alpha1 document is refused;
    `no-reboot` and `try` refuse a change CanApplyImmediate rejects, before anything changes, also
    in a dry-run; `auto` becomes a reboot then; a dry-run answers the mode it would use and a diff
    against the ACTIVE config (generateDiff: "No changes." for none). Then `try` sets the active
    config only and arms a rollback to the config active before it (RollbackToConfigAfter in
    internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go, after `--timeout`); the fake
    keeps it pending (`rollback`) until `expire_rollbacks` or a reboot. Every mode but `try`,
    dry-runs and refused calls included, first cancels a pending rollback
    (CancelConfigRollbackTimeout, before the config is even parsed). `no-reboot` sets the
    persistent and the active one, `staged` the persistent one (read at the next boot), `reboot`
    the persistent one and reboots without draining. Talos 1.14 (siderolabs/talos v1.14.0-rc.1,
    same files): no CanApplyImmediate, `auto` is always `no-reboot`, `reboot` is refused as
    Unimplemented, try and its rollback unchanged. Talosctl 1.14 no longer offers `--mode=reboot`
    (helpers/mode.go at that tag)."""
    mode = _flag(args, "mode", "auto") or "auto"
    modes = ["auto", "no-reboot", "staged", "try"]
    if _minor(state.get("client", "v1.13.10")) < (1, 14):
        modes.append("reboot")
    if mode not in modes:
        # Mode.Set (helpers/mode.go).
        raise RefusedError(f"possible options are: {', '.join(sorted(modes))}")
    path = _flag(args, "file") or ""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        raise RefusedError(f"could not read the configuration from {path!r}") from None
    documents = render(text, _flags(args, "config-patch", "p"))
    configs = node.setdefault("config", {})
    active = _documents(configs["v1alpha1"]) if "v1alpha1" in configs else None

    if mode != "try":
        node.pop("rollback", None)
        node.pop("rollback_after", None)

    def refused(code: str, desc: str) -> RefusedError:
        return RefusedError(f"error applying the configuration: rpc error: code = {code} desc = {desc}")

    new = _v1alpha1(documents)
    if new is None:
        raise refused("InvalidArgument", "the config holds no v1alpha1 document")
    if _minor(node["version"]) >= (1, 14):
        if mode == "reboot":
            raise refused("Unimplemented", "REBOOT mode is not supported; use AUTO or NO_REBOOT")
        immediate = True
    else:
        immediate = _immediate(_v1alpha1(active) if active is not None else None, new)
    before = encode(active) if active is not None else ""
    after = encode(documents)
    # talosctl's `--timeout`, the try-mode rollback delay, default one minute (TALOS
    # pkg/machinery/constants/constants.go ConfigTryTimeout).
    timeout = _flag(args, "timeout", "1m0s") or "1m0s"
    if mode in ("try", "no-reboot"):
        if not immediate:
            diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True)))
            raise refused("InvalidArgument", f"this config change can't be applied in immediate mode\ndiff:\n{diff}")
        details = "Config applied, no reboot"
        if mode == "try":
            details += f"\nin try mode: rolled back after {timeout}"
    elif mode == "staged":
        details = "Config staged for the next reboot"
    else:
        mode = "no-reboot" if mode == "auto" and immediate else "reboot"
        details = "Config applied, no reboot" if mode == "no-reboot" else "Config applied, rebooting"
    if "--dry-run" in args or _flag(args, "dry-run") == "true":
        diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True))) or "No changes."
        print(f"Dry run:\n{details} (not done).\nConfig diff:\n\n{diff}", file=sys.stderr)
        return ""
    node.setdefault("applied", []).append(mode)
    if mode == "try":
        # A second try re-arms the timer with the config active now: the first try's.
        node["rollback"], node["rollback_after"] = configs.get("v1alpha1", ""), timeout
    if mode in ("try", "no-reboot"):
        configs["v1alpha1"] = after
    if mode in ("no-reboot", "staged", "reboot"):
        configs["persistent"] = after
    if mode == "reboot":
        _boot(node, state)
    print(details, file=sys.stderr)
    return ""


def _boot(node: dict[str, Any], state: dict[str, Any]) -> None:
    """A reboot: the config on disk (`persistent`) becomes the active one, and the `persistent`
    resource is not written again when the disk was the only source (TALOS
    internal/app/machined/pkg/controllers/config/acquire.go stateDisk and the SetPersistedConfig
    guard). Nothing drains: the Reboot sequence has no CordonAndDrainNode phase
    (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go Reboot)."""
    configs = node.setdefault("config", {})
    # A try's rollback timer lives in machined's memory: gone. What boots is the config on disk:
    # the persistent one, or, when nothing was persisted since the last boot, the one active
    # before the try (the fake keeps no disk apart).
    rollback = node.pop("rollback", None)
    node.pop("rollback_after", None)
    if "persistent" in configs:
        configs["v1alpha1"] = configs.pop("persistent")
    elif rollback is not None:
        configs["v1alpha1"] = rollback
    state.setdefault("reboots", []).append(
        {"host": node["hostname"], "cordoned": _name(node) in state.get("cordoned", [])}
    )
    node["rebooting"] = state.get("reboot_calls", 0)


def expire_rollbacks(state: dict[str, Any]) -> None:
    """A test's clock: every pending try-mode rollback's timeout has passed, so each such node runs
    the config it ran before the try again (v1alpha1_runtime.go RollbackToConfigAfter: SetConfig of
    the config captured at the try; the persistent one is untouched)."""
    for node in state["nodes"].values():
        if "rollback" in node:
            node.setdefault("config", {})["v1alpha1"] = node.pop("rollback")
            node.pop("rollback_after", None)


def _reboot(
    args: list[str], node_ip: str, node: dict[str, Any], endpoint: dict[str, Any], state: dict[str, Any]
) -> str:
    """`talosctl reboot`: `--drain` (off by default) cordons and drains through a Kubernetes
    client from the endpoint's kubeconfig, then reboots, waits (`--wait`, on by default, until
    the boot id changed) and uncordons (TALOS cmd/talosctl/cmd/talos/reboot.go rebootRun, track.go
    addTrackActionFlags)."""
    drain = _flag(args, "drain", "false") == "true"
    host = _name(node)
    if drain:
        _control_plane_only(endpoint, "kubeconfig")
        _cordon(state, host, "talosctl")
        state.setdefault("drained", []).append(host)
    _boot(node, state)
    if drain:
        _uncordon(state, host)
    return ""


def _ready(node: dict[str, Any], state: dict[str, Any]) -> bool:
    """A test's stand-in for a bad config: a node whose active config holds the marker is
    NotReady."""
    marker = state.get("not_ready_marker")
    active = node.get("config", {}).get("v1alpha1", "")
    return bool(node.get("ready", True)) and not (marker and marker in active)


def _reset(args: list[str], node: dict[str, Any], state: dict[str, Any]) -> str:
    """A graceful reset cordons and drains the node itself (best effort), then a control plane
    leaves etcd; then the disks are wiped and the machine shuts down, or reboots with `--reboot`
    (TALOS cmd/talosctl/cmd/talos/reset.go, v1alpha1_sequencer.go Reset)."""
    graceful = _flag(args, "graceful", "true") == "true"
    host = _name(node)
    if graceful:
        node["reset_found_drained"] = host in state.get("drained", [])
        _cordon(state, host, "reset")
        state.setdefault("drained", []).append(host)
        if node.get("role") == "controlplane":
            state["etcd_members"] = state.get("etcd_members", 3) - 1
    node["reset"] = {"graceful": graceful, "reboot": _flag(args, "reboot", "false") == "true"}
    # Without --reboot the machine powers off: nothing answers there any more.
    node["down"] = not node["reset"]["reboot"]
    return ""


def _gen(args: list[str], state: dict[str, Any]) -> str:
    """`gen key --name N` writes N.key (Ed25519, PKCS#8 PEM, 0600); `gen csr --key K --ip IP
    --roles R` writes K-minus-.key + .csr; `gen crt --ca BASE --csr C --name N --hours H` reads
    BASE.crt and BASE.key, writes N.crt. Each refuses to overwrite without --force
    (TALOS cmd/talosctl/cmd/mgmt/gen/key.go, csr.go, crt.go, gen.go)."""
    what = [a for a in args if not a.startswith("-")][1]

    def write(path: str, text: str) -> None:
        if os.path.exists(path) and "--force" not in args:
            raise RefusedError(f'file "{path}" already exists, use --force to overwrite')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    if what == "key":
        name = _flag(args, "name") or ""
        write(
            name + ".key",
            f"-----BEGIN ED25519 PRIVATE KEY-----\n{os.urandom(8).hex()}\n-----END ED25519 PRIVATE KEY-----\n",
        )
        return ""
    if what == "csr":
        key = _flag(args, "key") or ""
        if _flag(args, "ip") is None:
            raise RefusedError('required flag(s) "ip" not set')
        roles = (_flag(args, "roles") or "os:admin").split(",")
        with open(key) as handle:
            body = handle.read()
        write(key.removesuffix(".key") + ".csr", json.dumps({"roles": roles, "key": body}))
        return ""
    if what == "crt":
        base, csr, name = _flag(args, "ca") or "", _flag(args, "csr") or "", _flag(args, "name") or ""
        with open(base + ".crt") as crt_file, open(base + ".key") as key_file, open(csr) as request:
            ca, ca_key, wanted = crt_file.read(), key_file.read(), json.loads(request.read())
        if "BEGIN CERTIFICATE" not in ca or "PRIVATE KEY" not in ca_key:
            raise RefusedError("error decoding cert PEM")
        cert = f"-----BEGIN CERTIFICATE-----\n{os.urandom(8).hex()}\n-----END CERTIFICATE-----\n"
        write(name + ".crt", cert)
        state.setdefault("minted", {})[hashlib.sha256(cert.encode()).hexdigest()] = {
            "ca": hashlib.sha256(ca.encode()).hexdigest(),
            "roles": wanted["roles"],
            "hours": int(_flag(args, "hours") or 24),
        }
        return ""
    raise RefusedError(f"fake talosctl: unknown gen {what!r}")


# ---------------------------------------------------------------------------------------------
# kubectl


def _kubectl(verb: str, args: list[str], state: dict[str, Any]) -> str:
    """Outputs by the name printer, `node/<name> <verb>`, and delete's `node "<name>" deleted`
    (KUBECTL pkg/cmd/drain/drain.go RunCordonOrUncordon, already/changed, RunDrain;
    pkg/cmd/delete/delete.go PrintObj)."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    contents = ""
    if os.path.exists(kubeconfig):
        with open(kubeconfig) as handle:
            contents = handle.read()
    if state.get("kubernetes_down") or "FAKE-kubeconfig" not in contents:
        # KUBECTL pkg/cmd/util/helpers.go StandardErrorMessage (connection refused).
        raise RefusedError(
            "The connection to the server localhost:8080 was refused - did you specify the right host or port?"
        )
    words = [a for a in args if not a.startswith("-")]
    # NotFound below: "Error from server (<Reason>): <message>" (KUBECTL pkg/cmd/util/helpers.go
    # StandardErrorMessage).
    if verb == "get":
        return _nodes_json(args, state)
    if verb == "annotate":
        return _annotate(words[1:], args, state)
    host = words[-1]
    if verb == "delete":
        if host not in _hostnames(state):
            if "--ignore-not-found" in args:
                return ""
            raise RefusedError(f'Error from server (NotFound): nodes "{host}" not found')
        state.setdefault("deleted", []).append(host)
        state.get("annotations", {}).pop(host, None)  # metadata goes with the object
        return f'node "{host}" deleted'
    if host not in _hostnames(state):
        raise RefusedError(f'Error from server (NotFound): nodes "{host}" not found')
    if verb in ("cordon", "drain"):
        already = host in state.get("cordoned", [])
        _cordon(state, host, "kubectl")
        out = f"node/{host} {'already cordoned' if already else 'cordoned'}"
        if verb == "drain":
            state.setdefault("drained", []).append(host)
            out += f"\nevicting pod default/app-{host}\npod/app-{host} evicted\nnode/{host} drained"
        return out
    if verb == "uncordon":
        already = host not in state.get("cordoned", [])
        _uncordon(state, host)
        return f"node/{host} {'already uncordoned' if already else 'uncordoned'}"
    raise RefusedError(f"fake kubectl: unknown command {verb!r}")


def _annotate(words: list[str], args: list[str], state: dict[str, Any]) -> str:
    """`kubectl annotate node NAME KEY=VALUE... KEY-...`: resources first, then pairs; `KEY=VALUE`
    sets, a trailing `-` removes (no error when absent), setting and removing one key at once is
    refused, and changing an existing value needs `--overwrite`; printed by the name printer as
    `node/<name> annotated` (KUBECTL pkg/cmd/annotate/annotate.go ToOptions, validateAnnotations,
    validateNoAnnotationOverwrites, updateAnnotations; pkg/cmd/util/helpers.go
    GetResourcesAndPairs, ParsePairs; kubernetes/cli-runtime v0.36.2 pkg/printers/name.go). The
    state keeps them as `annotations`: {host: {key: value}}."""

    def setting(word: str) -> bool:
        return "=" in word and word[0] != "="

    def pair(word: str) -> bool:
        return setting(word) or (word.endswith("-") and word != "-")

    first = next((i for i, w in enumerate(words) if pair(w)), len(words))
    resources, pairs = words[:first], words[first:]
    if not all(pair(w) for w in pairs):
        raise RefusedError("error: name the resources before any annotation change")
    if resources[:1] not in (["node"], ["nodes"], ["no"]) or len(resources) != 2 or not pairs:
        raise RefusedError(f"fake kubectl: annotate wants `node NAME` and pairs, not {words}")
    host = resources[1]
    if host not in _hostnames(state):
        raise RefusedError(f'Error from server (NotFound): nodes "{host}" not found')
    new = dict(w.split("=", 1) for w in pairs if setting(w))
    removed = [w[:-1] for w in pairs if not setting(w)]
    if set(new) & set(removed):
        raise RefusedError("error: one command cannot both set and remove an annotation")
    current = state.setdefault("annotations", {}).setdefault(host, {})
    clashing = [k for k, v in new.items() if k in current and current[k] != v]
    if clashing and _flag(args, "overwrite", "false") != "true":
        raise RefusedError(f"error: {clashing} already set to another value, and no --overwrite")
    current.update(new)
    for key in removed:
        current.pop(key, None)
    return f"node/{host} annotated"


def _nodes_json(args: list[str], state: dict[str, Any]) -> str:
    """`kubectl get nodes -o json`: more than one object is printed as one `List` (apiVersion v1,
    items, metadata.resourceVersion) (KUBECTL pkg/cmd/get/get.go printGeneric), by the JSON
    printer at 4 spaces (kubernetes/cli-runtime v0.36.2 pkg/printers/json.go). Each Node
    (kubernetes/api v0.36.3 core/v1/types.go): metadata.name, labels and annotations (left out
    when there are none: kubernetes/apimachinery v0.36.3 pkg/apis/meta/v1/types.go ObjectMeta,
    omitempty), spec.unschedulable only when cordoned (omitempty), status.conditions with type
    Ready, status.nodeInfo.kubeletVersion, status.addresses: NodeAddress entries of type
    InternalIP (the node's address) and Hostname (its Node name) (same types.go, NodeAddressType).
    The Node is named as its kubelet registered (`_name`)."""
    if _output(args) != "json":
        raise RefusedError("fake kubectl: status asks for nodes as JSON only")
    with open(os.environ["KUBECONFIG"]) as handle:
        config = _load(handle.read()) or {}
    # The API server of the kubeconfig's cluster knows that cluster's Nodes only.
    cluster = next(iter(c.get("name") for c in config.get("clusters") or []), None)
    items = []
    for ip, node in state["nodes"].items():
        host = _name(node)
        if host in state.get("deleted", []) or node.get("no_kubernetes") or node.get("cluster", cluster) != cluster:
            continue
        spec: dict[str, Any] = {"podCIDRs": ["10.244.0.0/24"]}
        if host in state.get("cordoned", []):
            spec["unschedulable"] = True
        ready = "True" if _ready(node, state) else "False"
        condition = {"type": "Ready", "status": ready}
        kubelet = node.get("kubelet", state.get("kubernetes", "v1.36.3"))
        metadata: dict[str, Any] = {"name": host, "labels": {"kubernetes.io/hostname": host, **node.get("labels", {})}}
        if state.get("annotations", {}).get(host):
            metadata["annotations"] = state["annotations"][host]
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": metadata,
                "spec": spec,
                "status": {
                    "conditions": [{"type": "MemoryPressure", "status": "False"}, condition],
                    "nodeInfo": {"kubeletVersion": kubelet if kubelet.startswith("v") else f"v{kubelet}"},
                    "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": host}],
                },
            }
        )
    document = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    return json.dumps(document, indent=4)


if __name__ == "__main__":
    sys.exit(main())
