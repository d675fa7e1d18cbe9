"""Read the `talos-fleet` namespace into a validated `Fleet`, or fail with every problem named.

Two ways in, one validation, one answer:

* `load_pulumi_config(config, secret_keys, stack_file)`: what the Pulumi engine hands the program
  (scalars as text, structured values as JSON text, decrypted secrets, the keys that are secret),
  plus the stack file itself when it is on disk. Used by `__main__.py`.
* `load_stack_file(path)`: the stack YAML itself, offline, with `secure:` ciphertexts left unread.
  Used by the tests, `python -m talos_fleet validate` and `make up`'s pre-flight check.

The offline path reads the file the way Pulumi does and turns it into what the engine would hand
the program, so both end in the same tree and the same validation (`validate_tree`):

* keys without a namespace are the project's (`defaults:` is `talos-fleet:defaults`);
* plain scalars resolve like Go's yaml.v3 (YAML 1.2 core: `yes` is text, `0o17` and `1e3` numbers);
* every mapping reaches the program with its keys sorted (Go's encoding/json sorts map keys), so
  order in the file never matters: nodes roll out in hostname order on both paths.

Secrets: only `talos-fleet:secrets` may hold secret values, one per name. Pulumi marks secrecy per
top-level key, so a plaintext value beside secure ones in `secrets` can only be seen in the stack
file: the engine path reads the stack file too when it is on disk, and refuses it the same way.

Every input gets an answer in bounded time and memory: see the limits below.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from talos_fleet.spec import (
    NAMESPACE,
    SOURCE_KINDS,
    SOURCE_MODELS,
    Fleet,
    RuleError,
    SecretInput,
)

try:  # libyaml scans and parses; the composer below stays in Python to count and bound what it builds
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)


SECRETS_KEY = "secrets"

# Limits, far above any real fleet (thousands of nodes with their patches fit in a few hundred KiB
# and a few tens of thousands of values) and low enough that the worst input is refused in about
# a second: a stack file (or the engine's values of our namespace together) of at most 4 MiB; at
# most 250,000 values once YAML aliases are expanded; nesting at most 64 levels (a Talos patch
# needs about a dozen).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_VALUES = 250_000
MAX_DEPTH = 64


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


_SECRET_ELSEWHERE = (
    "secret values belong under talos-fleet:secrets (set each with "
    "`make secret STACK=<stack> NAME=<name>`) and are referenced by name"
)
_SECRETS_SHAPE = (
    "must be a mapping of names to secrets; set each with "
    "`make secret STACK=<stack> NAME=<name>` (the value is read from standard input)"
)


# ---------------------------------------------------------------------------------------------
# Entry points


def load_pulumi_config(
    config: Mapping[str, Any], secret_keys: Iterable[str], stack_file: str | Path | None = None
) -> Fleet:
    """Validate the engine's config map (all namespaces; only ours is read). When the stack file
    the engine read is on disk, its own problems (plaintext secrets, YAML mistakes) are refused
    exactly as `load_stack_file` refuses them."""
    plaintext = (
        _plaintext_secrets(tree_from_stack_file(stack_file)) if stack_file and Path(stack_file).is_file() else set()
    )
    secret = set(secret_keys)
    tree: dict[str, Any] = {}
    problems: list[Problem] = []
    size = 0
    for full_key, raw in config.items():
        parsed = _config_key(str(full_key))
        if parsed is None or parsed[0] != NAMESPACE:
            continue
        key = parsed[1]
        size += len(raw) if isinstance(raw, str) else 0
        if size > MAX_FILE_BYTES:
            raise SpecError([Problem(f"{NAMESPACE}:{key}", _too_big("the talos-fleet config values together"))])
        value = _decode(f"{NAMESPACE}:{key}", raw)
        if key == SECRETS_KEY:
            value = _mark_secrets(value, known=full_key in secret, plaintext=plaintext)
        elif full_key in secret:
            problems.append(Problem(f"{NAMESPACE}:{key}", _SECRET_ELSEWHERE))
        tree[key] = value
    if problems:
        raise SpecError(problems)
    return validate_tree(tree)


def load_stack_file(path: str | Path) -> Fleet:
    """Validate a stack file (`stacks/Pulumi.<env>.yaml`) offline."""
    return validate_tree(tree_from_stack_file(path))


def tree_from_stack_file(path: str | Path) -> dict[str, Any]:
    """The namespace tree of a stack file as the engine would hand it to the program; secure
    values are unknown secrets."""
    document = _read_yaml(Path(path))
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SpecError([Problem(str(path), "a stack file is a YAML mapping with a `config:` key")])
    config = document.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise SpecError([Problem(f"{path}: config", "`config:` must be a mapping of keys to values")])
    tree: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    problems: list[Problem] = []
    for full_key, value in config.items():
        parsed = _config_key(full_key)
        if parsed is None:
            problems.append(
                Problem(f"{path}: config.{full_key}", "is not a Pulumi config key; write <namespace>:<name>")
            )
            continue
        ns, key = parsed
        if ns != NAMESPACE:
            continue
        if key in spelled:
            problems.append(
                Problem(
                    f"{NAMESPACE}:{key}",
                    f"is set twice, as {spelled[key]!r} and {full_key!r} (a key without a namespace is the "
                    f"project's, {NAMESPACE}:); keep one",
                )
            )
            continue
        spelled[key] = full_key
        if _is_secure(value):
            # The engine decrypts a whole secure value into text: the same answer as the engine path.
            if key != SECRETS_KEY:
                problems.append(Problem(f"{NAMESPACE}:{key}", _SECRET_ELSEWHERE))
            value = ""
        elif key == SECRETS_KEY:
            value = _secure_secrets(value)
        else:
            problems.extend(Problem(where, _SECRET_ELSEWHERE) for where in _secure_paths(value, f"{NAMESPACE}:{key}"))
        tree[key] = _engine_scalar(f"{NAMESPACE}:{key}", value)
    if problems:
        raise SpecError(problems)
    return tree


def validate_tree(tree: Mapping[str, Any]) -> Fleet:
    """Validate the namespace tree (keys without the `talos-fleet:` prefix)."""
    problems = _shape_problems(tree)
    if problems:
        raise SpecError(problems)
    try:
        return Fleet.model_validate(_sorted(dict(tree)))
    except ValidationError as exc:
        raise SpecError([_problem(err) for err in exc.errors()]) from None


# ---------------------------------------------------------------------------------------------
# Keys and values the way the engine hands them over


def _config_key(full_key: Any) -> tuple[str, str] | None:
    """(namespace, name) of a stack-file config key, as Pulumi parses it: a key without a colon is
    the project's (pulumi/pulumi v3.259.0:sdk/go/common/workspace/loaders.go,
    stackConfigNamespacedWithProject; the project is `talos-fleet`, Pulumi.yaml), `ns:name`, or
    the old `ns:config:name`; anything else Pulumi refuses (sdk/go/common/resource/config/key.go,
    ParseKey)."""
    if not isinstance(full_key, str):
        full_key = _go_key(full_key)
        if full_key is None:
            return None
    parts = full_key.split(":")
    if len(parts) == 1:
        return NAMESPACE, full_key
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3 and parts[1] == "config":
        return parts[0], parts[2]
    return None


def _engine_scalar(path: str, value: Any) -> Any:
    """A top-level value as the program receives it: Pulumi hands scalars over as text
    (pulumi/pulumi v3.259.0:sdk/go/common/resource/config/object.go, MarshalString), and the program decodes text that
    is a JSON object or array like any structured value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return _decode(path, value)
    return value


