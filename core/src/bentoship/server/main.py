"""Run the local control plane until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import uvicorn

from ..connection import Connection, write_connection
from .app import build_app
from .auth import load_or_create_token
from .endpoint.server import bind_socket
from .gpu.inventory import InventoryError, find_inventory
from .observe.hub import Observability
from .registry.service import Registry
from .rollout.controller import Controller
from .secrets.placement import apart_from
from .settings import ServerSettings
from .store import Store


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the control plane."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    return data_dir


async def serve(settings: ServerSettings) -> None:
    try:
        inventory = find_inventory(settings.gpu_inventory, settings.gpus)
    except InventoryError as exc:
        raise SystemExit(f"bentoship server: {exc}") from None
    logging.getLogger("bentoship.server").info("GPUs: %s", inventory.describe())
    store = Store(settings.db_path)
    controller = Controller(settings, store, inventory)
    try:
        observed = Observability.open(settings, controller)
    except duckdb.IOException as exc:  # another server holds the file's lock
        raise SystemExit(
            f"bentoship server: cannot open {settings.data_dir / 'observe.duckdb'} "
            f"({str(exc).splitlines()[0][:200]}); is another server using this --data-dir?"
        ) from None
    controller.deleted_hooks.append(observed.forget)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        build_app(settings, Registry(settings, store), controller, observed),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    api_task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await controller.start()
        observed.start(sampling=settings.metrics)
        while not server.started:
            if api_task.done():
                api_task.result()
            await asyncio.sleep(0.01)
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        endpoint = f"http://{url_host}:{port}"
        write_connection(settings.data_dir, Connection(endpoint=endpoint, token=settings.token))
        print(f"bentoship server ready at {endpoint}", flush=True)
        await stop.wait()
    finally:
        server.should_exit = True
        await controller.close()
        await api_task
        await observed.close()
        store.close()


def run_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    data_dir: Path | None = None,
    token: str | None = None,
    secrets_key_file: Path | None = None,
    runtime_dir: Path | None = None,
    readiness_timeout: float = 120.0,
    rollback_window: float = 300.0,
    scale_to_zero_after: float = 300.0,
    max_archive_bytes: int = 2 * 1024**3,
    extensions: bool = True,
    crash_loop_after: int = 1,
    metrics: bool = True,
    metrics_retention: float = 24 * 3600.0,
    monitoring_retention: float = 7 * 86400.0,
    monitoring_rotate_bytes: int = 16 * 1024**2,
    log_lines_per_revision: int = 100_000,
    gpus: tuple[int, ...] | None = None,
    gpu_inventory: Path | None = None,
) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    directory = prepare_data_dir(data_dir or Path.home() / ".bentoship")
    key_file, runtime = apart_from(directory, secrets_key_file, runtime_dir)
    settings = ServerSettings(
        data_dir=directory,
        token=token or load_or_create_token(directory),
        secrets_key_file=key_file,
        runtime_dir=runtime,
        host=host,
        port=port,
        readiness_timeout=readiness_timeout,
        rollback_window=rollback_window,
        scale_to_zero_after=scale_to_zero_after,
        max_archive_bytes=max_archive_bytes,
        extensions=extensions,
        crash_loop_after=crash_loop_after,
        metrics=metrics,
        metrics_retention=metrics_retention,
        monitoring_retention=monitoring_retention,
        monitoring_rotate_bytes=monitoring_rotate_bytes,
        log_lines_per_revision=log_lines_per_revision,
        gpus=gpus,
        gpu_inventory=gpu_inventory,
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: the endpoints' proxies spend most of their time in the loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
