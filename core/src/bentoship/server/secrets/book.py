"""The secrets service: create, list, update and delete secrets; pin and open their versions.

A deployment's config names secrets; the revision made from it pins each one's current version
(a keyed digest) and gets exactly that version whenever its process starts. Updating a secret
therefore changes no running revision until the deployment is updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...tags import shown
from ..errors import Conflict, Invalid, NotFound
from ..store import new_uid, now
from .content import SecretContent, check_secret_name, parse_content
from .records import SecretRecord, SecretRecords
from .sealing import SealBroken, Sealer

__all__ = ["PinnedSecret", "SecretBook", "SecretUnavailable"]

MAX_DESCRIPTION = 1024


class SecretUnavailable(Exception):
    """A revision's pinned secret version cannot be opened (deleted, or another key)."""


@dataclass(frozen=True)
class PinnedSecret:
    """One secret as a revision got it: its name, version and content (with values)."""

    name: str
    digest: str
    content: SecretContent


def _description(value: object, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise Invalid(f"description: expected a string of at most {MAX_DESCRIPTION} characters")
    return value


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"secret {shown(name)} not found; list secrets with `bentoml secret list` or create it "
        "with `bentoml secret create`"
    )


class SecretBook:
    """Secrets sealed by ``sealer`` in ``records``."""

    def __init__(self, records: SecretRecords, sealer: Sealer) -> None:
        self.records = records
        self.sealer = sealer

    def find(self, search: str | None = None) -> list[SecretRecord]:
        items = self.records.list()
        if search:
            items = [s for s in items if search.lower() in s.name.lower()]
        return items

    def get(self, name: str) -> SecretRecord:
        record = self.records.get(name)
        if record is None:
            raise _not_found(name)
        return record

    def create(self, body: dict[str, Any]) -> SecretRecord:
        name = check_secret_name(body.get("name"))
        description = _description(body.get("description"), "")
        content = parse_content(body.get("content"))
        if self.records.get(name) is not None:
            raise Conflict(
                f"secret {shown(name)} already exists; change it with `bentoml secret apply`"
            )
        stamp = now()
        return self._put(name, new_uid(), description, content, 1, stamp, None)

    def update(self, name: str, body: dict[str, Any]) -> SecretRecord:
        current = self.get(name)
        try:
            previous: SecretContent | None = self._open(name, current.digest)
        except SecretUnavailable:
            previous = None
        description = _description(body.get("description"), current.description)
        content = parse_content(body.get("content"), previous)
        if self.sealer.digest(content.to_bytes()) == current.digest:
            if description == current.description:
                return current
            version = current.version
        else:
            version = current.version + 1
        return self._put(
            name, current.uid, description, content, version, current.created_at, now()
        )

    def delete(self, name: str) -> SecretRecord:
        record = self.get(name)
        self.records.delete(name)
        return record

    def pin(self, names: list[str]) -> dict[str, str]:
        """Each named secret's current version, or Invalid naming the first unknown one."""
        pins: dict[str, str] = {}
        for index, name in enumerate(names):
            record = self.records.get(name)
            if record is None:
                raise Invalid(
                    f"invalid deployment config: secrets[{index}]: secret {shown(name)} does not "
                    "exist; create it with `bentoml secret create` or remove it from secrets"
                )
            pins[name] = record.digest
        return pins

    def versions(self, pins: dict[str, str]) -> dict[str, int | None]:
        """The version number of each pin that is still the secret's current one, else None."""
        numbers: dict[str, int | None] = {}
        for name, digest in pins.items():
            record = self.records.get(name)
            numbers[name] = record.version if record and record.digest == digest else None
        return numbers

    def open_pinned(self, pins: dict[str, str]) -> list[PinnedSecret]:
        """The pinned versions with their values, in the order given."""
        return [
            PinnedSecret(name, digest, self._open(name, digest)) for name, digest in pins.items()
        ]

    def _open(self, name: str, digest: str) -> SecretContent:
        sealed = self.records.sealed(name, digest)
        if sealed is None:
            raise SecretUnavailable(
                f"secret {shown(name)} (version {digest[:12]}) was deleted; create it again and "
                "update the deployment"
            )
        try:
            return SecretContent.from_bytes(self.sealer.open(sealed))
        except SealBroken as exc:
            raise SecretUnavailable(f"secret {shown(name)}: {exc}") from None

    def _put(
        self,
        name: str,
        uid: str,
        description: str,
        content: SecretContent,
        version: int,
        created_at: str,
        updated_at: str | None,
    ) -> SecretRecord:
        plain = content.to_bytes()
        record = SecretRecord(
            name=name,
            uid=uid,
            description=description,
            shape=content.shape(),
            version=version,
            digest=self.sealer.digest(plain),
            created_at=created_at,
            updated_at=updated_at,
        )
        self.records.put(record, self.sealer.seal(plain))
        return record
