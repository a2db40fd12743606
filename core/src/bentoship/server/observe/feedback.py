"""Labels that arrive after the prediction (ground truth), kept beside the monitor records, and
each monitor's predictions joined to them.

A label belongs to one monitor of one deployment and names its prediction by an id: the
record's ``request_id`` (stored in decimal, as bentoml writes it; a hex id as in the
``X-BentoML-Request-ID`` header is the same number), or the value of a field of the record
(``id_field``) for services that log their own inference id. Labels are stored once per id:
the same label again is a duplicate and changes nothing, another label replaces it and is
counted as a correction. A label whose prediction is not stored yet waits (pending) and joins
once the prediction arrives; one still unjoined after the join window is forgotten.

Labels come in as a :class:`LabelBatch`: a query in a DuckDB connection of its own (over the
file sent, say), scanned once by the store through an Arrow stream. The writer stores a batch
in one transaction: compared with what is stored by joins on the id (a request id as a 128-bit
number), with no index to keep up (a second batch of a million fits the database's memory).
A batch with a row its query could not settle, or with an id twice, is refused as
:class:`Unsettled`, to be read again with care (:meth:`LabelBatch.settled`).

The prediction index is what the quality figures read: per monitor, a table with a row per
record (deployment, revision, time and request id as columns, the record fields asked for as
text) and the label of its request id (decoded, with the time it was labelled). It is made the
first time quality is asked for, and made current each time after (by the writer): rows for
new records, each with the label waiting for it, and the labels of the batches stored since
set on the rows they name (until then a reader joins those few itself). Rows whose record is
gone (retention, a deleted deployment) are removed before it is used again; a reader that finds
it behind, or without a field asked for, reads the records themselves.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Invalid

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "JOIN_WINDOW",
    "MAX_LABELS",
    "REQUEST_ID",
    "FeedbackStore",
    "Label",
    "LabelBatch",
    "Received",
    "Unsettled",
    "batch_of",
    "check_label",
    "joined_sql",
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
    """The checked label of a decoded JSON object ``{"id", "label", "time"?}``, the
    ``index``-th of its request."""
    if not isinstance(item, dict):
        raise Invalid(f"labels[{index}]: send an object such as {{'id': ..., 'label': ...}}")
    unknown = sorted(set(item) - {"id", "label", "time"})
    if unknown:
        raise Invalid(f"labels[{index}].{unknown[0]}: unknown field; send id, label, time")
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
    """Labels to store: ``query`` in a DuckDB connection of their own, with the columns
    ``key64`` (a request id below 2**64), ``key128`` (a larger one, in decimal: Arrow has no
    128-bit integer), ``id`` (any other id), ``label`` (its JSON text), ``label_time`` and
    ``flagged`` (the row needs the check of one label in Python), a row per label sent.

    ``received``: the labels sent, when the query does not count them (it keeps the last of
    each id); ``settle``: the batch read again with care (its rows checked, the last of each
    id); ``keys``: for JSON objects, how many keys besides id, label and time they have (waits
    for the count); ``folder``: removed on close."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        query: str,
        params: dict[str, Any] | None = None,
        *,
        received: int | None = None,
        settle: Callable[[], LabelBatch] | None = None,
        keys: Callable[[], int] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.connection = connection
        self.query = query
        self.params = params
        self.received = received
        self.settle = settle
        self.keys = keys
        self.folder = folder
        self.waits: list[threading.Thread] = []

    def stream(self) -> _Stream:
        """The labels as an Arrow stream."""
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
        for thread in self.waits:
            thread.join()
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


@dataclass(frozen=True)
class IndexState:
    """Where a monitor's prediction index is: its table, the last record sequence number and
    the last batch of labels it holds, and the record fields it keeps (column ``c<n>`` for
    ``fields[n]``)."""

    monitor: str
    records: str
    rows: str
    seq: int
    fields: tuple[str, ...]
    batch: int

    def column(self, field: str) -> str:
        return f"c{self.fields.index(field)}"


