"""Labels that arrive after the prediction (ground truth), kept beside the monitor records, and
each monitor's predictions joined to them.

A label belongs to one monitor of one deployment and names its prediction by an id: the
record's ``request_id`` (stored in decimal, as bentoml writes it; a hex id as in the
``X-BentoML-Request-ID`` header is the same number), or the value of a field of the record
(``id_field``) for services that log their own inference id. Labels are stored once per id:
the same label again is a duplicate and changes nothing, another label replaces it and is
counted as a correction. A label whose prediction is not stored yet waits (pending) and joins
once the prediction arrives; one still unjoined after the join window is forgotten.

Labels come in as batches (:mod:`.label_batches`); the quality figures read the prediction
index (:mod:`.prediction_index`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Invalid

if TYPE_CHECKING:
    import duckdb
from .label_batches import (
    JOIN_WINDOW,
    MAX_INDEXED_FIELDS,
    MAX_LABELS,
    RECORD_KEY,
    RECORD_TIME,
    REQUEST_ID,
    REQUEST_LABELS,
    SCHEMA,
    Label,
    LabelBatch,
    Received,
    Unsettled,
    _first,
    _ident,
    batch_of,
    check_field,
    check_label,
    label_id,
    labels_from,
    migrate_old_labels,
    read_as_decimal,
    record_id,
)
from .prediction_index import (
    IndexState,
    _index_matches,
    _last_batch,
    _set_id,
    index_state,
    joined_sql,
    known_sql,
    label_counts,
)

THIS_BATCH = "set_id = $set AND batch = $batch"
"""The labels of the batch being stored (flagged or to be replaced until it is done)."""

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


class FeedbackStore:
    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        *,
        join_window: float = JOIN_WINDOW,
        uploads: Path | None = None,
    ) -> None:
        """``uploads``: a folder whose files ``cursor`` may read (labels sent are saved there)."""
        self.cursor = cursor
        self.reader = reader
        self.join_window = join_window
        self.uploads = uploads
        self._built = False
        cursor.execute(SCHEMA)
        migrate_old_labels(cursor)

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
        cursor.execute("BEGIN TRANSACTION")
        try:
            set_id = self._set(deployment, monitor, id_field)
            number = _last_batch(cursor) + 1
            params = {"set": set_id, "batch": number}
            self._take(batch, deployment, monitor, table, id_field, params)
            row = _first(
                cursor.execute(
                    f"SELECT count(*), count(DISTINCT {_ident(id_field)}), count(*) FILTER "
                    "(WHERE label IS NULL), count(*) FILTER (WHERE corrections < 0), "
                    f"count(*) FILTER (WHERE pending) FROM feedback_labels WHERE {THIS_BATCH}",
                    params,
                ).fetchall()
            )
            assert row is not None
            count, distinct, flagged, known, pending = (int(n) for n in row)
            if count > MAX_LABELS:
                raise Invalid(
                    f"labels: at most {MAX_LABELS:,} in one request; send them in batches"
                )
            if flagged or distinct != count:
                raise Unsettled("a label to check, or an id twice")
            cursor.execute("INSERT INTO feedback_batches VALUES (?, ?)", [number, now])
            changed = self._replace(_ident(id_field), params) if known else 0
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
        new = count - known
        return Received(received, new, received - new - changed, changed, pending)

    def _replace(self, ident: str, params: dict[str, Any]) -> int:
        """Labels of the batch whose id has a label stored (``corrections`` -1) set on it where
        they differ (a correction each), then removed; how many differed."""
        row = _first(
            self.cursor.execute(
                "UPDATE feedback_labels l SET label = b.label, label_time = b.label_time, "
                "batch = $batch, corrections = l.corrections + 1 FROM feedback_labels b WHERE "
                f"b.set_id = $set AND b.batch = $batch AND b.corrections < 0 AND l.set_id = $set "
                f"AND l.batch <> $batch AND l.{ident} = b.{ident} AND l.label <> b.label",
                params,
            ).fetchall()
        )
        self.cursor.execute(
            f"DELETE FROM feedback_labels WHERE {THIS_BATCH} AND corrections < 0", params
        )
        return int(row[0]) if row else 0

    def _take(
        self,
        batch: LabelBatch,
        deployment: str,
        monitor: str,
        table: str | None,
        id_field: str,
        params: dict[str, Any],
    ) -> None:
        """The batch's labels inserted as labels of batch ``$batch`` of set ``$set``: one whose
        row SQL could not settle with no label, one whose id has a label stored with
        ``corrections`` -1, ``pending`` if its prediction is not stored."""
        import duckdb

        ident = _ident(id_field)
        state = None
        if table is not None and id_field == REQUEST_ID:
            state = self._refresh(monitor, table, (), create=False, labels=False)
        known = known_sql(state, table, id_field)
        query_params = {**params, **({"deployment": deployment} if table is not None else {})}
        if state is not None:
            query_params["seq"] = state.seq
        if id_field == REQUEST_ID and table is not None:
            self._read_pending_as_decimal(table, params["set"], deployment)
        stored = _first(
            self.cursor.execute(
                "SELECT count(*) FROM feedback_labels WHERE set_id = ?", [params["set"]]
            ).fetchall()
        )
        labels = (
            f"SELECT {ident} FROM feedback_labels WHERE set_id = $set"
            if stored and stored[0]
            else f"SELECT NULL::{'UHUGEINT' if ident == 'key' else 'VARCHAR'} AS {ident} "
            "WHERE $set IS NULL"
        )
        incoming = "feedback_incoming"
        try:
            if batch.local:
                incoming = f"({batch.query})"
                query_params.update(batch.params or {})
            else:
                self.cursor.register("feedback_incoming", batch.stream())
            self.cursor.execute(
                "INSERT INTO feedback_labels SELECT $set, b.key, b.id, CASE WHEN NOT b.flagged "
                "THEN b.label END, b.label_time, $batch, CASE WHEN b.stored THEN -1 ELSE 0 END, "
                f"NOT coalesce(b.{ident} IN (SELECT * FROM ({known}) k(v) WHERE v IS NOT NULL), "
                f"false) FROM (SELECT n.*, s.{ident} IS NOT NULL AS stored FROM (SELECT "
                "coalesce(key64::UHUGEINT, key128::UHUGEINT) AS key, id, label, label_time, "
                f"flagged FROM {incoming}) n LEFT JOIN ({labels}) s ON s.{ident} = n.{ident}) b",
                query_params,
            )
        except duckdb.Error as exc:
            if batch.settle is None:
                raise
            raise Unsettled(f"the batch could not be read in one pass ({exc})") from exc
        finally:
            with contextlib.suppress(duckdb.Error):
                self.cursor.unregister("feedback_incoming")
        if id_field == REQUEST_ID and table is not None:
            stored_label = (
                "CASE WHEN EXISTS (SELECT 1 FROM feedback_labels o WHERE o.set_id = $set AND "
                "o.batch <> $batch AND o.key = {alt}) THEN -1 ELSE 0 END"
            )
            read_as_decimal(
                self.cursor,
                "feedback_labels",
                f"{THIS_BATCH} AND pending",
                f"pending = false, corrections = {stored_label}",
                known,
                query_params,
            )

    def _read_pending_as_decimal(self, table: str, set_id: int, deployment: str) -> None:
        """Pending labels of the set whose 16-digit id names, read as decimal, a prediction
        stored since: that prediction's (:func:`read_as_decimal`)."""
        known = f"SELECT {RECORD_KEY.format(r='r')} FROM {table} r WHERE r.deployment = $d"
        read_as_decimal(
            self.cursor,
            "feedback_labels",
            "set_id = $set AND pending",
            "pending = false",
            known,
            {"set": set_id, "d": deployment},
        )

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
        if labels:
            for set_id, deployment in cursor.execute(
                "SELECT id, deployment FROM feedback_sets WHERE monitor = ? AND id_field = ?",
                [monitor, REQUEST_ID],
            ).fetchall():
                self._read_pending_as_decimal(table, set_id, deployment)
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
            found = label_counts(reader, deployment, monitor, table)
        except BaseException:
            reader.execute("ROLLBACK")
            raise
        reader.execute("COMMIT")
        return found

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
