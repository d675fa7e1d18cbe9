"""JSON Schema for stack files, generated from the spec models (`make schema`).

Stack files reference it on their first line (`# yaml-language-server: $schema=...`), so editors
complete and check the `talos-fleet:` keys. A test keeps the committed copy fresh.
"""

from __future__ import annotations

from typing import Any

from talos_fleet.spec import NAMESPACE, Fleet


def stack_file_schema() -> dict[str, Any]:
    fleet = Fleet.model_json_schema(by_alias=True, mode="validation")
    defs = fleet.pop("$defs", {})
    keys = {f"{NAMESPACE}:{name}": prop for name, prop in fleet["properties"].items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://talos-fleet.invalid/schema/talos-fleet.schema.json",
        "title": "talos-fleet stack file (stacks/Pulumi.<env>.yaml)",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": keys,
                "required": [f"{NAMESPACE}:{name}" for name in fleet.get("required", [])],
                # Other namespaces (e.g. provider config) are allowed; unknown talos-fleet keys are not.
                "propertyNames": {"anyOf": [{"enum": sorted(keys)}, {"not": {"pattern": f"^{NAMESPACE}:"}}]},
            },
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "environment": {},
        },
        "required": ["config"],
        "$defs": defs,
    }
