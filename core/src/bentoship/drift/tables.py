"""The two sides of a drift check, read into columns of NumPy arrays.

A side is a pandas (or any) DataFrame, a mapping of column name to values, a Parquet file or
folder (read by DuckDB), or a :class:`SqlQuery` (read through SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Columns", "Monitor", "SqlQuery", "read_side", "side_from_text", "side_of"]

Columns = dict[str, Any]
"""Column name → a 1-D NumPy array."""


@dataclass(frozen=True)
class SqlQuery:
    """Rows of a SQL query on a database given by its SQLAlchemy URL (the password in the URL
    is never printed)."""

    url: str
    query: str


@dataclass(frozen=True)
class Monitor:
    """The newest ``limit`` records of a deployment's monitor, on the local control plane
    (their fields, without the record's seq, revision, bento, times and ids)."""

    deployment: str
    monitor: str
    limit: int = 100_000


RECORD_META = frozenset(
    {"seq", "revision", "bento", "ingested_at", "timestamp", "request_id", "trace_id"}
)


def side_of(value: Any) -> Any:
    """A side given as plain data (as an orchestrator passes it): ``{"url", "query"}`` is a
    :class:`SqlQuery`, ``{"deployment", "monitor"}`` a :class:`Monitor`; else as it is."""
    if isinstance(value, Mapping) and set(value) == {"url", "query"}:
        return SqlQuery(str(value["url"]), str(value["query"]))
    if isinstance(value, Mapping) and {"deployment", "monitor"} <= set(value) <= {
        "deployment",
        "monitor",
        "limit",
    }:
        return Monitor(
            str(value["deployment"]), str(value["monitor"]), int(value.get("limit", 100_000))
        )
    return value


def side_from_text(text: str) -> Any:
    """A side as an orchestrator's string parameter gives it: JSON (``{"url", "query"}``,
    ``{"deployment", "monitor"}``) when it starts with ``{``, else a Parquet path."""
    import json

    text = text.strip()
    if not text.startswith("{"):
        return text
    try:
        return side_of(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{text[:60]!r} is not valid JSON ({exc.msg}); give a Parquet path, "
            '{"url": ..., "query": ...} or {"deployment": ..., "monitor": ...}'
        ) from None


def read_side(side: Any, what: str, client: Any = None) -> Columns:
    """``side`` as columns; ConfigError in one line when it cannot be read."""
    import numpy as np

    side = side_of(side)
    if isinstance(side, Monitor):
        return _read_monitor(side, client)
    if isinstance(side, SqlQuery):
        return _read_sql(side, what)
    if isinstance(side, str | Path):
        return _read_parquet(Path(side), what)
    if isinstance(side, Mapping):
        return {str(k): np.asarray(v) for k, v in side.items()}
    if hasattr(side, "columns") and hasattr(side, "__getitem__"):
        return {str(c): np.asarray(side[c]) for c in side.columns}
    raise ConfigError(
        f"{what}: cannot read a {type(side).__name__}; give a DataFrame, a dict of columns, "
        "a Parquet path or SqlQuery(url, query)"
    )


def _read_monitor(side: Monitor, client: Any) -> Columns:
    import numpy as np

    from ..client import Client

    api = client or Client.from_env()
    try:
        records = api.monitoring_records(side.deployment, side.monitor, limit=side.limit)
    finally:
        if client is None:
            api.close()
    names = list(dict.fromkeys(k for r in records for k in r if k not in RECORD_META))
    return {name: np.asarray([r.get(name) for r in records], dtype=object) for name in names}


def _read_parquet(path: Path, what: str) -> Columns:
    import duckdb

    if not path.exists():
        raise ConfigError(f"{what}: {path} does not exist; give a Parquet file or folder")
    pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    try:
        with duckdb.connect() as db:
            found = db.execute("SELECT * FROM read_parquet(?)", [pattern]).fetchnumpy()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0][:200]
        raise ConfigError(f"{what}: cannot read {path} as Parquet ({first})") from None
    return {name: _plain(values) for name, values in found.items()}


def _read_sql(side: SqlQuery, what: str) -> Columns:
    import numpy as np
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(side.url)
    except Exception as exc:  # a bad URL or a missing driver: sqlalchemy's own errors
        raise ConfigError(f"{what}: bad SQLAlchemy URL ({type(exc).__name__})") from None
    try:
        with engine.connect() as connection:
            result = connection.execute(sqlalchemy.text(side.query))
            names = list(result.keys())
            rows = result.fetchall()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0][:200]
        shown = sqlalchemy.make_url(side.url).render_as_string(hide_password=True)
        raise ConfigError(f"{what}: the query on {shown} failed ({first})") from None
    finally:
        engine.dispose()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {
        name: np.asarray(column, dtype=object) for name, column in zip(names, values, strict=True)
    }


def _plain(values: Any) -> Any:
    """A masked array (DuckDB's NULLs) as a plain one: NaN for numbers, None otherwise."""
    import numpy as np

    if not isinstance(values, np.ma.MaskedArray):
        return values
    if values.dtype.kind in "fiu":
        return np.ma.filled(values.astype(float), np.nan)
    return np.ma.filled(values.astype(object), None)
