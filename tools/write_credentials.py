"""Write per-cluster credentials from `pulumi stack output --json --show-secrets` to 0600 files.

    pulumi stack output --show-secrets --json kubeconfig | python -m tools.write_credentials kubeconfig DIR

The files are created with mode 0600 from the start (never world-readable, not even briefly) in a
0700 directory, and replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def write_secret_file(path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask and ignored for existing files
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("kubeconfig", "talosconfig"):
        print("usage: python -m tools.write_credentials kubeconfig|talosconfig DIR < outputs.json", file=sys.stderr)
        return 2
    kind, directory = argv[1], Path(argv[2])
    try:
        per_cluster = json.load(sys.stdin)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        print(f"no {kind} output: has `make up` finished for this stack?", file=sys.stderr)
        return 1
    if not isinstance(per_cluster, dict) or not per_cluster:
        print(f"the stack has no {kind} output yet: run `make up` first", file=sys.stderr)
        return 1
    env = "KUBECONFIG" if kind == "kubeconfig" else "TALOSCONFIG"
    for cluster, content in sorted(per_cluster.items()):
        path = directory / f"{cluster}.{kind}"
        try:
            write_secret_file(path, str(content))
        except OSError as error:
            print(f"{path}: cannot write it ({error.strerror}); check {directory}'s permissions", file=sys.stderr)
            return 2
        print(f"wrote {path} (mode 0600): export {env}={path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
