"""API tokens with BentoCloud's scopes: made, listed, revoked, and checked on every request.

A token is shown once, when it is made; the store keeps only its SHA-256 digest. The server's
own token (``<data-dir>/token``) holds every scope and cannot be revoked here.

Scopes name what a token may read or change. ``api`` is BentoCloud's developer access: every
route. The cluster scopes cover deployments and their metrics, logs and events; the organization
scopes cover bento repositories and API tokens. Any valid token may ask who it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from ..tags import shown
from .errors import Forbidden, Invalid, NotFound
from .store import ApiTokenRecord, Store, new_uid, now

__all__ = [
    "SERVER_PRINCIPAL",
    "Principal",
    "Scope",
    "TokenBook",
    "digest",
    "parse_expiry",
    "resource_of",
]

TOKEN_PREFIX = "bsp_"
MAX_NAME = 128
LAST_USED_EVERY = 60.0
"""Seconds between writes of a token's ``last_used_at``."""


class Scope(StrEnum):
    API = "api"
    READ_ORGANIZATION = "read_organization"
    WRITE_ORGANIZATION = "write_organization"
    READ_CLUSTER = "read_cluster"
    WRITE_CLUSTER = "write_cluster"
    APPROVE = "approve"
    """Decide pending approvals of candidates (``write_cluster`` alone may not)."""


ALL_SCOPES = frozenset(Scope)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ORGANIZATION_PREFIXES = (
    "/api/v1/bento_repositories",
    "/api/v1/bentos",
    "/api/v1/models",
    "/api/v1/model_repositories",
    "/api/v1/api_tokens",
    "/api/v1/org_secrets",
    "/bento_repositories",
    "/api_tokens",
)
DECISION_PATH = re.compile(
    r"(?:/api/v2/deployments/[^/]+/approvals/[^/]+|/deployments/[^/]+)/(?:approve|reject)"
)
"""Deciding an approval, through the API or the console, needs the ``approve`` scope (or
``api``)."""
ANY_TOKEN_PATHS = frozenset({"/api/v1/auth/current", "/api/v1/current_org", "/logout"})
"""Who am I, and sign-out: open to every valid token, whatever its scopes."""


def resource_of(path: str) -> str:
    """``organization`` or ``cluster``: the scope family that guards ``path``."""
    return "organization" if path.startswith(ORGANIZATION_PREFIXES) else "cluster"


def digest(token: str | bytes) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the server's token or one API token, and its scopes."""

    name: str
    uid: str | None
    scopes: frozenset[str]

    def may(self, method: str, path: str) -> bool:
        if Scope.API in self.scopes or path in ANY_TOKEN_PATHS:
            return True
        if DECISION_PATH.fullmatch(path):
            return Scope.APPROVE in self.scopes
        family = resource_of(path)
        writes = f"write_{family}"
        if method.upper() in SAFE_METHODS:
            return bool({f"read_{family}", writes} & self.scopes)
        return writes in self.scopes

    def refusal(self, method: str, path: str) -> str:
        family = resource_of(path)
        need = f"write_{family}" if method.upper() not in SAFE_METHODS else f"read_{family}"
        if DECISION_PATH.fullmatch(path):
            need = "approve"
        held = ", ".join(sorted(self.scopes)) or "none"
        return (
            f"API token {shown(self.name)} has scopes {held}; {method} {path} needs "
            f"{need} or api: use a token with that scope"
        )


SERVER_PRINCIPAL = Principal(name="server token", uid=None, scopes=ALL_SCOPES)


