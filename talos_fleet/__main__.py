"""Offline commands on stack files; no Pulumi engine, provider or network needed.

python -m talos_fleet validate stacks/Pulumi.edge.yaml [...]   check stack files
python -m talos_fleet render stacks/Pulumi.edge.yaml           print every patch, per node
python -m talos_fleet schema                                   print the stack-file JSON Schema
python -m talos_fleet plan stacks/Pulumi.edge.yaml [--base REF] what a change does, per node (make plan)
python -m talos_fleet snapshot stacks/Pulumi.edge.yaml         what every node receives, as JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from talos_fleet import lint, naming, patches, report
from talos_fleet.baseline import Base, BaseError, default_base, read_base, repo_root
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.plan import plan_cluster
from talos_fleet.review import review
from talos_fleet.schema import stack_file_schema
from talos_fleet.snapshot import snapshot
from talos_fleet.spec import ROLES

# Offline, the schematic id is not known; renderings show where the factory installer goes.
INSTALLER_PLACEHOLDER = "factory.talos.dev/metal-installer/<schematic-id>:{version}"


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
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(json.dumps(stack_file_schema(), indent=2, sort_keys=True))
        return 0
    if args.command == "plan":
        return _plan(args)
    files = args.files if args.command == "validate" else [args.file]
    failed = False
    for path in files:
        try:
            fleet = load_stack_file(path)
        except SpecError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed = True
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
            lambda cname, version, arch: INSTALLER_PLACEHOLDER.format(version=version),
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


def _plan(args: argparse.Namespace) -> int:
    """Exit 0 with the plan; 1 with the plan when `pulumi up` would stop or a lint failed; 2
    with only a message when there is no plan (invalid stack file, unreadable base)."""
    path = Path(args.file)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        head = snapshot(load_stack_file(path))
        if args.base == "none":
            base = Base("none", None, "No base: everything is new.")
        else:
            ref = args.base or default_base(repo_root(path.resolve()))
            base = read_base(path, ref)
            if not args.base:
                base = dataclasses.replace(base, ref=f"the merge-base with main ({ref[:12]})")
    except (SpecError, BaseError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2
    lint_problems = lint.schema_problems(head, args.schema) if args.schema else []
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
