"""The DHCP-entry step (`talos_fleet.dhcp_hosts`) against a fake virsh that keeps libvirt's rules
(tests/fakes/virsh.py, each rule cited): a removed node leaves nothing that breaks a later add."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talos_fleet import day2, dhcp_hosts
from talos_fleet.dhcp_hosts import Host, StepError, Virsh, clear_stale, release, target_from
from tests.fakes.virsh import FakeVirsh, Network

URI = "qemu:///system"
NET = "talos-homelab"
# Shaped as the provider writes them: MAC upper-case (terraform-provider-libvirt v0.8.1
# libvirt/domain.go setNetworkInterfaces), name the NIC's hostname, the reserved IP.
OLD_WORKER = Host("02:1A:2B:3C:4D:5E", "worker-3", "10.17.3.23")
CP1 = Host("02:AA:BB:CC:DD:01", "cp-1", "10.17.3.11")


def env(host: Host) -> dict[str, str]:
    """The step's environment as the component sets it (MAC in talos-fleet's lower-case form)."""
    return {
        "TALOS_FLEET_LIBVIRT_URI": URI,
        "TALOS_FLEET_NETWORK": NET,
        "TALOS_FLEET_HOSTNAME": host.name,
        "TALOS_FLEET_MAC": host.mac.lower(),
        "TALOS_FLEET_IP": host.ip,
    }


def host_with(*entries: Host, active: bool = True, domains: dict[str, list[str]] | None = None) -> FakeVirsh:
    network = Network(NET, active=active, live=list(entries) if active else [], config=list(entries))
    return FakeVirsh(URI, networks={NET: network}, domains=dict(domains or {}))


def step(fake: FakeVirsh, host: Host) -> Virsh:
    return Virsh(target_from(env(host)), fake)


def entries(fake: FakeVirsh) -> tuple[list[Host], list[Host]]:
    return fake.networks[NET].live, fake.networks[NET].config


# ---------------------------------------------------------------------------------------------
# The removal cycle the issue describes


@pytest.mark.parametrize("modify_matches_ip", [False, True], ids=["older-libvirt", "libvirt-master"])
def test_an_address_freed_by_a_removed_node_can_be_given_to_a_new_one(modify_matches_ip: bool) -> None:
    fake = host_with(CP1, OLD_WORKER, domains={"homelab-cp-1": [CP1.mac.lower()]})
    new = Host("02:77:66:55:44:33", "worker-9", OLD_WORKER.ip)

    # worker-3 leaves the stack: Pulumi deletes its VM, then its step releases the entry.
    release(step(fake, OLD_WORKER))
    assert entries(fake) == ([CP1], [CP1])
    # worker-9 arrives with worker-3's address: the step runs first, then the provider reserves.
    clear_stale(step(fake, new))
    assert fake.provider_reserves(NET, new, modify_matches_ip=modify_matches_ip) is None
    assert entries(fake) == ([CP1, new], [CP1, new])


def test_without_release_the_provider_refuses_the_reused_address_on_older_libvirt() -> None:
    """Why the step exists: what the provider meets when nothing removed the old entry."""
    fake = host_with(CP1, OLD_WORKER)
    refusal = fake.provider_reserves(NET, Host("02:77:66:55:44:33", "worker-9", OLD_WORKER.ip), modify_matches_ip=False)
    assert refusal is not None
    assert "there is an existing dhcp host entry" in refusal


def test_stale_entries_left_by_an_older_talos_fleet_are_cleared_before_the_vm_is_created() -> None:
    # Two leftovers: one has the new node's name (same hostname, once in another cluster), the
    # other its address. Libvirt master's modify would rewrite one and keep the other.
    renamed = Host("02:10:20:30:40:50", "worker-9", "10.17.3.40")
    fake = host_with(CP1, renamed, OLD_WORKER, domains={"homelab-cp-1": [CP1.mac.lower()]})
    new = Host("02:77:66:55:44:33", "worker-9", OLD_WORKER.ip)

    message = clear_stale(step(fake, new))

    assert entries(fake) == ([CP1], [CP1])
    assert "removed 2 stale DHCP entries" in message
    assert fake.provider_reserves(NET, new, modify_matches_ip=True) is None
    live, config = entries(fake)
    assert [h for h in live if new.collides(h)] == [new] == [h for h in config if new.collides(h)]


def test_an_entry_a_defined_vm_still_uses_is_never_cleared() -> None:
    """Adding a node with the address of a node removed in the same `up`: Pulumi creates before it
    deletes, so the old VM still holds the address. Stop, and say how to do it in two steps."""
    fake = host_with(CP1, OLD_WORKER, domains={"homelab-worker-3": [OLD_WORKER.mac.lower()]})
    new = Host("02:77:66:55:44:33", "worker-9", OLD_WORKER.ip)
    with pytest.raises(StepError) as error:
        clear_stale(step(fake, new))
    assert "homelab-worker-3" in str(error.value)
    assert "remove that node in one `make up`, add this one in the next" in str(error.value)
    assert entries(fake) == ([CP1, OLD_WORKER], [CP1, OLD_WORKER])
    assert not [c for c in fake.calls if c[3] == "net-update"]


def test_a_vm_that_already_has_its_entry_keeps_it() -> None:
    """Rolling this step out on an existing stack creates it for VMs whose entries exist."""
    fake = host_with(CP1, OLD_WORKER, domains={"homelab-cp-1": [CP1.mac.lower()]})
    assert clear_stale(step(fake, CP1)).startswith("removed 0 ")
    assert entries(fake) == ([CP1, OLD_WORKER], [CP1, OLD_WORKER])
    assert not [c for c in fake.calls if c[3] == "net-update"]


# ---------------------------------------------------------------------------------------------
# Release


def test_release_removes_only_this_vms_entry_from_the_running_network_and_its_config() -> None:
    fake = host_with(CP1, OLD_WORKER)
    release(step(fake, OLD_WORKER))
    assert entries(fake) == ([CP1], [CP1])
    (update,) = [c for c in fake.calls if c[3] == "net-update"]
    assert update[4:8] == [NET, "delete", "ip-dhcp-host", OLD_WORKER.xml()]
    assert {"--live", "--config"} <= set(update)


def test_release_on_a_stopped_network_changes_only_its_config() -> None:
    fake = host_with(CP1, OLD_WORKER, active=False)
    release(step(fake, OLD_WORKER))
    assert entries(fake) == ([], [CP1])


@pytest.mark.parametrize(
    "situation",
    ["entry-already-gone", "entry-gone-meanwhile", "network-gone"],
)
def test_release_succeeds_when_there_is_nothing_left_to_remove(situation: str) -> None:
    fake = host_with(CP1, *([OLD_WORKER] if situation == "entry-gone-meanwhile" else []))
    if situation == "entry-gone-meanwhile":
        fake.before_update.append(NET)
    if situation == "network-gone":
        fake.networks.clear()
    release(step(fake, OLD_WORKER))
    if situation != "network-gone":
        assert OLD_WORKER not in entries(fake)[1]


# ---------------------------------------------------------------------------------------------
# Errors: one message, never a traceback


def test_an_unreachable_hypervisor_stops_the_step_with_virshs_reason(capsys: pytest.CaptureFixture[str]) -> None:
    fake = host_with(OLD_WORKER)
    fake.reachable = False
    for name in dhcp_hosts.STEPS:
        assert dhcp_hosts.main([name], env(OLD_WORKER), fake) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith(f"talos-fleet dhcp {name}: virsh net-info {NET} on {URI} failed")
        assert "failed to connect to the hypervisor" in err[0]


def test_missing_environment_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    environment = env(OLD_WORKER)
    del environment["TALOS_FLEET_MAC"]
    assert dhcp_hosts.main(["release"], environment, host_with()) == 1
    assert "missing environment: TALOS_FLEET_MAC" in capsys.readouterr().err


def test_the_command_texts_are_constant_and_name_a_step() -> None:
    assert dhcp_hosts.command("release") == "python3 -m talos_fleet.dhcp_hosts release"
    with pytest.raises(KeyError):
        dhcp_hosts.command("nope")
    assert dhcp_hosts.main(["nope"], env(OLD_WORKER), host_with()) == 2


# ---------------------------------------------------------------------------------------------
# Property: after the step, the provider's reservation always succeeds and nothing else moved

OCTET = st.integers(min_value=2, max_value=9)


@st.composite
def leftovers(draw: st.DrawFn) -> list[Host]:
    """Entries with MACs, names and IPs drawn from small sets, so collisions are common."""
    count = draw(st.integers(min_value=0, max_value=6))
    found: list[Host] = []
    for _ in range(count):
        candidate = Host(f"02:00:00:00:00:0{draw(OCTET)}", f"node-{draw(OCTET)}", f"10.17.3.{draw(OCTET)}")
        if not any(candidate.collides(h) for h in found):  # libvirt never holds two such entries
            found.append(candidate)
    return found


@given(leftovers(), OCTET, OCTET, OCTET, st.booleans(), st.booleans())
def test_after_clear_stale_the_reservation_succeeds_and_unrelated_entries_stay(
    existing: list[Host], mac: int, name: int, ip: int, active: bool, modify_matches_ip: bool
) -> None:
    new = Host(f"02:00:00:00:00:0{mac}", f"node-{name}", f"10.17.3.{ip}")
    fake = host_with(*existing, active=active)
    clear_stale(step(fake, new))
    unrelated = [h for h in existing if not new.collides(h)]
    assert fake.provider_reserves(NET, new, modify_matches_ip=modify_matches_ip) is None
    live, config = entries(fake)
    assert [h for h in config if not new.collides(h)] == unrelated
    assert [h for h in config if new.collides(h)] == [new]
    if active:
        assert [h for h in live if new.collides(h)] == [new]


def test_make_destroy_releases_nothing_and_never_needs_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    """`make destroy` deletes the network with its entries: a gone host or virsh must not block it."""

    def unreachable(argv: object) -> dhcp_hosts.Result:
        raise AssertionError(f"virsh must not run during make destroy: {argv}")

    environment = {**env(OLD_WORKER), day2.DESTROY_ENV: "1"}
    assert dhcp_hosts.main(["release"], environment, unreachable) == 0
    assert "destroyed" in capsys.readouterr().out
