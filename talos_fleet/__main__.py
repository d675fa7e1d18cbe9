"""Offline commands on stack files; no Pulumi engine, provider or network needed.

python -m talos_fleet validate stacks/Pulumi.edge.yaml [...]   check stack files
python -m talos_fleet render stacks/Pulumi.edge.yaml           print every patch, per node
python -m talos_fleet schema                                   print the stack-file JSON Schema
"""

from __future__ import annotations

import argparse
import json
import sys

from talos_fleet import naming, patches
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.plan import plan_cluster
from talos_fleet.schema import stack_file_schema
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
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(json.dumps(stack_file_schema(), indent=2, sort_keys=True))
        return 0
    files = args.files if args.command == "validate" else [args.file]
    failed = False
    for path in files:
        try:
            fleet = load_stack_file(path)
        except SpecError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed = True
            continue
        if args.command == "validate":
            nodes = sum(len(c.nodes) for c in fleet.clusters.values())
            print(f"{path}: ok ({len(fleet.clusters)} cluster(s), {nodes} node(s))")
            continue
        secrets = {name: f"<secret:{name}>" for name in fleet.secrets}
        rendered = patches.render_fleet(
            fleet, secrets, lambda cname, version, arch: INSTALLER_PLACEHOLDER.format(version=version)
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


if __name__ == "__main__":
    sys.exit(main())
