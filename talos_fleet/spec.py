"""The stack spec: frozen pydantic models for the `talos-fleet` config namespace.

The stack file's `talos-fleet:*` keys form one tree::

    defaults  -> fleet-wide Talos/Kubernetes versions, Image Factory image, install disk
    sources   -> named machine sources (here: bare metal)
    secrets   -> named secret values, only ever set with `make secret STACK=<env> NAME=<name>`
    clusters  -> clusters by name, each with endpoint, network, patches and nodes by hostname

Validation happens once, at the program's entry (see `loader.py`); everything after it receives
these models and never reads config. Cross-field rules raise `RuleError` with the path of the
offending field relative to the model that checks it, so the loader can name the full path.
"""

from __future__ import annotations

import ipaddress
import re
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import CoreSchema, core_schema

from talos_fleet import naming, versions

NAMESPACE = "talos-fleet"
"""The Pulumi config namespace of every key talos-fleet reads."""

Role = Literal["controlplane", "worker"]
ROLES: tuple[Role, ...] = ("controlplane", "worker")


class RuleError(ValueError):
    """A cross-field rule failed at `path` (relative to the validating model)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )


# ---------------------------------------------------------------------------------------------
# Upper bounds: what validates must run. Each is far above real use and below what the code,
# the providers and the wire can carry (Pulumi sends numbers as doubles: exact below 2**53).

MAX_CPUS = 512
"""vCPUs per VM (a big two-socket host has 256 threads; KVM's own ceiling is higher)."""
MAX_MEMORY_MIB = 4 * 1024 * 1024
"""Memory per VM: 4 TiB."""
MAX_DISK_GIB = 64 * 1024
"""Disk size, system or data: 64 TiB. libvirt volume sizes are bytes in a Go int in
dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_volume.go (`size`,
schema.TypeInt), so any size must stay below 2**63 bytes (8 EiB) once multiplied by GiB."""
MAX_DATA_DISKS = 16
"""Data disks per VM, each a virtio disk on its own PCIe port."""
MAX_WORKER_BATCH = 1000
"""Workers upgraded at once: more than that is no longer a rollout."""
MAX_TIMEOUT_MINUTES = 24 * 60
"""A drain or health wait of a day: passed to talosctl/kubectl as Go durations (--timeout=<n>m)."""
MAX_RECHECK = 1_000_000
"""`upgrade.recheck`: a counter an operator raises by one now and then."""
MAX_NAME = 63
"""Names that become resource names, paths or config keys (DNS label length)."""
MAX_HOST = 253
"""A DNS name."""
MAX_PATH = 4095
"""A file path on the hypervisor (Linux PATH_MAX is 4096 with its terminating zero)."""
MAX_LIST = 64
"""Extensions, kernel arguments, nameservers, keys per volume: lists a person writes by hand."""
MAX_RENDERED = 250_000
"""What the nodes' patches add up to once rendered, in values (text counts one per 32
characters): a fleet-wide patch is rendered once per cluster and role, a cluster's once per role.
Rendering YAML takes about 15 microseconds a value, so every render and plan stays within seconds."""


# ---------------------------------------------------------------------------------------------
# Scalar types with the fix in their error message


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label; use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'edge-01')"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label), WithJsonSchema({"type": "string", "pattern": _DNS_LABEL.pattern})]


