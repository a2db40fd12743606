"""The analyses the control plane runs on candidates, kept in the state store.

A record holds the plan (today a canary policy), how far it has got (the next step and every
step's verdict) and, once it ended, the verdict and why: enough to go on after a restart.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..store import now

__all__ = ["AnalysisKind", "AnalysisRecord", "AnalysisRecords", "AnalysisState"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    revision TEXT PRIMARY KEY, deployment TEXT NOT NULL, name TEXT NOT NULL,
    policy TEXT NOT NULL, baseline TEXT, state TEXT NOT NULL, step INTEGER NOT NULL,
    verdicts TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'canary'
);
CREATE INDEX IF NOT EXISTS analyses_by_deployment ON analyses (deployment, created_at);
"""


class AnalysisKind(StrEnum):
    CANARY = "canary"
    """Ramp the candidate's share of live traffic, judging each step's errors and latency."""
    SHADOW = "shadow"
    """Mirror live traffic to the candidate and compare its answers with the serving ones."""


class AnalysisState(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    DISCARDED = "discarded"
    STOPPED = "stopped"
    """The candidate left before the verdict (promoted, discarded or replaced by hand)."""


@dataclass(frozen=True)
class AnalysisRecord:
    """One candidate's canary analysis: ``revision`` is its uid, ``name`` its short name."""

    revision: str
    deployment: str
    name: str
    policy: dict[str, Any]
    baseline: str | None
    """The uid of the revision that served when the analysis started."""
    state: AnalysisState = AnalysisState.RUNNING
    step: int = 0
    """The index of the step to run next."""
    verdicts: tuple[dict[str, Any], ...] = ()
    reason: str = ""
    created_at: str = dataclasses.field(default_factory=now)
    updated_at: str = dataclasses.field(default_factory=now)
    kind: AnalysisKind = AnalysisKind.CANARY

    @property
    def running(self) -> bool:
        return self.state == AnalysisState.RUNNING

    def to_api(
        self, baseline_name: str | None, progress: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON of the analysis route; ``progress``: the running step's figures so far."""
        steps = list(self.policy.get("steps") or [])
        last = self.verdicts[-1] if self.verdicts else {}
        return {
            "progress": progress if self.running else None,
            "deployment": self.deployment,
            "revision": self.name,
            "uid": self.revision,
            "kind": str(self.kind),
            "state": str(self.state),
            "step": self.step,
            "weight": steps[self.step] if self.running and self.step < len(steps) else None,
            "baseline": baseline_name,
            "policy": self.policy,
            "steps": list(self.verdicts),
            "report": last.get("report") if self.kind == AnalysisKind.SHADOW else None,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class AnalysisRecords:
    """The ``analyses`` table of the state store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(analyses)")}
        if "kind" not in columns:
            db.execute("ALTER TABLE analyses ADD COLUMN kind TEXT NOT NULL DEFAULT 'canary'")

    def save(self, record: AnalysisRecord) -> AnalysisRecord:
        record = dataclasses.replace(record, updated_at=now())
        self._db.execute(
            "INSERT OR REPLACE INTO analyses (revision, deployment, name, policy, baseline, state,"
            " step, verdicts, reason, created_at, updated_at, kind)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.revision,
                record.deployment,
                record.name,
                json.dumps(record.policy),
                record.baseline,
                str(record.state),
                record.step,
                json.dumps(list(record.verdicts)),
                record.reason,
                record.created_at,
                record.updated_at,
                str(record.kind),
            ),
        )
        return record

    def get(self, revision: str) -> AnalysisRecord | None:
        row = self._db.execute("SELECT * FROM analyses WHERE revision=?", (revision,)).fetchone()
        return _record(row) if row else None

    def latest(self, deployment: str) -> AnalysisRecord | None:
        row = self._db.execute(
            "SELECT * FROM analyses WHERE deployment=? ORDER BY created_at DESC, rowid DESC",
            (deployment,),
        ).fetchone()
        return _record(row) if row else None

    def running(self) -> list[AnalysisRecord]:
        rows = self._db.execute("SELECT * FROM analyses WHERE state=?", (AnalysisState.RUNNING,))
        return [_record(row) for row in rows.fetchall()]

    def forget(self, deployment: str) -> None:
        self._db.execute("DELETE FROM analyses WHERE deployment=?", (deployment,))


def _record(row: sqlite3.Row) -> AnalysisRecord:
    return AnalysisRecord(
        revision=row["revision"],
        deployment=row["deployment"],
        name=row["name"],
        policy=json.loads(row["policy"]),
        baseline=row["baseline"],
        state=AnalysisState(row["state"]),
        step=int(row["step"]),
        verdicts=tuple(json.loads(row["verdicts"])),
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        kind=AnalysisKind(row["kind"]),
    )