class _BadJsonError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadJsonError(f"{name} is not a number Pulumi can hand over")


def _decode(path: str, raw: Any) -> Any:
    """The engine passes structured values as JSON text and scalars as plain text."""
    if not isinstance(raw, str) or raw[:1] not in ("{", "["):
        return raw
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise SpecError([Problem(path, _too_deep())]) from None
    except json.JSONDecodeError:
        return raw
    except ValueError as exc:  # Python's int conversion limit, or NaN/Infinity
        raise SpecError([Problem(path, f"holds a number that cannot be used: {exc}")]) from None


def _sorted(value: Any) -> Any:
    """Mappings with their keys sorted, as Go's encoding/json writes them (the engine's JSON)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _shape_problems(tree: Mapping[str, Any]) -> list[Problem]:
    """The first value no stack file may hold, with its path: nesting past MAX_DEPTH, more than
    MAX_VALUES values, keys that are not text, text that is not Unicode (a lone surrogate cannot
    be sent to a provider), numbers that are not finite; and top-level keys that are not mappings."""
    for key, value in tree.items():
        if key in _TOP_LEVEL and not isinstance(value, dict):
            return [Problem(f"{NAMESPACE}:{key}", _SECRETS_SHAPE if key == SECRETS_KEY else _NOT_A_MAPPING)]
    for key in tree:
        if not _text_ok(key):
            return [Problem(f"{NAMESPACE}:{key!r}", _NOT_UNICODE)]
    count = 0
    stack: list[tuple[Any, str, int]] = [(v, f"{NAMESPACE}:{k}", 1) for k, v in tree.items()]
    while stack:
        value, path, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return [Problem(path, _too_many())]
        if depth > MAX_DEPTH:
            return [Problem(path, _too_deep())]
        if isinstance(value, dict):
            count += len(value)  # keys count, as in the YAML composer
            for k, v in value.items():
                if not isinstance(k, str):
                    return [Problem(f"{path}.{k!r}", "a mapping key must be text; quote it")]
                if not _text_ok(k):
                    return [Problem(f"{path} (a key)", _NOT_UNICODE)]
                stack.append((v, f"{path}.{k}", depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, str) and not _text_ok(value):
            return [Problem(path, _NOT_UNICODE)]
        elif isinstance(value, float) and not math.isfinite(value):
            return [Problem(path, f"{value} is not a number a stack file can hold; write a finite number")]
    return []


_TOP_LEVEL = {field.alias or name for name, field in Fleet.model_fields.items()}
_NOT_A_MAPPING = "must be a mapping of keys to values (see README: Stack files)"
_NOT_UNICODE = (
    "holds text that is not valid Unicode (a lone surrogate such as a \\ud800 escape); "
    "write the character itself or remove it"
)


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep() -> str:
    return f"is nested more than {MAX_DEPTH} levels deep, the limit for a stack file; flatten it"


def _too_many() -> str:
    return (
        f"the stack config holds more than {MAX_VALUES:,} values (keys and list items count, YAML aliases "
        "expanded), the limit for a stack file"
    )


def _too_big(what: str) -> str:
    return f"{what} exceed {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit for a stack file"


# ---------------------------------------------------------------------------------------------
# Secrets handling


def _mark_secrets(value: Any, *, known: bool, plaintext: set[str]) -> Any:
    """Wrap each secret value. A secure value always decrypts to text, so anything else under a
    secret key, every value of a key the engine does not call secret, and every value the stack
    file holds in plaintext stays as it is and fails validation with the fix."""
    if not known or not isinstance(value, dict):
        return value
    return {name: SecretInput(v) if isinstance(v, str) and name not in plaintext else v for name, v in value.items()}


def _plaintext_secrets(tree: Mapping[str, Any]) -> set[str]:
    """The names the stack file holds in plaintext under `secrets`."""
    secrets = tree.get(SECRETS_KEY)
    return {n for n, v in secrets.items() if not isinstance(v, SecretInput)} if isinstance(secrets, dict) else set()


def _secure_secrets(value: Any) -> Any:
    if not isinstance(value, dict):
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


# ---------------------------------------------------------------------------------------------
# Reading YAML the way Pulumi does, in bounded time and memory


def _read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([Problem(str(path), f"cannot read the file: {exc.strerror or exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError([Problem(str(path), f"is {len(data) / 1024 / 1024:.1f} MiB; {_too_big('stack files')}")])
    text = _text_of(path, data)
    loader = _StackLoader(text)
    try:
        return loader.get_single_data()
    except MarkedYAMLError as exc:
        raise SpecError([Problem(str(path), _yaml_message(exc))]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(str(path), f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _text_of(path: Path, data: bytes) -> str:
    """The file's text. Pulumi strips a UTF-8 byte-order mark
    (pulumi/pulumi v3.259.0:sdk/go/common/workspace/loaders.go, readFileStripUTF8BOM)."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            [
                Problem(
                    str(path),
                    f"line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8",
                )
            ]
        ) from None


