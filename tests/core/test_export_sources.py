"""export_monitoring from a source of one's own (a Parquet folder, a SQL query), as for
BentoCloud, which keeps no monitoring data: incremental, no duplicate (no process)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import pytest

from bentoship.drift import SqlQuery
from bentoship.errors import ConfigError
from bentoship.steps import export_monitoring


def parquet_part(folder: Path, ids: range) -> None:
    folder.mkdir(exist_ok=True)
    with duckdb.connect() as db:
        db.execute(
            f"COPY (SELECT i AS event_id, i * 0.5 AS x FROM range({ids.start}, {ids.stop}) t(i)) "
            f"TO '{folder / f'part-{ids.start}.parquet'}' (FORMAT parquet)"
        )


def test_a_parquet_folder_is_exported_once_as_it_grows(tmp_path: Path) -> None:
    source, target = tmp_path / "collected", tmp_path / "warehouse.duckdb"
    parquet_part(source, range(1, 6))

    def export() -> tuple[int, int]:
        done = export_monitoring("web", "calls", target, source=source, watermark_column="event_id")
        return done.count, done.watermark

    assert export() == (5, 5)
    assert export() == (0, 5)
    parquet_part(source, range(6, 8))
    assert export() == (2, 7)
    with duckdb.connect(str(target)) as db:
        ids = [r[0] for r in db.execute("SELECT event_id FROM monitor_calls").fetchall()]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6, 7]


def test_a_sql_query_is_exported_once_as_it_grows(tmp_path: Path) -> None:
    database, target = tmp_path / "collector.db", tmp_path / "parquet"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE events (id INTEGER, x REAL, label TEXT)")
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, i / 2, "a") for i in (1, 2, 3)])
    query = SqlQuery(f"sqlite:///{database}", "SELECT id, x, label FROM events")

    def export() -> int:
        return export_monitoring("web", "calls", target, source=query, watermark_column="id").count

    assert export() == 3
    with sqlite3.connect(database) as db:
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(4, 2.0, "b"), (5, 2.5, "b")])
    as_text = json.dumps({"url": query.url, "query": query.query})
    again = export_monitoring("web", "calls", target, source=as_text, watermark_column="id")
    assert (again.count, export()) == (2, 0)
    with duckdb.connect() as db:
        ids = db.execute(f"SELECT id FROM '{target}/*.parquet' ORDER BY id").fetchall()
    assert ids == [(1,), (2,), (3,), (4,), (5,)]


def test_a_source_that_cannot_be_exported_says_why(tmp_path: Path) -> None:
    database = tmp_path / "collector.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE events (id TEXT)")
        db.execute("INSERT INTO events VALUES ('first')")
    query = SqlQuery(f"sqlite:///{database}", "SELECT id FROM events")
    with pytest.raises(ConfigError, match="watermark column 'id' must hold whole numbers"):
        export_monitoring("web", "calls", tmp_path / "out", source=query, watermark_column="id")
    with pytest.raises(ConfigError, match="does not exist; give a Parquet path"):
        export_monitoring("web", "calls", tmp_path / "out", source=tmp_path / "missing")
    with pytest.raises(ConfigError, match="a deployment's own records need no source"):
        export_monitoring(
            "web", "calls", tmp_path / "out", source='{"deployment": "web", "monitor": "calls"}'
        )
    with pytest.raises(ConfigError, match=r"is not valid JSON .* give a Parquet path"):
        export_monitoring("web", "calls", tmp_path / "out", source='{"url": ')
    broken = SqlQuery(f"sqlite:///{database}", "SELECT nope FROM events")
    with pytest.raises(ConfigError, match="export source query failed"):
        export_monitoring("web", "calls", tmp_path / "out", source=broken)
