"""Day-2 steps that `pulumi up` runs through pulumi-command: `python3 -m talos_fleet.day2 <step>`.

Each step is one `local.Command` of `components/cluster_operations.py`:

    gate                the cluster's version gate: refuses unsupported version changes (on update,
                        against the versions it recorded last time) before any node is touched
    record-node         a node's first creation: records its target, touches nothing (a new node
                        installs the target image directly)
    upgrade-node        a node's update: health check, cordon, drain, `talosctl upgrade`, wait for
                        the node at the target, health check, uncordon; skips a node already there
    record-kubernetes   the cluster's first creation: records the Kubernetes target
    upgrade-kubernetes  `talosctl upgrade-k8s --to` once per cluster, then a health check
    remove-node         a node's deletion: drain, graceful reset (leaves etcd), delete the Node

Inputs come from the environment (plain, node-local facts: no secret) and stdin (the cluster's
Talos client credentials, a Pulumi secret). Credentials are written to files of mode 0600 in a
private temporary directory for talosctl and kubectl and removed when the step ends; nothing
secret is ever in a command line or printed. Progress goes to stderr; the last line on stdout is
the step's JSON record, which pulumi-command keeps (as a secret output) and hands back to the
next update as PULUMI_COMMAND_STDOUT.

Standard library only (plus the pure `versions` module): it runs with whatever `python3` the
Pulumi CLI finds, not the project's virtualenv.
"""

from __future__ import annotations

