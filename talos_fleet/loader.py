"""Read the `talos-fleet` namespace into a validated `Fleet`, or fail with every problem named.

Two ways in, one validation:

* `load_pulumi_config(config, secret_keys)`: what the Pulumi engine hands the program (values as
  JSON strings, decrypted secrets, and the list of keys that are secret). Used by `__main__.py`.
* `load_stack_file(path)`: the stack YAML itself, offline, with `secure:` ciphertexts left unread.
  Used by the tests, `python -m talos_fleet validate` and `make up`'s pre-flight check.

Secrets: only `talos-fleet:secrets` may hold secret values, one per name, each set with
`pulumi config set --secret --path 'talos-fleet:secrets.<name>' <value>`. Fields that need a
secret take its name. Pulumi marks secrecy per top-level key, so a plaintext value beside secure
ones in `secrets` can only be seen in the stack file: `make test` and `make up` check the file.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from talos_fleet.spec import NAMESPACE, SOURCE_KINDS, SOURCE_MODELS, Fleet, RuleError, SecretInput

SECRETS_KEY = "secrets"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(Exception):
    """The stack config is invalid. `str()` is the operator-facing report, one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the talos-fleet stack config has {count}; nothing was changed:\n{lines}")


# ---------------------------------------------------------------------------------------------
# Entry points


def load_pulumi_config(config: Mapping[str, Any], secret_keys: Iterable[str]) -> Fleet:
    """Validate the engine's config map (all namespaces; only ours is read)."""
    secret = set(secret_keys)
    tree: dict[str, Any] = {}
    problems: list[Problem] = []
    for full_key, raw in config.items():
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE or not key:
            continue
        value = _decode(raw)
        if key == SECRETS_KEY:
            value = _mark_secrets(value, known=full_key in secret)
        elif full_key in secret:
            problems.append(
                Problem(
                    full_key,
                    "only talos-fleet:secrets may hold secret values; move the secret there "
                    f"(`pulumi config set --secret --path '{NAMESPACE}:{SECRETS_KEY}.<name>' <value>`) "
                    "and reference it by name",
                )
            )
        tree[key] = value
    if problems:
        raise SpecError(problems)
    return validate_tree(tree)


def load_stack_file(path: str | Path) -> Fleet:
    """Validate a stack file (`stacks/Pulumi.<env>.yaml`) offline."""
    return validate_tree(tree_from_stack_file(path))


