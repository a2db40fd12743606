"""Put first on a revision's ``PYTHONPATH`` by the control plane, as ``opentelemetry-instrument``
puts its own ``sitecustomize``: bentoml's ASGI OpenTelemetry middleware is then made without
its spans of each ASGI message (``POST /x http send``, ``… http receive``). A traced request
makes three or more of them; creating and exporting them costs the service more CPU than the
request's server span, and the control plane's receiver drops them anyway.

Nothing is imported ahead: the middleware's module is changed when the service imports it,
and only where it takes ``exclude_spans``. Then the ``sitecustomize`` that this one hides on
the path, if any, runs as it would have.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MIDDLEWARE_MODULE = "opentelemetry.instrumentation.asgi"
EXCLUDED = ["receive", "send"]


def without_message_spans(module: ModuleType) -> bool:
    """Make the module's ``OpenTelemetryMiddleware`` exclude message spans unless told
    otherwise; False where it cannot."""
    middleware = getattr(module, "OpenTelemetryMiddleware", None)
    init = getattr(middleware, "__init__", None)
    if middleware is None or init is None:
        return False
    if getattr(init, "excludes_messages", False):
        return True
    if "exclude_spans" not in inspect.signature(init).parameters:
        return False

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exclude_spans", EXCLUDED)
        init(self, *args, **kwargs)

    __init__.excludes_messages = True  # type: ignore[attr-defined]
    middleware.__init__ = __init__
    return True


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        with contextlib.suppress(Exception):  # else the service runs as bentoml made it
            without_message_spans(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != MIDDLEWARE_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _run_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    hidden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hidden)


if MIDDLEWARE_MODULE in sys.modules:
    without_message_spans(sys.modules[MIDDLEWARE_MODULE])
else:
    sys.meta_path.insert(0, _Finder())
_run_hidden_sitecustomize()
