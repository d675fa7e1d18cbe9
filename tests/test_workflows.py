"""The GitHub workflows: valid for GitHub Actions (the workflow schema check-jsonschema vendors,
so offline), and they do nothing but call Makefile targets and well-known actions."""

from __future__ import annotations

import json
import os
import re
import shutil
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
    assert [w.stem for w in WORKFLOWS] == ["deploy", "plan-comment", "preview", "pull-request", "status"]


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
        # A newer run queued in a concurrency group cancels the pending one: a preview must never
        # share deploy's group, or it would cancel a deploy waiting for its reviewers.
        deploy = load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"]["up"]
        assert job["concurrency"]["group"] != deploy["concurrency"]["group"]
    else:
        assert workflow["on"] == {"push": {"branches": ["main"]}}


# ---------------------------------------------------------------------------------------------
# status.yml: the opt-in scheduled `make status`, one issue per stack

STATUS = ROOT / ".github" / "workflows" / "status.yml"
STATUS_LABEL = "talos-fleet-status"


def status_marker(stack: str) -> str:
    return f"<!-- talos-fleet-status: {stack} -->"


def github_scripts(workflow: dict[str, Any]) -> list[str]:
    return [s["with"]["script"] for s in steps(workflow) if s.get("uses", "").startswith("actions/github-script@")]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_github_scripts_take_expressions_only_through_env(path: Path) -> None:
    """A `${{ }}` inside a script is pasted into JavaScript before it runs (script injection)."""
    for script in github_scripts(load(path)):
        assert "${{" not in script


def test_status_is_opt_in_scheduled_and_never_runs_pull_request_code() -> None:
    workflow = load(STATUS)
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}, "no pull_request/push: secrets are used"
    (schedule,) = workflow["on"]["schedule"]
    assert len(schedule["cron"].split()) == 5
    assert workflow["jobs"]["stacks"]["if"] == "vars.TALOS_FLEET_STATUS == 'true'"
    assert workflow["permissions"] == {"contents": "read", "issues": "write"}
    assert "pull-requests" not in json.dumps(workflow["permissions"])


def test_status_runs_like_deploy_on_the_runner_and_environment_of_each_stack() -> None:
    status, deploy = load(STATUS), load(ROOT / ".github" / "workflows" / "deploy.yml")
    assert status["jobs"]["stacks"]["steps"] == deploy["jobs"]["stacks"]["steps"], "stacks from `make stacks`"
    job, up = status["jobs"]["status"], deploy["jobs"]["up"]
    for key in ("needs", "strategy", "runs-on", "environment", "env"):
        assert job[key] == up[key], key
    assert "self-hosted" in job["runs-on"]
    assert job["environment"] == "${{ matrix.stack }}"
    # Its own group: a run queued in deploy's pulumi-<stack> group would cancel a pending deploy.
    assert job["concurrency"]["group"] != up["concurrency"]["group"]
    assert job["concurrency"]["cancel-in-progress"] is False


def test_status_writes_the_markdown_report_the_issue_step_reads() -> None:
    job = load(STATUS)["jobs"]["status"]
    (make,) = [s for s in job["steps"] if "run" in s]
    words = make["run"].split()
    assert words[:2] == ["make", "status"]
    assert set(words[2:]) == {'STACK="$STACK"', "FORMAT=markdown", 'OUT="status/$STACK.md"'}
    assert make["continue-on-error"] is True, "a failing status must still update the issue"
    (script,) = github_scripts(load(STATUS))
    issue_step = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/github-script@"))
    assert issue_step["if"] == "always()"
    assert issue_step["env"]["OUTCOME"] == f"${{{{ steps.{make['id']}.outcome }}}}"
    assert "const file = `status/${stack}.md`;" in script


NODE_HARNESS = r"""
const fs = require('fs');
const state = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const calls = [];
const github = {
  paginate: async (method, params) => (await method(params)).data,
  rest: { issues: {
    createLabel: async (p) => {
      calls.push(['createLabel', p]);
      if (state.labelError) { const e = new Error('label'); e.status = state.labelError; throw e; }
      return { data: {} };
    },
    listForRepo: async (p) => { calls.push(['listForRepo', p]); return { data: state.issues }; },
    update: async (p) => { calls.push(['update', p]); return { data: {} }; },
    create: async (p) => { calls.push(['create', p]); return { data: {} }; },
  } },
};
const context = { repo: { owner: 'acme', repo: 'fleet' }, serverUrl: 'https://github.com', runId: 42 };
let failed = null;
const core = { setFailed: (m) => { failed = m; } };
const script = fs.readFileSync(process.argv[3], 'utf8');
new Function('github', 'context', 'core', 'require', 'process', `return (async () => {\n${script}\n})();`)(
  github, context, core, require, process,
).then(() => console.log(JSON.stringify({ calls, failed })), (e) => { console.error(String(e)); process.exit(3); });
"""