def _text(value: Any) -> Any:
    """YAML reads `1.13` as a number; say what to write instead of "should be a valid string"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} was read as a number; write versions like v1.13.9 (with the leading 'v')")
    return value


def _version(value: str) -> str:
    if len(value) > 64:
        raise ValueError(f"{value[:20]!r}… is not a version; write it like v1.13.9")
    versions.parse_version(value)
    return value


VersionStr = Annotated[
    str,
    BeforeValidator(_text),
    AfterValidator(_version),
    WithJsonSchema({"type": "string", "pattern": r"^v\d+\.\d+\.\d+$", "examples": ["v1.13.9"]}),
]


def _contract(value: str) -> str:
    if len(value) > 64:
        raise ValueError(f"{value[:20]!r}… is not a version contract; write it like v1.13")
    contract = versions.parse_contract(value)
    if contract > versions.PROVIDER_MACHINERY:
        raise ValueError(
            f"version contract {value} is newer than the provider's Talos machinery "
            f"(v{versions.fmt_minor(versions.PROVIDER_MACHINERY)}); use configContract "
            f"v{versions.fmt_minor(versions.PROVIDER_MACHINERY)} or older"
        )
    return value


ContractStr = Annotated[
    str,
    BeforeValidator(_text),
    AfterValidator(_contract),
    WithJsonSchema({"type": "string", "pattern": r"^v\d+\.\d+$", "examples": ["v1.13"]}),
]


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address; write it like 192.168.10.5") from None


IpStr = Annotated[str, AfterValidator(_ip), WithJsonSchema({"type": "string", "examples": ["192.168.10.5"]})]


def _ip_or_interface(value: str) -> str:
    try:
        return str(ipaddress.ip_interface(value)) if "/" in value else str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; write it like 192.168.10.11 or, with its prefix, 192.168.10.11/24"
        ) from None


AddressStr = Annotated[
    str,
    AfterValidator(_ip_or_interface),
    WithJsonSchema({"type": "string", "examples": ["192.168.10.11", "192.168.10.11/24"]}),
]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a network in CIDR form with host bits zero; write it like 192.168.10.0/24"
        ) from None


CidrStr = Annotated[str, AfterValidator(_network), WithJsonSchema({"type": "string", "examples": ["192.168.10.0/24"]})]


def _disk(value: str) -> str:
    if not value.startswith("/dev/") or len(value) > MAX_NAME * 2 or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a device path; write it like /dev/sda or /dev/nvme0n1")
    return value


DiskStr = Annotated[str, AfterValidator(_disk), WithJsonSchema({"type": "string", "pattern": "^/dev/"})]

_EXTENSION = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")


def _extension(value: str) -> str:
    if not _EXTENSION.match(value):
        raise ValueError(f"{value!r} is not an official extension name; write it like siderolabs/iscsi-tools")
    return value


ExtensionStr = Annotated[
    str, AfterValidator(_extension), WithJsonSchema({"type": "string", "pattern": _EXTENSION.pattern})
]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _host(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise ValueError(
            f"{value[:80]!r} is neither an IP address nor a DNS name; write it like k8s.example.net or 192.168.10.5"
        )
    return value


HostStr = Annotated[
    str,
    AfterValidator(_host),
    WithJsonSchema({"type": "string", "maxLength": MAX_HOST, "examples": ["k8s.example.net", "192.168.10.5"]}),
]

# A name a person types that ends up in a resource name, a path or a config key.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value[:80]!r} is not a name here; use 1-63 letters, digits, '-', '_' or '.', starting with a "
            "letter or digit"
        )
    return value


NameStr = Annotated[str, AfterValidator(_name), WithJsonSchema({"type": "string", "pattern": _NAME.pattern})]

# A secret's name is one step of `--path 'talos-fleet:secrets.<name>'`: no '.', '[' or quotes.
_SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def _secret_name(value: str) -> str:
    if not _SECRET_NAME.match(value):
        raise ValueError(
            f"{value[:80]!r} is not a secret name; use 1-63 letters, digits, '-' or '_', starting with a letter "
            "or digit (it is one step of the config path `talos-fleet:secrets.<name>`)"
        )
    return value


SecretName = Annotated[
    str, AfterValidator(_secret_name), WithJsonSchema({"type": "string", "pattern": _SECRET_NAME.pattern})
]

# An interface name or alias: the kernel allows 15 characters, alternative names 127.
_LINK = re.compile(r"^[^\s/:]{1,127}$")


def _link(value: str) -> str:
    if not _LINK.match(value):
        raise ValueError(
            f"{value[:80]!r} is not an interface name; use up to 127 characters without spaces, '/' or ':' "
            "(e.g. enp1s0 or net0)"
        )
    return value


LinkStr = Annotated[str, AfterValidator(_link), WithJsonSchema({"type": "string", "pattern": _LINK.pattern})]


def _abs_path(value: str) -> str:
    if not value.startswith("/") or len(value) > MAX_PATH:
        raise ValueError(
            f"{value[:80]!r} is not an absolute path on the hypervisor; write it like /usr/share/OVMF/x.fd"
        )
    return value


PathStr = Annotated[
    str, AfterValidator(_abs_path), WithJsonSchema({"type": "string", "pattern": "^/", "maxLength": MAX_PATH})
]
KernelArg = Annotated[str, Field(max_length=1024)]

# Kubernetes label keys: optional DNS-subdomain prefix, then a name of up to 63 characters.
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(
                f"label key {key!r} is not a Kubernetes label key; use [prefix/]name, e.g. topology.kubernetes.io/zone"
            )
        if not _LABEL_VALUE.match(val):
            raise ValueError(
                f"label {key}={val!r} has an invalid value; use at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit"
            )
    return value


Labels = Annotated[dict[str, str], AfterValidator(_labels)]


def _patch(value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(
            "a patch is one YAML mapping: a Talos config document (with apiVersion and kind) or a "
            "partial v1alpha1 document (machine: / cluster:)"
        )
    if _contains_secure(value):
        raise ValueError(
            "a patch may not hold a secret: patches are plaintext and show in previews; keep the "
            "value under talos-fleet:secrets and write {secret: <name>} where it goes"
        )
    _check_credentials(value, ())
    return value


# Keys whose value is a credential, by name (compared without case, '-' or '_'): what Talos
# itself redacts (siderolabs/talos v1.13.9: pkg/machinery/config/types/v1alpha1/v1alpha1_provider.go
# Config.Redact: machine.token, ca keys, registries' auth password/auth/identityToken, TLS client
# key, cluster secret/token/aescbcEncryptionSecret/secretboxEncryptionSecret;
# cri/registry_auth.go password, auth, identityToken; cri/registry_tls.go key;
# network/wireguard.go privateKey, presharedKey; network/hcloud_vip.go apiToken;
# siderolink/siderolink.go uniqueToken; block/encryption.go passphrase), and the usual names of
# credentials in extensions' and other tools' settings (password, token, key, secret, auth).
CREDENTIAL_KEYS = frozenset({"password", "passwd", "passphrase", "token", "key", "secret", "auth"})
CREDENTIAL_SUFFIXES = (
    "password",
    "passphrase",
    "token",
    "secret",
    "privatekey",
    "presharedkey",
    "clientkey",
    "apikey",
    "authkey",
    "accesskey",
    "secretkey",
)


def credential_key(key: str) -> bool:
    """Whether a patch key holds a credential (see CREDENTIAL_KEYS)."""
    plain = key.lower().replace("-", "").replace("_", "")
    return plain in CREDENTIAL_KEYS or plain.endswith(CREDENTIAL_SUFFIXES)


def secret_reference(value: Any) -> str | None:
    """The secret name of a patch value `{secret: <name>}`, else None."""
    if isinstance(value, dict) and set(value) == {"secret"} and isinstance(value["secret"], str):
        return value["secret"]
    return None


def patch_secret_references(value: Any) -> list[str]:
    """Every secret a patch references, in document order."""
    if (name := secret_reference(value)) is not None:
        return [name]
    if isinstance(value, dict):
        return [n for v in value.values() for n in patch_secret_references(v)]
    if isinstance(value, list):
        return [n for v in value for n in patch_secret_references(v)]
    return []


def _check_credentials(value: Any, path: tuple[str | int, ...], in_list: bool = False) -> None:
    """Plaintext credentials are refused; `{secret: <name>}` references are checked for form."""
    if (name := secret_reference(value)) is not None:
        if in_list:
            raise RuleError(
                path,
                "a secret reference inside a list cannot be kept out of the node's plaintext patch; "
                "use a Talos document that names the value by key (e.g. RegistryAuthConfig)",
            )
        try:
            _secret_name(name)
        except ValueError as error:
            raise RuleError(path, str(error)) from None
        return
    if isinstance(value, dict):
        for k, v in value.items():
            where = (*path, k)
            if credential_key(str(k)) and isinstance(v, (str, int, float)) and not isinstance(v, bool) and v != "":
                raise RuleError(
                    where,
                    f"{k!r} holds a credential in plaintext: patches are committed and shown in every "
                    "plan. Keep it in talos-fleet:secrets (`make secret STACK=<stack> NAME=<name>`, the "
                    "value on standard input) and write {secret: <name>} here instead",
                )
            _check_credentials(v, where, in_list)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_credentials(v, (*path, i), True)


def _weight(value: Any) -> int:
    """A patch's rendering cost in values (see MAX_RENDERED)."""
    if isinstance(value, dict):
        return 1 + sum(_weight(k) + _weight(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 1 + sum(_weight(v) for v in value)
    return 1 + len(value) // 32 if isinstance(value, str) else 1


def _contains_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return (set(value) == {"secure"}) or any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


Patch = Annotated[
    dict[str, Any],
    BeforeValidator(_patch),
    WithJsonSchema({"type": "object", "description": "One Talos machine-config document or partial one"}),
]


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac(value: str) -> str:
    mac = value.lower().replace("-", ":")
    if not _MAC.match(mac):
        raise ValueError(f"{value!r} is not a MAC address; write it like 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address; a NIC needs a unicast one (even first octet)")
    return mac


MacStr = Annotated[str, AfterValidator(_mac), WithJsonSchema({"type": "string", "examples": ["52:54:00:12:34:56"]})]

_LIBVIRT_URI = re.compile(r"^qemu(\+[a-z]+)?://[^\s]*/(system|session)(\?[^\s]*)?$")


def _libvirt_uri(value: str) -> str:
    if not _LIBVIRT_URI.match(value):
        raise ValueError(
            f"{value!r} is not a QEMU libvirt URI; write qemu:///system for this host or "
            "qemu+ssh://user@host/system for a remote one"
        )
    return value


LibvirtUri = Annotated[
    str,
    AfterValidator(_libvirt_uri),
    WithJsonSchema({"type": "string", "examples": ["qemu:///system", "qemu+ssh://admin@kvm-1/system"]}),
]

# Interface names the kernel gives; a LinkAliasConfig name must not look like one.
_KERNEL_LINK = re.compile(r"^(eth|en|wl|ww|ib|sl)[a-z0-9]*\d")


# ---------------------------------------------------------------------------------------------
# Secrets


class SecretInput:
    """A secret as the loader found it: from `secure:` in the stack file or a secret config key.

    `value` is None when only the ciphertext is known (offline validation of a stack file).
    The value never appears in repr, so it cannot leak into an error or a log line.
    """

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "SecretInput(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretInput) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(_secret)


def _secret(value: Any) -> SecretInput:
    if isinstance(value, SecretInput):
        return value
    raise ValueError(
        "this is a plaintext value where a secret belongs; remove it from the stack file and set it "
        "with `make secret STACK=<stack> NAME=<its name>` (the value is read from standard input)"
    )


SecretValue = Annotated[
    SecretInput,
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"secure": {"type": "string"}},
            "required": ["secure"],
            "additionalProperties": False,
            "description": "Set with `make secret STACK=<stack> NAME=<name>` (the value on stdin)",
        }
    ),
]


