"""The export step: a deployment's monitoring records, incrementally, into a warehouse."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import ConfigError

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
    table: str | None = None,
    client: Client | None = None,
    page: int = PAGE,
) -> ExportResult:
    """Write the records of ``monitor`` (of deployment ``name``) that ``target`` does not have
    yet: a Parquet folder, a DuckDB file (``.duckdb``/``.db``) or a SQLAlchemy URL.

    The target keeps the watermark with the records it holds, so a re-run or a retried task
    writes no duplicate. The records come from the local control plane; BentoCloud has no API
    for monitoring data, which this step says in one line.
    """
    from ..export.targets import target_for

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", monitor):
        raise ConfigError(f"monitor {monitor!r} is not a monitor name (letters, digits, _ . -)")
    destination = target_for(target, table or f"monitor_{re.sub(r'[^a-z0-9_]', '_', monitor)}")
    own = client is None
    api = client or Client.from_env()
    source = f"{api.endpoint}/deployments/{name}/monitoring/{monitor}"
    try:
        watermark = start = destination.watermark(source)
        written = 0
        while True:
            records = api.monitoring_records(name, monitor, after=watermark, limit=page)
            if not records:
                break
            watermark = max(int(r["seq"]) for r in records)
            destination.write(source, [{"deployment": name, **r} for r in records], watermark)
            written += len(records)
    finally:
        if own:
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
