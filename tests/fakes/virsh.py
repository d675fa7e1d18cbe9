"""A fake `virsh` for the commands `talos_fleet.dhcp_hosts` runs, over an in-memory libvirt host.

It keeps what libvirt keeps (a network's live and persistent DHCP host entries, the domains and
their MACs) and answers as virsh does. Every rule and canned output cites its source, from
libvirt/libvirt (master snapshot 0007237, read 2026-12; tools/ and src/):

- virsh exits 0 on success and 1 on failure (tools/virsh.c main: EXIT_SUCCESS / EXIT_FAILURE),
  printing each error as "error: <message>" on stderr (tools/vsh.c vshError / vshReportError).
- libvirt prefixes a message with its error class (src/util/virerror.c virErrorMsgStrings):
  VIR_ERR_OPERATION_INVALID "Requested operation is not valid: ", VIR_ERR_NO_NETWORK
  "Network not found: ".
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from talos_fleet.dhcp_hosts import Host, Result


@dataclass
class Network:
    name: str
    active: bool = True
    live: list[Host] = field(default_factory=list)
    config: list[Host] = field(default_factory=list)


def _fail(*messages: str) -> Result:
    return Result(1, "", "".join(f"error: {m}\n" for m in messages))


def _matches_for_delete(wanted: Host, entry: Host) -> bool:
    """libvirt's delete: every attribute given must match (src/conf/network_conf.c
    virNetworkDefUpdateIPDHCPHost, VIR_NETWORK_UPDATE_COMMAND_DELETE); MACs compare ignoring case
    (src/util/virmacaddr.c virMacAddrCompare)."""
    return (
        (not wanted.mac or wanted.mac.lower() == entry.mac.lower())
        and (not wanted.name or wanted.name == entry.name)
        and (not wanted.ip or ipaddress.ip_address(wanted.ip) == ipaddress.ip_address(entry.ip))
    )


@dataclass
class FakeVirsh:
    uri: str
    networks: dict[str, Network] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)
    """Defined domains (running or not) and their NICs' MACs."""
    reachable: bool = True
    calls: list[list[str]] = field(default_factory=list)
    before_update: list[str] = field(default_factory=list)
    """Network names whose entries vanish right before the next net-update (a concurrent delete)."""

    def __call__(self, argv: Sequence[str]) -> Result:
        args = list(argv)
        self.calls.append(args)
        assert args[:3] == ["virsh", "-c", self.uri], args
        if not self.reachable:
            # tools/virsh.c virshInit: the connection's own error first (here the socket's:
            # src/rpc/virnetsocket.c virNetSocketNewConnectUNIX), then "failed to connect to the
            # hypervisor".
            return _fail(
                "Failed to connect socket to '/var/run/libvirt/virtqemud-sock': No such file or directory",
                "failed to connect to the hypervisor",
            )
        command, rest = args[3], args[4:]
        handler = {
            "net-info": self._net_info,
            "net-dumpxml": self._net_dumpxml,
            "net-update": self._net_update,
            "list": self._list,
            "dumpxml": self._dumpxml,
        }[command]
        return handler(rest)

    def _network(self, name: str) -> Network | Result:
        if name not in self.networks:
            # tools/virsh-network.c virshCommandOptNetworkBy "failed to get network '%s'", then the
            # driver's VIR_ERR_NO_NETWORK (src/network/bridge_driver.c networkLookupByName).
            return _fail(
                f"failed to get network '{name}'", f"Network not found: no network with matching name '{name}'"
            )
        return self.networks[name]

    def _net_info(self, rest: list[str]) -> Result:
        network = self._network(rest[0])
        if isinstance(network, Result):
            return network
        # tools/virsh-network.c cmdNetworkInfo: "%-15s %s\n" per line; Active/Persistent/Autostart yes|no.
        lines = [
            ("Name:", network.name),
            ("UUID:", "6e2b1a7c-9f0d-4c1e-8a53-0d3f6c2b9e41"),
            ("Active:", "yes" if network.active else "no"),
            ("Persistent:", "yes"),
            ("Autostart:", "yes"),
            ("Bridge:", "virbr1"),
        ]
        return Result(0, "".join(f"{k:<15} {v}\n" for k, v in lines), "")

    def _net_dumpxml(self, rest: list[str]) -> Result:
        network = self._network(rest[0])
        if isinstance(network, Result):
            return network
        # --inactive: the persistent definition; otherwise the running one, which for a stopped
        # network is the persistent one (src/conf/virnetworkobj.c, obj->def vs newDef).
        hosts = network.config if "--inactive" in rest or not network.active else network.live
        # Layout of src/conf/network_conf.c virNetworkDefFormatBuf / virNetworkIPDefFormat: a host
        # entry has mac, name, ip attributes in that order.
        entries = "".join(f"\n      {h.xml()}" for h in hosts)
        text = f"""<network connections='1'>
  <name>{network.name}</name>
  <uuid>6e2b1a7c-9f0d-4c1e-8a53-0d3f6c2b9e41</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr1' stp='on' delay='0'/>
  <mac address='52:54:00:3a:7d:11'/>
  <ip family='ipv4' address='10.17.3.1' prefix='24'>
    <dhcp>
      <range start='10.17.3.2' end='10.17.3.254'/>{entries}
    </dhcp>
  </ip>
</network>
"""
        return Result(0, text, "")

    def _net_update(self, rest: list[str]) -> Result:
        name, verb, section, xml, *flags = rest
        assert (verb, section) == ("delete", "ip-dhcp-host"), rest
        network = self._network(name)
        if isinstance(network, Result):
            return network
        live, config = "--live" in flags, "--config" in flags
        assert live or config, "talos-fleet always names the definitions it changes"
        # A live change needs a running network (src/conf/virnetworkobj.c
        # virNetworkObjConfigChangeSetup); talos-fleet must not ask for one.
        assert network.active or not live, "--live on a stopped network"
        if name in self.before_update:
            self.before_update.remove(name)
            network.live.clear()
            network.config.clear()
        element = ET.fromstring(xml)
        wanted = Host(element.get("mac", ""), element.get("name", ""), element.get("ip", ""))
        # src/conf/virnetworkobj.c virNetworkObjUpdate: live first, then config; all or nothing.
        targets = [hosts for on, hosts in ((live, network.live), (config, network.config)) if on]
        found = [next((i for i, h in enumerate(hosts) if _matches_for_delete(wanted, h)), None) for hosts in targets]
        if None in found:
            # network_conf.c virNetworkDefUpdateIPDHCPHost; tools/virsh-network.c cmdNetworkUpdate
            # "Failed to update network %s" first.
            return _fail(
                f"Failed to update network {name}",
                f"Requested operation is not valid: couldn't locate a matching dhcp host entry in network '{name}'",
            )
        for hosts, index in zip(targets, found, strict=True):
            assert index is not None
            del hosts[index]
        # cmdNetworkUpdate: "Updated network %s %s" with what was affected.
        affected = (
            "persistent config and live state" if live and config else "live state" if live else "persistent config"
        )
        return Result(0, f"Updated network {name} {affected}\n", "")

    def _list(self, rest: list[str]) -> Result:
        assert rest == ["--all", "--name"], rest
        # tools/virsh-domain-monitor.c cmdList with --name: one name per line, then a blank line.
        return Result(0, "".join(f"{name}\n" for name in self.domains) + "\n", "")

    def _dumpxml(self, rest: list[str]) -> Result:
        name = rest[0]
        if name not in self.domains:
            # tools/virsh-util.c virshCommandOptDomainBy "failed to get domain '%s'".
            return _fail(f"failed to get domain '{name}'")
        # A domain's NICs as libvirt formats them (src/conf/domain_conf.c virDomainNetDefFormat).
        nics = "".join(
            f"""
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='talos-homelab'/>
      <model type='virtio'/>
    </interface>"""
            for mac in self.domains[name]
        )
        return Result(
            0, f"<domain type='kvm'>\n  <name>{name}</name>\n  <devices>{nics}\n  </devices>\n</domain>\n", ""
        )

    def provider_reserves(self, network: str, host: Host, *, modify_matches_ip: bool) -> str | None:
        """What libvirt answers when dmacvicar/terraform-provider-libvirt v0.8.1 reserves a new VM's address
        (libvirt/network_def.go updateOrAddHost, live and config at once): None if done, else
        libvirt's refusal. It first asks for a `modify`, which rewrites the first entry with the
        same MAC or name (older libvirt) or MAC, IP or name (libvirt master); if that finds none
        (VIR_ERR_OPERATION_INVALID), an `add`, which refuses any entry with the same MAC, name or
        IP (src/conf/network_conf.c virNetworkDefUpdateIPDHCPHost)."""
        net = self.networks[network]
        definitions = [net.live, net.config] if net.active else [net.config]

        def modifiable(h: Host) -> bool:
            by_ip = modify_matches_ip and host.same_ip(h)
            return host.same_mac(h) or host.name == h.name or by_ip

        found = [next((i for i, h in enumerate(hosts) if modifiable(h)), None) for hosts in definitions]
        if None not in found:
            for hosts, index in zip(definitions, found, strict=True):
                assert index is not None
                hosts[index] = host
            return None
        for hosts in definitions:
            for h in hosts:
                if host.collides(h):
                    return (
                        f"there is an existing dhcp host entry in network '{network}' that matches "
                        f"\"<host mac='{host.mac}' name='{host.name}' ip='{host.ip}'/>\""
                    )
        for hosts in definitions:
            hosts.append(host)
        return None
