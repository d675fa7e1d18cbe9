"""`make up`'s host checks for libvirt stacks: what would otherwise fail half-way through `pulumi up`.

    python -m tools.preflight stacks/Pulumi.homelab.yaml

On this machine (the one running `pulumi up`): `xsltproc`, which the libvirt provider runs
locally for every VM's stylesheet, and `virsh` for stacks with a managed network (the DHCP-entry
steps run it; elsewhere it is optional and only lets preflight check more). For a local
hypervisor (qemu:///system): KVM is there (/dev/kvm) and the OVMF firmware and NVRAM template the
stack names exist. With virsh, every hypervisor (local or qemu+ssh://) answers at its URI and has
its storage pool; an unreachable daemon and a missing pool get different fixes. Every problem names
the stack field and the fix; exit 1 if there is any. Metal-only stacks pass trivially.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.spec import NAMESPACE, Fleet, LibvirtSource

Run = Callable[[list[str]], tuple[int, str]]
Which = Callable[[str], str | None]

TIMED_OUT = "timed out after 30 s"
# virsh's answer when it cannot open the connection at all (tools/virsh.c virshInit, libvirt/libvirt
# master 0007237; "Failed to connect ..." in older virsh): the daemon, the socket or SSH, not the pool.
CANNOT_CONNECT = "failed to connect to the hypervisor"
# A pool that does not exist: "failed to get pool '<name>'" (tools/virsh-pool.c
# virshCommandOptPoolBy), then "Storage pool not found: no storage pool with matching name"
# (src/storage/storage_driver.c storagePoolObjFindByName).
POOL_MISSING = ("failed to get pool", "no storage pool with matching name")


def _run(argv: list[str]) -> tuple[int, str]:
    # LC_ALL=C: virsh's messages untranslated, so the matches above hold.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=env)
    except subprocess.TimeoutExpired:
        return 1, TIMED_OUT
    return done.returncode, " ".join((done.stderr or done.stdout).split())


def _cannot_connect(field: str, uri: str, output: str) -> str:
    if uri.startswith("qemu:///"):
        start = (
            "start the libvirt daemon: `sudo systemctl enable --now libvirtd` (Debian/Ubuntu), or on "
            "distributions with libvirt's modular daemons (Fedora, RHEL 9) `sudo systemctl enable --now "
            "virtqemud.socket virtnetworkd.socket virtstoraged.socket`; and be in the libvirt group "
            "(`sudo usermod -aG libvirt $USER`, then log in again)"
        )
    else:
        start = (
            "check that `ssh` to that host works with your key and no password prompt, that libvirtd (or "
            "virtqemud) runs there (`sudo systemctl enable --now libvirtd`), and that your remote user is in "
            "its libvirt group"
        )
    return f"{field}.uri: cannot connect to the hypervisor at {uri} ({output}); {start}"


def _pool_problem(field: str, source: LibvirtSource, output: str) -> str:
    uri, pool = source.uri, source.pool
    if CANNOT_CONNECT in output.lower() or output == TIMED_OUT:
        return _cannot_connect(field, uri, output)
    if any(marker in output for marker in POOL_MISSING):
        return (
            f"{field}.pool: storage pool {pool!r} does not exist at {uri}; create it "
            f"(virsh -c {uri} pool-define-as {pool} dir --target /var/lib/libvirt/images; "
            f"virsh -c {uri} pool-start {pool}; virsh -c {uri} pool-autostart {pool}) or name an existing one"
        )
    return (
        f"{field}.pool: storage pool {pool!r} is not usable at {uri} ({output}); check the URI and your "
        "libvirt group membership"
    )


def problems(
    fleet: Fleet,
    exists: Callable[[str], bool] = lambda p: Path(p).exists(),
    which: Which = shutil.which,
    run: Run = _run,
) -> list[str]:
    found: list[str] = []
    hypervisors = {name: s for name, s in fleet.sources.items() if isinstance(s, LibvirtSource)}
    if not hypervisors:
        return found
    fields = ", ".join(f"{NAMESPACE}:sources.{name}" for name in hypervisors)
    # The provider applies each domain's stylesheet by running xsltproc on the machine that runs
    # it, i.e. this one (dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/utils_xslt.go
    # transformXML, called from resourceLibvirtDomainCreate): without it no VM can be created.
    if which("xsltproc") is None:
        found.append(
            f"{fields}: xsltproc is not installed on this machine, and the libvirt provider runs it here for "
            "every VM's stylesheet; install it (Debian/Ubuntu: xsltproc, Fedora: libxslt)"
        )
    virsh = which("virsh")
    managed = [name for name, s in hypervisors.items() if s.network.managed is not None]
    if virsh is None and managed:
        found.append(
            f"{', '.join(f'{NAMESPACE}:sources.{n}.network.managed' for n in managed)}: virsh is not installed on "
            "this machine, and `pulumi up` runs it to keep each VM's DHCP entry on a managed network; install it "
            "(Debian/Ubuntu: libvirt-clients, Fedora: libvirt-client)"
        )
    for name, source in hypervisors.items():
        field = f"{NAMESPACE}:sources.{name}"
        if source.uri.startswith("qemu:///"):
            if not exists("/dev/kvm"):
                found.append(
                    f"{field}: /dev/kvm is missing on this host; enable virtualization (VT-x/AMD-V) in the "
                    "firmware and load the kvm_intel or kvm_amd module"
                )
            for key, path in (("firmware", source.firmware), ("nvramTemplate", source.nvram_template)):
                if not exists(path):
                    found.append(
                        f"{field}.{key}: {path} does not exist; install OVMF (Debian/Ubuntu: ovmf, Fedora: "
                        "edk2-ovmf) or point the field at your distribution's file"
                    )
        if virsh is None:
            continue
        code, output = run([virsh, "-c", source.uri, "pool-info", source.pool])
        if code != 0:
            found.append(_pool_problem(field, source, output))
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.preflight stacks/Pulumi.<stack>.yaml", file=sys.stderr)
        return 2
    try:
        fleet = load_stack_file(args[0])
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    found = problems(fleet)
    libvirt = [s for s in fleet.sources.values() if isinstance(s, LibvirtSource)]
    if shutil.which("virsh") is None and libvirt and all(s.network.managed is None for s in libvirt):
        print("preflight: virsh not found; hypervisors and storage pools are not checked (install libvirt-clients)")
    for problem in found:
        print(f"preflight: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
