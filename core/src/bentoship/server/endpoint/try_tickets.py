"""Short-lived tickets that let a browser open an authorized deployment's own pages (its Swagger
UI) from the console: a link cannot send ``Authorization``, so the endpoint trades a ticket in
the link for a cookie of its own, valid for that deployment only, and never forwarded."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "TICKET_PARAM",
    "TICKET_SECONDS",
    "cookie_name",
    "holds_ticket",
    "issue_ticket",
    "redeem_query",
    "ticket_in_cookies",
    "ticket_redirect",
    "valid_ticket",
]

TICKET_PARAM = "bentoship_try"
TICKET_SECONDS = 3600


def cookie_name(deployment: str) -> str:
    """The cookie that holds a deployment's ticket (cookies ignore ports: one per deployment)."""
    return f"{TICKET_PARAM}_{deployment.replace('-', '_')}"


def _signature(token: str, deployment: str, expires: int) -> str:
    message = f"try|{deployment}|{expires}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()[:40]


def issue_ticket(token: str, deployment: str, now: float | None = None) -> str:
    """A ticket for ``deployment``, signed with the server's token, valid for an hour."""
    expires = int((time.time() if now is None else now) + TICKET_SECONDS)
    return f"{expires}.{_signature(token, deployment, expires)}"


def valid_ticket(token: str, deployment: str, ticket: str, now: float | None = None) -> bool:
    expires_text, _, signature = ticket.partition(".")
    if not expires_text.isdigit() or not signature:
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _signature(token, deployment, expires))


def ticket_in_cookies(headers: list[tuple[bytes, bytes]], deployment: str) -> str | None:
    """The deployment's ticket among the request's cookies, if any."""
    wanted = cookie_name(deployment).encode() + b"="
    for key, value in headers:
        if key == b"cookie":
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(wanted):
                    return part[len(wanted) :].decode("latin-1")
    return None


def redeem_query(target: bytes) -> tuple[str, bytes] | None:
    """(ticket, the target without it) when the request target's query carries a ticket."""
    path, _, query = target.partition(b"?")
    if TICKET_PARAM.encode() not in query:
        return None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    ticket = next((value for key, value in pairs if key == TICKET_PARAM), None)
    if ticket is None:
        return None
    rest = urlencode([(key, value) for key, value in pairs if key != TICKET_PARAM])
    return ticket, path + (b"?" + rest.encode() if rest else b"")


def holds_ticket(token: str, deployment: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """The request's cookies hold a valid ticket for ``deployment``."""
    held = ticket_in_cookies(headers, deployment)
    return held is not None and valid_ticket(token, deployment, held)


def ticket_redirect(token: str, deployment: str, target: bytes) -> bytes | None:
    """The head (its status line and headers, open for more) of the 303 that trades a valid
    ticket in the request target's query for the deployment's cookie; None without one."""
    offered = redeem_query(target)
    if offered is None or not valid_ticket(token, deployment, offered[0]):
        return None
    ticket, rest = offered
    cookie = f"{cookie_name(deployment)}={ticket}; Path=/; HttpOnly; SameSite=Lax"
    return b"HTTP/1.1 303 See Other\r\nlocation: %b\r\nset-cookie: %b\r\n" % (
        rest,
        f"{cookie}; Max-Age={TICKET_SECONDS}".encode(),
    )
