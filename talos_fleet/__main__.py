"""Offline commands on stack files; no Pulumi engine, provider or network needed.

python -m talos_fleet validate stacks/Pulumi.edge.yaml [...]   check stack files
python -m talos_fleet render stacks/Pulumi.edge.yaml           print every patch, per node
python -m talos_fleet schema                                   print the stack-file JSON Schema
python -m talos_fleet plan stacks/Pulumi.edge.yaml [--base REF] what a change does, per node (make plan)
python -m talos_fleet snapshot stacks/Pulumi.edge.yaml         what every node receives, as JSON
python -m talos_fleet urls stacks/Pulumi.edge.yaml             Image Factory boot media per cluster (make urls)
python -m talos_fleet status stacks/Pulumi.edge.yaml < outputs.json   every node vs the stack (make status)

Exit status: 0 ok; 1 a stack file is invalid or unreadable (plan: the change has a problem; status:
something needs a person); 2 a wrong argument (plan: no plan at all; status: it could not run).
Every message names the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from talos_fleet import commands, factory, lint, naming, patches, report, status
from talos_fleet.baseline import Base, BaseError, default_base, read_base, repo_root
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.plan import plan_cluster
from talos_fleet.review import review
from talos_fleet.schema import stack_file_schema
from talos_fleet.snapshot import snapshot
from talos_fleet.spec import ROLES, Fleet, SecretName

# Offline, the schematic id is not known; renderings show where the factory installer goes.
SCHEMATIC_PLACEHOLDER = "<schematic-id>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m talos_fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check stack files")
    validate.add_argument("files", nargs="+")
    render = sub.add_parser("render", help="print each node's patches")
    render.add_argument("file")
    sub.add_parser("schema", help="print the stack-file JSON Schema")
    snap = sub.add_parser("snapshot", help="print what every node receives, as JSON (the plan's base)")
    snap.add_argument("file")
    planner = sub.add_parser("plan", help="what a change of the stack file does, per node, against a git ref")
    planner.add_argument("file")
    planner.add_argument(
        "--base", help="git ref to compare with (default: the merge-base with the main branch; 'none': no base)"
    )
    planner.add_argument("--format", choices=("markdown", "json"), default="markdown")
    planner.add_argument("--schema", type=Path, help="Talos machine-config JSON Schema to lint every document against")
    planner.add_argument("--out", type=Path, help="write here instead of standard output")
    planner.add_argument("--json-out", type=Path, help="also write the JSON plan here")
    urls = sub.add_parser("urls", help="Image Factory installer, ISO and PXE URLs per cluster and architecture")
    urls.add_argument("file")
    checker = sub.add_parser("status", help="every node's real state against the stack file (make status)")
    checker.add_argument("file")
    checker.add_argument(
        "--outputs", default="-", help="`pulumi stack output --json --show-secrets` (file, or - for stdin)"
    )
    checker.add_argument("--format", choices=status.FORMATS, default="table")
    checker.add_argument("--out", type=Path, help="write here instead of standard output")
    checker.add_argument("--timeout", type=_positive(float), default=status.DEFAULT_TIMEOUT, help="seconds per node")
    checker.add_argument("--parallel", type=_positive(int), default=status.DEFAULT_PARALLEL, help="nodes asked at once")
    secret_name = sub.add_parser("secret-name", help="check a name for talos-fleet:secrets (make secret)")
    secret_name.add_argument("name")
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(json.dumps(stack_file_schema(), indent=2, sort_keys=True))
        return 0
    if args.command == "plan":
        return _plan(args)
    if args.command == "secret-name":
        return _check_secret_name(args.name)
    if args.command == "status":
        return _status(args)
    files = args.files if args.command == "validate" else [args.file]
    failed = False
    for path in files:
        fleet = _load(path)
        if fleet is None:
            failed = True
            continue
        if args.command == "urls":
            _urls(fleet)
            continue
        if args.command == "snapshot":
            print(snapshot(fleet).model_dump_json())
            continue
        if args.command == "validate":
            nodes = sum(len(c.nodes) for c in fleet.clusters.values())
            print(f"{path}: ok ({len(fleet.clusters)} cluster(s), {nodes} node(s))")
            continue
        rendered = patches.render_fleet(
            fleet,
            patches.secret_stand_ins(fleet),
            lambda cname, version, arch: factory.factory_urls(SCHEMATIC_PLACEHOLDER, version, arch).installer,
        )
        for cname in fleet.clusters:
            plan = plan_cluster(fleet, cname)
            print(
                f"# cluster {cname}: endpoint {plan.endpoint}, Talos {plan.talos_version}, "
                f"Kubernetes {plan.kubernetes_version}, contract {plan.contract}"
            )
            print(f"# schematic:\n{plan.schematic}")
            for role in ROLES:
                for i, text in enumerate(rendered[naming.role_config_label(cname, role)]):
                    print(f"# --- {cname}/{role} config generation, patch {i}\n{text}")
            for node in plan.nodes:
                for i, text in enumerate(rendered[naming.node_apply(cname, node.hostname)]):
                    print(f"# --- {cname}/{node.hostname} ({node.role}, {node.ip}) node patch {i}\n{text}")
    return 1 if failed else 0


def for_stack(message: str, path: str | Path) -> str:
    """Fill in the stack in the commands a message suggests, from the stack file's name."""
    return commands.fill_stack(message, commands.stack_name(path))


