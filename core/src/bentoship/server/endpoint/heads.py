"""The head of a request as the endpoint forwards it to a revision: hop-by-hop headers, the
control plane's own token and its own cookies are left out."""

from __future__ import annotations

import hmac

__all__ = ["HOP_BY_HOP", "OWN_COOKIE_PREFIX", "forwarded_head", "without_own_cookies"]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
OWN_COOKIE_PREFIX = b"bentoship_"


def without_own_cookies(header: bytes) -> bytes:
    """A ``Cookie`` header without the control plane's own cookies (``bentoship_*``)."""
    parts = [part.strip() for part in header.split(b";")]
    return b"; ".join(p for p in parts if p and not p.startswith(OWN_COOKIE_PREFIX))


def forwarded_head(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    host: bytes,
    bearer: bytes,
    chunked: bool,
    extra: bytes = b"",
    traceparent: bytes | None = None,
) -> bytes:
    """The request's head for the revision at ``host``: without hop-by-hop headers, without an
    ``Authorization`` that carries the control plane's token (``bearer``), without its cookies;
    ``extra`` is more header lines (each ending in CRLF); ``traceparent``, when given, replaces
    the caller's."""
    lines = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for key, value in headers:
        if key in HOP_BY_HOP or key == b"host":
            continue
        if traceparent is not None and key == b"traceparent":
            continue
        if key == b"authorization" and hmac.compare_digest(value.strip(), bearer):
            continue
        if key == b"cookie":
            value = without_own_cookies(value)
            if not value:
                continue
        lines += (key, b": ", value, b"\r\n")
    if chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    if extra:
        lines.append(extra)
    if traceparent is not None:
        lines += (b"traceparent: ", traceparent, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
