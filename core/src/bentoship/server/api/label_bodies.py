"""The labels of a ``POST …/feedback`` body (a Parquet file, a JSON array or JSON lines) as a
:class:`~..observe.feedback.LabelBatch`: a DuckDB query over the file that reads and checks
every row in one pass, run as the writer stores the labels.

Keys besides id, label and time are ignored. A row the SQL cannot settle (a wrong one, or a
rare form such as a number past 64 bits or a string label outside printable ASCII) or an id
sent twice makes the store refuse the batch unstored; it is then read again with care
(:func:`settle`): the flagged rows go through the check of one label in Python
(:func:`~..observe.feedback.check_label`), so a bad row gets the same one-line error either
way, a string's stored text is Python's ``json.dumps`` of it, and the last label of an id wins.
A JSON body DuckDB cannot read is read by Python's ``json``, whose error names the line.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Invalid
from ..observe.label_batches import (
    MAX_ID_CHARACTERS,
    MAX_LABEL_CHARACTERS,
    MAX_LABELS,
    REQUEST_ID,
    LabelBatch,
    batch_of,
    check_label,
    finish_batch,
    labels_from,
)
from .common import MAX_JSON_DEPTH, json_depth

if TYPE_CHECKING:
    import duckdb

__all__ = ["json_items", "read_label_file", "read_labels", "settle"]

INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
FLOATS = {"FLOAT", "DOUBLE"}
SIMPLE_TEXT = (
    "strlen(value) = length(value) AND NOT contains(value, chr(127)) AND "
    "to_json(value)::VARCHAR = '\"' || value || '\"'"
)
"""SQL: the string ``value`` is printable ASCII but ``"`` and ``\\``, which ``json.dumps``
writes as it is, quoted (ASCII, no DEL, and nothing JSON escapes; a regular expression
took six times as long)."""
FIRST_CHARACTER = re.compile(rb"\s*(\S)")
JSON_COLUMNS = "{'id': 'JSON', 'label': 'JSON', 'time': 'JSON'}"
EMPTY = "body: send labels as a JSON array, JSON lines or a Parquet file"


def _connect(folder: Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    spill = tempfile.mkdtemp(prefix="spill-", dir=folder)
    return duckdb.connect(config={"threads": 2, "memory_limit": "256MB", "temp_directory": spill})


def read_labels(raw: bytes, parquet: bool, id_field: str) -> LabelBatch:
    """The labels of a body, to be stored; Invalid (one line, naming the field) for a body that
    is not labels."""
    folder = Path(tempfile.mkdtemp(prefix="bentoship-feedback-"))
    path = folder / ("labels.parquet" if parquet else "labels.json")
    try:
        path.write_bytes(raw)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return read_label_file(path, parquet, id_field, carriage_returns=b"\r" in raw)


def read_label_file(
    path: Path,
    parquet: bool,
    id_field: str,
    *,
    carriage_returns: bool,
    reader: Callable[[], duckdb.DuckDBPyConnection] | None = None,
) -> LabelBatch:
    """The labels of a body written to ``path`` (alone in its folder, removed with the batch);
    ``carriage_returns``: the body has some; ``reader``: a cursor of the store's database,
    which may read the file: the batch's query then runs in the store's connection, and the
    batch needs no connection of its own (a new one costs 15 ms)."""
    folder = path.parent
    connection = reader() if reader is not None else _connect(folder)
    owned = reader is None
    batch: LabelBatch | None = None
    try:
        if parquet:
            query = _parquet_query(connection, path, id_field)
        else:
            with path.open("rb") as handle:
                start = FIRST_CHARACTER.match(handle.read(4096))
            if start is None:
                raise Invalid(EMPTY)
            if carriage_returns:
                raw = path.read_bytes()
                if raw.count(b"\r") != raw.count(b"\r\n"):  # lines DuckDB joins
                    batch = _by_python(raw, id_field)
                    batch.folder = folder
                    return batch
            form = "array" if start.group(1) == b"[" else "newline_delimited"
            query = _json_query(form, id_field)
        batch = LabelBatch(
            connection if owned else None,
            "SELECT key64, key128, id, label, label_time, flagged OR encode AS flagged "
            f"FROM ({query})",
            {"path": str(path)},
            settle=functools.partial(settle, parquet, id_field, path),
            folder=folder,
        )
        return batch
    except BaseException:
        if owned:
            connection.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if owned and batch is not None and batch.connection is not connection:
            connection.close()


def settle(parquet: bool, id_field: str, path: Path) -> LabelBatch:
    """The labels of a body read with care: every row checked (in Python where SQL could not),
    the last label of each id; Invalid for the first bad one."""
    connection = _connect(path.parent)
    try:
        if parquet:
            batch = _settle_parquet(connection, path, id_field)
        else:
            batch = _settle_json(connection, path, path.read_bytes(), id_field)
    except BaseException:
        connection.close()
        raise
    if batch.connection is not connection:
        connection.close()
    return batch


def json_items(raw: bytes) -> list[Any]:
    """A JSON array of labels, or JSON lines (one label per line), decoded by Python."""
    text = raw.strip()
    if not text:
        raise Invalid(EMPTY)
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Invalid(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if text.startswith(b"["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise Invalid(f"body: not a JSON array ({exc})") from None
        return list(items)
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError:
            raise Invalid(
                f"body: line {number} is not JSON; send one label object per line"
            ) from None
    return items


def _by_python(raw: bytes, id_field: str) -> LabelBatch:
    return batch_of(labels_from(json_items(raw), id_field), id_field)


def _id_sql(id_field: str) -> tuple[str, str, str]:
    """SQL of a label's ``key64`` (a request id below 2**64), ``key128`` (a larger one, in
    decimal) and ``id`` (any other id), from ``id_text`` (the id if a string) and
    ``id_number`` (the digits of an integer id), ``id_decimal`` and ``number_decimal`` (those
    read as UBIGINT): ``key64`` and ``id``, then ``key128``; and whether they settle the id."""
    if id_field != REQUEST_ID:
        ident = "CASE WHEN id_text IS NOT NULL THEN id_text ELSE id_number END"
        settled = f"length(id) BETWEEN 1 AND {MAX_ID_CHARACTERS}"
        return f"NULL::UBIGINT AS key64, {ident} AS id", "NULL::VARCHAR AS key128", settled
    key64 = (
        "CASE WHEN id_text IS NOT NULL THEN CASE WHEN starts_with(id_text, '0x') THEN CASE WHEN "
        "length(id_text) <= 18 AND regexp_full_match(id_text, '0x[0-9a-fA-F]{1,16}') THEN "
        "id_text::UBIGINT END WHEN strlen(id_text) = 16 THEN CASE WHEN regexp_full_match("
        "id_text, '[0-9a-fA-F]{16}') THEN ('0x' || id_text)::UBIGINT END WHEN "
        "id_decimal::VARCHAR = id_text THEN id_decimal END "
        "WHEN number_decimal::VARCHAR = id_number THEN number_decimal END"
    )
    key128 = (  # rare: past 64 bits, or a decimal with leading zeros
        "CASE WHEN key64 IS NULL THEN CASE WHEN id_text IS NOT NULL THEN CASE WHEN "
        "starts_with(id_text, '0x') THEN CASE WHEN regexp_full_match(id_text, "
        "'0x[0-9a-fA-F]{1,32}') THEN id_text::UHUGEINT::VARCHAR END WHEN strlen(id_text) = 16 "
        "THEN NULL WHEN regexp_full_match(id_text, '[0-9]{1,39}') THEN "
        "TRY_CAST(id_text AS UHUGEINT)::VARCHAR END WHEN regexp_full_match(id_number, '[0-9]+') "
        "THEN TRY_CAST(id_number AS UHUGEINT)::VARCHAR END END"
    )
    settled = "key64 IS NOT NULL OR key128 IS NOT NULL"
    return f"{key64} AS key64, NULL::VARCHAR AS id", f"{key128} AS key128", settled


def _checked_sql(
    source: str, id_field: str, label: str, string: str, bad_time: str, is_string: str
) -> str:
    """SQL of checked labels (``key64``, ``key128``, ``id``, ``label``, ``label_time``,
    ``string``, ``encode``: its text is Python's to write, ``flagged``: to check in Python)
    from ``source`` (``id_text``, ``id_number``, ``label_time`` and what ``label``,
    ``string``, ``bad_time`` and ``is_string``: the label is a string, read)."""
    ids, large, settled = _id_sql(id_field)
    return (
        "SELECT key64, key128, id, label, label_time, string, encode, coalesce(NOT "
        f"coalesce({settled}, false) OR (label IS NULL AND NOT encode) OR strlen(label) > "
        f"{MAX_LABEL_CHARACTERS} OR {bad_time}, true) AS flagged FROM (SELECT *, {large}, "
        f"coalesce(label IS NULL AND {is_string}, false) AS encode FROM (SELECT *, {ids}, "
        f"{label} AS label, {string} AS string FROM (SELECT *, TRY_CAST(id_text AS UBIGINT) "
        f"AS id_decimal, TRY_CAST(id_number AS UBIGINT) AS number_decimal FROM ({source}))))"
    )


def _json_query(form: str, id_field: str) -> str:
    """SQL of the labels of a JSON file (``$path``): as :func:`_checked_sql`."""
    label = (
        "CASE WHEN label_string THEN CASE WHEN NOT contains(label_json, '\\') AND "
        "strlen(label_json) = length(label_json) AND NOT contains(label_json, chr(127)) "
        "THEN label_json END WHEN label_json IN ('true', 'false') THEN label_json "
        "WHEN regexp_full_match(label_json, '-?[0-9]+') THEN label_json "
        "WHEN isfinite(TRY_CAST(label_json AS DOUBLE)) "
        "THEN TRY_CAST(label_json AS DOUBLE)::VARCHAR END"
    )
    string = "CASE WHEN label_string THEN json_extract_string(label_json, '$') END"
    source = (
        "SELECT CASE WHEN starts_with(id_json, '\"') THEN json_extract_string(id_json, '$') "
        "END AS id_text, CASE WHEN NOT starts_with(id_json, '\"') AND regexp_full_match("
        "id_json, '-?[0-9]+') THEN id_json END AS id_number, label_json, "
        "starts_with(label_json, '\"') AS label_string, time_json, "
        "TRY_CAST(time_json AS DOUBLE) AS label_time FROM (SELECT id::VARCHAR AS id_json, "
        "label::VARCHAR AS label_json, time::VARCHAR AS time_json FROM "
        f"read_json($path, format='{form}', columns={JSON_COLUMNS}))"
    )
    bad_time = "(time_json IS NOT NULL AND NOT coalesce(isfinite(label_time), false))"
    return _checked_sql(source, id_field, label, string, bad_time, "label_string")


def _parquet_types(connection: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    import duckdb

    try:
        described = connection.execute(
            "DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(path)}
        ).fetchall()
    except duckdb.Error as exc:
        raise Invalid(f"body: not a readable Parquet file ({_first_line(exc)})") from None
    types = {name: kind for name, kind, *_ in described}
    missing = [c for c in ("id", "label") if c not in types]
    if missing:
        raise Invalid(f"body: the Parquet file has no {missing[0]!r} column")
    return types


def _parquet_query(connection: duckdb.DuckDBPyConnection, path: Path, id_field: str) -> str:
    """SQL of the labels of a Parquet file (``$path``), by its columns' types: as
    :func:`_checked_sql`."""
    types = _parquet_types(connection, path)
    id_type, label_type, time_type = types["id"], types["label"], types.get("time")
    id_text = "id" if id_type == "VARCHAR" else "NULL::VARCHAR"
    id_number = "id::VARCHAR" if id_type in INTEGERS else "NULL::VARCHAR"
    string = "value" if label_type == "VARCHAR" else "NULL::VARCHAR"
    if label_type == "VARCHAR":
        label = f"CASE WHEN {SIMPLE_TEXT} THEN '\"' || value || '\"' END"
    elif label_type == "BOOLEAN":
        label = "CASE WHEN value THEN 'true' WHEN NOT value THEN 'false' END"
    elif label_type in INTEGERS:
        label = "value::VARCHAR"
    elif label_type in FLOATS:
        label = (
            "CASE WHEN isnan(value::DOUBLE) THEN NULL WHEN isinf(value::DOUBLE) THEN "
            "CASE WHEN value > 0 THEN 'Infinity' ELSE '-Infinity' END "
            "ELSE value::DOUBLE::VARCHAR END"
        )
    else:
        label = "NULL::VARCHAR"
    if time_type is None:
        label_time, bad_time = "NULL::DOUBLE", "false"
    elif time_type in INTEGERS or time_type in FLOATS:
        label_time, bad_time = "time::DOUBLE", "coalesce(isnan(label_time), false)"
    else:
        label_time, bad_time = "NULL::DOUBLE", "time IS NOT NULL"
    time = "time" if time_type is not None else "NULL AS time"
    source = (
        f"SELECT {id_text} AS id_text, {id_number} AS id_number, label AS value, {time}, "
        f"{label_time} "
        "AS label_time FROM read_parquet($path)"
    )
    return _checked_sql(source, id_field, label, string, bad_time, f"{string} IS NOT NULL")


def _settle_json(
    connection: duckdb.DuckDBPyConnection, path: Path, raw: bytes, id_field: str
) -> LabelBatch:
    import duckdb

    start = FIRST_CHARACTER.match(raw)
    if start is None:
        raise Invalid(EMPTY)
    form = "array" if start.group(1) == b"[" else "newline_delimited"
    objects = f"read_json_objects($path, format='{form}')"
    try:
        connection.execute(
            f"CREATE TABLE checked AS {_json_query(form, id_field)}", {"path": str(path)}
        ).fetchall()
        [(count,)] = connection.execute("SELECT count(*) FROM checked").fetchall()
        connection.execute(
            f"CREATE TABLE objects AS SELECT json FROM {objects}", {"path": str(path)}
        ).fetchall()
        [(lines,)] = connection.execute("SELECT count(*) FROM objects").fetchall()
    except duckdb.Error:
        return _by_python(raw, id_field)
    if lines != count:
        return _by_python(raw, id_field)
    if count > MAX_LABELS:
        raise Invalid(f"labels: at most {MAX_LABELS:,} in one request; send them in batches")
    _encode(connection)
    positions = _flagged(connection)
    if positions:
        if json_depth(raw.strip()) > MAX_JSON_DEPTH:
            raise Invalid(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        found = connection.execute(
            "SELECT rowid, json FROM objects WHERE list_contains($1, rowid) ORDER BY rowid",
            [positions],
        ).fetchall()
        try:
            items = [(position, json.loads(text)) for position, text in found]
        except ValueError:
            return _by_python(raw, id_field)
        _check_rows(connection, items, id_field, "")
    return finish_batch(connection, count)


def _settle_parquet(connection: duckdb.DuckDBPyConnection, path: Path, id_field: str) -> LabelBatch:
    import duckdb

    query = _parquet_query(connection, path, id_field)
    try:
        connection.execute(f"CREATE TABLE checked AS {query}", {"path": str(path)}).fetchall()
        [(count,)] = connection.execute("SELECT count(*) FROM checked").fetchall()
    except duckdb.Error as exc:
        raise Invalid(f"body: not a readable Parquet file ({_first_line(exc)})") from None
    if count > MAX_LABELS:
        raise Invalid(f"labels: at most {MAX_LABELS:,} in one request; send them in batches")
    _encode(connection)
    flagged = _flagged(connection)
    if flagged:
        time_type = _parquet_types(connection, path).get("time")
        wanted = ["id", "label", *(["time"] if time_type is not None else [])]
        rows = connection.execute(
            f"SELECT file_row_number, {', '.join(wanted)} FROM read_parquet($path, "
            "file_row_number = true) WHERE list_contains($positions, file_row_number) "
            "ORDER BY file_row_number",
            {"path": str(path), "positions": flagged},
        ).fetchall()
        items = [(row[0], dict(zip(wanted, row[1:], strict=True))) for row in rows]
        hint = ""
        if time_type is not None and time_type not in INTEGERS | FLOATS:
            hint = (
                f", not {time_type} (write the Parquet column 'time' as numbers: seconds "
                "since the epoch)"
            )
        _check_rows(connection, items, id_field, hint)
    return finish_batch(connection, count)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120]


def _encode(connection: duckdb.DuckDBPyConnection) -> None:
    """The stored text of each string label SQL did not write (``encode``): ``json.dumps``,
    once per distinct string."""
    strings = [
        s
        for (s,) in connection.execute(
            "SELECT DISTINCT string FROM checked WHERE encode"
        ).fetchall()
    ]
    if not strings:
        return
    connection.execute(
        "UPDATE checked SET label = e.text, encode = false, flagged = checked.flagged OR "
        f"length(e.text) > {MAX_LABEL_CHARACTERS} FROM (SELECT unnest($1) AS string, "
        "unnest($2) AS text) e WHERE checked.encode AND checked.string = e.string",
        [strings, [json.dumps(s) for s in strings]],
    ).fetchall()


def _flagged(connection: duckdb.DuckDBPyConnection) -> list[int]:
    return [
        int(position)
        for (position,) in connection.execute(
            "SELECT rowid FROM checked WHERE flagged ORDER BY rowid"
        ).fetchall()
    ]


def _check_rows(
    connection: duckdb.DuckDBPyConnection,
    items: list[tuple[int, Any]],
    id_field: str,
    time_hint: str,
) -> None:
    """Check the rows SQL flagged in Python, in order: the first bad one raises; the others
    (valid, in a form SQL leaves to Python) get the values Python gives them."""
    settled = []
    for position, item in items:
        try:
            settled.append((position, check_label(item, position, id_field)))
        except Invalid as exc:
            if time_hint and str(exc).startswith(f"labels[{position}].time:"):
                raise Invalid(f"{exc}{time_hint}") from None
            raise
    if not settled:
        return
    request = id_field == REQUEST_ID
    connection.execute(
        f"UPDATE checked SET key64 = s.key64, key128 = CASE WHEN {request} AND s.key64 IS NULL "
        "THEN s.number END, id = s.id, label = s.label, label_time = s.t, flagged = false "
        "FROM (SELECT unnest($1) AS position, unnest($2) AS number, "
        f"{'TRY_CAST(unnest($2) AS UBIGINT)' if request else 'NULL::UBIGINT'} AS key64, "
        f"{'NULL' if request else 'unnest($2)'}::VARCHAR AS id, unnest($3) AS label, "
        "unnest($4) AS t) s WHERE checked.rowid = s.position",
        [
            [position for position, _ in settled],
            [label.id for _, label in settled],
            [label.label for _, label in settled],
            [label.time for _, label in settled],
        ],
    ).fetchall()
