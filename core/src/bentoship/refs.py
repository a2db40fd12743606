"""How bentos and revisions are referred to: rules that the client and the server share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

__all__ = ["entry_service", "find_revision", "revision_matches", "revision_name"]


class Numbered(Protocol):
    """A revision as either side holds it: its uid and its number."""

    @property
    def uid(self) -> str: ...

    @property
    def seq(self) -> int: ...


R = TypeVar("R", bound=Numbered)


def entry_service(manifest: Mapping[str, Any] | None) -> str:
    """The service a bento's deployment config is keyed by: its entry service, else its first."""
    if not isinstance(manifest, Mapping):
        return ""
    entry = manifest.get("entry_service") or ""
    services = manifest.get("services")
    if not entry and isinstance(services, list) and services and isinstance(services[0], Mapping):
        entry = services[0].get("name", "")
    return str(entry)


def revision_name(seq: int) -> str:
    """A revision's short name, as BentoCloud shows it: ``r1``, ``r2``, …"""
    return f"r{seq}"


def revision_matches(ref: str, uid: str, seq: int) -> bool:
    """True when ``ref`` (a uid, a name such as ``r2``, or a number) names this revision."""
    return ref in (uid, revision_name(seq), str(seq))


def find_revision(revisions: Iterable[R], ref: str) -> R | None:
    """The revision among ``revisions`` that ``ref`` names, or None."""
    return next((r for r in revisions if revision_matches(ref, r.uid, r.seq)), None)