def _yaml_message(exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    if "invalid Unicode character escape" in what:
        what += " (a \\uD800-\\uDFFF escape alone is half a character); write the character itself"
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else f"not valid YAML: {what}"


_PLAIN = "tag:talos-fleet,2026:plain"  # a plain scalar, resolved in _resolve_plain
_TAG = "tag:yaml.org,2002:"
_MERGE = _TAG + "merge"


class _StackLoader(Composer, _Parser, SafeConstructor):
    """libyaml's parser; PyYAML's composer, bounded as it goes so a deep nest or an alias bomb is
    refused after reading only what proves it; a constructor that resolves scalars and keys like
    Go's yaml.v3 and refuses duplicate keys (as yaml.v3 does)."""

    # The document and `config:` mappings sit above the namespace's values, which _shape_problems
    # bounds exactly like the engine's; these only keep composition itself bounded.
    DEPTH = MAX_DEPTH + 2
    NODES = MAX_VALUES

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        self._depth = 0
        self._decodes = 0
        self._aliased = 0
        self._size: dict[int, int] = {}
        self._height: dict[int, int] = {}

    # Resolver: plain scalars are resolved at construction, like yaml.v3 does.
    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool] | bool) -> str:
        if kind is ScalarNode:
            plain = implicit[0] if isinstance(implicit, tuple) else implicit
            return (_MERGE if value == "<<" else _PLAIN) if plain else _TAG + "str"
        return _TAG + ("seq" if kind is SequenceNode else "map")

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def get_single_node(self) -> Node | None:
        return Composer.get_single_node(self)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        mark = getattr(self.peek_event(), "start_mark", None)
        alias = self.check_event(AliasEvent)
        self._depth += 1
        try:
            if self._depth > self.DEPTH:
                raise _RefusedError(_too_deep(), mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        if alias:
            if id(node) not in self._size:
                raise _RefusedError("this alias refers to the collection that contains it", mark)
            if self._depth + self._height[id(node)] > self.DEPTH:
                raise _RefusedError(f"this alias expands to a value that {_too_deep()}", mark)
            self._decodes += 1 + self._size[id(node)]
            self._aliased += self._size[id(node)]
            if _excessive_aliasing(self._decodes, self._aliased):
                raise _RefusedError(
                    "the document expands its aliases too much (Pulumi's YAML reader refuses it as "
                    "'excessive aliasing'); write the values out",
                    mark,
                )
        else:
            if isinstance(node, MappingNode):
                children = [c for pair in node.value for c in pair]
            elif isinstance(node, SequenceNode):
                children = node.value
            else:
                children = []
            self._size[id(node)] = 1 + sum(self._size[id(c)] for c in children)
            self._height[id(node)] = 1 + max((self._height[id(c)] for c in children), default=0)
            self._decodes += 1
        if self._decodes > self.NODES:
            raise _RefusedError(_too_many(), mark)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self._key(key_node)
            if key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r}: each key may appear once", key_node.start_mark
                )
            seen.add(key)
        self.flatten_mapping(node)
        return {self._key(k): self.construct_object(v, deep=deep) for k, v in node.value}

    def _key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise ConstructorError(
                None,
                None,
                "a mapping key must be a plain value such as a name, not a list or a mapping",
                node.start_mark,
            )
        key = _go_key(self.construct_object(node))
        if key is None:
            raise ConstructorError(None, None, f"the key {node.value!r} is not text; quote it", node.start_mark)
        return key

    def construct_plain(self, node: ScalarNode) -> Any:
        return _resolve_plain(node.value, node.start_mark)

    def construct_tagged(self, node: ScalarNode) -> Any:
        tag = str(node.tag).removeprefix(_TAG)
        if tag == "binary":
            try:
                return base64.b64decode(node.value, validate=False).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise ConstructorError(None, None, "!!binary holds no UTF-8 text in base64", node.start_mark) from None
        value = _resolve_plain(node.value, node.start_mark, timestamps=False)
        expected: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "null": ()}
        ok = value is None if tag == "null" else isinstance(value, expected[tag])
        if tag in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            raise ConstructorError(None, None, f"cannot read {node.value!r} as !!{tag}", node.start_mark)
        return value

    def construct_unknown(self, node: Node) -> Any:
        raise ConstructorError(
            None, None, f"the YAML tag {node.tag!r} is not supported in a stack file; remove it", node.start_mark
        )


