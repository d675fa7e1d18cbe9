"""One desired state: what the program registers under mocks is exactly talos_fleet.desired.

For every stack and good fixture, each registered resource (and each provider call the desired
state lists) is matched with its record; each placeholder is resolved the way the fakes answer
(tests/harness.py), independently of components/wire.py; then inputs, secrecy, options, parent,
provider and dependencies must agree. Nothing a component reads can be missing from the plan,
since the plan diffs this same object (talos_fleet.snapshot).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components.cluster_operations import project_directory, talos_ca_stdin
from components.wire import yaml_scalar
from talos_fleet import naming, patches
from talos_fleet.desired import KINDS, TOKEN, DesiredState, Resource, desired_state, key
from talos_fleet.loader import load_stack_file
from talos_fleet.snapshot import snapshot
from tests.harness import (
    FAKE_CLIENT_CONFIGURATION,
    FAKE_MACHINE_SECRETS,
    Registration,
    Run,
    factory_urls,
    fake_schematic_id,
    is_secret,
    plain,
    run_stack_file,
)

STACK = "pulumi:pulumi:Stack"


class Resolver:
    """Placeholders resolved as the fakes answer, and the resources each one reads from."""

    def __init__(self, state: DesiredState, run: Run) -> None:
        self.by_key = state.by_key()
        self.run = run

    def token(self, kind: str, body: str) -> tuple[Any, bool, set[str]]:
        """(value, secret, keys of the resources it is read from)."""
        if kind == "local":
            return project_directory(), False, set()
        if kind == "id":
            record = self.by_key[body]
            return self.run.mocks.ids[(record.type, record.name)], False, {body}
        if kind == "via":
            name, value = body.split("|", 1)
            return value, False, {name}
        if kind == "factory":
            what, rest = body.split(":", 1)
            where, media = rest.split("@", 1)
            cluster, arch = where.split("/")
            schematic = str(self.by_key[key("Schematic", naming.schematic(cluster))].inputs["schematic"])
            version = str(self.by_key[key("getUrls", where)].inputs["talosVersion"])
            # The placeholder names exactly what its value depends on.
            assert media == naming.media_key(version, schematic, arch)
            urls = factory_urls(fake_schematic_id(schematic), version, arch)
            value = urls["initramfs"].rsplit("/", 1)[-1] if what == "initramfs-file" else urls[what]
            return value, False, {key("Schematic", naming.schematic(cluster))}
        # secrets
        if "." not in body:
            return f"FAKE-decrypted-talos-fleet:secrets.{body}", True, set()
        owner, output = body.rsplit(".", 1)
        if owner.startswith("Secrets:"):
            values = {
                "machineSecrets": FAKE_MACHINE_SECRETS,
                "clientConfiguration": FAKE_CLIENT_CONFIGURATION,
                "osCa": talos_ca_stdin(FAKE_MACHINE_SECRETS),
            }
            return values[output], True, {owner}
        record = self.by_key[owner]
        assert record.kind == "getConfiguration"
        assert output == "machineConfiguration"
        _, _, reads = self.value(record.inputs)
        return f"FAKE-{record.inputs['machineType']}-config", True, reads

    def value(self, value: Any) -> tuple[Any, bool, set[str]]:
        if isinstance(value, dict):
            parts = {k: self.value(v) for k, v in value.items()}
            return (
                {k: v for k, (v, _, _) in parts.items()},
                any(s for _, s, _ in parts.values()),
                set().union(*(r for _, _, r in parts.values())),
            )
        if isinstance(value, list):
            items = [self.value(v) for v in value]
            return [v for v, _, _ in items], any(s for _, s, _ in items), set().union(*(r for _, _, r in items))
        if not isinstance(value, str) or not TOKEN.search(value):
            return value, False, set()
        whole = TOKEN.fullmatch(value)
        if whole:
            return self.token(whole.group(1), whole.group(2))
        secret, reads = False, set()

        def substitute(match: Any) -> str:
            nonlocal secret
            got, is_secret_, from_ = self.token(match.group(1), match.group(2))
            secret |= is_secret_
            reads.update(from_)
            return str(got)

        return TOKEN.sub(substitute, value), secret, reads


def _parent_matches(reg: Registration, record: Resource, by_key: dict[str, Resource]) -> bool:
    if record.parent is None:
        return reg.parent.endswith(f"{STACK}::talos-fleet-test")
    parent = by_key[record.parent]
    return reg.parent.endswith(f"{parent.type}::{parent.name}")


def _secret_somewhere(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_secret_somewhere(v) for v in value.values())
    if isinstance(value, list):
        return any(_secret_somewhere(v) for v in value)
    return False


@pytest.fixture
def run(valid_stack: Path) -> Run:
    return run_stack_file(valid_stack)


def test_every_registered_resource_is_exactly_its_desired_record(valid_stack: Path, run: Run) -> None:
    state = desired_state(load_stack_file(valid_stack))
    by_key = state.by_key()
    resolver = Resolver(state, run)
    urn_of = {(r.type, r.name): r.urn for r in run.registrations}
    registered = [r for r in run.registrations if r.type != STACK]
    records = {(r.type, r.name): r for r in state.resources if not r.data}
    # One record per registration, and the other way round.
    assert sorted((r.type, r.name) for r in registered) == sorted(records)
    for reg in registered:
        record = records[(reg.type, reg.name)]
        where = f"{valid_stack.name}: {record.key}"
        assert _parent_matches(reg, record, by_key), where
        expected, _, _ = resolver.value(record.inputs)
        got = plain(reg.inputs)
        if isinstance(expected.get("stdin"), dict):
            # A structured stdin (the config rollout's) is piped as one JSON text: the CA as the
            # other steps get it, beside the role configs and node patches.
            stdin = expected.pop("stdin")
            assert json.loads(got.pop("stdin")) == {**json.loads(stdin.pop("osCa")), **stdin}, where
        assert got == expected, where
        for field, value in record.inputs.items():
            _, secret, reads = resolver.value(value)
            if secret:
                assert _secret_somewhere(reg.inputs[field]), f"{where}.{field} must reach the provider as a secret"
            # Every data edge the engine records is one a placeholder names.
            edges = {u for u in reg.property_dependencies.get(field, [])}
            assert edges == {urn_of[(by_key[k].type, by_key[k].name)] for k in reads}, f"{where}.{field}"
        assert reg.protect == record.protect, where
        assert reg.delete_before_replace == record.delete_before_replace, where
        assert reg.ignore_changes == list(record.ignore_changes), where
        assert set(record.additional_secret_outputs) <= set(reg.additional_secret_outputs), where
        ordering = {urn_of[(by_key[k].type, by_key[k].name)] for k in record.depends_on}
        data_edges = {u for urns in reg.property_dependencies.values() for u in urns}
        assert set(reg.dependencies) == ordering | data_edges, where
        if record.provider is not None and record.kind not in ("TalosImages", "TalosCluster"):
            provider = by_key[record.provider]
            assert reg.provider.startswith(urn_of[(provider.type, provider.name)] + "::"), where
        assert len(reg.aliases) == len(record.aliases), where


def test_every_provider_call_is_its_desired_record(valid_stack: Path, run: Run) -> None:
    state = desired_state(load_stack_file(valid_stack))
    resolver = Resolver(state, run)
    data = [r for r in state.resources if r.data]
    for kind in {r.kind for r in data}:
        expected = sorted(json.dumps(resolver.value(r.inputs)[0], sort_keys=True) for r in data if r.kind == kind)
        calls = sorted(json.dumps(plain(c.args), sort_keys=True) for c in run.calls(KINDS[kind]))
        assert calls == expected, f"{valid_stack.name}: {kind}"


def test_the_snapshot_carries_the_desired_state(valid_stack: Path) -> None:
    fleet = load_stack_file(valid_stack)
    assert snapshot(fleet).resources == desired_state(fleet).resources


@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1))
def test_a_secret_placeholder_in_a_patch_reads_back_as_the_secret(value: str) -> None:
    """Whatever a secret holds (line breaks, quotes, YAML indicators), put where its placeholder
    was in an indented patch, the patch reads back with exactly that value."""
    template = patches.to_yaml([{"apiVersion": "v1alpha1", "kind": "X", "auth": {"password": "<secret:pw>"}}])
    assert "<secret:pw>" in template
    scalar = yaml_scalar(value)
    # One line: YAML parsers stricter than PyYAML (Go's yaml.v3 in Talos) refuse a flow scalar
    # whose continuation lines are indented less than the key it belongs to.
    assert "\n" not in scalar
    text = template.replace("<secret:pw>", scalar)
    assert yaml.safe_load(text)["auth"]["password"] == value
