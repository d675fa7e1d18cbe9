"""The base of a plan: the stack as it was at a git ref, rendered by that ref's own code.

Pulumi compares what the program made last time with what it makes now; the closest offline
stand-in is the base commit's code rendering the base commit's stack file. So the base commit is
unpacked into a temporary directory and asked for its snapshot (`python -m talos_fleet snapshot`).
A base older than snapshots, or with another snapshot format, is rendered by this checkout's code
instead, and the plan says so.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.snapshot import FORMAT, Snapshot, snapshot

MAIN_BRANCHES = ("origin/main", "main")


class BaseError(Exception):
    """The base cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Base:
    ref: str
    """The ref as the user gave it, with the commit it names."""
    snapshot: Snapshot | None
    """None when the stack file does not exist at the base: every cluster is new."""
    note: str | None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)


def repo_root(path: Path) -> Path:
    found = _git(path.parent, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        raise BaseError(f"{path} is not in a git checkout; a plan against a base needs one (or pass --base none)")
    return Path(found.stdout.decode().strip())


def default_base(root: Path) -> str:
    """The merge-base of HEAD with the main branch: what a pull request is compared with."""
    for branch in MAIN_BRANCHES:
        found = _git(root, "merge-base", "HEAD", branch)
        if found.returncode == 0:
            return found.stdout.decode().strip()
    raise BaseError("no main branch to compare with (tried origin/main, main); name one with BASE=<git ref>")


def read_base(stack_file: Path, ref: str) -> Base:
    stack_file = stack_file.resolve()
    root = repo_root(stack_file)
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise BaseError(f"{ref!r} is not a commit here; fetch it first (e.g. git fetch origin main) or pick another")
    sha = commit.stdout.decode().strip()
    label = ref if ref.startswith(sha[:7]) else f"{ref} ({sha[:12]})"
    relative = stack_file.relative_to(root).as_posix()
    if _git(root, "cat-file", "-e", f"{sha}:{relative}").returncode != 0:
        return Base(label, None, f"{relative} does not exist at {ref}: everything in it is new.")
    with tempfile.TemporaryDirectory(prefix="talos-fleet-base-") as tmp:
        _unpack(root, sha, Path(tmp))
        own = subprocess.run(
            [sys.executable, "-m", "talos_fleet", "snapshot", relative], cwd=tmp, capture_output=True, check=False
        )
        if own.returncode == 0:
            try:
                return Base(label, Snapshot.model_validate_json(own.stdout), None)
            except ValidationError:
                pass  # another snapshot format: render with this checkout's code below
        elif b"invalid choice" not in own.stderr:
            raise BaseError(f"the stack file at {ref} does not render: {own.stderr.decode().strip()}")
        try:
            fleet = load_stack_file(Path(tmp) / relative)
        except SpecError as error:
            raise BaseError(f"the stack file at {ref} does not validate with this checkout's code: {error}") from None
        note = (
            f"The base was rendered with this checkout's code: the code at {ref} predates snapshot "
            f"format {FORMAT}. Changes made by the code itself between the two are not shown."
        )
        return Base(label, snapshot(fleet), note)


def _unpack(root: Path, sha: str, into: Path) -> None:
    archive = into / "base.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", "--format=tar", sha], cwd=root, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
