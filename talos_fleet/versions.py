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


# ---------------------------------------------------------------------------------------------
# Upgrade guard rails: which changes of a running cluster Talos supports. Pure, stdlib only:
# `talos_fleet.day2` runs them inside `pulumi up` with the system Python.


def talos_change_problem(running: Version, target: Version, allow_downgrade: bool) -> str | None:
    """Why moving a node from Talos `running` to `target` is refused, or None.

    Talos tests upgrades between adjacent minors only: go through the latest patch of each minor
    (https://www.talos.dev/v1.13/talos-guides/upgrading-talos/#supported-upgrade-paths)."""
    if target < running and not allow_downgrade:
        return (
            f"talosVersion {target} is older than the running Talos {running}; a downgrade is refused "
            f"unless upgrade.allowDowngrade is true (or put talosVersion back to {running})"
        )
    if target.major == running.major and target.minor > running.minor + 1:
        step = f"v{running.major}.{running.minor + 1}"
        return (
            f"talosVersion {target} skips Talos {step}: Talos upgrades one minor at a time; first set "
            f"talosVersion to the latest {step}.x patch and run pulumi up, then move on to {target}"
        )
    if target.major != running.major and target > running:
        return f"talosVersion {target} changes the major version from {running}; that upgrade path is not supported"
    return None


def kubernetes_change_problem(running: Version, target: Version, allow_downgrade: bool) -> str | None:
    """Why moving a cluster from Kubernetes `running` to `target` is refused, or None.

    `talosctl upgrade-k8s` moves one minor at a time
    (https://www.talos.dev/v1.13/kubernetes-guides/upgrading-kubernetes/)."""
    if target < running and not allow_downgrade:
        return (
            f"kubernetesVersion {target} is older than the running Kubernetes {running}; a downgrade is "
            f"refused unless upgrade.allowDowngrade is true (or put kubernetesVersion back to {running})"
        )
    if target.minor_key > running.minor_key and (target.major != running.major or target.minor > running.minor + 1):
        step = f"v{running.major}.{running.minor + 1}"
        return (
            f"kubernetesVersion {target} jumps more than one minor from the running {running}; Kubernetes "
            f"upgrades one minor at a time: first set kubernetesVersion to the latest {step}.x and run "
            f"pulumi up, then move on to {target}"
        )
    return None


def rollout_problems(
    running_talos: Version,
    running_kubernetes: Version,
    target_talos: Version,
    target_kubernetes: Version,
    allow_downgrade: bool,
) -> list[str]:
    """Every reason a change from the running versions to the target ones is refused.

    Talos nodes upgrade first, Kubernetes after: during the Talos rollout nodes run the target
    Talos with the running Kubernetes, so that pair must be supported too."""
    problems = [
        p
        for p in (
            talos_change_problem(running_talos, target_talos, allow_downgrade),
            kubernetes_change_problem(running_kubernetes, target_kubernetes, allow_downgrade),
        )
        if p is not None
    ]
    if target_talos != running_talos and (mid := kubernetes_support_error(target_talos, running_kubernetes)):
        problems.append(
            f"while Talos upgrades, the cluster still runs Kubernetes {running_kubernetes}: {mid}. "
            "Upgrade Kubernetes first, in its own change, to a version both Talos minors support"
        )
    problems.extend(p for p in [kubernetes_support_error(target_talos, target_kubernetes)] if p)
    return problems
