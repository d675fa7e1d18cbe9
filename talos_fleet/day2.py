"""Day-2 steps that `pulumi up` runs through pulumi-command: `python3 -m talos_fleet.day2 <step>`.

Each step is one `local.Command` of `components/cluster_operations.py`:

    gate                the cluster's version gate: refuses unsupported version changes (on update,
                        against the versions it recorded last time) before any node is touched
    record-node         a node's lifecycle, created or updated: records the node, touches nothing
    remove-node         the lifecycle's deletion: cluster health, drain, graceful reset (leaves
                        etcd), delete the Node, one node of the cluster at a time; with
                        TALOS_FLEET_DESTROY=1 in the operator's environment (`make destroy`), only
                        a best-effort reset that never blocks the teardown
    record-upgrades     the upgrade rollout's creation: records the targets and the nodes
    upgrade-rollout     its update: the existing nodes not at the target, wave by wave (each control
                        plane alone, then worker batches): cordon, drain, `talosctl upgrade
                        --drain=false`, wait for the target, uncordon, cluster health
    record-kubernetes   the cluster's first creation: records the Kubernetes target
    upgrade-kubernetes  `talosctl upgrade-k8s --to` once per cluster, then a health check
    record-config       the config rollout's creation: records each node's config fingerprint
    roll-config         its update: the existing nodes whose config changed, a canary first, then
                        the waves, health-gated; live where Talos applies it live (the canary in
                        try mode, confirmed once healthy; a settle before each check), otherwise
                        staged and rebooted, drained

Both rollouts skip nodes they did not record (new) and recorded nodes that never joined
Kubernetes, and stop before touching any node when a recorded node's address answers under
another Node name; a new TALOS_FLEET_RECHECK value (the stack's `upgrade.recheck`) makes them ask
every existing node again (the config rollout dry-runs them all before it picks its canary),
which is how a revert after a failed rollout reaches the nodes it changed. With
TALOS_FLEET_SKIP_PRECHECK=1 in the operator's environment they skip the health check before their
first wave, and only that one.

Inputs come from the environment (plain spec facts: no secret) and stdin (the cluster's
Talos OS certificate authority, a Pulumi secret that never changes; for the config rollout also
the role configs and the node patches). Each step mints its own short-lived os:admin client
certificate with `talosctl gen key/csr/crt` (a rollout mints a new one before a wave could
outlive it), so the provider renewing its client certificate changes no step's
inputs. Credentials and configs live in files of mode 0600 in private temporary directories,
removed when the step ends (the CA key right after minting); nothing secret is ever in a command
line or printed. Progress goes to stderr; the last line on stdout is the step's JSON record,
which pulumi-command keeps (as a secret output) and hands back to the next update as
PULUMI_COMMAND_STDOUT.

Standard library only (plus the pure `versions` and `waves` modules): it runs with whatever
`python3` the Pulumi CLI finds, not the project's virtualenv.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import IO, Any, NamedTuple, TypeVar

from talos_fleet import versions, waves

PREFIX = "TALOS_FLEET_"
# Set by `make destroy` in the operator's environment; pulumi-command hands a local command the
# provider's whole process environment plus its own `environment` input
# (pulumi/pulumi-command v1.2.1: provider/pkg/provider/local/commandOutputs.go), and the Pulumi
# CLI starts providers with its own environment (pulumi/pulumi v3.259.0:
# sdk/go/common/resource/plugin/provider_plugin.go). It is no input, so setting it changes nothing
# Pulumi diffs.
DESTROY_ENV = PREFIX + "DESTROY"
# Also from the operator's environment, never an input: both rollouts skip the health check
# before their first wave (only that one), so a change that repairs a cluster unhealthy now (a
# broken CNI patch, a dead node) can start; the canary's own check then decides.
SKIP_PRECHECK_ENV = PREFIX + "SKIP_PRECHECK"
TALOSCTL_INSTALL = "https://www.talos.dev/v1.13/talos-guides/install/talosctl/"
KUBECTL_INSTALL = "https://kubernetes.io/docs/tasks/tools/#kubectl"
POLL_SECONDS = 10.0
# How long a wave waits after applying a config live before its health check
# (TALOS_FLEET_SETTLE_SECONDS). A node answers the apply once the new MachineConfig is stored and
# its controllers act on it afterwards (siderolabs/talos v1.13.9:
# internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go ApplyConfiguration returns
# after SetConfig, which only writes the resource:
# internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go); and
# a kubelet the change broke still reads Ready until kube-controller-manager's
# --node-monitor-grace-period has passed without a status from it, 50s by default since
# Kubernetes 1.32, 40s before (https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/,
# kubernetes/kubernetes#126287). A check right after the apply would pass on a broken node.
SETTLE_SECONDS = 60.0
# Teardown never waits long on a machine that may be gone.
DESTROY_CALL_SECONDS = 60.0
# pulumi-command hands a command's last stdout and stderr to its next run as the environment
# strings PULUMI_COMMAND_STDOUT and PULUMI_COMMAND_STDERR (pulumi/pulumi-command v1.2.1:
# provider/pkg/provider/local/commandOutputs.go), and Linux refuses to start a program whose
# environment holds one string longer than MAX_ARG_STRLEN, 32 pages: 128 KiB with 4 KiB pages,
# name, `=` and NUL included (torvalds/linux 2cc2c3c:include/uapi/linux/binfmts.h; an exec with
# a 131,072-byte string fails with E2BIG on the 6.18 kernel these tests ran on). A record or a
# stderr over it would make the command's next update fail before it starts.
MAX_ENV_STRING = 128 * 1024
# What stderr may take of it; further progress goes to a log file that stderr names.
STDERR_BUDGET = 64 * 1024
# How many talosctl calls run at once (a node query pass, a worker batch's upgrades or reboots):
# each is a process of its own, and a batch may hold up to 1,000 workers (spec.MAX_WORKER_BATCH).
MAX_PARALLEL = 32
# Record fields holding per-node data, packed (`pack`) to keep the record small.
PACKED = ("nodes", "config")
# Hex digits of a config fingerprint, and of the plan's live and reboot hashes
# (talos_fleet.reboots.node_hashes).
HASH_DIGITS = 12
# What a config record keeps of a live hash: per-node hashes of 12 digits in three columns do not
# fit MAX_ENV_STRING at 5,000 nodes, and two live hashes read as equal only cost a reboot.
LIVE_DIGITS = 6
# How much longer a try-mode apply waits before rolling back than the health check waits.
TRY_MARGIN_MINUTES = 5
# A 1.13 node's answer to a no-reboot apply of a change it cannot apply without a reboot, before
# it changes anything (siderolabs/talos v1.13.9:
# internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go CanApplyImmediate, returned as
# InvalidArgument by internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go
# ApplyConfiguration). Talos 1.14 never answers it (v1.14.0-rc.1: same server file).
NOT_IMMEDIATE = "can't be applied in immediate mode"
# The annotation a step puts on a Node before it cordons it, the cluster's name as value: only
# a cordoned node carrying it is talos-fleet's to uncordon; one cordoned by hand stays cordoned.
# A qualified name with a DNS prefix, as the API server requires of annotation keys
# (kubernetes/apimachinery v0.36.3 pkg/api/validation/objectmeta.go ValidateAnnotations).
CORDON_MARK = "talos-fleet.dev/cordoned"

T = TypeVar("T")
R = TypeVar("R")


class StepError(Exception):
    """A step stopped; the message says why and what to do."""


def pack(value: Any) -> str:
    """Per-node data in a record: base64 of zlib-compressed compact JSON. A record reaches the
    next update as one environment string (MAX_ENV_STRING); thousands of hostnames and hashes in
    plain JSON would not fit."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def unpack(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text, validate=True)))


