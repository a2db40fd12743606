"""Every option of ``bentoship server``, declared once: its flag, type, default, environment
variable and help.

From this one list come the CLI's flags (:func:`add_arguments`), the server's settings
(:func:`settings_values`, read by ``server.main``) and the arguments the ``LocalControlPlane``
launcher passes (:func:`command_args`). An option's environment variable
(``BENTOSHIP_<NAME>``) is its default when set; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OPTIONS",
    "Option",
    "add_arguments",
    "command_args",
    "duration",
    "gpu_indices",
    "header_pairs",
    "otlp_url",
    "positive_seconds",
    "sample_rate",
    "settings_values",
]

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``24h`` or ``7d``."""
    unit = DURATION_UNITS.get(text[-1:], 1.0) if text else 1.0
    number = text[:-1] if text[-1:] in DURATION_UNITS else text
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:20]!r} is not a duration: give seconds, or 90s, 10m, 24h, 7d"
        ) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError("a duration must be above zero")
    return seconds


def positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, got {value[:20]!r}"
        ) from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return number


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value[:20]!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {value}")
    return number


def sample_rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a rate from 0 to 1, got {value[:20]!r}"
        ) from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate from 0 to 1, got {value}")
    return number


def header_pairs(value: str) -> tuple[tuple[str, str], ...]:
    """``K=V,K2=V2`` as pairs (an OTLP backend's headers)."""
    pairs = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        key, sep, text = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected headers like K=V,K2=V2, got {part[:20]!r}")
        pairs.append((key.strip(), text.strip()))
    return tuple(pairs)


def _show_headers(pairs: tuple[tuple[str, str], ...] | str) -> str:
    if isinstance(pairs, str):
        return _show_headers(header_pairs(pairs))
    return ",".join(f"{key}={value}" for key, value in pairs)


def otlp_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"expected an OTLP/HTTP traces URL such as http://127.0.0.1:4318/v1/traces, got "
            f"{value[:40]!r}"
        )
    return value


def gpu_indices(value: str) -> tuple[int, ...]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected GPU indices like 0,1, got {value}")
    return tuple(int(part) for part in parts)


def _path(value: str) -> Path:
    return Path(value).expanduser()


