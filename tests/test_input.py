"""Bad input gets one message; valid input runs; the offline check and the engine agree.

The per-class fixtures are tests/fixtures/bad/input-*.yaml and bound-*.yaml (run by
test_spec.py). Here: what a fixture file cannot hold (a file past the size limit), the engine's
side of each class, how stack-file scalars and keys are read (as Pulumi reads them), and the
properties: arbitrary bytes and trees end in a Fleet or a SpecError on both entry points, both
entry points give the same answer, and the most extreme valid stack runs.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from components import stack_config
from talos_fleet import patches, report, review, spec
from talos_fleet.loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    SpecError,
    load_pulumi_config,
    load_stack_file,
    tree_from_stack_file,
)
from talos_fleet.plan import plan_cluster, plan_hypervisors
from talos_fleet.snapshot import snapshot
from tests.conftest import ROOT
from tests.harness import (
    _decrypt,
    engine_config_of,
    run_failing_program,
    run_program,
    spec_problems,
    tree_paths,
)

GOOD = ROOT / "tests" / "fixtures" / "good" / "vip-metal.yaml"
HOMELAB = ROOT / "stacks" / "Pulumi.homelab.yaml"


def _refusal(load: Any) -> list[str]:
    """The problem paths `load()` reports; [] when it accepts; any other exception fails."""
    problems = spec_problems(load)
    assert all(p.message for p in problems)  # a SpecError without a problem fails here too
    return sorted(p.path for p in problems)


def _write(tmp_path: Path, text: str | bytes, name: str = "Pulumi.fuzz.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _one_problem(load: Any) -> tuple[str, str]:
    with pytest.raises(SpecError) as raised:
        load()
    (problem,) = raised.value.problems
    return problem.path, problem.message


# ---------------------------------------------------------------------------------------------
# 19: what no fixture can hold, and the engine's side of every class


def test_a_file_past_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # Not YAML at all past the first line: were it parsed, the message would be a YAML error.
    path = _write(tmp_path, b"config: [\n" + b"\x00" * MAX_FILE_BYTES)
    where, message = _one_problem(lambda: load_stack_file(path))
    assert where == str(path)
    assert f"{MAX_FILE_BYTES // 2**20} MiB" in message


def test_a_file_with_too_many_values_is_refused_with_the_limit(tmp_path: Path) -> None:
    values = ", ".join(["1"] * (MAX_VALUES + 1))
    path = _write(tmp_path, f"config:\n  other:numbers: [{values}]\n")
    assert path.stat().st_size < MAX_FILE_BYTES
    where, message = _one_problem(lambda: load_stack_file(path))
    assert where == str(path)
    assert f"{MAX_VALUES:,}" in message


def test_a_byte_order_mark_is_read_like_pulumi_reads_it(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\xef\xbb\xbf" + GOOD.read_bytes())
    assert load_stack_file(path) == load_stack_file(GOOD)


def test_a_missing_file_is_one_message(tmp_path: Path) -> None:
    where, message = _one_problem(lambda: load_stack_file(tmp_path / "Pulumi.nope.yaml"))
    assert where.endswith("Pulumi.nope.yaml")
    assert "cannot read the file" in message


def _engine(**values: str) -> dict[str, str]:
    config, _ = engine_config_of(GOOD)
    return {**config, **{f"talos-fleet:{k}": v for k, v in values.items()}}


@pytest.mark.parametrize(
    ("text", "expect_path", "expect_message"),
    [
        ("[" * 5000 + "]" * 5000, "talos-fleet:defaults", f"more than {MAX_DEPTH} levels"),
        ('{"a": ' * 70 + "1" + "}" * 70, "talos-fleet:defaults" + ".a" * MAX_DEPTH, f"more than {MAX_DEPTH} levels"),
        ("[" + "9" * 5000 + "]", "talos-fleet:defaults", "4300 digits"),
        ('{"a": NaN}', "talos-fleet:defaults", "NaN"),
        ('{"talosVersion": "v1.13.9\\ud800"}', "talos-fleet:defaults.talosVersion", "not valid Unicode"),
        ('{"\\udfff": 1}', "talos-fleet:defaults (a key)", "not valid Unicode"),
        ('{"a": [' + ",".join(["1"] * (MAX_VALUES + 1)) + "]}", "talos-fleet:defaults.a", f"{MAX_VALUES:,}"),
        ('"' + "x" * MAX_FILE_BYTES + '"', "talos-fleet:defaults", f"{MAX_FILE_BYTES // 2**20} MiB"),
    ],
    ids=["deep", "deep-mapping", "long-integer", "nan", "surrogate", "surrogate-key", "many", "huge"],
)
def test_engine_values_get_one_message(text: str, expect_path: str, expect_message: str) -> None:
    where, message = _one_problem(lambda: load_pulumi_config(_engine(defaults=text), []))
    assert where.startswith(expect_path)
    assert expect_message in message


def test_a_surrogate_in_a_patch_is_refused_before_it_reaches_a_serializer() -> None:
    config, secret = engine_config_of(GOOD)
    clusters = json.loads(config["talos-fleet:clusters"])
    clusters["rack"]["patches"] = [{"machine": {"env": {"A": "\ud800"}}}]
    text = json.dumps(clusters)  # ensure_ascii: the surrogate travels as an escape, as from Go
    where, message = _one_problem(lambda: load_pulumi_config({**config, "talos-fleet:clusters": text}, secret))
    assert where == "talos-fleet:clusters.rack.patches[0].machine.env.A"
    assert "not valid Unicode" in message


# ---------------------------------------------------------------------------------------------
# 21: the stack file read as Pulumi reads it


def _scalar(tmp_path: Path, text: str) -> Any:
    path = _write(tmp_path, f"config:\n  talos-fleet:probe: {{value: {text}}}\n")
    return tree_from_stack_file(path)["probe"]["value"]


# Each expectation follows go-yaml/yaml v3.0.1:resolve.go (YAML 1.2 core: only true/false are
# booleans; Go's ParseInt with base 0 after removing '_'; yamlStyleFloat; timestamps) and then
# encoding/json as Pulumi hands values over (an integral float below 1e21 has no fraction).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("on", "on"),
        ("True", True),
        ("~", None),
        ("1_000", 1000),
        ("0x1F", 31),
        ("0o17", 15),
        ("017", 15),
        ("08", 8),
        ("0b101", 5),
        ("+12", 12),
        ("1e3", 1000),
        ("4096.0", 4096),
        (".5", 0.5),
        ("1:20", "1:20"),
        ("18446744073709551615", 2**64 - 1),
        ("-9223372036854775809", -(2**63)),
        ("2" + "0" * 400, "2" + "0" * 400),
        ("2026-12-01", "2026-12-01 00:00:00 +0000 UTC"),
        ("2026-12-01T10:00:00.500Z", "2026-12-01 10:00:00.5 +0000 UTC"),
        ("'0x1F'", "0x1F"),
        ("!!float 5", 5),
    ],
)
def test_scalars_are_read_as_pulumi_reads_them(tmp_path: Path, text: str, expected: Any) -> None:
    value = _scalar(tmp_path, text)
    assert value == expected
    assert type(value) is type(expected)


def test_integer_and_boolean_keys_become_text_as_pulumi_keeps_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "config:\n  talos-fleet:probe: {1: a, true: b, 0x10: c}\n")
    assert tree_from_stack_file(path)["probe"] == {"1": "a", "true": "b", "16": "c"}
    clash = _write(tmp_path, "config:\n  talos-fleet:probe: {1: a, '1': b}\n", "Pulumi.clash.yaml")
    assert "duplicate key '1'" in _one_problem(lambda: tree_from_stack_file(clash))[1]


def test_a_key_without_namespace_is_the_projects_on_both_paths(tmp_path: Path) -> None:
    # pulumi/pulumi v3.259.0:sdk/go/common/workspace/loaders.go (stackConfigNamespacedWithProject):
    # a stack-file key without a namespace gets the project's name, `talos-fleet` in Pulumi.yaml.
    assert yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"] == spec.NAMESPACE
    document = yaml.safe_load(GOOD.read_text())
    document["config"] = {k.removeprefix("talos-fleet:"): v for k, v in document["config"].items()}
    bare = _write(tmp_path, yaml.safe_dump(document))
    assert load_stack_file(bare) == load_stack_file(GOOD)
    engine = load_pulumi_config(*engine_config_of(GOOD)).model_dump()
    assert engine == load_stack_file(bare).model_dump(exclude={"secrets"}) | {"secrets": engine["secrets"]}


def test_mapping_order_in_the_file_never_matters(tmp_path: Path) -> None:
    """The engine's JSON has its map keys sorted (Go's encoding/json), so a reordered file must
    give the same fleet, nodes in hostname order, on both paths."""
    document = yaml.safe_load(HOMELAB.read_text())
    nodes = document["config"]["talos-fleet:clusters"]["homelab"]["nodes"]
    document["config"]["talos-fleet:clusters"]["homelab"]["nodes"] = dict(reversed(nodes.items()))
    reordered = _write(tmp_path, yaml.safe_dump(document, sort_keys=False))
    offline = load_stack_file(reordered)
    assert offline == load_stack_file(HOMELAB)
    assert list(offline.clusters["homelab"].nodes) == sorted(nodes)
    assert load_pulumi_config(*engine_config_of(reordered)) == load_pulumi_config(*engine_config_of(HOMELAB))


PLAINTEXT_BESIDE_SECURE = ROOT / "tests" / "fixtures" / "bad" / "plaintext-secret-beside-secure.yaml"


def test_plaintext_beside_secure_secrets_is_refused_on_both_paths() -> None:
    offline = _refusal(lambda: load_stack_file(PLAINTEXT_BESIDE_SECURE))
    config, secret = engine_config_of(PLAINTEXT_BESIDE_SECURE)
    assert "talos-fleet:secrets" in secret  # the engine marks the whole key secret...
    engine = _refusal(lambda: load_pulumi_config(config, secret, PLAINTEXT_BESIDE_SECURE))
    assert offline == engine == ["talos-fleet:secrets.disk-key"]  # ...so only the file tells


def test_the_program_reads_its_own_stack_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the mock runtime the stack is `test`: the program finds stacks/Pulumi.test.yaml
    through Pulumi.yaml's stackConfigDir and refuses the plaintext secret in it."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.test.yaml").write_bytes(PLAINTEXT_BESIDE_SECURE.read_bytes())
    monkeypatch.setattr(stack_config, "PROJECT_ROOT", tmp_path)
    run, error = run_failing_program(*engine_config_of(PLAINTEXT_BESIDE_SECURE))
    assert "talos-fleet:secrets.disk-key: this is a plaintext value where a secret belongs" in str(error)
    assert {r.type for r in run.registrations} <= {"pulumi:pulumi:Stack"}  # nothing half-applied
    assert stack_config.stack_file(tmp_path, "test") == tmp_path / "stacks" / "Pulumi.test.yaml"
    assert stack_config.stack_file(tmp_path, "other") is None


# ---------------------------------------------------------------------------------------------
# Properties: never anything but a Fleet or a SpecError; both entry points agree

# Text YAML can carry as it is: no line separators, controls, format or unassigned characters
# (libyaml, like Go's yaml.v3, refuses or folds them) and no surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp")), max_size=12)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)
BASE = yaml.safe_load(GOOD.read_text())["config"]


@settings(max_examples=150)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_arbitrary_bytes_end_in_a_fleet_or_a_spec_error(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), data)
        _refusal(lambda: load_stack_file(path))
        _refusal(lambda: load_stack_file(_write(Path(tmp), b"config:\n  talos-fleet:defaults: " + data, "b.yaml")))


def _go_json(value: Any) -> Any:
    """A value as Pulumi's engine writes it for the program: Go's encoding/json writes an
    integral float below 1e21 without a fraction (pulumi/pulumi
    v3.259.0:sdk/go/common/resource/config/plaintext.go, marshalText), which Python then reads
    as an int."""
    if isinstance(value, dict):
        return {k: _go_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_json(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value == math.floor(value) and abs(value) < 1e21:
        return int(value)
    return value


def _engine_view(config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What the engine hands the program for this `config:`: bare keys in the project's
    namespace, secure values decrypted (the key becomes secret), objects as sorted JSON,
    scalars as text (pulumi/pulumi v3.259.0:sdk/go/common/resource/config/object.go,
    MarshalString)."""
    values: dict[str, str] = {}
    secret: list[str] = []
    for key, value in config.items():
        full = key if ":" in key else f"talos-fleet:{key}"
        decrypted, is_secret = _decrypt(value, full)
        decrypted = _go_json(decrypted)
        if isinstance(decrypted, (dict, list)):
            values[full] = json.dumps(decrypted, sort_keys=True)
        elif isinstance(decrypted, str):
            values[full] = decrypted
        else:
            values[full] = json.dumps(decrypted)
        if is_secret:
            secret.append(full)
    return values, secret