def tree_from_stack_file(path: str | Path) -> dict[str, Any]:
    """The namespace tree of a stack file, secure values replaced by unknown secrets."""
    try:
        document = yaml.load(Path(path).read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise SpecError([Problem(str(path), f"not valid YAML: {exc}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SpecError([Problem(str(path), "a stack file is a YAML mapping with a `config:` key")])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise SpecError([Problem(f"{path}: config", "`config:` must be a mapping of keys to values")])
    tree: dict[str, Any] = {}
    problems: list[Problem] = []
    for full_key, value in config.items():
        ns, _, key = str(full_key).partition(":")
        if ns != NAMESPACE or not key:
            continue
        if key == SECRETS_KEY:
            value = _secure_secrets(value, problems)
        else:
            problems.extend(
                Problem(
                    where,
                    "secret values belong under talos-fleet:secrets (set with `pulumi config set --secret "
                    f"--path '{NAMESPACE}:{SECRETS_KEY}.<name>' <value>`) and are referenced by name",
                )
                for where in _secure_paths(value, f"{NAMESPACE}:{key}")
            )
        tree[key] = value
    if problems:
        raise SpecError(problems)
    return tree


def validate_tree(tree: Mapping[str, Any]) -> Fleet:
    """Validate the namespace tree (keys without the `talos-fleet:` prefix)."""
    try:
        return Fleet.model_validate(dict(tree))
    except ValidationError as exc:
        raise SpecError([_problem(err) for err in exc.errors()]) from None


# ---------------------------------------------------------------------------------------------
# Secrets handling


def _decode(raw: Any) -> Any:
    """The engine passes structured values as JSON text and scalars as plain text."""
    if isinstance(raw, str) and raw[:1] in "{[":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _mark_secrets(value: Any, *, known: bool) -> Any:
    """Wrap each secret value; values of a key the engine does not call secret stay plaintext
    and fail validation with the fix."""
    if not known or not isinstance(value, dict):
        return value
    return {name: SecretInput(v if isinstance(v, str) else json.dumps(v)) for name, v in value.items()}


def _secure_secrets(value: Any, problems: list[Problem]) -> Any:
    if not isinstance(value, dict) or _is_secure(value):
        problems.append(
            Problem(
                f"{NAMESPACE}:{SECRETS_KEY}",
                "must be a mapping of names to secrets; set each with "
                f"`pulumi config set --secret --path '{NAMESPACE}:{SECRETS_KEY}.<name>' <value>`",
            )
        )
        return value
    return {name: SecretInput(None) if _is_secure(v) else v for name, v in value.items()}


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _secure_paths(value: Any, path: str) -> list[str]:
    if _is_secure(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _secure_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secure_paths(v, f"{path}[{i}]")]
    return []


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last silently; Pulumi refuses them)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}: each key may appear once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# ---------------------------------------------------------------------------------------------
# Error messages: the field path and the fix


def _problem(err: Any) -> Problem:
    loc = [part for part in err["loc"] if not (isinstance(part, str) and "[" in part and part != "[key]")]
    kind = err["type"]
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, RuleError):
        return Problem(_path([*loc, *cause.path]), cause.message)
    if isinstance(cause, ValueError):
        path = _path(loc)
        return Problem(path, str(cause).replace("<this path>", path))
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return Problem(_path(loc), f"unknown key {loc[-1]!r} (check its spelling){hint}")
    if kind == "missing":
        what = _description(loc)
        return Problem(_path(loc), f"required key {loc[-1]!r} is missing; add it" + (f" ({what})" if what else ""))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        found = f"kind {ctx['tag']!r} is not one" if kind == "union_tag_invalid" else "'kind' is missing; it names one"
        return Problem(_path(loc), f"{found} of the machine source kinds; use kind: {' or '.join(SOURCE_KINDS)}")
    return Problem(_path(loc), str(err["msg"]))


def _path(loc: list[Any]) -> str:
    # A discriminated union puts its tag in the location (sources.kvm.libvirt.uri), a key the
    # file does not have: leave it out.
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
        loc = [*loc[:2], *loc[3:]]
    text = NAMESPACE
    for i, part in enumerate(loc):
        if part == "[key]":
            text += " (the key)"
        elif isinstance(part, int):
            text += f"[{part}]"
        else:
            text += (":" if i == 0 else ".") + str(part)
    return text


def _allowed_keys(loc: list[Any]) -> list[str]:
    """The keys a model accepts at `loc`, following the Fleet models by alias."""
    model = _model_at(loc)
    return [f.alias or n for n, f in model.model_fields.items()] if model else []


def _description(loc: list[Any]) -> str | None:
    """The description of the field at `loc` (what a missing key is for)."""
    model = _model_at(loc[:-1])
    fields = {f.alias or n: f for n, f in model.model_fields.items()} if model else {}
    field = fields.get(str(loc[-1])) if loc else None
    return field.description if field else None


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    """The model at `loc` under Fleet, following fields by alias, or None."""
    annotation: Any = Fleet
    for part in loc:
        annotation = _unwrap_optional(annotation)
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:  # the discriminated Source union: the part is its tag
            if part not in SOURCE_MODELS:
                return None
            annotation = SOURCE_MODELS[part]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {f.alias or n: f for n, f in annotation.model_fields.items()}
            if str(part) not in fields:
                return None
            annotation = fields[str(part)].annotation
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        elif origin in (tuple, list):
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap_optional(annotation: Any) -> Any:
    """M for `M | None`; other annotations unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
