"""The day-2 steps as pulumi-command runs them: `python3 -m talos_fleet.day2 <step>` in the project
directory, inputs in the environment and on stdin, against a fake talosctl and kubectl that log
every call: a node's lifecycle (record, removal), the Kubernetes upgrade, credentials, records.
Plus the version gate's guard rails, one fixture each (tests/fixtures/upgrade). The rollouts are
in test_rollouts.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_fleet import day2
from talos_fleet.loader import SpecError, load_stack_file
from talos_fleet.plan import gate_environment, plan_cluster
from tests.harness import ROOT, fixture_header, mutated_stack

FAKE_TOOL = Path(__file__).parent / "fakes" / "tool.py"
UPGRADE_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "upgrade").glob("*.yaml"))
NODE, CONTROL_PLANE = "10.17.3.12", "10.17.3.11"
OLD_SCHEMATIC, NEW_SCHEMATIC = "a" * 64, "b" * 64


def installer(schematic: str, version: str) -> str:
    return f"factory.talos.dev/metal-installer/{schematic}:{version}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def argv(self) -> list[str]:
        return [" ".join([c["tool"], *c["args"]]) for c in self.calls]

    def index(self, needle: str) -> int:
        """The position of the first call containing `needle`."""
        return next(i for i, a in enumerate(self.argv()) if needle in a)

    def ran(self, needle: str) -> bool:
        return any(needle in a for a in self.argv())

    def record(self) -> dict[str, Any]:
        """The step's record: the last line on stdout."""
        record: dict[str, Any] = json.loads(self.stdout.splitlines()[-1])
        return record


def fake_bin(directory: Path, tools: tuple[str, ...] = ("talosctl", "kubectl")) -> Path:
    """`directory` holding a wrapper per tool that runs the fake."""
    directory.mkdir(exist_ok=True)
    for tool in tools:
        wrapper = directory / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOL}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    return directory


class Steps:
    """Runs steps like pulumi-command does, with the fake `tools` alone on PATH, against one fake
    state and call log in `directory` (also the steps' TMPDIR)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_file, self.log_file = directory / "state.json", directory / "calls.jsonl"

    def prepare(self, state: dict[str, Any] | None) -> None:
        self.state_file.write_text(json.dumps(state or {"nodes": {}}))
        self.log_file.write_text("")

    def start(
        self, name: str, env: dict[str, str], tools: tuple[str, ...] = ("talosctl", "kubectl"), stdin: str = ""
    ) -> subprocess.Popen[str]:
        bin_dir = fake_bin(self.directory / "bin", tools)
        python = Path(sys.executable).parent
        environ = {
            # The step finds python3 on PATH, as under pulumi-command; no real talosctl or
            # kubectl can be found, only the fakes asked for.
            "PATH": f"{bin_dir}:{python}",
            "FAKE_STATE": str(self.state_file),
            "FAKE_LOG": str(self.log_file),
            "HOME": str(self.directory),
            "TMPDIR": str(self.directory),
            # The fake's machines apply a config before they answer, and their Ready follows it at
            # once: nothing to settle (day2.SETTLE_SECONDS). A test of the settle sets its own.
            "TALOS_FLEET_SETTLE_SECONDS": "0",
            **env,
        }
        process = subprocess.Popen(
            ["python3", "-m", "talos_fleet.day2", name],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Written whole now (a step reads all of stdin before anything else), so that steps
        # started together run together.
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
        process.stdin = None
        return process

    def finish(self, process: subprocess.Popen[str]) -> Result:
        stdout, stderr = process.communicate(timeout=120)
        code = process.returncode
        calls = [json.loads(line) for line in self.log_file.read_text().splitlines()]
        return Result(code, stdout, stderr, calls, json.loads(self.state_file.read_text()))

    def run(
        self,
        name: str,
        env: dict[str, str],
        state: dict[str, Any] | None = None,
        tools: tuple[str, ...] = ("talosctl", "kubectl"),
        stdin: str = "",
    ) -> Result:
        self.prepare(state)
        return self.finish(self.start(name, env, tools, stdin))


@pytest.fixture
def step(tmp_path: Path) -> Callable[..., Result]:
    """Run a step like pulumi-command does, with the fake `tools` alone on PATH."""
    return Steps(tmp_path).run


def leftovers(directory: Path) -> list[Path]:
    """What a step left in its temporary directory but the cluster's removal lock (which holds
    nothing and must stay) and the fake's own files."""
    return [p for p in directory.iterdir() if p.name.startswith("talos-fleet-") and not p.name.endswith(".lock")]


