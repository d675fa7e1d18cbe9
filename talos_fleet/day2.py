"""Day-2 steps that `pulumi up` runs through pulumi-command: `python3 -m talos_fleet.day2 <step>`.

Each step is one `local.Command` of `components/cluster_operations.py`:

    gate                the cluster's version gate: refuses unsupported version changes (on update,
                        against the versions it recorded last time) before any node is touched
    record-node         a node's first creation: records its target, touches nothing (a new node
                        installs the target image directly)
    upgrade-node        a node's update: health check, cordon, drain, `talosctl upgrade --drain=false`,
                        wait for the node at the target, uncordon, health check; skips a node already
                        there
    record-kubernetes   the cluster's first creation: records the Kubernetes target
    upgrade-kubernetes  `talosctl upgrade-k8s --to` once per cluster, then a health check
    remove-node         a node's deletion: drain, graceful reset (leaves etcd), delete the Node; with
                        TALOS_FLEET_DESTROY=1 in the operator's environment (`make destroy`), only a
                        best-effort reset that never blocks the teardown

Inputs come from the environment (plain, node-local facts: no secret) and stdin (the cluster's
Talos OS certificate authority, a Pulumi secret that never changes). Each step mints its own
short-lived os:admin client certificate with `talosctl gen key/csr/crt`, so the provider renewing
its client certificate changes no step's inputs. Credentials live in files of mode 0600 in a
private temporary directory, removed when the step ends (the CA key right after minting); nothing
secret is ever in a command line or printed. Progress goes to stderr; the last line on stdout is
the step's JSON record, which pulumi-command keeps (as a secret output) and hands back to the next
update as PULUMI_COMMAND_STDOUT.

Standard library only (plus the pure `versions` module): it runs with whatever `python3` the
Pulumi CLI finds, not the project's virtualenv.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from talos_fleet import versions

PREFIX = "TALOS_FLEET_"
# Set by `make destroy` in the operator's environment; pulumi-command hands a local command the
# provider's whole process environment plus its own `environment` input
# (pulumi/pulumi-command v1.2.1: provider/pkg/provider/local/commandOutputs.go), and the Pulumi
# CLI starts providers with its own environment (pulumi/pulumi v3.259.0:
# sdk/go/common/resource/plugin/provider_plugin.go). It is no input, so setting it changes nothing
# Pulumi diffs.
DESTROY_ENV = PREFIX + "DESTROY"
TALOSCTL_INSTALL = "https://www.talos.dev/v1.13/talos-guides/install/talosctl/"
KUBECTL_INSTALL = "https://kubernetes.io/docs/tasks/tools/#kubectl"
POLL_SECONDS = 10.0
# Teardown never waits long on a machine that may be gone.
DESTROY_CALL_SECONDS = 60.0


class StepError(Exception):
    """A step stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Env:
    """The step's inputs: TALOS_FLEET_* variables, plus the operator's own switches."""

    values: Mapping[str, str]

    def get(self, name: str) -> str:
        value = self.values.get(PREFIX + name)
        if not value:
            raise StepError(f"{PREFIX}{name} is not set; this step is run by pulumi up, not by hand")
        return value

    def flag(self, name: str) -> bool:
        return self.values.get(PREFIX + name, "").lower() in ("1", "true", "yes")

    def minutes(self, name: str) -> int:
        return int(self.get(name))

    def previous(self) -> dict[str, str] | None:
        """The record this command printed last time (pulumi-command passes it on update)."""
        text = self.values.get("PULUMI_COMMAND_STDOUT", "").strip()
        try:
            record = json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def certificate_hours(self) -> int:
        """How long the step's client certificate must last: the longest a step can take (health,
        drain, upgrade, wait, health), rounded up, plus an hour."""
        health = int(self.values.get(PREFIX + "HEALTH_TIMEOUT_MINUTES") or 15)
        drain = int(self.values.get(PREFIX + "DRAIN_TIMEOUT_MINUTES") or 10)
        return math.ceil((4 * health + drain) / 60) + 1


