"""Labels that arrive after the prediction (ground truth), kept beside the monitor records.

A label belongs to one monitor of one deployment and names its prediction by an id: the
record's ``request_id`` (stored in decimal, as bentoml writes it; a hex id as in the
``X-BentoML-Request-ID`` header is turned into decimal), or the value of a field of the record
(``id_field``) for services that log their own inference id. Labels are stored once per id:
the same label again is a duplicate and changes nothing, another label replaces it and is
counted as a correction. A label whose prediction is not stored yet waits (pending) and joins
once the prediction arrives; one still unjoined after the join window is forgotten.

Writes run in the analytics writer's thread, each batch in one transaction; the batch is
deduplicated and compared with what is stored in SQL, not row by row in Python.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import Invalid

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "JOIN_WINDOW",
    "MAX_LABELS",
    "REQUEST_ID",
    "FeedbackStore",
    "Label",
    "Received",
    "label_id",
    "labels_from",
]

REQUEST_ID = "request_id"
JOIN_WINDOW = 7 * 86400.0
"""Seconds a label waits for its prediction before it is forgotten."""
MAX_LABELS = 1_000_000
"""Labels in one request."""
MAX_ID_CHARACTERS = 256
MAX_LABEL_CHARACTERS = 4096
HEX_ID = re.compile(r"(0x)?[0-9a-fA-F]{1,32}")
DECIMAL_ID = re.compile(r"[0-9]{1,39}")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    deployment VARCHAR, monitor VARCHAR, id_field VARCHAR, id VARCHAR, label VARCHAR,
    label_time DOUBLE, received DOUBLE, corrections INTEGER,
    PRIMARY KEY (deployment, monitor, id_field, id)
);
CREATE TABLE IF NOT EXISTS feedback_sources (
    deployment VARCHAR, monitor VARCHAR, source VARCHAR, watermark BIGINT,
    PRIMARY KEY (deployment, monitor, source)
);
"""


@dataclass(frozen=True, slots=True)
class Label:
    """One label: ``id`` as stored (decimal for request ids), ``label`` as JSON text."""

    id: str
    label: str
    time: float | None = None


@dataclass(frozen=True)
class Received:
    """What a batch of labels did."""

    received: int
    stored: int
    """Labels new to the store."""
    duplicates: int
    """Labels the store (or the batch) already had, the same: nothing changed."""
    corrections: int
    """Labels that replaced another label of the same id."""
    pending: int
    """Labels of the batch whose prediction is not stored (yet): they join once it is."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def label_id(value: object, id_field: str, index: int) -> str:
    """The stored form of a label's ``id``: a request id in decimal, any other id as text."""
    where = f"labels[{index}].id"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Invalid(f"{where}: send a string or an integer, not {type(value).__name__}")
    if id_field != REQUEST_ID:
        text = str(value)
        if not text or len(text) > MAX_ID_CHARACTERS:
            raise Invalid(f"{where}: send 1 to {MAX_ID_CHARACTERS} characters")
        return text
    if isinstance(value, int):
        if value < 0 or value >= 2**128:
            raise Invalid(f"{where}: a request id is a non-negative integer below 2**128")
        return str(value)
    if HEX_ID.fullmatch(value) and (value.startswith("0x") or len(value) == 16):
        return str(int(value.removeprefix("0x"), 16))
    if DECIMAL_ID.fullmatch(value):
        return str(int(value))
    raise Invalid(
        f"{where}: a request id is decimal, as in the monitor record, or 16 hex digits, as in "
        "the X-BentoML-Request-ID header"
    )


def _label_text(value: object, index: int) -> str:
    if value is None or isinstance(value, dict | list):
        kind = "null" if value is None else type(value).__name__
        raise Invalid(f"labels[{index}].label: send a string, a number or a bool, not {kind}")
    if isinstance(value, float) and value != value:
        raise Invalid(f"labels[{index}].label: NaN is not a label")
    text = json.dumps(value)
    if len(text) > MAX_LABEL_CHARACTERS:
        raise Invalid(f"labels[{index}].label: at most {MAX_LABEL_CHARACTERS} characters")
    return text