# The cluster's OS CA as the provider's machine secrets hold it: base64 of PEM
# (siderolabs/terraform-provider-talos v0.11.0 pkg/talos/util.go secretsBundleTomachineSecrets).
CA_PEM = "-----BEGIN CERTIFICATE-----\nFAKE-os-ca-cert\n-----END CERTIFICATE-----\n"
CA_KEY_PEM = "-----BEGIN ED25519 PRIVATE KEY-----\nFAKE-os-ca-key\n-----END ED25519 PRIVATE KEY-----\n"
CA_B64 = {k: base64.b64encode(v.encode()).decode() for k, v in (("cert", CA_PEM), ("key", CA_KEY_PEM))}
CREDENTIALS = json.dumps({"osCa": CA_B64})
SECRETS = ["FAKE-os-ca-cert", "FAKE-os-ca-key", *CA_B64.values()]
WORKER = "10.17.3.21"


def node_env(**overrides: str) -> dict[str, str]:
    env = {
        "TALOS_FLEET_CLUSTER": "homelab",
        "TALOS_FLEET_HOSTNAME": "cp-2",
        "TALOS_FLEET_ROLE": "controlplane",
        "TALOS_FLEET_NODE": NODE,
        "TALOS_FLEET_CONTROL_PLANE": CONTROL_PLANE,
        "TALOS_FLEET_ALLOW_DOWNGRADE": "false",
        "TALOS_FLEET_DRAIN_TIMEOUT_MINUTES": "10",
        "TALOS_FLEET_HEALTH_TIMEOUT_MINUTES": "15",
    }
    return {**env, **{f"TALOS_FLEET_{k.upper()}": v for k, v in overrides.items()}}


def worker_env(**overrides: str) -> dict[str, str]:
    return node_env(hostname="worker-1", role="worker", node=WORKER, **overrides)


def cluster_state(version: str = "v1.13.10", schematic: str | None = OLD_SCHEMATIC, **extra: Any) -> dict[str, Any]:
    nodes = {
        ip: {"hostname": host, "role": role, "version": version, "schematic": schematic}
        for ip, host, role in (
            (CONTROL_PLANE, "cp-1", "controlplane"),
            (NODE, "cp-2", "controlplane"),
            (WORKER, "worker-1", "worker"),
        )
    }
    return {"nodes": nodes, **extra}


def through(endpoint: str, node: str) -> str:
    return f"talosctl --nodes {node} --endpoints {endpoint}"


# The annotation the README and the steps promise: written out here, not read from day2, so that
# renaming it (which would orphan the marks a running fleet carries) fails a test.
MARK = "talos-fleet.dev/cordoned"


def cordoned_by_a_stopped_run(state: dict[str, Any], host: str, cluster: str = "homelab") -> dict[str, Any]:
    """`state` with `host` as a step killed between its cordon and its uncordon left it."""
    state.setdefault("cordoned", []).append(host)
    state.setdefault("annotations", {})[host] = {MARK: cluster}
    return state


def marked(state: dict[str, Any]) -> set[str]:
    return {h for h, annotations in state.get("annotations", {}).items() if MARK in annotations}


