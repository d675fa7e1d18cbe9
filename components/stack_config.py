"""Read the stack's config as the engine hands it to the program; nothing else reads config."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import config as runtime_config


def engine_config() -> tuple[dict[str, Any], set[str]]:
    """Every config key of the stack (all namespaces) and the set of keys the engine holds as secret.

    The language host sets config either through the run request or, for older hosts and the
    automation API, through PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS; read both like
    `pulumi.Config` does.
    """
    values: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    env_secret = set(runtime_config.get_config_secret_keys_env())
    secret = {key for key in values if key in env_secret or runtime_config.is_config_secret(key)}
    return values, secret
