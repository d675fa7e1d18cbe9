"""Run the real `__main__.py` under Pulumi's mock runtime and record what reaches the providers.

`RecordingMonitor` subclasses the SDK's MockMonitor to keep every RegisterResource request's
options (parent, dependencies, protect, ignoreChanges, additionalSecretOutputs, provider) and
every Invoke with its wire arguments, in order. `FakeTalos` answers like pulumiverse-talos would:
camelCase objects with recognisable fake credentials, so tests can look for them where they must
never be.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import runpy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

from talos_fleet.loader import Problem, SpecError

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
SECRET_SIG = rpc._special_sig_key  # the key Pulumi uses to mark a secret value on the wire
SECRET_MARK = rpc._special_secret_sig

# Fake credentials, shaped as the provider returns them (camelCase). Each string is unique so a
# test can find any of them anywhere it leaked.
FAKE_MACHINE_SECRETS: dict[str, Any] = {
    "certs": {
        "etcd": {"cert": "FAKE-etcd-cert", "key": "FAKE-etcd-key"},
        "k8s": {"cert": "FAKE-k8s-cert", "key": "FAKE-k8s-key"},
        "k8sAggregator": {"cert": "FAKE-agg-cert", "key": "FAKE-agg-key"},
        "k8sServiceaccount": {"key": "FAKE-sa-key"},
        "os": {"cert": "FAKE-os-cert", "key": "FAKE-os-key"},
    },
    "cluster": {"id": "FAKE-cluster-id", "secret": "FAKE-cluster-secret"},
    "secrets": {
        "bootstrapToken": "FAKE-bootstrap-token",
        "secretboxEncryptionSecret": "FAKE-secretbox",
    },
    "trustdinfo": {"token": "FAKE-trustd-token"},
}
FAKE_CLIENT_CONFIGURATION = {
    "caCertificate": "FAKE-client-ca",
    "clientCertificate": "FAKE-client-cert",
    "clientKey": "FAKE-client-key",
}


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str):
        yield value


FAKE_CREDENTIAL_STRINGS = [*_leaves(FAKE_MACHINE_SECRETS), *_leaves(FAKE_CLIENT_CONFIGURATION)]


def fake_schematic_id(schematic: str) -> str:
    """The fake factory's schematic id: like the real one, a hash of the content posted."""
    return hashlib.sha256(schematic.encode()).hexdigest()


def installer_for(schematic_id: str, version: str, arch: str) -> str:
    return f"factory.talos.dev/metal-installer/{schematic_id}:{version}#{arch}"


def factory_urls(schematic_id: str, version: str, arch: str) -> dict[str, str]:
    """What get_urls answers for platform metal: the provider formats them itself, without asking
    the factory (siderolabs/terraform-provider-talos v0.11.0:pkg/talos/talos_image_factory_urls_data_source.go,
    default base https://factory.talos.dev from pkg/talos/provider.go), with Talos' file names
    (siderolabs/talos v1.13.9:pkg/machinery/platforms/platforms.go). The installer keeps a
    `#arch` suffix here so tests can tell architectures apart (the real one has none)."""
    image = f"https://factory.talos.dev/image/{schematic_id}/{version}"
    return {
        "installer": installer_for(schematic_id, version, arch),
        "iso": f"{image}/metal-{arch}.iso",
        "pxe": f"https://pxe.factory.talos.dev/pxe/{schematic_id}/{version}/metal-{arch}",
        "kernel": f"{image}/kernel-{arch}",
        "initramfs": f"{image}/initramfs-{arch}.xz",
    }


# A directory pool's volume key, which the provider uses as the volume's id, is its file path.
POOL_PATH = "/var/lib/libvirt/images"


