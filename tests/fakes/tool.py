"""A fake talosctl and kubectl for the day-2 step tests: `tool.py <talosctl|kubectl> args...`.

State lives in the JSON file named by FAKE_STATE: each node (by address) with its hostname, role,
Talos version and schematic, and for `make status` its machine configurations (`config`: the
multi-document YAML text per MachineConfig id), kubelet version, Ready and labels; which Kubernetes
nodes are cordoned; the etcd member count (or hostnames); which subcommands fail; the talosctl
client version; the client certificates the cluster CA signed (`minted`: by `gen crt`, or put
there by a test for the provider's talosconfig). Every call is appended to FAKE_LOG with what a test
must check: the arguments, and the credential files the tool was given (their modes, and whether
they were private at the time).

Every answer and behaviour below is what the real tool does, read from its source at the tag
cited beside it (siderolabs/talos v1.13.9, kubernetes/kubectl v0.36.3); texts are paraphrased in
shape, never copied beyond the words a parser looks at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import sys
import time
from typing import Any

import yaml

TALOS = "siderolabs/talos v1.13.9"
KUBECTL = "kubernetes/kubectl v0.36.3"


class RefusedError(Exception):
    """The tool exits 1 with this text on stderr (talosctl prints its error as is:
    siderolabs/talos v1.13.9 cmd/talosctl/cmd/root.go Execute; kubectl prefixes `error: `)."""


def _mode(path: str | None) -> str | None:
    if not path or not os.path.exists(path):
        return None
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def main() -> int:
    tool, *args = sys.argv[1:]
    with open(os.environ["FAKE_STATE"]) as handle:
        before = handle.read()
    state = json.loads(before)
    talosconfig, kubeconfig = os.environ.get("TALOSCONFIG"), os.environ.get("KUBECONFIG")
    entry = {
        "tool": tool,
        "args": args,
        "talosconfig": talosconfig,
        "talosconfig_mode": _mode(talosconfig),
        "talosconfig_dir_mode": _mode(os.path.dirname(talosconfig)) if talosconfig else None,
        "kubeconfig_mode": _mode(kubeconfig),
        "files_mode": {p: _mode(p) for p in _paths(args)},
    }
    # One write per line on an O_APPEND descriptor: calls run in parallel (make status).
    fd = os.open(os.environ["FAKE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
    verb = _verb(tool, args)
    try:
        if verb in state.get("fail", []):
            raise RefusedError(f"fake {tool}: {verb} failed")
        out = _kubectl(verb, args, state) if tool == "kubectl" else _talosctl(verb, args, state)
    except RefusedError as refused:
        print(refused, file=sys.stderr)
        return 1
    finally:
        after = json.dumps(state)
        if after != before:
            # Replaced whole, never rewritten in place: a call running in parallel reads either
            # version, not half of one.
            temporary = f"{os.environ['FAKE_STATE']}.{os.getpid()}"
            with open(temporary, "w") as handle:
                handle.write(after)
            os.replace(temporary, os.environ["FAKE_STATE"])
    if out:
        print(out)
    return 0


def _paths(args: list[str]) -> list[str]:
    return [
        a.split("=", 1)[1] for a in args if a.startswith(("--key=", "--csr=")) and os.path.exists(a.split("=", 1)[1])
    ]


def _flag(args: list[str], name: str, default: str | None = None) -> str | None:
    """`--name=value`, `--name value`, or a bare boolean `--name` (cobra/pflag forms)."""
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return nxt if name in ("nodes", "endpoints") else "true"
    return default


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
        config = yaml.safe_load(handle)
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
    node: dict[str, Any] | None = state["nodes"].get(ip)
    if node is not None and node.get("hang"):
        # A machine that drops packets: talosctl sets no dial or call deadline (TALOS
        # pkg/machinery/client/connection.go getConn, options.go defaultDialOptions), so it waits
        # for as long as the TCP connect takes; the caller's own timeout has to end it.
        time.sleep(float(node["hang"]))
        raise RefusedError("rpc error: code = DeadlineExceeded desc = context deadline exceeded")
    if node is None or node.get("down"):
        raise RefusedError(
            f"rpc error: code = Unavailable desc = connection error: dial tcp {ip}:50000: connect: no route to host"
        )
    if node.get("rebooting", 0) > 0:  # answers nothing for a few calls after an upgrade
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


def _hostnames(state: dict[str, Any]) -> list[str]:
    return [n["hostname"] for n in state["nodes"].values() if n["hostname"] not in state.get("deleted", [])]


def _health(node: dict[str, Any], state: dict[str, Any]) -> str:
    """Server-side on a control plane (`--server` defaults to true); the default checks end with
    "all k8s nodes to report schedulable", which fails while any node is cordoned, until the wait
    timeout (TALOS cmd/talosctl/cmd/talos/health.go, pkg/cluster/check/default.go,
    kubernetes.go K8sAllNodesSchedulableAssertion, internal/app/machined/internal/server/v1alpha1/
    v1alpha1_cluster.go: progress lines on stderr, nothing on stdout)."""
    _control_plane_only(node, "cluster health check")
    cordoned = [h for h in _hostnames(state) if h in state.get("cordoned", [])]
    print("waiting for etcd to be healthy: OK", file=sys.stderr)
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
    host = node["hostname"]
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


def _reset(args: list[str], node: dict[str, Any], state: dict[str, Any]) -> str:
    """A graceful reset cordons and drains the node itself (best effort), then a control plane
    leaves etcd; then the disks are wiped and the machine shuts down, or reboots with `--reboot`
    (TALOS cmd/talosctl/cmd/talos/reset.go, v1alpha1_sequencer.go Reset)."""
    graceful = _flag(args, "graceful", "true") == "true"
    host = node["hostname"]
    if graceful:
        node["reset_found_drained"] = host in state.get("drained", [])
        _cordon(state, host, "reset")
        state.setdefault("drained", []).append(host)
        if node.get("role") == "controlplane":
            state["etcd_members"] = state.get("etcd_members", 3) - 1
    node["reset"] = {"graceful": graceful, "reboot": _flag(args, "reboot", "false") == "true"}
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
    host = words[-1]
    if verb == "delete":
        if host not in _hostnames(state):
            if "--ignore-not-found" in args:
                return ""
            raise RefusedError(f'Error from server (NotFound): nodes "{host}" not found')
        state.setdefault("deleted", []).append(host)
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


def _nodes_json(args: list[str], state: dict[str, Any]) -> str:
    """`kubectl get nodes -o json`: more than one object is printed as one `List` (apiVersion v1,
    items, metadata.resourceVersion) (KUBECTL pkg/cmd/get/get.go printGeneric), by the JSON
    printer at 4 spaces (kubernetes/cli-runtime v0.36.2 pkg/printers/json.go). Each Node
    (kubernetes/api v0.36.3 core/v1/types.go): metadata.name and labels, spec.unschedulable only
    when cordoned (omitempty), status.conditions with type Ready, status.nodeInfo.kubeletVersion."""
    if _output(args) != "json":
        raise RefusedError("fake kubectl: status asks for nodes as JSON only")
    with open(os.environ["KUBECONFIG"]) as handle:
        config = yaml.safe_load(handle) or {}
    # The API server of the kubeconfig's cluster knows that cluster's Nodes only.
    cluster = next(iter(c.get("name") for c in config.get("clusters") or []), None)
    items = []
    for node in state["nodes"].values():
        host = node["hostname"]
        if host in state.get("deleted", []) or node.get("no_kubernetes") or node.get("cluster", cluster) != cluster:
            continue
        spec: dict[str, Any] = {"podCIDRs": ["10.244.0.0/24"]}
        if host in state.get("cordoned", []):
            spec["unschedulable"] = True
        ready = "True" if node.get("ready", True) else "False"
        condition = {"type": "Ready", "status": ready}
        kubelet = node.get("kubelet", state.get("kubernetes", "v1.36.3"))
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": host, "labels": {"kubernetes.io/hostname": host, **node.get("labels", {})}},
                "spec": spec,
                "status": {
                    "conditions": [{"type": "MemoryPressure", "status": "False"}, condition],
                    "nodeInfo": {"kubeletVersion": kubelet if kubelet.startswith("v") else f"v{kubelet}"},
                },
            }
        )
    document = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    return json.dumps(document, indent=4)


if __name__ == "__main__":
    sys.exit(main())
