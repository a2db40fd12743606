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
from typing import Any

from ..connection import Connection, read_connection
from ..errors import BentoshipError
from .options import command_args

READY_PREFIX = "bentoship server ready at "


class LocalControlPlane:
    """``bentoship server`` in a child process, bound to 127.0.0.1 on a free port; it stops
    when this process exits, even when killed."""

    def __init__(
        self, data_dir: Path, *, token: str | None = None, port: int = 0, **options: Any
    ) -> None:
        """``options``: any option of ``bentoship server`` by its setting name
        (``server.options``), such as ``readiness_timeout=60`` or ``metrics=False``."""
        self.data_dir = Path(data_dir)
        self.token = token
        self.port = port
        self.args = command_args(options)
        self.process: subprocess.Popen[str] | None = None
        self.connection: Connection | None = None

    @property
    def endpoint(self) -> str:
        assert self.connection is not None, "the control plane is not started"
        return self.connection.endpoint

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def command(self) -> list[str]:
        """The ``bentoship server`` command line this launcher runs."""
        command = [sys.executable, "-m", "bentoship", "server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        if "--parent-pid" not in self.args:
            command += ["--parent-pid", str(os.getpid())]
        if self.token:
            command += ["--token", self.token]
        return command

    def start(self, timeout: float = 60.0) -> Connection:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self.command()
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
