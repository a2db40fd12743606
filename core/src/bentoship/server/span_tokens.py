"""The token each revision's tracing exporter sends with its spans: the revision's uid and an
HMAC of it under the server's token, so the receiver knows which revision sent a span without
storing a token per revision."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["revision_of", "span_token"]

PREFIX = "span."


def span_token(server_token: str, revision_uid: str) -> str:
    mac = hmac.new(server_token.encode(), revision_uid.encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}{revision_uid}.{mac[:40]}"


def revision_of(server_token: str, presented: str) -> str | None:
    """The revision uid a presented span token names, if it is genuine."""
    if not presented.startswith(PREFIX):
        return None
    uid, _, _ = presented[len(PREFIX) :].partition(".")
    if not uid or not hmac.compare_digest(span_token(server_token, uid), presented):
        return None
    return uid