class FakeTalos(pulumi.runtime.Mocks):
    """Answers for every provider the program uses: Talos, libvirt and matchbox."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        """The id answered for each resource, by (type, name)."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        id_, outputs = self._new_resource(args)
        self.ids[(args.typ, args.name)] = id_
        return id_, outputs

    def _new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "talos:machine/secrets:Secrets":
            outputs["machineSecrets"] = FAKE_MACHINE_SECRETS
            outputs["clientConfiguration"] = FAKE_CLIENT_CONFIGURATION
        elif args.typ == "talos:imageFactory/schematic:Schematic":
            # The factory's id is a content hash: equal schematics, equal ids.
            schematic = str(args.inputs.get("schematic", ""))
            return fake_schematic_id(schematic), outputs
        elif args.typ == "talos:cluster/kubeconfig:Kubeconfig":
            outputs["kubeconfigRaw"] = f"FAKE-kubeconfig-for-{plain(args.inputs.get('node'))}"
        elif args.typ == "libvirt:index/volume:Volume":
            return f"{POOL_PATH}/{args.inputs['name']}", outputs
        return f"{args.name}-id", outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        a = args.args
        if args.token == "talos:machine/getConfiguration:getConfiguration":
            return {"machineConfiguration": f"FAKE-{plain(a.get('machineType'))}-config"}, []
        if args.token == "talos:imageFactory/getUrls:getUrls":
            urls = factory_urls(plain(a["schematicId"]), plain(a["talosVersion"]), plain(a["architecture"]))
            return {"urls": urls}, []
        if args.token == "talos:client/getConfiguration:getConfiguration":
            return {"talosConfig": "FAKE-talosconfig"}, []
        if args.token == "talos:cluster/getHealth:getHealth":
            return {"id": "healthy"}, []
        return {}, []


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    additional_secret_outputs: list[str]
    provider: str
    aliases: list[str]
    wire: dict[str, Any] = field(default_factory=dict)
    """The inputs as sent, secret markers where the SDK put them: a secret element of a list
    stays marked on its own (`inputs` lifts it to the whole list, as the SDK's deserializer does)."""


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str


@dataclass
class RecordingMonitor(pulumi_mocks.MockMonitor):
    events: list[Registration | Invoke] = field(default_factory=list)

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.events = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        self.events.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent,
                inputs=rpc.deserialize_properties(request.object),
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                protect=bool(request.protect),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                provider=request.provider,
                # An alias is a full URN or a spec; specs here only ever move a parent.
                aliases=[a.urn or f"parent:{a.spec.parentUrn}" for a in request.aliases],
                wire=json_format.MessageToDict(request.object),
            )
        )
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.events.append(
            Invoke(
                token=request.tok,
                args=rpc.deserialize_properties(request.args),
                provider=request.provider,
            )
        )
        return super().Invoke(request)  # type: ignore[no-untyped-call]


@dataclass
class Run:
    monitor: RecordingMonitor
    exports: dict[str, Any]
    mocks: FakeTalos = field(default_factory=FakeTalos)

    @property
    def registrations(self) -> list[Registration]:
        return [e for e in self.monitor.events if isinstance(e, Registration)]

    @property
    def invokes(self) -> list[Invoke]:
        return [e for e in self.monitor.events if isinstance(e, Invoke)]

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def calls(self, token: str) -> list[Invoke]:
        return [i for i in self.invokes if i.token == token]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def index(self, event: Registration | Invoke) -> int:
        return next(i for i, e in enumerate(self.monitor.events) if e is event)

    def export(self, name: str) -> Any:
        """An export's resolved value, with secret markers kept where the value is secret."""
        return resolve(self.exports[name])


def engine_urn(mock_urn: str) -> str:
    """The URN the Pulumi engine gives a resource the mock monitor named `mock_urn`. The engine
    leaves the root Stack's type out of its children's URNs; the mock keeps it."""
    return mock_urn.replace("::pulumi:pulumi:Stack$", "::", 1)


def resolve(value: Any) -> Any:
    """Resolve (possibly nested) Outputs; secret values come back wrapped as `{SECRET_SIG: ...}`."""
    if isinstance(value, pulumi.Output):
        inner = _sync_await(value.future())
        if _sync_await(value.is_secret()):
            return {SECRET_SIG: SECRET_MARK, "value": resolve(inner)}
        return resolve(inner)
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_MARK


def plain(value: Any) -> Any:
    """The value with every secret marker removed."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def plaintext_strings(value: Any) -> Iterator[str]:
    """Every string in `value` that is not under a secret marker."""
    if is_secret(value):
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from plaintext_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plaintext_strings(v)
    elif isinstance(value, str):
        yield value


def fixture_header(path: Path) -> dict[str, str]:
    """A fixture's `# expect-<what>: <value>` comment lines, by `expect-<what>`."""
    # Bytes decoded leniently: a fixture may be a file that is not UTF-8 (after its header).
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("# expect-"))


def engine_config_of(stack_file: Path | str) -> tuple[dict[str, str], list[str]]:
    """What the Pulumi engine would hand the program for a stack file whose secure values are
    set: structured values as JSON text; `secure:` values decrypted to a fake plaintext."""
    document = yaml.safe_load(Path(stack_file).read_text())
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        decrypted, had_secret = _decrypt(value, key)
        config[key] = decrypted if isinstance(decrypted, str) else json.dumps(decrypted)
        if had_secret:
            secret_keys.append(key)
    return config, secret_keys


