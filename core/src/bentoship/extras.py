"""The optional parts of bentoship: ``[build]`` (build and push) and ``[server]`` (control plane).

``pip install bentoship`` gives the client, the CLI and the steps that need only the API. A step
that needs an extra imports its modules through :func:`require`, which says in one line which
extra to install when they are missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

__all__ = ["SERVER_MODULES", "require"]

SERVER_MODULES = ("starlette", "uvicorn", "aiohttp", "httptools", "yaml", "jinja2", "orjson")
"""What the control plane imports beyond the client (bentoml runs in its own processes)."""


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra`` if it is absent.

    Only the absence of ``module`` itself (or of a package it belongs to) is reported as a
    missing extra; an installed module that fails to import raises its own error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise MissingExtraError(feature, extra) from None
        raise
