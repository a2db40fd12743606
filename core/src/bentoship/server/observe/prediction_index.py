"""The prediction index is what the quality figures read: per monitor, a table with a row per
record (deployment, revision, time and request id as columns, the record fields asked for as
text) and the label of its request id (decoded, with the time it was labelled). It is made the
first time quality is asked for, and made current each time after (by the writer): rows for
new records, each with the label waiting for it, and the labels of the batches stored since
set on the rows they name (until then a reader joins those few itself). Rows whose record is
gone (retention, a deleted deployment) are removed before it is used again; a reader that finds
it behind, or without a field asked for, reads the records themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
from .label_batches import (
    RECORD_KEY,
    RECORD_TIME,
    REQUEST_ID,
    _first,
    _ident,
    check_field,
    record_id,
)


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


def known_sql(state: IndexState | None, table: str | None, id_field: str) -> str:
    """SQL of the ids of ``$deployment``'s stored predictions (records in ``table``): from the
    index (``state``) and the records after it (``$seq``) where there is one."""
    if table is None:
        return "SELECT NULL WHERE false"
    if state is None:
        return f"SELECT {record_id(id_field, 'r')} FROM {table} r WHERE r.deployment = $deployment"
    return (
        f"SELECT rid FROM {state.rows} WHERE deployment = $deployment UNION ALL SELECT "
        f"{RECORD_KEY.format(r='r')} FROM {table} r WHERE r.seq > $seq AND "
        "r.deployment = $deployment"
    )


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


def label_counts(
    reader: duckdb.DuckDBPyConnection, deployment: str, monitor: str, table: str | None
) -> dict[str, int]:
    """``FeedbackStore.counts`` in the transaction of ``reader``."""
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
