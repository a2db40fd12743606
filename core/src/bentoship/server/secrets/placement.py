"""Where the secrets key and the runtime folder go: never inside the data directory."""

from __future__ import annotations

from pathlib import Path

from .delivery import default_runtime_base
from .sealing import default_key_file, inside

__all__ = ["apart_from"]


def apart_from(
    data_dir: Path, key_file: Path | None, runtime_dir: Path | None
) -> tuple[Path, Path]:
    """The key file and runtime folder to use (given, else defaults), or SystemExit in one line
    when either lies inside ``data_dir``."""
    key = (key_file or default_key_file()).expanduser().resolve()
    runtime = (runtime_dir or default_runtime_base()).expanduser().resolve()
    for what, path, flag in (
        ("secrets key file", key, "--secrets-key-file"),
        ("runtime dir", runtime, "--runtime-dir"),
    ):
        if inside(path, data_dir):
            raise SystemExit(
                f"bentoship server: the {what} {path} is inside the data dir {data_dir}; "
                f"give {flag} outside it, so that the state never holds secret values or their key"
            )
    return key, runtime
