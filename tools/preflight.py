"""`make up`'s host checks for libvirt stacks: what would otherwise fail half-way through `pulumi up`.

    python -m tools.preflight stacks/Pulumi.homelab.yaml

For a local hypervisor (qemu:///system): KVM is there (/dev/kvm), the OVMF firmware and NVRAM
template the stack names exist, and (with virsh installed) the storage pool exists. For a remote
one (qemu+ssh://…), with virsh installed: the host answers and has the pool. Every problem names
the stack field and the fix; exit 1 if there is any. Metal-only stacks pass trivially.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.spec import NAMESPACE, Fleet, LibvirtSource

Run = Callable[[list[str]], tuple[int, str]]


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return 1, "timed out after 30 s"
    return done.returncode, (done.stderr or done.stdout).strip()


def problems(
    fleet: Fleet,
    exists: Callable[[str], bool] = lambda p: Path(p).exists(),
    virsh: str | None = None,
    run: Run = _run,
) -> list[str]:
    found: list[str] = []
    for name, source in fleet.sources.items():
        if not isinstance(source, LibvirtSource):
            continue
        field = f"{NAMESPACE}:sources.{name}"
        local = source.uri.startswith("qemu:///")
        if local:
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
            found.append(
                f"{field}.pool: storage pool {source.pool!r} is not usable at {source.uri} ({output}); create it "
                f"(virsh -c {source.uri} pool-define-as {source.pool} dir --target /var/lib/libvirt/images; "
                "pool-start; pool-autostart) or check the URI and your libvirt group membership"
            )
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        fleet = load_stack_file(args[0])
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    virsh = shutil.which("virsh")
    if virsh is None and any(isinstance(s, LibvirtSource) for s in fleet.sources.values()):
        print("preflight: virsh not found; storage pools are not checked (install libvirt-clients)")
    found = problems(fleet, virsh=virsh)
    for problem in found:
        print(f"preflight: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
