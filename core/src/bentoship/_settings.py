"""Policies built from the plain mappings orchestrators pass around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from .errors import InvalidRequestError

__all__ = ["from_mapping"]

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, what: str) -> T:
    """``cls`` (a dataclass) from ``data``: an unknown key, or a value the constructor refuses,
    is one InvalidRequestError naming ``what`` (``canary``, ``shadow``, ``quality``)."""
    values = dict(data or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidRequestError(
            f"unknown {what} setting {unknown[0]!r}; use one of {', '.join(sorted(known))}"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise InvalidRequestError(f"{what} policy: {exc}") from None
