"""Where monitoring records are exported: a Parquet folder, a DuckDB file, a SQLAlchemy URL.

Each target keeps the export's watermark (the highest ``seq`` written) with the records, in
the same transaction (or the same atomic rename), so an export that is retried, or run again,
writes no record twice and skips none.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError

__all__ = ["DuckDBTarget", "ParquetTarget", "SqlTarget", "Target", "target_for", "write_parquet"]

WATERMARKS = "bentoship_export_watermarks"
PART = re.compile(r"part-([0-9a-f]{8})-(\d{16})-(\d{16})\.parquet")


class Target(Protocol):
    def watermark(self, source: str) -> int: ...

    def write(self, source: str, records: Sequence[dict[str, Any]], watermark: int) -> None: ...


def target_for(target: str | Path, table: str) -> Target:
    """The target that ``target`` names: a URL with ``://`` (SQLAlchemy), a path ending in
    ``.duckdb`` or ``.db`` (DuckDB), else a folder of Parquet files."""
    text = str(target)
    if "://" in text:
        return SqlTarget(text, table)
    if text.endswith((".duckdb", ".db")):
        return DuckDBTarget(Path(text), table)
    return ParquetTarget(Path(text))


def _lines(records: Sequence[dict[str, Any]], folder: Path) -> Path:
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    return path


def write_parquet(records: Sequence[dict[str, Any]], path: Path) -> None:
    """``records`` as one Parquet file at ``path``, their columns and types read by DuckDB."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="bentoship-parquet-") as scratch:
        lines = _lines(records, Path(scratch))
        with duckdb.connect() as db:
            db.execute(
                f"COPY (SELECT * FROM read_json('{lines}', format='newline_delimited')) "
                f"TO '{path}' (FORMAT parquet)"
            )


def _digest(source: str) -> str:
    import hashlib

    return hashlib.sha256(source.encode()).hexdigest()[:8]


