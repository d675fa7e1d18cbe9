"""Talos and Kubernetes version facts and parsing. Pure: no Pulumi, no I/O."""

from __future__ import annotations

import re
from typing import NamedTuple

# Kubernetes minors each Talos minor supports (Talos support matrix,
# https://www.talos.dev/v1.13/introduction/support-matrix/ and the same page for 1.11, 1.12, 1.14).
KUBERNETES_SUPPORT: dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]] = {
    (1, 11): ((1, 29), (1, 34)),
    (1, 12): ((1, 30), (1, 35)),
    (1, 13): ((1, 31), (1, 36)),
    (1, 14): ((1, 32), (1, 37)),
}

# pulumiverse-talos 0.8.1 generates and parses configs with Talos machinery 1.13: a newer
# version contract is unknown to it, so generated configs must stay on <= v1.13.
PROVIDER_MACHINERY = (1, 13)

_VERSION = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_CONTRACT = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version:
    """Parse `vX.Y.Z`; raise ValueError with the fix otherwise."""
    m = _VERSION.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a version of the form vX.Y.Z; write it like v1.13.9 "
            "(a leading 'v', then major.minor.patch, no pre-release suffix)"
        )
    return Version(int(m[1]), int(m[2]), int(m[3]))


def parse_contract(text: str) -> tuple[int, int]:
    """Parse a version contract `vX.Y`; raise ValueError with the fix otherwise."""
    m = _CONTRACT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a version contract of the form vX.Y; write it like v1.13")
    return (int(m[1]), int(m[2]))


def fmt_minor(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


def kubernetes_support_error(talos: Version, kubernetes: Version) -> str | None:
    """Why this Talos/Kubernetes pair is unsupported, or None when Talos supports it."""
    supported = KUBERNETES_SUPPORT.get(talos.minor_key)
    if supported is None:
        known = ", ".join(fmt_minor(m) for m in sorted(KUBERNETES_SUPPORT))
        return f"Talos {fmt_minor(talos.minor_key)} is not supported by talos-fleet; use one of Talos {known}"
    low, high = supported
    if not low <= kubernetes.minor_key <= high:
        return (
            f"Talos {fmt_minor(talos.minor_key)} supports Kubernetes {fmt_minor(low)} to {fmt_minor(high)}, "
            f"not {fmt_minor(kubernetes.minor_key)}; pick a kubernetesVersion in that range "
            "or a Talos version that supports it"
        )
    return None
