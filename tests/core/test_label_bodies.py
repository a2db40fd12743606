"""The labels of a feedback body read and checked by DuckDB give what Python's check of each
label gives (the same stored text and ids, the same one-line errors), without a process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bentoship.server.api.label_bodies import json_items, read_labels
from bentoship.server.errors import Invalid
from bentoship.server.observe.feedback import REQUEST_ID, FeedbackStore, Unsettled, labels_from

REQUEST = "14470082283252440636"


def stored(
    raw: bytes, parquet: bool = False, id_field: str = REQUEST_ID, *, careful: bool | None = None
) -> list[Any]:
    """What a store keeps of a body: its labels read in one pass, or (refused as Unsettled)
    read again with care, as the route does."""
    cursor = duckdb.connect()
    store = FeedbackStore(cursor, lambda: cursor)
    batch = read_labels(raw, parquet, id_field)
    took_care = False
    try:
        store.add("web", "scores", None, batch, id_field=id_field)
    except Unsettled:
        took_care = True
        batch = batch.settled()
        store.add("web", "scores", None, batch, id_field=id_field)
    finally:
        batch.close()
    if careful is not None:
        assert took_care is careful
    return sorted(
        cursor.execute(
            "SELECT key, id, label, json_extract_string(label, '$'), label_time "
            "FROM feedback_labels"
        ).fetchall(),
        key=repr,
    )


def refusal(raw: bytes, parquet: bool = False, id_field: str = REQUEST_ID) -> str:
    """The one-line error of a body a store refuses; nothing stored."""
    cursor = duckdb.connect()
    store = FeedbackStore(cursor, lambda: cursor)
    with pytest.raises(Invalid) as refused:
        stored_rows(store, raw, parquet, id_field)
    [(count,)] = cursor.execute("SELECT count(*) FROM feedback_labels").fetchall()
    assert count == 0 and "\n" not in str(refused.value)
    return str(refused.value)


def stored_rows(store: FeedbackStore, raw: bytes, parquet: bool, id_field: str) -> None:
    batch = read_labels(raw, parquet, id_field)
    try:
        store.add("web", "scores", None, batch, id_field=id_field)
    except Unsettled:
        batch = batch.settled()
        store.add("web", "scores", None, batch, id_field=id_field)
    finally:
        batch.close()


def by_python(items: list[Any], id_field: str = REQUEST_ID) -> list[Any]:
    """What the labels are as Python checks them one by one: the last of each id."""
    last = {label.id: label for label in labels_from(items, id_field)}
    rows = []
    for label in last.values():
        key = int(label.id) if id_field == REQUEST_ID else None
        actual = duckdb.execute("SELECT json_extract_string(?, '$')", [label.label]).fetchone()
        ident = None if id_field == REQUEST_ID else label.id
        rows.append((key, ident, label.label, actual[0] if actual else None, label.time))
    return sorted(rows, key=repr)


def lines(items: list[Any]) -> bytes:
    return "\n".join(json.dumps(item) for item in items).encode()


def parquet_of(sql: str, tmp_path: Path) -> bytes:
    path = tmp_path / "labels.parquet"
    with duckdb.connect() as db:
        db.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


PLAIN = [
    {"id": REQUEST, "label": "odd", "time": 1765000000.5},
    {"id": "c8d0a4b5e1f2a3b4", "label": "even"},  # the response header's hex
    {"id": "0x1f", "label": 1},
    {"id": 12, "label": 1.5e16, "time": 17},
    {"id": "0001234567890123", "label": True},  # 16 digits: hex, as label_id reads it
    {"id": "7", "label": -0.0, "time": None},
]
"""Labels the SQL settles alone."""
VALID = [
    *PLAIN,
    {"id": "0042", "label": 'na\u00efve "quoted" \\ \x7f'},  # json.dumps escapes these
    {"id": 2**127, "label": 123456789012345678901234567890},
    {"id": REQUEST, "label": "corrected"},  # the last of an id wins
]
"""With labels that need the careful reading."""


@pytest.mark.parametrize("form", ["lines", "array"])
def test_json_labels_are_stored_as_python_checks_them(form: str) -> None:
    def body(items: list[Any]) -> bytes:
        return lines(items) if form == "lines" else json.dumps(items).encode()

    assert stored(body(PLAIN), careful=False) == by_python(PLAIN)
    assert stored(body(VALID), careful=True) == by_python(VALID)
    other = [{**item, "id": str(item["id"])} for item in VALID]
    assert stored(body(other), id_field="inference_id") == by_python(other, "inference_id")
    extra = [*PLAIN, {"id": 5, "label": "a", "extra": None}]  # other keys are ignored
    assert stored(body(extra), careful=False) == by_python([*PLAIN, {"id": 5, "label": "a"}])
    misspelt = [*PLAIN, {"id": 5, "lable": "a"}]
    assert refusal(body(misspelt)) == "labels[6].label: missing"


@pytest.mark.parametrize(
    ("items", "error"),
    [
        (
            [{"id": REQUEST, "label": "a"}, {"id": "zz", "label": "a"}],
            r"labels\[1\]\.id: a request",
        ),
        ([{"id": 1, "label": [1]}], r"labels\[0\]\.label: send a string, a number or a bool, not"),
        ([{"id": 1, "label": None}], r"labels\[0\]\.label: send a string.*not null"),
        ([{"id": 1}], r"labels\[0\]\.label: missing"),
        ([{"id": 1, "label": "a", "time": "now"}], r"labels\[0\]\.time: send epoch seconds"),
        ([{"id": 1, "label": "a", "time": 10**400}], r"labels\[0\]\.time: send epoch seconds"),
        ([{"id": -1, "label": "a"}], r"labels\[0\]\.id: a request id is a non-negative"),
        ([{"id": str(2**128), "label": "a"}], r"labels\[0\]\.id: a request id is a non-negative"),
        ([{"id": 1.5, "label": "a"}], r"labels\[0\]\.id: send a string or an integer, not float"),
        ([{"id": 1, "label": "x" * 5000}], r"labels\[0\]\.label: at most 4096 characters"),
        ([5], r"labels\[0\]: send an object"),
    ],
)
def test_a_bad_label_gets_the_error_python_gives_it(items: list[Any], error: str) -> None:
    for raw in (lines(items), json.dumps(items).encode()):
        refused = refusal(raw)
        assert re.match(error, refused)
        with pytest.raises(Invalid) as expected:
            labels_from(json_items(raw))
        assert refused == str(expected.value)


def test_bodies_that_are_not_label_json_say_so() -> None:
    for raw, error in (
        (b"", r"body: send labels as a JSON array, JSON lines or a Parquet file"),
        (b'{"id": 1, "label": "a"}\nnot json', r"body: line 2 is not JSON"),
        (b'[{"id": 1, "label": "a"}', r"body: not a JSON array"),
        (b"[" * 40 + b"]" * 40, r"body: JSON nested deeper than 32 levels"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, r"body: JSON nested deeper than 32 levels"),
    ):
        assert re.match(error, refusal(raw))


def test_parquet_labels_are_checked_by_column_type(tmp_path: Path) -> None:
    raw = parquet_of(
        f"SELECT * FROM (VALUES ('{REQUEST}', 'a', 1.5::DOUBLE), ('0x1f', 'b\u00e9', NULL), "
        f"('{REQUEST}', 'c', 2.0)) t(id, label, time)",
        tmp_path,
    )
    expected = [{"id": REQUEST, "label": "c", "time": 2.0}, {"id": "0x1f", "label": "b\u00e9"}]
    assert stored(raw, parquet=True, careful=True) == by_python(expected)
    numbers = parquet_of(
        "SELECT 31::UBIGINT AS id, 0.1::FLOAT AS label, 17::BIGINT AS time", tmp_path
    )
    assert stored(numbers, parquet=True, careful=False) == by_python(
        [
            {
                "id": 31,
                "label": float(duckdb.execute("SELECT 0.1::FLOAT").fetchall()[0][0]),
                "time": 17,
            }
        ]
    )
    for sql, error in (
        ("SELECT '1' AS id, 'a' AS label, TIMESTAMP '2025-12-07' AS time", r"labels\[0\]\.time: "
         r"send epoch seconds, such as 1765000000\.5, not TIMESTAMP \(write the Parquet column"),
        ("SELECT '1' AS id, 1.5::DECIMAL(4, 2) AS label", r"labels\[0\]\.label: send a string, "
         "a number or a bool, not Decimal"),
        ("SELECT 'nope' AS id, 'a' AS label", r"labels\[0\]\.id: a request id is decimal"),
        ("SELECT 'nan'::DOUBLE AS label, '1' AS id", r"labels\[0\]\.label: NaN is not a label"),
        ("SELECT '1' AS identifier, 'a' AS label", r"body: the Parquet file has no 'id' column"),
    ):  # fmt: skip
        assert re.match(error, refusal(parquet_of(sql, tmp_path), parquet=True))
    assert refusal(b"PAR1 not parquet at all", parquet=True).startswith(
        "body: not a readable Parquet file ("
    )