# ---------------------------------------------------------------------------------------------
# Fleet defaults and machine sources


class ImageSpec(Model):
    """What goes into the Image Factory schematic: the installer every node boots and upgrades to."""

    extensions: tuple[ExtensionStr, ...] = Field(
        default=(), max_length=MAX_LIST, description="Official system extensions, e.g. siderolabs/iscsi-tools"
    )
    kernel_args: tuple[KernelArg, ...] = Field(default=(), max_length=MAX_LIST, description="Extra kernel arguments")


class UpgradePolicy(Model):
    """How a change of Talos version, image, Kubernetes version or configuration rolls out over
    existing nodes: a canary (config changes), then control planes one at a time, then workers
    in batches, each wave followed by a cluster health check before the next starts."""

    worker_batch_size: int = Field(
        default=1, ge=1, le=MAX_WORKER_BATCH, description="Workers upgraded at the same time"
    )
    allow_downgrade: bool = Field(
        default=False, description="Allow a change to an older Talos or Kubernetes version (refused by default)"
    )
    drain_timeout_minutes: int = Field(
        default=10, ge=1, le=MAX_TIMEOUT_MINUTES, description="How long draining a node may take"
    )
    health_timeout_minutes: int = Field(
        default=15,
        ge=1,
        le=MAX_TIMEOUT_MINUTES,
        description="How long a node and the cluster may take to report healthy after a step",
    )
    recheck: int = Field(
        default=0,
        ge=0,
        le=MAX_RECHECK,
        description=(
            "Raise it to make the next pulumi up check every existing node against its target version "
            "and config and roll out any difference (canary first, drained reboots): after reverting "
            "a change that a failed rollout had already brought to some nodes (README: Day 2)"
        ),
    )


class Defaults(Model):
    talos_version: VersionStr = Field(description="Talos version nodes install and run, e.g. v1.13.9")
    kubernetes_version: VersionStr = Field(description="Kubernetes version, e.g. v1.36.2")
    config_contract: ContractStr = Field(
        description=(
            "Version contract for generated machine configs (vX.Y). It decides generated defaults "
            "(e.g. etcd encryption), so it never follows talosVersion by itself: moving it is a "
            "deliberate, reviewed change (README: Day 2)."
        ),
    )
    image: ImageSpec = ImageSpec()
    install_disk: DiskStr | None = Field(
        default=None, description="Disk Talos installs itself to (default: /dev/sda on metal, /dev/vda on VMs)"
    )
    roles: Roles = Field(
        default_factory=lambda: Roles(),
        description="Role settings shared by every cluster (patches, VM sizing); a cluster's roles add to them",
    )
    upgrade: UpgradePolicy = Field(
        default_factory=lambda: UpgradePolicy(), description="How version changes roll out (README: Day 2)"
    )

    @model_validator(mode="after")
    def _contract_not_newer_than_talos(self) -> Defaults:
        contract = versions.parse_contract(self.config_contract)
        if contract > versions.parse_version(self.talos_version).minor_key:
            raise RuleError(
                ("configContract",),
                f"configContract {self.config_contract} is newer than talosVersion {self.talos_version}; "
                "a contract may only be older than or equal to the running Talos minor",
            )
        return self

    @property
    def contract(self) -> str:
        """The version contract passed to config generation: always the stack file's own."""
        return self.config_contract


