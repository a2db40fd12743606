"""Approvals: a person's yes or no on a held candidate, as a step the control plane runs.

A pipeline requests an approval with the evidence it has (links and figures from its smoke,
canary, shadow, drift and quality checks); the control plane keeps it, promotes the candidate
when someone approves, discards it when someone rejects or when the deadline passes, and
withdraws the approval when the candidate leaves first. The watcher in the pipeline only
waits, so one that dies leaves nothing waiting forever. Records live in the state store and
the deadlines go on across a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ...refs import revision_name
from ..errors import Conflict, DomainError, Invalid, NotFound
from ..store import Revision, new_uid, now
from .analyses import CandidateCommands
from .context import RolloutContext
from .events import ApprovalDecided, ApprovalRequested
from .phases import RevisionPhase

__all__ = ["ApprovalRecord", "ApprovalState", "Approvals"]

log = logging.getLogger("bentoship.server")

MAX_TIMEOUT = 30 * 86400.0
MAX_MESSAGE = 2000
MAX_EVIDENCE_BYTES = 64 * 1024
SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, deployment TEXT NOT NULL, revision TEXT NOT NULL, name TEXT NOT NULL,
    message TEXT NOT NULL, evidence TEXT NOT NULL, state TEXT NOT NULL, deadline REAL NOT NULL,
    decided_by TEXT, comment TEXT NOT NULL, created_at TEXT NOT NULL, decided_at TEXT
);
CREATE INDEX IF NOT EXISTS approvals_by_deployment ON approvals (deployment, created_at);
"""


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    """Nobody decided before the deadline: the candidate was discarded."""
    WITHDRAWN = "withdrawn"
    """The candidate left before a decision (promoted, discarded or replaced otherwise)."""


@dataclass(frozen=True)
class ApprovalRecord:
    id: str
    deployment: str
    revision: str
    """The candidate's uid."""
    name: str
    """The candidate's short name (``r3``)."""
    message: str
    evidence: dict[str, Any]
    deadline: float
    """Seconds since the epoch."""
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str | None = None
    comment: str = ""
    created_at: str = dataclasses.field(default_factory=now)
    decided_at: str | None = None

    @property
    def pending(self) -> bool:
        return self.state == ApprovalState.PENDING

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "revision": self.name,
            "uid": self.revision,
            "message": self.message,
            "evidence": self.evidence,
            "state": str(self.state),
            "deadline": self.deadline,
            "decided_by": self.decided_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "decided_at": self.decided_at,
        }


class _Records:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    def save(self, record: ApprovalRecord) -> ApprovalRecord:
        self._db.execute(
            "INSERT OR REPLACE INTO approvals VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.id,
                record.deployment,
                record.revision,
                record.name,
                record.message,
                json.dumps(record.evidence),
                str(record.state),
                record.deadline,
                record.decided_by,
                record.comment,
                record.created_at,
                record.decided_at,
            ),
        )
        return record

    def get(self, approval_id: str) -> ApprovalRecord | None:
        row = self._db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
        return _record(row) if row else None

    def of(self, deployment: str) -> list[ApprovalRecord]:
        rows = self._db.execute(
            "SELECT * FROM approvals WHERE deployment=? ORDER BY created_at DESC, rowid DESC",
            (deployment,),
        ).fetchall()
        return [_record(row) for row in rows]

    def pending(self) -> list[ApprovalRecord]:
        rows = self._db.execute("SELECT * FROM approvals WHERE state=?", (ApprovalState.PENDING,))
        return [_record(row) for row in rows.fetchall()]

    def forget(self, deployment: str) -> None:
        self._db.execute("DELETE FROM approvals WHERE deployment=?", (deployment,))


