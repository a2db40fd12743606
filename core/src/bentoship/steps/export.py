"""The export step: a deployment's monitoring records, incrementally, into a warehouse."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import Client
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..drift.tables import SqlQuery

__all__ = ["ExportResult", "export_monitoring"]

log = logging.getLogger(__name__)
PAGE = 10_000


@dataclass(frozen=True)
class ExportResult:
    count: int
    """Records written by this run."""
    watermark: int
    """The highest ``seq`` exported so far (kept by the target itself)."""
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "watermark": self.watermark, "target": self.target}


def export_monitoring(
    name: str,
    monitor: str,
    target: str | Path,
    *,
    since: datetime | str | None = None,
    source: str | Path | SqlQuery | Mapping[str, str] | None = None,
    watermark_column: str = "seq",
    table: str | None = None,
    client: Client | None = None,
    page: int = PAGE,
) -> ExportResult:
    """Write the records of ``monitor`` (of deployment ``name``) that ``target`` does not have
    yet: a Parquet folder, a DuckDB file (``.duckdb``/``.db``) or a SQLAlchemy URL. With
    ``since`` (a datetime, ISO-8601 text, epoch seconds or a time ago such as ``24h``), only
    records ingested since then are exported (for a first export that skips old history).

    The records come from the local control plane. BentoCloud has no API for monitoring data:
    give ``source`` instead, a Parquet path or a :class:`~bentoship.drift.SqlQuery` (also
    ``{"url", "query"}``, or that as JSON text) that your collector fills, with
    ``watermark_column``, a column of whole numbers that only rises (a
    sequence, or epoch milliseconds). The target keeps the watermark with the records it holds,
    so a re-run or a retried task writes no duplicate.
    """
    from ..drift.tables import SqlQuery, side_from_text, side_of
    from ..export.sources import (
        DeploymentSource,
        ParquetSource,
        RecordSource,
        SqlSource,
        watermark_of,
    )
    from ..export.targets import target_for

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", monitor):
        raise ConfigError(f"monitor {monitor!r} is not a monitor name (letters, digits, _ . -)")
    if since is not None and source is not None:
        raise ConfigError(
            "since= filters a deployment's own records; with source=, filter in your query"
        )
    if isinstance(since, datetime):
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
    if isinstance(source, str):
        source = side_from_text(source)
    elif isinstance(source, Mapping):
        source = side_of(source)
    if source is not None and not isinstance(source, str | Path | SqlQuery):
        raise ConfigError(
            'source: give a Parquet path or SqlQuery(url, query) ({"url", "query"}); '
            "a deployment's own records need no source"
        )
    destination = target_for(target, table or f"monitor_{re.sub(r'[^a-z0-9_]', '_', monitor)}")
    own = client is None and source is None
    api = client or (Client.from_env() if source is None else None)
    records_from: RecordSource
    if isinstance(source, SqlQuery):
        records_from = SqlSource(source, watermark_column)
    elif source is not None:
        records_from = ParquetSource(Path(source), watermark_column)
    else:
        assert api is not None
        records_from = DeploymentSource(api, name, monitor, since)
    try:
        watermark = start = destination.watermark(records_from.key)
        written = 0
        while True:
            records = records_from.after(watermark, page)
            if not records:
                break
            watermark = max(watermark_of(r, watermark_column) for r in records)
            destination.write(records_from.key, records, watermark)
            written += len(records)
    finally:
        if own and api is not None:
            api.close()
    shown = str(target) if "://" not in str(target) else "the SQL target"
    log.info(
        "exported %d records of %s/%s to %s (watermark %d -> %d)",
        written,
        name,
        monitor,
        shown,
        start,
        watermark,
    )
    return ExportResult(count=written, watermark=watermark, target=shown)