class Matchbox(Model):
    """An existing matchbox server that PXE-boots blank metal machines into maintenance mode
    (https://matchbox.psdn.io/). Its gRPC API needs a client certificate."""

    endpoint: str = Field(description="matchbox gRPC API, host:port (e.g. matchbox.lan:8081)")
    ca: SecretName = Field(description="Name of the secret holding the matchbox CA certificate (PEM)")
    client_cert: SecretName = Field(description="Name of the secret holding the client certificate (PEM)")
    client_key: SecretName = Field(description="Name of the secret holding the client key (PEM)")

    @model_validator(mode="after")
    def _host_port(self) -> Matchbox:
        host, _, port = self.endpoint.rpartition(":")
        valid_host = (host.startswith("[") and host.endswith("]")) or bool(_HOSTNAME.match(host))
        if not valid_host or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
            raise RuleError(("endpoint",), f"{self.endpoint!r} is not host:port; write it like matchbox.lan:8081")
        return self

    def secret_names(self) -> dict[str, str]:
        return {"ca": self.ca, "clientCert": self.client_cert, "clientKey": self.client_key}


class MetalSource(Model):
    """Bare metal: the host is booted from Talos media (ISO, USB or PXE) and waits in maintenance
    mode at the node's address; the config is applied there and Talos installs itself."""

    kind: Literal["metal"]
    architecture: Literal["amd64", "arm64"] = "amd64"
    matchbox: Matchbox | None = Field(
        default=None, description="PXE-boot this source's machines through matchbox (each node needs its mac)"
    )


class DataDisk(Model):
    name: DnsLabel = Field(description="Disk name: also its serial, so Talos volume selectors can find it")
    size_gib: int = Field(ge=1, le=MAX_DISK_GIB, description="Size in GiB")


class VmSpec(Model):
    """VM sizing; any field left out falls back to the next layer (node -> cluster role -> fleet
    role -> built-in default)."""

    cpus: int | None = Field(default=None, ge=1, le=MAX_CPUS, description="vCPUs")
    memory_mib: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MIB, description="Memory in MiB")
    disk_gib: int | None = Field(
        default=None, ge=1, le=MAX_DISK_GIB, description="System disk in GiB (Talos installs here)"
    )
    data_disks: tuple[DataDisk, ...] | None = Field(
        default=None, max_length=MAX_DATA_DISKS, description="Extra disks, e.g. for storage"
    )

    @model_validator(mode="after")
    def _unique_disks(self) -> VmSpec:
        seen: set[str] = set()
        for i, disk in enumerate(self.data_disks or ()):
            if disk.name in seen:
                raise RuleError(("dataDisks", i, "name"), f"data disk {disk.name!r} is listed twice; rename one")
            seen.add(disk.name)
        return self


class VmSize(NamedTuple):
    """A node's VM sizing with every layer resolved."""

    cpus: int
    memory_mib: int
    disk_gib: int
    data_disks: tuple[DataDisk, ...]


class ManagedNetwork(Model):
    """A libvirt network talos-fleet creates and owns: NAT (or routed) with DHCP, every node's
    address reserved for its MAC, so addresses are known before a VM boots."""

    name: DnsLabel | None = Field(default=None, description="libvirt network name (default: talos-<source>)")
    mode: Literal["nat", "route"] = "nat"
    cidr: CidrStr = Field(description="e.g. 10.17.3.0/24")
    gateway: IpStr = Field(description="The host's address on the network: gateway, DHCP and DNS server")
    dns: tuple[IpStr, ...] = Field(
        default=(),
        max_length=MAX_LIST,
        description="Upstream DNS servers the network's resolver forwards to (default: the host's)",
    )

    @model_validator(mode="after")
    def _gateway_inside(self) -> ManagedNetwork:
        if ipaddress.ip_address(self.gateway) not in ipaddress.ip_network(self.cidr):
            raise RuleError(("gateway",), f"gateway {self.gateway} is outside {self.cidr}; use an address inside it")
        return self


class LibvirtNetwork(Model):
    managed: ManagedNetwork | None = Field(default=None, description="A network talos-fleet creates (NAT/routed)")
    bridge: LinkStr | None = Field(default=None, description="An existing host bridge, e.g. br0 (static addressing)")

    @model_validator(mode="after")
    def _exactly_one(self) -> LibvirtNetwork:
        if (self.managed is None) == (self.bridge is None):
            raise RuleError(
                (),
                "set exactly one of network.managed (a NAT/routed network talos-fleet creates) or "
                "network.bridge (an existing host bridge such as br0)",
            )
        return self


class LibvirtSource(Model):
    """A libvirt/KVM hypervisor: talos-fleet creates each node's VM and disks there."""

    kind: Literal["libvirt"]
    uri: LibvirtUri = Field(description="libvirt URI: qemu:///system or qemu+ssh://user@host/system")
    pool: NameStr = Field(default="default", description="Existing storage pool (directory pool) for disks and media")
    network: LibvirtNetwork
    firmware: PathStr = Field(
        default="/usr/share/OVMF/OVMF_CODE_4M.fd", description="OVMF UEFI code on the hypervisor (Debian/Ubuntu path)"
    )
    nvram_template: PathStr = Field(
        default="/usr/share/OVMF/OVMF_VARS_4M.fd", description="OVMF variables template, copied per VM"
    )
    # Talos needs x86-64-v2 and the VMs run with host-passthrough CPUs: amd64 hosts only here.
    architecture: Literal["amd64"] = "amd64"


