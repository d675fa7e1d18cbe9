"""A VM's DHCP host entry on a talos-fleet managed libvirt network, run by pulumi-command.

    python3 -m talos_fleet.dhcp_hosts clear-stale   # before the VM is created (and on update)
    python3 -m talos_fleet.dhcp_hosts release       # after the VM is deleted

Why: dmacvicar/terraform-provider-libvirt v0.8.1 adds a host entry (MAC, name, IP) to the network for each
NIC with `addresses` (libvirt/domain.go setNetworkInterfaces -> libvirt/network_def.go
updateOrAddHost) and never removes it: resourceLibvirtDomainDelete (libvirt/resource_libvirt_domain.go)
only destroys and undefines the domain. updateOrAddHost first tries `modify`, then `add-last`, and
libvirt refuses an add that matches any existing entry by MAC, name *or* IP ("there is an existing
dhcp host entry", libvirt/libvirt src/conf/network_conf.c virNetworkDefUpdateIPDHCPHost), while
older libvirt matched a modify by MAC or name only: a node added with the address a removed node
had fails at VM creation. Newer libvirt also matches the modify by IP, and then rewrites one
stale entry and may keep another with the same name or address. Either way, the removed node's
entry must go: `release` deletes this VM's entries when the VM is gone, and `clear-stale` deletes,
before the VM is created, entries an older talos-fleet or a failed run left that would collide
with this one, unless a VM still defined on the host uses them (then it stops with the fix).

Everything comes from the environment (plain, node-stable values):
TALOS_FLEET_LIBVIRT_URI, TALOS_FLEET_NETWORK, TALOS_FLEET_HOSTNAME, TALOS_FLEET_MAC,
TALOS_FLEET_IP. Standard library only: it runs under the system `python3`.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from talos_fleet import day2

STEPS = ("clear-stale", "release")

# virsh's own messages, matched with LC_ALL=C so they are not translated:
# - a delete that matches no entry fails with VIR_ERR_OPERATION_INVALID "couldn't locate a matching
#   dhcp host entry in network '<name>'" (libvirt/libvirt src/conf/network_conf.c
#   virNetworkDefUpdateIPDHCPHost), printed by virsh as "error: Requested operation is not valid: ..."
#   (src/util/virerror.c) after "error: Failed to update network <name>" (tools/virsh-network.c
#   cmdNetworkUpdate), exit status 1;
# - a network that does not exist: "Network not found: no network with matching name '<name>'"
#   (src/network/bridge_driver.c networkLookupByName).
ENTRY_GONE = "couldn't locate a matching dhcp host entry"
NETWORK_GONE = "no network with matching name"

Run = Callable[[Sequence[str]], "Result"]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


class StepError(Exception):
    """Stops the step with one message for the user."""


@dataclass(frozen=True)
class Host:
    mac: str
    name: str
    ip: str

    def xml(self) -> str:
        """The entry as `net-update` matches it: every attribute the entry has must match."""
        element = ET.Element("host", {k: v for k, v in (("mac", self.mac), ("name", self.name), ("ip", self.ip)) if v})
        return ET.tostring(element, encoding="unicode")

    def same_mac(self, other: Host) -> bool:
        # libvirt compares MACs ignoring case (src/util/virmacaddr.c virMacAddrCompare); the provider
        # writes them upper-case (libvirt/domain.go setNetworkInterfaces).
        return bool(self.mac) and self.mac.lower() == other.mac.lower()

    def same_ip(self, other: Host) -> bool:
        return bool(self.ip and other.ip) and ipaddress.ip_address(self.ip) == ipaddress.ip_address(other.ip)

    def collides(self, other: Host) -> bool:
        """What libvirt's add refuses: the same MAC, name or IP (network_conf.c, see above)."""
        return self.same_mac(other) or (bool(self.name) and self.name == other.name) or self.same_ip(other)

    def identical(self, other: Host) -> bool:
        return self.same_mac(other) and self.name == other.name and self.same_ip(other)


@dataclass(frozen=True)
class Target:
    uri: str
    network: str
    host: Host


def target_from(environ: Mapping[str, str]) -> Target:
    keys = ("LIBVIRT_URI", "NETWORK", "HOSTNAME", "MAC", "IP")
    values = {key: environ.get(f"TALOS_FLEET_{key}", "") for key in keys}
    if absent := [f"TALOS_FLEET_{key}" for key, value in values.items() if not value]:
        raise StepError(f"missing environment: {', '.join(absent)}")
    host = Host(values["MAC"], values["HOSTNAME"], values["IP"])
    return Target(values["LIBVIRT_URI"], values["NETWORK"], host)


def _run(argv: Sequence[str]) -> Result:
    # LC_ALL=C: virsh prints its messages untranslated, so the matches above hold.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False, env=env)
    except FileNotFoundError:
        raise StepError(
            "virsh not found: install it (Debian/Ubuntu: libvirt-clients, Fedora: libvirt-client)"
        ) from None
    except subprocess.TimeoutExpired:
        raise StepError(f"{' '.join(argv[:4])} did not answer within 120 s") from None
    return Result(done.returncode, done.stdout, done.stderr)


