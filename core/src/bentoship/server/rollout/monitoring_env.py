"""Where a revision's ``bentoml serve`` writes what its services log with ``bentoml.monitor``:
a folder of its own, set through bentoml's config (``BENTOML_CONFIG_OPTIONS``), in files that
rotate by size. The control plane ingests them from there (``observe.monitoring``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_options", "monitoring_dir", "tracing_envs"]

SERVICE_SITE = str(Path(__file__).with_name("service_site"))
"""The ``sitecustomize`` of revisions' processes (its module says what it changes)."""
ROTATE_BYTES = 16 * 1024 * 1024
KEPT_FILES = 1000
"""Rotated files kept per worker (bentoml's handler renames each of them at every rotation)."""
LOGGING_CONFIG = """version: 1
disable_existing_loggers: false
loggers:
  bentoml_monitor_data:
    level: INFO
    handlers: [bentoml_monitor_data]
    propagate: false
  bentoml_monitor_schema:
    level: INFO
    handlers: [bentoml_monitor_schema]
    propagate: false
handlers:
  bentoml_monitor_data:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{data_filename}'
    maxBytes: %(rotate)d
    backupCount: %(kept)d
  bentoml_monitor_schema:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{schema_filename}'
    maxBytes: 1048576
    backupCount: 1
formatters:
  bentoml_json:
    class: pythonjsonlogger.jsonlogger.JsonFormatter
    format: "()"
    validate: false
"""


def monitoring_dir(data_dir: Path, deployment: str, revision_uid: str) -> Path:
    return data_dir / "monitoring" / deployment / revision_uid


def config_options(directory: Path, rotate_bytes: int = ROTATE_BYTES) -> str:
    """``BENTOML_CONFIG_OPTIONS`` that send a revision's monitors to ``directory``, in files
    rotated by size (written beside them as ``logging.yaml``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "logging.yaml"
    config.write_text(LOGGING_CONFIG % {"rotate": rotate_bytes, "kept": KEPT_FILES})
    return (
        f"services.monitoring.enabled=true services.monitoring.type=default "
        f"services.monitoring.options.log_path={directory} "
        f"services.monitoring.options.log_config_file={config}"
    )


SPAN_FLUSH_MILLISECONDS = 500


def tracing_envs(plane_url: str, span_token: str) -> tuple[str, dict[str, str]]:
    """bentoml's config options (``BENTOML_CONFIG_OPTIONS``) and the environment that send a
    revision's spans to the control plane's OTLP receiver: only those of requests the endpoint
    traces (its ``traceparent`` is sampled; the service's own rate is 0), with the revision's
    span token, flushed every half second; with ``service_site`` first on the path, so that
    bentoml's ASGI middleware makes no span of each ASGI message (the receiver drops them)."""
    options = (
        "services.tracing.exporter_type=otlp services.tracing.sample_rate=0.0 "
        "services.tracing.otlp.protocol=http "
        f"services.tracing.otlp.endpoint={plane_url}/v1/traces"
    )
    envs = {
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-yatai-api-token={span_token}",
        "OTEL_BSP_SCHEDULE_DELAY": str(SPAN_FLUSH_MILLISECONDS),
        "PYTHONPATH": os.pathsep.join(filter(None, [SERVICE_SITE, os.environ.get("PYTHONPATH")])),
    }
    return options, envs
