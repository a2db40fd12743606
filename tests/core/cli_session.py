"""The unmodified ``bentoml`` CLI, kept in one interpreter for several commands.

Each interpreter that imports bentoml's CLI costs a second or more of CPU in imports alone; a
test that runs several commands against one control plane (with checks between them) runs them
all in one ``BentomlCli``, which keeps that interpreter and gives it one command at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from bentoship.server import LocalControlPlane

# Reads one JSON list of arguments a line; runs ``bentoml <arguments>`` as the `bentoml` command
# does; after its output, writes a NUL and the exit code on a line of their own.
LOOP = """
import json, sys
from bentoml_cli.cli import cli  # what `bentoml` and `python -m bentoml` run
for line in sys.stdin:
    code = 0
    try:
        cli(json.loads(line), prog_name="bentoml")
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"\\0{code}", flush=True)
"""


@dataclass
class Done:
    """What one command did: its exit code and its output (stderr apart, for failures)."""

    returncode: int
    stdout: str
    stderr: str


class BentomlCli:
    """``bentoml`` commands against ``plane``, signed in with its token, in one interpreter."""

    def __init__(
        self, plane: LocalControlPlane, stderr_path: Path, columns: int = 250, timeout: float = 120
    ) -> None:
        assert plane.connection is not None
        self.env = {
            **os.environ,
            "BENTO_CLOUD_API_ENDPOINT": plane.connection.endpoint,
            "BENTO_CLOUD_API_KEY": plane.connection.token,
            "COLUMNS": str(columns),
        }
        self.stderr_path = stderr_path
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        """Start the interpreter (``with`` does, and closes it after)."""
        self._stderr = self.stderr_path.open("a")  # appends: this process reads it apart
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOOP],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        return self

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None and self.process.stdout is not None
            with contextlib.suppress(OSError):  # a killed interpreter's pipe is broken
                self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __call__(self, *arguments: str) -> Done:
        """Run ``bentoml <arguments>``; fail if it has not finished within the timeout."""
        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        stdout = process.stdout
        errors_from = self.stderr_path.stat().st_size
        process.stdin.write(json.dumps(list(arguments)) + "\n")
        process.stdin.flush()
        lines: list[str] = []
        ended = threading.Event()

        def read() -> None:
            while line := stdout.readline():
                lines.append(line)
                if "\0" in line:
                    break
            ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not ended.wait(self.timeout):
            process.kill()
            raise AssertionError(f"bentoml {' '.join(arguments)} ran over {self.timeout} s")
        with self.stderr_path.open() as errors:
            errors.seek(errors_from)
            stderr = errors.read()
        assert lines and "\0" in lines[-1], f"the CLI's interpreter ended: {stderr[-2000:]}"
        before, code = lines[-1].rsplit("\0", 1)
        return Done(int(code), "".join(lines[:-1]) + before, stderr)