def cordon_story(calls: list[dict[str, Any]], host: str) -> list[str]:
    """What kubectl did to `host`, in order: `mark=<value>` and `unmark` for the annotation,
    otherwise the verb (cordon, drain, uncordon, delete)."""
    story = []
    for call in calls:
        args = call["args"]
        if call["tool"] != "kubectl" or host not in args:
            continue
        if args[0] != "annotate":
            story.append(args[0])
        elif f"{MARK}-" in args:
            story.append("unmark")
        else:
            story.append("mark=" + next(a.split("=", 1)[1] for a in args if a.startswith(f"{MARK}=")))
    return story


# ---------------------------------------------------------------------------------------------
# Credentials


@pytest.mark.parametrize("name", ["remove-node", "upgrade-kubernetes"])
def test_credentials_live_in_private_files_only_while_the_step_runs(
    step: Callable[..., Result], name: str, tmp_path: Path
) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    result = step(name, env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls
    for call in result.calls:
        if call["args"][:1] == ["gen"]:
            assert all(mode == "0o600" for mode in call["files_mode"].values()), call
            continue
        if call["talosconfig"] is not None:
            assert (call["talosconfig_mode"], call["talosconfig_dir_mode"]) == ("0o600", "0o700"), call
        if call["tool"] == "kubectl":
            assert call["kubeconfig_mode"] == "0o600", call
        assert not any(secret in arg for arg in call["args"] for secret in SECRETS)
    # Removed afterwards, and never printed.
    assert leftovers(tmp_path) == []
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_each_step_mints_a_short_lived_admin_certificate_from_the_os_ca(step: Callable[..., Result]) -> None:
    env = node_env()
    result = step("remove-node", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    [minted] = result.state["minted"].values()
    assert minted["roles"] == ["os:admin"]
    # Long enough for the longest step, or a rollout's longest wave (health, drain, upgrade or
    # reboot, wait, health), short otherwise.
    longest = 4 * int(env["TALOS_FLEET_HEALTH_TIMEOUT_MINUTES"]) + int(env["TALOS_FLEET_DRAIN_TIMEOUT_MINUTES"])
    assert longest <= minted["hours"] * 60 <= 24 * 60
    gen = [c for c in result.calls if c["args"][:1] == ["gen"]]
    assert [c["args"][1] for c in gen] == ["key", "csr", "crt"]
    assert result.index("gen crt") < result.index(" version ")


@pytest.mark.parametrize("batch", [1, day2.MAX_PARALLEL, day2.MAX_PARALLEL + 1, 1000])
def test_a_rollout_certificate_outlasts_a_wave_of_its_largest_batch(batch: int) -> None:
    """A batch's nodes are drained, upgraded or rebooted and waited for MAX_PARALLEL at a time, so
    a batch of 1,000 workers takes many rounds of them within one wave."""
    env = node_env(worker_batch_size=str(batch), settle_seconds="60")
    health, drain = int(env["TALOS_FLEET_HEALTH_TIMEOUT_MINUTES"]), int(env["TALOS_FLEET_DRAIN_TIMEOUT_MINUTES"])
    # Per round: health before, drain, upgrade, wait for the target, health after; a minute's settle.
    rounds = -(-batch // day2.MAX_PARALLEL)
    hours = day2.Env(env).certificate_hours()
    assert hours * 60 >= rounds * (4 * health + drain + 1)
    if rounds == 1:
        assert hours <= 24  # short-lived when a wave is short


@pytest.mark.parametrize(
    "stdin",
    [
        "",
        json.dumps({"osCa": {"cert": "not base64!", "key": CA_B64["key"]}}),
        json.dumps({"caCertificate": "FAKE-client-ca", "clientCertificate": "x", "clientKey": "y"}),
    ],
    ids=["empty", "not-base64", "client-configuration-not-base64"],
)
def test_credentials_that_are_not_a_base64_ca_are_refused_before_any_call(
    step: Callable[..., Result], stdin: str
) -> None:
    result = step("remove-node", node_env(), cluster_state(), stdin=stdin)
    assert result.code == 1
    assert "the Talos CA on stdin is missing or not base64" in result.stderr
    assert result.calls == []


def test_a_removal_with_the_client_configuration_stored_by_an_earlier_release_still_works(
    step: Callable[..., Result],
) -> None:
    """A node removed in the same `pulumi up` that moves to this release is deleted with the stdin
    its last run stored: the provider's client configuration (base64 PEM)."""
    pem = {
        "caCertificate": CA_PEM,
        "clientCertificate": "-----BEGIN CERTIFICATE-----\nFAKE-provider-client\n-----END CERTIFICATE-----\n",
        "clientKey": "-----BEGIN ED25519 PRIVATE KEY-----\nFAKE-provider-key\n-----END ED25519 PRIVATE KEY-----\n",
    }
    # The provider's certificate, signed by the cluster's CA, as the fake's nodes know it.
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in pem.items()}
    known = {digest["clientCertificate"]: {"ca": digest["caCertificate"], "roles": ["os:admin"], "hours": 8760}}
    stdin = json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in pem.items()})
    result = step("remove-node", worker_env(), cluster_state(minted=known), stdin=stdin)
    assert result.code == 0, result.stderr
    assert not result.ran("gen crt")
    assert result.ran("kubectl delete node worker-1")