class _RefusedError(MarkedYAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


_StackLoader.yaml_constructors = {
    _PLAIN: _StackLoader.construct_plain,
    _TAG + "str": SafeConstructor.construct_yaml_str,
    _TAG + "seq": SafeConstructor.construct_yaml_seq,
    _TAG + "map": SafeConstructor.construct_yaml_map,
    **{_TAG + t: _StackLoader.construct_tagged for t in ("int", "float", "bool", "null", "binary")},
    None: _StackLoader.construct_unknown,
}


def _excessive_aliasing(decodes: int, aliased: int) -> bool:
    """yaml.v3's guard against alias bombs, which Pulumi's stack-file reader applies
    (go-yaml/yaml v3.0.1:decode.go, allowedAliasRatio): past 100 aliased and 1,000 values, at
    most 99% may come from aliases, falling to 10% between 400,000 and 4,000,000 values. It is
    checked after each alias, where the share is highest."""
    if aliased <= 100 or decodes <= 1000:
        return False
    low, high = 400_000, 4_000_000
    if decodes <= low:
        allowed = 0.99
    elif decodes >= high:
        allowed = 0.10
    else:
        allowed = 0.99 - 0.89 * (decodes - low) / (high - low)
    return aliased / decodes > allowed


def _go_key(key: Any) -> str | None:
    """A non-text mapping key as Pulumi keeps it: integers and booleans as their text
    (pulumi/pulumi v3.259.0:sdk/go/common/resource/config/object.go, unmarshalObject, `%v`);
    other keys have no text Pulumi and Python agree on, so they are refused."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    return None


# Plain scalars as go-yaml/yaml v3.0.1:resolve.go resolves them (the YAML library Pulumi reads
# stack files with, pulumi/pulumi v3.259.0:sdk/go.mod), then as the engine's JSON carries them to
# the program.
_GO_CONSTANTS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_INT = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|0[oO]([0-7]+)|(0[0-7]*)|([1-9][0-9]*))")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2}))"
    r"|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d{1,9})?))?"
)


def _resolve_plain(text: str, mark: Mark, *, timestamps: bool = True) -> Any:
    if text in _GO_CONSTANTS:
        value = _GO_CONSTANTS[text]
        if isinstance(value, float):
            raise ConstructorError(None, None, f"{text} cannot be handed to the program; write a finite number", mark)
        return value
    first = text[:1]
    if first == "." and _GO_FLOAT.fullmatch(text):
        return _json_number(float(text), text)
    if not first or first not in "+-0123456789":
        return text
    if timestamps and (stamp := _go_timestamp(text, mark)) is not None:
        return stamp
    plain = text.replace("_", "")
    integer = _go_int(plain)
    if integer is not None:
        return integer
    if _GO_FLOAT.fullmatch(plain):
        return _json_number(float(plain), text)
    return text


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), else ParseUint(text, 0, 64), else None."""
    match = _GO_INT.fullmatch(text)
    if match is None:
        return None
    sign, hexa, binary, octal, old_octal, decimal = match.groups()
    digits, base = next((d, b) for d, b in ((hexa, 16), (binary, 2), (octal, 8), (old_octal, 8), (decimal, 10)) if d)
    digits = digits.lstrip("0") or "0"
    if len(digits) > 64:  # longer than any 64-bit number in any of these bases
        return None
    value = int(digits, base)
    if sign == "-":
        return -value if value <= 2**63 else None
    if value < 2**63 or (not sign and value < 2**64):
        return value
    return None


def _json_number(value: float, text: str) -> int | float | str:
    """A float as it reaches the program: Go's ParseFloat refuses what overflows (yaml.v3 then
    keeps the text), and encoding/json writes an integral float below 1e21 without a fraction."""
    if not math.isfinite(value):
        return text
    if value == int(value) and abs(value) < 1e21:
        return int(value)
    return value


def _go_timestamp(text: str, mark: Mark) -> str | None:
    """yaml.v3 reads an unquoted timestamp as a time, which Pulumi hands over as Go's
    time.Time.String() (pulumi/pulumi v3.259.0:sdk/go/common/resource/config/object.go,
    unmarshalObject): only for UTC times is that text fixed."""
    match = _GO_TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, hour2, minute2, second2, fraction2 = match.groups()
    clock = (hour, minute, second, fraction) if hour else (hour2, minute2, second2, fraction2)
    try:
        when = datetime.datetime(
            int(year), int(month), int(day), int(clock[0] or 0), int(clock[1] or 0), int(clock[2] or 0)
        )
    except ValueError:
        return None
    if zone not in (None, "Z"):
        raise ConstructorError(
            None, None, f"{text!r} is read as a time whose text depends on the machine's time zone; quote it", mark
        )
    nanos = (clock[3] or ".")[1:].ljust(9, "0").rstrip("0")
    return when.strftime("%Y-%m-%d %H:%M:%S") + (f".{nanos}" if nanos else "") + " +0000 UTC"


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
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        return Problem(_path(loc), f"{_bound_message(kind, ctx)}; got {_short(err.get('input'))}")
    if kind == "int_parsing_size":  # more digits than any bound: say the bound, not the parser's limit
        bound = _upper_bound(loc)
        limit = f"; it must be at most {bound:,}" if bound is not None else ""
        return Problem(_path(loc), f"is far too large a number{limit}")
    if kind == "string_too_long":
        return Problem(_path(loc), f"is longer than {ctx['max_length']} characters, the limit here; shorten it")
    return Problem(_path(loc), str(err["msg"]))


def _bound_message(kind: str, ctx: Mapping[str, Any]) -> str:
    words = {
        "less_than_equal": ("at most", "le"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("below", "lt"),
        "greater_than": ("above", "gt"),
    }
    word, key = words[kind]
    return f"must be {word} {ctx[key]:,}"


def _upper_bound(loc: list[Any]) -> int | None:
    """The `le` bound of the numeric field at `loc`, if it has one."""
    model = _model_at(loc[:-1])
    fields = {f.alias or n: f for n, f in model.model_fields.items()} if model else {}
    field = fields.get(str(loc[-1])) if loc else None
    bounds = [m.le for m in (field.metadata if field else []) if isinstance(getattr(m, "le", None), int)]
    return bounds[0] if bounds else None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}… ({len(text)} characters)"


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
