"""Done-when of issue #12: no single-field edit that changes the program's graph is planned as
"No changes" or leaves an affected node unchanged, and no loss of data goes unwarned.

The edits are generated from the stack-file schema (`make schema`) walking each stack and good
fixture: every scalar field present is changed to another value of its kind, every optional
field absent is set, list entries are added and removed, map entries removed; only edits that
validation accepts are kept. Deterministic and bounded: one edit per field pattern (names of
clusters, nodes, sources, disks and labels stand for all). MAX_EDITS is a safety bound above
what any stack has (48 today); a test fails when a stack reaches it, so no edit is silently left out.

Each edit runs the real program under mocks before and after: the graph changes where a
registered resource appears, disappears, or has other inputs (ignore_changes left out) or
another provider. The affected nodes are the desired state's owners of those resources.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_fleet import naming, report
from talos_fleet.desired import KINDS, Resource, desired_state
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.providers import RULES
from talos_fleet.review import review
from talos_fleet.schema import stack_file_schema
from talos_fleet.snapshot import Snapshot, snapshot
from talos_fleet.spec import Fleet
from tests.conftest import VALID_STACKS, stack_id
from tests.harness import Registration, diffed_inputs, run_stack_file

MAX_EDITS = 100
KIND_OF = {token: kind for kind, token in KINDS.items()}
VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")

Edit = tuple[str, Callable[[dict[str, Any]], None]]


# ---------------------------------------------------------------------------------------------
# Edits from the schema


@cache
def _schema() -> dict[str, Any]:
    return stack_file_schema()


def _resolve(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """The object schema that applies to `value`: $ref followed, null and unions resolved."""
    defs = _schema()["$defs"]
    while True:
        if "$ref" in schema:
            schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
            continue
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            live = [o for o in options if o.get("type") != "null"]
            if isinstance(value, dict) and "kind" in value:
                named = [o for o in live if str(value["kind"]).lower() in str(o.get("$ref", "")).lower()]
                live = named or live
            schema = {**live[0], **{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", "discriminator")}}
            continue
        return schema


def _scalar_candidates(value: Any, schema: dict[str, Any]) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2, value - 1]
    if not isinstance(value, str):
        return []
    out: list[Any] = [e for e in schema.get("enum", []) if e != value]
    if (m := VERSION.match(value)) is not None:
        major, minor, patch = (int(g) for g in m.groups())
        out += [f"v{major}.{minor}.{patch + 1}", f"v{major}.{minor}.{patch - 1}"]
    elif re.fullmatch(r"v\d+\.\d+", value):
        head, tail = value[1:].split(".")
        out += [f"v{head}.{int(tail) - 1}"]
    elif MAC.match(value):
        last = int(value[-2:], 16)
        out += [f"{value[:-2]}{(last + 1) % 256:02x}"]
    else:
        try:
            address = ipaddress.ip_address(value)
            out += [str(address + i) for i in (1, 2, 3, 40)]
        except ValueError:
            pass
    if value.startswith("/dev/"):
        out += [value[:-1] + chr(ord(value[-1]) + 1)]
    elif ":" in value and value.rsplit(":", 1)[1].isdigit():
        host, port = value.rsplit(":", 1)
        out += [f"{host}:{int(port) + 1}"]
    elif value.startswith("qemu"):
        out += ["qemu+ssh://root@kvm-2.lan/system"]
    out += [value + "x", value + "-2"]
    return out


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target = document
        for step in path[:-1]:
            if isinstance(target, dict) and step not in target:
                target[step] = {}
            target = target[step]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = copy.deepcopy(value)

    return change


_DELETE = object()


def _pattern(path: tuple[Any, ...]) -> str:
    """The field, whatever the names (clusters, nodes, sources, disks, labels) and list indices."""
    out, skip = [], False
    for step in path:
        if skip or isinstance(step, int):
            out.append("*")
            skip = False
            continue
        out.append(str(step))
        skip = step in ("talos-fleet:clusters", "nodes", "talos-fleet:sources", "labels")
    return ".".join(out)


def _walk(value: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, new value or _DELETE) for every single-field edit under `value`."""
    schema = _resolve(schema, value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        pattern = next(iter(schema.get("patternProperties", {}).values()), None)
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = properties.get(k) or pattern or (extra if isinstance(extra, dict) else {})
            if k == "secure" or k == "talos-fleet:secrets":
                continue
            yield from _walk(v, sub, (*path, k))
            if pattern is not None and len(value) > 1:
                yield (*path, k), _DELETE
        for k, sub in properties.items():
            if k in value:
                continue
            resolved = _resolve(sub, None)
            default = sub.get("default", resolved.get("default"))
            if resolved.get("type") == "object" or "properties" in resolved:
                yield from _walk({}, resolved, (*path, k))
            elif default is not None and not isinstance(default, (dict, list)):
                for candidate in _scalar_candidates(default, resolved)[:2]:
                    yield (*path, k), candidate
        if pattern is not None and path and path[-1] == "labels":
            yield (*path, "example.com/added"), "yes"
    elif isinstance(value, list):
        items = schema.get("items", {})
        for i, v in enumerate(value):
            yield from _walk(v, items, (*path, i))
        if value:
            yield path, value[:-1]
            if not isinstance(value[-1], (dict, list)):
                for candidate in _scalar_candidates(value[-1], _resolve(items, value[-1]))[:3]:
                    yield path, [*value, candidate]
    else:
        for candidate in _scalar_candidates(value, schema):
            yield path, candidate


def single_field_edits(stack: Path, directory: Path) -> list[tuple[str, Path, Fleet, Snapshot]]:
    """Edited copies of `stack` that validate, one per field pattern, named by their path, with
    their fleet and snapshot."""
    document = yaml.safe_load(stack.read_text())
    base = snapshot(load_stack_file(stack)).model_dump_json()
    seen: set[str] = set()
    edits: list[tuple[str, Path, Fleet, Snapshot]] = []
    for path, new in _walk(document, _schema(), ()):
        pattern = _pattern(path) + (" removed" if new is _DELETE else "")
        if pattern in seen or len(edits) >= MAX_EDITS:
            continue
        changed = copy.deepcopy(document)
        _set(path, new)(changed)
        target = directory / f"{len(edits)}" / stack.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(changed, sort_keys=False))
        try:
            fleet = load_stack_file(target)
        except SpecError:
            continue
        head = snapshot(fleet)
        if head.model_dump_json() == base:
            continue
        seen.add(pattern)
        label = ".".join(str(p) for p in path) + (" removed" if new is _DELETE else f" = {new!r}")
        edits.append((label, target, fleet, head))
    return edits