import json
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
TALOSCTL_INSTALL = "https://www.talos.dev/v1.13/talos-guides/install/talosctl/"
KUBECTL_INSTALL = "https://kubernetes.io/docs/tasks/tools/#kubectl"
POLL_SECONDS = 10.0


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
    """talosctl and kubectl with the step's private credentials."""

    environ: Mapping[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        log("$ " + " ".join(args))
        # Drain, upgrade and health carry their own timeouts from the upgrade policy.
        done = subprocess.run(args, env=dict(self.environ), capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise StepError(f"{' '.join(args[:3])} failed (exit {done.returncode}): " + " / ".join(detail))
        return done

    def talosctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Always the node's own address as endpoint: never the VIP, which moves during upgrades.
        return self.run("talosctl", "--nodes", node, "--endpoints", node, *args, check=check)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check)


@contextmanager
def credentials(env: Env, stdin: str, kubernetes: bool) -> Iterator[Tools]:
    """talosctl (and kubectl) configured from the stdin credentials, in a private directory that
    is removed afterwards, whatever happens."""
    require("talosctl", TALOSCTL_INSTALL)
    if kubernetes:
        require("kubectl", KUBECTL_INSTALL)
    try:
        client = json.loads(stdin)
        ca, crt, key = client["caCertificate"], client["clientCertificate"], client["clientKey"]
    except (ValueError, KeyError, TypeError):
        raise StepError("the Talos client credentials on stdin are missing or malformed") from None
    cluster, control_plane = env.get("CLUSTER"), env.get("CONTROL_PLANE")
    directory = tempfile.mkdtemp(prefix="talos-fleet-")  # mode 0700
    try:
        talosconfig = os.path.join(directory, "talosconfig")
        context = {"endpoints": [control_plane], "nodes": [control_plane], "ca": ca, "crt": crt, "key": key}
        _write_private(talosconfig, json.dumps({"context": cluster, "contexts": {cluster: context}}))
        environ = {**os.environ, "TALOSCONFIG": talosconfig}
        tools = Tools(environ)
        if kubernetes:
            kubeconfig = os.path.join(directory, "kubeconfig")
            _write_private(kubeconfig, "")
            tools.talosctl(control_plane, "kubeconfig", kubeconfig, "--force", "--merge=false")
            os.chmod(kubeconfig, 0o600)
            tools = Tools({**environ, "KUBECONFIG": kubeconfig})
        yield tools
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# ---------------------------------------------------------------------------------------------
# What a node runs


def tag(output: str) -> versions.Version:
    """The first `Tag:` of `talosctl version --short` output."""
    for line in output.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Tag":
            return versions.parse_version(value.strip())
    raise StepError("could not read a Talos version from talosctl version")


def server_version(output: str) -> versions.Version:
    """The node's Talos version: the Tag in the `Server:` section."""
    if "Server:" not in output:
        raise StepError("talosctl version printed no Server section")
    return tag(output.split("Server:", 1)[1])


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
    version = server_version(tools.talosctl(node, "version", "--short").stdout)
    extensions = tools.talosctl(node, "get", "extensions", "--output", "json", check=False)
    return version, schematic_of(extensions.stdout) if extensions.returncode == 0 else None


def _runs(tools: Tools, node: str, target: versions.Version, schematic: str) -> bool:
    version, running_schematic = _node_state(tools, node)
    return version == target and running_schematic in (schematic, None)


def _healthy(tools: Tools, env: Env) -> None:
    """The whole cluster, checked from the first control plane (etcd, API, every node Ready)."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
    tools.talosctl(env.get("CONTROL_PLANE"), "health", f"--wait-timeout={minutes}m")


def _check_talosctl_client(tools: Tools, target: versions.Version) -> None:
    client = tag(tools.run("talosctl", "version", "--client", "--short").stdout)
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
    target, installer = versions.parse_version(env.get("TALOS_VERSION")), env.get("INSTALLER")
    schematic = installer_schematic(installer)
    # Image Factory installs carry their schematic id as an extension; if a node does not show
    # one, this step's own record says whether it already upgraded the node to this installer.
    done_before = (env.previous() or {}).get("installer") == installer
    with credentials(env, stdin, kubernetes=True) as tools:
        running, running_schematic = _node_state(tools, node)
        if running == target and (running_schematic == schematic or (running_schematic is None and done_before)):
            log(f"{host} already runs Talos {target} with schematic {schematic[:12]}: no upgrade")
            # A previous run may have stopped after the upgrade: finish its checks.
            _healthy(tools, env)
            tools.kubectl("uncordon", host)
            return node_record(env)
        problem = versions.talos_change_problem(running, target, env.flag("ALLOW_DOWNGRADE"))
        if problem:
            raise StepError(f"{host}: {problem}")
        _check_talosctl_client(tools, target)
        log(f"{host}: Talos {running} -> {target} ({installer}); checking the cluster first")
        _healthy(tools, env)
        _drain(tools, env, host)
        minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
        tools.talosctl(node, "upgrade", f"--image={installer}", "--wait", f"--timeout={minutes}m")
        wait_until(lambda: _runs(tools, node, target, schematic), env, f"{host} running Talos {target}")
        _healthy(tools, env)
        tools.kubectl("uncordon", host)
        log(f"{host}: upgraded to Talos {target}; cluster healthy")
    return node_record(env)


def remove_node(env: Env, stdin: str) -> dict[str, str]:
    node, host, role = env.get("NODE"), env.get("HOSTNAME"), env.get("ROLE")
    with credentials(env, stdin, kubernetes=True) as tools:
        reachable = tools.talosctl(node, "version", "--short", check=False).returncode == 0
        if not reachable and not env.flag("FORCE_REMOVE"):
            raise StepError(
                f"{host} ({node}) does not answer, so it cannot be drained and reset. If the machine is "
                f"gone for good, run `{PREFIX}FORCE_REMOVE=1 pulumi up` to only delete its Kubernetes Node"
            )
        if reachable:
            _drain(tools, env, host)
            graceful = role != "controlplane" or _etcd_members(tools, node) > 1
            # Graceful: the node leaves etcd first. The last member has no one to leave to.
            tools.talosctl(node, "reset", f"--graceful={str(graceful).lower()}", "--reboot=false", "--wait")
        tools.kubectl("delete", "node", host, "--ignore-not-found")
        log(f"{host}: drained, reset and removed from Kubernetes")
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
