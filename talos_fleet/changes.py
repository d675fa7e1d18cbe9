"""Resource by resource: what `pulumi up` does to get from one desired state to the next.

Pure. Inputs are compared as the engine compares them (ignore_changes left out); each changed
input is judged by the provider's rule (talos_fleet.providers). A placeholder that reads a
resource which is replaced (an id, or a value read through it) is unknown until the replacement
exists, so the field counts as changed; so does a secret output of a provider call whose inputs
changed. Repeated until nothing more changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from talos_fleet import providers
from talos_fleet.desired import TOKEN, Resource

Change = Literal["create", "delete", "replace", "update"]

# What holds data: a deleted or replaced one is a loss (disks, the cluster's PKI, a machine's PXE entry).
DATA_KINDS = ("Volume", "Secrets", "Group")


class ResourceChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: str
    name: str
    change: Change
    fields: tuple[str, ...] = ()
    """The inputs that differ (paths), including those that become unknown."""
    applied: bool = True
    """For an update: whether the provider applies any of the changed fields (else it only
    records them)."""
    nodes: tuple[str, ...] = ()
    cluster: str | None = None
    source: str | None = None
    rule: str = ""

    moved: bool = False
    """Reached through another provider with another configuration (another host or server),
    and not created there (see diff)."""
    holds_data: bool = False
    """A node's disk, the cluster's Talos secrets or a machine's PXE entry (not a boot ISO: that
    is a download of the Image Factory's)."""

    @property
    def loses_data(self) -> bool:
        return self.holds_data and self.change in ("delete", "replace")

    def describe(self) -> str:
        what = f"{self.kind} {self.name}"
        if self.change == "update":
            effect = "updated" if self.applied else "updated in the state only (the provider applies none of it)"
            return f"{what}: {effect} ({', '.join(self.fields)})"
        if self.change == "replace":
            return f"{what}: replaced ({', '.join(self.fields)})"
        return f"{what}: {'created' if self.change == 'create' else 'deleted'}"


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value:
            yield path, {}
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        if not value:
            yield path, []
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def _ignored(path: str, ignore: Iterable[str]) -> bool:
    return any(path == i or path.startswith(i + ".") or path.startswith(i + "[") for i in ignore)


def _inputs(resource: Resource) -> dict[str, Any]:
    return {p: v for p, v in _leaves(resource.inputs) if not _ignored(p, resource.ignore_changes)}


def _reads(value: Any, ids: bool = True, values: bool = True) -> set[str]:
    """Keys of the resources (or provider calls) a value is read from: through `ids` (ids and
    outputs: new when their resource is replaced or their call's inputs change) or as `values`
    known from the spec (`<via:...>`: the same value once the replacement exists; only Pulumi's
    replacement of dependents, which diffs them as unknown, sees a change)."""
    found: set[str] = set()
    if not isinstance(value, str):
        return found
    for match in TOKEN.finditer(value):
        kind, body = match.group(1), match.group(2)
        if kind == "id" and ids:
            found.add(body)
        elif kind == "via" and values:
            found.add(body.split("|", 1)[0])
        elif kind == "secret" and "." in body and ids:
            found.add(body.rsplit(".", 1)[0])
    return found


def _judge(resource: Resource, fields: list[str]) -> tuple[Change, bool]:
    """Replace or update, and whether the update applies anything, by the provider's rule."""
    fields = [f for f in fields if f != "provider"]  # another provider replaces nothing (diff)
    if not fields:
        return "update", False
    rule = providers.rule(resource.kind)
    if rule is None:
        return "update", True
    if rule.replace is None or any(providers.matches(f, r) for f in fields for r in rule.replace):
        return "replace", True
    applied = rule.applies is None or any(providers.matches(f, a) for f in fields for a in rule.applies)
    return "update", applied