Source = Annotated[MetalSource | LibvirtSource, Field(discriminator="kind")]
# The union's members by their `kind` tag: how the loader names kinds and follows the union.
SOURCE_MODELS: dict[str, type[Model]] = {
    typing.get_args(m.model_fields["kind"].annotation)[0]: m for m in (MetalSource, LibvirtSource)
}
SOURCE_KINDS = tuple(SOURCE_MODELS)

# Talos minimums (https://www.talos.dev/v1.13/introduction/system-requirements/): control
# plane 2 vCPU / 2 GiB / 10 GiB, worker 1 / 1 / 10; the defaults leave room above them.
VM_MINIMUMS: dict[Role, dict[str, int]] = {
    "controlplane": {"cpus": 2, "memoryMib": 2048, "diskGib": 10},
    "worker": {"cpus": 1, "memoryMib": 1024, "diskGib": 10},
}
VM_DEFAULTS: dict[Role, VmSpec] = {
    "controlplane": VmSpec(cpus=2, memory_mib=4096, disk_gib=20, data_disks=()),
    "worker": VmSpec(cpus=2, memory_mib=4096, disk_gib=20, data_disks=()),
}
QEMU_GUEST_AGENT = "siderolabs/qemu-guest-agent"


# ---------------------------------------------------------------------------------------------
# Clusters


class Endpoint(Model):
    """The Kubernetes API endpoint: a Layer 2 VIP shared by the control planes, or a host name or
    address that already reaches them (DNS name, load balancer, or a single node's own IP)."""

    vip: IpStr | None = Field(default=None, description="Layer 2 VIP on the cluster network")
    host: HostStr | None = Field(default=None, description="DNS name or IP of a load balancer / the node")
    port: int = Field(default=6443, ge=1, le=65535)

    @model_validator(mode="after")
    def _exactly_one(self) -> Endpoint:
        if (self.vip is None) == (self.host is None):
            raise RuleError(
                (),
                "set exactly one of endpoint.vip (a free address on the nodes' L2 segment) or "
                "endpoint.host (a DNS name or load balancer)",
            )
        return self

    @property
    def url(self) -> str:
        target = self.vip if self.vip is not None else self.host
        if target is not None and ":" in target:  # IPv6 literal
            target = f"[{target}]"
        return f"https://{target}:{self.port}"


class ClusterNetwork(Model):
    cidr: CidrStr = Field(description="The nodes' L2 network, e.g. 192.168.10.0/24")
    gateway: IpStr | None = Field(default=None, description="Default gateway for static addressing")
    nameservers: tuple[IpStr, ...] = Field(
        default=(), max_length=MAX_LIST, description="DNS servers (default: from DHCP)"
    )
    addressing: Literal["static", "dhcp"] = Field(
        default="dhcp",
        description="static: each node's address goes into its own patch; dhcp: a reservation serves it",
    )
    link: LinkStr | None = Field(
        default=None, description="Interface name carrying the address and the VIP, e.g. enp1s0"
    )

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    @model_validator(mode="after")
    def _gateway_inside(self) -> ClusterNetwork:
        if self.gateway is not None and ipaddress.ip_address(self.gateway) not in self.network:
            raise RuleError(
                ("gateway",),
                f"gateway {self.gateway} is outside the cluster network {self.cidr}; use an address inside it",
            )
        return self


class KubePrism(Model):
    """KubePrism: an in-node load balancer for the API on localhost (on by default in Talos)."""

    enabled: bool = True
    port: int = Field(default=7445, ge=1, le=65535)


class StaticKey(Model):
    static: SecretName = Field(description="Name of a passphrase under talos-fleet:secrets")


def _encryption_key(value: Any) -> Any:
    if value in ("nodeID", "tpm") or isinstance(value, StaticKey):
        return value
    if isinstance(value, dict) and set(value) == {"static"} and isinstance(value["static"], str):
        return value
    raise ValueError(
        f"{value!r} is not an encryption key; use nodeID (bound to this node), tpm (needs SecureBoot) "
        "or {static: <name of a secret under talos-fleet:secrets>}"
    )


EncryptionKey = Annotated[Literal["nodeID", "tpm"] | StaticKey, BeforeValidator(_encryption_key)]


class DiskEncryption(Model):
    """LUKS2 encryption of the STATE and EPHEMERAL volumes; key slots in the order given."""

    state: tuple[EncryptionKey, ...] = Field(
        default=(), max_length=MAX_LIST, description="Keys for STATE (machine config)"
    )
    ephemeral: tuple[EncryptionKey, ...] = Field(
        default=(), max_length=MAX_LIST, description="Keys for EPHEMERAL (/var)"
    )

    def secret_names(self) -> list[str]:
        return [k.static for k in (*self.state, *self.ephemeral) if isinstance(k, StaticKey)]


class RoleSpec(Model):
    patches: tuple[Patch, ...] = Field(default=(), description="Patches for every node of this role")
    vm: VmSpec | None = Field(default=None, description="VM sizing for this role's nodes on libvirt sources")


class Roles(Model):
    controlplane: RoleSpec = RoleSpec()
    worker: RoleSpec = RoleSpec()

    def of(self, role: Role) -> RoleSpec:
        return self.controlplane if role == "controlplane" else self.worker


Defaults.model_rebuild()