class ParquetTarget:
    """A folder of Parquet files, one per batch: ``part-<source digest>-<watermark before>-
    <watermark after>.parquet`` (written under a temporary name, then renamed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def watermark(self, source: str) -> int:
        if not self.folder.is_dir():
            return 0
        mine = _digest(source)
        lasts = [
            int(m.group(3))
            for p in self.folder.iterdir()
            if (m := PART.fullmatch(p.name)) and m.group(1) == mine
        ]
        return max(lasts, default=0)

    def write(self, source: str, records: Sequence[dict[str, Any]], watermark: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        after = self.watermark(source)
        final = self.folder / f"part-{_digest(source)}-{after:016d}-{watermark:016d}.parquet"
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".export-") as scratch:
            written = Path(scratch) / "part.parquet"
            write_parquet(records, written)
            os.replace(written, final)


class DuckDBTarget:
    """A table in a DuckDB file, and the watermarks table beside it."""

    def __init__(self, path: Path, table: str) -> None:
        self.path = path
        self.table = table

    def _connect(self) -> Any:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = duckdb.connect(str(self.path))
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {WATERMARKS} (source VARCHAR PRIMARY KEY, "
            "watermark BIGINT)"
        )
        return db

    def watermark(self, source: str) -> int:
        with self._connect() as db:
            found = db.execute(
                f"SELECT watermark FROM {WATERMARKS} WHERE source = ?", [source]
            ).fetchone()
        return int(found[0]) if found else 0

    def write(self, source: str, records: Sequence[dict[str, Any]], watermark: int) -> None:
        with tempfile.TemporaryDirectory(prefix="bentoship-export-") as scratch:
            lines = _lines(records, Path(scratch))
            selected = f"SELECT * FROM read_json('{lines}', format='newline_delimited')"
            with self._connect() as db:
                db.execute("BEGIN TRANSACTION")
                db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" AS {selected} LIMIT 0')
                have = {r[0] for r in db.execute(f'DESCRIBE "{self.table}"').fetchall()}
                for name, kind, *_ in db.execute(f"DESCRIBE {selected}").fetchall():
                    if name not in have:
                        db.execute(f'ALTER TABLE "{self.table}" ADD COLUMN "{name}" {kind}')
                db.execute(f'INSERT INTO "{self.table}" BY NAME {selected}')
                db.execute(
                    f"INSERT OR REPLACE INTO {WATERMARKS} VALUES (?, ?)", [source, watermark]
                )
                db.execute("COMMIT")


class SqlTarget:
    """A table in any database SQLAlchemy reaches (PostgreSQL, BigQuery, Snowflake, …),
    created from the records' fields, and the watermarks table beside it."""

    def __init__(self, url: str, table: str) -> None:
        import sqlalchemy

        try:
            self.engine = sqlalchemy.create_engine(url)
        except Exception as exc:  # a malformed URL or a dialect that is not installed
            raise ConfigError(
                f"export target: cannot use this SQLAlchemy URL ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:120]}); install the database's dialect"
            ) from None
        self.table = table

    def shown(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _watermarks(self, metadata: Any) -> Any:
        import sqlalchemy as sa

        return sa.Table(
            WATERMARKS,
            metadata,
            sa.Column("source", sa.String(512), primary_key=True),
            sa.Column("watermark", sa.BigInteger, nullable=False),
        )

    def watermark(self, source: str) -> int:
        import sqlalchemy as sa

        watermarks = self._watermarks(sa.MetaData())
        try:
            with self.engine.begin() as connection:
                watermarks.create(connection, checkfirst=True)
                found = connection.execute(
                    sa.select(watermarks.c.watermark).where(watermarks.c.source == source)
                ).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"export target {self.shown()}: {_first_line(exc)}") from None
        return int(found or 0)

    def write(self, source: str, records: Sequence[dict[str, Any]], watermark: int) -> None:
        import sqlalchemy as sa

        metadata = sa.MetaData()
        watermarks = self._watermarks(metadata)
        try:
            with self.engine.begin() as connection:
                table = self._table(connection, metadata, records)
                names = {c.name for c in table.columns}
                rows = [
                    {k: _scalar(v) for k, v in record.items() if k in names} for record in records
                ]
                connection.execute(table.insert(), rows)
                connection.execute(watermarks.delete().where(watermarks.c.source == source))
                connection.execute(watermarks.insert(), {"source": source, "watermark": watermark})
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"export target {self.shown()}: {_first_line(exc)}") from None

    def _table(self, connection: Any, metadata: Any, records: Sequence[dict[str, Any]]) -> Any:
        """The records' table: made from their fields, or reflected and given the new ones."""
        import sqlalchemy as sa

        wanted: dict[str, Any] = {}
        for record in records:
            for key, value in record.items():
                if key not in wanted or wanted[key] is None:
                    wanted[key] = None if value is None else _sql_type(value)
        inspector = sa.inspect(connection)
        if not inspector.has_table(self.table):
            columns = [
                sa.Column(k, t or sa.Text, primary_key=k == "seq", autoincrement=False)
                for k, t in wanted.items()
            ]
            table = sa.Table(self.table, metadata, *columns)
            table.create(connection)
            return table
        table = sa.Table(self.table, metadata, autoload_with=connection)
        preparer = connection.dialect.identifier_preparer
        for key, kind in wanted.items():
            if key not in table.columns:
                column_type = (kind or sa.Text)().compile(dialect=connection.dialect)
                connection.execute(
                    sa.text(
                        f"ALTER TABLE {preparer.quote(self.table)} ADD COLUMN "
                        f"{preparer.quote(key)} {column_type}"
                    )
                )
        metadata.remove(table)
        return sa.Table(self.table, metadata, autoload_with=connection)


def _sql_type(value: Any) -> Any:
    import sqlalchemy as sa

    if isinstance(value, bool):
        return sa.Boolean
    if isinstance(value, int):
        return sa.BigInteger
    if isinstance(value, float):
        return sa.Float
    return sa.Text


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).splitlines() or [type(exc).__name__])[0][:200]
