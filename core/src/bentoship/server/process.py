"""Start and stop a local control plane as a child process (for demos, examples and tests)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ..connection import Connection, read_connection
from ..errors import BentoshipError

READY_PREFIX = "bentoship server ready at "


class LocalControlPlane:
    """``bentoship server`` in a child process, bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        token: str | None = None,
        secrets_key_file: Path | None = None,
        runtime_dir: Path | None = None,
        extensions: bool = True,
        readiness_timeout: float | None = None,
        rollback_window: float | None = None,
        scale_to_zero_after: float | None = None,
        crash_loop_after: int | None = None,
        metrics: bool = True,
        metrics_retention: float | None = None,
        monitoring_retention: float | None = None,
        monitoring_rotate_bytes: int | None = None,
        port: int = 0,
        gpus: tuple[int, ...] | None = None,
        gpu_inventory: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.token = token
        self.port = port
        self.args: list[str] = []
        if not extensions:
            self.args.append("--no-extensions")
        if not metrics:
            self.args.append("--no-metrics")
        for flag, value in (
            ("--secrets-key-file", secrets_key_file),
            ("--runtime-dir", runtime_dir),
            ("--readiness-timeout", readiness_timeout),
            ("--rollback-window", rollback_window),
            ("--scale-to-zero-after", scale_to_zero_after),
            ("--crash-loop-after", crash_loop_after),
            ("--metrics-retention", metrics_retention),
            ("--monitoring-retention", monitoring_retention),
            ("--monitoring-rotate-bytes", monitoring_rotate_bytes),
        ):
            if value is not None:
                self.args += [flag, str(value)]
        if gpus is not None:
            self.args += ["--gpus", ",".join(map(str, gpus))]
        if gpu_inventory is not None:
            self.args += ["--gpu-inventory", str(gpu_inventory)]
        self.process: subprocess.Popen[str] | None = None
        self.connection: Connection | None = None

    @property
    def endpoint(self) -> str:
        assert self.connection is not None, "the control plane is not started"
        return self.connection.endpoint

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout: float = 60.0) -> Connection:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bentoship", "server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        if self.token:
            command += ["--token", self.token]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith(READY_PREFIX):
                    self.connection = read_connection(self.data_dir)
                    self.port = int(self.connection.endpoint.rsplit(":", 1)[1])
                    return self.connection
            if self.process.poll() is not None:
                break
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise BentoshipError(f"bentoship server did not start; its log ends with: {tail}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server (it stops every ``bentoml serve`` it started); SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server alone, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
