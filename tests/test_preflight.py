"""`make up`'s host checks, with the host faked: each missing piece is named with its field and fix."""

from __future__ import annotations

from talos_fleet.loader import load_stack_file
from tests.conftest import ROOT
from tools.preflight import problems

HOMELAB = load_stack_file(ROOT / "stacks" / "Pulumi.homelab.yaml")
MULTI_REGION = load_stack_file(ROOT / "stacks" / "Pulumi.multi-region.yaml")
EDGE = load_stack_file(ROOT / "stacks" / "Pulumi.edge.yaml")


def test_a_ready_local_host_passes() -> None:
    assert problems(HOMELAB, exists=lambda _: True, virsh="virsh", run=lambda argv: (0, "")) == []


def test_missing_kvm_and_ovmf_are_named_with_the_fix() -> None:
    found = problems(HOMELAB, exists=lambda _: False)
    assert any("talos-fleet:sources.kvm: /dev/kvm is missing" in p for p in found)
    assert any(p.startswith("talos-fleet:sources.kvm.firmware:") and "install OVMF" in p for p in found)
    assert any(p.startswith("talos-fleet:sources.kvm.nvramTemplate:") for p in found)


def test_a_missing_pool_is_checked_on_every_hypervisor_through_its_uri() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str]:
        calls.append(argv)
        return (1, "error: failed to get pool 'default'") if "kvm-us" in argv[2] else (0, "")

    found = problems(MULTI_REGION, exists=lambda _: True, virsh="virsh", run=run)
    assert sorted(c[2] for c in calls) == sorted(s.uri for s in MULTI_REGION.sources.values())  # type: ignore[union-attr]
    assert len(found) == 1
    assert found[0].startswith("talos-fleet:sources.kvm-us.pool:")
    assert "pool-define-as" in found[0]


def test_remote_hosts_are_not_checked_for_local_files() -> None:
    assert problems(MULTI_REGION, exists=lambda _: False) == []


def test_metal_stacks_need_nothing() -> None:
    assert problems(EDGE, exists=lambda _: False, virsh="virsh", run=lambda argv: (1, "")) == []
