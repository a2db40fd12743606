"""The TLS context every client of a process shares: made once, with the CAs httpx would use."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from bentoship import AsyncClient, Client
from bentoship._http import tls_context


def _context_of(client: Client | AsyncClient) -> object:
    return client._http._transport._pool._ssl_context  # type: ignore[attr-defined]


def test_clients_share_one_context_with_certifis_authorities() -> None:
    first, second = (
        Client("http://127.0.0.1:9", "t" * 16),
        AsyncClient("http://127.0.0.1:9", "t" * 16),
    )
    assert _context_of(first) is _context_of(second) is tls_context()
    assert tls_context().cert_store_stats()["x509_ca"] > 100
    first.close()


def test_with_trust_env_the_context_reads_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Path(certifi.where()).read_text()
    one = bundle[: bundle.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    (tmp_path / "one.pem").write_text(one[one.index("-----BEGIN") :] + "\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "one.pem"))
    tls_context.cache_clear()
    try:
        assert tls_context(trust_env=True).cert_store_stats()["x509_ca"] == 1
        assert tls_context().cert_store_stats()["x509_ca"] > 100, "without trust_env: certifi"
    finally:
        tls_context.cache_clear()