def fits(record: dict[str, Any]) -> dict[str, Any]:
    """The record, checked before the step touches anything: one pulumi-command can hand to its
    next update (MAX_ENV_STRING, `PULUMI_COMMAND_STDOUT=` and the NUL included)."""
    size, limit = len(json.dumps(record, sort_keys=True).encode()), MAX_ENV_STRING - len("PULUMI_COMMAND_STDOUT=") - 1
    if size > limit:
        raise StepError(
            f"this step's record would be {size} bytes; pulumi-command hands it to the next update as one "
            f"environment variable, which Linux limits to {limit} bytes. Split the cluster"
        )
    return record


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

    def per_node(self, name: str) -> dict[str, dict[str, str]]:
        """`TALOS_FLEET_<name>_<hostname>` = compact JSON object, one per node, by hostname."""
        prefix, found = f"{PREFIX}{name}_", {}
        for key, value in self.values.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                try:
                    document = json.loads(value)
                except ValueError:
                    document = None
                if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
                    raise StepError(
                        f"{key} is not a JSON object of strings; this step is run by pulumi up, not by hand"
                    )
                found[key[len(prefix) :]] = document
        return found

    def previous(self) -> dict[str, Any] | None:
        """The record this command printed last time (pulumi-command passes it on update), with its
        packed fields unpacked; None if there is none or it cannot be read."""
        text = self.values.get("PULUMI_COMMAND_STDOUT", "").strip()
        try:
            record = json.loads(text.splitlines()[-1]) if text else None
            if isinstance(record, dict):
                for field in PACKED:
                    if isinstance(record.get(field), str):
                        record[field] = unpack(record[field])
        except (ValueError, zlib.error, binascii.Error):
            return None
        return record if isinstance(record, dict) else None

    def settle_seconds(self) -> float:
        return float(self.values.get(PREFIX + "SETTLE_SECONDS") or SETTLE_SECONDS)

    def wave_minutes(self) -> int:
        """The longest a step (a rollout: one wave of it) can take: health, drain, upgrade or
        reboot, wait, settle, health. A batch's nodes run MAX_PARALLEL at a time (`each`), so a
        larger batch takes that many rounds of the per-node parts; counted whole, to be safe."""
        health = int(self.values.get(PREFIX + "HEALTH_TIMEOUT_MINUTES") or 15)
        drain = int(self.values.get(PREFIX + "DRAIN_TIMEOUT_MINUTES") or 10)
        batch = max(int(self.values.get(PREFIX + "WORKER_BATCH_SIZE") or 1), 1)
        rounds = math.ceil(batch / MAX_PARALLEL)
        return (4 * health + drain + math.ceil(self.settle_seconds() / 60)) * rounds

    def certificate_hours(self) -> int:
        """How long a client certificate must last: one wave, rounded up, plus an hour."""
        return math.ceil(self.wave_minutes() / 60) + 1


class Progress:
    """Where progress lines go: stderr, which the operator sees as `pulumi up` runs, until it
    holds STDERR_BUDGET bytes (pulumi-command hands the whole of it to the command's next run as
    one environment string: MAX_ENV_STRING); after that a private log file in the temporary
    directory, which stderr names once. A line marked `always` (why a step stopped) reaches stderr
    in any case."""

    def __init__(self, budget: int = STDERR_BUDGET) -> None:
        self.budget = budget
        self.written = 0
        self.overflow: IO[str] | None = None
        self.lock = threading.Lock()

    def line(self, message: str, always: bool = False) -> None:
        line = f"talos-fleet: {message}\n"
        with self.lock:
            if self.overflow is None and self.written + len(line.encode()) <= self.budget:
                self._stderr(line)
                return
            if self.overflow is None:
                fd, path = tempfile.mkstemp(prefix="talos-fleet-progress-", suffix=".log")  # mode 0600
                self.overflow = os.fdopen(fd, "w")
                self._stderr(f"talos-fleet: further progress goes to {path} (stderr is kept short)\n")
            self.overflow.write(line)
            self.overflow.flush()
            if always:
                self._stderr(line)

    def _stderr(self, line: str) -> None:
        self.written += len(line.encode())
        sys.stderr.write(line)
        sys.stderr.flush()


PROGRESS = Progress()


def log(message: str, always: bool = False) -> None:
    PROGRESS.line(message, always)