@dataclass(frozen=True)
class Option:
    """One server option: the setting ``name`` (``ServerSettings.<name>``)."""

    name: str
    parse: Callable[[str], Any] | None
    """Text to value; None for a switch (``--no-<name>`` turns a true default off)."""
    default: Any
    help: str
    metavar: str | None = None
    env: str | None = None
    """Its environment variable, when not ``BENTOSHIP_<NAME>``."""
    show: Callable[[Any], str] = str
    """Value to the text ``parse`` reads back (what the launcher passes)."""

    @property
    def flag(self) -> str:
        return f"--no-{self.name.replace('_', '-')}" if self.parse is None else self.cli_flag

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or f"BENTOSHIP_{self.name.upper()}"

    def from_env(self, environ: Mapping[str, str]) -> Any:
        """The default, or the value of its environment variable when that is set."""
        text = environ.get(self.env_var)
        if not text:
            return self.default
        if self.parse is None:
            return text.strip().lower() not in ("0", "false", "no", "off")
        try:
            return self.parse(text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise SystemExit(f"bentoship server: ${self.env_var}: {exc}") from None


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "127.0.0.1", "address to bind (default 127.0.0.1)"),
    Option("port", int, 0, "port to bind; 0 picks a free one"),
    Option(
        "data_dir",
        _path,
        None,
        "state directory (default $BENTOSHIP_HOME or ~/.bentoship)",
        env="BENTOSHIP_HOME",
    ),
    Option("token", str, None, "API token (default: generated once, kept in the data dir)"),
    Option(
        "secrets_key_file",
        _path,
        None,
        "key that seals secrets, made 0600 on first use; must be outside the data dir "
        "(default $BENTOSHIP_SECRETS_KEY_FILE or ~/.config/bentoship/secrets.key)",
    ),
    Option(
        "runtime_dir",
        _path,
        None,
        "where revisions' secret files live while they run, outside the data dir "
        "(default $BENTOSHIP_RUNTIME_DIR, $XDG_RUNTIME_DIR, /dev/shm or the temp dir)",
    ),
    Option(
        "readiness_timeout",
        positive_seconds,
        120.0,
        "seconds a new revision has to answer /readyz before it is failed (default 120)",
    ),
    Option(
        "rollback_window",
        positive_seconds,
        300.0,
        "seconds the previous revision is kept warm after a switch (default 300)",
    ),
    Option(
        "scale_to_zero_after",
        positive_seconds,
        300.0,
        "idle seconds before a min_replicas=0 deployment is scaled to zero (default 300)",
    ),
    Option(
        "restart_backoff_max",
        positive_seconds,
        30.0,
        "longest wait between two starts of a lost serving replica (default 30)",
    ),
    Option(
        "crash_loop_after",
        _count,
        1,
        "crashes while starting after which a revision is failed (default 1; raise it for "
        "services whose start can fail once and then succeed)",
        metavar="N",
    ),
    Option(
        "max_archive_bytes",
        _count,
        2 * 1024**3,
        "largest accepted bento or model archive, unpacked (default 2 GiB)",
        metavar="BYTES",
    ),
    Option(
        "extensions",
        None,
        True,
        "hide revisions, rollback, logs and wait, as plain BentoCloud does",
    ),
    Option(
        "metrics",
        None,
        True,
        "count no request and keep no metrics (the traffic counts of canary analysis too)",
    ),
    Option(
        "metrics_retention",
        duration,
        24 * 3600.0,
        "how long metrics are kept: seconds, or 90s, 10m, 24h, 7d (default 24h)",
        metavar="DURATION",
    ),
    Option(
        "metrics_max_bytes",
        _count,
        512 * 1024**2,
        "size of the metrics store above which its oldest half is deleted (default 512 MiB)",
        metavar="BYTES",
    ),
    Option(
        "metrics_interval",
        positive_seconds,
        10.0,
        "seconds between two samples of each revision's metrics (default 10)",
    ),
    Option(
        "monitoring_retention",
        duration,
        7 * 86400.0,
        "how long the records services log with bentoml.monitor are kept (default 7d)",
        metavar="DURATION",
    ),
    Option(
        "trace_sample",
        sample_rate,
        0.1,
        "share of the endpoints' requests traced, 0-1 (default 0.1); requests to a candidate, "
        "and requests whose caller sent a sampled traceparent, are always traced",
        metavar="RATE",
    ),
    Option(
        "parent_pid",
        int,
        None,
        "stop, as on SIGTERM, once process PID has exited (the program that started this "
        "server, so that a killed test run or script leaves no server behind)",
        metavar="PID",
    ),
    Option(
        "notify",
        str,
        None,
        "send the deployments' events to this webhook: URL, or URL#kind,kind for some kinds "
        "(CloudEvents JSON, signed; more webhooks through the API)",
        metavar="URL",
    ),
    Option(
        "otlp_endpoint",
        otlp_url,
        None,
        "send every stored span on to this OTLP/HTTP traces URL (a Collector, Jaeger, Tempo)",
        metavar="URL",
    ),
    Option(
        "otlp_headers",
        header_pairs,
        (),
        "headers for the OTLP backend, K=V,K2=V2 (set them in $BENTOSHIP_OTLP_HEADERS to keep "
        "them off the command line)",
        metavar="HEADERS",
        show=_show_headers,
    ),
    Option(
        "monitoring_rotate_bytes",
        _count,
        16 * 1024**2,
        "size at which a worker's bentoml.monitor data file rotates (default 16 MiB)",
        metavar="BYTES",
    ),
    Option(
        "log_lines_per_revision",
        _count,
        100_000,
        "log lines kept per revision, the newest (default 100000)",
        metavar="N",
    ),
    Option(
        "gpus",
        gpu_indices,
        None,
        "the GPUs (NVML indices) deployments may use (default: every GPU NVML finds)",
        metavar="0,1",
        show=lambda value: ",".join(map(str, value)),
    ),
    Option(
        "gpu_inventory",
        _path,
        None,
        "a JSON list of simulated GPUs [{index, name, memory_bytes}] used instead of NVML "
        "(tests and demos)",
        metavar="FILE",
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}


def add_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """One flag per option, its default read from its environment variable when set."""
    environ = os.environ if environ is None else environ
    for option in OPTIONS:
        default = option.from_env(environ)
        if option.parse is None:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action="store_false",
                default=default,
                help=f"{option.help} (${option.env_var}=0)",
            )
            continue
        parser.add_argument(
            option.cli_flag,
            dest=option.name,
            type=option.parse,
            default=default,
            metavar=option.metavar,
            help=f"{option.help} (${option.env_var})",
        )


def settings_values(namespace: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value, by setting name, from parsed flags (or a mapping of them)."""
    values = vars(namespace) if isinstance(namespace, argparse.Namespace) else namespace
    return {option.name: values.get(option.name, option.default) for option in OPTIONS}


def command_args(values: Mapping[str, Any]) -> list[str]:
    """The ``bentoship server`` arguments that give these option values (an unknown name is a
    TypeError; None leaves an option to its default)."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        known = ", ".join(BY_NAME)
        raise TypeError(f"no server option {', '.join(unknown)}; the options are: {known}")
    args: list[str] = []
    for name, value in values.items():
        option = BY_NAME[name]
        if value is None:
            continue
        if option.parse is None:
            if not value:
                args.append(option.flag)
            continue
        args += [option.cli_flag, option.show(value)]
    return args