def index_state(cursor: duckdb.DuckDBPyConnection, monitor: str) -> IndexState | None:
    row = _first(
        cursor.execute(
            "SELECT records, rows_table, seq, fields, batch FROM prediction_index "
            "WHERE monitor = ?",
            [monitor],
        ).fetchall()
    )
    if row is None:
        return None
    records, rows, seq, fields, batch = row
    return IndexState(monitor, records, rows, int(seq), tuple(fields), int(batch))


def _index_matches(cursor: duckdb.DuckDBPyConnection, state: IndexState) -> bool:
    """Whether the index holds a row for each record up to its sequence number (none removed)."""
    row = _first(
        cursor.execute(
            f"SELECT (SELECT count(*) FROM {state.records} WHERE seq <= $seq), "
            f"(SELECT count(*) FROM {state.rows})",
            {"seq": state.seq},
        ).fetchall()
    )
    return row is not None and row[0] == row[1]


def _last_batch(cursor: duckdb.DuckDBPyConnection) -> int:
    row = _first(cursor.execute("SELECT coalesce(max(id), 0) FROM feedback_batches").fetchall())
    return int(row[0]) if row else 0


def _set_id(
    cursor: duckdb.DuckDBPyConnection, deployment: str, monitor: str, id_field: str
) -> int | None:
    row = _first(
        cursor.execute(
            "SELECT id FROM feedback_sets WHERE deployment = ? AND monitor = ? AND id_field = ?",
            [deployment, monitor, id_field],
        ).fetchall()
    )
    return int(row[0]) if row else None


def joined_sql(
    cursor: duckdb.DuckDBPyConnection,
    deployment: str,
    monitor: str,
    table: str,
    fields: Sequence[str],
    id_field: str = REQUEST_ID,
) -> tuple[str, dict[str, Any]]:
    """SQL of every prediction of ``deployment``'s ``monitor`` (records in ``table``) with its
    label, and its parameters: ``seq``, ``revision``, ``t``, ``f0``... (the ``fields`` as
    text), ``actual`` (the label as text, NULL without one) and ``labelled_at``. Read from the
    prediction index where it can be (run in the transaction of the query that uses it)."""
    names = [check_field(f) for f in fields]
    set_id = _set_id(cursor, deployment, monitor, id_field)
    params: dict[str, Any] = {"deployment": deployment, "set": -1 if set_id is None else set_id}
    state = index_state(cursor, monitor) if id_field == REQUEST_ID else None
    if (
        state is None
        or state.records != table
        or not set(names) <= set(state.fields)
        or not _index_matches(cursor, state)
    ):
        return _live_sql(table, names, id_field, tail=False), params
    params["seq"] = state.seq
    picked = ", ".join(f"x.{state.column(f)} AS f{n}" for n, f in enumerate(names))
    indexed = (
        f"SELECT x.seq, x.revision, x.t, {picked}, x.actual, x.labelled_at FROM {state.rows} x "
        "WHERE x.deployment = $deployment"
    )
    if _last_batch(cursor) > state.batch:  # labels stored since the index took them in
        params["batch"] = state.batch
        indexed = (
            f"SELECT x.seq, x.revision, x.t, {picked}, coalesce(json_extract_string(d.label, "
            "'$'), x.actual) AS actual, coalesce(d.labelled_at, x.labelled_at) AS labelled_at "
            f"FROM {state.rows} x LEFT JOIN (SELECT l.key, l.label, coalesce(l.label_time, "
            "b.received) AS labelled_at FROM feedback_labels l JOIN feedback_batches b ON "
            "b.id = l.batch WHERE l.set_id = $set AND l.batch > $batch) d ON d.key = x.rid "
            "WHERE x.deployment = $deployment"
        )
    return f"{indexed} UNION ALL {_live_sql(table, names, id_field, tail=True)}", params