def each(items: Sequence[T], work: Callable[[T], R]) -> list[R]:
    """`work` on every item, up to MAX_PARALLEL at once, results in item order. Every item runs to
    its end; then the failures, if any, stop the step together."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(len(items), MAX_PARALLEL)) as pool:
        futures = [pool.submit(work, item) for item in items]
    failures: list[BaseException] = [e for e in (f.exception() for f in futures) if e is not None]
    for failure in failures:
        if not isinstance(failure, StepError):
            raise failure  # a bug, not a step failure: its traceback
    if failures:
        shown = "; ".join(str(f) for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise StepError(shown + more)
    return [f.result() for f in futures]


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
            raise failed(done)
        return done

    def talosctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Never the VIP as endpoint: it moves during upgrades and needs etcd.
        return self.run("talosctl", "--nodes", node, "--endpoints", self.endpoint, *args, check=check)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check)


def failed(done: subprocess.CompletedProcess[str]) -> StepError:
    """What a failed tool call says: its first words and the last lines of its output."""
    detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return StepError(f"{' '.join(done.args[:3])} failed (exit {done.returncode}): " + " / ".join(detail))


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
    with private_directory() as directory:
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


@contextmanager
def private_directory() -> Iterator[str]:
    """A directory only this user can enter (mkdtemp: mode 0700), removed whatever happens."""
    directory = tempfile.mkdtemp(prefix="talos-fleet-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Renewing:
    """Credentials for a rollout, which may take far longer than a client certificate lasts: the
    certificate is minted again before a wave that could outlive it (what is left of it is less
    than wave_minutes and a margin for clocks)."""

    CLOCK_MARGIN_SECONDS = 600

    def __init__(self, env: Env, stdin: str) -> None:
        self.env, self.stdin = env, stdin
        self.stack: ExitStack | None = None
        self.current: Tools | None = None
        self.since = 0.0

    def tools(self) -> Tools:
        usable = (self.env.certificate_hours() * 60 - self.env.wave_minutes()) * 60 - self.CLOCK_MARGIN_SECONDS
        if self.current is None or time.monotonic() - self.since > usable:
            self.close()
            self.stack = ExitStack()
            self.current = self.stack.enter_context(credentials(self.env, self.stdin, kubernetes=True))
            self.since = time.monotonic()
        return self.current

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.stack, self.current = None, None

    def __enter__(self) -> Renewing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    here, where this step has just installed the installer."""
    version, running_schematic = _node_state(tools, node)
    return version == target and running_schematic in (schematic, None)


def _healthy(tools: Tools, env: Env) -> None:
    """The whole cluster, checked server-side on the first control plane (etcd, API, every node
    Ready and schedulable: siderolabs/talos v1.13.9 pkg/cluster/check/default.go). So it only
    runs while no node of this step is cordoned."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
    tools.talosctl(env.get("CONTROL_PLANE"), "health", f"--wait-timeout={minutes}m")


def _first_check(tools: Tools, env: Env) -> None:
    """The health check before a rollout's first wave, unless the operator skipped it
    (SKIP_PRECHECK_ENV): then the check after the first wave is the first to decide."""
    if env.flag("SKIP_PRECHECK"):
        log(
            f"{SKIP_PRECHECK_ENV} is set: the cluster's health was NOT checked before the first wave; "
            "the check after it (and after every wave) still decides whether the rollout goes on",
            always=True,
        )
        return
    _healthy(tools, env)


def _settle(env: Env, since: float) -> None:
    """Wait until SETTLE_SECONDS have passed since a live apply ended (`since`, time.monotonic)."""
    left = env.settle_seconds() - (time.monotonic() - since)
    if left > 0:
        log(f"letting the live change settle for {left:.0f}s before the health check")
        time.sleep(left)


def _check_talosctl_client(tools: Tools, target: versions.Version) -> None:
    client = client_version(tools.run("talosctl", "version", "--client", "--short").stdout)
    if client.minor_key < target.minor_key:
        raise StepError(
            f"talosctl {client} is older than the target Talos {target}; install talosctl "
            f"v{versions.fmt_minor(target.minor_key)}.x ({TALOSCTL_INSTALL})"
        )


@contextmanager
def _out_of_service(tools: Tools, env: Env, hosts: Sequence[str]) -> Iterator[None]:
    """The wave's nodes marked and cordoned, then drained together (none takes pods evicted from
    another), schedulable and unmarked again after, also when the step stops inside for any reason
    (a failure, Ctrl-C, a bug): a node left cordoned would fail every later health check, so no
    retry could pass its first check. One this cannot put back keeps its mark, so the next step's
    `_uncordon_leftovers` does."""
    try:
        for host in hosts:
            _take_out(tools, host, env.get("CLUSTER"))
        each(hosts, lambda h: _drain(tools, env, h))
        yield
    except BaseException:
        for host in hosts:
            _put_back(tools, host, check=False)
        raise
    for host in hosts:
        _put_back(tools, host)


def _take_out(tools: Tools, host: str, cluster: str) -> None:
    """The mark first, then the cordon: a step stopped between the two leaves a schedulable node
    with a stale mark, which `_uncordon_leftovers` only removes; never a node cordoned without it,
    which would read as cordoned by hand. `--overwrite` because a mark left by a stopped run may
    already be there, and annotate refuses to change an existing value without it
    (kubernetes/kubectl v0.36.3 pkg/cmd/annotate/annotate.go validateNoAnnotationOverwrites)."""
    tools.kubectl("annotate", "node", host, f"{CORDON_MARK}={cluster}", "--overwrite")
    tools.kubectl("cordon", host)


def _put_back(tools: Tools, host: str, check: bool = True) -> None:
    """Uncordoned first, unmarked after: the mark outlives the cordon, so a failure in between
    leaves a node the next step recognises as its own. `KEY-` removes an annotation, and removing
    one that is not there is no error (kubernetes/kubectl v0.36.3 pkg/cmd/util/helpers.go
    ParsePairs, pkg/cmd/annotate/annotate.go updateAnnotations)."""
    if tools.kubectl("uncordon", host, check=check).returncode != 0:
        log(f"{host} may still be cordoned: `kubectl uncordon {host}` failed (the next run uncordons it)")
    elif tools.kubectl("annotate", "node", host, f"{CORDON_MARK}-", check=check).returncode != 0:
        log(f"{host}: removing its {CORDON_MARK} annotation failed (the next run removes it)")


def _drain(tools: Tools, env: Env, host: str) -> None:
    """Evict everything but DaemonSets (PodDisruptionBudgets are honoured) from a node its caller
    cordoned (drain would cordon it too: kubernetes/kubectl v0.36.3 pkg/cmd/drain/drain.go
    RunDrain; the caller's own cordon comes first so a batch's nodes take none of each other's
    pods)."""
    tools.kubectl(
        "drain",
        host,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={env.minutes('DRAIN_TIMEOUT_MINUTES')}m",
    )


class Listed(NamedTuple):
    """A Kubernetes Node as a step sees it: cordoned (`spec.unschedulable`), whether it carries
    talos-fleet's mark (CORDON_MARK), and its addresses (`status.addresses`)."""

    cordoned: bool
    marked: bool
    addresses: tuple[str, ...] = ()


