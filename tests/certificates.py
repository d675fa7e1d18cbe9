"""Real X.509 material for tests, made with `cryptography`, and the two credential files that carry
it, in the shapes the real tools write.

    talosconfig  siderolabs/talos v1.13.9:pkg/machinery/client/config/config.go (Config: `context`,
                 `contexts`; Context: `endpoints`, `nodes`, `ca`, `crt`, `key`, each of the last three
                 the standard base64 of PEM, as NewConfig encodes them). The Talos provider builds it
                 from its client_configuration with one context named after the cluster
                 (siderolabs/terraform-provider-talos v0.11.0:pkg/talos/util.go,
                 talosClientTFConfigToTalosClientConfig; talos_client_configuration_data_source.go
                 sets endpoints and nodes).
    kubeconfig   what Talos hands out (siderolabs/talos v1.13.9:pkg/kubeconfig/generate.go: cluster
                 <name>, user admin@<name>, context admin@<name> in namespace default, current-context
                 set) written by clientcmd.Write in the v1 shape (kubernetes/client-go v0.36.3:
                 tools/clientcmd/api/v1/types.go: `clusters[].cluster.certificate-authority-data`,
                 `users[].user.client-certificate-data`/`client-key-data`, base64 of PEM as []byte).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Material:
    certificate: str
    """PEM."""
    key: str
    """PEM (PKCS#8): what must never show anywhere but the credential itself."""


def certificate(not_after: datetime, name: str = "talos-fleet test", ca: bool = False) -> Material:
    """A self-signed ECDSA P-256 certificate valid from a day before `not_after - 1 year`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=366))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Material(
        certificate=built.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def whole_seconds(moment: datetime) -> datetime:
    """X.509 times have whole seconds (UTCTime/GeneralizedTime without fractions here)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def talosconfig(context: str, ca_b64: str, crt_b64: str, key_b64: str, endpoints: list[str]) -> str:
    document = {
        "context": context,
        "contexts": {
            context: {"endpoints": endpoints, "nodes": endpoints, "ca": ca_b64, "crt": crt_b64, "key": key_b64}
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def kubeconfig(cluster: str, server: str, ca: Material, client: Material) -> str:
    user = f"admin@{cluster}"
    document = {
        "apiVersion": "v1",
        "clusters": [
            {"cluster": {"certificate-authority-data": b64(ca.certificate), "server": server}, "name": cluster}
        ],
        "contexts": [{"context": {"cluster": cluster, "namespace": "default", "user": user}, "name": user}],
        "current-context": user,
        "kind": "Config",
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(client.certificate), "client-key-data": b64(client.key)},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)
