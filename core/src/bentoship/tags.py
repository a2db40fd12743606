"""Bento tags: ``name:version``."""

from __future__ import annotations

import re

from .errors import InvalidRequestError

TAG_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?:[A-Za-z0-9][-A-Za-z0-9_.]*$")


def check_tag(tag: object) -> str:
    """Return ``tag`` if it reads ``name:version``; raise InvalidRequestError otherwise."""
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise InvalidRequestError(
            f"{tag!r} is not a bento tag; give 'name:version' (or an exported .bento file to push)"
        )
    return tag
