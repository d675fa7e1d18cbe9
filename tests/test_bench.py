"""`make bench`'s floor (bench/floor.py) is a floor of the program itself: it registers the same
resources, with the same input names, options and secrecy, and makes the same provider calls as
the real program under the same mocks, with no dependency edge. Otherwise "x floor" would compare
the program with some other program. Timing is not tested here: `make bench` prints it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from bench.__main__ import fleet_config
from bench.floor import run_floor
from tests.conftest import VALID_STACKS, stack_id
from tests.harness import SECRET_MARK, Registration, Run, engine_config_of, run_program

STACK = "pulumi:pulumi:Stack"
# A generated fleet of each kind `make bench` measures, small; and every valid stack file (the
# good fixtures bring what generated fleets lack: PXE on matchbox, stack secrets).
GENERATED = {
    "metal-10": fleet_config(10, 1),
    "metal-2-clusters": fleet_config(12, 2),
    "vms-2-hypervisors": fleet_config(12, 2, vms=True),
}


def configs() -> list[Any]:
    generated = [pytest.param(config, [], id=name) for name, config in GENERATED.items()]
    stacks = [pytest.param(*engine_config_of(path), id=stack_id(path)) for path in VALID_STACKS]
    return generated + stacks


def registered(run: Run) -> dict[tuple[str, str], Registration]:
    """By (type, name). The mock runtime registers the stack itself only while it has no root
    resource, so once per process (pulumi/pulumi v3.259.0:sdk/python/lib/pulumi/runtime/mocks.py,
    set_mocks)."""
    found: dict[tuple[str, str], Registration] = {}
    for reg in run.registrations:
        if reg.type != STACK:
            assert (reg.type, reg.name) not in found, f"{reg.type} {reg.name} registered twice"
            found[(reg.type, reg.name)] = reg
    return found


def secret_inputs(reg: Registration) -> set[str]:
    """The inputs that carry a secret, whole or in part, as sent."""
    return {k for k, v in reg.wire.items() if SECRET_MARK in json.dumps(v)}


def calls(run: Run) -> Counter[tuple[str, tuple[str, ...]]]:
    return Counter((i.token, tuple(sorted(i.args))) for i in run.invokes)


def parent_type(reg: Registration) -> str:
    """The type its parent's URN names: the mock monitor's URNs are
    urn:pulumi:STACK::PROJECT::TYPE::NAME, TYPE prefixed with `PARENTTYPE$` below a parent
    (pulumi/pulumi v3.259.0:sdk/python/lib/pulumi/runtime/mocks.py, MockMonitor.make_urn)."""
    return reg.parent.split("::")[2] if reg.parent else ""


@pytest.mark.parametrize(("config", "secret_keys"), configs())
def test_floor_registers_what_the_program_registers(config: dict[str, str], secret_keys: list[str]) -> None:
    program_run, floor_run = run_program(config, secret_keys), run_floor(config, secret_keys)
    program, floor = registered(program_run), registered(floor_run)

    assert sorted(floor) == sorted(program)
    for what, reg in program.items():
        twin = floor[what]
        assert sorted(twin.inputs) == sorted(reg.inputs), what
        assert secret_inputs(twin) == secret_inputs(reg), what
        assert (twin.protect, twin.delete_before_replace, twin.ignore_changes, twin.aliases) == (
            reg.protect,
            reg.delete_before_replace,
            reg.ignore_changes,
            reg.aliases,
        ), what
        # The providers' SDK classes add secret outputs of their own; the floor's generic
        # resources carry the ones the program asks for.
        assert set(twin.additional_secret_outputs) <= set(reg.additional_secret_outputs), what
    assert calls(floor_run) == calls(program_run)


def edges(run: Run) -> list[str]:
    """Every dependency edge the mocks received: parents other than the stack, dependencies,
    provider references."""
    found: list[str] = []
    for reg in run.registrations:
        if reg.type != STACK and parent_type(reg) != STACK:
            found.append(f"{reg.name}: parent {reg.parent}")
        found += [f"{reg.name}: depends on {urn}" for urn in reg.dependencies]
        found += [f"{reg.name}.{k}: reads {urn}" for k, urns in reg.property_dependencies.items() for urn in urns]
        found += [f"{reg.name}: provider {reg.provider}"] if reg.provider else []
    found += [f"{i.token}: provider {i.provider}" for i in run.invokes if i.provider]
    return found


@pytest.mark.parametrize(("config", "secret_keys"), configs())
def test_floor_has_no_dependency_edge(config: dict[str, str], secret_keys: list[str]) -> None:
    assert edges(run_floor(config, secret_keys)) == []


@pytest.mark.parametrize(("config", "secret_keys"), configs())
def test_the_program_has_edges_of_every_kind(config: dict[str, str], secret_keys: list[str]) -> None:
    """`edges` finds each kind it looks for, so an edge in the floor could not go unnoticed."""
    found = " ".join(edges(run_program(config, secret_keys)))
    assert all(f": {kind} " in found for kind in ("parent", "depends on", "reads", "provider"))
