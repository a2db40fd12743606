"""Mutual TLS between the endpoint proxy and the revisions that require access authorization.

A revision's own port is listed by the revisions API and reachable by anything on the machine.
For a deployment with access authorization, ``bentoml serve`` therefore listens with TLS and
requires a client certificate signed by the control plane's private CA, which only the control
plane holds (``<data dir>/tls``, mode 0600): a local process that posts to the port directly,
without the proxy's client certificate, fails the handshake. Keys are ECDSA P-256, made once.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RevisionTLS"]

VALID_DAYS = 3650
CERT_REQUIRED = str(int(ssl.CERT_REQUIRED))


@dataclass(frozen=True)
class RevisionTLS:
    """Where the CA, the revisions' server certificate and the proxy's client certificate are."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, role: str) -> Path:
        return self.directory / f"{role}.pem"

    def key(self, role: str) -> Path:
        return self.directory / f"{role}.key"

    @classmethod
    def ensure(cls, directory: Path) -> RevisionTLS:
        """The certificates in ``directory``, made on first use."""
        tls = cls(directory)
        if not all(p.exists() for p in (tls.ca_cert, tls.cert("client"), tls.cert("server"))):
            tls._make()
        return tls

    def serve_args(self) -> list[str]:
        """``bentoml serve`` options: TLS with a required client certificate from our CA."""
        return [
            "--ssl-certfile",
            str(self.cert("server")),
            "--ssl-keyfile",
            str(self.key("server")),
            "--ssl-ca-certs",
            str(self.ca_cert),
            "--ssl-cert-reqs",
            CERT_REQUIRED,
        ]

    def client_context(self) -> ssl.SSLContext:
        """The proxy's side: verify the revision against our CA, present the client cert."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.cert("client")), str(self.key("client")))
        return context

    def _make(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        now = datetime.datetime.now(datetime.UTC)

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
            data = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.touch(mode=0o600)
            path.write_bytes(data)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("bentoship local control plane CA"))
            .issuer_name(name("bentoship local control plane CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        usages = {
            "server": ExtendedKeyUsageOID.SERVER_AUTH,
            "client": ExtendedKeyUsageOID.CLIENT_AUTH,
        }
        for role, usage in usages.items():
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(f"bentoship {role}"))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if role == "server":
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                    ),
                    critical=False,
                )
            write_key(self.key(role), key)
            self.cert(role).write_bytes(
                builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            )
        self.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
