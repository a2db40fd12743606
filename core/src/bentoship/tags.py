"""Bento and model tags: ``name:version``."""

from __future__ import annotations

import re

from .errors import InvalidRequestError

__all__ = ["NAME_PATTERN", "TAG_PATTERN", "VERSION_PATTERN", "check_tag", "shown"]

SHOWN_CHARACTERS = 80


def shown(value: object) -> str:
    """``repr(value)``, cut to a short prefix: an error never echoes a huge input."""
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}... ({len(text)} characters)"


NAME = r"[a-z0-9](?:[-a-z0-9_.]{0,61}[a-z0-9])?"
VERSION = r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}"
NAME_PATTERN = re.compile(rf"\A{NAME}\Z")
"""A bento or model repository name: at most 63 characters, as bentoml's own tags."""
VERSION_PATTERN = re.compile(rf"\A{VERSION}\Z")
TAG_PATTERN = re.compile(rf"\A{NAME}:{VERSION}\Z")
"""The whole text must match: ``\\Z``, not ``$``, which also matches before a final newline."""


def check_tag(tag: object) -> str:
    """Return ``tag`` if it reads ``name:version``; raise InvalidRequestError otherwise."""
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise InvalidRequestError(
            f"{shown(tag)} is not a bento tag; give 'name:version' (at most 63 characters each; "
            "or an exported .bento file to push)"
        )
    return tag
