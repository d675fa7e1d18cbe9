"""A fake `pulumi` CLI for the make-target tests: logs every call and answers like the real one.

Each call appends one JSON line to $FAKE_PULUMI_LOG: argv, the backend and TALOS_FLEET_DESTROY
from its environment, and for `config set` what it read from standard input. Stacks and their
state live in $FAKE_PULUMI_HOME, one directory per backend URL, so a test sees which backend a
call went to. Behaviour and printed text follow pulumi/pulumi v3.259.0 (cited per command);
exit status 1 is the generic error, 6 a missing stack (pkg/cmd/pulumi/cmd/exit_codes.go).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml


def _home() -> Path:
    backend = os.environ.get("PULUMI_BACKEND_URL", "<none: the default, Pulumi Cloud>")
    home = Path(os.environ["FAKE_PULUMI_HOME"]) / hashlib.sha256(backend.encode()).hexdigest()[:12]
    home.mkdir(parents=True, exist_ok=True)
    return home


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _positional(argv: list[str], after: int) -> list[str]:
    out, skip = [], False
    for arg in argv[after:]:
        if skip:
            skip = False
        elif arg in ("--stack", "-s", "--secrets-provider"):
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _state_file(stack: str) -> Path:
    return _home() / f"{stack}.state.json"


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _load_state(stack: str) -> dict[str, Any] | None:
    path = _state_file(stack)
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str]) -> int:
    entry: dict[str, Any] = {
        "argv": argv,
        "backend": os.environ.get("PULUMI_BACKEND_URL"),
        "destroy_env": os.environ.get("TALOS_FLEET_DESTROY"),
    }
    try:
        return _run(argv, entry)
    finally:
        with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
            log.write(json.dumps(entry) + "\n")


def _run(argv: list[str], entry: dict[str, Any]) -> int:
    words = [a for a in argv if not a.startswith("-")]
    command = " ".join(words[:2] if words[0] in ("stack", "state", "config") else words[:1])
    stack = _flag(argv, "--stack")
    if command == "stack select":
        # pkg/cmd/pulumi/stack/stack_select.go: an existing stack is selected silently; --create
        # initialises a missing one (pkg/cmd/pulumi/stack/io.go announces "Created stack '<name>'");
        # otherwise "no stack named '<name>' found" (pkg/backend/backenderr/backenderr.go).
        (name,) = _positional(argv, 2) or [stack or ""]
        if _load_state(name) is None:
            if "--create" not in argv and "-c" not in argv:
                return _fail(f"no stack named '{name}' found", 6)
            _state_file(name).write_text(json.dumps({"version": 3, "deployment": {"manifest": {}}}))
            print(f"Created stack '{name}'")
        return 0
    if stack is None:
        return _fail("no stack selected; the make targets always pass --stack")
    state = _load_state(stack)
    if state is None:
        return _fail(f"no stack named '{stack}' found", 6)
    resources: list[dict[str, Any]] = state["deployment"].get("resources") or []
    if command == "stack export":
        # pkg/cmd/pulumi/stack/stack_export.go encodes apitype.UntypedDeployment as JSON on stdout.
        print(json.dumps(state, indent=4))
        return 0
    if command == "state unprotect":
        if "--all" not in argv:
            return _fail("the make targets only ever unprotect --all")
        # pkg/cmd/pulumi/state/state_unprotect.go unprotectAllResources: clears protect on every resource not pending
        # deletion; a stack without a snapshot is "no resources found to unprotect".
        if not resources:
            return _fail("no resources found to unprotect")
        for resource in resources:
            if not resource.get("delete"):
                resource["protect"] = False
        _state_file(stack).write_text(json.dumps(state))
        print("All resources unprotected")
        return 0
    if command == "destroy":
        if "--yes" not in argv and "-y" not in argv:
            # pkg/cmd/pulumi/operations/destroy.go: without --yes and without a terminal,
            # NoConfirmationInNonInteractiveError (pkg/backend/backenderr/backenderr.go), a
            # configuration error (exit_codes.go ExitConfigurationError).
            return _fail(
                "--yes or --skip-preview or --preview-only must be passed in to proceed when running in "
                "non-interactive mode",
                2,
            )
        protected = [r["urn"] for r in resources if r.get("protect")]
        if protected:
            # pkg/resource/deploy/step.go deleteProtectedError: the engine refuses each protected
            # resource, the URN quoted as Go's %q does.
            for urn in protected:
                print(f"error: resource {json.dumps(urn)} cannot be deleted\nbecause it is protected.", file=sys.stderr)
            return 1
        state["deployment"].pop("resources", None)
        _state_file(stack).write_text(json.dumps(state))
        # pkg/cmd/pulumi/operations/destroy.go, after a destroy without --remove:
        print(
            "The resources in the stack have been deleted, but the history and configuration associated "
            f"with the stack are still maintained. \nIf you want to remove the stack completely, run "
            f"`pulumi stack rm {stack}`."
        )
        return 0
    if command == "config set":
        return _config_set(argv, stack, entry)
    if command == "stack output":
        return _stack_output(argv, resources)
    if command in ("up", "preview"):
        return 0
    return _fail(f"the fake pulumi does not know `{command}`")


def _stack_output(argv: list[str], resources: list[dict[str, Any]]) -> int:
    """pkg/cmd/pulumi/stack/stack_output.go: the root Stack resource's outputs, all of them or the
    one named, as JSON (--json: pkg/cmd/pulumi/ui/json.go FprintJSON, 2-space indent); a secret
    shows as "[secret]" unless --show-secrets (pkg/backend/display/json.go MassageSecrets). The
    fake's state holds secrets the way `stack export --show-secrets` writes them: {<sig.Key>:
    <sig.Secret>, "plaintext": <JSON text>} (sdk/go/common/resource/sig/sig.go;
    pkg/resource/stack/deployment.go)."""
    if "--json" not in argv:
        return _fail("the make targets read outputs with --json")
    root = next((r for r in resources if r.get("type") == "pulumi:pulumi:Stack"), {})

    def reveal(value: Any) -> Any:
        if (
            isinstance(value, dict)
            and value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270"
        ):
            return json.loads(value["plaintext"]) if "--show-secrets" in argv else "[secret]"
        return value

    outputs = {k: reveal(v) for k, v in (root.get("outputs") or {}).items()}
    names = _positional(argv, 2)
    if names and names[0] not in outputs:
        return _fail(f"current stack does not have output property '{names[0]}'")
    print(json.dumps(outputs[names[0]] if names else outputs, indent=2))
    return 0


def _config_set(argv: list[str], stack: str, entry: dict[str, Any]) -> int:
    key, *value = _positional(argv, 2)
    entry["value_in_argv"] = bool(value)
    if sys.stdin.isatty():
        return _fail("the fake pulumi cannot prompt; pipe the value in")
    # pkg/cmd/pulumi/config/config.go configSetCmd.Run: without a value argument, a non-terminal stdin is read whole
    # and one trailing newline is removed (unless --raw).
    text = sys.stdin.read()
    entry["stdin"] = text
    secret = text if "--raw" in argv else text.removesuffix("\n")
    if "--secret" not in argv or "--path" not in argv:
        return _fail("the make targets set secrets with --secret --path")
    top, _, name = key.partition(".")
    # The stack file lives in the project's stackConfigDir (Pulumi.yaml: stacks). A secure value is
    # written as {secure: <ciphertext>} (sdk/go/common/resource/config/object.go) and passphrase
    # ciphertexts start with v1: (config/crypt.go); the passphrase manager keeps its salt in
    # `encryptionsalt` (sdk/go/common/workspace/project.go). The fake's ciphertext is not real.
    path = Path("stacks") / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    document.setdefault("encryptionsalt", "v1:FAKESALT")
    config = document.setdefault("config", {})
    config.setdefault(top, {})[name] = {"secure": "v1:FAKE:" + hashlib.sha256(secret.encode()).hexdigest()}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
