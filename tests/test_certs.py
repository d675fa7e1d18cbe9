"""Certificate expiry from a cluster's talosconfig and kubeconfig (talos_fleet/certs.py).

Every certificate is generated here with `cryptography`, with a NotAfter the test chooses; the
credential files around them have the real tools' shapes (tests/certificates.py cites them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from talos_fleet import certs
from tests.certificates import Material, b64, certificate, kubeconfig, talosconfig, whole_seconds

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def credentials(
    client: timedelta = 400 * DAY,
    talos_ca: timedelta = 3650 * DAY,
    kube_client: timedelta = 400 * DAY,
    kube_ca: timedelta = 3650 * DAY,
    now: datetime = NOW,
) -> tuple[str, str, dict[str, Material]]:
    """A talosconfig and kubeconfig whose four certificates expire `now` plus each delta."""
    made = {
        certs.TALOSCONFIG_CLIENT: certificate(now + client),
        certs.TALOS_CA: certificate(now + talos_ca, "talos", ca=True),
        certs.KUBECONFIG_CLIENT: certificate(now + kube_client, "admin"),
        certs.KUBERNETES_CA: certificate(now + kube_ca, "kubernetes", ca=True),
    }
    talos = talosconfig(
        "edge",
        b64(made[certs.TALOS_CA].certificate),
        b64(made[certs.TALOSCONFIG_CLIENT].certificate),
        b64(made[certs.TALOSCONFIG_CLIENT].key),
        ["10.0.0.2"],
    )
    kube = kubeconfig("edge", "https://10.0.0.10:6443", made[certs.KUBERNETES_CA], made[certs.KUBECONFIG_CLIENT])
    return talos, kube, made


def by_name(expiries: list[certs.Expiry]) -> dict[str, certs.Expiry]:
    assert len({e.name for e in expiries}) == len(expiries)
    return {e.name: e for e in expiries}


def test_ten_and_four_hundred_days_and_an_expired_one() -> None:
    talos, kube, _ = credentials(client=10 * DAY, kube_client=400 * DAY, talos_ca=-3 * DAY + timedelta(hours=1))
    found = by_name(certs.cluster_expiries(talos, kube, "edge", NOW))
    assert (found[certs.TALOSCONFIG_CLIENT].days_left, found[certs.TALOSCONFIG_CLIENT].warning) == (10, True)
    assert (found[certs.KUBECONFIG_CLIENT].days_left, found[certs.KUBECONFIG_CLIENT].warning) == (400, False)
    # 2 days 23 hours ago: floor, so -3, and expired certificates warn.
    assert (found[certs.TALOS_CA].days_left, found[certs.TALOS_CA].warning) == (-3, True)
    assert (found[certs.KUBERNETES_CA].days_left, found[certs.KUBERNETES_CA].warning) == (3650, False)


def test_each_certificate_is_read_from_its_own_field() -> None:
    deltas = {
        certs.TALOSCONFIG_CLIENT: 11 * DAY,
        certs.TALOS_CA: 3001 * DAY,
        certs.KUBECONFIG_CLIENT: 402 * DAY,
        certs.KUBERNETES_CA: 3503 * DAY,
    }
    talos, kube, _ = credentials(
        client=deltas[certs.TALOSCONFIG_CLIENT],
        talos_ca=deltas[certs.TALOS_CA],
        kube_client=deltas[certs.KUBECONFIG_CLIENT],
        kube_ca=deltas[certs.KUBERNETES_CA],
    )
    found = by_name(certs.cluster_expiries(talos, kube, "edge", NOW))
    assert [e.name for e in certs.cluster_expiries(talos, kube, "edge", NOW)] == list(certs.NAMES)
    for name, delta in deltas.items():
        assert found[name].not_after == whole_seconds(NOW + delta), name
        assert found[name].not_after.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("left", "warns"), [(certs.WARN_DAYS - 1, True), (certs.WARN_DAYS, False)])
def test_warning_starts_under_the_threshold(left: int, warns: bool) -> None:
    talos, kube, _ = credentials(client=left * DAY + timedelta(minutes=1))
    (client, *_) = certs.cluster_expiries(talos, kube, "edge", NOW)
    assert (client.days_left, client.warning) == (left, warns)


@settings(max_examples=25)
@given(st.integers(min_value=-800 * 86400, max_value=800 * 86400))
def test_days_left_is_whole_days_rounded_down(seconds: int) -> None:
    now = NOW + timedelta(microseconds=250_000)  # a `now` between two seconds
    talos, kube, _ = credentials(client=timedelta(seconds=seconds), now=now)
    (client, *_) = certs.cluster_expiries(talos, kube, "edge", now)
    remaining = whole_seconds(now + timedelta(seconds=seconds)) - now
    assert client.days_left == math.floor(remaining.total_seconds() / 86400)
    assert client.warning == (remaining < timedelta(days=certs.WARN_DAYS))


def test_a_naive_now_is_utc() -> None:
    talos, kube, _ = credentials(client=10 * DAY)
    aware = certs.cluster_expiries(talos, kube, "edge", NOW)
    assert certs.cluster_expiries(talos, kube, "edge", NOW.replace(tzinfo=None)) == aware


def test_a_ca_bundle_counts_as_its_earliest_certificate() -> None:
    """During a CA rotation Talos puts every accepted CA in certificate-authority-data."""
    talos, _, made = credentials()
    old, new = certificate(NOW + 20 * DAY, ca=True), certificate(NOW + 3650 * DAY, ca=True)
    bundle = Material(new.certificate + old.certificate, new.key)
    kube = kubeconfig("edge", "https://10.0.0.10:6443", bundle, made[certs.KUBECONFIG_CLIENT])
    found = by_name(certs.cluster_expiries(talos, kube, "edge", NOW))
    assert found[certs.KUBERNETES_CA].not_after == NOW + 20 * DAY


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_renew_commands_are_real_make_targets_for_the_stack() -> None:
    talos, kube, _ = credentials()
    found = by_name(certs.cluster_expiries(talos, kube, "homelab", NOW))
    targets = _make_targets()
    for name in (certs.TALOSCONFIG_CLIENT, certs.KUBECONFIG_CLIENT):
        steps = [s.split() for s in found[name].renew.split(" && ")]
        # The provider renews both client certificates on `pulumi up` (make up), then the
        # operator writes the new file.
        assert steps[0] == ["make", "up", "STACK=homelab"], name
        written = "talosconfig" if name == certs.TALOSCONFIG_CLIENT else "kubeconfig"
        assert steps[1] == ["make", written, "STACK=homelab"], name
        assert {s[1] for s in steps} <= targets
    for name in (certs.TALOS_CA, certs.KUBERNETES_CA):
        assert certs.ROTATE_CA in found[name].renew
        assert "make" not in found[name].renew.split()


def test_exported_dates_are_iso_8601_or_one_error() -> None:
    talos, kube, _ = credentials(client=10 * DAY)
    dates = certs.exported_dates(talos, kube)
    assert list(dates) == list(certs.NAMES)
    assert datetime.fromisoformat(dates[certs.TALOSCONFIG_CLIENT]) == NOW + 10 * DAY
    broken = certs.exported_dates("FAKE-talosconfig", kube)
    assert list(broken) == ["error"]
    assert "talosconfig" in broken["error"]


# ---------------------------------------------------------------------------------------------
# Unreadable material: one CertError naming the field, never the material


def _edit_talos(change: Callable[[dict[str, Any]], None]) -> Callable[[str, str], tuple[str, str]]:
    def edit(talos: str, kube: str) -> tuple[str, str]:
        document = yaml.safe_load(talos)
        change(document)
        return yaml.safe_dump(document), kube

    return edit


def _edit_kube(change: Callable[[dict[str, Any]], None]) -> Callable[[str, str], tuple[str, str]]:
    def edit(talos: str, kube: str) -> tuple[str, str]:
        document = yaml.safe_load(kube)
        change(document)
        return talos, yaml.safe_dump(document)

    return edit


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        document = document[int(key)] if isinstance(document, list) else document[key]
    document[last] = value


def _key_instead_of_certificate(document: dict[str, Any]) -> None:
    context = document["contexts"]["edge"]
    context["crt"] = context["key"]


def _broken_yaml_near_the_key(talos: str, kube: str) -> tuple[str, str]:
    key_line = next(line for line in talos.splitlines() if line.strip().startswith("key:"))
    return talos.replace(key_line, key_line + " ]: [\n  {"), kube


MALFORMED: dict[str, tuple[Callable[[str, str], tuple[str, str]], str]] = {
    "empty talosconfig": (lambda t, k: ("", k), "talosconfig: empty"),
    "talosconfig not YAML": (_broken_yaml_near_the_key, "talosconfig: not valid YAML"),
    "talosconfig a string": (lambda t, k: ("FAKE-talosconfig", k), "talosconfig: the document"),
    "no contexts": (_edit_talos(lambda d: d.pop("contexts")), "talosconfig: contexts"),
    "context names no entry": (
        _edit_talos(lambda d: d["contexts"].update({"other": d["contexts"]["edge"]}) or d.update(context="gone")),
        "`context` does not name",
    ),
    "crt missing": (_edit_talos(lambda d: d["contexts"]["edge"].pop("crt")), "contexts.edge.crt is missing"),
    "crt not base64": (
        _edit_talos(lambda d: _set(d, "contexts.edge.crt", "not*base64")),
        "contexts.edge.crt is not base64",
    ),
    "crt not a certificate": (
        _edit_talos(lambda d: _set(d, "contexts.edge.crt", b64("hello"))),
        "contexts.edge.crt is not a PEM certificate",
    ),
    "crt holds the key": (_edit_talos(_key_instead_of_certificate), "contexts.edge.crt is not a PEM certificate"),
    "ca a number": (_edit_talos(lambda d: _set(d, "contexts.edge.ca", 12)), "contexts.edge.ca is missing"),
    "empty kubeconfig": (lambda t, k: (t, " \n"), "kubeconfig: empty"),
    "kubeconfig a list": (lambda t, k: (t, "- a\n- b\n"), "kubeconfig: the document"),
    "no users": (_edit_kube(lambda d: d.pop("users")), "kubeconfig: users is missing"),
    "current-context names nothing": (
        _edit_kube(lambda d: d.update({"current-context": "nobody@edge"})),
        "contexts has no single entry named 'nobody@edge'",
    ),
    "context names no cluster": (
        _edit_kube(lambda d: _set(d, "contexts.0.context.cluster", "other")),
        "clusters has no single entry named 'other'",
    ),
    "client certificate data not a certificate": (
        _edit_kube(lambda d: _set(d, "users.0.user.client-certificate-data", d["users"][0]["user"]["client-key-data"])),
        "user.client-certificate-data is not a PEM certificate",
    ),
    "CA data missing": (
        _edit_kube(lambda d: d["clusters"][0]["cluster"].pop("certificate-authority-data")),
        "cluster.certificate-authority-data is missing",
    ),
    "oversized": (lambda t, k: (t, k + "#" * certs.MAX_TEXT), "kubeconfig: larger than"),
}


def _shares_a_piece(message: str, secret: str, width: int = 12) -> bool:
    """Whether any `width` characters of `secret` appear in `message` (a YAML error, for one,
    quotes a cut of the offending line)."""
    return any(secret[i : i + width] in message for i in range(len(secret) - width + 1))


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_unreadable_material_is_one_cert_error_without_secrets(case: str) -> None:
    talos, kube, made = credentials()
    broken_talos, broken_kube = MALFORMED[case][0](talos, kube)
    with pytest.raises(certs.CertError) as raised:
        certs.cluster_expiries(broken_talos, broken_kube, "edge", NOW)
    message = str(raised.value)
    assert MALFORMED[case][1] in message
    assert len(message.splitlines()) == 1
    # No chained exception either: a traceback of one could quote the material.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__
    for material in made.values():
        for secret in (b64(material.key), "".join(material.key.splitlines()[1:-1])):
            assert not _shares_a_piece(message, secret), "a piece of a key is in the message"
    # The same material never breaks the export either: it becomes that one message.
    assert certs.exported_dates(broken_talos, broken_kube) == {"error": message}
