"""The offline commands: one message naming the file for every unusable input, never a
traceback; `urls` prints what the program exports as `bootMedia`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from talos_fleet import factory, patches
from talos_fleet.loader import load_stack_file
from tests.conftest import STACK_FILES
from tests.harness import fake_schematic_id, plain, run_stack_file

ROOT = Path(__file__).resolve().parent.parent
SCHEMATIC = "talos:imageFactory/schematic:Schematic"


def run(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def one_message(result: subprocess.CompletedProcess[str], *names: str) -> None:
    """One problem reported (a line, or the stack-file report's header and one problem), naming
    every one of `names`; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  - ")), result.stderr
    assert all(name in result.stderr for name in names), result.stderr


# ---------------------------------------------------------------------------------------------
# Unreadable files


@pytest.mark.parametrize("command", ["validate", "render", "snapshot", "urls", "plan"])
def test_a_missing_stack_file_is_one_message(command: str) -> None:
    result = run("-m", "talos_fleet", command, "stacks/Pulumi.nope.yaml")
    assert result.returncode != 0
    assert result.stdout == ""
    one_message(result, "stacks/Pulumi.nope.yaml", "cannot read")


def test_a_directory_is_not_a_stack_file(tmp_path: Path) -> None:
    result = run("-m", "talos_fleet", "validate", str(tmp_path))
    assert result.returncode != 0
    one_message(result, str(tmp_path))


def test_validate_reports_every_file() -> None:
    result = run("-m", "talos_fleet", "validate", "stacks/Pulumi.nope.yaml", str(STACK_FILES[0]))
    assert result.returncode == 1
    assert f"{STACK_FILES[0]}: ok" in result.stdout, "a missing file does not hide the others"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read it"),
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON Schema"),
        ('{"type": 5}', "not a valid JSON Schema"),
    ],
)
def test_plan_schema_problems_are_one_message(tmp_path: Path, content: str | bytes | None, says: str) -> None:
    schema = tmp_path / "config.schema.json"
    if isinstance(content, bytes):
        schema.write_bytes(content)
    elif content is not None:
        schema.write_text(content)
    result = run("-m", "talos_fleet", "plan", "stacks/Pulumi.edge.yaml", "--base", "none", "--schema", str(schema))
    assert result.returncode == 2
    assert result.stdout == "", "no plan without a usable schema"
    one_message(result, str(schema), says, "config.schema.json")


def test_preflight_needs_a_readable_stack_file() -> None:
    assert run("-m", "tools.preflight").returncode == 2
    result = run("-m", "tools.preflight", "stacks/Pulumi.nope.yaml")
    assert result.returncode != 0
    one_message(result, "stacks/Pulumi.nope.yaml")


def test_credentials_into_an_unwritable_place_are_one_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("-m", "tools.write_credentials", "kubeconfig", str(blocker / "dir"), stdin='{"c": "x"}')
    assert result.returncode == 2
    one_message(result, str(blocker / "dir"))
    not_utf8 = subprocess.run(
        [sys.executable, "-m", "tools.write_credentials", "kubeconfig", str(tmp_path)],
        cwd=ROOT, input=b"\xff\xfe", capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert not_utf8.returncode == 1
    assert b"Traceback" not in not_utf8.stderr


# ---------------------------------------------------------------------------------------------
# Commands in messages name the stack


def test_the_missing_secret_message_is_a_command_for_this_stack(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.edge.yaml").read_text())
    cluster = next(iter(document["config"]["talos-fleet:clusters"].values()))
    cluster["diskEncryption"] = {"state": [{"static": "rack-luks"}]}
    stack_file = tmp_path / "Pulumi.store-7.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    result = run("-m", "talos_fleet", "validate", str(stack_file))
    assert result.returncode == 1
    assert "`make secret STACK=store-7 NAME=rack-luks`" in result.stderr


@pytest.mark.parametrize(
    ("name", "ok"), [("rack-luks", True), ("Matchbox_CA", True), ("a.b", False), ("-x", False), ("a'b", False)]
)
def test_secret_names(name: str, ok: bool) -> None:
    result = run("-m", "talos_fleet", "secret-name", "--", name)
    assert (result.returncode == 0) is ok
    if not ok:
        one_message(result, repr(name))


# ---------------------------------------------------------------------------------------------
# urls: offline, and what the program exports


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_urls_prints_the_factory_urls_per_cluster_and_architecture(stack_file: Path) -> None:
    fleet = load_stack_file(stack_file)
    result = run("-m", "talos_fleet", "urls", str(stack_file))
    assert result.returncode == 0, result.stderr
    for cname, cluster in fleet.clusters.items():
        schematic_id = patches.schematic_id(fleet.image(cluster))
        assert schematic_id is not None, "the shipped stacks' schematics are all computable"
        version = fleet.talos_version(cluster)
        assert f"# schematic id: {schematic_id}" in result.stdout
        for arch in fleet.architectures(cname):
            # The shapes the Image Factory serves (FACTS.md, "Image Factory").
            assert f"https://factory.talos.dev/image/{schematic_id}/{version}/metal-{arch}.iso" in result.stdout
            assert f"https://pxe.factory.talos.dev/pxe/{schematic_id}/{version}/metal-{arch}" in result.stdout
            assert f"factory.talos.dev/metal-installer/{schematic_id}:{version}" in result.stdout


def test_urls_without_a_computable_id_shows_the_schematic_and_how_to_get_it(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.edge.yaml").read_text())
    document["config"]["talos-fleet:defaults"]["image"]["kernelArgs"] = ["talos.dashboard.disabled=1", "it's"]
    stack_file = tmp_path / "Pulumi.odd.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    assert patches.schematic_id(load_stack_file(stack_file).defaults.image) is None
    result = run("-m", "talos_fleet", "urls", str(stack_file))
    assert result.returncode == 0, result.stderr
    assert "POST" in result.stdout
    assert "https://factory.talos.dev/schematics" in result.stdout
    assert "it's" in result.stdout, "the schematic itself is shown"
    assert "/image/<schematic-id>/" in result.stdout


def test_boot_media_export_is_what_urls_computes(valid_stack: Path) -> None:
    fleet = load_stack_file(valid_stack)
    program = run_stack_file(valid_stack)
    exported = plain(program.export("bootMedia"))
    assert set(exported) == set(fleet.clusters)
    for cname, cluster in fleet.clusters.items():
        (schematic,) = [r for r in program.of_type(SCHEMATIC) if r.name == f"{cname}-schematic"]
        schematic_id = fake_schematic_id(str(schematic.inputs["schematic"]))
        assert set(exported[cname]) == set(fleet.architectures(cname))
        for arch, media in exported[cname].items():
            expected = factory.factory_urls(schematic_id, fleet.talos_version(cluster), arch).as_dict()
            expected["installer"] += f"#{arch}"  # the fake factory marks the architecture (tests/harness.py)
            assert media == {"schematicId": schematic_id, **expected}
