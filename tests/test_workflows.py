"""The GitHub workflows: valid for GitHub Actions (the workflow schema check-jsonschema vendors,
so offline), and they do nothing but call Makefile targets and well-known actions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# Owners whose actions GitHub and Pulumi publish and maintain.
WELL_KNOWN = re.compile(
    r"^(actions/(checkout|setup-python|upload-artifact|download-artifact|github-script)|pulumi/actions)@v\d+$"
)
SHELL_PLUMBING = {"echo"}


def load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_there_are_the_four_workflows() -> None:
    assert [w.stem for w in WORKFLOWS] == ["deploy", "plan-comment", "preview", "pull-request"]


def test_workflows_match_the_github_actions_schema() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_steps_call_only_make_targets_and_well_known_actions(path: Path) -> None:
    targets = makefile_targets()
    for step in steps(load(path)):
        if "uses" in step:
            assert WELL_KNOWN.match(step["uses"]), step["uses"]
            continue
        command = step["run"]
        assert "${{" not in command, "expressions go through env:, never into a shell line"
        invoked = re.findall(r"\bmake\b((?:\s+(?:--?[a-z-]+|[A-Z_]+=\S+|[a-z][a-z-]*))+)", command)
        assert invoked, f"{path.name}: {command!r} calls no Makefile target"
        for call in invoked:
            named = [w for w in call.split() if not w.startswith("-") and "=" not in w]
            assert named, command
            assert set(named) <= targets, (command, named)
        first_words = {line.split()[0] for line in command.splitlines() if line.strip()}
        assert first_words <= {"make", *SHELL_PLUMBING}, command


def test_pull_request_workflow_runs_tests_then_plans_with_no_secrets() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "pull-request.yml")
    text = (ROOT / ".github" / "workflows" / "pull-request.yml").read_text()
    assert workflow["permissions"] == {"contents": "read"}
    assert "secrets." not in text, "must work for forks, which get no secrets"
    assert workflow["jobs"]["plan"]["needs"] == "test"
    assert [s["run"] for s in steps(workflow) if "run" in s] == ["make test", "make plans OUT=plan"]
    checkout = next(s for s in workflow["jobs"]["plan"]["steps"] if s["uses"].startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0, "the base branch must be fetched"


def test_comments_are_found_by_the_plans_own_marker() -> None:
    from talos_fleet import report

    text = (ROOT / ".github" / "workflows" / "plan-comment.yml").read_text()
    pattern = re.search(r"/\^(<!-- talos-fleet-plan: .*? -->)\$/\.test\(marker\)", text)
    assert pattern is not None
    regex = pattern.group(1)
    for stack in ("homelab", "multi-region"):
        assert re.fullmatch(regex, report.marker(stack)), "the workflow must recognise our marker"
    workflow = load(ROOT / ".github" / "workflows" / "plan-comment.yml")
    assert "actions/checkout" not in text, "the pull request's code never runs with write access"
    assert workflow["permissions"] == {"actions": "read", "pull-requests": "write"}


@pytest.mark.parametrize("name", ["preview", "deploy"])
def test_infrastructure_jobs_are_opt_in_and_behind_the_stacks_environment(name: str) -> None:
    workflow = load(ROOT / ".github" / "workflows" / f"{name}.yml")
    lister, job = workflow["jobs"]["stacks"], workflow["jobs"]["preview" if name == "preview" else "up"]
    assert f"vars.TALOS_FLEET_{name.upper()} == 'true'" in lister["if"]
    assert job["environment"] == "${{ matrix.stack }}"
    assert "self-hosted" in job["runs-on"]
    assert job["concurrency"]["cancel-in-progress"] is False, "never interrupt a running pulumi"
    if name == "preview":
        assert "github.event.pull_request.head.repo.full_name == github.repository" in lister["if"]
    else:
        assert workflow["on"] == {"push": {"branches": ["main"]}}
