"""Secrets in SQLite: each secret's shape (keys, never values) and its sealed versions."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["SecretRecord", "SecretRecords"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY, uid TEXT NOT NULL, description TEXT NOT NULL, shape TEXT NOT NULL,
    version INTEGER NOT NULL, digest TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS secret_versions (
    name TEXT NOT NULL, digest TEXT NOT NULL, sealed BLOB NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (name, digest));
"""


@dataclass(frozen=True)
class SecretRecord:
    """A secret as listed: its content's shape without values, and its current version."""

    name: str
    uid: str
    description: str
    shape: dict[str, Any]
    version: int
    digest: str
    created_at: str
    updated_at: str | None = None


class SecretRecords:
    """The two tables of secrets, on the control plane's SQLite connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    def get(self, name: str) -> SecretRecord | None:
        row = self._db.execute("SELECT * FROM secrets WHERE name=?", (name,)).fetchone()
        return _record(row) if row else None

    def list(self) -> list[SecretRecord]:
        rows = self._db.execute("SELECT * FROM secrets ORDER BY created_at, name").fetchall()
        return [_record(row) for row in rows]

    def put(self, record: SecretRecord, sealed: bytes) -> None:
        """Insert or replace ``record``, and keep ``sealed`` as the version its digest names."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO secrets VALUES (?,?,?,?,?,?,?,?)",
                (
                    record.name,
                    record.uid,
                    record.description,
                    json.dumps(record.shape),
                    record.version,
                    record.digest,
                    record.created_at,
                    record.updated_at,
                ),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO secret_versions VALUES (?,?,?,?)",
                (record.name, record.digest, sealed, record.updated_at or record.created_at),
            )

    def sealed(self, name: str, digest: str) -> bytes | None:
        row = self._db.execute(
            "SELECT sealed FROM secret_versions WHERE name=? AND digest=?", (name, digest)
        ).fetchone()
        return bytes(row[0]) if row else None

    def delete(self, name: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM secret_versions WHERE name=?", (name,))
            self._db.execute("DELETE FROM secrets WHERE name=?", (name,))


def _record(row: sqlite3.Row) -> SecretRecord:
    return SecretRecord(**{**dict(row), "shape": json.loads(row["shape"])})
