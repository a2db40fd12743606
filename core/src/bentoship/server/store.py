"""Durable state of the local control plane: SQLite in WAL mode."""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    kind TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, description TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS artifacts (
    kind TEXT NOT NULL, repository TEXT NOT NULL, version TEXT NOT NULL, uid TEXT NOT NULL,
    description TEXT NOT NULL, manifest TEXT, labels TEXT NOT NULL, build_at TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT, upload_status TEXT NOT NULL,
    upload_finished_reason TEXT NOT NULL, PRIMARY KEY (kind, repository, version));
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY, uid TEXT NOT NULL, cluster TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT, state TEXT NOT NULL, target_revision TEXT, endpoint_port INTEGER,
    reason TEXT NOT NULL DEFAULT '', candidate_port INTEGER, canary TEXT);
CREATE TABLE IF NOT EXISTS revisions (
    uid TEXT PRIMARY KEY, deployment TEXT NOT NULL, seq INTEGER NOT NULL, bento TEXT NOT NULL,
    config TEXT NOT NULL, created_at TEXT NOT NULL, phase TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', ready_at TEXT, activated_at TEXT,
    verify INTEGER NOT NULL DEFAULT 0, UNIQUE (deployment, seq));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, deployment TEXT NOT NULL, time REAL NOT NULL,
    kind TEXT NOT NULL, revision TEXT, message TEXT NOT NULL, data TEXT);
CREATE INDEX IF NOT EXISTS events_by_deployment ON events (deployment, id);
CREATE TABLE IF NOT EXISTS event_readers (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
    uid TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL, scopes TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expired_at TEXT,
    last_used_at TEXT, revoked_at TEXT);
"""
ADDED_COLUMNS = {
    "deployments": {"candidate_port": "INTEGER", "canary": "TEXT"},
    "revisions": {"verify": "INTEGER NOT NULL DEFAULT 0"},
    "events": {"data": "TEXT"},
}
"""Columns added since 0.1, added to an older database when it is opened."""
PHASES_BEFORE_0_2 = """
UPDATE revisions SET phase = 'starting' WHERE phase = 'pending';
UPDATE revisions SET phase = 'serving' WHERE phase = 'ready'
    AND uid IN (SELECT serving_revision FROM deployments WHERE serving_revision IS NOT NULL);
UPDATE revisions SET phase = 'retired' WHERE phase = 'ready';
"""
SERVING_COLUMN_BEFORE_0_4 = """
BEGIN;
UPDATE revisions SET activated_at = :stamp WHERE uid IN (
    SELECT serving_revision FROM deployments WHERE serving_revision IS NOT NULL);
ALTER TABLE deployments DROP COLUMN serving_revision;
COMMIT;
"""
"""Before 0.4 a deployment stored its serving revision; now the newest switch says it."""
SERVING_REVISION = """(SELECT r.uid FROM revisions r WHERE r.deployment = d.name
    AND r.activated_at IS NOT NULL ORDER BY r.activated_at DESC, r.seq DESC LIMIT 1)"""
"""A deployment's serving revision, derived: the revision the endpoint last switched to."""
DEPLOYMENTS = f"SELECT d.*, {SERVING_REVISION} AS serving_revision FROM deployments d"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uid() -> str:
    return uuid.uuid4().hex


@dataclass
class Artifact:
    kind: str
    repository: str
    version: str
    uid: str
    description: str
    manifest: dict[str, Any] | None
    labels: list[dict[str, str]]
    build_at: str
    created_at: str
    updated_at: str | None
    upload_status: str
    upload_finished_reason: str

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.version}"


@dataclass
class Deployment:
    name: str
    uid: str
    cluster: str
    created_at: str
    updated_at: str | None
    state: str
    target_revision: str | None
    serving_revision: str | None
    """Derived on read: the revision the endpoint last switched to (its newest ``activated_at``)."""
    endpoint_port: int | None
    reason: str
    candidate_port: int | None = None
    canary: dict[str, Any] | None = None
    """The canary's traffic split (``TrafficSplit.to_dict()``), while a candidate has one."""


@dataclass
class Revision:
    uid: str
    deployment: str
    seq: int
    bento: str
    config: dict[str, Any]
    created_at: str
    phase: str
    reason: str = ""
    ready_at: str | None = None
    activated_at: str | None = None
    verify: bool = False
    """Held as a candidate once ready, until promoted, instead of taking traffic at once."""


