"""A fake talosctl and kubectl for the day-2 step tests: `tool.py <talosctl|kubectl> args...`.

State lives in the JSON file named by FAKE_STATE: each node's Talos version and schematic, the
etcd member count, which subcommands fail, the talosctl client version. Every call is appended to
FAKE_LOG with what a test must check: the arguments, and the credential files the tool was given
(their modes, and whether they were private at the time).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any


def _mode(path: str | None) -> str | None:
    if not path or not os.path.exists(path):
        return None
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def main() -> int:
    tool, *args = sys.argv[1:]
    with open(os.environ["FAKE_STATE"]) as handle:
        state = json.load(handle)
    talosconfig, kubeconfig = os.environ.get("TALOSCONFIG"), os.environ.get("KUBECONFIG")
    entry = {
        "tool": tool,
        "args": args,
        "talosconfig": talosconfig,
        "talosconfig_mode": _mode(talosconfig),
        "talosconfig_dir_mode": _mode(os.path.dirname(talosconfig)) if talosconfig else None,
        "kubeconfig_mode": _mode(kubeconfig),
    }
    with open(os.environ["FAKE_LOG"], "a") as handle:
        handle.write(json.dumps(entry) + "\n")
    verb = _verb(tool, args)
    if verb in state.get("fail", []):
        print(f"fake {tool}: {verb} failed", file=sys.stderr)
        return 1
    out = _answer(tool, verb, args, state)
    with open(os.environ["FAKE_STATE"], "w") as handle:
        json.dump(state, handle)
    if out is None:
        return 1
    print(out)
    return 0


def _verb(tool: str, args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")]
    if tool == "talosctl":
        # talosctl --nodes N --endpoints N <verb>: drop the flag values
        rest = list(args)
        while rest and rest[0] in ("--nodes", "--endpoints"):
            rest = rest[2:]
        words = [a for a in rest if not a.startswith("-")]
    return words[0] if words else ""


def _node(args: list[str]) -> str | None:
    return args[args.index("--nodes") + 1] if "--nodes" in args else None


def _answer(tool: str, verb: str, args: list[str], state: dict[str, Any]) -> str | None:
    if tool == "kubectl":
        return "ok"
    node = state["nodes"].get(_node(args) or "")
    if verb == "version":
        client = f"Client:\n\tTag: {state.get('client', 'v1.13.10')}"
        if "--client" in args:
            return client
        if node is None or node.get("down"):
            return None
        if node.get("rebooting", 0) > 0:  # answers nothing for a few calls after an upgrade
            node["rebooting"] -= 1
            return None
        return f"{client}\nServer:\n\tNODE: {_node(args)}\n\tTag: {node['version']}"
    if verb == "get":
        other = {"metadata": {"id": "1"}, "spec": {"metadata": {"name": "qemu-guest-agent", "version": "10.0"}}}
        if node["schematic"] is None:  # an image that does not say its schematic
            return json.dumps(other, indent=2)
        resource = {"metadata": {"id": "0"}, "spec": {"metadata": {"name": "schematic", "version": node["schematic"]}}}
        return json.dumps(other, indent=2) + "\n" + json.dumps(resource, indent=2)
    if verb == "upgrade":
        image = next(a.split("=", 1)[1] for a in args if a.startswith("--image="))
        schematic, node["version"] = image.rsplit("/", 1)[-1].split(":", 1)
        node["schematic"] = schematic if node["schematic"] is not None else None
        node["rebooting"] = state.get("reboot_calls", 0)
        return "upgraded"
    if verb == "kubeconfig":
        path = [a for a in args if not a.startswith("-")][-1]
        with open(path, "w") as handle:
            handle.write("FAKE-kubeconfig")
        return ""
    if verb == "etcd":
        return "NODE MEMBER\n" + "\n".join(f"x m{i}" for i in range(state.get("etcd_members", 3)))
    if verb == "reset":
        node["reset"] = True
        return "reset"
    return "ok"  # health, upgrade-k8s


if __name__ == "__main__":
    sys.exit(main())
