"""The commands talos-fleet's messages tell operators to run, filled in for their stack.

Messages from the stack-file rules do not know which stack they are about; they write
`STACK=<stack>` and whoever knows the stack (the CLI from the file name, the program from the
engine) fills it in, so every command can be run exactly as printed. Pulumi commands are spelled
as make targets, which bring the project's backend (`.pulumi-state/` unless PULUMI_BACKEND_URL).
"""

from __future__ import annotations

from pathlib import Path

PLACEHOLDER = "STACK=<stack>"


def stack_name(path: str | Path) -> str | None:
    """The stack a stack file is for (`stacks/Pulumi.<stack>.yaml`), or None for another name."""
    name = Path(path).name
    stack = name.removeprefix("Pulumi.").removesuffix(".yaml")
    return stack if name.startswith("Pulumi.") and name.endswith(".yaml") and stack else None


def fill_stack(message: str, stack: str | None) -> str:
    return message if not stack else message.replace(PLACEHOLDER, f"STACK={stack}")


def pulumi_command(stack: str, args: str) -> str:
    """A raw Pulumi command on the backend `make up` uses (Makefile: BACKEND), for what no make
    target does; run it from the repository root."""
    backend = "${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}"
    return f"PULUMI_BACKEND_URL={backend} pulumi {args} --stack {stack}"
