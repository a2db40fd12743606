"""Bento and model tags: ``name:version``."""

from __future__ import annotations

import re

from .errors import InvalidRequestError

__all__ = ["NAME_PATTERN", "TAG_PATTERN", "VERSION_PATTERN", "check_tag"]

NAME = r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?"
VERSION = r"[A-Za-z0-9][-A-Za-z0-9_.]*"
NAME_PATTERN = re.compile(rf"^{NAME}$")
"""A bento or model repository name."""
VERSION_PATTERN = re.compile(rf"^{VERSION}$")
TAG_PATTERN = re.compile(rf"^{NAME}:{VERSION}$")


def check_tag(tag: object) -> str:
    """Return ``tag`` if it reads ``name:version``; raise InvalidRequestError otherwise."""
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise InvalidRequestError(
            f"{tag!r} is not a bento tag; give 'name:version' (or an exported .bento file to push)"
        )
    return tag
