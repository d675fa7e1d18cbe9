"""Spec validation: one bad fixture per rule (tests/fixtures/bad), every shipped stack validates,
the committed JSON Schema is fresh, and no input at all makes validation raise anything else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from talos_fleet.loader import (
    SpecError,
    load_pulumi_config,
    load_stack_file,
    tree_from_stack_file,
    validate_tree,
)
from talos_fleet.schema import stack_file_schema
from tests.conftest import BAD_FIXTURES, ROOT, STACK_FILES, VALID_STACKS, stack_id
from tests.harness import engine_config_of, fixture_header, spec_problems, tree_paths

SCHEMA_FILE = ROOT / "schema" / "talos-fleet.schema.json"


def _expectation(path: Path) -> tuple[str, str]:
    header = fixture_header(path)
    return header["expect-path"], header["expect-message"]


def test_there_is_a_bad_fixture_per_rule() -> None:
    assert len(BAD_FIXTURES) >= 30


@pytest.mark.parametrize("fixture", BAD_FIXTURES, ids=stack_id)
def test_bad_fixture_names_the_field_and_the_fix(fixture: Path) -> None:
    expected_path, expected_message = _expectation(fixture)
    with pytest.raises(SpecError) as raised:
        load_stack_file(fixture)
    problems = raised.value.problems
    matching = [p for p in problems if p.path.endswith(expected_path) and expected_message in p.message]
    assert matching, f"expected {expected_path}: …{expected_message}…, got:\n{raised.value}"
    # The report is for a person: one line per problem, no Python internals.
    report = str(raised.value)
    assert "Traceback" not in report
    assert "pydantic" not in report.lower()
    assert "Value error" not in report


@pytest.mark.parametrize("stack", STACK_FILES, ids=stack_id)
def test_every_shipped_stack_validates(stack: Path) -> None:
    fleet = load_stack_file(stack)
    assert fleet.clusters


def test_the_edge_stack_is_what_the_issue_asks_for() -> None:
    fleet = load_stack_file(ROOT / "stacks" / "Pulumi.edge.yaml")
    ((_, cluster),) = fleet.clusters.items()
    ((host, node),) = cluster.nodes.items()
    assert node.role == "controlplane"
    assert fleet.sources[node.source].kind == "metal"
    assert cluster.allow_scheduling_on_control_planes
    assert cluster.endpoint.vip is None
    assert cluster.endpoint.host in (node.ip, host) or "." in (cluster.endpoint.host or "")
    assert cluster.disk_encryption is not None
    for keys in (cluster.disk_encryption.state, cluster.disk_encryption.ephemeral):
        assert keys
        assert all(k in ("nodeID", "tpm") for k in keys)
    assert 0 < len(fleet.defaults.image.extensions) <= 4


@pytest.mark.parametrize("stack", VALID_STACKS, ids=stack_id)
def test_stack_files_reference_and_satisfy_the_json_schema(stack: Path) -> None:
    first_line = stack.read_text().splitlines()[0]
    assert first_line.startswith("# yaml-language-server: $schema=")
    reference = (stack.parent / first_line.split("$schema=", 1)[1]).resolve()
    assert reference == SCHEMA_FILE
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(yaml.safe_load(stack.read_text()))


def test_committed_json_schema_is_fresh() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == stack_file_schema(), "schema/talos-fleet.schema.json is stale: run `make schema`"


def test_json_schema_refuses_unknown_namespace_keys() -> None:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.edge.yaml").read_text())
    document["config"]["talos-fleet:clusterz"] = {}
    validator = jsonschema.Draft202012Validator(stack_file_schema())
    assert not validator.is_valid(document)
    document["config"].pop("talos-fleet:clusterz")
    document["config"]["otherproject:anything"] = 1  # other namespaces are not ours to judge
    assert validator.is_valid(document)


# ---------------------------------------------------------------------------------------------
# The engine's view of config (what __main__ receives)


@pytest.mark.parametrize("stack", VALID_STACKS, ids=stack_id)
def test_engine_config_and_stack_file_agree(stack: Path) -> None:
    from_engine = load_pulumi_config(*engine_config_of(stack))
    from_file = load_stack_file(stack)
    assert from_engine.model_dump(exclude={"secrets"}) == from_file.model_dump(exclude={"secrets"})
    assert set(from_engine.secrets) == set(from_file.secrets)
    assert all(s.value is not None for s in from_engine.secrets.values())


def test_engine_secret_outside_the_secrets_key_is_refused() -> None:
    config, _ = engine_config_of(ROOT / "stacks" / "Pulumi.edge.yaml")
    with pytest.raises(SpecError) as raised:
        load_pulumi_config(config, ["talos-fleet:clusters"])
    assert raised.value.problems[0].path == "talos-fleet:clusters"
    assert "secret values belong under talos-fleet:secrets" in raised.value.problems[0].message


def test_secret_values_never_appear_in_reports_or_reprs() -> None:
    config, secret_keys = engine_config_of(ROOT / "tests" / "fixtures" / "good" / "vip-metal.yaml")
    fleet = load_pulumi_config(config, secret_keys)
    assert fleet.secrets["rack-luks"].value == "FAKE-decrypted-talos-fleet:secrets.rack-luks"
    assert "FAKE-decrypted" not in repr(fleet)
    clusters = json.loads(config["talos-fleet:clusters"])
    clusters["rack"]["bogus"] = True
    with pytest.raises(SpecError) as raised:
        load_pulumi_config({**config, "talos-fleet:clusters": json.dumps(clusters)}, secret_keys)
    assert "unknown key 'bogus'" in str(raised.value)
    assert "FAKE-decrypted" not in str(raised.value)


# ---------------------------------------------------------------------------------------------
# Fuzzing: validation fails only ever with SpecError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
BASE_TREE = tree_from_stack_file(ROOT / "tests" / "fixtures" / "good" / "vip-metal.yaml")


def _replace(tree: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    result = copy.copy(tree)
    result[path[0]] = _replace(tree[path[0]], path[1:], new)
    return result


@given(st.dictionaries(st.sampled_from(["defaults", "sources", "secrets", "clusters", "x"]), JSON, max_size=5))
def test_arbitrary_trees_fail_only_with_spec_error(tree: dict[str, Any]) -> None:
    for problem in spec_problems(lambda: validate_tree(tree)):
        assert problem.path.startswith("talos-fleet")
        assert problem.message


@given(st.data())
def test_mutated_valid_trees_fail_only_with_spec_error(data: st.DataObject) -> None:
    paths = tree_paths(BASE_TREE)[1:]
    path = data.draw(st.sampled_from(paths))
    mutated = _replace(BASE_TREE, path, data.draw(JSON))
    for problem in spec_problems(lambda: validate_tree(mutated)):
        assert problem.path.startswith("talos-fleet")


@given(
    st.dictionaries(
        st.sampled_from(
            ["talos-fleet:defaults", "talos-fleet:clusters", "talos-fleet:secrets", "talos-fleet:zz", "other:key"]
        ),
        st.text(max_size=40) | JSON.map(json.dumps),
        max_size=5,
    ),
    st.lists(st.sampled_from(["talos-fleet:secrets", "talos-fleet:clusters"])),
)
def test_arbitrary_engine_config_fails_only_with_spec_error(config: dict[str, str], secret: list[str]) -> None:
    for problem in spec_problems(lambda: load_pulumi_config(config, secret)):
        assert problem.message
