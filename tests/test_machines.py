"""Machine sources under mocks: libvirt hypervisors (VMs, disks, network, boot media) and matchbox
PXE, for every valid stack that uses them; plus the domain stylesheet applied with libxslt.

Expected values come from the spec (and the fake factory's URL scheme), never from the output
under test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from components.libvirt_hypervisor import GIB, domain_xslt
from talos_fleet import dhcp_hosts, patches, providers
from talos_fleet.loader import load_stack_file
from talos_fleet.spec import LibvirtSource, MetalSource
from tests.conftest import VALID_STACKS, stack_id
from tests.harness import (
    FAKE_CREDENTIAL_STRINGS,
    POOL_PATH,
    ROOT,
    Registration,
    Run,
    add_extension,
    bump_talos,
    diffed_inputs,
    drop_path,
    factory_urls,
    fake_schematic_id,
    is_secret,
    mutated_stack,
    plain,
    plaintext_strings,
    run_stack_file,
)

DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
NETWORK = "libvirt:index/network:Network"
GROUP = "matchbox:index/group:Group"
PROFILE = "matchbox:index/profile:Profile"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
SECRETS = "talos:machine/secrets:Secrets"
COMMAND = "command:local:Command"


def _sources(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["config"]["talos-fleet:sources"])


LIBVIRT_STACKS = [p for p in VALID_STACKS if any(s["kind"] == "libvirt" for s in _sources(p).values())]
PXE_STACKS = [p for p in VALID_STACKS if any("matchbox" in s for s in _sources(p).values())]
MANAGED_NETWORK_STACKS = [
    p for p in LIBVIRT_STACKS if any("managed" in s.get("network", {}) for s in _sources(p).values())
]


@pytest.fixture(params=LIBVIRT_STACKS, ids=stack_id)
def libvirt_stack(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture(params=MANAGED_NETWORK_STACKS, ids=stack_id)
def managed_stack(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture(params=PXE_STACKS, ids=stack_id)
def pxe_stack(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_the_shipped_stacks_cover_both_network_kinds_and_pxe() -> None:
    names = {p.name for p in LIBVIRT_STACKS}
    assert {"Pulumi.homelab.yaml", "Pulumi.multi-region.yaml"} <= names
    kinds = {next(iter(s["network"])) for p in LIBVIRT_STACKS for s in _sources(p).values() if s["kind"] == "libvirt"}
    assert kinds == {"managed", "bridge"}
    assert PXE_STACKS
    assert MANAGED_NETWORK_STACKS


def _by_name(run: Run, type_: str) -> dict[str, Registration]:
    return {r.name: r for r in run.of_type(type_)}


# ---------------------------------------------------------------------------------------------
# Providers


def test_every_libvirt_resource_uses_its_own_hypervisors_provider(libvirt_stack: Path) -> None:
    fleet = load_stack_file(libvirt_stack)
    run = run_stack_file(libvirt_stack)
    hypervisors = {s: src for s, src in fleet.sources.items() if isinstance(src, LibvirtSource)}
    providers = {p.name: p for p in run.of_type("pulumi:providers:libvirt")}
    assert sorted(providers) == sorted(f"{s}-libvirt" for s in hypervisors)
    components = {c.urn: c.name for c in run.of_type("talos-fleet:index:LibvirtHypervisor")}
    for name, provider in providers.items():
        assert provider.inputs["uri"] == hypervisors[name.removesuffix("-libvirt")].uri
    libvirt_resources = [r for r in run.registrations if r.type.startswith("libvirt:")]
    assert libvirt_resources
    for reg in libvirt_resources:
        own = providers[f"{components[reg.parent]}-libvirt"]
        assert reg.provider == f"{own.urn}::{own.name}-id", f"{reg.name} uses {reg.provider or 'the default provider'}"


# ---------------------------------------------------------------------------------------------
# VMs


def test_one_vm_per_node_with_its_size_disks_and_settings(libvirt_stack: Path) -> None:
    fleet = load_stack_file(libvirt_stack)
    run = run_stack_file(libvirt_stack)
    domains, volumes = _by_name(run, DOMAIN), _by_name(run, VOLUME)
    vm_nodes = [(c, h, n) for c, h, n in fleet.all_nodes() if isinstance(fleet.sources[n.source], LibvirtSource)]
    assert sorted(domains) == sorted(f"{c}-{h}" for c, h, _ in vm_nodes)
    nvram_files = set()
    for cname, host, node in vm_nodes:
        source = fleet.sources[node.source]
        assert isinstance(source, LibvirtSource)
        size, _ = fleet.vm(cname, host)
        domain = domains[f"{cname}-{host}"].inputs
        # Fixed name + ForceNew size: the old domain must go before its replacement is created.
        assert domains[f"{cname}-{host}"].delete_before_replace
        assert not volumes[f"{cname}-{host}-system"].delete_before_replace, "the disk is never replaced"
        assert domain["machine"] == "q35"
        assert domain["cpu"] == {"mode": "host-passthrough"}
        assert (domain["vcpu"], domain["memory"]) == (size.cpus, size.memory_mib)
        assert domain["firmware"] == source.firmware
        assert domain["nvram"]["template"] == source.nvram_template
        nvram_files.add(domain["nvram"]["file"])
        assert domain["autostart"] is True
        assert domain["running"] is True
        assert domain["consoles"] == [{"type": "pty", "targetPort": "0", "targetType": "serial"}]
        assert domain["bootDevices"] == [{"devs": ["hd", "cdrom"]}]
        # System disk first (vda), data disks next (vdb, ...), the boot ISO last.
        system = volumes[f"{cname}-{host}-system"].inputs
        data = [volumes[f"{cname}-{host}-{d.name}"].inputs for d in size.data_disks]
        assert (system["size"], system["format"], system["pool"]) == (size.disk_gib * GIB, "qcow2", source.pool)
        assert [d["size"] for d in data] == [d.size_gib * GIB for d in size.data_disks]
        disks = domain["disks"]
        assert [d.get("volumeId") for d in disks[:-1]] == [f"{POOL_PATH}/{v['name']}" for v in [system, *data]]
        assert disks[-1]["file"].endswith(".iso")
        assert domain["xml"]["xslt"] == domain_xslt(tuple(d.name for d in size.data_disks))
    assert len(nvram_files) == len(vm_nodes), "every VM needs its own NVRAM file"


def test_config_apply_waits_for_the_vm(libvirt_stack: Path) -> None:
    fleet = load_stack_file(libvirt_stack)
    run = run_stack_file(libvirt_stack)
    domains, applies = _by_name(run, DOMAIN), _by_name(run, APPLY)
    for cname, host, node in fleet.all_nodes():
        if isinstance(fleet.sources[node.source], LibvirtSource):
            apply = applies[f"{cname}-{host}"]
            # A data edge: the apply's node address is read through the domain.
            assert domains[f"{cname}-{host}"].urn in apply.property_dependencies["node"]
            assert plain(apply.inputs["node"]) == node.ip


def test_macs_are_derived_unique_and_reserved(libvirt_stack: Path) -> None:
    fleet = load_stack_file(libvirt_stack)
    run = run_stack_file(libvirt_stack)
    domains, networks = _by_name(run, DOMAIN), _by_name(run, NETWORK)
    seen: set[str] = set()
    for cname, host, node in fleet.all_nodes():
        source = fleet.sources[node.source]
        if not isinstance(source, LibvirtSource):
            continue
        (nic,) = domains[f"{cname}-{host}"].inputs["networkInterfaces"]
        assert nic["mac"] == fleet.mac(cname, host)
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", nic["mac"])
        assert int(nic["mac"][:2], 16) & 1 == 0
        assert nic["mac"] not in seen
        seen.add(nic["mac"])
        patch = "".join(patches.node_config_patches(fleet, cname, host, "installer"))
        # The node names its NIC by that MAC.
        assert f'mac(link.permanent_addr) == "{nic["mac"]}"' in patch
        if source.network.managed is not None:
            network = networks[f"{node.source}-network"].inputs
            assert network["addresses"] == [source.network.managed.cidr]
            assert nic["networkId"] == f"{node.source}-network-id"
            assert nic["addresses"] == [node.ip]
            assert nic["waitForLease"] is True
        else:
            assert nic["bridge"] == source.network.bridge
            assert "addresses" not in nic
            assert f"address: {node.ip}/" in patch  # static address in the node's own patch


def test_removing_a_node_changes_no_other_vm(libvirt_stack: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(libvirt_stack.read_text())
    clusters = document["config"]["talos-fleet:clusters"]
    sources = document["config"]["talos-fleet:sources"]
    cname, host = next(
        (c, h)
        for c, cl in clusters.items()
        for h, n in cl["nodes"].items()
        if n["role"] == "worker" and sources[n["source"]]["kind"] == "libvirt"
    )
    del clusters[cname]["nodes"][host]
    changed = tmp_path / libvirt_stack.name
    changed.write_text(yaml.safe_dump(document, sort_keys=False))
    before, after = run_stack_file(libvirt_stack).by_urn(), run_stack_file(changed).by_urn()
    removed = [r.name for urn, r in before.items() if urn not in after]
    assert removed
    assert all(name.startswith(f"{cname}-{host}") for name in removed), removed
    for urn, reg in after.items():
        if reg.type.startswith("libvirt:"):
            assert before[urn].inputs == reg.inputs, f"{reg.name} changed when {host} was removed"


# ---------------------------------------------------------------------------------------------
# What replaces a VM: the domain's ForceNew inputs


def _add_vm(document: dict[str, Any]) -> None:
    """Another worker VM next to the first cluster's VMs, at a free address."""
    clusters = document["config"]["talos-fleet:clusters"]
    sources = document["config"]["talos-fleet:sources"]
    cluster = next(
        c for c in clusters.values() if any(sources[n["source"]]["kind"] == "libvirt" for n in c["nodes"].values())
    )
    source = next(n["source"] for n in cluster["nodes"].values() if sources[n["source"]]["kind"] == "libvirt")
    used = {n["address"].split("/")[0] for c in clusters.values() for n in c["nodes"].values()}
    prefix = cluster["network"]["cidr"].rsplit(".", 1)[0]
    address = next(f"{prefix}.{i}" for i in range(200, 250) if f"{prefix}.{i}" not in used)
    cluster["nodes"]["added-vm"] = {"role": "worker", "source": source, "address": address}