def _label_time(value: object, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Invalid(f"labels[{index}].time: send epoch seconds, such as 1765000000.5")
    return float(value)


def labels_from(items: Sequence[object], id_field: str = REQUEST_ID) -> list[Label]:
    """Checked labels from decoded JSON objects ``{"id", "label", "time"?}``."""
    if len(items) > MAX_LABELS:
        raise Invalid(f"labels: at most {MAX_LABELS:,} in one request; send them in batches")
    found: list[Label] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"labels[{index}]: send an object such as {{'id': ..., 'label': ...}}")
        unknown = sorted(set(item) - {"id", "label", "time"})
        if unknown:
            raise Invalid(f"labels[{index}].{unknown[0]}: unknown field; send id, label, time")
        if "id" not in item or "label" not in item:
            missing = "id" if "id" not in item else "label"
            raise Invalid(f"labels[{index}].{missing}: missing")
        found.append(
            Label(
                label_id(item["id"], id_field, index),
                _label_text(item["label"], index),
                _label_time(item.get("time"), index),
            )
        )
    return found


def check_field(id_field: str) -> str:
    if not FIELD.fullmatch(id_field):
        raise Invalid("id_field: a field name of the monitor record, such as inference_id")
    return id_field


class FeedbackStore:
    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        *,
        join_window: float = JOIN_WINDOW,
    ) -> None:
        self.cursor = cursor
        self.reader = reader
        self.join_window = join_window
        cursor.execute(SCHEMA)

    def add(
        self,
        deployment: str,
        monitor: str,
        table: str | None,
        labels: Sequence[Label],
        *,
        id_field: str = REQUEST_ID,
        source: tuple[str, int] | None = None,
        now: float | None = None,
    ) -> Received:
        """Store ``labels`` of ``monitor`` (whose records are in ``table``, if any yet), in one
        transaction; run by the writer. ``source``: the sender's source and the watermark these
        labels reach, kept in the same transaction (a re-run resumes after it)."""
        now = time.time() if now is None else now
        cursor = self.cursor
        cursor.execute("BEGIN TRANSACTION")
        try:
            cursor.execute(
                "CREATE OR REPLACE TEMP TABLE feedback_batch "
                "(id VARCHAR, label VARCHAR, label_time DOUBLE, position BIGINT)"
            )
            cursor.execute(
                "INSERT INTO feedback_batch SELECT unnest($1), unnest($2), unnest($3), unnest($4)",
                [
                    [x.id for x in labels],
                    [x.label for x in labels],
                    [x.time for x in labels],
                    list(range(len(labels))),
                ],
            )
            last = (
                "SELECT id, label, label_time FROM feedback_batch "
                "QUALIFY row_number() OVER (PARTITION BY id ORDER BY position DESC) = 1"
            )
            key = "f.deployment = $1 AND f.monitor = $2 AND f.id_field = $3 AND f.id = b.id"
            counted = cursor.execute(
                f"SELECT count(*) FILTER (WHERE f.id IS NULL), "
                f"count(*) FILTER (WHERE f.label = b.label), "
                f"count(*) FILTER (WHERE f.label <> b.label) "
                f"FROM ({last}) b LEFT JOIN feedback f ON {key}",
                [deployment, monitor, id_field],
            ).fetchone()
            assert counted is not None
            new, _, changed = (int(n) for n in counted)
            cursor.execute(
                f"INSERT INTO feedback SELECT $1, $2, $3, b.id, b.label, b.label_time, $4, 0 "
                f"FROM ({last}) b LEFT JOIN feedback f ON {key} "
                "WHERE f.id IS NULL OR f.label <> b.label "
                "ON CONFLICT (deployment, monitor, id_field, id) DO UPDATE SET "
                "label = excluded.label, label_time = excluded.label_time, "
                "received = excluded.received, corrections = feedback.corrections + 1",
                [deployment, monitor, id_field, now],
            )
            pending = self._unjoined(deployment, table, id_field, "feedback_batch")
            cursor.execute("DROP TABLE feedback_batch")
            if source is not None:
                cursor.execute(
                    "INSERT OR REPLACE INTO feedback_sources VALUES (?, ?, ?, ?)",
                    [deployment, monitor, source[0], source[1]],
                )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        duplicates = len(labels) - new - changed
        return Received(len(labels), new, duplicates, changed, pending)

    def _unjoined(self, deployment: str, table: str | None, id_field: str, labels: str) -> int:
        """Distinct ids of ``labels`` (a table with ``id``) with no record in ``table``."""
        if table is None:
            found = self.cursor.execute(f"SELECT count(DISTINCT id) FROM {labels}").fetchone()
            return int(found[0]) if found else 0
        found = self.cursor.execute(
            f"SELECT count(DISTINCT l.id) FROM {labels} l WHERE NOT EXISTS ("
            f"SELECT 1 FROM {table} r WHERE r.deployment = $1 AND {record_id(id_field, 'r')} "
            "= l.id)",
            [deployment],
        ).fetchone()
        return int(found[0]) if found else 0

    def watermark(self, deployment: str, monitor: str, source: str) -> int | None:
        """The watermark the labels of ``source`` reached, if it sent any."""
        row = (
            self.reader()
            .execute(
                "SELECT watermark FROM feedback_sources WHERE deployment = ? AND monitor = ? "
                "AND source = ?",
                [deployment, monitor, source],
            )
            .fetchone()
        )
        return int(row[0]) if row else None

    def counts(self, deployment: str, monitor: str, table: str | None = None) -> dict[str, int]:
        """Labels stored for ``monitor``, corrections made, and (with the monitor's ``table``)
        labels whose id matches no stored prediction (pending, or unknown ids)."""
        reader = self.reader()
        row = reader.execute(
            "SELECT count(*), coalesce(sum(corrections), 0) FROM feedback "
            "WHERE deployment = ? AND monitor = ?",
            [deployment, monitor],
        ).fetchone()
        if not row:
            return {}
        unmatched = 0
        if table is not None:
            fields = reader.execute(
                "SELECT DISTINCT id_field FROM feedback WHERE deployment = ? AND monitor = ?",
                [deployment, monitor],
            ).fetchall()
            for (id_field,) in fields:
                found = reader.execute(
                    "SELECT count(*) FROM feedback f WHERE f.deployment = ? AND f.monitor = ? "
                    f"AND f.id_field = ? AND f.id NOT IN (SELECT {record_id(id_field, 'r')} "
                    f"FROM {table} r WHERE r.deployment = ? AND {record_id(id_field, 'r')} "
                    "IS NOT NULL)",
                    [deployment, monitor, id_field, deployment],
                ).fetchone()
                unmatched += int(found[0]) if found else 0
        return {"labels": int(row[0]), "corrections": int(row[1]), "unmatched": unmatched}

    def prune(self, tables: dict[str, str], now: float | None = None) -> None:
        """Forget labels older than the join window that never met their prediction (run by
        the writer); ``tables``: each monitor's table."""
        cutoff = (time.time() if now is None else now) - self.join_window
        for monitor, table in tables.items():
            fields = self.cursor.execute(
                "SELECT DISTINCT id_field FROM feedback WHERE monitor = ? AND received < ?",
                [monitor, cutoff],
            ).fetchall()
            for (id_field,) in fields:
                self.cursor.execute(
                    "DELETE FROM feedback f WHERE f.monitor = ? AND f.id_field = ? AND "
                    "f.received < ? AND NOT EXISTS (SELECT 1 FROM "
                    f"{table} r WHERE r.deployment = f.deployment AND "
                    f"{record_id(id_field, 'r')} = f.id)",
                    [monitor, id_field, cutoff],
                )

    def forget(self, deployment: str) -> None:
        self.cursor.execute("DELETE FROM feedback WHERE deployment = ?", [deployment])
        self.cursor.execute("DELETE FROM feedback_sources WHERE deployment = ?", [deployment])


def record_id(id_field: str, alias: str) -> str:
    """SQL for a record's id: its stored ``request_id``, or a field of the record as text."""
    if id_field == REQUEST_ID:
        return f"{alias}.request_id"
    return f"json_extract_string({alias}.record, '$.{check_field(id_field)}')"