def run_issue_script(
    tmp_path: Path, outcome: str, issues: list[dict[str, Any]], report: str | None, label_error: int | None = None
) -> dict[str, Any]:
    """The workflow's issue step, run by node against a fake GitHub API that records each call."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the issue script's behaviour is not exercised (its static checks are)")
    (script,) = github_scripts(load(STATUS))
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "script.js").write_text(script)
    (tmp_path / "harness.js").write_text(NODE_HARNESS)
    (tmp_path / "state.json").write_text(json.dumps({"issues": issues, "labelError": label_error}))
    if report is not None:
        (tmp_path / "status").mkdir()
        (tmp_path / "status" / "edge.md").write_text(report)
    env = {"PATH": os.environ.get("PATH", ""), "STACK": "edge", "OUTCOME": outcome}
    result = subprocess.run(
        [node, "harness.js", "state.json", "script.js"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        return {"error": result.stderr}
    outcome_json: dict[str, Any] = json.loads(result.stdout)
    return outcome_json


def writes(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, params) for name, params in result["calls"] if name in ("create", "update")]


def issue(number: int, stack: str, state: str) -> dict[str, Any]:
    return {"number": number, "state": state, "body": f"{status_marker(stack)}\nold report", "labels": [STATUS_LABEL]}


def test_a_problem_opens_one_labelled_issue_led_by_the_stacks_marker(tmp_path: Path) -> None:
    result = run_issue_script(tmp_path, "failure", [issue(3, "homelab", "open")], "| node | drift |\n")
    ((name, params),) = writes(result)
    assert name == "create"
    assert params["labels"] == [STATUS_LABEL]
    assert params["body"].split("\n", 1)[0] == status_marker("edge")
    assert "| node | drift |" in params["body"]
    assert "edge" in params["title"]
    assert result["failed"], "the job must fail while the stack needs attention"
    listed = next(p for n, p in result["calls"] if n == "listForRepo")
    assert (listed["labels"], listed["state"]) == (STATUS_LABEL, "all")


def test_a_problem_reopens_and_updates_the_stacks_own_issue(tmp_path: Path) -> None:
    issues = [issue(3, "homelab", "closed"), issue(5, "edge", "closed"), issue(9, "edge-store", "closed")]
    result = run_issue_script(tmp_path, "failure", issues, "drifted\n")
    ((name, params),) = writes(result)
    assert (name, params["issue_number"], params["state"]) == ("update", 5, "open")
    assert "drifted" in params["body"]


def test_a_clean_stack_closes_its_issue_and_opens_none(tmp_path: Path) -> None:
    result = run_issue_script(tmp_path, "success", [issue(5, "edge", "open")], "all clean\n")
    ((name, params),) = writes(result)
    assert (name, params["issue_number"], params["state"]) == ("update", 5, "closed")
    assert "all clean" in params["body"]
    assert result["failed"] is None
    assert writes(run_issue_script(tmp_path / "none", "success", [issue(3, "homelab", "open")], "ok\n")) == []


def test_status_that_could_not_run_still_reports_and_fails(tmp_path: Path) -> None:
    result = run_issue_script(tmp_path, "failure", [], None)
    ((name, params),) = writes(result)
    assert name == "create"
    assert "did not produce a report" in params["body"]
    assert "https://github.com/acme/fleet/actions/runs/42" in params["body"]
    assert result["failed"]


def test_an_existing_label_is_fine_and_any_other_api_error_fails(tmp_path: Path) -> None:
    assert writes(run_issue_script(tmp_path / "a", "failure", [], "x\n", label_error=422))
    assert "error" in run_issue_script(tmp_path / "b", "failure", [], "x\n", label_error=500)


def test_a_huge_report_is_cut_to_fit_an_issue(tmp_path: Path) -> None:
    result = run_issue_script(tmp_path, "failure", [], "x" * 200_000)
    ((_, params),) = writes(result)
    assert len(params["body"]) <= 65536
    assert "the whole report is in https://github.com/acme/fleet/actions/runs/42" in params["body"]


def test_the_issue_is_led_by_the_status_reports_own_marker_once(tmp_path: Path) -> None:
    from talos_fleet import status

    assert status.marker("edge") == status_marker("edge"), "the workflow finds issues by the report's first line"
    result = run_issue_script(tmp_path, "failure", [issue(5, "edge", "open")], f"{status.marker('edge')}\n## edge\n")
    ((_, params),) = writes(result)
    lines = params["body"].splitlines()
    assert lines[0] == status_marker("edge")
    assert lines.count(status_marker("edge")) == 1