class Node(Model):
    role: Role
    source: str = Field(max_length=MAX_NAME, description="Name of a machine source under talos-fleet:sources")
    address: AddressStr = Field(
        description="The node's IP (optionally with prefix): Talos is reached here, in maintenance "
        "mode before install and on the same address after"
    )
    gateway: IpStr | None = Field(default=None, description="Overrides the cluster network's gateway")
    link: LinkStr | None = Field(default=None, description="Overrides the cluster network's link")
    addressing: Literal["static", "dhcp"] | None = Field(
        default=None, description="Overrides the cluster network's addressing"
    )
    labels: Labels = Field(default_factory=dict, description="Kubernetes node labels")
    install_disk: DiskStr | None = Field(default=None, description="Overrides the fleet's install disk")
    patches: tuple[Patch, ...] = Field(default=(), description="Extra plaintext patches for this node")
    mac: MacStr | None = Field(
        default=None,
        description="The NIC's MAC. Metal: the machine's own (needed for PXE). libvirt: derived from "
        "cluster and hostname unless set",
    )
    vm: VmSpec | None = Field(default=None, description="VM sizing for this node (libvirt sources only)")

    @property
    def ip(self) -> str:
        return self.address.split("/", 1)[0]


class Cluster(Model):
    endpoint: Endpoint
    network: ClusterNetwork
    talos_version: VersionStr | None = Field(default=None, description="Overrides defaults.talosVersion")
    kubernetes_version: VersionStr | None = Field(default=None, description="Overrides defaults.kubernetesVersion")
    image: ImageSpec | None = Field(default=None, description="Overrides defaults.image")
    install_disk: DiskStr | None = Field(default=None, description="Overrides defaults.installDisk")
    allow_scheduling_on_control_planes: bool = Field(
        default=False, description="Run workloads on control planes (single-node and small clusters)"
    )
    kube_prism: KubePrism = KubePrism()
    disk_encryption: DiskEncryption | None = None
    patches: tuple[Patch, ...] = Field(default=(), description="Patches for every node of the cluster")
    roles: Roles = Roles()
    upgrade: UpgradePolicy | None = Field(default=None, description="Overrides defaults.upgrade")
    acknowledge_data_loss: tuple[str, ...] = Field(
        default=(),
        description=(
            "Disks this change may delete or replace although the stack still has them (make plan "
            "stops otherwise): a node's hostname (all its disks) or hostname/disk (`system` or a data "
            "disk's name). Remove the entry once the change is applied."
        ),
    )
    nodes: dict[DnsLabel, Node]

    def nodes_of(self, role: Role) -> list[tuple[str, Node]]:
        """Nodes of a role in hostname order (the loader sorts every mapping, as the engine hands
        them over): the first control plane bootstraps etcd."""
        return [(h, n) for h, n in self.nodes.items() if n.role == role]

    def addressing_of(self, node: Node) -> Literal["static", "dhcp"]:
        return node.addressing or self.network.addressing

    @model_validator(mode="after")
    def _rules(self) -> Cluster:
        control_planes = self.nodes_of("controlplane")
        if not control_planes:
            raise RuleError(
                ("nodes",),
                "the cluster has no control plane; give one node (or three) role: controlplane",
            )
        if len(control_planes) % 2 == 0:
            raise RuleError(
                ("nodes",),
                f"the cluster has {len(control_planes)} control planes; etcd needs a majority, so an even "
                f"count tolerates no more failures than {len(control_planes) - 1} and is worse: use "
                f"{len(control_planes) - 1} or {len(control_planes) + 1}",
            )
        net = self.network.network
        vip = self.endpoint.vip
        if vip is not None:
            if ipaddress.ip_address(vip) not in net:
                raise RuleError(
                    ("endpoint", "vip"),
                    f"VIP {vip} is outside the cluster network {self.network.cidr}; a Layer 2 VIP must be "
                    "a free address on the nodes' segment",
                )
            if self.network.link is None:
                raise RuleError(
                    ("network", "link"),
                    "a VIP endpoint needs network.link, the interface the VIP is announced on (e.g. enp1s0)",
                )
        for host, node in self.nodes.items():
            self._check_node(host, node, net, vip)
        for i, entry in enumerate(self.acknowledge_data_loss):
            host, _, disk = entry.partition("/")
            if host not in self.nodes:
                raise RuleError(
                    ("acknowledgeDataLoss", i),
                    f"{entry!r} names no node of this cluster; write a hostname (all its disks) or "
                    "hostname/disk (system, or a data disk's name), e.g. worker-1/data",
                )
            if "/" in entry and not _DNS_LABEL.fullmatch(disk):
                raise RuleError(
                    ("acknowledgeDataLoss", i),
                    f"{entry!r}: after the hostname comes a disk name (system, or a data disk's name), "
                    f"e.g. {host}/system",
                )
        return self

    def _check_node(
        self,
        host: str,
        node: Node,
        net: ipaddress.IPv4Network | ipaddress.IPv6Network,
        vip: str | None,
    ) -> None:
        path = ("nodes", host)
        iface = ipaddress.ip_interface(node.address)
        if iface.ip not in net:
            raise RuleError(
                (*path, "address"),
                f"{node.ip} is outside the cluster network {self.network.cidr}; use an address inside it "
                "or fix network.cidr",
            )
        if "/" in node.address and iface.network != net:
            raise RuleError(
                (*path, "address"),
                f"{node.address} has prefix /{iface.network.prefixlen} but the cluster network is "
                f"{self.network.cidr}; drop the prefix or make them agree",
            )
        if node.ip == vip:
            raise RuleError(
                (*path, "address"),
                f"{node.ip} is the cluster's VIP; the VIP floats between control planes and must not be "
                "a node's own address: pick another address for the node or the VIP",
            )
        gateway = node.gateway or self.network.gateway
        if node.gateway is not None and ipaddress.ip_address(node.gateway) not in net:
            raise RuleError(
                (*path, "gateway"),
                f"gateway {node.gateway} is outside the cluster network {self.network.cidr}",
            )
        if self.addressing_of(node) == "static":
            if gateway is None:
                raise RuleError(
                    (*path, "gateway"),
                    "static addressing needs a gateway; set network.gateway for the cluster or gateway here",
                )
            if (node.link or self.network.link) is None:
                raise RuleError(
                    (*path, "link"),
                    "static addressing needs the interface name; set network.link for the cluster or link here",
                )

    def secret_names(self) -> list[str]:
        return self.disk_encryption.secret_names() if self.disk_encryption else []


