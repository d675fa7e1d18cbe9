"""Every patch the program renders is valid Talos 1.13 config.

Checked with `../shared/talos/lint-patch` against the Talos v1.13.9 machine-config JSON schema
when the shared folder is beside the clone (CI has it). A user's clone has no `../shared`: the
test then skips and says so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from talos_fleet import patches
from talos_fleet.loader import load_stack_file
from tests.conftest import SHARED_TALOS, VALID_STACKS, stack_id

LINT = SHARED_TALOS / "lint-patch"
needs_shared = pytest.mark.skipif(
    not LINT.exists(), reason=f"{LINT} not found: Talos schema lint runs only with ../shared beside the clone (CI)"
)


def _rendered(stack: Path, out: Path) -> list[Path]:
    fleet = load_stack_file(stack)
    secrets = {name: "placeholder-passphrase" for name in fleet.secrets}
    rendered = patches.render_fleet(
        fleet,
        secrets,
        lambda cname, version, arch: f"factory.talos.dev/metal-installer/0123abcd:{version}",
    )
    files: list[Path] = []
    for label, texts in rendered.items():
        for i, text in enumerate(texts):
            path = out / f"{label.replace('/', '-')}-{i}.yaml"
            path.write_text(text)
            files.append(path)
    return files


@needs_shared
@pytest.mark.parametrize("stack", VALID_STACKS, ids=stack_id)
def test_every_rendered_patch_is_valid_talos_1_13(stack: Path, tmp_path: Path) -> None:
    files = _rendered(stack, tmp_path)
    assert files
    result = subprocess.run(
        [sys.executable, str(LINT), "--talos", "v1.13", *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok") >= len(files)


@needs_shared
def test_the_lint_would_catch_a_deprecated_field(tmp_path: Path) -> None:
    """The check can fail: a v1alpha1 hostname (deprecated in favour of HostnameConfig) is refused."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("machine:\n  network:\n    hostname: node-a\n")
    result = subprocess.run([sys.executable, str(LINT), "--talos", "v1.13", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
