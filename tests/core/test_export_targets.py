"""Export targets keep their watermark with the records: Parquet, DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from bentoship.errors import ConfigError
from bentoship.export.targets import DuckDBTarget, ParquetTarget, SqlTarget, Target, target_for

SOURCE = "http://127.0.0.1:1/deployments/web/monitoring/calls"
FIRST = [
    {"seq": 1, "deployment": "web", "revision": "r1", "x": 0.5, "label": "a", "ok": True},
    {"seq": 2, "deployment": "web", "revision": "r1", "x": 1.5, "label": "b", "ok": False},
]
SECOND = [
    {
        "seq": 5,
        "deployment": "web",
        "revision": "r2",
        "x": 2.5,
        "label": None,
        "ok": True,
        "score": 7,
        "extra": {"nested": [1, 2]},
    },
]


def exported(target: Target) -> None:
    assert target.watermark(SOURCE) == 0
    target.write(SOURCE, FIRST, 2)
    assert target.watermark(SOURCE) == 2
    target.write(SOURCE, SECOND, 5)
    assert target.watermark(SOURCE) == 5
    assert target.watermark("another source") == 0


def rows(query: str, connect: Any) -> list[tuple[Any, ...]]:
    with connect() as db:
        return [tuple(r) for r in db.execute(query).fetchall()]


def test_a_parquet_folder_names_its_parts_by_seq(tmp_path: Path) -> None:
    folder = tmp_path / "calls"
    target = target_for(folder, "ignored")
    assert isinstance(target, ParquetTarget)
    exported(target)
    names = sorted(p.name for p in folder.iterdir())
    assert [n.split("-", 2)[2] for n in names] == [
        "0000000000000000-0000000000000002.parquet",
        "0000000000000002-0000000000000005.parquet",
    ]
    found = rows(
        f"SELECT seq, x, label FROM read_parquet('{folder}/*.parquet', union_by_name=true) "
        "ORDER BY seq",
        duckdb.connect,
    )
    assert found == [(1, 0.5, "a"), (2, 1.5, "b"), (5, 2.5, None)]


def test_a_duckdb_file_gains_new_fields_as_columns(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    target = target_for(path, "calls")
    assert isinstance(target, DuckDBTarget)
    exported(target)
    found = rows(
        "SELECT seq, x, label, ok, score FROM calls ORDER BY seq",
        lambda: duckdb.connect(str(path)),
    )
    assert found == [(1, 0.5, "a", True, None), (2, 1.5, "b", False, None), (5, 2.5, None, True, 7)]


@pytest.mark.slow
def test_postgresql_rows_and_watermark_commit_together(postgres: str) -> None:
    import sqlalchemy as sa

    target = target_for(postgres, "calls")
    assert isinstance(target, SqlTarget)
    exported(target)
    engine = sa.create_engine(postgres)
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT seq, x, label, ok, score, extra FROM calls ORDER BY seq")
        ).fetchall()
        assert [tuple(r) for r in found] == [
            (1, 0.5, "a", True, None, None),
            (2, 1.5, "b", False, None, None),
            (5, 2.5, None, True, 7, '{"nested": [1, 2]}'),
        ]
    # the same records again (a retried task that lost its answer): the primary key refuses
    # them, and neither the rows nor the watermark change
    with pytest.raises(ConfigError, match="duplicate key"):
        target.write(SOURCE, SECOND, 9)
    assert target.watermark(SOURCE) == 5
    engine.dispose()


def test_a_bad_url_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match="install the database's dialect"):
        target_for("nosuchdb://host/db", "calls")
