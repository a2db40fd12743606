"""Labels as they come in: each one checked (its id, label and time), and batches of them.

Labels come in as a :class:`LabelBatch`: a query in a DuckDB connection of its own (over the
file sent, say), scanned once by the store through an Arrow stream. The writer stores a batch
in one transaction: compared with what is stored by joins on the id (a request id as a 128-bit
number), with no index to keep up (a second batch of a million fits the database's memory).
A batch with a row its query could not settle, or with an id twice, is refused as
:class:`Unsettled`, to be read again with care (:meth:`LabelBatch.settled`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Invalid

if TYPE_CHECKING:
    import duckdb

REQUEST_ID = "request_id"
JOIN_WINDOW = 7 * 86400.0
"""Seconds a label waits for its prediction before it is forgotten."""
MAX_LABELS = 1_000_000
"""Labels in one request."""
MAX_ID_CHARACTERS = 256
MAX_LABEL_CHARACTERS = 4096
MAX_INDEXED_FIELDS = 8
"""Record fields the prediction index of a monitor keeps as columns (more: it is made again)."""
HEX_ID = re.compile(r"(0x)?[0-9a-fA-F]{1,32}")
DECIMAL_ID = re.compile(r"[0-9]{1,39}")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_sets (
    id INTEGER PRIMARY KEY, deployment VARCHAR, monitor VARCHAR, id_field VARCHAR
);
CREATE TABLE IF NOT EXISTS feedback_batches (id INTEGER PRIMARY KEY, received DOUBLE);
CREATE TABLE IF NOT EXISTS feedback_labels (
    set_id INTEGER, key UHUGEINT, id VARCHAR, label VARCHAR, label_time DOUBLE, batch INTEGER,
    corrections INTEGER, pending BOOLEAN
);
CREATE TABLE IF NOT EXISTS feedback_sources (
    deployment VARCHAR, monitor VARCHAR, source VARCHAR, watermark BIGINT,
    PRIMARY KEY (deployment, monitor, source)
);
CREATE TABLE IF NOT EXISTS prediction_index (
    monitor VARCHAR PRIMARY KEY, records VARCHAR, rows_table VARCHAR, seq BIGINT,
    fields VARCHAR[], batch INTEGER
);
"""
"""``feedback_sets``: one per (deployment, monitor, id field); ``feedback_labels``: a label per
id of a set (``key`` for request ids, ``id`` for any other), with the batch that stored it
(``feedback_batches``: when it was received) and ``pending``: no prediction of it was stored
when it came, or when the prediction index last looked. ``prediction_index``: each monitor's
index table, the last record and the last batch of labels it holds."""
RECORD_TIME = "coalesce(epoch(TRY_CAST({r}.timestamp AS TIMESTAMP)), {r}.ingested_at)"
"""A record's time: its ``timestamp``, else when it was ingested."""
RECORD_KEY = (
    "CASE WHEN regexp_full_match({r}.request_id, '0|[1-9][0-9]{{0,38}}') "
    "THEN TRY_CAST({r}.request_id AS UHUGEINT) END"
)
"""A record's request id as the number a label's key is (only a decimal as bentoml writes it)."""
DECIMAL_READING = (
    "CASE WHEN {k} < 18446744073709551616::UHUGEINT AND regexp_full_match(printf('%016x', "
    "{k}::UBIGINT), '[1-9][0-9]{{15}}') THEN printf('%016x', {k}::UBIGINT)::UHUGEINT END"
)
"""The other reading of a key sent as 16 decimal digits: read as hex (the header's form), they
may be a request id in decimal (the record's form); NULL for any other key."""
REQUEST_LABELS = (
    "SELECT s.deployment, l.key, l.label, coalesce(l.label_time, b.received) AS labelled_at, "
    "l.batch FROM feedback_labels l JOIN feedback_sets s ON s.id = l.set_id JOIN "
    "feedback_batches b ON b.id = l.batch WHERE s.monitor = $monitor "
    f"AND s.id_field = '{REQUEST_ID}'"
)
"""The request-id labels of the sets of ``$monitor``, with the time each was labelled."""


class Unsettled(Exception):
    """A batch the store did not take as it is: read it again with care
    (:meth:`LabelBatch.settled`)."""


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
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                raise Invalid(f"{where}: not valid Unicode text") from None
        return text
    below = f"{where}: a request id is a non-negative integer below 2**128"
    if isinstance(value, int):
        if value < 0 or value >= 2**128:
            raise Invalid(below)
        return str(value)
    if HEX_ID.fullmatch(value) and (value.startswith("0x") or len(value) == 16):
        return str(int(value.removeprefix("0x"), 16))
    if DECIMAL_ID.fullmatch(value):
        if int(value) >= 2**128:
            raise Invalid(below)
        return str(int(value))
    raise Invalid(
        f"{where}: a request id is decimal, as in the monitor record, or 16 hex digits, as in "
        "the X-BentoML-Request-ID header"
    )