@dataclass
class ApiTokenRecord:
    """An API token as stored: its SHA-256 digest, never the token itself."""

    uid: str
    name: str
    description: str
    scopes: list[str]
    digest: str
    created_at: str
    expired_at: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened to a deployment: a revision's phase, a rollback, a restart."""

    deployment: str
    time: float
    kind: str
    message: str
    """The sentence people read, derived from the typed event's fields."""
    revision: str | None = None
    id: int = 0
    data: str | None = None
    """The typed event's fields as JSON (``rollout.events``); None for events of before 0.3."""

    def to_json(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")
        return {
            "id": self.id,
            "time": stamp.replace("+00:00", "Z"),
            "kind": self.kind,
            "revision": self.revision,
            "message": self.message,
            "data": json.loads(self.data) if self.data else None,
        }


class Store:
    """A thin typed layer over one SQLite database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_columns()
        self._migrate_serving_column()

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for the concerns that keep tables of their own here (secrets)."""
        return self._db

    @property
    def changes(self) -> int:
        """Rows changed since the store was opened: equal counts mean nothing changed."""
        return self._db.total_changes

    def _migrate_serving_column(self) -> None:
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(deployments)")}
        if "serving_revision" in have:
            self._db.executescript(PHASES_BEFORE_0_2)
            self._db.executescript(SERVING_COLUMN_BEFORE_0_4.replace(":stamp", f"'{now()}'"))

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    # repositories and artifacts (bentos and models)

    def get_repository(self, kind: str, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM repositories WHERE kind=? AND name=?", (kind, name)
        ).fetchone()
        return row

    def list_repositories(self, kind: str) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT * FROM repositories WHERE kind=? ORDER BY name", (kind,)
        ).fetchall()

    def create_repository(self, kind: str, name: str, description: str) -> sqlite3.Row:
        self._db.execute(
            "INSERT OR IGNORE INTO repositories VALUES (?,?,?,?,?)",
            (kind, name, new_uid(), description, now()),
        )
        row = self.get_repository(kind, name)
        assert row is not None
        return row

    def get_artifact(self, kind: str, repository: str, version: str) -> Artifact | None:
        row = self._db.execute(
            "SELECT * FROM artifacts WHERE kind=? AND repository=? AND version=?",
            (kind, repository, version),
        ).fetchone()
        return _artifact(row) if row else None

    def list_artifacts(self, kind: str, repository: str | None = None) -> list[Artifact]:
        if repository is None:
            rows = self._db.execute(
                "SELECT * FROM artifacts WHERE kind=? ORDER BY created_at DESC", (kind,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM artifacts WHERE kind=? AND repository=? ORDER BY created_at DESC",
                (kind, repository),
            ).fetchall()
        return [_artifact(r) for r in rows]

    def latest_artifact(self, kind: str, repository: str) -> Artifact | None:
        items = self.list_artifacts(kind, repository)
        return items[0] if items else None

    def upsert_artifact(self, artifact: Artifact) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                artifact.kind,
                artifact.repository,
                artifact.version,
                artifact.uid,
                artifact.description,
                json.dumps(artifact.manifest) if artifact.manifest is not None else None,
                json.dumps(artifact.labels),
                artifact.build_at,
                artifact.created_at,
                artifact.updated_at,
                artifact.upload_status,
                artifact.upload_finished_reason,
            ),
        )

    # deployments and revisions

    def get_deployment(self, name: str) -> Deployment | None:
        row = self._db.execute(f"{DEPLOYMENTS} WHERE d.name=?", (name,)).fetchone()
        return _deployment(row) if row else None

    def list_deployments(self) -> list[Deployment]:
        rows = self._db.execute(f"{DEPLOYMENTS} ORDER BY d.created_at").fetchall()
        return [_deployment(r) for r in rows]

    def insert_deployment(self, deployment: Deployment) -> None:
        """Store ``deployment``; its ``serving_revision`` is derived, never stored."""
        row = asdict(deployment)
        del row["serving_revision"]
        self._insert("deployments", _deployment_row(row))

    def update_deployment(self, name: str, **fields: Any) -> None:
        fields = _deployment_row(fields)
        fields["updated_at"] = now()
        assignments = ", ".join(f"{key}=?" for key in fields)
        self._db.execute(
            f"UPDATE deployments SET {assignments} WHERE name=?", (*fields.values(), name)
        )

    def delete_deployment(self, name: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM events WHERE deployment=?", (name,))
            self._db.execute("DELETE FROM revisions WHERE deployment=?", (name,))
            self._db.execute("DELETE FROM deployments WHERE name=?", (name,))

    def next_seq(self, deployment: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions WHERE deployment=?", (deployment,)
        ).fetchone()
        return int(row[0])

    def insert_revision(self, revision: Revision) -> None:
        row = asdict(revision)
        row["config"] = json.dumps(revision.config)
        row["verify"] = int(revision.verify)
        self._insert("revisions", row)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))

    def get_revision(self, uid: str) -> Revision | None:
        row = self._db.execute("SELECT * FROM revisions WHERE uid=?", (uid,)).fetchone()
        return _revision(row) if row else None

    def list_revisions(self, deployment: str) -> list[Revision]:
        rows = self._db.execute(
            "SELECT * FROM revisions WHERE deployment=? ORDER BY seq DESC", (deployment,)
        ).fetchall()
        return [_revision(r) for r in rows]

    def update_revision(self, uid: str, **fields: Any) -> None:
        assignments = ", ".join(f"{key}=?" for key in fields)
        self._db.execute(f"UPDATE revisions SET {assignments} WHERE uid=?", (*fields.values(), uid))

    # events

    def add_event(self, event: Event) -> Event:
        """Append ``event`` under the next id; return it with that id."""
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO events (deployment, time, kind, revision, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.deployment,
                    event.time,
                    event.kind,
                    event.revision,
                    event.message,
                    event.data,
                ),
            )
        return replace(event, id=int(cursor.lastrowid or 0))

    def list_events(
        self, deployment: str, *, after: int | None = None, since: float = 0.0, limit: int = 1000
    ) -> list[Event]:
        """The deployment's events with a time from ``since``, oldest first: with ``after`` (a
        cursor), the oldest ``limit`` of those with a greater id; without, the newest ``limit``."""
        if after is not None:
            rows = self._db.execute(
                "SELECT * FROM events WHERE deployment=? AND id>? AND time>=? ORDER BY id LIMIT ?",
                (deployment, after, since, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM (SELECT * FROM events WHERE deployment=? AND time>=? "
                "ORDER BY id DESC LIMIT ?) ORDER BY id",
                (deployment, since, limit),
            ).fetchall()
        return [Event(**dict(row)) for row in rows]

    def events_after(self, cursor: int, limit: int = 1000) -> list[Event]:
        """Every deployment's events with an id above ``cursor``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM events WHERE id>? ORDER BY id LIMIT ?", (cursor, limit)
        ).fetchall()
        return [Event(**dict(row)) for row in rows]

    def register_event_reader(self, name: str) -> int:
        """``name``'s cursor, kept from now on (from the newest event, for a new reader)."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO event_readers (name, cursor) "
                "SELECT ?, COALESCE(MAX(id), 0) FROM events",
                (name,),
            )
        row = self._db.execute("SELECT cursor FROM event_readers WHERE name=?", (name,)).fetchone()
        return int(row["cursor"])

    def move_event_reader(self, name: str, cursor: int) -> None:
        with self._db:
            self._db.execute("UPDATE event_readers SET cursor=? WHERE name=?", (cursor, name))

    def prune_events(self, older_than: float, keep_rows: int) -> int:
        """Delete events older than ``older_than`` (epoch seconds) or beyond the newest
        ``keep_rows``, but none past the slowest registered reader's cursor; return the count."""
        row = self._db.execute("SELECT MIN(cursor) AS slowest FROM event_readers").fetchone()
        slowest = row["slowest"] if row["slowest"] is not None else None
        newest = self._db.execute(
            "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (keep_rows,)
        ).fetchone()
        beyond = int(newest["id"]) if newest is not None else 0
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM events WHERE (time < ? OR id <= ?) AND id <= ?",
                (older_than, beyond, slowest if slowest is not None else 2**62),
            )
        return cursor.rowcount

    # API tokens

    def insert_api_token(self, token: ApiTokenRecord) -> None:
        self._insert("api_tokens", {**asdict(token), "scopes": json.dumps(token.scopes)})

    def list_api_tokens(self) -> list[ApiTokenRecord]:
        rows = self._db.execute(
            "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at"
        ).fetchall()
        return [_api_token(r) for r in rows]

    def api_token_by_digest(self, digest: str) -> ApiTokenRecord | None:
        row = self._db.execute("SELECT * FROM api_tokens WHERE digest=?", (digest,)).fetchone()
        return _api_token(row) if row else None

    def update_api_token(self, uid: str, **fields: Any) -> None:
        assignments = ", ".join(f"{key}=?" for key in fields)
        self._db.execute(
            f"UPDATE api_tokens SET {assignments} WHERE uid=?", (*fields.values(), uid)
        )


def _api_token(row: sqlite3.Row) -> ApiTokenRecord:
    return ApiTokenRecord(**{**dict(row), "scopes": json.loads(row["scopes"])})


def _artifact(row: sqlite3.Row) -> Artifact:
    data = dict(row)
    data["manifest"] = json.loads(data["manifest"]) if data["manifest"] else None
    data["labels"] = json.loads(data["labels"])
    return Artifact(**data)


def _revision(row: sqlite3.Row) -> Revision:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    data["verify"] = bool(data["verify"])
    return Revision(**data)


def _deployment(row: sqlite3.Row) -> Deployment:
    data = dict(row)
    data["canary"] = json.loads(data["canary"]) if data["canary"] else None
    return Deployment(**data)


def _deployment_row(fields: dict[str, Any]) -> dict[str, Any]:
    if "serving_revision" in fields:
        raise ValueError("a serving revision is derived from its revisions: activate one instead")
    if "canary" in fields:
        fields = {**fields, "canary": json.dumps(fields["canary"]) if fields["canary"] else None}
    return fields