def log(message: str) -> None:
    print(f"talos-fleet: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Tools and credentials


def require(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StepError(
            f"{tool} is not installed (not on PATH); pulumi up runs it for upgrades and node removal. "
            f"Install it ({install}) in the version README.md names, then run pulumi up again"
        )
    return path


@dataclass(frozen=True)
class Tools:
    """talosctl and kubectl with the step's private credentials. Every node is reached through
    `endpoint` with the node in `--nodes`: a control plane's apid proxies to any node, and the
    control-plane-only APIs (kubeconfig, health, etcd members) answer there."""

    environ: Mapping[str, str]
    endpoint: str
    timeout: float | None = None
    # `make status` asks hundreds of nodes and reports progress instead of every command.
    echo: bool = True

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.echo:
            log("$ " + " ".join(args))
        # Drain, upgrade and health carry their own timeouts from the upgrade policy.
        try:
            done = subprocess.run(
                args, env=dict(self.environ), capture_output=True, text=True, check=False, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise StepError(f"{' '.join(args[:3])} did not answer within {self.timeout:.0f} s") from None
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise StepError(f"{' '.join(args[:3])} failed (exit {done.returncode}): " + " / ".join(detail))
        return done

    def talosctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Never the VIP as endpoint: it moves during upgrades and needs etcd.
        return self.run("talosctl", "--nodes", node, "--endpoints", self.endpoint, *args, check=check)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check)


def _base64(value: object) -> str:
    # talosctl decodes talosconfig credentials as standard base64 and refuses anything else
    # (siderolabs/talos v1.13.9: pkg/machinery/client/connection.go).
    text = str(value)
    base64.b64decode(text, validate=True)
    return text


def stdin_credentials(stdin: str) -> tuple[tuple[str, str] | None, tuple[str, str, str] | None]:
    """Either the OS CA (certificate, key) to mint a client certificate from, or, as stored by
    talos-fleet releases before it sent the CA, a ready client configuration (CA, certificate,
    key): a node removed in the same `pulumi up` that moves to this release is deleted with the
    stdin its last run stored. All base64 PEM, as the provider keeps them."""
    try:
        document = json.loads(stdin)
        if "osCa" in document:
            return (_base64(document["osCa"]["cert"]), _base64(document["osCa"]["key"])), None
        keys = ("caCertificate", "clientCertificate", "clientKey")
        ca, crt, key = (_base64(document[k]) for k in keys)
        return None, (ca, crt, key)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StepError(
            "the Talos CA on stdin is missing or not base64; this step is run by pulumi up, not by hand"
        ) from None


@contextmanager
def credentials(env: Env, stdin: str, kubernetes: bool, endpoint: str | None = None) -> Iterator[Tools]:
    """talosctl (and kubectl) with a client certificate minted for this step, in a private
    directory that is removed afterwards, whatever happens."""
    require("talosctl", TALOSCTL_INSTALL)
    if kubernetes:
        require("kubectl", KUBECTL_INSTALL)
    authority, legacy = stdin_credentials(stdin)
    cluster, endpoint = env.get("CLUSTER"), endpoint or env.get("CONTROL_PLANE")
    timeout = DESTROY_CALL_SECONDS if env.flag("DESTROY") else None
    directory = tempfile.mkdtemp(prefix="talos-fleet-")  # mode 0700
    try:
        if authority is not None:
            ca_cert, ca_key = authority
            crt, key = _mint_client_certificate(directory, ca_cert, ca_key, env.certificate_hours())
        else:
            assert legacy is not None
            ca_cert, crt, key = legacy
        talosconfig = os.path.join(directory, "talosconfig")
        context = {"endpoints": [endpoint], "nodes": [endpoint], "ca": ca_cert, "crt": crt, "key": key}
        _write_private(talosconfig, json.dumps({"context": cluster, "contexts": {cluster: context}}))
        environ = {**os.environ, "TALOSCONFIG": talosconfig}
        tools = Tools(environ, endpoint, timeout)
        if kubernetes:
            kubeconfig = os.path.join(directory, "kubeconfig")
            _write_private(kubeconfig, "")
            # Kubeconfig is a control-plane API: asked at the endpoint, a control plane.
            tools.talosctl(endpoint, "kubeconfig", kubeconfig, "--force", "--merge=false")
            os.chmod(kubeconfig, 0o600)
            tools = Tools({**environ, "KUBECONFIG": kubeconfig}, endpoint, timeout)
        yield tools
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _mint_client_certificate(directory: str, ca_cert: str, ca_key: str, hours: int) -> tuple[str, str]:
    """An os:admin client certificate valid for `hours`, signed by the cluster's OS CA, as base64
    PEM. `talosctl gen key` writes `<name>.key`; `gen csr --key K` writes K minus `.key` plus
    `.csr`; `gen crt --ca BASE` reads `BASE.crt` and `BASE.key` and writes `<name>.crt`
    (siderolabs/talos v1.13.9: cmd/talosctl/cmd/mgmt/gen/key.go, csr.go, crt.go, gen.go)."""
    ca, admin = os.path.join(directory, "ca"), os.path.join(directory, "admin")
    _write_private(ca + ".crt", base64.b64decode(ca_cert).decode())
    _write_private(ca + ".key", base64.b64decode(ca_key).decode())
    tools = Tools(os.environ, "")
    try:
        tools.run("talosctl", "gen", "key", f"--name={admin}")
        # --ip is required by gen csr; the address only lands in the SANs, which client auth ignores.
        tools.run("talosctl", "gen", "csr", f"--key={admin}.key", "--ip=127.0.0.1", "--roles=os:admin")
        tools.run("talosctl", "gen", "crt", f"--ca={ca}", f"--csr={admin}.csr", f"--name={admin}", f"--hours={hours}")
    finally:
        os.remove(ca + ".key")  # the CA key is on disk only while signing
    with open(admin + ".crt", "rb") as crt, open(admin + ".key", "rb") as key:
        return base64.b64encode(crt.read()).decode(), base64.b64encode(key.read()).decode()


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# ---------------------------------------------------------------------------------------------
# What a node runs


def _version(text: str, whose: str) -> versions.Version:
    try:
        return versions.parse_version(text)
    except ValueError:
        raise StepError(
            f"{whose} reports Talos {text!r}; talos-fleet compares released versions (vX.Y.Z) only, not "
            "pre-releases such as v1.14.0-beta.1. Use a released talosctl and Talos image"
        ) from None


def client_version(output: str) -> versions.Version:
    """`talosctl version --client --short`: `Client:`, then name and tag (`Talos v1.13.9`) on one
    line (siderolabs/talos v1.13.9: cmd/talosctl/cmd/talos/version.go prints `Client:` then
    pkg/machinery/version/version.go Short(), "<Name> <Tag>")."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if "Client:" in lines and lines.index("Client:") + 1 < len(lines):
        words = lines[lines.index("Client:") + 1].split()
        if len(words) == 2:
            return _version(words[1], "talosctl")
    raise StepError("could not read the talosctl version from `talosctl version --client --short`")


def server_version(output: str, node: str) -> versions.Version:
    """The node's Talos version: the `Tag:` line of the `Server:` section, which is always the long
    form (version.go: PrintLongVersionFromExisting, whatever --short says)."""
    if "Server:" not in output:
        raise StepError("talosctl version printed no Server section")
    for line in output.split("Server:", 1)[1].splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Tag":
            return _version(value.strip(), node)
    raise StepError(f"could not read {node}'s Talos version from talosctl version")


def schematic_of(output: str) -> str | None:
    """The Image Factory schematic id among `talosctl get extensions -o json` resources."""
    decoder, text, at = json.JSONDecoder(), output.strip(), 0
    while at < len(text):
        resource, end = decoder.raw_decode(text, at)
        meta = (resource.get("spec") or {}).get("metadata") or {}
        if meta.get("name") == "schematic":
            return str(meta.get("version"))
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return None


def installer_schematic(installer: str) -> str:
    """`factory.talos.dev/<platform>-installer/<schematic>:<version>` -> `<schematic>`."""
    return installer.rsplit("/", 1)[-1].split(":", 1)[0]


def wait_until(check: Callable[[], bool], env: Env, what: str) -> None:
    """Poll `check` until it holds; a failing tool call (the node is rebooting) counts as not yet."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
    deadline = time.monotonic() + minutes * 60
    while True:
        try:
            if check():
                return
        except StepError as error:
            log(f"waiting: {error}")
        if time.monotonic() > deadline:
            raise StepError(f"{what} did not happen within {minutes} minutes")
        time.sleep(float(env.values.get(PREFIX + "POLL_SECONDS", POLL_SECONDS)))


def _node_state(tools: Tools, node: str) -> tuple[versions.Version, str | None]:
    version = server_version(tools.talosctl(node, "version", "--short").stdout, node)
    extensions = tools.talosctl(node, "get", "extensions", "--output", "json", check=False)
    return version, schematic_of(extensions.stdout) if extensions.returncode == 0 else None


def _runs(tools: Tools, node: str, target: versions.Version, schematic: str) -> bool:
    """The node runs the target; an image that does not show its schematic is taken at its word
    here, where this step has just installed (or recorded) the installer."""
    version, running_schematic = _node_state(tools, node)
    return version == target and running_schematic in (schematic, None)


def _healthy(tools: Tools, env: Env) -> None:
    """The whole cluster, checked server-side on the first control plane (etcd, API, every node
    Ready and schedulable: siderolabs/talos v1.13.9 pkg/cluster/check/default.go). So it only
    runs while no node of this step is cordoned."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
    tools.talosctl(env.get("CONTROL_PLANE"), "health", f"--wait-timeout={minutes}m")


def _check_talosctl_client(tools: Tools, target: versions.Version) -> None:
    client = client_version(tools.run("talosctl", "version", "--client", "--short").stdout)
    if client.minor_key < target.minor_key:
        raise StepError(
            f"talosctl {client} is older than the target Talos {target}; install talosctl "
            f"v{versions.fmt_minor(target.minor_key)}.x ({TALOSCTL_INSTALL})"
        )


def node_record(env: Env) -> dict[str, str]:
    return {"talos": env.get("TALOS_VERSION"), "installer": env.get("INSTALLER")}


def record_node(env: Env, stdin: str) -> dict[str, str]:
    return node_record(env)


def upgrade_node(env: Env, stdin: str) -> dict[str, str]:
    node, host = env.get("NODE"), env.get("HOSTNAME")
    target, installer = _version(env.get("TALOS_VERSION"), "the stack"), env.get("INSTALLER")
    schematic = installer_schematic(installer)
    if env.previous() == node_record(env):
        # Only an input other than the target changed (the CA, the policy, the command's
        # directory): this step already brought the node here. A failed run never records.
        with credentials(env, stdin, kubernetes=False) as tools:
            if _runs(tools, node, target, schematic):
                log(f"{host}: already upgraded to Talos {target} by this step: nothing to do")
                return node_record(env)
    with credentials(env, stdin, kubernetes=True) as tools:
        running, running_schematic = _node_state(tools, node)
        if (running, running_schematic) == (target, schematic):
            log(f"{host} already runs Talos {target} with schematic {schematic[:12]}: no upgrade")
            # A previous run may have stopped after the upgrade: finish it.
            tools.kubectl("uncordon", host)
            _healthy(tools, env)
            return node_record(env)
        problem = versions.talos_change_problem(running, target, env.flag("ALLOW_DOWNGRADE"))
        if problem:
            raise StepError(f"{host}: {problem}")
        _check_talosctl_client(tools, target)
        log(f"{host}: Talos {running} -> {target} ({installer}); checking the cluster first")
        # A failed earlier attempt may have left this node cordoned, which fails every health check.
        tools.kubectl("uncordon", host)
        _healthy(tools, env)
        with _cordoned(tools, host):
            _drain(tools, env, host)
            minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
            # --drain=false: the drain above is the only one (talosctl's own would need a
            # Kubernetes client through the endpoint, and it uncordons before our health check:
            # siderolabs/talos v1.13.9 cmd/talosctl/cmd/talos/upgrade.go, drain.go).
            tools.talosctl(node, "upgrade", f"--image={installer}", "--drain=false", "--wait", f"--timeout={minutes}m")
            wait_until(lambda: _runs(tools, node, target, schematic), env, f"{host} running Talos {target}")
        _healthy(tools, env)
        log(f"{host}: upgraded to Talos {target}; cluster healthy")
    return node_record(env)


@contextmanager
def _cordoned(tools: Tools, host: str) -> Iterator[None]:
    """Cordoned inside, schedulable after, also when the step fails there: a node left cordoned
    would fail every later health check, so no retry could pass its first check."""
    try:
        yield
    except StepError:
        if tools.kubectl("uncordon", host, check=False).returncode != 0:
            log(f"{host} may still be cordoned: `kubectl uncordon {host}` failed")
        raise
    tools.kubectl("uncordon", host)


def remove_node(env: Env, stdin: str) -> dict[str, str]:
    if env.flag("DESTROY"):
        return _teardown_node(env, stdin)
    node, host, role = env.get("NODE"), env.get("HOSTNAME"), env.get("ROLE")
    with credentials(env, stdin, kubernetes=True) as tools:
        reachable = tools.talosctl(node, "version", "--short", check=False).returncode == 0
        if not reachable and not env.flag("FORCE_REMOVE"):
            raise StepError(
                f"{host} ({node}) does not answer, so it cannot be drained and reset. If the machine is "
                f"gone for good, run `{PREFIX}FORCE_REMOVE=1 make up STACK=<the stack you are applying>` to only "
                "delete its Kubernetes Node (to tear the whole stack down, `make destroy STACK=<stack>` never "
                "waits for dead machines)"
            )
        if reachable:
            graceful = role != "controlplane" or _etcd_members(tools, node) > 1
            with _cordoned_until_reset(tools, host):
                # kubectl drains: it honours PodDisruptionBudgets within the policy's timeout
                # and fails the step. The graceful reset's own drain then finds nothing to evict:
                # it is best effort (5 minutes, failures only logged, the reset goes on:
                # siderolabs/talos v1.13.9 internal/app/machined/pkg/runtime/v1alpha1/
                # v1alpha1_sequencer.go Reset, pkg/kubernetes/kubernetes.go Drain).
                _drain(tools, env, host)
            # Graceful: the node leaves etcd first. The last member has no one to leave to.
            tools.talosctl(node, "reset", f"--graceful={str(graceful).lower()}", "--reboot=false", "--wait")
        tools.kubectl("delete", "node", host, "--ignore-not-found")
        log(f"{host}: drained, reset and removed from Kubernetes")
    return {"removed": host}


@contextmanager
def _cordoned_until_reset(tools: Tools, host: str) -> Iterator[None]:
    """A drain that fails leaves the node in the cluster, so schedulable again."""
    try:
        yield
    except StepError:
        tools.kubectl("uncordon", host, check=False)
        raise


def _teardown_node(env: Env, stdin: str) -> dict[str, str]:
    """`make destroy`: the whole cluster goes away, so nothing is drained, nothing waits for
    Kubernetes, and nothing here can stop the teardown. A machine that answers is reset without
    leaving etcd and rebooted, so bare metal comes back in maintenance mode, ready to be installed
    again; a VM is deleted right after anyway. Reached at its own address: the control planes may
    already be gone."""
    node, host = env.get("NODE"), env.get("HOSTNAME")
    try:
        with credentials(env, stdin, kubernetes=False, endpoint=node) as tools:
            if tools.talosctl(node, "version", "--short", check=False).returncode != 0:
                log(f"{host} ({node}) does not answer: nothing to reset")
            else:
                # --wait=false: the reset request is accepted, then the machine wipes itself.
                tools.talosctl(node, "reset", "--graceful=false", "--reboot", "--wait=false")
                log(f"{host}: reset requested (wipes Talos, reboots into maintenance mode)")
    except StepError as error:
        log(f"{host}: teardown goes on without resetting it: {error}")
    return {"removed": host}


def _drain(tools: Tools, env: Env, host: str) -> None:
    """Cordon, then evict everything but DaemonSets (PodDisruptionBudgets are honoured)."""
    tools.kubectl("cordon", host)
    tools.kubectl(
        "drain",
        host,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={env.minutes('DRAIN_TIMEOUT_MINUTES')}m",
    )


def _etcd_members(tools: Tools, node: str) -> int:
    listing = tools.talosctl(node, "etcd", "members").stdout.strip().splitlines()
    return max(len(listing) - 1, 0)  # minus the header line


def gate(env: Env, stdin: str) -> dict[str, str]:
    record = {"talos": env.get("TALOS_VERSION"), "kubernetes": env.get("KUBERNETES_VERSION")}
    previous = env.previous()
    if previous is None:
        return record
    problems = versions.rollout_problems(
        versions.parse_version(previous["talos"]),
        versions.parse_version(previous["kubernetes"]),
        versions.parse_version(record["talos"]),
        versions.parse_version(record["kubernetes"]),
        env.flag("ALLOW_DOWNGRADE"),
    )
    if problems:
        cluster = env.get("CLUSTER")
        raise StepError(
            f"cluster {cluster}: this change is refused before any node is touched:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return record


def record_kubernetes(env: Env, stdin: str) -> dict[str, str]:
    return {"kubernetes": env.get("KUBERNETES_VERSION")}


def upgrade_kubernetes(env: Env, stdin: str) -> dict[str, str]:
    target = versions.parse_version(env.get("KUBERNETES_VERSION"))
    if env.previous() == record_kubernetes(env, stdin):
        # Only an input other than the target changed; a failed run never records.
        log(f"cluster {env.get('CLUSTER')}: Kubernetes {target} already reached by this step: nothing to do")
        return record_kubernetes(env, stdin)
    control_plane = env.get("CONTROL_PLANE")
    with credentials(env, stdin, kubernetes=False) as tools:
        log(f"cluster {env.get('CLUSTER')}: Kubernetes -> {target}")
        # Re-runnable: components already at the target are left alone.
        tools.talosctl(control_plane, "upgrade-k8s", f"--to={str(target).removeprefix('v')}")
        _healthy(tools, env)
    return record_kubernetes(env, stdin)


STEPS: dict[str, Callable[[Env, str], dict[str, str]]] = {
    "gate": gate,
    "record-node": record_node,
    "upgrade-node": upgrade_node,
    "remove-node": remove_node,
    "record-kubernetes": record_kubernetes,
    "upgrade-kubernetes": upgrade_kubernetes,
}


def command(step: str) -> str:
    """The command text pulumi-command runs for a step: no value in it, so it never changes."""
    if step not in STEPS:
        raise KeyError(step)
    return f"python3 -m talos_fleet.day2 {step}"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, stdin: str | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: python3 -m talos_fleet.day2 {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    env = Env(os.environ if environ is None else environ)
    try:
        record = STEPS[args[0]](env, sys.stdin.read() if stdin is None else stdin)
    except StepError as error:
        log(f"stopped: {error}")
        return 1
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