# ---------------------------------------------------------------------------------------------
# The fleet


class Fleet(Model):
    """The whole `talos-fleet` namespace of one stack."""

    defaults: Defaults
    sources: dict[DnsLabel, Source] = Field(description="Machine sources by name")
    secrets: dict[SecretName, SecretValue] = Field(
        default_factory=dict,
        description="Secret values by name; set each with `make secret STACK=<stack> NAME=<name>`",
    )
    clusters: dict[DnsLabel, Cluster]

    # Resolved per-cluster settings: a cluster's own value, else the fleet default.

    def talos_version(self, cluster: Cluster) -> str:
        return cluster.talos_version or self.defaults.talos_version

    def kubernetes_version(self, cluster: Cluster) -> str:
        return cluster.kubernetes_version or self.defaults.kubernetes_version

    def image(self, cluster: Cluster) -> ImageSpec:
        return cluster.image or self.defaults.image

    def upgrade(self, cluster: Cluster) -> UpgradePolicy:
        return cluster.upgrade or self.defaults.upgrade

    def install_disk(self, cluster: Cluster, node: Node) -> str:
        # A VM's system disk is the first virtio disk; metal's first SATA/SAS disk by default.
        default = "/dev/vda" if isinstance(self.sources[node.source], LibvirtSource) else "/dev/sda"
        return node.install_disk or cluster.install_disk or self.defaults.install_disk or default

    def all_nodes(self) -> Iterator[tuple[str, str, Node]]:
        for cname, cluster in self.clusters.items():
            for host, node in cluster.nodes.items():
                yield cname, host, node

    def architectures(self, cname: str) -> list[str]:
        """The CPU architectures of a cluster's nodes, sorted."""
        return sorted({self.sources[n.source].architecture for n in self.clusters[cname].nodes.values()})

    def _patch_lists(
        self, cname: str, cluster: Cluster
    ) -> Iterator[tuple[tuple[str | int, ...], tuple[dict[str, Any], ...]]]:
        """Every patch list that reaches the cluster's nodes, with its path in the stack file."""
        yield ("clusters", cname, "patches"), cluster.patches
        for role in ROLES:
            yield ("defaults", "roles", role, "patches"), self.defaults.roles.of(role).patches
            yield ("clusters", cname, "roles", role, "patches"), cluster.roles.of(role).patches
        for host, node in cluster.nodes.items():
            yield ("clusters", cname, "nodes", host, "patches"), node.patches

    def role_patches(self, cluster: Cluster, role: Role) -> tuple[dict[str, Any], ...]:
        """The role layer's user patches: the fleet's for the role, then the cluster's."""
        return self.defaults.roles.of(role).patches + cluster.roles.of(role).patches

    def mac(self, cname: str, host: str) -> str:
        """The node's NIC MAC: its own when set, else derived from cluster and hostname (what a
        VM gets; for metal without `mac` it is no machine's: see `known_mac`)."""
        return self.clusters[cname].nodes[host].mac or naming.derived_mac(cname, host)

    def known_mac(self, cname: str, host: str) -> str | None:
        """The MAC a real NIC has: a VM's (derived or set) or a metal node's own; else None."""
        node = self.clusters[cname].nodes[host]
        return self.mac(cname, host) if node.mac or isinstance(self.sources[node.source], LibvirtSource) else None

    def vm(self, cname: str, host: str) -> tuple[VmSize, dict[str, tuple[str, ...]]]:
        """The node's VM sizing, field by field from the most specific layer that sets it, and
        the path each field came from (empty for built-in defaults)."""
        cluster = self.clusters[cname]
        node = cluster.nodes[host]
        layers: list[tuple[VmSpec | None, tuple[str, ...]]] = [
            (node.vm, ("clusters", cname, "nodes", host, "vm")),
            (cluster.roles.of(node.role).vm, ("clusters", cname, "roles", node.role, "vm")),
            (self.defaults.roles.of(node.role).vm, ("defaults", "roles", node.role, "vm")),
            (VM_DEFAULTS[node.role], ()),
        ]
        values: dict[str, Any] = {}
        origin: dict[str, tuple[str, ...]] = {}
        for name, field in VmSpec.model_fields.items():
            for spec, path in layers:
                value = getattr(spec, name) if spec is not None else None
                if value is not None:
                    values[name] = value
                    origin[field.alias or name] = (*path, field.alias or name) if path else ()
                    break
        return VmSize(**values), origin

    @model_validator(mode="after")
    def _rules(self) -> Fleet:
        if not self.clusters:
            raise RuleError(("clusters",), "no clusters are defined; add one under talos-fleet:clusters")
        for cname, cluster in self.clusters.items():
            self._check_versions(cname, cluster)
            references = [(("clusters", cname, "diskEncryption"), name) for name in cluster.secret_names()] + [
                ((*where, i), name)
                for where, patches in self._patch_lists(cname, cluster)
                for i, patch in enumerate(patches)
                for name in patch_secret_references(patch)
            ]
            for where, secret in references:
                if secret not in self.secrets:
                    raise RuleError(
                        where,
                        f"secret {secret!r} is not defined; set it with "
                        f"`make secret STACK=<stack> NAME={secret}` (the value is read from standard input)",
                    )
            for host, node in cluster.nodes.items():
                if node.source not in self.sources:
                    known = ", ".join(sorted(self.sources)) or "none defined"
                    raise RuleError(
                        ("clusters", cname, "nodes", host, "source"),
                        f"machine source {node.source!r} is not defined (known: {known}); add it under "
                        "talos-fleet:sources or fix the name",
                    )
        self._check_sources()
        self._check_unique()
        self._check_rendered_size()
        return self

    def _check_rendered_size(self) -> None:
        total = 0
        for cname, cluster in self.clusters.items():
            total += sum(_weight(p) for role in ROLES for p in (*cluster.patches, *self.role_patches(cluster, role)))
            total += sum(_weight(p) for node in cluster.nodes.values() for p in node.patches)
            if total > MAX_RENDERED:
                raise RuleError(
                    ("clusters", cname, "patches"),
                    f"the patches the fleet's nodes receive add up to more than {MAX_RENDERED:,} values once "
                    "rendered (a fleet-wide patch counts once per cluster and role, text once per 32 "
                    "characters), the limit; serve big manifests from a URL (cluster.extraManifests) instead",
                )

    def _check_sources(self) -> None:
        for sname, source in self.sources.items():
            if isinstance(source, MetalSource) and source.matchbox is not None:
                for key, secret in source.matchbox.secret_names().items():
                    if secret not in self.secrets:
                        raise RuleError(
                            ("sources", sname, "matchbox", key),
                            f"secret {secret!r} is not defined; set it with "
                            f"`make secret STACK=<stack> NAME={secret} < file.pem`",
                        )
        for cname, cluster in self.clusters.items():
            on_libvirt = False
            for host, node in cluster.nodes.items():
                source = self.sources[node.source]
                path = ("clusters", cname, "nodes", host)
                if isinstance(source, LibvirtSource):
                    on_libvirt = True
                    self._check_vm_node(cname, cluster, host, node, source)
                else:
                    if node.vm is not None:
                        raise RuleError(
                            (*path, "vm"),
                            f"{host} is on metal source {node.source!r}; VM sizing applies only to libvirt "
                            "sources: remove vm or move the node to a libvirt source",
                        )
                    if source.matchbox is not None and node.mac is None:
                        raise RuleError(
                            (*path, "mac"),
                            f"source {node.source!r} PXE-boots through matchbox, which finds a machine by its "
                            "MAC: set mac to the machine's boot NIC address",
                        )
            if on_libvirt and QEMU_GUEST_AGENT not in self.image(cluster).extensions:
                where = ("clusters", cname, "image") if cluster.image is not None else ("defaults", "image")
                raise RuleError(
                    (*where, "extensions"),
                    f"cluster {cname!r} runs on libvirt VMs, which talk to the host through the QEMU guest "
                    f"agent: add {QEMU_GUEST_AGENT} to the extensions",
                )

    def _check_vm_node(self, cname: str, cluster: Cluster, host: str, node: Node, source: LibvirtSource) -> None:
        path = ("clusters", cname, "nodes", host)
        vm, origin = self.vm(cname, host)
        for key, minimum in VM_MINIMUMS[node.role].items():
            value = getattr(vm, to_snake(key))
            if value < minimum:
                raise RuleError(
                    origin[key],
                    f"{value} is below the Talos minimum of {minimum} for a {node.role} "
                    f"({host}); raise it to at least {minimum}",
                )
        managed = source.network.managed
        if managed is not None:
            if cluster.network.cidr != managed.cidr:
                raise RuleError(
                    ("clusters", cname, "network", "cidr"),
                    f"{host} is on source {node.source!r}, whose network is {managed.cidr}; a cluster's "
                    f"nodes share one L2 network, so set network.cidr to {managed.cidr}",
                )
            if node.ip == managed.gateway:
                raise RuleError(
                    (*path, "address"),
                    f"{node.ip} is the gateway of source {node.source!r}'s network; pick another address",
                )
        elif cluster.addressing_of(node) != "static":
            raise RuleError(
                (*path, "addressing") if node.addressing else ("clusters", cname, "network", "addressing"),
                f"{host} is on bridge {source.network.bridge!r}, where talos-fleet cannot reserve its "
                "address: use addressing: static (the address goes into the node's patch)",
            )
        link = node.link or cluster.network.link
        if link is not None and _KERNEL_LINK.match(link):
            raise RuleError(
                (*path, "link") if node.link else ("clusters", cname, "network", "link"),
                f"{link!r} looks like a kernel interface name; on a VM talos-fleet names the NIC itself "
                "(a LinkAliasConfig matching its MAC), so use an alias such as net0",
            )

    def _check_versions(self, cname: str, cluster: Cluster) -> None:
        talos = versions.parse_version(self.talos_version(cluster))
        kube = versions.parse_version(self.kubernetes_version(cluster))
        problem = versions.kubernetes_support_error(talos, kube)
        if problem is None:
            return
        if cluster.kubernetes_version is not None:
            path: tuple[str, ...] = ("clusters", cname, "kubernetesVersion")
        elif cluster.talos_version is not None:
            path = ("clusters", cname, "talosVersion")
        else:
            path = ("defaults", "kubernetesVersion")
        raise RuleError(path, problem)

    def _check_unique(self) -> None:
        first_cluster: dict[str, str] = {}
        for cname, host, _ in self.all_nodes():
            if host in first_cluster:
                raise RuleError(
                    ("clusters", cname, "nodes", host),
                    f"hostname {host!r} is also used in cluster {first_cluster[host]!r}; hostnames name "
                    "resources and Kubernetes nodes, so they must be unique across the fleet: rename one",
                )
            first_cluster[host] = cname
        owners: dict[str, tuple[str, ...]] = {}
        for cname, cluster in self.clusters.items():
            if cluster.endpoint.vip is not None:
                owners[cluster.endpoint.vip] = ("clusters", cname, "endpoint", "vip")
        for cname, host, node in self.all_nodes():
            path = ("clusters", cname, "nodes", host, "address")
            if node.ip in owners:
                first = f"{NAMESPACE}:" + ".".join(owners[node.ip])
                raise RuleError(
                    path,
                    f"address {node.ip} is already used by {first}; every node and VIP needs its own address",
                )
            owners[node.ip] = path
        macs: dict[str, str] = {}
        for cname, host, _ in self.all_nodes():
            mac = self.known_mac(cname, host)
            if mac is None:
                continue
            if mac in macs:
                raise RuleError(
                    ("clusters", cname, "nodes", host, "mac"),
                    f"MAC {mac} is also {macs[mac]}'s; every NIC needs its own: set a different mac here",
                )
            macs[mac] = host
