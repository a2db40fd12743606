"""Run the local control plane until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import uvicorn

from ..connection import CONNECTION_FILE, Connection, default_home, write_connection
from .app import build_app
from .auth import load_or_create_token
from .endpoint.server import bind_socket
from .gpu.inventory import InventoryError, find_inventory
from .observe.hub import Observability
from .options import settings_values
from .registry.service import Registry
from .rollout.controller import Controller
from .secrets.placement import apart_from
from .settings import ServerSettings
from .store import Store
from .webhooks import Notifier

ORPHAN_CHECK_SECONDS = 0.5


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the control plane."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


SWITCH_INTERVAL = 0.001
"""Seconds a background thread (the analytics writer, a log search, a file read) may hold the
interpreter before the event loop, which serves every endpoint, gets it back (Python's default
is 5 ms)."""


def share_the_interpreter() -> None:
    """Let the event loop take the interpreter back from busy threads within a millisecond."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    return data_dir


async def serve(settings: ServerSettings) -> None:
    share_the_interpreter()
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
    if settings.parent_pid is not None:
        orphaned = asyncio.create_task(_stop_when_orphaned(settings.parent_pid, stop))
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    plane_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    controller.ctx.plane_url = f"http://{plane_host}:{port}"
    config = uvicorn.Config(
        build_app(settings, Registry(settings, store), controller, observed),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    api_task = asyncio.create_task(server.serve(sockets=[sock]))
    notifier: asyncio.Task[None] | None = None
    try:
        await controller.start()
        observed.start(sampling=settings.metrics)
        if settings.notify:
            url, _, kinds = settings.notify.partition("#")
            wanted = frozenset(k.strip() for k in kinds.split(",") if k.strip()) or None
            controller.webhooks.ensure(url, wanted)
        notifier = asyncio.create_task(
            Notifier(controller.webhooks, controller.ctx.plane_url or "").run()
        )
        while not server.started:
            if api_task.done():
                api_task.result()
            await asyncio.sleep(0.01)
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        endpoint = f"http://{url_host}:{port}"
        write_connection(settings.data_dir, Connection(endpoint=endpoint, token=settings.token))
        announce(f"bentoship server ready at {endpoint}")
        hint = connection_hint(settings.data_dir)
        if hint:
            announce(hint)
        await stop.wait()
    finally:
        if settings.parent_pid is not None:
            orphaned.cancel()
        if notifier is not None:
            notifier.cancel()
        server.should_exit = True
        await controller.close()
        await api_task
        await observed.close()
        store.close()


def announce(line: str) -> None:
    """Print ``line`` to stdout; a reader that has gone (a launcher that died) costs nothing."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once process ``parent`` is no longer this process's parent (it exited)."""
    while os.getppid() == parent:
        await asyncio.sleep(ORPHAN_CHECK_SECONDS)
    logging.getLogger("bentoship.server").warning(
        "the process that started this server (pid %d) has exited: stopping", parent
    )
    stop.set()


def connection_hint(data_dir: Path) -> str | None:
    """The shell line that points the CLI at a data dir other than the default home (it names
    where the token is, never the token); None for the default home."""
    if data_dir.expanduser().resolve() == default_home().expanduser().resolve():
        return None
    where = data_dir / CONNECTION_FILE
    return (
        f"export BENTOSHIP_HOME={shlex.quote(str(data_dir))}"
        f"  # so that the bentoship CLI finds this server ({where} holds its endpoint and token)"
    )


def settings_from(options: Mapping[str, Any]) -> ServerSettings:
    """The settings these options (``server.options``) give, the data dir made and its token
    read or created; every option left out takes its default."""
    values = settings_values(options)
    directory = prepare_data_dir(values.pop("data_dir") or default_home())
    key_file, runtime = apart_from(
        directory, values.pop("secrets_key_file"), values.pop("runtime_dir")
    )
    return ServerSettings(
        data_dir=directory,
        token=values.pop("token") or load_or_create_token(directory),
        secrets_key_file=key_file,
        runtime_dir=runtime,
        **values,
    )


def run_server(**options: Any) -> None:
    """Run the server with these options until SIGTERM."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = settings_from(options)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: the endpoints' proxies spend most of their time in the loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