# ---------------------------------------------------------------------------------------------
# The graph under mocks


Graph = dict[str, Registration]


def _graph(stack: Path) -> Graph:
    # The root stack is registered by the mock runtime itself, once per process.
    return {r.urn: r for r in run_stack_file(stack).registrations if r.type != "pulumi:pulumi:Stack"}


# A rollout's per-node variables (talos_fleet.plan upgrade_targets, config_target).
ROLLOUT_VARIABLES = ("TALOS_FLEET_TARGET_", "TALOS_FLEET_CONFIG_")


def _touched(record: Resource, before: Registration | None, after: Registration | None) -> tuple[str, ...]:
    """The nodes a changed resource affects: its owners; for a cluster's rollout, which belongs
    to every node, only the nodes whose own variable changed: a change of its shared inputs (the
    policy, the versions) walks the nodes only through what the nodes' actions already say."""
    rollouts = (naming.upgrade_rollout(record.cluster or ""), naming.config_rollout(record.cluster or ""))
    if record.kind != "Command" or record.name not in rollouts or before is None or after is None:
        return record.nodes

    def own(reg: Registration, host: str) -> list[Any]:
        env = reg.inputs.get("environment") or {}
        return [env.get(prefix + host) for prefix in ROLLOUT_VARIABLES]

    return tuple(ref for ref in record.nodes if own(before, ref.split("/", 1)[1]) != own(after, ref.split("/", 1)[1]))


def _provider(reg: Registration) -> str:
    return reg.provider.rsplit("::", 1)[0]


def _provider_moved(before: Registration, after: Registration, old: Graph, new: Graph) -> bool:
    """Another provider with another configuration (pulumi/pulumi v3.259.0
    pkg/resource/deploy/step_generator.go providerChanged: a provider renamed with the same
    configuration keeps its resources)."""
    if _provider(before) == _provider(after):
        return False
    was, now = old.get(_provider(before)), new.get(_provider(after))
    return was is None or now is None or was.inputs != now.inputs


