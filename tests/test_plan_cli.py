"""`make plan` end to end: a throwaway git repository with this project's code and stacks, the
plan command run the way the Makefile runs it, and the patch lint (JSON Schema, talosctl)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from talos_fleet import lint
from talos_fleet.loader import load_stack_file
from talos_fleet.snapshot import snapshot
from tests.conftest import ROOT, SHARED_TALOS, VALID_STACKS
from tests.harness import bump_talos, mutated_stack

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "PATH": "/usr/bin:/bin",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """This project's code and stacks, committed on `main`."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "talos_fleet", repo / "talos_fleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stacks", repo / "stacks")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def plan(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PATH without talosctl: the talosctl lint has its own tests below.
    env = {**GIT_ENV, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "talos_fleet", "plan", "stacks/Pulumi.homelab.yaml", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def edit_homelab(repo: Path) -> None:
    stacks = repo / "stacks"
    mutated_stack(stacks / "Pulumi.homelab.yaml", stacks, bump_talos)


def test_an_unchanged_checkout_plans_no_changes(repo: Path) -> None:
    result = plan(repo, "--base", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "**No changes.**" in result.stdout
    assert "rendered with this checkout's code" not in result.stdout, "the base renders itself"


def test_the_default_base_is_the_merge_base_with_main(repo: Path) -> None:
    git(repo, "checkout", "-qb", "change")
    edit_homelab(repo)
    git(repo, "commit", "-qam", "bump Talos")
    result = plan(repo, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    kinds = {n["hostname"]: [a["kind"] for a in n["actions"]] for c in data["clusters"] for n in c["nodes"]}
    assert set(kinds) == {"cp-1", "cp-2", "cp-3", "worker-1", "worker-2"}
    assert all(k == ["talos-upgrade"] for k in kinds.values())
    assert data["base_ref"] == f"the merge-base with main ({git(repo, 'rev-parse', 'main')[:12]})"


def test_a_base_from_before_snapshots_is_rendered_with_this_code(repo: Path) -> None:
    main = repo / "talos_fleet" / "__main__.py"
    real = main.read_text()
    main.write_text("import sys\nsys.exit(\"argument command: invalid choice: 'snapshot'\")\n")
    git(repo, "commit", "-qam", "old code")
    main.write_text(real)
    edit_homelab(repo)
    result = plan(repo, "--base", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "rendered with this checkout's code" in result.stdout
    assert "**Talos upgrade**" in result.stdout


def test_a_stack_new_since_the_base_is_all_new(repo: Path) -> None:
    shutil.copy(repo / "stacks" / "Pulumi.homelab.yaml", repo / "stacks" / "Pulumi.lab2.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "talos_fleet", "plan", "stacks/Pulumi.lab2.yaml", "--base", "HEAD", "--format", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "does not exist at HEAD" in data["base_note"]
    assert {c["status"] for c in data["clusters"]} == {"new"}


def test_a_bad_base_ref_or_stack_is_a_message_not_a_traceback(repo: Path) -> None:
    result = plan(repo, "--base", "no-such-ref")
    assert result.returncode == 2
    assert "no-such-ref" in result.stderr
    assert "Traceback" not in result.stderr
    (repo / "stacks" / "Pulumi.homelab.yaml").write_text("config:\n  talos-fleet:clusters: {}\n")
    result = plan(repo, "--base", "HEAD")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_a_refused_change_still_prints_the_plan_and_fails(repo: Path) -> None:
    path = repo / "stacks" / "Pulumi.homelab.yaml"
    path.write_text(path.read_text().replace("talosVersion: v1.13.10", "talosVersion: v1.13.9"))
    result = plan(repo, "--base", "HEAD")
    assert result.returncode == 1
    assert "downgrade is refused" in result.stdout
    assert "downgrade is refused" in result.stderr


# ---------------------------------------------------------------------------------------------
# Patch lint


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"machine": {"type": "object", "properties": {"nodeLabels": {"type": "object"}}}},
    "required": ["version"],
}


def test_the_schema_lint_names_node_and_document(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    strict = {**SCHEMA, "properties": {"machine": {"type": "object", "additionalProperties": False}}}
    schema.write_text(json.dumps(strict))
    head = snapshot(load_stack_file(ROOT / "stacks" / "Pulumi.edge.yaml"))
    problems = lint.schema_problems(head, schema)
    assert problems, "`machine` documents with any field fail this schema"
    assert all(p.startswith("edge-store-042/edge-042-a: ") for p in problems)
    assert any("node · v1alpha1: Additional properties are not allowed" in p for p in problems)
    assert not any("config generation" in p for p in problems), "the generation's inputs are no patch"
    schema.write_text(json.dumps(SCHEMA))
    assert lint.schema_problems(head, schema) == [], "patches are partial: `required` is not enforced"


@pytest.mark.skipif(not SHARED_TALOS.exists(), reason="../shared/talos (Talos JSON schemas) is not beside this clone")
@pytest.mark.parametrize("stack", VALID_STACKS, ids=lambda p: p.stem)
def test_every_document_passes_the_talos_1_13_schema(stack: Path) -> None:
    head = snapshot(load_stack_file(stack))
    assert lint.schema_problems(head, SHARED_TALOS / "config.v1.13.9.schema.json") == []


class FakeTalosctl:
    """Answers like talosctl: gen config and machineconfig patch write files; validate fails when
    the node's config holds `bad`."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.directories: dict[Path, int] = {}

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        out = Path(args[args.index("--output") + 1]) if "--output" in args else None
        patches = [Path(a[1:]).read_text() for a in args if a.startswith("@")]
        if args[0] == "gen":
            assert out is not None
            # <tmp>/<cluster>/<role>/<role>.yaml: the throwaway secrets live under <tmp>.
            self.directories[out.parents[2]] = out.parents[2].stat().st_mode & 0o777
            out.write_text("version: v1alpha1\n" + "".join(patches))
        elif args[:2] == ["machineconfig", "patch"]:
            assert out is not None
            out.write_text(Path(args[2]).read_text() + "".join(patches))
        elif args[0] == "validate" and "bad" in Path(args[args.index("--config") + 1]).read_text():
            return subprocess.CompletedProcess(args, 1, "", "1 error occurred:\n\t* bad value\n")
        return subprocess.CompletedProcess(args, 0, "", "")


def test_talosctl_validates_each_node_on_one_generated_config_per_role() -> None:
    head = snapshot(load_stack_file(ROOT / "stacks" / "Pulumi.homelab.yaml"))
    fake = FakeTalosctl()
    assert lint.talosctl_problems(head, "talosctl", run=fake) == []
    generated = [c for c in fake.calls if c[0] == "gen"]
    assert sorted(c[c.index("--output-types") + 1] for c in generated) == ["controlplane", "worker"]
    assert all(c[c.index("--talos-version") + 1] == "v1.13" for c in generated)
    for call in generated:
        role = call[call.index("--output-types") + 1]
        node = next(n for n in head.clusters[0].nodes if n.role == role)
        sent = [Path(a[1:]).name for a in call if a.startswith("@")]
        assert len(sent) == sum(d.layer in ("cluster", "role") for d in node.documents), "every role document"
    validated = [c for c in fake.calls if c[0] == "validate"]
    assert len(validated) == 5
    assert all(c[-3:] == ["--mode", "metal", "--strict"] for c in validated)
    assert list(fake.directories.values()) == [0o700], "private while it holds generated secrets"
    assert not any(d.exists() for d in fake.directories), "and deleted afterwards"


def test_a_talosctl_failure_names_the_node_and_the_document(tmp_path: Path) -> None:
    def bad_label(doc: dict[str, Any]) -> None:
        nodes = doc["config"]["talos-fleet:clusters"]["homelab"]["nodes"]
        nodes["worker-2"]["patches"] = [{"machine": {"sysctls": {"bad": "1"}}}]

    path = mutated_stack(ROOT / "stacks" / "Pulumi.homelab.yaml", tmp_path, bad_label)
    problems = lint.talosctl_problems(snapshot(load_stack_file(path)), "talosctl", run=FakeTalosctl())
    assert problems == [
        "homelab/worker-2: node · v1alpha1 from clusters.homelab.nodes.worker-2.patches[0]: "
        "talosctl validate: 1 error occurred: * bad value"
    ]


def test_a_base_with_an_older_snapshot_format_is_rendered_by_this_checkout(repo: Path) -> None:
    """A base whose own code writes snapshot format 1 (before the desired state was in it)."""
    module = repo / "talos_fleet" / "snapshot.py"
    text = module.read_text()
    older = {
        "FORMAT: Literal[2] = 2": "FORMAT: Literal[1] = 1",
        "    format: Literal[2] = FORMAT\n": "    format: Literal[1] = FORMAT\n",
        "    resources: tuple[Resource, ...]\n": "",
        "        resources=desired_state(fleet).resources,\n": "",
    }
    for new, old in older.items():
        assert new in text, new
        text = text.replace(new, old)
    module.write_text(text)
    git(repo, "commit", "-qam", "format 1")
    git(repo, "checkout", "-qb", "change")
    shutil.copy(ROOT / "talos_fleet" / "snapshot.py", module)
    edit_homelab(repo)
    git(repo, "commit", "-qam", "format 2 and a Talos bump")
    result = plan(repo, "--base", "main", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert "rendered with this checkout's code" in found["base_note"]
    assert found["base"]["format"] == 2


def test_a_disk_loss_the_stack_did_not_ask_for_fails_the_plan_until_acknowledged(repo: Path) -> None:
    stacks = repo / "stacks"
    fleet = load_stack_file(stacks / "Pulumi.homelab.yaml")
    hosts = [h for _, h, _ in fleet.all_nodes()]

    def new_pool(document: dict[str, Any]) -> None:
        document["config"]["talos-fleet:sources"]["kvm"]["pool"] = "fast"

    mutated_stack(stacks / "Pulumi.homelab.yaml", stacks, new_pool)
    refused = plan(repo, "--base", "HEAD")
    assert refused.returncode == 1
    assert all(f"{h}: disk system" in refused.stderr for h in hosts), refused.stderr
    assert "acknowledgeDataLoss" in refused.stdout

    def acknowledged(document: dict[str, Any]) -> None:
        document["config"]["talos-fleet:clusters"]["homelab"]["acknowledgeDataLoss"] = hosts

    mutated_stack(stacks / "Pulumi.homelab.yaml", stacks, acknowledged)
    accepted = plan(repo, "--base", "HEAD")
    assert accepted.returncode == 0, accepted.stderr
    assert "> [!WARNING]" in accepted.stdout
    assert all(f"{h}: disk homelab-{h}-system is replaced" in accepted.stdout for h in hosts)
