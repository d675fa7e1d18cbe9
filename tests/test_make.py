"""The make targets a new user runs, in a temporary copy of the repository.

Each test copies the work tree (not .git or .venv; .venv is a symlink to this checkout's, so
nothing is rebuilt) and runs make with a PATH that holds only basic tools and, where the test
wants one, the fake `pulumi` (tests/fakes/pulumi.py), which logs every call with its backend and
environment. So a tool installed on the developer's machine (pulumi, virsh) never takes part.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import engine_urn, run_stack_file

ROOT = Path(__file__).resolve().parent.parent
FAKE_PULUMI = ROOT / "tests" / "fakes" / "pulumi.py"
# What the Makefile's recipes call besides make, python and pulumi.
BASIC_TOOLS = ("bash", "sh", "ls", "sed", "grep", "paste", "expand", "sort", "mkdir", "rm", "touch", "cp", "chmod")
# The interpreter that built .venv: `make` checks .venv against $(PYTHON).
REAL_PYTHON = str(Path(ROOT / ".venv" / "bin" / "python").resolve())
NOT_COPIED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".pulumi-state"}


class Clone:
    def __init__(self, root: Path, bin_dir: Path, home: Path) -> None:
        self.root = root
        self.bin = bin_dir
        self.log = home / "pulumi.log"
        self.home = home

    def make(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "PULUMI_", "TALOS_FLEET_"))}
        clean.update(
            PATH=str(self.bin),
            FAKE_PULUMI_LOG=str(self.log),
            FAKE_PULUMI_HOME=str(self.home / "pulumi-home"),
            **(env or {}),
        )
        return subprocess.run(
            [str(self.bin / "make"), "--no-print-directory", f"PYTHON={env_python(env)}", *args],
            cwd=self.root,
            input=stdin,
            capture_output=True,
            text=True,
            env=clean,
            timeout=120,
            check=False,
        )

    def pulumi_calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def with_pulumi(self) -> Clone:
        wrapper = self.bin / "pulumi"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_PULUMI}" "$@"\n')
        wrapper.chmod(0o755)
        return self

    @property
    def backend(self) -> str:
        return f"file://{self.root}/.pulumi-state"


def env_python(env: dict[str, str] | None) -> str:
    return (env or {}).get("PYTHON", REAL_PYTHON)


def make_clone(tmp_path: Path, venv: bool = True) -> Clone:
    root = tmp_path / "repo"
    shutil.copytree(ROOT, root, ignore=lambda d, names: [n for n in names if d == str(ROOT) and n in NOT_COPIED])
    if venv:
        (root / ".venv").symlink_to(ROOT / ".venv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", *BASIC_TOOLS):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the make targets"
        (bin_dir / tool).symlink_to(found)
    return Clone(root, bin_dir, tmp_path)


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    return make_clone(tmp_path)


# ---------------------------------------------------------------------------------------------
# make destroy


def state_of(stack_file: Path, stack: str) -> dict[str, Any]:
    """A `pulumi stack export` of the stack as `make up` would leave it: every resource the
    program registers, with its engine URN and protect flag (apitype.UntypedDeployment)."""
    run = run_stack_file(stack_file)
    resources = [
        {
            "urn": engine_urn(r.urn).replace("urn:pulumi:test::", f"urn:pulumi:{stack}::", 1),
            "type": r.type,
            "custom": not r.type.startswith(("talos-fleet:", "pulumi:pulumi:")),
            "protect": r.protect,
        }
        for r in run.registrations
    ]
    return {"version": 3, "deployment": {"manifest": {}, "resources": resources}}


def deployed(clone: Clone, stack: str) -> dict[str, Any]:
    """Leave the stack as after `make up`: created on the make targets' backend, with its state."""
    clone.with_pulumi()
    state = state_of(clone.root / "stacks" / f"Pulumi.{stack}.yaml", stack)
    select = subprocess.run(
        [str(clone.bin / "pulumi"), "stack", "select", "--create", stack],
        env={**os.environ, "PULUMI_BACKEND_URL": clone.backend, "FAKE_PULUMI_HOME": str(clone.home / "pulumi-home"),
             "FAKE_PULUMI_LOG": str(clone.home / "setup.log")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "Created stack" in select.stdout
    (state_file,) = (clone.home / "pulumi-home").glob(f"*/{stack}.state.json")
    state_file.write_text(json.dumps(state))
    return state


def current_state(clone: Clone, stack: str) -> dict[str, Any]:
    (state_file,) = (clone.home / "pulumi-home").glob(f"*/{stack}.state.json")
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def commands(clone: Clone) -> list[str]:
    return [" ".join(c["argv"][:2]) for c in clone.pulumi_calls()]


@pytest.mark.parametrize("answer", ["", "yes\n", "homelab-typo\n"])
def test_destroy_refuses_without_the_stack_name(clone: Clone, answer: str) -> None:
    before = deployed(clone, "homelab")
    # Neither YES=1 nor a CONFIRM in the environment (rather than on the command line) is a yes.
    result = clone.make("destroy", "STACK=homelab", "YES=1", stdin=answer, env={"CONFIRM": "homelab"})
    assert result.returncode != 0
    assert "nothing was unprotected or deleted" in result.stderr
    assert "CONFIRM=homelab" in result.stderr, "the refusal says how automation confirms"
    # It said what it would delete, the protected PKI by name, before asking.
    assert "PROTECTED: homelab-secrets" in result.stdout
    assert "Type the stack name (homelab)" in result.stdout
    assert commands(clone) == ["stack export"], "nothing but reading the state before the answer"
    assert current_state(clone, "homelab") == before


@pytest.mark.parametrize(("how", "stdin"), [("typed", "homelab\n"), ("CONFIRM", "")])
def test_destroy_unprotects_then_destroys_on_the_up_backend(clone: Clone, how: str, stdin: str) -> None:
    deployed(clone, "homelab")
    args = ["destroy", "STACK=homelab"] + (["CONFIRM=homelab"] if how == "CONFIRM" else [])
    result = clone.make(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    calls = clone.pulumi_calls()
    assert [c["argv"] for c in calls] == [
        ["stack", "export", "--stack", "homelab"],
        ["state", "unprotect", "--all", "--yes", "--stack", "homelab"],
        ["destroy", "--yes", "--stack", "homelab"],
    ]
    assert {c["backend"] for c in calls} == {clone.backend}, "the same backend as make up"
    # Only the destroy runs the day-2 steps, and they must know it is a teardown.
    assert [c["destroy_env"] for c in calls] == [None, None, "1"]
    assert "resources" not in current_state(clone, "homelab")["deployment"]


def test_destroy_uses_the_callers_backend(clone: Clone) -> None:
    deployed(clone, "homelab")  # on the default backend, not on the caller's
    result = clone.make("destroy", "STACK=homelab", "CONFIRM=homelab", env={"PULUMI_BACKEND_URL": "s3://bucket/x"})
    assert result.returncode != 0
    assert "no stack named 'homelab' found" in result.stderr
    assert [(c["argv"][:2], c["backend"]) for c in clone.pulumi_calls()] == [(["stack", "export"], "s3://bucket/x")]


def test_destroy_of_an_empty_stack_deletes_nothing(clone: Clone) -> None:
    deployed(clone, "edge")
    state_file = next((clone.home / "pulumi-home").glob("*/edge.state.json"))
    state_file.write_text(json.dumps({"version": 3, "deployment": {"manifest": {}}}))
    result = clone.make("destroy", "STACK=edge", "CONFIRM=edge")
    assert result.returncode == 0, result.stderr
    assert "nothing to delete" in result.stdout
    assert commands(clone) == ["stack export"]


# ---------------------------------------------------------------------------------------------
# make secret, then make up


def needs_a_secret(clone: Clone) -> str:
    """A stack whose disks use a static key that is not set yet."""
    source = clone.root / "stacks" / "Pulumi.edge.yaml"
    document = yaml.safe_load(source.read_text())
    cluster = document["config"]["talos-fleet:clusters"]["edge-store-042"]
    cluster["diskEncryption"] = {"state": [{"static": "rack-luks"}]}
    document["config"].pop("talos-fleet:secrets", None)
    (clone.root / "stacks" / "Pulumi.shop.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return "shop"


def test_a_secret_can_be_set_before_the_first_up(clone: Clone) -> None:
    stack = needs_a_secret(clone)
    clone.with_pulumi()
    refused = clone.make("validate", f"STACK={stack}")
    assert refused.returncode != 0
    assert f"make secret STACK={stack} NAME=rack-luks" in refused.stderr, "the message gives the exact command"

    result = clone.make("secret", f"STACK={stack}", "NAME=rack-luks", stdin="hunter2-hunter2\n")
    assert result.returncode == 0, result.stderr
    calls = clone.pulumi_calls()
    assert [c["argv"] for c in calls] == [
        ["stack", "select", "--create", stack],
        ["config", "set", "--secret", "--path", "--stack", stack, "talos-fleet:secrets.rack-luks"],
    ]
    assert {c["backend"] for c in calls} == {clone.backend}
    assert calls[1]["stdin"] == "hunter2-hunter2\n"
    assert not calls[1]["value_in_argv"]
    assert all("hunter2" not in arg for c in calls for arg in c["argv"])

    assert clone.make("validate", f"STACK={stack}").returncode == 0
    up = clone.make("up", f"STACK={stack}", "YES=1")
    assert up.returncode == 0, up.stderr
    assert [c["argv"][:2] for c in clone.pulumi_calls()[2:]] == [["stack", "select"], ["up", "--stack"]]


@pytest.mark.parametrize("name", ["rack.luks", "rack[0]", "-rack", "x'; touch pwned; '", "$(touch pwned)", "", None])
def test_secret_names_are_checked_before_pulumi_runs(clone: Clone, name: str | None) -> None:
    clone.with_pulumi()
    # None: no NAME= argument, only an environment variable of that name (WSL sets one).
    args = ["secret", "STACK=edge"] + ([] if name is None else [f"NAME={name}"])
    result = clone.make(*args, stdin="value\n", env={"NAME": "my-laptop"})
    assert result.returncode == 2
    assert "is not a secret name" in result.stderr
    assert clone.pulumi_calls() == []
    assert not (clone.root / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# make up: everything offline first


def broken_host_stack(clone: Clone) -> str:
    """A valid libvirt stack whose firmware file exists on no host: preflight must fail."""
    source = clone.root / "stacks" / "Pulumi.homelab.yaml"
    document = yaml.safe_load(source.read_text())
    for src in document["config"]["talos-fleet:sources"].values():
        if src.get("kind") == "libvirt":
            src["firmware"] = "/nonexistent/OVMF_CODE.fd"
    (clone.root / "stacks" / "Pulumi.lab.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return "lab"


def test_up_without_pulumi_still_reports_the_host_problems(clone: Clone) -> None:
    stack = broken_host_stack(clone)
    result = clone.make("up", f"STACK={stack}")
    assert result.returncode != 0
    assert "/nonexistent/OVMF_CODE.fd does not exist" in result.stderr
    assert "the Pulumi CLI is not installed" in result.stderr


def test_up_without_pulumi_still_validates(clone: Clone) -> None:
    (clone.root / "stacks" / "Pulumi.bad.yaml").write_text("config:\n  talos-fleet:clusters: {}\n")
    result = clone.make("up", "STACK=bad")
    assert result.returncode != 0
    assert "stacks/Pulumi.bad.yaml:" in result.stderr
    assert "talos-fleet:" in result.stderr


def test_urls_and_plan_errors_through_make(clone: Clone) -> None:
    urls = clone.make("urls", "STACK=edge")
    assert urls.returncode == 0, urls.stderr
    assert "/metal-amd64.iso" in urls.stdout
    plan = clone.make("plan", "STACK=edge", "SCHEMA=missing.schema.json")
    assert plan.returncode == 2
    assert "missing.schema.json" in plan.stderr
    assert "Traceback" not in plan.stderr


# ---------------------------------------------------------------------------------------------
# The Python make builds .venv with


def fake_python(path: Path, version: str, log: Path) -> Path:
    """An interpreter that says it is `version` and logs every other call; `-m venv DIR` makes a
    virtualenv whose python is a fake of the same version (so pip installs nothing for real)."""
    path.write_text(
        f"""#!/bin/sh
case "$*" in
  *version_info*) echo {version}; exit 0;;
esac
echo "$0 $*" >> "{log}"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && chmod +x "$3/bin/python"
fi
exit 0
"""
    )
    path.chmod(0o755)
    return path


def test_an_old_python_gets_a_message_and_no_venv(tmp_path: Path) -> None:
    clone = make_clone(tmp_path, venv=False)
    log = tmp_path / "python.log"
    old = fake_python(tmp_path / "python3.10", "3.10", log)
    result = clone.make("venv", env={"PYTHON": str(old)})
    assert result.returncode != 0
    assert "is Python 3.10; talos-fleet needs Python 3.11 or newer" in result.stderr
    assert not (clone.root / ".venv").exists()
    assert not log.exists(), "nothing ran with the old Python"


@pytest.mark.parametrize("built_by", ["3.10", "broken"])
def test_a_venv_from_another_python_is_rebuilt(tmp_path: Path, built_by: str) -> None:
    clone = make_clone(tmp_path, venv=False)
    log = tmp_path / "python.log"
    stale = clone.root / ".venv" / "bin"
    stale.mkdir(parents=True)
    if built_by == "broken":
        (stale / "python").write_text("#!/bin/sh\nexit 1\n")
        (stale / "python").chmod(0o755)
    else:
        fake_python(stale / "python", built_by, tmp_path / "stale.log")
    new = fake_python(tmp_path / "python3.12", "3.12", log)
    result = clone.make("venv", env={"PYTHON": str(new)})
    assert result.returncode == 0, result.stderr
    assert "rebuilding it" in result.stdout
    calls = log.read_text().splitlines()
    assert calls[0] == f"{new} -m venv .venv"
    assert "-m pip install" in calls[1]
    assert "--require-hashes" in calls[1]
    assert calls[1].startswith(".venv/bin/python "), "the new virtualenv installs the lock files"
    assert (clone.root / ".venv" / ".installed").exists()
    assert not (tmp_path / "stale.log").exists(), "the old virtualenv's Python installed nothing"