def _label_text(value: object, index: int) -> str:
    where = f"labels[{index}].label"
    if value is None or not isinstance(value, str | int | float):
        kind = "null" if value is None else type(value).__name__
        raise Invalid(f"{where}: send a string, a number or a bool, not {kind}")
    if isinstance(value, float) and value != value:
        raise Invalid(f"labels[{index}].label: NaN is not a label")
    try:
        text = json.dumps(value)
    except ValueError:  # an integer of more digits than Python writes
        text = ""
    if not text or len(text) > MAX_LABEL_CHARACTERS:
        raise Invalid(f"{where}: at most {MAX_LABEL_CHARACTERS} characters")
    return text


def _label_time(value: object, index: int) -> float | None:
    if value is None:
        return None
    problem = f"labels[{index}].time: send epoch seconds, such as 1765000000.5"
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Invalid(problem)
    try:
        return float(value)
    except OverflowError:
        raise Invalid(problem) from None


def check_label(item: object, index: int, id_field: str = REQUEST_ID) -> Label:
    """The checked label of a decoded JSON object ``{"id", "label", "time"?}`` (other keys are
    ignored), the ``index``-th of its request."""
    if not isinstance(item, dict):
        raise Invalid(f"labels[{index}]: send an object such as {{'id': ..., 'label': ...}}")
    if "id" not in item or "label" not in item:
        missing = "id" if "id" not in item else "label"
        raise Invalid(f"labels[{index}].{missing}: missing")
    return Label(
        label_id(item["id"], id_field, index),
        _label_text(item["label"], index),
        _label_time(item.get("time"), index),
    )


def labels_from(items: Sequence[object], id_field: str = REQUEST_ID) -> list[Label]:
    """Checked labels from decoded JSON objects ``{"id", "label", "time"?}``."""
    if len(items) > MAX_LABELS:
        raise Invalid(f"labels: at most {MAX_LABELS:,} in one request; send them in batches")
    return [check_label(item, index, id_field) for index, item in enumerate(items)]


def check_field(id_field: str) -> str:
    if not FIELD.fullmatch(id_field):
        raise Invalid("id_field: a field name of the monitor record, such as inference_id")
    return id_field


def record_id(id_field: str, alias: str) -> str:
    """SQL for a record's id: its request id as a number, or a field of the record as text."""
    if id_field == REQUEST_ID:
        return RECORD_KEY.format(r=alias)
    return f"json_extract_string({alias}.record, '$.{check_field(id_field)}')"


def read_as_decimal(
    cursor: duckdb.DuckDBPyConnection,
    table: str,
    where: str,
    then: str,
    known: str,
    params: dict[str, Any],
) -> None:
    """Give the labels of ``table`` (rows ``where``: unmatched) whose id, 16 decimal digits,
    matches no prediction read as hex but one read as decimal (in ``known``, SQL of request
    ids) that prediction's key, and ``then`` (SQL of more columns set, ``alt``: the key)."""
    alt = DECIMAL_READING.format(k="key")
    count = f"SELECT count(*) FROM {table} WHERE {where} AND {alt} IS NOT NULL"
    found = _first(cursor.execute(count, _used(count, params)).fetchall())
    if found and found[0]:
        update = (
            f"UPDATE {table} SET key = {alt}, "
            f"{then.format(alt=DECIMAL_READING.format(k=f'{table}.key'))} WHERE {where} AND {alt} "
            f"IN (SELECT * FROM ({known}) k(v) WHERE v IS NOT NULL)"
        )
        cursor.execute(update, _used(update, params)).fetchall()


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if f"${name}" in sql}


def _first(rows: list[Any]) -> Any:
    """The first of rows read to the end (a connection with a result left open cannot hand an
    Arrow stream to another)."""
    return rows[0] if rows else None


def _ident(id_field: str) -> str:
    """The column of ``feedback_labels`` that names a label of a set of ``id_field``."""
    return "key" if id_field == REQUEST_ID else "id"


class _Stream:
    """An Arrow C stream of a relation, which a connection to another database can scan."""

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self.relation = relation

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.relation.__arrow_c_stream__(requested_schema)