@st.composite
def stack_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A `config:` mapping: the good fixture with one value replaced by an arbitrary tree, a
    secure value, or a plaintext one; top-level keys sometimes without their namespace."""
    config = copy.deepcopy(BASE)
    path = draw(st.sampled_from(tree_paths(config)[1:]))
    new = draw(JSON | st.just({"secure": "v1:AAAA"}))
    target: Any = config
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    if draw(st.booleans()):
        config = {k.removeprefix("talos-fleet:"): v for k, v in config.items()}
    # A top-level null is left out: the engine's text for it is not the program's concern.
    return {k: v for k, v in config.items() if v is not None}


@settings(max_examples=120)
@given(stack_configs())
def test_both_entry_points_give_the_same_answer(tmp_path_factory: pytest.TempPathFactory, config: Any) -> None:
    # JSON is YAML: every string is quoted and every number written the same way for both.
    path = _write(tmp_path_factory.mktemp("agree"), json.dumps({"config": config}, ensure_ascii=False))
    offline = _refusal(lambda: load_stack_file(path))
    values, secret = _engine_view(config)
    engine = _refusal(lambda: load_pulumi_config(values, secret, path))
    assert offline == engine
    # Without the file the engine knows secrecy per top-level key only: a plaintext secret goes
    # unseen and a misplaced secure value is named by its key; everything else is the same.
    alone = _refusal(lambda: load_pulumi_config(values, secret))
    if not any(p.startswith("talos-fleet:secrets.") for p in offline):
        assert bool(alone) == bool(offline)
        if not secret:
            assert alone == offline
    if not offline:
        from_file, from_engine = load_stack_file(path), load_pulumi_config(values, secret, path)
        # As JSON, so an int and an equal float differ: a patch carries the type to Talos.
        assert from_file.model_dump_json(exclude={"secrets"}) == from_engine.model_dump_json(exclude={"secrets"})
        assert set(from_file.secrets) == set(from_engine.secrets)


@settings(max_examples=150)
@given(
    st.dictionaries(
        st.sampled_from(["talos-fleet:defaults", "talos-fleet:clusters", "talos-fleet:secrets", "defaults", "x:y"]),
        ANY_JSON | st.recursive(st.text(max_size=4), lambda c: st.lists(c, max_size=2), max_leaves=200),
        max_size=4,
    )
)
def test_arbitrary_trees_end_in_a_fleet_or_a_spec_error_on_both_paths(
    tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]
) -> None:
    directory = tmp_path_factory.mktemp("trees")
    _refusal(lambda: load_stack_file(_write(directory, yaml.safe_dump({"config": config}))))
    _refusal(lambda: load_stack_file(_write(directory, json.dumps({"config": config}), "b.yaml")))
    _refusal(lambda: load_pulumi_config(*_engine_view(config)))


# ---------------------------------------------------------------------------------------------
# 20: valid means it runs, at every bound


def _extreme(document: dict[str, Any], numbers: dict[str, int]) -> None:
    """Every number of the homelab stack at the value drawn for it (all at their bounds by default)."""
    config = document["config"]
    defaults = config["talos-fleet:defaults"]
    defaults["upgrade"] = {
        "workerBatchSize": numbers["batch"],
        "drainTimeoutMinutes": numbers["timeout"],
        "healthTimeoutMinutes": numbers["timeout"],
        "recheck": numbers["recheck"],
    }
    disks = [{"name": f"d{i}", "sizeGib": numbers["disk"]} for i in range(spec.MAX_DATA_DISKS)]
    vm = {"cpus": numbers["cpus"], "memoryMib": numbers["memory"], "diskGib": numbers["disk"], "dataDisks": disks}
    defaults["roles"] = {"controlplane": {"vm": vm}, "worker": {"vm": vm}}
    cluster = config["talos-fleet:clusters"]["homelab"]
    cluster["endpoint"]["port"] = numbers["port"]
    cluster["kubePrism"] = {"port": numbers["port"]}
    longest = "w" + "-" * 61 + "1"  # a 63-character DNS label
    cluster["nodes"][longest] = {"role": "worker", "source": "kvm", "address": "10.17.3.99", "labels": {"x": "y" * 63}}


MAXIMA = {
    "batch": spec.MAX_WORKER_BATCH,
    "timeout": spec.MAX_TIMEOUT_MINUTES,
    "recheck": spec.MAX_RECHECK,
    "cpus": spec.MAX_CPUS,
    "memory": spec.MAX_MEMORY_MIB,
    "disk": spec.MAX_DISK_GIB,
    "port": 65535,
}


def _stack(tmp_path: Path, numbers: dict[str, int]) -> Path:
    document = yaml.safe_load(HOMELAB.read_text())
    _extreme(document, numbers)
    return _write(tmp_path, yaml.safe_dump(document, sort_keys=False), "Pulumi.homelab.yaml")


@settings(max_examples=25)
@given(st.fixed_dictionaries({k: st.sampled_from([1, v]) | st.integers(1, v) for k, v in MAXIMA.items()}))
def test_valid_stacks_at_their_bounds_render_plan_and_review(
    tmp_path_factory: pytest.TempPathFactory, numbers: dict[str, int]
) -> None:
    numbers["memory"] = max(numbers["memory"], 2048)  # below Talos' minimums is a refusal, tested elsewhere
    numbers["disk"] = max(numbers["disk"], 10)
    numbers["cpus"] = max(numbers["cpus"], 2)
    fleet = load_stack_file(_stack(tmp_path_factory.mktemp("bounds"), numbers))
    patches.render_fleet(fleet, patches.secret_stand_ins(fleet), lambda c, v, a: f"installer:{v}")
    plan_hypervisors(fleet)
    for name in fleet.clusters:
        plan_cluster(fleet, name)
    head = snapshot(fleet)
    json.loads(head.model_dump_json())
    report.markdown(review.review("homelab", None, head))


def test_the_program_runs_with_every_number_at_its_bound(tmp_path: Path) -> None:
    run = run_program(*engine_config_of(_stack(tmp_path, MAXIMA)))
    domains = run.of_type("libvirt:index/domain:Domain")
    assert domains
    assert all(d.inputs["vcpu"] == spec.MAX_CPUS for d in domains)
    assert all(d.inputs["memory"] == spec.MAX_MEMORY_MIB for d in domains)
    sizes = {v.inputs["size"] for v in run.of_type("libvirt:index/volume:Volume") if "size" in v.inputs}
    assert spec.MAX_DISK_GIB * 2**30 in sizes
    assert max(sizes) < 2**63  # the provider's volume size is a Go int (resource_libvirt_volume.go, v0.8.1)


def test_one_past_each_bound_is_refused_with_the_bound(tmp_path: Path) -> None:
    for key, bound in MAXIMA.items():
        path = _stack(tmp_path, {**MAXIMA, key: bound + 1})
        with pytest.raises(SpecError) as raised:
            load_stack_file(path)
        assert f"must be at most {bound:,}" in str(raised.value), key


def test_patches_are_bounded_by_what_they_render_to(tmp_path: Path) -> None:
    """A fleet-wide patch renders once per cluster and role: eight clusters of a 1 MiB manifest
    are more than any render should take, though the file is small."""
    document = yaml.safe_load(GOOD.read_text())
    config = document["config"]
    manifest = {"cluster": {"inlineManifests": [{"name": "big", "contents": "x" * 2**20}]}}
    config["talos-fleet:defaults"]["roles"] = {"worker": {"patches": [manifest]}}
    one = config["talos-fleet:clusters"].pop("rack")
    assert load_stack_file(
        _write(tmp_path, yaml.safe_dump({"config": {**config, "talos-fleet:clusters": {"c0": one}}}))
    )
    for i in range(8):
        copy_of = copy.deepcopy(one)
        copy_of["endpoint"] = {"host": f"c{i}.example.net"}
        copy_of["network"] = {"cidr": f"10.{i}.0.0/24"}
        copy_of["diskEncryption"] = None
        copy_of["nodes"] = {f"c{i}-cp": {"role": "controlplane", "source": "metal", "address": f"10.{i}.0.11"}}
        config.setdefault("talos-fleet:clusters", {})[f"c{i}"] = {k: v for k, v in copy_of.items() if v is not None}
    path = _write(tmp_path, yaml.safe_dump(document), "Pulumi.wide.yaml")
    assert path.stat().st_size < MAX_FILE_BYTES
    where, message = _one_problem(lambda: load_stack_file(path))
    assert where.startswith("talos-fleet:clusters.c")
    assert f"{spec.MAX_RENDERED:,} values" in message


@pytest.mark.parametrize("digits", [30, 300, 400, 5000])
def test_a_long_number_gets_the_same_answer_on_both_paths(tmp_path: Path, digits: int) -> None:
    """yaml.v3 reads a number past 64 bits as a float, or keeps its text when no float holds it
    (go-yaml/yaml v3.0.1:resolve.go); the engine hands over that float or that text."""
    text = "4" * digits
    document = yaml.safe_load(HOMELAB.read_text())
    document["config"]["talos-fleet:defaults"]["roles"]["worker"]["vm"]["memoryMib"] = 1
    path = _write(tmp_path, yaml.safe_dump(document).replace("memoryMib: 1\n", f"memoryMib: {text}\n"))
    offline = _one_problem(lambda: load_stack_file(path))
    as_float = float(text)
    engine_value: Any = (text if math.isinf(as_float) else as_float) if digits > 19 else int(text)
    document["config"]["talos-fleet:defaults"]["roles"]["worker"]["vm"]["memoryMib"] = engine_value
    config, secret = engine_config_of(_write(tmp_path, json.dumps(document), "Pulumi.engine.yaml"))
    engine = _one_problem(lambda: load_pulumi_config(config, secret))
    assert offline[0] == engine[0] == "talos-fleet:defaults.roles.worker.vm.memoryMib"
    assert f"at most {spec.MAX_MEMORY_MIB:,}" in offline[1]
    assert f"at most {spec.MAX_MEMORY_MIB:,}" in engine[1]
