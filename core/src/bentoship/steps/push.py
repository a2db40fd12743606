"""The push step: upload a Bento (from the local store or an exported archive) to the server."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from .._http import retry_call
from ..client import Client
from ..errors import InvalidRequestError, NotFoundError, ServerUnavailableError
from ..tags import check_tag
from .local_store import import_bento_file

if TYPE_CHECKING:
    from rich.console import Console


def push(bento: str | Path, *, client: Client | None = None, force: bool = False) -> str:
    """Upload ``bento`` (a tag, or a path to an exported archive) and return its tag.

    ``name:latest`` is the newest version of ``name`` in the local store, and the tag returned
    is that version's.

    A bento the server already has is a fast no-op unless ``force`` is set. bentoml's
    progress display goes to stderr, never stdout, and ends with a newline.
    """
    client = client or Client()
    path = Path(bento)
    if isinstance(bento, Path) or path.suffix == ".bento" or path.is_file():
        if not path.is_file():
            raise InvalidRequestError(f"bento archive {path} does not exist")
        tag = import_bento_file(path)
    else:
        tag = check_tag(str(bento))
        if tag.endswith(":latest"):
            tag = _newest_local(tag)
    if not force and client.bento_uploaded(tag):
        return tag
    retry_call(
        client.retry,
        lambda: _upload(tag, client, force=force),
        lambda exc: isinstance(exc, ServerUnavailableError),
    )
    return tag


def _newest_local(tag: str) -> str:
    """``name:latest`` as the newest version of ``name`` in the local bento store."""
    from ..extras import require

    require("bentoml", feature="the push step", extra="build")
    import bentoml
    from bentoml.exceptions import NotFound as BentoNotFound

    try:
        return str(bentoml.bentos.get(tag).tag)
    except BentoNotFound:
        raise NotFoundError(
            f"no bento {tag.partition(':')[0]} in the local bento store; build it first"
        ) from None


def _upload(tag: str, client: Client, *, force: bool) -> None:
    """One attempt with bentoml's own uploader; a retried upload replaces a partial one."""
    from ..extras import require

    require("bentoml", feature="the push step", extra="build")
    import attrs
    import bentoml
    import httpx
    from bentoml._internal.cloud.base import Spinner
    from bentoml.exceptions import BentoMLException
    from bentoml.exceptions import NotFound as BentoNotFound

    cloud = bentoml.cloud.BentoCloudClient(  # type: ignore[call-arg]
        api_key=client.connection.token, endpoint=client.endpoint
    )
    try:
        with _progress_on_stderr() as console:
            bento = bentoml.bentos.get(tag)
            # bentoml draws its progress with the Spinner of its bento API, made on rich's
            # global console (stdout); the same API with a Spinner of our own draws on stderr
            attrs.evolve(cloud.bento, spinner=Spinner(console=console)).push(bento, force=force)
    except BentoNotFound:
        raise NotFoundError(
            f"bento {tag} is not in the local bento store; build it first or pass its archive"
        ) from None
    except (BentoMLException, httpx.HTTPError, OSError) as exc:
        raise ServerUnavailableError(
            f"push of {tag} failed: {' '.join(str(exc).split())[:300]}"
        ) from None
    if not client.bento_uploaded(tag):
        raise ServerUnavailableError(
            f"push of {tag}: bentoml reported success, but {client.endpoint} has not finished "
            "the upload; retry"
        )


class _LineTracker(io.TextIOBase):
    """A text stream that writes through to another and knows whether a line is left open."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.line_open = False

    def write(self, text: str) -> int:
        if text:
            self.line_open = not text.endswith("\n")
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding or "utf-8"


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[Console]:
    """A rich console on the current stderr; whatever it leaves unfinished ends with a newline.

    In a log (not a terminal) rich draws the final progress bar without a line break, so the
    next line of the task's output would be glued to it.
    """
    from rich.console import Console

    tracker = _LineTracker(sys.stderr)
    try:
        yield Console(file=cast(TextIO, tracker))
    finally:
        if tracker.line_open:
            tracker.write("\n")
            tracker.flush()