def _bump_kubernetes(document: dict[str, Any]) -> None:
    document["config"]["talos-fleet:defaults"]["kubernetesVersion"] = "v1.36.4"


def _patch_every_cluster(document: dict[str, Any]) -> None:
    for cluster in document["config"]["talos-fleet:clusters"].values():
        cluster["patches"] = [*cluster.get("patches", []), {"machine": {"sysctls": {"vm.max_map_count": "262144"}}}]


def _force_new(reg: Registration) -> dict[str, Any]:
    inputs = diffed_inputs(reg)
    force_new = providers.RULES["Domain"].replace
    assert force_new is not None
    return {key: inputs.get(key) for key in force_new}


@pytest.mark.parametrize(
    "change",
    [_add_vm, bump_talos, add_extension, _bump_kubernetes, _patch_every_cluster],
    ids=["another-vm", "talos-version", "extension", "kubernetes-version", "cluster-patch"],
)
def test_no_force_new_domain_input_moves_unless_the_node_itself_does(
    libvirt_stack: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    """A ForceNew input (provider v0.8.1 schema) that read anything but the node's own facts would
    replace VMs on changes that are not about them."""
    before = _by_name(run_stack_file(libvirt_stack), DOMAIN)
    after = _by_name(run_stack_file(mutated_stack(libvirt_stack, tmp_path, change)), DOMAIN)
    assert before
    for name, domain in before.items():
        assert _force_new(after[name]) == _force_new(domain), f"{name} would be replaced"


def test_domain_descriptions_are_the_text_every_deployed_vm_carries(libvirt_stack: Path) -> None:
    """`description` is ForceNew: the text is a contract with VMs that already exist, not wording."""
    fleet = load_stack_file(libvirt_stack)
    domains = _by_name(run_stack_file(libvirt_stack), DOMAIN)
    for cname, host, node in fleet.all_nodes():
        if isinstance(fleet.sources[node.source], LibvirtSource):
            deployed = f"Talos {node.role} {host} of cluster {cname} (managed by talos-fleet)"
            assert domains[f"{cname}-{host}"].inputs["description"] == deployed


# ---------------------------------------------------------------------------------------------
# DHCP host entries on managed networks


def _managed_vms(path: Path) -> list[tuple[str, str, Any, LibvirtSource]]:
    fleet = load_stack_file(path)
    found = []
    for cname, host, node in fleet.all_nodes():
        source = fleet.sources[node.source]
        if isinstance(source, LibvirtSource) and source.network.managed is not None:
            found.append((cname, host, node, source))
    return found


def _dhcp_commands(run: Run) -> dict[str, Registration]:
    texts = {dhcp_hosts.command(step) for step in dhcp_hosts.STEPS}
    return {r.name: r for r in run.of_type(COMMAND) if r.inputs.get("create") in texts}


def test_every_vm_on_a_managed_network_and_only_those_has_its_dhcp_entry_step(libvirt_stack: Path) -> None:
    run = run_stack_file(libvirt_stack)
    entries, domains, networks = _dhcp_commands(run), _by_name(run, DOMAIN), _by_name(run, NETWORK)
    managed = _managed_vms(libvirt_stack)
    assert sorted(entries) == sorted(f"{c}-{h}-dhcp" for c, h, _, _ in managed)
    for cname, host, node, source in managed:
        entry = entries[f"{cname}-{host}-dhcp"]
        assert source.network.managed is not None
        assert plain(entry.inputs["environment"]) == {
            "TALOS_FLEET_LIBVIRT_URI": source.uri,
            "TALOS_FLEET_NETWORK": source.network.managed.name or f"talos-{node.source}",
            "TALOS_FLEET_HOSTNAME": host,
            "TALOS_FLEET_MAC": load_stack_file(libvirt_stack).mac(cname, host),
            "TALOS_FLEET_IP": node.ip,
        }
        assert entry.inputs["create"] == dhcp_hosts.command("clear-stale")
        assert entry.inputs["delete"] == dhcp_hosts.command("release")
        assert "update" not in entry.inputs  # pulumi-command runs create on update: clear-stale again
        # The step module is importable there, wherever the program runs from.
        assert (Path.cwd() / entry.inputs["dir"] / "talos_fleet" / "dhcp_hosts.py").resolve().is_file()
        assert (Path.cwd() / entry.inputs["dir"]).resolve() == ROOT
        # The network exists before the step and is deleted only after it (a data edge).
        assert networks[f"{node.source}-network"].urn in entry.property_dependencies["environment"]
        # The VM is created after the step and deleted before it: its entry is released once it is gone.
        assert entry.urn in domains[f"{cname}-{host}"].dependencies


def test_dhcp_entry_steps_hold_no_secret_and_ignore_other_nodes(managed_stack: Path, tmp_path: Path) -> None:
    before = _dhcp_commands(run_stack_file(managed_stack))
    after = _dhcp_commands(run_stack_file(mutated_stack(managed_stack, tmp_path, _add_vm)))
    assert before
    for name, entry in before.items():
        assert not any(is_secret(v) for v in entry.inputs.values()), name
        leaked = [s for s in plaintext_strings(entry.inputs) if any(f in s for f in FAKE_CREDENTIAL_STRINGS)]
        assert leaked == [], name
        assert after[name].inputs == entry.inputs, f"{name} would re-run when another node is added"
    assert len(after) == len(before) + 1


# ---------------------------------------------------------------------------------------------
# Boot media


def test_boot_media_is_fetched_once_per_hypervisor(libvirt_stack: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(libvirt_stack.read_text())
    clusters = document["config"]["talos-fleet:clusters"]
    # Ten more VMs on the first cluster's first VM source: still one download per hypervisor.
    _cname, cluster = next(iter(clusters.items()))
    sources = document["config"]["talos-fleet:sources"]
    vm_source = next(n["source"] for n in cluster["nodes"].values() if sources[n["source"]]["kind"] == "libvirt")
    prefix = cluster["network"]["cidr"].rsplit(".", 1)[0]
    for i in range(10):
        cluster["nodes"][f"more-{i}"] = {"role": "worker", "source": vm_source, "address": f"{prefix}.{230 + i}"}
    grown = tmp_path / libvirt_stack.name
    grown.write_text(yaml.safe_dump(document, sort_keys=False))
    fleet = load_stack_file(grown)
    run = run_stack_file(grown)
    components = {c.urn: c.name for c in run.of_type("talos-fleet:index:LibvirtHypervisor")}
    isos: dict[str, list[Registration]] = {}
    for volume in run.of_type(VOLUME):
        if volume.inputs["name"].endswith(".iso"):
            isos.setdefault(components[volume.parent], []).append(volume)
    for sname, source in fleet.sources.items():
        if not isinstance(source, LibvirtSource):
            continue
        images = {
            (fleet.talos_version(fleet.clusters[c]), patches.schematic_yaml(fleet.image(fleet.clusters[c])))
            for c, _, n in fleet.all_nodes()
            if n.source == sname
        }
        assert len(isos[sname]) == len(images), f"{sname}: {[v.name for v in isos[sname]]}"
        expected = {
            factory_urls(fake_schematic_id(schematic), version, "amd64")["iso"] for version, schematic in images
        }
        assert {plain(v.inputs["source"]) for v in isos[sname]} == expected
        iso_paths = {f"{POOL_PATH}/{v.inputs['name']}" for v in isos[sname]}
        for domain in run.of_type(DOMAIN):
            if components[domain.parent] == sname:
                assert domain.inputs["disks"][-1]["file"] in iso_paths


@pytest.mark.parametrize("change", [bump_talos, add_extension], ids=["talos-version", "extension"])
def test_a_talos_or_schematic_change_replaces_no_vm_disk_or_secret(
    libvirt_stack: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    changed = mutated_stack(libvirt_stack, tmp_path, change)
    before, after = run_stack_file(libvirt_stack), run_stack_file(changed)
    old, new = before.by_urn(), after.by_urn()
    kept = [r for r in before.registrations if r.type in (DOMAIN, NETWORK, SECRETS) or _is_node_disk(r)]
    assert kept
    for reg in kept:
        assert reg.urn in new, f"{reg.name} would be deleted"
        assert diffed_inputs(new[reg.urn]) == diffed_inputs(reg), f"{reg.name} would change"
    # Only boot media come and go: a new ISO (or PXE profile) for machines installed from now on.
    appeared = [r for urn, r in new.items() if urn not in old]
    assert appeared
    assert all(_is_boot_media(r) for r in appeared), [r.name for r in appeared]


def _is_boot_media(reg: Registration) -> bool:
    return reg.type == PROFILE or (reg.type == VOLUME and reg.inputs["name"].endswith(".iso"))


def _is_node_disk(reg: Registration) -> bool:
    return reg.type == VOLUME and not reg.inputs["name"].endswith(".iso")


def test_ignored_properties_exist_on_the_resource(libvirt_stack: Path) -> None:
    """An ignore_changes path that names nothing would silently protect nothing."""
    run = run_stack_file(libvirt_stack)
    for reg in run.registrations:
        if reg.type.startswith("libvirt:"):
            for path in reg.ignore_changes:
                assert drop_path(reg.inputs, path.split(".")) != reg.inputs, f"{reg.name}: {path} matches nothing"


# ---------------------------------------------------------------------------------------------
# The domain stylesheet, applied as the provider applies it (libxslt)

# What terraform-provider-libvirt 0.8.1 generates for such a domain, before the stylesheet.
PROVIDER_DOMAIN_XML = """<domain type="kvm">
  <name>lab-worker-1</name>
  <devices>
    <disk type="volume" device="disk"><source pool="default" volume="lab-worker-1.qcow2"/>
      <target dev="vda" bus="virtio"/></disk>
    <disk type="volume" device="disk"><source pool="default" volume="lab-worker-1-ceph.qcow2"/>
      <target dev="vdb" bus="virtio"/></disk>
    <disk type="volume" device="disk"><source pool="default" volume="lab-worker-1-scratch.qcow2"/>
      <target dev="vdc" bus="virtio"/></disk>
    <disk type="file" device="cdrom"><driver name="qemu" type="raw"/>
      <source file="/var/lib/libvirt/images/talos.iso"/><target dev="hda" bus="ide"/></disk>
    <interface type="network"><mac address="02:00:00:00:00:01"/><source network="talos"/>
      <model type="virtio"/></interface>
    <console type="pty"><target type="serial" port="0"/></console>
    {channel}
    <rng model="virtio"><backend model="random">/dev/urandom</backend></rng>
  </devices>
</domain>"""
AGENT_CHANNEL = '<channel type="unix"><target type="virtio" name="org.qemu.guest_agent.0"/></channel>'


def _attr(element: Any, path: str, name: str) -> str | None:
    found = element.find(path)
    assert found is not None, f"no {path}"
    value: str | None = found.get(name)
    return value


@pytest.mark.parametrize("provider_channel", [AGENT_CHANNEL, ""], ids=["provider-channel", "no-channel"])
def test_domain_stylesheet_fixes_what_the_provider_cannot_say(provider_channel: str) -> None:
    transform = etree.XSLT(etree.fromstring(domain_xslt(("ceph", "scratch")).encode()))
    domain = transform(etree.fromstring(PROVIDER_DOMAIN_XML.replace("{channel}", provider_channel).encode()))
    devices = domain.getroot().find("devices")
    assert devices is not None
    (cdrom,) = devices.findall("disk[@device='cdrom']")
    assert _attr(cdrom, "target", "bus") == "sata"  # q35 has no IDE
    assert _attr(cdrom, "source", "startupPolicy") == "optional"
    assert _attr(cdrom, "source", "file") == "/var/lib/libvirt/images/talos.iso"
    serials = {_attr(d, "target", "dev"): d.findtext("serial") for d in devices.findall("disk[@device='disk']")}
    assert serials == {"vda": None, "vdb": "ceph", "vdc": "scratch"}
    channels = devices.findall("channel/target[@name='org.qemu.guest_agent.0']")
    assert len(channels) == 1
    assert [b.get("model") for b in devices.findall("memballoon")] == ["none"]
    # Everything else passes through untouched.
    assert _attr(devices, "interface/mac", "address") == "02:00:00:00:00:01"
    assert _attr(devices, "console/target", "type") == "serial"


# ---------------------------------------------------------------------------------------------
# PXE through matchbox


def test_matchbox_serves_each_metal_node_by_its_mac(pxe_stack: Path) -> None:
    fleet = load_stack_file(pxe_stack)
    run = run_stack_file(pxe_stack)
    groups, profiles = _by_name(run, GROUP), run.of_type(PROFILE)
    pxe_nodes = [(c, h, n) for c, h, n in fleet.all_nodes() if _served_by_matchbox(fleet.sources[n.source])]
    assert sorted(groups) == sorted(f"{c}-{h}-pxe" for c, h, _ in pxe_nodes)
    profile_names = {p.inputs["name"]: p for p in profiles}
    applies = _by_name(run, APPLY)
    for cname, host, node in pxe_nodes:
        group = groups[f"{cname}-{host}-pxe"]
        assert group.inputs["selector"] == {"mac": node.mac}
        profile = profile_names[plain(group.inputs["profile"])]
        cluster = fleet.clusters[cname]
        arch = fleet.sources[node.source].architecture
        urls = factory_urls(
            fake_schematic_id(patches.schematic_yaml(fleet.image(cluster))), fleet.talos_version(cluster), arch
        )
        assert plain(profile.inputs["kernel"]) == urls["kernel"]
        assert plain(profile.inputs["initrds"]) == [urls["initramfs"]]
        args = plain(profile.inputs["args"])
        assert args[0] == f"initrd=initramfs-{arch}.xz"
        assert "talos.platform=metal" in args
        assert "slab_nomerge" in args
        assert "pti=on" in args
        # The schematic's own kernel arguments come last, so they win over Talos' defaults.
        extra = list(fleet.image(cluster).kernel_args)
        assert extra
        assert args[-len(extra) :] == extra
        # The apply waits for the machine's PXE entry.
        assert group.urn in applies[f"{cname}-{host}"].property_dependencies["node"]
    # One profile per boot medium, shared by all machines that boot it.
    assert len(profiles) == len({plain(g.inputs["profile"]) for g in groups.values()})


def test_matchbox_entries_are_deleted_before_they_are_replaced(pxe_stack: Path) -> None:
    """matchbox creates by upserting the name and deletes by name (poseidon/terraform-provider-matchbox
    v0.5.4: matchbox/resource_group.go, resource_profile.go), so a create-then-delete replacement
    (a MAC, Talos version or schematic change) would leave the machine with no PXE entry."""
    run = run_stack_file(pxe_stack)
    entries = [*run.of_type(GROUP), *run.of_type(PROFILE)]
    assert entries
    for entry in entries:
        assert entry.delete_before_replace, entry.name


def _served_by_matchbox(source: MetalSource | LibvirtSource) -> bool:
    return isinstance(source, MetalSource) and source.matchbox is not None


def test_matchbox_credentials_are_secret_and_used_by_every_matchbox_resource(pxe_stack: Path) -> None:
    fleet = load_stack_file(pxe_stack)
    run = run_stack_file(pxe_stack)
    providers = {p.name: p for p in run.of_type("pulumi:providers:matchbox")}
    for sname, source in fleet.sources.items():
        if isinstance(source, MetalSource) and source.matchbox is not None:
            provider = providers[f"{sname}-matchbox"]
            assert provider.inputs["endpoint"] == source.matchbox.endpoint
            for key in ("ca", "clientCert", "clientKey"):
                assert is_secret(provider.inputs[key]), f"{key} reaches the provider in plaintext"
    references = {f"{p.urn}::{p.name}-id" for p in providers.values()}
    for reg in run.registrations:
        if reg.type.startswith("matchbox:"):
            assert reg.provider in references


def test_the_macs_export_lists_vms_and_given_macs_only(valid_stack: Path) -> None:
    fleet = load_stack_file(valid_stack)
    exported = run_stack_file(valid_stack).export("macs")
    for cname, host, node in fleet.all_nodes():
        if isinstance(fleet.sources[node.source], LibvirtSource) or node.mac:
            assert exported[cname][host] == fleet.mac(cname, host)
        else:
            assert host not in exported[cname]  # a derived MAC would be no machine's
