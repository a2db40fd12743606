"""Settings of one local control plane instance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    secrets_key_file: Path | None = None
    """The key that seals secrets (outside the data dir); None: ``default_key_file()``."""
    runtime_dir: Path | None = None
    """Where revisions' secret files live while they run; None: ``default_runtime_base()``."""
    readiness_timeout: float = 120.0
    rollback_window: float = 300.0
    scale_to_zero_after: float = 300.0
    max_archive_bytes: int = 2 * 1024**3
    extensions: bool = True
    restart_backoff_max: float = 30.0
    crash_loop_after: int = 1
    """Crashes while starting after which a revision is failed (see rollout.crashloop)."""
    metrics: bool = True
    """Count every request per revision (off: no counts, no metrics, no canary analysis)."""
    metrics_retention: float = 24 * 3600.0
    """Seconds of metrics kept (older 10 s buckets are deleted)."""
    metrics_max_bytes: int = 512 * 1024**2
    """Size of the metrics store on disk above which the oldest half is deleted."""
    metrics_interval: float = 10.0
    log_lines_per_revision: int = 100_000
    monitoring_retention: float = 7 * 86400.0
    """Seconds the records that services log with ``bentoml.monitor`` are kept."""
    monitoring_rotate_bytes: int = 16 * 1024**2
    """Size at which each worker's ``bentoml.monitor`` data file rotates."""
    trace_sample: float = 0.1
    """The share of the endpoints' requests traced (head sampling)."""
    notify: str | None = None
    """A webhook (``URL`` or ``URL#kind,kind``) for the deployments' events, made at start."""
    parent_pid: int | None = None
    """Stop once this process has exited (the launcher's, so that its death stops the server)."""
    otlp_endpoint: str | None = None
    """An OTLP/HTTP traces URL every stored span is sent on to."""
    otlp_headers: tuple[tuple[str, str], ...] = ()
    gpus: tuple[int, ...] | None = None
    """The GPUs (NVML indices) deployments may use (``--gpus 0,1``); None: all found."""
    gpu_inventory: Path | None = None
    """A JSON file of simulated GPUs, used instead of NVML (tests, demos)."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def bentoml_home(self) -> Path:
        return self.data_dir / "bentoml"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def store_dir(self, kind: str) -> Path:
        return self.bentoml_home / f"{kind}s"
