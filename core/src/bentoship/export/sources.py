"""Where exported records come from: a deployment's monitor on the local control plane, or,
for a server without monitoring data (BentoCloud), a Parquet path or a SQL query that the
user's own collector fills.

Every source hands out its records in the order of a column of whole numbers that only rises
(the control plane's ``seq``, or a sequence or epoch-milliseconds column of one's own), from
after a watermark, a page at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..client import Client
    from ..drift.tables import SqlQuery

__all__ = ["DeploymentSource", "ParquetSource", "RecordSource", "SqlSource", "watermark_of"]


class RecordSource(Protocol):
    @property
    def key(self) -> str:
        """Names the source in the target's watermarks."""

    def after(self, watermark: int, limit: int) -> list[dict[str, Any]]: ...


def watermark_of(record: dict[str, Any], column: str) -> int:
    value = record.get(column)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ConfigError(
            f"watermark column {column!r} must hold whole numbers that rise (a sequence, or "
            f"epoch milliseconds); found {type(value).__name__}"
        )
    return int(value)


@dataclass
class DeploymentSource:
    client: Client
    deployment: str
    monitor: str
    since: str | None = None
    """Only records ingested since then (ISO-8601, epoch seconds or a time ago: ``24h``)."""

    @property
    def key(self) -> str:
        return f"{self.client.endpoint}/deployments/{self.deployment}/monitoring/{self.monitor}"

    def after(self, watermark: int, limit: int) -> list[dict[str, Any]]:
        records = self.client.monitoring_records(
            self.deployment, self.monitor, after=watermark, limit=limit, since=self.since
        )
        return [{"deployment": self.deployment, **r} for r in records]


@dataclass
class ParquetSource:
    path: Path
    column: str

    @property
    def key(self) -> str:
        return f"parquet:{self.path.resolve()}"

    def after(self, watermark: int, limit: int) -> list[dict[str, Any]]:
        import duckdb

        if not self.path.exists():
            raise ConfigError(f"export source {self.path} does not exist; give a Parquet path")
        pattern = str(self.path / "**" / "*.parquet") if self.path.is_dir() else str(self.path)
        column = self.column.replace('"', '""')
        try:
            with duckdb.connect() as db:
                cursor = db.execute(
                    f'SELECT * FROM read_parquet(?) WHERE "{column}" > ? '
                    f'ORDER BY "{column}" LIMIT ?',
                    [pattern, watermark, limit],
                )
                names = [d[0] for d in cursor.description or []]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0][:200]
            raise ConfigError(f"export source {self.path}: {first}") from None


@dataclass
class SqlSource:
    query: SqlQuery
    column: str

    @property
    def key(self) -> str:
        import sqlalchemy

        url = sqlalchemy.make_url(self.query.url).render_as_string(hide_password=True)
        return f"sql:{url}:{hashlib.sha256(self.query.query.encode()).hexdigest()[:16]}"

    def after(self, watermark: int, limit: int) -> list[dict[str, Any]]:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.query.url)
        column = engine.dialect.identifier_preparer.quote(self.column)
        paged = sqlalchemy.text(
            f"SELECT * FROM ({self.query.query}) AS source WHERE {column} > :after "
            f"ORDER BY {column} LIMIT :limit"
        )
        try:
            with engine.connect() as connection:
                result = connection.execute(paged, {"after": watermark, "limit": limit})
                return [dict(row._mapping) for row in result]
        except sqlalchemy.exc.SQLAlchemyError as exc:
            original = getattr(exc, "orig", None) or exc
            first = (str(original).splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"export source query failed ({first})") from None
        finally:
            engine.dispose()
