"""Certificate expiry of a cluster's credentials: the two client certificates and the two CAs.

Read from the YAML text of the stack outputs `talosconfig[cluster]` and `kubeconfig[cluster]`:

    talosconfig  siderolabs/talos v1.13.9:pkg/machinery/client/config/config.go: `context` names the
                 current entry of `contexts`; each entry holds `ca` (the Talos OS CA), `crt` (the
                 client certificate) and `key`, each the standard base64 of PEM (NewConfig). The
                 provider writes exactly one context, named after the cluster
                 (siderolabs/terraform-provider-talos v0.11.0:pkg/talos/util.go,
                 talosClientTFConfigToTalosClientConfig).
    kubeconfig   kubernetes/client-go v0.36.3:tools/clientcmd/api/v1/types.go: `current-context`
                 names an entry of `contexts` whose `context.cluster` and `context.user` name entries
                 of `clusters` (`cluster.certificate-authority-data`) and `users`
                 (`user.client-certificate-data`); the *-data fields are []byte, so base64 of PEM.
                 Talos writes one of each (siderolabs/talos v1.13.9:pkg/kubeconfig/generate.go).

Lifetimes and renewal (each command is what the operator runs):

    talosconfig client  1 year (siderolabs/talos v1.13.9:pkg/machinery/constants/constants.go,
                        TalosAPIDefaultCertificateValidityDuration, used by
                        siderolabs/terraform-provider-talos v0.11.0:pkg/talos/util.go,
                        secretsBundleTomachineSecrets). The talos_machine_secrets resource plans new
                        client credentials when the certificate's NotAfter is less than one calendar
                        month away and issues them on update (v0.11.0:
                        pkg/talos/talos_machine_secrets_resource.go, ModifyPlan and Update): `make up`,
                        then `make talosconfig` to write the new file.
    kubeconfig client   1 year (siderolabs/talos v1.13.9: constants.go
                        KubernetesAdminCertDefaultLifetime, through
                        pkg/machinery/config/types/v1alpha1/v1alpha1_provider.go CertLifetime). The
                        talos_cluster_kubeconfig resource plans a new kubeconfig when NotAfter is less
                        than certificate_renewal_duration away (default 720h; talos-fleet leaves it)
                        and fetches one on update (v0.11.0:
                        pkg/talos/talos_cluster_kubeconfig_resource.go, ModifyPlan and Update):
                        `make up`, then `make kubeconfig`.
    Talos/Kubernetes CA 10 years (siderolabs/talos v1.13.9:pkg/machinery/config/generate/secrets/
                        secrets.go CAValidityTime = 87600h, used by ca.go NewTalosCA/NewKubernetesCA).
                        Nothing renews them: CA rotation is a manual Talos procedure (ROTATE_CA).

Only certificates are parsed (with `cryptography`); keys are never decoded, and no message holds
any of the material.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from cryptography import x509

WARN_DAYS = 30

TALOSCONFIG_CLIENT = "talosconfig client"
TALOS_CA = "Talos CA"
KUBECONFIG_CLIENT = "kubeconfig client"
KUBERNETES_CA = "Kubernetes CA"
# The order reports list them in.
NAMES = (TALOSCONFIG_CLIENT, TALOS_CA, KUBECONFIG_CLIENT, KUBERNETES_CA)

# The Talos guide "CA Rotation" for the Talos minor version the provider's machinery speaks
# (pulumiverse-talos 0.8.1: Talos machinery 1.13); the v1.13 docs live on docs.siderolabs.com.
ROTATE_CA = "https://docs.siderolabs.com/talos/v1.13/security/ca-rotation"
# Bound on the YAML text read: a real talosconfig or kubeconfig is a few kilobytes.
MAX_TEXT = 1 << 20


class CertError(Exception):
    """Certificate material that cannot be read; the message says which and never holds it."""


@dataclass(frozen=True)
class Expiry:
    name: str
    """One of NAMES."""
    not_after: datetime
    """UTC."""
    days_left: int
    """floor((not_after - now) / 1 day); negative once expired."""
    renew: str
    """The command that renews it, as the operator runs it (or where the manual procedure is)."""

    @property
    def warning(self) -> bool:
        return self.days_left < WARN_DAYS


def renew_command(name: str, stack: str) -> str:
    """How the operator renews certificate `name` of a cluster in `stack`."""
    if name == TALOSCONFIG_CLIENT:
        return f"make up STACK={stack} && make talosconfig STACK={stack}"
    if name == KUBECONFIG_CLIENT:
        return f"make up STACK={stack} && make kubeconfig STACK={stack}"
    if name in (TALOS_CA, KUBERNETES_CA):
        # No command: rotation replaces the CA the stack's protected Talos secrets hold, which
        # talos-fleet does not automate (README: "Is my fleet healthy?").
        return f"manual CA rotation, not automated by talos-fleet: {ROTATE_CA}"
    raise ValueError(f"unknown certificate {name!r}")


def days_left(not_after: datetime, now: datetime) -> int:
    # timedelta // timedelta: exact integer floor division, negative once expired.
    return (not_after - now) // timedelta(days=1)


def expiry_dates(talosconfig: str, kubeconfig: str) -> dict[str, datetime]:
    """Each certificate's NotAfter (UTC) by name, in NAMES order."""
    dates = {**talosconfig_dates(talosconfig), **kubeconfig_dates(kubeconfig)}
    return {name: dates[name] for name in NAMES}