def kubernetes_nodes(tools: Tools) -> dict[str, Listed]:
    """Every Kubernetes Node of the cluster by name: one listing, `unschedulable` set only while
    cordoned (kubernetes/api v0.36.3 core/v1/types.go NodeSpec), annotations left out when there
    are none (kubernetes/apimachinery v0.36.3 pkg/apis/meta/v1/types.go ObjectMeta, omitempty;
    `kubectl get nodes` prints a List: kubernetes/kubectl v0.36.3 pkg/cmd/get/get.go
    printGeneric). Each address is a NodeAddress's `address` (its `type` is InternalIP, ExternalIP
    or Hostname: kubernetes/api v0.36.3 core/v1/types.go NodeStatus.Addresses, NodeAddress). A
    Kubernetes API that does not answer stops the step."""
    listing = json.loads(tools.kubectl("get", "nodes", "--output", "json").stdout or "{}")
    items = listing.get("items", [listing]) if isinstance(listing, dict) else []
    found = {}
    for item in items:
        metadata = (item.get("metadata") or {}) if isinstance(item, dict) else {}
        if metadata.get("name"):
            annotations = metadata.get("annotations") or {}
            addresses = (item.get("status") or {}).get("addresses") or []
            found[str(metadata["name"])] = Listed(
                bool((item.get("spec") or {}).get("unschedulable")),
                isinstance(annotations, dict) and CORDON_MARK in annotations,
                tuple(str(a["address"]) for a in addresses if isinstance(a, dict) and a.get("address")),
            )
    return found


def _installed(listing: Mapping[str, Listed], ips: Mapping[str, str], cluster: str) -> list[str]:
    """The nodes among `ips` (hostname: the spec's address) that joined Kubernetes, in `ips`'
    order. One recorded but never installed (its apply failed, e.g. an added node that never came
    up) is left to its ConfigurationApply, which runs after the rollouts; asking it would stop
    every rollout for good. One whose address answers under another Node name (the kubelet
    registered a name other than the hostname, e.g. with machine.kubelet.registerWithFQDN) stops
    the step before it touches any node: skipping it would leave it to the provider's apply, which
    changes every node at once, and cordons, drains and the mark all go by hostname."""
    by_address: dict[str, str] = {}
    for name, node in sorted(listing.items()):
        for address in node.addresses:
            by_address.setdefault(address, name)
    kept, renamed = [], []
    for host, ip in ips.items():
        if host in listing:
            kept.append(host)
        elif ip in by_address:
            renamed.append(f"node {host} registered as {by_address[ip]}")
        else:
            log(f"cluster {cluster}: {host} is not a Kubernetes node (never installed?): skipped, as a new node")
    if renamed:
        shown = ", ".join(renamed[:5]) + (f" (and {len(renamed) - 5} more)" if len(renamed) > 5 else "")
        raise StepError(
            f"{shown}: talos-fleet drains and cordons by hostname, so it cannot roll out to a Node named "
            "otherwise, and no node was touched. Make the kubelet register under the hostname again: drop the "
            "patch that renames it (such as machine.kubelet.registerWithFQDN) and apply that to those nodes "
            "yourself, one at a time (talosctl apply-config), since this check stops every rollout until then"
        )
    return kept


def _uncordon_leftovers(tools: Tools, listing: Mapping[str, Listed]) -> None:
    """Every node a stopped earlier step left cordoned (a rollout killed in any wave, also after
    its node reached the target; a removal killed before its reset): schedulable again, or the
    first health check could never pass. Only nodes with talos-fleet's mark: one cordoned by hand
    (maintenance) is left as it is, and the health check, which counts it unschedulable
    (siderolabs/talos v1.13.9 pkg/cluster/check/default.go), stops the step before it touches a
    node. A mark on a schedulable node (a step stopped between mark and cordon, or between uncordon
    and unmark) is removed, so it cannot later claim a cordon made by hand."""
    for host, node in sorted(listing.items()):
        if node.cordoned and node.marked:
            log(f"{host} was left cordoned by an earlier talos-fleet run: uncordoning it")
            _put_back(tools, host)
        elif node.marked:
            tools.kubectl("annotate", "node", host, f"{CORDON_MARK}-")
        elif node.cordoned:
            log(
                f"{host} is cordoned, not by talos-fleet: the health check will fail until you uncordon it",
                always=True,
            )


# ---------------------------------------------------------------------------------------------
# A node's lifecycle


def record_node(env: Env, stdin: str) -> dict[str, str]:
    return {"hostname": env.get("HOSTNAME"), "role": env.get("ROLE")}