def test_credentials_are_removed_when_a_step_fails(step: Callable[..., Result], tmp_path: Path) -> None:
    result = step("remove-node", node_env(), cluster_state(fail=["reset"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert result.ran(" reset ")
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# record steps and Kubernetes


@pytest.mark.parametrize("name", ["record-node", "record-kubernetes", "gate"])
def test_creation_steps_run_no_tool(step: Callable[..., Result], name: str) -> None:
    env = {**node_env(), "TALOS_FLEET_TALOS_VERSION": "v1.13.11", "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.3"}
    result = step(name, env, cluster_state(), tools=())
    assert result.code == 0, result.stderr
    assert result.calls == []


def test_a_lifecycle_records_its_node_on_create_and_update_and_touches_nothing(step: Callable[..., Result]) -> None:
    env = worker_env()
    result = step("record-node", {**env, "PULUMI_COMMAND_STDOUT": json.dumps({"removed": "x"})}, tools=())
    assert result.code == 0, result.stderr
    assert result.calls == []
    assert result.record() == {"hostname": env["TALOS_FLEET_HOSTNAME"], "role": env["TALOS_FLEET_ROLE"]}


def test_every_step_has_a_constant_command_and_upgrade_node_is_gone() -> None:
    """The steps the graph names (components/cluster_operations.py): the per-node upgrade moved
    into the upgrade rollout."""
    wanted = {"gate", "record-node", "remove-node", "record-kubernetes", "upgrade-kubernetes"}
    wanted |= {"record-upgrades", "upgrade-rollout", "record-config", "roll-config"}
    assert set(day2.STEPS) == wanted
    for name in wanted:
        assert day2.command(name) == f"python3 -m talos_fleet.day2 {name}"
    with pytest.raises(KeyError):
        day2.command("upgrade-node")


def test_a_packed_record_field_is_base64_of_zlib_json_and_comes_back_unpacked() -> None:
    value = {"worker-1": "0123456789ab:ba9876543210", "cp-1": "aaaaaaaaaaaa:bbbbbbbbbbbb"}
    packed = day2.pack(value)
    assert json.loads(zlib.decompress(base64.b64decode(packed, validate=True))) == value
    record = {"config": packed, "talos": "v1.13.9"}
    # pulumi-command hands back the whole stdout: progress lines never go there, but the record is
    # the last line whatever came before.
    env = day2.Env({"PULUMI_COMMAND_STDOUT": "noise\n" + json.dumps(record)})
    assert env.previous() == {"config": value, "talos": "v1.13.9"}
    broken = day2.Env({"PULUMI_COMMAND_STDOUT": json.dumps({"config": "not packed!"})})
    assert broken.previous() is None
    assert day2.Env({}).previous() is None


def test_stderr_stays_under_its_budget_and_the_rest_goes_to_a_private_log_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pulumi-command hands the whole stderr to the command's next run as one environment string
    (PULUMI_COMMAND_STDERR), which Linux caps at 128 KiB: a rollout over thousands of nodes must not
    print all its progress there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    progress = day2.Progress(budget=4096)
    monkeypatch.setattr(day2, "PROGRESS", progress)
    lines = [f"node-{i:05d}: upgraded" for i in range(2000)]
    for line in lines:
        day2.log(line)
    day2.log("stopped: the last words", always=True)
    shown = stderr.getvalue()
    assert len(shown.encode()) <= 4096 + 300  # the budget, the notice and the last words
    [logfile] = [p for p in tmp_path.iterdir() if p.name.endswith(".log")]
    assert str(logfile) in shown
    assert oct(os.stat(logfile).st_mode & 0o777) == "0o600"
    # Nothing lost: every line is on stderr or in the file, in order.
    kept = [line for line in shown.splitlines() if line.startswith("talos-fleet: node-")]
    assert kept + logfile.read_text().splitlines()[: len(lines) - len(kept)] == [f"talos-fleet: {x}" for x in lines]
    assert shown.splitlines()[-1] == "talos-fleet: stopped: the last words"


def test_a_rollout_mints_a_new_certificate_before_a_wave_could_outlive_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = day2.Env(node_env())
    minted: list[str] = []
    closed: list[str] = []

    @contextlib.contextmanager
    def fake_credentials(env: day2.Env, stdin: str, kubernetes: bool) -> Iterator[day2.Tools]:
        name = f"certificate-{len(minted)}"
        minted.append(name)
        yield day2.Tools({"which": name}, CONTROL_PLANE)
        closed.append(name)

    now = [1000.0]
    monkeypatch.setattr(day2, "credentials", fake_credentials)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    lasts = env.certificate_hours() * 3600
    with day2.Renewing(env, CREDENTIALS) as session:
        first = session.tools()
        now[0] += lasts - env.wave_minutes() * 60 - 3600  # plenty left for a wave: the same one
        assert session.tools() is first
        now[0] += 3600  # a wave starting now could end after the certificate: a new one
        second = session.tools()
        assert second is not first
        assert closed == ["certificate-0"]
    assert minted == closed == ["certificate-0", "certificate-1"]


def test_kubernetes_upgrade_runs_upgrade_k8s_once_then_checks_health(step: Callable[..., Result]) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    result = step("upgrade-kubernetes", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    upgrades = [a for a in result.argv() if "upgrade-k8s" in a]
    assert upgrades == [f"{through(CONTROL_PLANE, CONTROL_PLANE)} upgrade-k8s --to=1.36.4"]
    assert result.index("upgrade-k8s") < result.index(" health ")
    assert result.state["kubernetes"] == "1.36.4"


def test_kubernetes_rerun_for_the_same_target_runs_nothing(step: Callable[..., Result]) -> None:
    env = {**node_env(), "TALOS_FLEET_KUBERNETES_VERSION": "v1.36.4"}
    env["PULUMI_COMMAND_STDOUT"] = json.dumps({"kubernetes": "v1.36.4"})
    result = step("upgrade-kubernetes", env, cluster_state(), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.calls == []


# ---------------------------------------------------------------------------------------------
# remove-node


@pytest.mark.parametrize(("env", "host"), [(worker_env(), "worker-1"), (node_env(), "cp-2")], ids=["worker", "cp"])
def test_removal_drains_resets_gracefully_then_deletes_the_node(
    step: Callable[..., Result], env: dict[str, str], host: str
) -> None:
    result = step("remove-node", env, cluster_state(etcd_members=3), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    node = env["TALOS_FLEET_NODE"]
    order = [f"kubectl cordon {host}", f"kubectl drain {host}", f"{through(CONTROL_PLANE, node)} reset --graceful=true"]
    order.append(f"kubectl delete node {host}")
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    # Marked before its cordon, as talos-fleet's; the mark goes with the deleted Node.
    assert cordon_story(result.calls, host) == ["mark=homelab", "cordon", "drain", "delete"]
    assert marked(result.state) == set()
    reset = result.state["nodes"][node]
    assert reset["reset"] == {"graceful": True, "reboot": False}
    # The reset's own drain (best effort) found the node drained already: one effective drain.
    assert reset["reset_found_drained"] is True


def test_concurrent_removals_of_one_cluster_run_one_at_a_time(tmp_path: Path) -> None:
    """Pulumi deletes lifecycles in parallel (no edges between them): each removal takes the
    cluster's lock for its whole drain, reset and delete, so one node is out at a time."""
    steps = Steps(tmp_path)
    state = cluster_state(etcd_members=3, slow={"drain": 0.5})
    steps.prepare(state)
    envs = [worker_env(), node_env()]
    processes = [steps.start("remove-node", env, stdin=CREDENTIALS) for env in envs]
    results = [steps.finish(p) for p in processes]
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    hosts = {env["TALOS_FLEET_HOSTNAME"]: env["TALOS_FLEET_NODE"] for env in envs}

    def owner(call: dict[str, Any]) -> str | None:
        args = call["args"]
        if call["tool"] == "kubectl" and args[:1] != ["get"]:
            return args[-1] if args[-1] in hosts else next((a for a in args if a in hosts), None)
        if "reset" in args:
            return next(h for h, ip in hosts.items() if ip in args)
        return None

    sequence = [o for o in (owner(c) for c in results[-1].calls) if o is not None]
    # Each node's cordon, drain, reset and delete run as one block: never interleaved.
    first = sequence[0]
    switch = sequence.index(next(h for h in sequence if h != first))
    assert set(sequence[:switch]) == {first}, sequence
    assert first not in sequence[switch:], sequence
    # Inside the lock each removal first checks the cluster: the second one after the first one's
    # delete, on the cluster as the first one left it.
    checked = [
        o
        for o in (
            "health" if " health " in a else owner(c)
            for c, a in zip(results[-1].calls, results[-1].argv(), strict=True)
        )
        if o is not None
    ]
    assert checked == ["health", *[first] * 5, "health", *[sequence[-1]] * 5], checked
    for host in hosts:
        mine = [c for c in results[-1].calls if owner(c) == host]
        verbs = [c["args"][0] if c["tool"] == "kubectl" else "reset" for c in mine]
        assert verbs == ["annotate", "cordon", "drain", "reset", "delete"], (host, verbs)
    # Both processes really overlapped: the second one waited for the lock.
    assert any("waiting for another node's removal" in r.stderr for r in results)
    lock = tmp_path / "talos-fleet-homelab.lock"
    assert oct(os.stat(lock).st_mode & 0o777) == "0o600"


def test_teardown_takes_no_lock(step: Callable[..., Result], tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / "talos-fleet-homelab.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = step("remove-node", destroy(worker_env()), cluster_state(kubernetes_down=True), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran("reset --graceful=false --reboot --wait=false")


def test_a_removal_whose_drain_fails_leaves_the_node_schedulable_and_unmarked(step: Callable[..., Result]) -> None:
    result = step("remove-node", worker_env(), cluster_state(fail=["drain"]), stdin=CREDENTIALS)
    assert result.code == 1
    assert not result.ran(" reset ")
    assert result.state["cordoned"] == []
    assert cordon_story(result.calls, "worker-1") == ["mark=homelab", "cordon", "drain", "uncordon", "unmark"]
    assert marked(result.state) == set()


def test_a_removal_uncordons_what_a_stopped_removal_left_but_not_a_node_cordoned_by_hand(
    step: Callable[..., Result],
) -> None:
    """worker-1's earlier removal was killed after its cordon: marked, so uncordoned before the
    health check, then drained again. cp-1 was cordoned by hand: left so, and the health check
    stops the removal before it drains anything."""
    state = cordoned_by_a_stopped_run(cluster_state(), "worker-1")
    result = step("remove-node", worker_env(), state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.index("kubectl uncordon worker-1") < result.index(" health ")
    assert cordon_story(result.calls, "worker-1") == [
        *["uncordon", "unmark"],
        *["mark=homelab", "cordon", "drain", "delete"],
    ]
    by_hand = {**cordoned_by_a_stopped_run(cluster_state(), "worker-1"), "cordoned": ["cp-1", "worker-1"]}
    stopped = step("remove-node", worker_env(), by_hand, stdin=CREDENTIALS)
    assert stopped.code == 1
    assert "cp-1 is cordoned, not by talos-fleet" in stopped.stderr
    assert "not schedulable: [cp-1]" in stopped.stderr
    assert cordon_story(stopped.calls, "cp-1") == []
    assert "cp-1" in stopped.state["cordoned"]
    assert not stopped.ran("kubectl drain")


def test_a_removal_waits_for_nothing_on_an_unhealthy_cluster_unless_forced(step: Callable[..., Result]) -> None:
    """A removal right after another must not start on a cluster that has not recovered."""
    state = cluster_state()
    state["nodes"][WORKER]["ready"] = False
    result = step("remove-node", node_env(), state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "not ready: [worker-1]" in result.stderr
    assert "TALOS_FLEET_FORCE_REMOVE=1" in result.stderr
    assert not result.ran("kubectl cordon")
    assert not result.ran(" reset ")
    forced = step("remove-node", node_env(force_remove="1"), state, stdin=CREDENTIALS)
    assert forced.code == 0, forced.stderr
    assert not forced.ran(" health ")
    assert forced.ran("kubectl delete node cp-2")
    assert forced.state["nodes"][NODE]["reset"] == {"graceful": True, "reboot": False}


def test_the_endpoint_removes_itself_asking_itself(step: Callable[..., Result]) -> None:
    """The first control plane, the endpoint of every call, is removed last: its own removal
    reaches the cluster through itself until its reset powers it off."""
    env = node_env(hostname="cp-1", node=CONTROL_PLANE)
    result = step("remove-node", env, cluster_state(etcd_members=2), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    order = [f"{through(CONTROL_PLANE, CONTROL_PLANE)} health", "kubectl cordon cp-1", "kubectl drain cp-1"]
    order += [f"{through(CONTROL_PLANE, CONTROL_PLANE)} reset --graceful=true", "kubectl delete node cp-1"]
    positions = [result.index(n) for n in order]
    assert positions == sorted(positions), result.argv()
    assert result.state["nodes"][CONTROL_PLANE]["down"] is True
    assert [a for a in result.argv()[positions[3] + 1 :] if a.startswith("talosctl")] == []


@dataclass(frozen=True)
class Recording(day2.Tools):
    """Tools whose calls are recorded, never run."""

    calls: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(" ".join(args))
        return subprocess.CompletedProcess(list(args), 0, "", "")


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, RuntimeError, day2.StepError])
def test_nodes_taken_out_of_service_are_uncordoned_whatever_stops_the_step(stop: type[BaseException]) -> None:
    tools = Recording({}, CONTROL_PLANE)
    with pytest.raises(stop), day2._out_of_service(tools, day2.Env(node_env()), ["worker-1", "worker-2"]):
        raise stop()
    calls = [{"tool": c.split()[0], "args": c.split()[1:]} for c in tools.calls]
    for host in ("worker-1", "worker-2"):
        # Unmarked only after the uncordon: a failure between them leaves the mark that lets the
        # next step recognise the cordon as its own.
        assert cordon_story(calls, host) == ["mark=homelab", "cordon", "drain", "uncordon", "unmark"], tools.calls


def test_the_last_etcd_member_is_reset_without_leaving_etcd(step: Callable[..., Result]) -> None:
    result = step("remove-node", node_env(), cluster_state(etcd_members=1), stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert result.ran("reset --graceful=false")


def test_an_unreachable_node_is_not_forgotten_silently(step: Callable[..., Result]) -> None:
    state = cluster_state()
    state["nodes"][NODE]["down"] = True
    result = step("remove-node", node_env(), state, stdin=CREDENTIALS)
    assert result.code == 1
    assert "TALOS_FLEET_FORCE_REMOVE=1 make up STACK=" in result.stderr
    assert not result.ran("kubectl delete")
    forced = step("remove-node", node_env(force_remove="1"), state, stdin=CREDENTIALS)
    assert forced.code == 0, forced.stderr
    assert forced.ran("kubectl delete node cp-2")
    assert not forced.ran(" reset ")


# ---------------------------------------------------------------------------------------------
# Teardown (`make destroy` sets day2.DESTROY_ENV in the operator's environment)


def destroy(env: dict[str, str]) -> dict[str, str]:
    return {**env, day2.DESTROY_ENV: "1"}


def test_teardown_resets_a_reachable_machine_without_draining_or_waiting(step: Callable[..., Result]) -> None:
    state = cluster_state(kubernetes_down=True)
    state["nodes"][CONTROL_PLANE]["down"] = True  # the control planes may be gone already
    result = step("remove-node", destroy(worker_env()), state, stdin=CREDENTIALS)
    assert result.code == 0, result.stderr
    assert [c for c in result.calls if c["tool"] == "kubectl"] == []
    assert result.ran(f"{through(WORKER, WORKER)} reset --graceful=false --reboot --wait=false")
    # Back to maintenance mode on metal, so the machine can be installed again.
    assert result.state["nodes"][WORKER]["reset"] == {"graceful": False, "reboot": True}
    assert "reset requested" in result.stderr


@pytest.mark.parametrize("broken", ["down", "no-talosctl", "bad-stdin"])
def test_teardown_never_fails_on_what_is_already_gone(step: Callable[..., Result], broken: str) -> None:
    state = cluster_state(kubernetes_down=True)
    state["nodes"][WORKER]["down"] = broken == "down"
    tools = () if broken == "no-talosctl" else ("talosctl", "kubectl")
    stdin = "" if broken == "bad-stdin" else CREDENTIALS
    result = step("remove-node", destroy(worker_env()), state, tools=tools, stdin=stdin)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"removed": "worker-1"}
    assert not result.ran(" reset ")
    assert "worker-1" in result.stderr


# ---------------------------------------------------------------------------------------------
# The version gate: one fixture per guard rail


def _fixture(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    document["expect"] = fixture_header(path)
    return document


@pytest.mark.parametrize("fixture", UPGRADE_FIXTURES, ids=lambda p: p.name)
def test_guard_rail(fixture: Path, step: Callable[..., Result], tmp_path: Path) -> None:
    case = _fixture(fixture)
    base = ROOT / "stacks" / f"Pulumi.{case['stack']}.yaml"

    def change(document: dict[str, Any]) -> None:
        document["config"]["talos-fleet:defaults"].update(case["change"])

    changed = mutated_stack(base, tmp_path, change)
    expected = case["expect"]
    if expected.get("expect-stage") == "spec":
        with pytest.raises(SpecError) as raised:
            load_stack_file(changed)
        assert expected["expect-message"] in str(raised.value)
        return
    fleet = load_stack_file(changed)
    for cname in fleet.clusters:
        env = {**gate_environment(plan_cluster(fleet, cname)), "PULUMI_COMMAND_STDOUT": json.dumps(case["deployed"])}
        result = step("gate", env, tools=())
        assert result.calls == []
        if "expect-message" in expected:
            assert result.code == 1
            assert expected["expect-message"] in result.stderr
            assert "before any node is touched" in result.stderr
        else:
            assert result.code == 0, result.stderr
            assert json.loads(result.stdout) == {
                "talos": fleet.talos_version(fleet.clusters[cname]),
                "kubernetes": fleet.kubernetes_version(fleet.clusters[cname]),
            }


def test_every_guard_rail_has_a_fixture() -> None:
    messages = " ".join(_fixture(p)["expect"].get("expect-message", "") for p in UPGRADE_FIXTURES)
    for rail in (
        "downgrade is refused",
        "skips Talos",
        "jumps more than one minor",
        "while Talos upgrades",
        "supports Kubernetes",
    ):
        assert rail in messages, rail
