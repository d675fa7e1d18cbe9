from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
GOOD_FIXTURES = sorted((ROOT / "tests" / "fixtures" / "good").glob("*.yaml"))
BAD_FIXTURES = sorted((ROOT / "tests" / "fixtures" / "bad").glob("*.yaml"))
# Every valid stack file we ship or test with: the graph and lint tests cover all of them.
VALID_STACKS = STACK_FILES + GOOD_FIXTURES
SHARED_TALOS = ROOT.parent / "shared" / "talos"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI explores the same examples every run, so a submission never lands or fails by chance;
# local runs keep exploring new ones (and Hypothesis replays any failure it found).
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def stack_id(path: Path) -> str:
    return path.name


@pytest.fixture(params=VALID_STACKS, ids=stack_id)
def valid_stack(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path