@contextmanager
def cluster_lock(cluster: str) -> Iterator[None]:
    """One removal at a time per cluster on this machine: the lifecycles have no edges between
    them, and Pulumi deletes resources that do not depend on each other in parallel (pulumi/pulumi
    v3.259.0 pkg/resource/deploy/deployment_executor.go). Two drains at once could take etcd
    quorum or a PodDisruptionBudget's last replica. The lock file holds nothing and stays (removing
    it would let a waiting removal and a new one hold two different locks)."""
    path = os.path.join(tempfile.gettempdir(), f"talos-fleet-{cluster}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise StepError(f"cannot open the removal lock {path}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"cluster {cluster}: waiting for another node's removal to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_node(env: Env, stdin: str) -> dict[str, str]:
    if env.flag("DESTROY"):
        return _teardown_node(env, stdin)
    node, host, role = env.get("NODE"), env.get("HOSTNAME"), env.get("ROLE")
    # The lock before the credentials: a removal may wait long for others, and its client
    # certificate lasts as long as one removal.
    with cluster_lock(env.get("CLUSTER")), credentials(env, stdin, kubernetes=True) as tools:
        reachable = tools.talosctl(node, "version", "--short", check=False).returncode == 0
        if not reachable and not env.flag("FORCE_REMOVE"):
            raise StepError(
                f"{host} ({node}) does not answer, so it cannot be drained and reset. If the machine is "
                f"gone for good, run `{PREFIX}FORCE_REMOVE=1 make up STACK=<the stack you are applying>` to only "
                "delete its Kubernetes Node (to tear the whole stack down, `make destroy STACK=<stack>` never "
                "waits for dead machines)"
            )
        if reachable and not env.flag("FORCE_REMOVE"):
            # Removals run one after another (the lock), the next right after the last one's
            # reset: none starts on a cluster that has not recovered. When the node itself is the
            # endpoint (the first control plane, removed last), it answers for the cluster. A
            # removal stopped before its reset left its node cordoned with the mark: uncordoned
            # first, or the check could never pass again.
            try:
                _uncordon_leftovers(tools, kubernetes_nodes(tools))
                _healthy(tools, env)
            except StepError as error:
                raise StepError(
                    f"the cluster is not healthy, so {host} is not drained yet: {error}. Fix the cluster, or, to "
                    f"remove {host} anyway, run `{PREFIX}FORCE_REMOVE=1 make up STACK=<the stack you are applying>`"
                ) from None
        if reachable:
            graceful = role != "controlplane" or _etcd_members(tools, node) > 1
            with _cordoned_until_reset(tools, host, env.get("CLUSTER")):
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
def _cordoned_until_reset(tools: Tools, host: str, cluster: str) -> Iterator[None]:
    """The node marked and cordoned; a drain that fails (or a step stopped inside) leaves it in the
    cluster, so schedulable and unmarked again. After a successful drain it stays cordoned: the
    reset and the Node's deletion follow, and the mark goes with the Node."""
    try:
        _take_out(tools, host, cluster)
        yield
    except BaseException:
        _put_back(tools, host, check=False)
        raise


def _teardown_node(env: Env, stdin: str) -> dict[str, str]:
    """`make destroy`: the whole cluster goes away, so nothing is drained, nothing waits for
    Kubernetes or for another node's teardown (no lock), and nothing here can stop the teardown.
    A machine that answers is reset without leaving etcd and rebooted, so bare metal comes back in
    maintenance mode, ready to be installed again; a VM is deleted right after anyway. Reached at
    its own address: the control planes may already be gone."""
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


def _etcd_members(tools: Tools, node: str) -> int:
    listing = tools.talosctl(node, "etcd", "members").stdout.strip().splitlines()
    return max(len(listing) - 1, 0)  # minus the header line


# ---------------------------------------------------------------------------------------------
# Rollouts: what they share


@dataclass(frozen=True)
class Target:
    """A node as a rollout's environment names it (`TALOS_FLEET_TARGET_<host>`,
    `TALOS_FLEET_CONFIG_<host>`): plain spec values, no machine's output."""

    host: str
    ip: str
    role: str
    arch: str = ""
    live: str = ""
    reboot: str = ""


def _targets(env: Env, name: str, fields: tuple[str, ...]) -> dict[str, Target]:
    found = {}
    for host, document in env.per_node(name).items():
        missing = [f for f in ("ip", "role", *fields) if not document.get(f)]
        if missing:
            raise StepError(f"{PREFIX}{name}_{host} has no {', '.join(missing)}; this step is run by pulumi up")
        found[host] = Target(host, **{k: document[k] for k in ("ip", "role", *fields)})
    return found


def _existing(previous: Mapping[str, Any] | None, known: Collection[str], hosts: Iterable[str]) -> list[str]:
    """The nodes the last run recorded; the others are new and install the target directly.
    Without a readable record (an update always has one) every node counts as existing: the
    checks on each node (at the target, dry-run) keep that safe."""
    if previous is None:
        log("no readable record of the last run: every node counts as existing")
        return sorted(hosts)
    return sorted(h for h in hosts if h in known)


def _wave_label(number: int, total: int, wave: Sequence[str]) -> str:
    shown = ", ".join(wave[:5]) + (f" and {len(wave) - 5} more" if len(wave) > 5 else "")
    return f"wave {number}/{total} ({shown})"


# ---------------------------------------------------------------------------------------------
# The upgrade rollout


def recheck(env: Env) -> str:
    """The stack's `upgrade.recheck` (TALOS_FLEET_RECHECK), unset meaning 0: a new value makes a
    rollout ask every existing node again. After a failed rollout Pulumi keeps the command's old
    inputs and record while the nodes already rolled run the new config or version; reverting the
    stack then changes no input, so only a new recheck value reaches them."""
    return (env.values.get(PREFIX + "RECHECK") or "0").strip()


def rechecked(env: Env, previous: Mapping[str, Any] | None) -> bool:
    """Whether the recheck value moved since the record (a record without one counts as 0)."""
    return previous is not None and recheck(env) != str(previous.get("recheck", "0"))


def upgrade_record(env: Env) -> dict[str, Any]:
    targets, prefix = _targets(env, "TARGET", ("arch",)), f"{PREFIX}INSTALLER_"
    installers = {k[len(prefix) :]: v for k, v in env.values.items() if k.startswith(prefix) and v}
    missing = sorted({t.arch for t in targets.values()} - set(installers))
    if missing:
        raise StepError(f"{prefix}{missing[0]} is not set; this step is run by pulumi up, not by hand")
    record = {"talos": env.get("TALOS_VERSION"), "installers": installers, "nodes": pack(sorted(targets))}
    return fits({**record, "recheck": recheck(env)})


def record_upgrades(env: Env, stdin: str) -> dict[str, Any]:
    return upgrade_record(env)


def upgrade_rollout(env: Env, stdin: str) -> dict[str, Any]:
    record, cluster = upgrade_record(env), env.get("CLUSTER")
    targets = _targets(env, "TARGET", ("arch",))
    target, installers = _version(record["talos"], "the stack"), record["installers"]
    previous = env.previous()
    existing = _existing(previous, (previous or {}).get("nodes") or (), targets)
    if not existing:
        log(f"cluster {cluster}: only new nodes, which install Talos {target} directly: nothing to upgrade")
        return record
    last = previous or {}
    # Not when downgrades are merely allowed: a stack that keeps allowDowngrade on would ask, and
    # could move, every node whenever a node is added. A revert needs a new recheck anyway.
    ask_all = rechecked(env, previous)
    if (
        not ask_all
        and last.get("talos") == record["talos"]
        and all((last.get("installers") or {}).get(targets[h].arch) == installers[targets[h].arch] for h in existing)
    ):
        # Nodes were added or removed, or the policy changed: no existing node's target moved.
        log(f"cluster {cluster}: no existing node's Talos target changed: nothing to upgrade")
        return record
    if ask_all:
        # The record cannot say which nodes a failed run left elsewhere, each node can.
        log(f"cluster {cluster}: asking every existing node which Talos it runs")
    wanted = {h: (target, installer_schematic(installers[targets[h].arch])) for h in existing}
    with Renewing(env, stdin) as session:
        tools = session.tools()
        _check_talosctl_client(tools, target)
        listing = kubernetes_nodes(tools)
        existing = _installed(listing, {h: targets[h].ip for h in existing}, cluster)
        running = dict(zip(existing, each(existing, lambda h: _node_state(tools, targets[h].ip)), strict=True))
        todo = {h for h in existing if running[h] != wanted[h]}
        problems = [
            f"{h}: {p}"
            for h in sorted(todo)
            if (p := versions.talos_change_problem(running[h][0], target, env.flag("ALLOW_DOWNGRADE")))
        ]
        if problems:
            raise StepError("refused before any node is touched:\n" + "\n".join(f"  - {p}" for p in problems))
        _uncordon_leftovers(tools, listing)
        if not todo:
            log(f"cluster {cluster}: every existing node already runs Talos {target} with its schematic")
            return record
        _first_check(tools, env)
        schedule = waves.waves([(h, targets[h].role) for h in existing], int(env.get("WORKER_BATCH_SIZE")))
        for number, wave in enumerate(schedule, 1):
            pending = [targets[h] for h in wave if h in todo]
            if not pending:
                continue
            tools = session.tools()
            log(
                f"cluster {cluster}: {_wave_label(number, len(schedule), [n.host for n in pending])}: Talos -> {target}"
            )
            with _out_of_service(tools, env, [n.host for n in pending]):
                each(pending, partial(_upgrade, tools, env, target, installers))
            _healthy(tools, env)
    log(f"cluster {cluster}: every existing node runs Talos {target}; cluster healthy")
    return record


def _upgrade(tools: Tools, env: Env, target: versions.Version, installers: Mapping[str, str], node: Target) -> None:
    installer, minutes = installers[node.arch], env.minutes("HEALTH_TIMEOUT_MINUTES")
    # --drain=false: the drain before is the only one (talosctl's own would need a Kubernetes
    # client through the endpoint, and it uncordons before our health check:
    # siderolabs/talos v1.13.9 cmd/talosctl/cmd/talos/upgrade.go, drain.go).
    tools.talosctl(node.ip, "upgrade", f"--image={installer}", "--drain=false", "--wait", f"--timeout={minutes}m")
    schematic = installer_schematic(installer)
    wait_until(lambda: _runs(tools, node.ip, target, schematic), env, f"{node.host} running Talos {target}")
    log(f"{node.host}: runs Talos {target}")


# ---------------------------------------------------------------------------------------------
# The config rollout


def config_schedule(
    nodes: Iterable[tuple[str, str]], changed: Collection[str], worker_batch_size: int
) -> tuple[tuple[str, ...], ...]:
    """The changed nodes' waves: the canary alone first (the first changed node in wave order: the
    first changed control plane, else the first changed worker), then the other changed nodes in
    `waves.waves` order (each control plane alone, workers in batches)."""
    pairs = [(h, role) for h, role in nodes if h in changed]
    ordered = waves.waves(pairs, worker_batch_size)
    if not ordered:
        return ()
    canary = ordered[0][0]
    return ((canary,), *waves.waves([p for p in pairs if p[0] != canary], worker_batch_size))


@dataclass(frozen=True)
class ConfigInputs:
    """The config rollout's stdin: the CA (for credentials), each role's generated config and each
    node's patches, in the order the provider applies them."""

    ca_stdin: str
    role_configs: dict[str, str]
    patches: dict[str, list[str]]

    @classmethod
    def parse(cls, stdin: str) -> ConfigInputs:
        try:
            document = json.loads(stdin)
            role_configs, patches = document["roleConfigs"], document.get("patches") or {}
            ca = json.dumps({"osCa": document["osCa"]})
            valid = all(isinstance(v, str) for v in role_configs.values()) and all(
                isinstance(p, list) and all(isinstance(x, str) for x in p) for p in patches.values()
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise StepError("the role configs and patches on stdin are missing; this step is run by pulumi up")
        return cls(ca, role_configs, patches)

    def fingerprint(self, node: Target) -> str:
        """The node's config inputs hashed (HASH_DIGITS hex): a changed secret inside a role
        config counts too, which the plan's live and reboot hashes cannot see."""
        if node.role not in self.role_configs:
            raise StepError(f"stdin has no {node.role} config for {node.host}; this step is run by pulumi up")
        text = json.dumps([self.role_configs[node.role], self.patches.get(node.host, [])], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def _config_targets(env: Env) -> dict[str, Target]:
    nodes = _targets(env, "CONFIG", ("live", "reboot"))
    for node in nodes.values():
        for name, value in (("live", node.live), ("reboot", node.reboot)):
            if not _is_hash(value):
                raise StepError(
                    f"{PREFIX}CONFIG_{node.host}: {name} is not {HASH_DIGITS} hex digits; this step is run by pulumi up"
                )
    return nodes


def _is_hash(text: str) -> bool:
    return len(text) == HASH_DIGITS and all(c in "0123456789abcdef" for c in text)


class Recorded(NamedTuple):
    """What the config record keeps of a node: its config fingerprint, the first LIVE_DIGITS of
    the plan's live hash, and the plan's reboot hash."""

    fingerprint: str
    live: str
    reboot: str


def config_record(env: Env, inputs: ConfigInputs) -> dict[str, Any]:
    """Per node (hostnames sorted) its config fingerprint, live hash (shortened) and reboot hash, as
    columns of fixed width rather than a map: zlib packs a column of hex digits far tighter than
    hostnames and hex interleaved, which keeps 5,000 nodes with 63-character hostnames within
    MAX_ENV_STRING. The live hash is the shortened one: two different ones read as equal only
    send a node the reboot way, the safe one (`_paths`)."""
    nodes = _config_targets(env)
    hosts = sorted(nodes)
    columns = {
        "hosts": hosts,
        "fingerprints": "".join(inputs.fingerprint(nodes[h]) for h in hosts),
        "lives": "".join(nodes[h].live[:LIVE_DIGITS] for h in hosts),
        "reboots": "".join(nodes[h].reboot for h in hosts),
    }
    return fits({"config": pack(columns), "recheck": recheck(env)})


def config_table(value: Any) -> dict[str, Recorded] | None:
    """A config record's columns by hostname; None if it is not one (also a record written before
    the live column existed: then every node takes the safe path)."""
    try:
        hosts, fingerprints, lives, reboots = value["hosts"], value["fingerprints"], value["lives"], value["reboots"]
        count = len(hosts)
        widths = ((fingerprints, HASH_DIGITS), (lives, LIVE_DIGITS), (reboots, HASH_DIGITS))
        if not all(isinstance(text, str) and len(text) == width * count for text, width in widths):
            return None
        return {
            str(h): Recorded(*(text[i * width : (i + 1) * width] for text, width in widths))
            for i, h in enumerate(hosts)
        }
    except (KeyError, TypeError):
        return None


def record_config(env: Env, stdin: str) -> dict[str, Any]:
    return config_record(env, ConfigInputs.parse(stdin))


class Paths(NamedTuple):
    """What the record tells of the existing nodes: which changed and which of them take the
    reboot path; `ask_all` when it cannot tell (a recheck, no readable record), so that every
    existing node counts as changed until its dry-run says otherwise."""

    existing: list[str]
    changed: set[str]
    reboots: set[str]
    ask_all: bool


def _paths(
    env: Env, nodes: Mapping[str, Target], current: Mapping[str, Recorded], previous: Mapping[str, Any] | None
) -> Paths:
    """The existing nodes, those whose config changed, and those of them that take the reboot
    path: the plan's reboot hash moved; or the fingerprint moved but neither plan hash did (a
    secret value in a role config or patch, which may sit in `.machine.env` or another reboot
    setting); or there is no readable record; or a recheck (the step cannot tell whether the
    difference a node shows needs a reboot). The live path only when the live hash alone moved."""
    known = config_table((previous or {}).get("config"))
    existing = _existing(previous if known is not None else None, known or {}, nodes)
    if known is None or rechecked(env, previous):
        if known is not None:
            log(f"cluster {env.get('CLUSTER')}: recheck: every existing node is checked, and rolled by reboot")
        return Paths(existing, set(existing), set(existing), True)
    changed = {h for h in existing if known[h].fingerprint != current[h].fingerprint}
    reboots = set()
    for host in sorted(changed):
        if known[host].reboot != current[host].reboot:
            reboots.add(host)
        elif known[host].live == current[host].live:
            log(f"{host}: its config changed where the plan's hashes do not look (a secret?): rolled by reboot")
            reboots.add(host)
    return Paths(existing, changed, reboots, False)


def roll_config(env: Env, stdin: str) -> dict[str, Any]:
    inputs, cluster = ConfigInputs.parse(stdin), env.get("CLUSTER")
    nodes = _config_targets(env)
    record = config_record(env, inputs)
    current = config_table(unpack(record["config"])) or {}
    existing, changed, reboots, ask_all = _paths(env, nodes, current, env.previous())
    if not changed:
        log(f"cluster {cluster}: no existing node's config changed: nothing to roll out")
        return record
    with private_directory() as directory, Renewing(env, inputs.ca_stdin) as session:
        tools = session.tools()
        listing = kubernetes_nodes(tools)
        existing = _installed(listing, {h: nodes[h].ip for h in existing}, cluster)
        changed &= set(existing)
        _uncordon_leftovers(tools, listing)
        if not changed:
            log(f"cluster {cluster}: no installed node's config changed: nothing to roll out")
            return record
        files = _config_files(directory, inputs, [nodes[h] for h in sorted(changed)])
        if ask_all:
            # Every node asked before the schedule is made: were the canary picked from all of
            # them, one already at its config would pass for it, and the first real wave could be
            # a whole worker batch.
            ordered = sorted(changed)
            done = each(ordered, lambda h: _done_already(tools, nodes[h], files[h]))
            changed = {h for h, ready in zip(ordered, done, strict=True) if not ready}
            if not changed:
                log(f"cluster {cluster}: every existing node already runs its config")
                return record
        schedule = config_schedule([(h, nodes[h].role) for h in existing], changed, int(env.get("WORKER_BATCH_SIZE")))
        log(
            f"cluster {cluster}: config changed on {len(changed)} nodes ({len(reboots & changed)} by reboot); "
            f"canary {schedule[0][0]}"
        )
        _first_check(tools, env)
        for number, wave in enumerate(schedule, 1):
            label = ("canary " if number == 1 else "") + _wave_label(number, len(schedule), wave)
            tools = session.tools()
            if _roll_wave(
                tools, env, [nodes[h] for h in wave], reboots, files, label, canary=number == 1, asked=ask_all
            ):
                log(f"cluster {cluster}: {label} done; cluster healthy")
    return record


def _config_files(directory: str, inputs: ConfigInputs, nodes: Sequence[Target]) -> dict[str, list[str]]:
    """talosctl's arguments per node: `--file` its role config, `--config-patch=@file` per patch in
    order. talosctl applies them with configpatcher.LoadPatches and Apply, the code the provider
    renders with, so the bytes sent are those the provider sends; `@` reads the patch from the file
    (siderolabs/talos v1.13.9 cmd/talosctl/cmd/talos/apply-config.go,
    pkg/machinery/config/configpatcher/load.go LoadPatches). Files, not arguments: a role config
    holds the cluster's secrets."""
    roles = {}
    for role, text in inputs.role_configs.items():
        roles[role] = os.path.join(directory, f"{role}.yaml")
        _write_private(roles[role], text)
    arguments = {}
    for node in nodes:
        arguments[node.host] = [f"--file={roles[node.role]}"]
        for i, patch in enumerate(inputs.patches.get(node.host, [])):
            path = os.path.join(directory, f"{node.host}.{i}.yaml")
            _write_private(path, patch)
            arguments[node.host].append(f"--config-patch=@{path}")
    return arguments


def _active(tools: Tools, node: Target, files: Sequence[str]) -> bool:
    """Whether the node already runs this config: a dry-run apply diffs it against the node's
    active config and prints `No changes.` for none, after `Config diff:`, on stderr
    (siderolabs/talos v1.13.9 internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go
    ApplyConfiguration, generateDiff; cmd/talosctl/pkg/talos/helpers/mode.go PrintApplyResults).
    In the default mode (auto), never the no-reboot check. A staged config not yet booted still
    differs from the active one. Like any apply but a try, it also cancels a try-mode rollback
    pending on the node (same server file, before the dry-run branch)."""
    done = tools.talosctl(node.ip, "apply-config", *files, "--dry-run")
    _, found, diff = done.stderr.partition("Config diff:")
    return bool(found) and [line.strip() for line in diff.splitlines() if line.strip()] == ["No changes."]


def _done_already(tools: Tools, node: Target, files: Sequence[str]) -> bool:
    """A resumed rollout's test: the node runs its new config already. Then the same config is
    applied once more with `--mode=no-reboot`, which changes nothing running but writes it to disk:
    a canary an earlier run tried (`--mode=try` sets only the active config) and stopped before
    confirming shows no change to a dry-run, which cancelled its rollback, and would boot its old
    config at the next reboot (v1alpha1_server.go ApplyConfiguration: TRY sets the active config
    only, NO_REBOOT the persistent one and the active one)."""
    if not _active(tools, node, files):
        return False
    tools.talosctl(node.ip, "apply-config", *files, "--mode=no-reboot")
    log(f"{node.host}: already runs its new config")
    return True


def _roll_wave(
    tools: Tools,
    env: Env,
    wave: Sequence[Target],
    reboots: Collection[str],
    files: Mapping[str, list[str]],
    label: str,
    canary: bool,
    asked: bool = False,
) -> bool:
    """One wave, then the cluster's health; False when every node of it already ran its config (a
    resumed rollout), with no health check. `asked`: this run's dry-runs found every node of the
    wave differing already, so they are not asked again. After live applies the wave lets them
    settle before the check (_settle); a reboot needs none, its node went NotReady and came back."""
    if asked:
        todo = list(wave)
    else:
        done = each(wave, lambda n: _done_already(tools, n, files[n.host]))
        todo = [n for n, ready in zip(wave, done, strict=True) if not ready]
    if not todo:
        return False
    log(f"{label}: applying")
    by_reboot = [n for n in todo if n.host in reboots]
    live = [n for n in todo if n.host not in reboots]
    live_until = None
    if canary and live:
        # The canary wave is one node.
        if _try_live(tools, env, live[0], files[live[0].host]):
            return True  # its health check was the wave's
        by_reboot.append(live[0])
    elif live:
        # A batch's live applies side by side, as its reboots are.
        applied = each(live, lambda n: _apply_live(tools, n, files[n.host], "--mode=no-reboot"))
        by_reboot += [n for n, ok in zip(live, applied, strict=True) if not ok]
        if any(applied):
            live_until = time.monotonic()
    if by_reboot:
        # Each node staged and rebooted at once, a batch's nodes side by side: a failure never
        # leaves a node staged but not rebooted, where any later reboot (a crash, an upgrade)
        # would boot the change without a drain.
        with _out_of_service(tools, env, [n.host for n in by_reboot]):
            each(by_reboot, lambda n: _stage_and_reboot(tools, env, n, files[n.host]))
    if live_until is not None:
        _settle(env, live_until)
    _healthy(tools, env)
    return True


def _apply_live(tools: Tools, node: Target, files: Sequence[str], *mode: str) -> bool:
    """False when a 1.13 node refuses the change without a reboot, before it changes anything
    (NOT_IMMEDIATE): the caller takes the reboot path."""
    done = tools.talosctl(node.ip, "apply-config", *files, *mode, check=False)
    if done.returncode == 0:
        log(f"{node.host}: applied live")
        return True
    if NOT_IMMEDIATE in done.stderr:
        log(f"{node.host}: Talos needs a reboot for this change: staged and rebooted, drained")
        return False
    raise failed(done)


def _try_live(tools: Tools, env: Env, node: Target, files: Sequence[str]) -> bool:
    """The canary's live change in try mode: the node rolls it back by itself after `--timeout`
    unless a non-try apply comes first (siderolabs/talos v1.13.9 and v1.14.0-rc.1
    v1alpha1_server.go ApplyConfiguration: TRY arms RollbackToConfigAfter, every other mode calls
    CancelConfigRollbackTimeout; cmd/talosctl/cmd/talos/apply-config.go `--timeout`, a duration,
    the rollback delay in try mode, default one minute, at both tags). A wrong network patch on the
    canary, the first control plane through which every call goes, thus undoes itself. Confirmed
    with the same config in no-reboot mode only once the cluster is healthy; a failed health check
    stops the step unconfirmed. The timeout outlasts the settle and the health check's own wait."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES") + math.ceil(env.settle_seconds() / 60) + TRY_MARGIN_MINUTES
    if not _apply_live(tools, node, files, "--mode=try", f"--timeout={minutes}m"):
        return False
    _settle(env, time.monotonic())
    try:
        _healthy(tools, env)
    except StepError as error:
        raise StepError(
            f"{error}. {node.host} (the canary) was not confirmed: it rolls back to its previous config within "
            f"{minutes} minutes of its apply"
        ) from None
    tools.talosctl(node.ip, "apply-config", *files, "--mode=no-reboot")
    log(f"{node.host}: canary healthy, its config confirmed")
    return True


def _stage_and_reboot(tools: Tools, env: Env, node: Target, files: Sequence[str]) -> None:
    """The staged config becomes the active one at boot (siderolabs/talos v1.13.9
    internal/app/machined/pkg/controllers/config/acquire.go stateDisk). `talosctl reboot` waits
    for the node to come back (`--wait` defaults to true) and drains only with `--drain`, off by
    default (cmd/talosctl/cmd/talos/reboot.go, track.go): the drain before is kubectl's."""
    minutes = env.minutes("HEALTH_TIMEOUT_MINUTES")
    tools.talosctl(node.ip, "apply-config", *files, "--mode=staged")
    try:
        tools.talosctl(node.ip, "reboot", "--wait", f"--timeout={minutes}m")
    except StepError as error:
        raise StepError(
            f"{error}. {node.host} holds its new config staged: the next run drains and reboots it; a reboot "
            "before then boots that config undrained"
        ) from None
    wait_until(lambda: _active(tools, node, files), env, f"{node.host} running its new config after the reboot")
    log(f"{node.host}: rebooted into its new config")


# ---------------------------------------------------------------------------------------------
# Cluster versions


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


STEPS: dict[str, Callable[[Env, str], Mapping[str, Any]]] = {
    "gate": gate,
    "record-node": record_node,
    "remove-node": remove_node,
    "record-upgrades": record_upgrades,
    "upgrade-rollout": upgrade_rollout,
    "record-kubernetes": record_kubernetes,
    "upgrade-kubernetes": upgrade_kubernetes,
    "record-config": record_config,
    "roll-config": roll_config,
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
        log(f"stopped: {error}", always=True)
        return 1
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
