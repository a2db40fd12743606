"""Start, probe and stop one revision's ``bentoml serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from ..._http import tls_context
from ..endpoint.upstream import UpstreamPool
from .crashloop import CrashLoopDetector
from .tls import RevisionTLS

logger = logging.getLogger("bentoship.server")

PROBE_TIMEOUT = httpx.Timeout(0.5, connect=0.25)
PROBE_INTERVAL = 0.05
LOG_CHECK_INTERVAL = 0.25
STOP_GRACE_SECONDS = 10.0


class NotReadyError(Exception):
    """The process exited, or did not answer ``/readyz`` before its deadline."""


class PortTaken(NotReadyError):
    """Another process bound the port between its choice and ``bentoml serve``'s bind."""


PORT_TAKEN = "Address already in use"


REPLICA_MARKER = "BENTOSHIP_REPLICA_ID"
"""The environment variable that tags every process of a replica: its ``bentoml serve`` and
every descendant, which inherit it even once reparented to PID 1."""
SERVE_LEDGER_ENV = "BENTOSHIP_SERVE_LEDGER"
"""A file that every start of ``bentoml serve`` appends one line to, when set (for test runs)."""
_MARKER_ENTRY = f"{REPLICA_MARKER}=".encode()
PLANE_MARKER = f"{secrets.token_hex(6)}-"
"""The start of every replica marker this control plane gives (the rest is the replica's)."""
SWEEP_ROUNDS = 5
"""Scans at most of one sweep: another follows one that found a process to kill (a process may
fork before its signal reaches it)."""


def new_marker() -> str:
    """A replica's marker: this control plane's, then a token of its own."""
    return PLANE_MARKER + secrets.token_hex(6)


def marker_of(pid: int) -> str | None:
    """The replica marker in the environment of process ``pid`` (None: none, or unreadable)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    if _MARKER_ENTRY not in environ:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(_MARKER_ENTRY):
            return entry[len(_MARKER_ENTRY) :].decode(errors="replace")
    return None


def marked_processes(prefix: str = PLANE_MARKER) -> dict[str, list[int]]:
    """This user's processes whose replica marker starts with ``prefix`` (by default: any of
    this control plane's), by marker; one scan of Linux ``/proc``."""
    uid, me = os.getuid(), str(os.getpid())
    found: dict[str, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        marker = marker_of(int(entry.name))
        if marker is not None and marker.startswith(prefix):
            found.setdefault(marker, []).append(int(entry.name))
    return found


def _kill_if_marked(pid: int, prefix: str) -> bool:
    """SIGKILL ``pid`` through a pidfd, if it still carries a marker starting with ``prefix``
    once the pidfd holds it (a PID reused meanwhile is left alone)."""
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # a kernel without pidfds (before 5.3): the PID alone
        pidfd = None
    try:
        marker = marker_of(pid)
        if marker is None or not marker.startswith(prefix):
            return False
        if pidfd is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def kill_marked(prefix: str) -> list[int]:
    """SIGKILL every process whose replica marker starts with ``prefix``; the PIDs killed."""
    if not prefix:
        raise ValueError("an empty prefix would match every control plane's replicas")
    seen: set[int] = set()
    killed: list[int] = []
    for _ in range(SWEEP_ROUNDS):
        found = [p for pids in marked_processes(prefix).values() for p in pids if p not in seen]
        if not found:
            break
        seen.update(found)
        killed += [pid for pid in found if _kill_if_marked(pid, prefix)]
    return killed


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM the child when the control plane dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def bentoml_command() -> list[str]:
    script = Path(sys.executable).with_name("bentoml")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]