class Virsh:
    def __init__(self, target: Target, run: Run) -> None:
        self.target = target
        self._run = run

    def __call__(self, *args: str) -> Result:
        return self._run(["virsh", "-c", self.target.uri, *args])

    def fail(self, what: str, result: Result) -> StepError:
        # virsh prints one "error: ..." line per message: one line for the user.
        detail = "; ".join(line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip())
        return StepError(f"{what} on {self.target.uri} failed: {detail}")

    def network_exists(self) -> bool:
        result = self("net-info", self.target.network)
        if result.code == 0:
            return True
        if NETWORK_GONE in result.stderr:
            return False
        raise self.fail(f"virsh net-info {self.target.network}", result)

    def active(self) -> bool:
        # net-info prints "Active:" then "yes"/"no" (tools/virsh-network.c cmdNetworkInfo).
        result = self("net-info", self.target.network)
        if result.code != 0:
            raise self.fail(f"virsh net-info {self.target.network}", result)
        for line in result.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Active":
                return value.strip() == "yes"
        raise StepError(f"virsh net-info {self.target.network}: no 'Active:' line in {result.stdout!r}")

    def hosts(self, *, inactive: bool) -> list[Host]:
        """The network's DHCP host entries: the running network's (live) or its persistent config."""
        args = ["net-dumpxml", self.target.network, *(["--inactive"] if inactive else [])]
        result = self(*args)
        if result.code != 0:
            raise self.fail(f"virsh {' '.join(args)}", result)
        try:
            root = ET.fromstring(result.stdout)
        except ET.ParseError as error:
            raise StepError(f"virsh {' '.join(args)} printed no network XML: {error}") from None
        return [Host(h.get("mac", ""), h.get("name", ""), h.get("ip", "")) for h in root.findall("./ip/dhcp/host")]

    def delete(self, host: Host, *, live: bool, config: bool) -> None:
        flags = [*(["--live"] if live else []), *(["--config"] if config else [])]
        result = self("net-update", self.target.network, "delete", "ip-dhcp-host", host.xml(), *flags)
        if result.code != 0 and ENTRY_GONE not in result.stderr:
            raise self.fail(f"removing the DHCP entry {host.xml()} from {self.target.network}", result)

    def domains_using(self, mac: str) -> list[str]:
        """Domains defined on the host (running or not) with a NIC of this MAC."""
        listing = self("list", "--all", "--name")
        if listing.code != 0:
            raise self.fail("virsh list --all --name", listing)
        users = []
        for name in filter(None, (line.strip() for line in listing.stdout.splitlines())):
            dumped = self("dumpxml", name)
            if dumped.code != 0:
                continue  # undefined in the meantime
            try:
                nics = ET.fromstring(dumped.stdout).findall("./devices/interface/mac")
            except ET.ParseError as error:
                raise StepError(f"virsh dumpxml {name} printed no domain XML: {error}") from None
            macs = {m.get("address", "").lower() for m in nics}
            if mac.lower() in macs:
                users.append(name)
        return users


def _entries(virsh: Virsh) -> dict[Host, tuple[bool, bool]]:
    """Each entry with where it is: (live, config). A running network has both definitions and
    the provider changes both (network_def.go addHost: AffectLive|AffectConfig); a stopped one
    has only its config."""
    active = virsh.active()
    live = virsh.hosts(inactive=False) if active else []
    config = virsh.hosts(inactive=True)
    return {h: (h in live, h in config) for h in dict.fromkeys([*live, *config])}


def clear_stale(virsh: Virsh) -> str:
    ours = virsh.target.host
    stale = {h: where for h, where in _entries(virsh).items() if ours.collides(h) and not ours.identical(h)}
    for host in stale:
        users = virsh.domains_using(host.mac) if host.mac else []
        if users:
            raise StepError(
                f"{virsh.target.network}: the DHCP entry {host.xml()} collides with {ours.xml()} and belongs to "
                f"{', '.join(users)}, still defined on {virsh.target.uri}. A node's address or name can be reused "
                "only once the node holding it is gone: remove that node in one `make up`, add this one in the "
                "next (a node's address never changes in place)"
            )
    for host, (live, config) in stale.items():
        virsh.delete(host, live=live, config=config)
    return f"removed {len(stale)} stale DHCP entr{'y' if len(stale) == 1 else 'ies'}: " + " ".join(
        h.xml() for h in stale
    )


def release(virsh: Virsh) -> str:
    if not virsh.network_exists():
        return f"network {virsh.target.network} is gone, and its DHCP entries with it"
    ours = virsh.target.host
    mine = {h: where for h, where in _entries(virsh).items() if h.same_mac(ours)}
    for host, (live, config) in mine.items():
        virsh.delete(host, live=live, config=config)
    return f"released {len(mine)} DHCP entr{'y' if len(mine) == 1 else 'ies'}: " + " ".join(h.xml() for h in mine)


def command(step: str) -> str:
    """The command text pulumi-command runs: constant, so it never causes an update."""
    if step not in STEPS:
        raise KeyError(step)
    return f"python3 -m talos_fleet.dhcp_hosts {step}"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, run: Run = _run) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: python3 -m talos_fleet.dhcp_hosts {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    environ = os.environ if environ is None else environ
    if args[0] == "release" and day2.Env(environ).flag("DESTROY"):
        # `make destroy` deletes the network too, and its entries with it; a host or a virsh that
        # is gone must not stop the teardown.
        print("the whole stack is being destroyed: the network goes, and its DHCP entries with it")
        return 0
    try:
        virsh = Virsh(target_from(environ), run)
        print(clear_stale(virsh) if args[0] == "clear-stale" else release(virsh))
    except StepError as error:
        print(f"talos-fleet dhcp {args[0]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
