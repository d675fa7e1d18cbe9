"""`make up`'s host checks, with the host faked: each missing piece is named with its field and fix.

virsh's answers below are what it prints (whitespace folded to one line, as `_run` does): a
missing pool is "failed to get pool '<name>'" (libvirt/libvirt tools/virsh-pool.c
virshCommandOptPoolBy) then "Storage pool not found: no storage pool with matching name '<name>'"
(src/util/virerror.c, src/storage/storage_driver.c storagePoolObjFindByName); an unreachable daemon
is the connection's own error, then "failed to connect to the hypervisor" (tools/virsh.c virshInit;
the socket error from src/rpc/virnetsocket.c virNetSocketNewConnectUNIX, the SSH one from
src/rpc/virnetsocket.c virNetSocketReadWire "End of file while reading data").
"""

from __future__ import annotations

import pytest

from talos_fleet.loader import load_stack_file
from talos_fleet.spec import Fleet
from tests.conftest import ROOT
from tools.preflight import problems

HOMELAB = load_stack_file(ROOT / "stacks" / "Pulumi.homelab.yaml")
MULTI_REGION = load_stack_file(ROOT / "stacks" / "Pulumi.multi-region.yaml")
EDGE = load_stack_file(ROOT / "stacks" / "Pulumi.edge.yaml")
BRIDGE = load_stack_file(ROOT / "tests" / "fixtures" / "good" / "pxe-and-bridge.yaml")

NO_POOL = (
    "error: failed to get pool 'default' error: Storage pool not found: no storage pool with matching name 'default'"
)
NO_DAEMON = (
    "error: Failed to connect socket to '/var/run/libvirt/virtqemud-sock': No such file or directory "
    "error: failed to connect to the hypervisor"
)
NO_SSH = (
    "error: End of file while reading data: ssh: connect to host kvm-us port 22: Connection refused: "
    "Input/output error error: failed to connect to the hypervisor"
)


def installed(*tools: str) -> dict[str, str]:
    return {tool: f"/usr/bin/{tool}" for tool in tools}


def test_a_ready_local_host_passes() -> None:
    tools = installed("virsh", "xsltproc")
    assert problems(HOMELAB, exists=lambda _: True, which=tools.get, run=lambda argv: (0, "")) == []


def test_missing_kvm_and_ovmf_are_named_with_the_fix() -> None:
    found = problems(HOMELAB, exists=lambda _: False, which=installed("xsltproc").get)
    assert any("talos-fleet:sources.kvm: /dev/kvm is missing" in p for p in found)
    assert any(p.startswith("talos-fleet:sources.kvm.firmware:") and "install OVMF" in p for p in found)
    assert any(p.startswith("talos-fleet:sources.kvm.nvramTemplate:") for p in found)


def test_xsltproc_is_required_on_this_machine_for_every_libvirt_stack() -> None:
    """The provider runs xsltproc where `pulumi up` runs (terraform-provider-libvirt v0.8.1
    libvirt/utils_xslt.go), local hypervisor or remote."""
    for fleet in (HOMELAB, MULTI_REGION, BRIDGE):
        found = problems(fleet, exists=lambda _: True, which=installed("virsh").get, run=lambda argv: (0, ""))
        assert len(found) == 1, found
        assert "xsltproc is not installed on this machine" in found[0]
        assert "Debian/Ubuntu: xsltproc, Fedora: libxslt" in found[0]
        assert found[0].startswith("talos-fleet:sources.")
    assert problems(EDGE, exists=lambda _: False, which=lambda _: None) == []


def test_virsh_is_required_for_managed_networks_only() -> None:
    found = problems(MULTI_REGION, exists=lambda _: True, which=installed("xsltproc").get)
    assert len(found) == 1, found
    for name in MULTI_REGION.sources:
        assert f"talos-fleet:sources.{name}.network.managed" in found[0]
    assert "virsh is not installed" in found[0]
    assert "libvirt-clients" in found[0]
    # On a bridge nothing runs virsh: it only lets preflight check more.
    assert problems(BRIDGE, exists=lambda _: True, which=installed("xsltproc").get) == []


def test_a_missing_pool_is_checked_on_every_hypervisor_through_its_uri() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str]:
        calls.append(argv)
        return (1, NO_POOL) if "kvm-us" in argv[2] else (0, "")

    tools = installed("virsh", "xsltproc")
    found = problems(MULTI_REGION, exists=lambda _: True, which=tools.get, run=run)
    assert sorted(c[2] for c in calls) == sorted(s.uri for s in MULTI_REGION.sources.values())  # type: ignore[union-attr]
    assert len(found) == 1
    assert found[0].startswith("talos-fleet:sources.kvm-us.pool: storage pool 'default' does not exist")
    assert "pool-define-as" in found[0]
    assert "systemctl" not in found[0]


@pytest.mark.parametrize(
    ("fleet", "output", "fix"),
    [
        (HOMELAB, NO_DAEMON, "sudo systemctl enable --now libvirtd"),
        (HOMELAB, NO_DAEMON, "virtqemud.socket"),
        (HOMELAB, NO_DAEMON, "libvirt group"),
        (HOMELAB, "timed out after 30 s", "sudo systemctl enable --now libvirtd"),
        (MULTI_REGION, NO_SSH, "`ssh` to that host works with your key"),
        (MULTI_REGION, NO_SSH, "libvirtd (or virtqemud) runs there"),
    ],
)
def test_an_unreachable_daemon_is_told_how_to_start_it_not_how_to_make_a_pool(
    fleet: Fleet, output: str, fix: str
) -> None:
    tools = installed("virsh", "xsltproc")
    found = problems(fleet, exists=lambda _: True, which=tools.get, run=lambda argv: (1, output))
    assert found
    for problem in found:
        assert ".uri: cannot connect to the hypervisor at " in problem
        assert fix in problem
        assert "pool-define-as" not in problem


def test_remote_hosts_are_not_checked_for_local_files() -> None:
    assert problems(MULTI_REGION, exists=lambda _: False, which=installed("xsltproc", "virsh").get,
                    run=lambda argv: (0, "")) == []  # fmt: skip


def test_metal_stacks_need_nothing() -> None:
    assert problems(EDGE, exists=lambda _: False, which=lambda _: None, run=lambda argv: (1, "")) == []


def test_the_readme_lists_what_preflight_requires() -> None:
    """What preflight demands of the host is in the README's prerequisites table."""
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| ")]
    for tool in ("xsltproc", "virsh"):
        assert any(f"`{tool}`" in row for row in table), f"README prerequisites do not list {tool}"
