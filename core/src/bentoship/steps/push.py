"""The push step: upload a Bento (from the local store or an exported archive) to the server."""

from __future__ import annotations

from pathlib import Path

from .._http import retry_call
from ..client import Client
from ..errors import InvalidRequestError, NotFoundError, ServerUnavailableError
from ..tags import check_tag
from .local_store import import_bento_file


def push(bento: str | Path, *, client: Client | None = None, force: bool = False) -> str:
    """Upload ``bento`` (a tag, or a path to an exported archive) and return its tag.

    A bento the server already has is a fast no-op unless ``force`` is set.
    """
    client = client or Client()
    path = Path(bento)
    if isinstance(bento, Path) or path.suffix == ".bento" or path.is_file():
        if not path.is_file():
            raise InvalidRequestError(f"bento archive {path} does not exist")
        tag = import_bento_file(path)
    else:
        tag = check_tag(str(bento))
    if not force and client.bento_uploaded(tag):
        return tag
    retry_call(
        client.retry,
        lambda: _upload(tag, client, force=force),
        lambda exc: isinstance(exc, ServerUnavailableError),
    )
    return tag


def _upload(tag: str, client: Client, *, force: bool) -> None:
    """One attempt with bentoml's own uploader; a retried upload replaces a partial one."""
    from ..extras import require

    require("bentoml", feature="the push step", extra="build")
    import bentoml
    import httpx
    from bentoml.exceptions import BentoMLException
    from bentoml.exceptions import NotFound as BentoNotFound

    cloud = bentoml.cloud.BentoCloudClient(  # type: ignore[call-arg]
        api_key=client.connection.token, endpoint=client.endpoint
    )
    try:
        bentoml.bentos.push(tag, force=force, _cloud_client=cloud)
    except BentoNotFound:
        raise NotFoundError(
            f"bento {tag} is not in the local bento store; build it first or pass its archive"
        ) from None
    except (BentoMLException, httpx.HTTPError, OSError) as exc:
        raise ServerUnavailableError(
            f"push of {tag} failed: {' '.join(str(exc).split())[:300]}"
        ) from None
    if not client.bento_uploaded(tag):
        raise ServerUnavailableError(f"push of {tag} did not complete on {client.endpoint}; retry")