def parse_expiry(value: str | None) -> str | None:
    """An ``expired_at`` as stored (UTC, ISO 8601), from ISO 8601 with or without a zone (none
    means this machine's local time, as ``bentoml api-token create --expires`` sends it)."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(
            f"expired_at {shown(value)} is not an ISO 8601 time; send e.g. 2030-01-31T00:00:00Z"
        ) from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(token: ApiTokenRecord, at: str) -> bool:
    return token.expired_at is not None and token.expired_at <= at


class TokenBook:
    """The API tokens of one control plane, over its state store (digests cached in memory)."""

    def __init__(self, store: Store, server_token: str) -> None:
        self.store = store
        self._server_digest = digest(server_token)
        self._by_digest: dict[str, ApiTokenRecord] = {}
        self._used: dict[str, float] = {}

    def create(
        self,
        name: str,
        *,
        description: str = "",
        scopes: Iterable[str] | None = None,
        expired_at: str | None = None,
        by: Principal = SERVER_PRINCIPAL,
    ) -> tuple[ApiTokenRecord, str]:
        """A new token and its value (shown once); at most the scopes of ``by``."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise Invalid(f"name is required: give the token a name of 1 to {MAX_NAME} characters")
        wanted = sorted(set(scopes or [Scope.API]))
        unknown = [s for s in wanted if s not in ALL_SCOPES]
        if unknown:
            raise Invalid(
                f"unknown scope {shown(unknown[0])}; use some of: "
                + ", ".join(s.value for s in Scope)
            )
        if not by.scopes >= set(wanted) and Scope.API not in by.scopes:
            raise Forbidden(
                f"a token cannot grant scopes it does not hold ({', '.join(wanted)}); "
                "create it with the server's token or a token with those scopes"
            )
        stamp = now()
        expiry = parse_expiry(expired_at)
        if expiry is not None and expiry <= stamp:
            raise Invalid("expired_at is in the past; give a time to come, or none")
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiTokenRecord(
            uid=new_uid(),
            name=name,
            description=description,
            scopes=wanted,
            digest=digest(value),
            created_at=stamp,
            expired_at=expiry,
        )
        self.store.insert_api_token(record)
        self._by_digest[record.digest] = record
        return record, value

    def list(self, search: str | None = None) -> list[ApiTokenRecord]:
        items = self.store.list_api_tokens()
        return [t for t in items if not search or search.lower() in t.name.lower()]

    def get(self, uid: str) -> ApiTokenRecord:
        for token in self.store.list_api_tokens():
            if token.uid == uid:
                return token
        raise NotFound(f"API token {shown(uid)} not found (record not found)")

    def revoke(self, uid: str) -> ApiTokenRecord:
        token = self.get(uid)
        token.revoked_at = now()
        self.store.update_api_token(uid, revoked_at=token.revoked_at)
        self._by_digest[token.digest] = token
        return token

    def authenticate(self, given: bytes, *, clock: float | None = None) -> Principal | str:
        """The principal of a presented token, or why it is refused (for a 401)."""
        return self.authenticate_digest(digest(given), clock=clock)

    def authenticate_digest(self, key: str, *, clock: float | None = None) -> Principal | str:
        """As :meth:`authenticate`, from the token's digest (what a console session keeps)."""
        if hmac.compare_digest(key, self._server_digest):
            return SERVER_PRINCIPAL
        token = self._by_digest.get(key)
        if token is None:
            token = self.store.api_token_by_digest(key)
            if token is None:
                return "wrong API token"
            self._by_digest[key] = token
        if token.revoked_at is not None:
            return f"API token {shown(token.name)} was revoked"
        stamp = now()
        if _expired(token, stamp):
            return f"API token {shown(token.name)} expired at {token.expired_at}"
        self._note_use(token, stamp, clock)
        return Principal(name=token.name, uid=token.uid, scopes=frozenset(token.scopes))

    def _note_use(self, token: ApiTokenRecord, stamp: str, clock: float | None) -> None:
        moment = time.monotonic() if clock is None else clock
        if moment - self._used.get(token.uid, -LAST_USED_EVERY) >= LAST_USED_EVERY:
            self._used[token.uid] = moment
            token.last_used_at = stamp
            self.store.update_api_token(token.uid, last_used_at=stamp)
