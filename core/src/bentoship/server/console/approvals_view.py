"""The Overview's Approval panel: a held candidate's pending approval with its message,
evidence and deadline, whether this session may decide it, and the decided ones; and why the
Revisions tab cannot roll back to a revision."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..tokens import Principal
from .quality_view import number
from .shadow_view import NONE

__all__ = [
    "ApprovalsPanel",
    "Decided",
    "Evidence",
    "Pending",
    "approvals_panel",
    "decision_refusal",
    "evidence_items",
    "link_of",
    "rollback_refusal",
    "time_left",
]

HISTORY = 5
"""Decided approvals the panel lists, newest first."""
MAX_ITEMS = 20
MAX_DEPTH = 2
MAX_TEXT = 500
MAX_REPORT = 8000
"""Characters of a report's JSON shown under its summary line."""


def link_of(value: str) -> str:
    """``value`` as a link to follow when it is an http(s) URL with a host; else empty (so
    ``javascript:`` and other schemes stay text)."""
    text = value.strip()
    if not text or any(c.isspace() for c in text) or len(text) > 2048:
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def _short(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Evidence:
    """One entry of the evidence: a link, a text, a figure, a report's summary line (with its
    verdict and its JSON), or a group of entries."""

    key: str
    kind: str
    """``link``, ``text``, ``figure``, ``report``, ``group`` or ``none``."""
    text: str = ""
    href: str = ""
    verdict: str = ""
    items: tuple[Evidence, ...] = ()
    details: str = ""
    """A report's JSON, indented (cut past MAX_REPORT characters)."""
    more: int = 0
    """Entries of a group left out past MAX_ITEMS."""


def _report(key: str, value: Mapping[str, Any]) -> Evidence:
    report = value.get("report")
    verdict = ""
    if isinstance(report, Mapping):
        found = report.get("verdict")
        if isinstance(found, str):
            verdict = found
        elif isinstance(report.get("passed"), bool):
            verdict = "passed" if report["passed"] else "failed"
    details = json.dumps(report if report is not None else value, indent=2, default=str)
    return Evidence(
        key,
        "report",
        _short(str(value["summary"])),
        verdict=_short(verdict, 40),
        details=_short(details, MAX_REPORT),
    )


def _entry(key: str, value: object, depth: int) -> Evidence:
    if value is None:
        return Evidence(key, "none", NONE)
    if isinstance(value, bool):
        return Evidence(key, "figure", "yes" if value else "no")
    if isinstance(value, int):
        return Evidence(key, "figure", f"{value:,}")
    if isinstance(value, float):
        return Evidence(key, "figure", number(value))
    if isinstance(value, str):
        href = link_of(value)
        return Evidence(key, "link" if href else "text", _short(value), href=href)
    if isinstance(value, Mapping) and isinstance(value.get("summary"), str):
        return _report(key, value)
    if isinstance(value, Mapping | list | tuple) and depth < MAX_DEPTH:
        pairs = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
        items = tuple(
            _entry(str(k) if isinstance(value, Mapping) else "", v, depth + 1)
            for k, v in pairs[:MAX_ITEMS]
        )
        return Evidence(key, "group", items=items, more=max(len(pairs) - MAX_ITEMS, 0))
    return Evidence(key, "text", _short(json.dumps(value, sort_keys=True, default=str)))


def evidence_items(evidence: Mapping[str, Any] | None) -> tuple[Evidence, ...]:
    """The approval's ``evidence`` as entries to show, in its order."""
    return tuple(_entry(str(k), v, 0) for k, v in list((evidence or {}).items())[:MAX_ITEMS])


def time_left(seconds: float) -> str:
    if seconds <= 0:
        return "past its deadline"
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s left"
    if minutes < 60:
        return f"{minutes} min left"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min left"
    return f"{hours // 24} days {hours % 24} h left"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def decision_refusal(principal: Principal | None, deployment: str, approval_id: str) -> str:
    """Why this session may not decide the approval; empty when it may."""
    if principal is None:
        return "Sign in with a token that has the approve scope to decide."
    paths = (
        f"/api/v2/deployments/{deployment}/approvals/{approval_id}/approve",
        f"/deployments/{deployment}/approve",
    )
    if all(principal.may("POST", path) for path in paths):
        return ""
    held = ", ".join(sorted(principal.scopes)) or "none"
    return (
        f"Deciding needs the approve scope (or api): this session's token {principal.name} "
        f"has {held}. Sign in with a token that has it."
    )


@dataclass(frozen=True)
class Pending:
    id: str
    revision: str
    message: str
    evidence: tuple[Evidence, ...]
    deadline: str
    left: str
    requested: str
    refusal: str
    """Why this session may not decide; empty when it may."""


@dataclass(frozen=True)
class Decided:
    id: str
    revision: str
    state: str
    by: str
    comment: str
    decided: str
    message: str


@dataclass(frozen=True)
class ApprovalsPanel:
    pending: Pending | None
    history: tuple[Decided, ...]
    more: int
    """Decided approvals not listed."""


def approvals_panel(
    records: Sequence[Mapping[str, Any]],
    principal: Principal | None,
    deployment: str,
    now: float,
) -> ApprovalsPanel | None:
    """The panel from ``records`` (the approvals route's JSON, newest first); None without
    any approval."""
    if not records:
        return None
    pending = None
    found = next((r for r in records if r.get("state") == "pending"), None)
    if found is not None:
        deadline = float(found.get("deadline") or now)
        pending = Pending(
            id=str(found["id"]),
            revision=str(found.get("revision") or ""),
            message=str(found.get("message") or ""),
            evidence=evidence_items(found.get("evidence")),
            deadline=_clock(deadline),
            left=time_left(deadline - now),
            requested=str(found.get("created_at") or ""),
            refusal=decision_refusal(principal, deployment, str(found["id"])),
        )
    decided = [r for r in records if r.get("state") != "pending"]
    history = tuple(
        Decided(
            id=str(r["id"]),
            revision=str(r.get("revision") or ""),
            state=str(r.get("state") or ""),
            by=str(r.get("decided_by") or NONE),
            comment=str(r.get("comment") or ""),
            decided=str(r.get("decided_at") or ""),
            message=str(r.get("message") or ""),
        )
        for r in decided[:HISTORY]
    )
    return ApprovalsPanel(pending, history, max(len(decided) - HISTORY, 0))


def rollback_refusal(revision: Mapping[str, Any]) -> str:
    """Why the Revisions tab cannot roll back to ``revision`` (its ``bentoship`` extension):
    it never served. Empty when it served (a rollback may go there)."""
    if revision.get("activated_at"):
        return ""
    name = revision.get("name") or "this revision"
    phase = revision.get("phase")
    if phase == "failed":
        return f"{name} never served: it failed before it took live traffic."
    if revision.get("ready_at"):
        return (
            f"{name} never served: it was discarded as a candidate (or superseded) before it "
            "took live traffic."
        )
    return f"{name} never served: it was superseded before it became ready."