class LabelBatch:
    """Labels to store: ``query`` in a DuckDB connection of their own (``connection``), or,
    with none, in the store's own (its database may read the file the query reads), with the
    columns ``key64`` (a request id below 2**64), ``key128`` (a larger one, in decimal: Arrow
    has no 128-bit integer), ``id`` (any other id), ``label`` (its JSON text), ``label_time``
    and ``flagged`` (the row needs the check of one label in Python), a row per label sent.

    ``received``: the labels sent, when the query does not count them (it keeps the last of
    each id); ``settle``: the batch read again with care (its rows checked, the last of each
    id); ``folder``: removed on close."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection | None,
        query: str,
        params: dict[str, Any] | None = None,
        *,
        received: int | None = None,
        settle: Callable[[], LabelBatch] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.connection = connection
        self.query = query
        self.params = params
        self.received = received
        self.settle = settle
        self.folder = folder

    @property
    def local(self) -> bool:
        """Its query runs in the store's connection."""
        return self.connection is None

    def stream(self) -> _Stream:
        """The labels as an Arrow stream (of a batch with a connection of its own)."""
        if self.connection is None:
            raise RuntimeError("a batch read by the store's own connection has no stream")
        return _Stream(self.connection.sql(self.query, params=self.params))

    def settled(self) -> LabelBatch:
        """This batch read again with care (its folder passes to it; this one is closed);
        Invalid for a bad label."""
        if self.settle is None:
            raise RuntimeError("a settled batch of labels was refused")
        try:
            careful = self.settle()
            careful.folder, self.folder = self.folder, None
        finally:
            self.close()
        return careful

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LabelBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finish_batch(connection: duckdb.DuckDBPyConnection, received: int) -> LabelBatch:
    """The settled batch of the table ``checked`` (``key64``, ``key128``, ``id``, ``label``,
    ``label_time``; a row per label sent, in order): the last label of each id."""
    key = "coalesce(key64::UHUGEINT, key128::UHUGEINT)"
    [(count, distinct)] = connection.execute(
        f"SELECT count(*), count(DISTINCT {key}) + count(DISTINCT id) FROM checked"
    ).fetchall()
    table = "checked"
    if count != distinct:
        table = "last_labels"
        connection.execute(
            "CREATE TABLE last_labels AS SELECT * FROM checked "
            f"QUALIFY row_number() OVER (PARTITION BY {key}, id ORDER BY rowid DESC) = 1"
        ).fetchall()
    query = f"SELECT key64, key128, id, label, label_time, false AS flagged FROM {table}"
    return LabelBatch(connection, query, received=received)


def batch_of(labels: Sequence[Label], id_field: str = REQUEST_ID) -> LabelBatch:
    """The batch of labels checked by :func:`labels_from`."""
    import duckdb

    connection = duckdb.connect(config={"threads": 1})
    connection.execute("CREATE TABLE sent (id VARCHAR, label VARCHAR, t DOUBLE)")
    if labels:
        connection.execute(
            "INSERT INTO sent SELECT unnest($1), unnest($2), unnest($3)",
            [[x.id for x in labels], [x.label for x in labels], [x.time for x in labels]],
        )
    keys = "NULL::UBIGINT AS key64, NULL::VARCHAR AS key128, id"
    if id_field == REQUEST_ID:
        keys = (
            "TRY_CAST(id AS UBIGINT) AS key64, CASE WHEN key64 IS NULL THEN id END AS key128, "
            "NULL::VARCHAR AS id"
        )
    connection.execute(
        f"CREATE TABLE checked AS SELECT {keys}, label, t AS label_time FROM sent"
    ).fetchall()
    return finish_batch(connection, len(labels))


def migrate_old_labels(cursor: duckdb.DuckDBPyConnection) -> None:
    """Labels stored by an earlier version (one ``feedback`` table keyed by its four text
    columns) moved into the sets and labels tables."""
    found = _first(
        cursor.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = 'feedback' AND column_name = 'id_field'"
        ).fetchall()
    )
    if not found or not found[0]:
        return
    cursor.execute("BEGIN TRANSACTION")
    try:
        cursor.execute(
            "INSERT INTO feedback_sets SELECT (SELECT coalesce(max(id), 0) FROM "
            "feedback_sets) + row_number() OVER (ORDER BY deployment, monitor, id_field), * "
            "FROM (SELECT DISTINCT deployment, monitor, id_field FROM feedback) f WHERE NOT "
            "EXISTS (SELECT 1 FROM feedback_sets s WHERE s.deployment = f.deployment AND "
            "s.monitor = f.monitor AND s.id_field = f.id_field)"
        )
        cursor.execute(
            "INSERT INTO feedback_batches SELECT (SELECT coalesce(max(id), 0) FROM "
            "feedback_batches) + row_number() OVER (ORDER BY received), received FROM "
            "(SELECT DISTINCT received FROM feedback)"
        )
        cursor.execute(
            "INSERT INTO feedback_labels SELECT s.id, CASE WHEN f.id_field = $request THEN "
            "TRY_CAST(f.id AS UHUGEINT) END, CASE WHEN f.id_field <> $request THEN f.id END, "
            "f.label, f.label_time, b.id, f.corrections, NULL FROM feedback f JOIN "
            "feedback_sets s ON s.deployment = f.deployment AND s.monitor = f.monitor AND "
            "s.id_field = f.id_field JOIN feedback_batches b ON b.received = f.received",
            {"request": REQUEST_ID},
        )
        cursor.execute("DROP TABLE feedback")
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
