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

__all__ = ["Columns", "SqlQuery", "read_side"]

Columns = dict[str, Any]
"""Column name → a 1-D NumPy array."""


@dataclass(frozen=True)
class SqlQuery:
    """Rows of a SQL query on a database given by its SQLAlchemy URL (the password in the URL
    is never printed)."""

    url: str
    query: str


def read_side(side: Any, what: str) -> Columns:
    """``side`` as columns; ConfigError in one line when it cannot be read."""
    import numpy as np

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