def _load(path: str | Path) -> Fleet | None:
    """The validated stack file, or None after printing the report, which names the file (an
    unreadable file is a SpecError too)."""
    try:
        return load_stack_file(path)
    except SpecError as error:
        print(f"{path}: {for_stack(str(error), path)}", file=sys.stderr)
        return None


def _check_secret_name(name: str) -> int:
    """`make secret` checks NAME before Pulumi runs, by the stack file's own rule for the keys
    of talos-fleet:secrets (spec.SecretName: one step of `--path 'talos-fleet:secrets.<name>'`)."""
    try:
        TypeAdapter(SecretName).validate_python(name)
    except ValidationError as error:
        reason = error.errors()[0].get("ctx", {}).get("error", error.errors()[0]["msg"])
        print(f"NAME={name!r}: {reason}; e.g. make secret STACK=edge NAME=rack-luks", file=sys.stderr)
        return 2
    return 0


def _urls(fleet: Fleet) -> None:
    """Per cluster and architecture, the boot media `pulumi up` will use, computed offline."""
    for cname, cluster in fleet.clusters.items():
        image = fleet.image(cluster)
        version = fleet.talos_version(cluster)
        schematic_id = patches.schematic_id(image)
        print(f"# cluster {cname}: Talos {version}")
        if schematic_id is None:
            print(
                "# schematic id: cannot be computed offline for this schematic. Save the schematic below\n"
                "# as schematic.yaml and POST it to the Image Factory, which answers with its id:\n"
                f"#   {factory.schematic_post_command()}\n"
                "# then put the id where the URLs below say <schematic-id>."
            )
        else:
            print(f"# schematic id: {schematic_id}")
        print(f"# --- schematic (what the Image Factory builds from)\n{patches.schematic_yaml(image)}# ---")
        for arch in fleet.architectures(cname):
            urls = factory.factory_urls(schematic_id or SCHEMATIC_PLACEHOLDER, version, arch)
            for kind, url in urls.as_dict().items():
                print(f"{cname} {arch} {kind:<9} {url}")


def _positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < 10**6:
            raise argparse.ArgumentTypeError(f"{text!r}: give a positive number")
        return value

    return parse


def _status(args: argparse.Namespace) -> int:
    """Exit 0 all good, 1 something needs a person, 2 status could not run (one message)."""
    path = Path(args.file)
    fleet = _load(path)
    if fleet is None:
        return 2
    try:
        outputs = sys.stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
    except (OSError, UnicodeDecodeError) as error:
        print(
            f"--outputs {args.outputs}: cannot read it ({getattr(error, 'strerror', None) or error})", file=sys.stderr
        )
        return 2
    return status.command(fleet, path, outputs, args.format, args.out, args.timeout, args.parallel)


def _plan(args: argparse.Namespace) -> int:
    """Exit 0 with the plan; 1 with the plan when `pulumi up` would stop or a lint failed; 2
    with only a message when there is no plan (invalid stack file, unreadable base)."""
    path = Path(args.file)
    stack = commands.stack_name(path) or path.stem
    try:
        schema = lint.read_schema(args.schema) if args.schema else None
    except lint.SchemaFileError as error:
        print(f"SCHEMA={error}", file=sys.stderr)
        return 2
    fleet = _load(path)
    if fleet is None:
        return 2
    try:
        head = snapshot(fleet)
        if args.base == "none":
            base = Base("none", None, "No base: everything is new.")
        else:
            ref = args.base or default_base(repo_root(path.resolve()))
            base = read_base(path, ref)
            if not args.base:
                base = dataclasses.replace(base, ref=f"the merge-base with main ({ref[:12]})")
    except (SpecError, BaseError) as error:
        print(f"{path}: {for_stack(str(error), path)}", file=sys.stderr)
        return 2
    lint_problems = lint.schema_problems(head, args.schema, schema) if args.schema else []
    if talosctl := shutil.which("talosctl"):
        lint_problems += lint.talosctl_problems(head, talosctl)
    result = review(stack, base.snapshot, head, base_ref=base.ref, base_note=base.note)
    text = report.to_json(result) if args.format == "json" else report.markdown(result, lint_problems)
    for out, content in ((args.out, text), (args.json_out, report.to_json(result))):
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(content)
    if args.out is None:
        sys.stdout.write(text)
    for problem in [*result.problems, *lint_problems]:
        print(f"{path}: {problem}", file=sys.stderr)
    for warning in result.warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    return 1 if result.problems or lint_problems else 0


if __name__ == "__main__":
    sys.exit(main())