def _replaced(kind: str, before: Registration, after: Registration) -> bool:
    """By the provider's rule; another provider (configuration) replaces nothing (FACTS.md)."""
    rule = RULES.get(kind)
    if rule is None:
        return False
    old, new = diffed_inputs(before), diffed_inputs(after)
    fields = [k for k in {*old, *new} if old.get(k) != new.get(k)]
    replace = rule.replace
    return bool(fields) and (replace is None or any(f.split(".")[0] in replace for f in fields))


def test_the_edits_cover_every_part_of_the_stack_files(tmp_path: Path) -> None:
    """The generator reaches machine sources, the upgrade policy, VMs and nodes."""
    patterns = {
        _pattern(tuple(label.split(" ")[0].split(".")))
        for stack in VALID_STACKS
        for label, *_ in single_field_edits(stack, tmp_path / stack.stem)
    }
    wanted = [
        "config.talos-fleet:sources.*.pool",
        "config.talos-fleet:sources.*.firmware",
        "config.talos-fleet:sources.*.uri",
        "config.talos-fleet:sources.*.network.bridge",
        "config.talos-fleet:sources.*.network.managed.name",
        "config.talos-fleet:sources.*.network.managed.mode",
        "config.talos-fleet:sources.*.network.managed.dns",
        "config.talos-fleet:sources.*.matchbox.endpoint",
        "config.talos-fleet:sources.*.architecture",
        "config.talos-fleet:defaults.upgrade.drainTimeoutMinutes",
        "config.talos-fleet:defaults.upgrade.allowDowngrade",
        "config.talos-fleet:defaults.upgrade.workerBatchSize",
        "config.talos-fleet:defaults.upgrade.healthTimeoutMinutes",
        "config.talos-fleet:clusters.*.nodes.*.address",
    ]
    missing = [w for w in wanted if not any(p.startswith(w) for p in patterns)]
    assert not missing, missing


@pytest.mark.parametrize("stack", VALID_STACKS, ids=stack_id)
def test_no_single_field_edit_that_changes_the_graph_is_missed(stack: Path, tmp_path: Path) -> None:
    base_fleet = load_stack_file(stack)
    base_graph = _graph(stack)
    base_snapshot = snapshot(base_fleet)
    base_owners = {(r.type, r.name): r for r in desired_state(base_fleet).resources}
    failures: list[str] = []
    edits = single_field_edits(stack, tmp_path)
    assert len(edits) < MAX_EDITS, "raise MAX_EDITS: some single-field edits were left out"
    for label, edited, fleet, head in edits:
        head_graph = _graph(edited)
        owners = {**base_owners, **{(r.type, r.name): r for r in desired_state(fleet).resources}}
        affected: set[str] = set()
        losses: list[str] = []
        for urn in {*base_graph, *head_graph}:
            before, after = base_graph.get(urn), head_graph.get(urn)
            reg = after or before
            assert reg is not None
            kind = KIND_OF.get(reg.type, "")
            if before is not None and after is not None:
                if diffed_inputs(before) == diffed_inputs(after) and not _provider_moved(
                    before, after, base_graph, head_graph
                ):
                    continue
                gone = _replaced(kind, before, after)
            else:
                gone = after is None
            record = owners.get((reg.type, reg.name))
            affected.update(_touched(record, before, after) if record else ())
            holds_data = kind in ("Volume", "Secrets", "Group") and "source" not in reg.inputs
            if gone and holds_data:
                losses.append(reg.name)
        if not affected and not losses and {*base_graph} == {*head_graph}:
            graph_same = all(
                diffed_inputs(base_graph[u]) == diffed_inputs(head_graph[u])
                and not _provider_moved(base_graph[u], head_graph[u], base_graph, head_graph)
                for u in base_graph
            )
            if graph_same:
                continue
        result = review("edit", base_snapshot, head)
        text = report.markdown(result)
        if "**No changes.**" in text:
            failures.append(f"{label}: the graph changes but the plan says No changes")
        kinds = {f"{c.name}/{n.hostname}": n.kinds for c in result.clusters for n in c.nodes}
        for node in sorted(affected):
            if kinds.get(node, ("unchanged",)) == ("unchanged",):
                failures.append(f"{label}: {node} is affected but planned unchanged")
        for name in losses:
            if not any(name in w for w in result.warnings):
                failures.append(f"{label}: {name} is deleted or replaced without a warning")
    assert not failures, "\n".join(failures)