@dataclass
class ServeProcess:
    """A running ``bentoml serve`` of one revision on one loopback port."""

    revision: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    """The process's stderr (and bentoship's own lines); stdout goes to ``stdout_path``."""
    marker: str
    """The value of ``REPLICA_MARKER`` in the environment of this replica's processes."""
    log_offset: int = 0
    stdout_offset: int = 0
    name: str = ""
    """The revision's short name (``r3``), which the endpoint's answers carry."""
    replica: int = 0
    """Which replica of the revision this process is (its GPUs are placed by this index)."""
    tls: RevisionTLS | None = None
    """Set when the revision listens with TLS and requires the control plane's client cert."""
    started_at: float = field(default_factory=time.monotonic)
    stopping: bool = False
    watched: bool = False
    on_stop: Callable[[], None] | None = None
    """Called once the process has stopped (removes what was made for it alone)."""
    _session: aiohttp.ClientSession | None = None
    _pool: UpstreamPool | None = None

    def connections(self) -> UpstreamPool:
        """The kept-alive connections of the endpoint's traffic to this process."""
        if self._pool is None:
            ssl_context = self.tls.client_context() if self.tls else None
            self._pool = UpstreamPool("127.0.0.1", self.port, ssl_context)
        return self._pool

    def session(self) -> aiohttp.ClientSession:
        """A client of this process's own routes (metrics scrapes)."""
        if self._session is None:
            ssl_context = self.tls.client_context() if self.tls else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=1000, force_close=False, ssl=ssl_context or False
                ),
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def close_session(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sweep(self) -> list[int]:
        """SIGKILL every process that carries this replica's marker: bentoml's workers, in
        sessions of their own, outlive an arbiter that is killed; the PIDs killed."""
        killed = kill_marked(self.marker)
        if killed:
            logger.info(
                "%s replica %s: killed %d leftover process(es)",
                self.name,
                self.replica,
                len(killed),
            )
        return killed

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def exited(self) -> int | None:
        """Wait until the process ends on its own; then sweep what it left and return its code."""
        code = await self.process.wait()
        if not self.stopping:
            self.sweep()
            await self.close_session()
            self.release()
        return code

    def _read_new_log(self, final: bool = False) -> str:
        """New complete lines of stderr, then of stdout; ``final`` adds an unfinished last line."""
        err, self.log_offset = _read_lines(self.log_path, self.log_offset, final)
        out, self.stdout_offset = _read_lines(stdout_path(self.log_path), self.stdout_offset, final)
        return err + out

    async def wait_ready(self, deadline_seconds: float, crashes: int = 1) -> None:
        """Poll ``/readyz`` with short timeouts until it answers 200, or raise NotReadyError.

        It raises at once when the process exits, or when its log shows the service crashing
        ``crashes`` times while it starts.
        """
        deadline = time.monotonic() + deadline_seconds
        detector = CrashLoopDetector(crashes)
        next_log_check = 0.0
        verify = self.tls.client_context() if self.tls else tls_context()
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False, verify=verify) as http:
            while True:
                exited = not self.alive
                if exited or time.monotonic() >= next_log_check:
                    next_log_check = time.monotonic() + LOG_CHECK_INTERVAL
                    text = self._read_new_log(final=exited)
                    if PORT_TAKEN in text:
                        raise PortTaken(f"bentoml serve could not bind port {self.port}: taken")
                    detector.feed(text)
                    if detector.crash_looping:
                        raise NotReadyError(detector.reason())
                if exited:
                    raise NotReadyError(
                        f"bentoml serve exited with code {self.process.returncode} "
                        "before it was ready"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise NotReadyError(
                        f"not ready within the readiness deadline of {deadline_seconds:g} s "
                        "(a service that raises in __init__ never becomes ready; see the logs)"
                    )
                await asyncio.sleep(PROBE_INTERVAL)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, then every process
        left with this replica's marker."""
        self.stopping = True
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        self.sweep()
        await self.close_session()
        self.release()

    def release(self) -> None:
        """Run ``on_stop`` once, after the process has exited."""
        if self.on_stop is not None:
            self.on_stop()
            self.on_stop = None


async def start_serve(
    *,
    revision: str,
    name: str = "",
    replica: int = 0,
    bento_tag: str,
    bentoml_home: Path,
    log_path: Path,
    envs: Mapping[str, str],
    port: int | None = None,
    tls: RevisionTLS | None = None,
    log_pipe: Callable[[Path], int] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> ServeProcess:
    """Start ``bentoml serve`` of ``bento_tag`` on a loopback port.

    Its stderr goes to ``log_path``, after a ``[bentoship] ... starting`` line, and its stdout
    to ``stdout_path(log_path)``; with ``log_pipe``, through the write ends it returns for each
    file (which mask what is written before it reaches the file).
    """
    port = port or free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BENTO_CLOUD_API_KEY", "BENTO_CLOUD_API_ENDPOINT")
    }
    env.update(envs)
    marker = new_marker()
    env.update(
        {
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            REPLICA_MARKER: marker,
        }
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _note_start(bento_tag, log_path.parent.name)
    with log_path.open("ab") as log, stdout_path(log_path).open("ab") as out:
        which = f" replica {replica}" if replica else ""
        log.write(f"[bentoship] {stamp} starting {bento_tag}{which} on port {port}\n".encode())
        log.flush()
        offset = log.tell()
        out_offset = out.seek(0, os.SEEK_END)
        pipes = (log_pipe(stdout_path(log_path)), log_pipe(log_path)) if log_pipe else ()
        try:
            process = await asyncio.create_subprocess_exec(
                *bentoml_command(),
                "serve",
                bento_tag,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *(tls.serve_args() if tls else []),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=pipes[0] if pipes else out,
                stderr=pipes[1] if pipes else log,
                env=env,
                cwd=str(bentoml_home),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            for fd in pipes:
                os.close(fd)
    return ServeProcess(
        revision=revision,
        port=port,
        process=process,
        log_path=log_path,
        marker=marker,
        log_offset=offset,
        stdout_offset=out_offset,
        name=name or revision[:8],
        replica=replica,
        tls=tls,
        on_stop=on_stop,
    )


def _note_start(bento_tag: str, deployment: str) -> None:
    """Append a line to ``$BENTOSHIP_SERVE_LEDGER``, when set (what a test run's meter counts)."""
    ledger = os.environ.get(SERVE_LEDGER_ENV)
    if ledger:
        with open(ledger, "a") as handle:
            test = os.environ.get("PYTEST_CURRENT_TEST", "-").split(" ")[0]
            handle.write(f"{os.getpid()} {bento_tag} {deployment} {test}\n")


def stdout_path(log_path: Path) -> Path:
    """Where a revision's stdout goes, beside its stderr log ``log_path``."""
    return log_path.with_suffix(".stdout.log")


def _read_lines(path: Path, offset: int, final: bool) -> tuple[str, int]:
    """The complete lines of ``path`` after ``offset`` (``final``: all), and the offset after."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return "", offset
    if not final:
        data = data[: data.rfind(b"\n") + 1]
    text = data.decode(errors="replace")
    if text and not text.endswith("\n"):
        text += "\n"
    return text, offset + len(data)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a log file (empty when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, max(65536, count * 400))
            handle.seek(size - block)
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[-count:] if count > 0 else []
