"""Read the stack's config as the engine hands it to the program; nothing else reads config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def engine_config() -> tuple[dict[str, Any], set[str], Path | None]:
    """Every config key of the stack (all namespaces), the set of keys the engine holds as secret,
    and the stack file the engine read them from when it is on disk.

    The language host sets config either through the run request or, for older hosts and the
    automation API, through PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS; read both like
    `pulumi.Config` does. The engine marks secrecy per top-level key, so only the file shows a
    plaintext value committed beside secure ones: the loader checks it as `make validate` does.
    """
    values: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    env_secret = set(runtime_config.get_config_secret_keys_env())
    secret = {key for key in values if key in env_secret or runtime_config.is_config_secret(key)}
    return values, secret, stack_file(PROJECT_ROOT, pulumi.get_stack())


def stack_file(root: Path, stack: str) -> Path | None:
    """`<stackConfigDir>/Pulumi.<stack>.yaml` next to Pulumi.yaml, where Pulumi reads the stack's
    config (pulumi/pulumi v3.259.0:sdk/go/common/workspace/paths.go, ProjectStackPath: a '/' in
    the stack name becomes '-'), or None when it is not there (e.g. `--config-file` elsewhere)."""
    try:
        project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    directory = project.get("stackConfigDir") if isinstance(project, dict) else None
    path = root / (directory if isinstance(directory, str) else ".") / f"Pulumi.{stack.replace('/', '-')}.yaml"
    return path if path.is_file() else None
