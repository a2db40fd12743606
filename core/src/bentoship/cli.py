"""The ``bentoship`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .connection import default_home

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return number


def _add_server(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = subparsers.add_parser(
        "server", help="run the local control plane (a BentoCloud-compatible server)"
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    server.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="state directory (default $BENTOSHIP_HOME or ~/.bentoship)",
    )
    server.add_argument(
        "--token", default=None, help="API token (default: generated once, kept in the data dir)"
    )
    server.add_argument(
        "--readiness-timeout",
        type=_positive,
        default=120.0,
        help="seconds a new revision has to answer /readyz before it is failed (default 120)",
    )
    server.add_argument(
        "--rollback-window",
        type=_positive,
        default=300.0,
        help="seconds the previous revision is kept warm after a switch (default 300)",
    )
    server.add_argument(
        "--scale-to-zero-after",
        type=_positive,
        default=300.0,
        help="idle seconds before a min_replicas=0 deployment is scaled to zero (default 300)",
    )
    server.add_argument(
        "--max-archive-bytes",
        type=int,
        default=2 * 1024**3,
        help="largest accepted bento or model archive, unpacked (default 2 GiB)",
    )
    server.add_argument(
        "--no-extensions",
        action="store_true",
        help="hide revisions, rollback, logs and wait, as plain BentoCloud does",
    )


def _run_server(args: argparse.Namespace) -> int:
    from .server import run_server

    run_server(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir or default_home(),
        token=args.token,
        readiness_timeout=args.readiness_timeout,
        rollback_window=args.rollback_window,
        scale_to_zero_after=args.scale_to_zero_after,
        max_archive_bytes=args.max_archive_bytes,
        extensions=not args.no_extensions,
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bentoship", description="Ship BentoML services from ML pipelines."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_server(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"server": _run_server}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