def diff(base: Iterable[Resource], head: Iterable[Resource]) -> list[ResourceChange]:
    """Every resource (and provider call, as `update`) that changes, in the head's order, then
    the deletions in the base's order."""
    before = {r.key: r for r in base}
    after = {r.key: r for r in head}
    changed: dict[str, list[str]] = {}
    for k, new in after.items():
        old = before.get(k)
        if old is None:
            continue
        a, b = _inputs(old), _inputs(new)
        fields = [p for p in dict.fromkeys([*b, *a]) if a.get(p, _MISSING) != b.get(p, _MISSING)]
        if old.provider != new.provider and _provider_config(before, old) != _provider_config(after, new):
            # Another provider instance with another configuration (a VM moved to another
            # hypervisor keeps its name, so its URN): the engine replaces the resource only when
            # the new provider's DiffConfig reports a replacement (pulumi/pulumi
            # v3.259.0:pkg/resource/deploy/step_generator.go, providerChanged), and a provider
            # configuration change replaces nothing (../shared/talos/FACTS.md, "What the real tools
            # do"). So nothing is created on the new host: the state points at it and the
            # existing object is looked for there. Recorded, never applied.
            fields.append("provider")
        if fields:
            changed[k] = fields
    created = {k for k in after if k not in before}
    replaced: set[str] = set()
    # Propagate: fields reading a replaced resource, or a changed provider call, become unknown.
    while True:
        new_replaced = {k for k, f in changed.items() if not after[k].data and _judge(after[k], f)[0] == "replace"}
        stale = replaced | new_replaced | {k for k in changed if after[k].data}
        grew = False
        for k, new in after.items():
            if k in created:
                continue
            for path, value in _leaves(new.inputs):
                if _ignored(path, new.ignore_changes) or path in changed.get(k, []):
                    continue
                if _reads(value, values=False) & stale or (
                    _reads(value, ids=False) & stale and _judge(new, [path])[0] == "replace"
                ):
                    changed.setdefault(k, []).append(path)
                    grew = True
        replaced = new_replaced
        if not grew:
            break
    out: list[ResourceChange] = []
    for k, new in after.items():
        if k in created:
            out.append(_change(new, "create", (), True))
        elif k in changed:
            change, applied = _judge(new, changed[k]) if not new.data else ("update", True)
            moved = "provider" in changed[k] and change != "replace"
            out.append(_change(new, change, tuple(changed[k]), applied).model_copy(update={"moved": moved}))
    out += [_change(old, "delete", (), True) for k, old in before.items() if k not in after]
    return out


_MISSING = object()


def _provider_config(state: dict[str, Resource], resource: Resource) -> dict[str, Any] | None:
    provider = state.get(resource.provider) if resource.provider else None
    return provider.inputs if provider else None


def _change(resource: Resource, change: Change, fields: tuple[str, ...], applied: bool) -> ResourceChange:
    rule = providers.rule(resource.kind)
    return ResourceChange(
        key=resource.key,
        kind=resource.kind,
        name=resource.name,
        change=change,
        fields=fields,
        applied=applied,
        nodes=resource.nodes,
        cluster=resource.cluster,
        source=resource.source,
        rule=rule.source if rule else "",
        holds_data=resource.kind in DATA_KINDS and not (resource.kind == "Volume" and "source" in resource.inputs),
    )


# What each provider names an object by on its host or server, and what happens when a new
# resource's object has the name of one an old resource (deleted later in the same `pulumi up`:
# Pulumi creates before it deletes) still holds.
CLASHES: dict[str, tuple[tuple[str, ...], str]] = {
    # Create adopts an existing volume of the same name ("found and left as-is") and takes its
    # key as id; the old resource's delete then deletes that volume
    # (dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_volume.go create).
    "Volume": (
        ("pool", "name"),
        "adopts the existing volume of that name, which the deletion of {old} then deletes",
    ),
    # NetworkDefineXML refuses a second network of the same name
    # (dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_network.go).
    "Network": (("name",), "fails: libvirt already has a network of that name until {old} is deleted"),
    # DomainDefineXML likewise
    # (dmacvicar/terraform-provider-libvirt v0.8.1:libvirt/resource_libvirt_domain.go create).
    "Domain": (("name",), "fails: libvirt already has a domain of that name until {old} is deleted"),
    # Create upserts by name and delete deletes by name (poseidon/terraform-provider-matchbox
    # v0.5.4: matchbox/resource_group.go, resource_profile.go).
    "Group": (("name",), "overwrites the entry of that name, which the deletion of {old} then deletes"),
    "Profile": (("name",), "overwrites the entry of that name, which the deletion of {old} then deletes"),
}


def name_clashes(base: Iterable[Resource], head: Iterable[Resource], changes: Iterable[ResourceChange]) -> list[str]:
    """A resource created under a new Pulumi name for an object an old resource still holds
    (e.g. a machine source renamed: its network and boot ISO keep their names on the host)."""
    before = {r.key: r for r in base}
    after = {r.key: r for r in head}
    done = list(changes)
    deleted = [before[c.key] for c in done if c.change == "delete"]
    out = []
    for c in done:
        if c.change != "create" or c.kind not in CLASHES:
            continue
        new = after[c.key]
        fields, effect = CLASHES[c.kind]
        for old in deleted:
            if old.kind != new.kind or _provider_config(before, old) != _provider_config(after, new):
                continue
            if all(old.inputs.get(f) == new.inputs.get(f) for f in fields):
                what = ", ".join(f"{f} {new.inputs.get(f)}" for f in fields)
                out.append(
                    f"{new.kind} {new.name} ({what}) is created before {old.name} is deleted and "
                    f"{effect.format(old=old.name)}. Apply it in two steps: first remove what uses "
                    f"{old.name}, then add it back under its new name"
                )
    return out