def _live_sql(table: str, fields: Sequence[str], id_field: str, *, tail: bool) -> str:
    """:func:`joined_sql` from the records themselves (with ``tail``: those after ``$seq``)."""
    paths = ", ".join(f"'$.{f}'" for f in fields)
    picked = "".join(f", r.v[{n + 1}] AS f{n}" for n in range(len(fields)))
    after = " AND seq > $seq" if tail else ""
    ident = _ident(id_field)
    return (
        f"SELECT r.seq, r.revision, r.t{picked}, json_extract_string(f.label, '$') AS actual, "
        "f.labelled_at FROM ("
        f"SELECT seq, revision, {RECORD_TIME.format(r=table)} AS t, "
        f"{record_id(id_field, table)} AS ident, json_extract_string(record, [{paths}]) AS v "
        f"FROM {table} WHERE deployment = $deployment{after}) r LEFT JOIN ("
        f"SELECT l.{ident} AS ident, l.label, coalesce(l.label_time, b.received) AS labelled_at "
        "FROM feedback_labels l JOIN feedback_batches b ON b.id = l.batch "
        "WHERE l.set_id = $set) f ON f.ident = r.ident"
    )


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
        self._built = False
        cursor.execute(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Labels stored by an earlier version (one ``feedback`` table keyed by its four text
        columns) moved into the sets and labels tables."""
        cursor = self.cursor
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

    def _set(self, deployment: str, monitor: str, id_field: str) -> int:
        found = _set_id(self.cursor, deployment, monitor, id_field)
        if found is not None:
            return found
        row = _first(
            self.cursor.execute(
                "INSERT INTO feedback_sets SELECT (SELECT coalesce(max(id), 0) + 1 FROM "
                "feedback_sets), ?, ?, ? RETURNING id",
                [deployment, monitor, id_field],
            ).fetchall()
        )
        assert row is not None
        return int(row[0])

    def add(
        self,
        deployment: str,
        monitor: str,
        table: str | None,
        labels: Sequence[Label] | LabelBatch,
        *,
        id_field: str = REQUEST_ID,
        source: tuple[str, int] | None = None,
        now: float | None = None,
    ) -> Received:
        """Store ``labels`` of ``monitor`` (whose records are in ``table``, if any yet), in one
        transaction; run by the writer. ``source``: the sender's source and the watermark these
        labels reach, kept in the same transaction (a re-run resumes after it). Unsettled:
        nothing stored, the batch is to be read again with care (``LabelBatch.settled``)."""
        if isinstance(labels, LabelBatch):
            return self._add(deployment, monitor, table, labels, id_field, source, now)
        with batch_of(labels, id_field) as batch:
            return self._add(deployment, monitor, table, batch, id_field, source, now)

    def _add(
        self,
        deployment: str,
        monitor: str,
        table: str | None,
        batch: LabelBatch,
        id_field: str,
        source: tuple[str, int] | None,
        now: float | None,
    ) -> Received:
        now = time.time() if now is None else now
        cursor = self.cursor
        ident = _ident(id_field)
        cursor.execute("BEGIN TRANSACTION")
        try:
            set_id = self._set(deployment, monitor, id_field)
            self._take(batch, deployment, monitor, table, id_field, set_id)
            row = _first(
                cursor.execute(
                    "SELECT count(*), count(DISTINCT key) + count(DISTINCT id), count(*) FILTER "
                    "(WHERE flagged), count(*) FILTER (WHERE stored IS NULL), "
                    "count(*) FILTER (WHERE stored <> label), count(*) FILTER (WHERE NOT "
                    "matched) FROM feedback_batch"
                ).fetchall()
            )
            assert row is not None
            count, distinct, flagged, new, changed, pending = (int(n) for n in row)
            if count > MAX_LABELS:
                raise Invalid(
                    f"labels: at most {MAX_LABELS:,} in one request; send them in batches"
                )
            if flagged or distinct != count or (batch.keys and batch.keys()):
                raise Unsettled("a label to check, an id twice, or a key besides id, label, time")
            number = _last_batch(cursor) + 1
            cursor.execute("INSERT INTO feedback_batches VALUES (?, ?)", [number, now])
            cursor.execute(
                "INSERT INTO feedback_labels SELECT $set, key, id, label, label_time, $batch, 0, "
                "NOT matched FROM feedback_batch WHERE stored IS NULL",
                {"set": set_id, "batch": number},
            )
            if changed:
                cursor.execute(
                    "UPDATE feedback_labels l SET label = b.label, label_time = b.label_time, "
                    "batch = $batch, corrections = l.corrections + 1 FROM feedback_batch b "
                    f"WHERE l.set_id = $set AND l.{ident} = b.{ident} AND b.stored <> b.label",
                    {"set": set_id, "batch": number},
                )
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
        self._checkpoint_built()
        received = count if batch.received is None else batch.received
        return Received(received, new, received - new - changed, changed, pending)

    def _take(
        self,
        batch: LabelBatch,
        deployment: str,
        monitor: str,
        table: str | None,
        id_field: str,
        set_id: int,
    ) -> None:
        """The temporary table ``feedback_batch``: the batch's labels, each with the label
        stored for its id (``stored``) and whether its prediction is stored (``matched``)."""
        import duckdb

        ident = _ident(id_field)
        params: dict[str, Any] = {"deployment": deployment, "set": set_id}
        state = None
        if table is not None and id_field == REQUEST_ID:
            state = self._refresh(monitor, table, (), create=False, labels=False)
        if state is not None:
            params["seq"] = state.seq
            known = (
                f"SELECT rid FROM {state.rows} WHERE deployment = $deployment UNION ALL "
                f"SELECT {RECORD_KEY.format(r='r')} FROM {table} r WHERE r.seq > $seq "
                "AND r.deployment = $deployment"
            )
        elif table is not None:
            known = (
                f"SELECT {record_id(id_field, 'r')} FROM {table} r WHERE r.deployment = $deployment"
            )
        else:
            known = "SELECT NULL WHERE false"
            del params["deployment"]
        stored = _first(
            self.cursor.execute(
                "SELECT count(*) FROM feedback_labels WHERE set_id = ?", [set_id]
            ).fetchall()
        )
        labels = (
            f"SELECT {ident}, label FROM feedback_labels WHERE set_id = $set"
            if stored and stored[0]
            else f"SELECT NULL::{'UHUGEINT' if ident == 'key' else 'VARCHAR'} AS {ident}, "
            "NULL::VARCHAR AS label WHERE $set IS NULL"
        )
        try:
            self.cursor.register("feedback_incoming", batch.stream())
            self.cursor.execute(
                "CREATE OR REPLACE TEMP TABLE feedback_batch AS SELECT b.*, s.label AS stored, "
                f"coalesce(b.{ident} IN (SELECT * FROM ({known}) k(v) WHERE v IS NOT NULL), "
                "false) AS matched FROM (SELECT coalesce(key64::UHUGEINT, key128::UHUGEINT) "
                "AS key, id, label, label_time, flagged FROM feedback_incoming) b "
                f"LEFT JOIN ({labels}) s "
                f"ON s.{ident} = b.{ident}",
                params,
            )
        except duckdb.Error as exc:
            if batch.settle is None:
                raise
            raise Unsettled(f"the batch could not be read in one pass ({exc})") from exc
        finally:
            with contextlib.suppress(duckdb.Error):
                self.cursor.unregister("feedback_incoming")

    def refresh(self, monitor: str, table: str, fields: Sequence[str] = ()) -> None:
        """Make ``monitor``'s prediction index (its records in ``table``) current, with the
        record ``fields`` as columns; run by the writer."""
        self.cursor.execute("BEGIN TRANSACTION")
        try:
            self._refresh(monitor, table, [check_field(f) for f in fields], create=True)
            self.cursor.execute("COMMIT")
        except BaseException:
            self.cursor.execute("ROLLBACK")
            raise
        self._checkpoint_built()

    def _checkpoint_built(self) -> None:
        """A prediction index just made is written to the database file at once (with what
        else waits for a checkpoint), not left for the next write to carry."""
        import duckdb

        if self._built:
            self._built = False
            with contextlib.suppress(duckdb.Error):  # another transaction writes: later, then
                self.cursor.execute("CHECKPOINT")

    def _refresh(
        self,
        monitor: str,
        table: str,
        fields: Sequence[str],
        *,
        create: bool,
        labels: bool = True,
    ) -> IndexState | None:
        """The index made current (records removed, fields added); with ``labels``, the records
        and the labels stored since taken in too."""
        cursor = self.cursor
        state = index_state(cursor, monitor)
        if state is not None and state.records != table:
            self._drop(state)
            state = None
        if state is None:
            return self._build(monitor, table, fields) if create else None
        wanted = [f for f in dict.fromkeys(fields) if f not in state.fields]
        if len(state.fields) + len(wanted) > MAX_INDEXED_FIELDS:
            self._drop(state)
            return self._build(monitor, table, fields)
        if not _index_matches(cursor, state) and not self._remove_gone(state):
            self._drop(state)
            return self._build(monitor, table, (*state.fields, *wanted))
        for field in wanted:
            column = f"c{len(state.fields)}"
            cursor.execute(f"ALTER TABLE {state.rows} ADD COLUMN {column} VARCHAR")
            cursor.execute(
                f"UPDATE {state.rows} x SET {column} = json_extract_string(r.record, "
                f"'$.{field}') FROM {table} r WHERE r.seq = x.seq"
            )
            state = IndexState(
                monitor, table, state.rows, state.seq, (*state.fields, field), state.batch
            )
        seq, batch = max(self._top(table), state.seq), state.batch
        if labels:
            batch = _last_batch(cursor)
            if batch > state.batch:
                cursor.execute(
                    f"UPDATE {state.rows} x SET actual = json_extract_string(f.label, '$'), "
                    f"labelled_at = f.labelled_at FROM ({REQUEST_LABELS} AND l.batch > $after) "
                    "f WHERE x.deployment = f.deployment AND x.rid = f.key",
                    {"monitor": monitor, "after": state.batch},
                )
        if labels and seq > state.seq:
            cursor.execute(
                f"INSERT INTO {state.rows} {self._rows_sql(table, state.fields)}",
                {"monitor": monitor, "after": state.seq, "top": seq},
            )
            cursor.execute(
                "UPDATE feedback_labels l SET pending = false FROM feedback_sets s WHERE "
                f"s.id = l.set_id AND s.monitor = $monitor AND s.id_field = '{REQUEST_ID}' AND "
                f"l.pending AND EXISTS (SELECT 1 FROM {state.rows} x WHERE x.seq > $after AND "
                "x.deployment = s.deployment AND x.rid = l.key)",
                {"monitor": monitor, "after": state.seq},
            )
        else:
            seq = state.seq
        state = IndexState(monitor, table, state.rows, seq, state.fields, batch)
        cursor.execute(
            "UPDATE prediction_index SET seq = ?, fields = ?, batch = ? WHERE monitor = ?",
            [state.seq, list(state.fields), state.batch, monitor],
        )
        return state

    def _top(self, table: str) -> int:
        row = _first(self.cursor.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchall())
        return int(row[0]) if row else 0

    def _rows_sql(self, table: str, fields: Sequence[str]) -> str:
        """SQL of the index rows of ``table``'s records after ``$after`` up to ``$top``, each
        with the label of its request id, if any (of the sets of ``$monitor``)."""
        paths = ", ".join(f"'$.{f}'" for f in fields)
        extracted = f", json_extract_string(record, [{paths}]) AS v" if fields else ""
        columns = "".join(f", r.v[{n + 1}] AS c{n}" for n in range(len(fields)))
        return (
            "SELECT r.seq, r.deployment, r.revision, r.t, r.rid, "
            "json_extract_string(f.label, '$') AS actual, f.labelled_at"
            f"{columns} FROM (SELECT seq, deployment, revision, {RECORD_TIME.format(r=table)} "
            f"AS t, {RECORD_KEY.format(r=table)} AS rid{extracted} FROM {table} "
            f"WHERE seq > $after AND seq <= $top) r LEFT JOIN ({REQUEST_LABELS}) f "
            "ON f.deployment = r.deployment AND f.key = r.rid"
        )

    def _build(self, monitor: str, table: str, fields: Sequence[str]) -> IndexState:
        cursor = self.cursor
        fields = tuple(dict.fromkeys(fields))[-MAX_INDEXED_FIELDS:]
        row = _first(
            cursor.execute(
                "SELECT coalesce(max(TRY_CAST(rows_table[17:] AS INTEGER)), 0) + 1 "
                "FROM prediction_index"
            ).fetchall()
        )
        rows = f"prediction_rows_{row[0] if row else 1}"
        top, batch = self._top(table), _last_batch(cursor)
        cursor.execute(
            f"CREATE TABLE {rows} AS {self._rows_sql(table, fields)}",
            {"monitor": monitor, "after": -1, "top": top},
        )
        cursor.execute(
            "INSERT INTO prediction_index VALUES (?, ?, ?, ?, ?, ?)",
            [monitor, table, rows, top, list(fields), batch],
        )
        state = IndexState(monitor, table, rows, top, fields, batch)
        self._mark_pending(state, every=True)
        self._built = True
        return state

    def _drop(self, state: IndexState) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS {state.rows}")
        self.cursor.execute("DELETE FROM prediction_index WHERE monitor = ?", [state.monitor])

    def _remove_gone(self, state: IndexState) -> bool:
        """Remove the index rows whose record is gone; False if some record has no row."""
        cursor = self.cursor
        cursor.execute(
            f"DELETE FROM {state.rows} WHERE seq < (SELECT coalesce(min(seq), $after) "
            f"FROM {state.records})",
            {"after": state.seq + 1},
        )
        if not _index_matches(cursor, state):
            cursor.execute(
                f"DELETE FROM {state.rows} WHERE seq NOT IN (SELECT seq FROM {state.records} "
                "WHERE seq <= $seq)",
                {"seq": state.seq},
            )
        if not _index_matches(cursor, state):
            return False
        self._mark_pending(state, every=False)
        return True

    def _mark_pending(self, state: IndexState, *, every: bool) -> None:
        """Set which request-id labels of the monitor have no record in the index: all of them
        (``every``), or those that had one."""
        sets = self.cursor.execute(
            "SELECT id, deployment FROM feedback_sets WHERE monitor = ? AND id_field = ?",
            [state.monitor, REQUEST_ID],
        ).fetchall()
        for set_id, deployment in sets:
            missing = (
                f"key NOT IN (SELECT rid FROM {state.rows} WHERE deployment = $deployment "
                "AND rid IS NOT NULL)"
            )
            if every:
                sql = f"UPDATE feedback_labels SET pending = {missing} WHERE set_id = $set"
            else:
                sql = (
                    "UPDATE feedback_labels SET pending = true WHERE set_id = $set AND "
                    f"NOT coalesce(pending, false) AND {missing}"
                )
            self.cursor.execute(sql, {"set": set_id, "deployment": deployment})

    def watermark(self, deployment: str, monitor: str, source: str) -> int | None:
        """The watermark the labels of ``source`` reached, if it sent any."""
        row = _first(
            self.reader()
            .execute(
                "SELECT watermark FROM feedback_sources WHERE deployment = ? AND monitor = ? "
                "AND source = ?",
                [deployment, monitor, source],
            )
            .fetchall()
        )
        return int(row[0]) if row else None

    def counts(self, deployment: str, monitor: str, table: str | None = None) -> dict[str, int]:
        """Labels stored for ``monitor``, corrections made, and (with the monitor's ``table``)
        labels whose id matches no stored prediction (pending, or unknown ids)."""
        reader = self.reader()
        reader.execute("BEGIN TRANSACTION")
        try:
            found = self._counts(reader, deployment, monitor, table)
        except BaseException:
            reader.execute("ROLLBACK")
            raise
        reader.execute("COMMIT")
        return found

    def _counts(
        self, reader: duckdb.DuckDBPyConnection, deployment: str, monitor: str, table: str | None
    ) -> dict[str, int]:
        row = _first(
            reader.execute(
                "SELECT count(*), coalesce(sum(l.corrections), 0) FROM feedback_labels l "
                "JOIN feedback_sets s ON s.id = l.set_id WHERE s.deployment = ? AND s.monitor = ?",
                [deployment, monitor],
            ).fetchall()
        )
        if not row:
            return {}
        unmatched = 0
        if table is not None:
            state = index_state(reader, monitor)
            if state is not None and (state.records != table or not _index_matches(reader, state)):
                state = None
            sets = reader.execute(
                "SELECT id, id_field FROM feedback_sets WHERE deployment = ? AND monitor = ?",
                [deployment, monitor],
            ).fetchall()
            for set_id, id_field in sets:
                params = {"set": set_id, "deployment": deployment}
                if id_field == REQUEST_ID and state is not None:
                    sql = (
                        "SELECT count(*) FROM feedback_labels WHERE set_id = $set AND pending "
                        f"AND key NOT IN (SELECT {RECORD_KEY.format(r='r')} FROM {table} r "
                        "WHERE r.seq > $seq AND r.deployment = $deployment AND "
                        f"{RECORD_KEY.format(r='r')} IS NOT NULL)"
                    )
                    params["seq"] = state.seq
                else:
                    ident = _ident(id_field)
                    sql = (
                        f"SELECT count(*) FROM feedback_labels WHERE set_id = $set AND {ident} "
                        f"NOT IN (SELECT {record_id(id_field, 'r')} FROM {table} r WHERE "
                        f"r.deployment = $deployment AND {record_id(id_field, 'r')} IS NOT NULL)"
                    )
                found = _first(reader.execute(sql, params).fetchall())
                unmatched += int(found[0]) if found else 0
        return {"labels": int(row[0]), "corrections": int(row[1]), "unmatched": unmatched}

    def prune(self, tables: dict[str, str], now: float | None = None) -> None:
        """Forget labels older than the join window that never met their prediction (run by
        the writer); ``tables``: each monitor's table."""
        cutoff = (time.time() if now is None else now) - self.join_window
        cursor = self.cursor
        old = "SELECT id FROM feedback_batches WHERE received < $cutoff"
        for monitor, table in tables.items():
            sets = cursor.execute(
                "SELECT DISTINCT s.id, s.deployment, s.id_field FROM feedback_sets s JOIN "
                f"feedback_labels l ON l.set_id = s.id WHERE s.monitor = $monitor AND l.batch "
                f"IN ({old})",
                {"monitor": monitor, "cutoff": cutoff},
            ).fetchall()
            if not sets:
                continue
            cursor.execute("BEGIN TRANSACTION")
            try:
                state = self._refresh(monitor, table, (), create=False)
                for set_id, deployment, id_field in sets:
                    params = {"set": set_id, "cutoff": cutoff, "deployment": deployment}
                    if id_field == REQUEST_ID and state is not None:
                        sql = (
                            f"DELETE FROM feedback_labels WHERE set_id = $set AND batch IN ({old}) "
                            "AND pending"
                        )
                        del params["deployment"]
                    else:
                        ident = _ident(id_field)
                        sql = (
                            "DELETE FROM feedback_labels l WHERE l.set_id = $set AND l.batch IN "
                            f"({old}) AND NOT EXISTS (SELECT 1 FROM {table} r WHERE "
                            f"r.deployment = $deployment AND {record_id(id_field, 'r')} = "
                            f"l.{ident})"
                        )
                    cursor.execute(sql, params)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            self._checkpoint_built()

    def forget(self, deployment: str) -> None:
        cursor = self.cursor
        cursor.execute(
            "DELETE FROM feedback_labels WHERE set_id IN (SELECT id FROM feedback_sets "
            "WHERE deployment = ?)",
            [deployment],
        )
        cursor.execute("DELETE FROM feedback_sets WHERE deployment = ?", [deployment])
        cursor.execute("DELETE FROM feedback_sources WHERE deployment = ?", [deployment])
        for (rows,) in cursor.execute("SELECT rows_table FROM prediction_index").fetchall():
            cursor.execute(f"DELETE FROM {rows} WHERE deployment = ?", [deployment])