def _decrypt(value: Any, path: str) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return f"FAKE-decrypted-{path}", True
    if isinstance(value, dict):
        pairs = {k: _decrypt(v, f"{path}.{k}") for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    return value, False


def run_program(config: Mapping[str, str], secret_keys: list[str] | None = None) -> Run:
    """Build the whole program under fresh mocks with this engine config; wait for everything."""
    run, error = _run(config, secret_keys)
    if error is not None:
        raise error
    return run


def run_failing_program(config: Mapping[str, str], secret_keys: list[str] | None = None) -> tuple[Run, BaseException]:
    """Like run_program for a program expected to fail: what was recorded, and the error."""
    run, error = _run(config, secret_keys)
    assert error is not None, "the program was expected to fail"
    return run, error


def _run(config: Mapping[str, str], secret_keys: list[str] | None) -> tuple[Run, BaseException | None]:
    return run_under_mocks(config, secret_keys, lambda: runpy.run_path(str(MAIN), run_name="__main__"))


def run_under_mocks(
    config: Mapping[str, str], secret_keys: list[str] | None, body: Callable[[], object]
) -> tuple[Run, BaseException | None]:
    """`body` (the program, or bench/floor.py's edge-free registration) under fresh mocks with
    the stack's config; exports recorded, every registration waited for."""
    mocks = FakeTalos()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="talos-fleet", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), list(secret_keys or []))
    exports: dict[str, Any] = {}
    original_export = pulumi.export

    def record(name: str, value: Any) -> None:
        exports[name] = value

    @pulumi.runtime.test
    def program() -> None:
        body()

    pulumi.export = record
    error: BaseException | None = None
    try:
        program()
    except Exception as exc:
        error = exc
    finally:
        pulumi.export = original_export
    return Run(monitor, exports, mocks), error


def run_stack_file(stack_file: Path | str) -> Run:
    return run_program(*engine_config_of(stack_file))


# ---------------------------------------------------------------------------------------------
# Mutated copies of a stack file, and what Pulumi would diff between two runs


def mutated_stack(stack_file: Path, directory: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `stack_file` in `directory` with `change` applied to its parsed document."""
    document = yaml.safe_load(stack_file.read_text())
    change(document)
    changed = directory / stack_file.name
    changed.write_text(yaml.safe_dump(document, sort_keys=False))
    return changed


def bump_talos(document: dict[str, Any]) -> None:
    document["config"]["talos-fleet:defaults"]["talosVersion"] = "v1.13.11"


def add_extension(document: dict[str, Any]) -> None:
    """Add an official extension the stack does not have yet: a new schematic for every cluster."""
    image = document["config"]["talos-fleet:defaults"].setdefault("image", {})
    extensions = image.setdefault("extensions", [])
    extensions.append(next(e for e in ("siderolabs/util-linux-tools", "siderolabs/nut-client") if e not in extensions))


def drop_path(value: Any, path: list[str]) -> Any:
    """`value` without the property at `path` (Pulumi ignore_changes syntax, split)."""
    if not path:
        return None
    head, *rest = path
    match = re.fullmatch(r"(\w+)\[(\d+)\]", head)
    key, index = (match.group(1), int(match.group(2))) if match else (head, None)
    if not isinstance(value, dict) or key not in value:
        return value
    inner = value[key]
    if index is not None and isinstance(inner, list) and index < len(inner):
        inner = [*inner[:index], drop_path(inner[index], rest), *inner[index + 1 :]]
    elif index is None:
        inner = drop_path(inner, rest)
    return {**value, key: inner}


def diffed_inputs(reg: Registration) -> Any:
    """The inputs Pulumi would diff: without the properties the resource ignores."""
    inputs: Any = copy.deepcopy(reg.inputs)
    for path in reg.ignore_changes:
        inputs = drop_path(inputs, path.split("."))
    return inputs


def tree_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a YAML/JSON tree (keys and list indexes), the root first."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += tree_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += tree_paths(v, (*prefix, i))
    return found


def spec_problems(load: Callable[[], object]) -> list[Problem]:
    """The problems `load` reports, [] when it accepts; any exception other than SpecError fails
    the test."""
    try:
        load()
    except SpecError as error:
        return error.problems or [Problem("(none)", "")]  # an error with no problem would fail the caller
    return []