def _record(row: sqlite3.Row) -> ApprovalRecord:
    return ApprovalRecord(
        id=row["id"],
        deployment=row["deployment"],
        revision=row["revision"],
        name=row["name"],
        message=row["message"],
        evidence=json.loads(row["evidence"]),
        deadline=float(row["deadline"]),
        state=ApprovalState(row["state"]),
        decided_by=row["decided_by"],
        comment=row["comment"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
    )


class Approvals:
    def __init__(self, ctx: RolloutContext, commands: CandidateCommands) -> None:
        self.ctx = ctx
        self.commands = commands
        self.records = _Records(ctx.store.db)
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        ctx.phase_listeners.append(self._moved)

    def resume(self) -> None:
        """After a restart: every pending approval's deadline runs again."""
        for record in self.records.pending():
            rev = self.ctx.store.get_revision(record.revision)
            if rev is None or rev.phase != RevisionPhase.CANDIDATE:
                self._close(record, ApprovalState.WITHDRAWN, None, "the candidate left")
            else:
                self._watch(record)

    def request(
        self, name: str, message: str = "", timeout: float = 86400.0, evidence: object = None
    ) -> ApprovalRecord:
        """A pending approval of ``name``'s held candidate (the one already pending, if any)."""
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise Invalid(f"message: send text of at most {MAX_MESSAGE} characters")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise Invalid("timeout: send seconds, such as 86400")
        if not 0 < timeout <= MAX_TIMEOUT:
            raise Invalid(f"timeout: from 0 to {MAX_TIMEOUT:g} seconds (30 days), not {timeout}")
        evidence = {} if evidence is None else evidence
        if not isinstance(evidence, dict):
            raise Invalid("evidence: send an object of links and figures, such as {'smoke': ...}")
        if len(json.dumps(evidence)) > MAX_EVIDENCE_BYTES:
            raise Invalid(f"evidence: at most {MAX_EVIDENCE_BYTES // 1024} KiB of JSON")
        dep = self.ctx.get(name)
        target = self.ctx.target_of(dep)
        if target is None or target.phase != RevisionPhase.CANDIDATE:
            state = f"revision {revision_name(target.seq)} is {target.phase}" if target else ""
            raise Conflict(
                f"deployment {name} has no held candidate to approve ({state or 'no revision'});"
                " deploy one with manual promotion and wait until it is ready"
            )
        pending = next(
            (r for r in self.records.of(name) if r.pending and r.revision == target.uid), None
        )
        if pending is not None:
            return pending
        record = self.records.save(
            ApprovalRecord(
                id=new_uid()[:12],
                deployment=name,
                revision=target.uid,
                name=revision_name(target.seq),
                message=message,
                evidence=evidence,
                deadline=time.time() + timeout,
            )
        )
        self.ctx.publish(name, ApprovalRequested(record.name, record.id, message))
        self._watch(record)
        return record

    def of(self, name: str) -> list[ApprovalRecord]:
        self.ctx.get(name)
        return self.records.of(name)

    def get(self, name: str, approval_id: str) -> ApprovalRecord:
        record = self.records.get(approval_id)
        if record is None or record.deployment != name:
            raise NotFound(
                f"approval {approval_id} of {name} not found; list them with "
                f"GET /api/v2/deployments/{name}/approvals"
            )
        return record

    async def wait(self, name: str, approval_id: str, timeout: float) -> ApprovalRecord:
        """The approval once decided (or closed), or as it is after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = self.get(name, approval_id)
            if not record.pending:
                return record
            changed = self._changed.setdefault(approval_id, asyncio.Event())
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return self.get(name, approval_id)

    async def decide(
        self, name: str, approval_id: str, approve: bool, by: str, comment: str = ""
    ) -> ApprovalRecord:
        """Approve (promote the candidate) or reject (discard it)."""
        if not isinstance(comment, str) or len(comment) > MAX_MESSAGE:
            raise Invalid(f"comment: send text of at most {MAX_MESSAGE} characters")
        record = self.get(name, approval_id)
        if not record.pending:
            raise Conflict(
                f"approval {approval_id} of {name} is {record.state} already"
                + (f" (by {record.decided_by})" if record.decided_by else "")
            )
        state = ApprovalState.APPROVED if approve else ApprovalState.REJECTED
        record = self._close(record, state, by, comment)
        if approve:
            await self.commands.promote(name, record.revision)
        else:
            await self.commands.discard(name)
        return record

    def forget(self, name: str) -> None:
        for record in self.records.of(name):
            timer = self._timers.pop(record.id, None)
            if timer is not None:
                timer.cancel()
            self._wake(record.id)
        self.records.forget(name)

    def _close(
        self, record: ApprovalRecord, state: ApprovalState, by: str | None, comment: str
    ) -> ApprovalRecord:
        closed = self.records.save(
            dataclasses.replace(
                record, state=state, decided_by=by, comment=comment, decided_at=now()
            )
        )
        timer = self._timers.pop(record.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        if self.ctx.store.get_deployment(record.deployment) is not None:
            event = ApprovalDecided(record.name, record.id, str(state), by or "", comment)
            self.ctx.publish(record.deployment, event)
        log.info("approval %s of %s: %s", record.id, record.deployment, state)
        self._wake(record.id)
        return closed

    def _wake(self, approval_id: str) -> None:
        changed = self._changed.pop(approval_id, None)
        if changed is not None:
            changed.set()

    def _watch(self, record: ApprovalRecord) -> None:
        if record.id in self._timers:
            return
        task = self.ctx.spawn(self._expire(record.id), deployment=record.deployment)
        self._timers[record.id] = task
        task.add_done_callback(lambda _: self._timers.pop(record.id, None))

    async def _expire(self, approval_id: str) -> None:
        while True:
            record = self.records.get(approval_id)
            if record is None or not record.pending:
                return
            left = record.deadline - time.time()
            if left <= 0:
                break
            await self.ctx.clock.sleep(min(left, 60.0))
        self._close(record, ApprovalState.EXPIRED, None, "nobody decided before the deadline")
        try:
            await self.commands.discard(record.deployment)
        except DomainError as exc:
            log.warning("discarding %s after its approval expired: %s", record.deployment, exc)

    def _moved(self, rev: Revision, phase: RevisionPhase) -> None:
        if phase == RevisionPhase.CANDIDATE:
            return
        for record in self.records.of(rev.deployment):
            if record.pending and record.revision == rev.uid:
                self._close(record, ApprovalState.WITHDRAWN, None, f"{record.name} is {phase}")
