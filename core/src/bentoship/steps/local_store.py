"""Bring exported bentos and models into the local bentoml store."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidRequestError

TAG_IN_TEXT = re.compile(r"[a-z0-9][-a-z0-9_.]*:[A-Za-z0-9][-A-Za-z0-9_.]*")


def _import(kind: str, path: str | Path) -> str:
    from ..extras import require

    require("bentoml", feature=f"importing an exported {kind}", extra="build")
    import bentoml
    from bentoml.exceptions import BentoMLException

    file = Path(path)
    if not file.is_file():
        raise InvalidRequestError(f"{kind} file {file} does not exist; pass an exported {kind}")
    importer = bentoml.bentos.import_bento if kind == "bento" else bentoml.models.import_model
    try:
        return str(importer(str(file)).tag)
    except BentoMLException as exc:
        text = " ".join(str(exc).split())
        match = TAG_IN_TEXT.search(text)
        if "already exists" in text and match:
            return match.group(0)
        raise InvalidRequestError(f"{file} is not a usable exported {kind}: {text}") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"{file} is not an exported {kind}: {exc}") from None


def import_bento_file(path: str | Path) -> str:
    """Import an exported ``.bento`` archive (or a pushed tar); return its tag."""
    return _import("bento", path)


def import_model_file(path: str | Path) -> str:
    """Import an exported model (``bentoml.models.export_model``); return its tag."""
    return _import("model", path)