def expiry_iso(talosconfig: str, kubeconfig: str) -> dict[str, str]:
    """expiry_dates as ISO-8601 strings (what the program exports)."""
    return {name: date.isoformat() for name, date in expiry_dates(talosconfig, kubeconfig).items()}


def exported_dates(talosconfig: str, kubeconfig: str) -> dict[str, str]:
    """What the program exports as a cluster's `certificateExpiry`: expiry_iso, or {"error": why}
    when the material cannot be read, so a report can never fail a deployment."""
    try:
        return expiry_iso(talosconfig, kubeconfig)
    except CertError as error:
        return {"error": str(error)}


def cluster_expiries(talosconfig: str, kubeconfig: str, stack: str, now: datetime) -> list[Expiry]:
    """The four certificates of one cluster, from its talosconfig and kubeconfig output texts."""
    # A naive `now` is taken as UTC, as every NotAfter is.
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    return [
        Expiry(name=name, not_after=date, days_left=days_left(date, now), renew=renew_command(name, stack))
        for name, date in expiry_dates(talosconfig, kubeconfig).items()
    ]


def talosconfig_dates(text: str) -> dict[str, datetime]:
    config = _mapping(_load(text, "talosconfig"), "talosconfig", "the document")
    contexts = _mapping(config.get("contexts"), "talosconfig", "contexts")
    current = config.get("context")
    if isinstance(current, str) and current in contexts:
        name = current
    elif len(contexts) == 1:
        name = next(iter(contexts))
    else:
        raise CertError("talosconfig: `context` does not name one of its `contexts`")
    context = _mapping(contexts[name], "talosconfig", f"contexts.{name}")
    return {
        TALOSCONFIG_CLIENT: _not_after(context.get("crt"), "talosconfig", f"contexts.{name}.crt"),
        TALOS_CA: _not_after(context.get("ca"), "talosconfig", f"contexts.{name}.ca"),
    }


def kubeconfig_dates(text: str) -> dict[str, datetime]:
    config = _mapping(_load(text, "kubeconfig"), "kubeconfig", "the document")
    context = _named(config, "contexts", "context", config.get("current-context"))
    cluster = _named(config, "clusters", "cluster", context.get("cluster"))
    user = _named(config, "users", "user", context.get("user"))
    return {
        KUBECONFIG_CLIENT: _not_after(
            user.get("client-certificate-data"), "kubeconfig", "user.client-certificate-data"
        ),
        KUBERNETES_CA: _not_after(
            cluster.get("certificate-authority-data"), "kubeconfig", "cluster.certificate-authority-data"
        ),
    }


def _load(text: str, what: str) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise CertError(f"{what}: empty; has `make up` finished for this stack?")
    if len(text) > MAX_TEXT:
        raise CertError(f"{what}: larger than {MAX_TEXT} characters; not a {what}")
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        # No detail: a YAML error quotes the offending line, which may hold a key.
        raise CertError(f"{what}: not valid YAML") from None


def _mapping(value: Any, what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise CertError(f"{what}: {where} is missing or not a mapping")
    return value


def _named(config: dict[str, Any], section: str, field: str, wanted: Any) -> dict[str, Any]:
    """The `field` of the entry of list `section` named `wanted` (or of its only entry)."""
    entries = config.get(section)
    if not isinstance(entries, list) or not entries:
        raise CertError(f"kubeconfig: {section} is missing or empty")
    named = [e for e in entries if isinstance(e, dict) and e.get("name") == wanted]
    if not named and wanted in (None, "") and len(entries) == 1 and isinstance(entries[0], dict):
        named = entries
    if len(named) != 1:
        raise CertError(f"kubeconfig: {section} has no single entry named {_label(wanted)}")
    return _mapping(named[0].get(field), "kubeconfig", f"{section}[{_label(wanted)}].{field}")


def _label(value: Any) -> str:
    # Names are plain identifiers in any real kubeconfig; anything else is not echoed.
    return repr(value) if isinstance(value, str) and len(value) <= 100 and value.isprintable() else "(unnamed)"


def _not_after(value: Any, what: str, where: str) -> datetime:
    """NotAfter of the base64-of-PEM certificate `value`; a bundle counts as its earliest-expiring
    certificate (Talos puts every accepted CA in certificate-authority-data during a rotation,
    siderolabs/talos v1.13.9:pkg/kubeconfig/generate.go), the reading that never warns late."""
    if not isinstance(value, str) or not value.strip():
        raise CertError(f"{what}: {where} is missing")
    try:
        pem = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertError(f"{what}: {where} is not base64") from None
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CertError(f"{what}: {where} is not a PEM certificate") from None
    return min(c.not_valid_after_utc for c in certificates).astimezone(UTC)
