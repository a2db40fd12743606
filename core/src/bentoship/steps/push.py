"""The push step: upload a Bento (from the local store or an exported archive) to the server."""

from __future__ import annotations

from pathlib import Path

from ..client import Client
from ..errors import InvalidRequestError, NotFoundError, ServerUnavailableError
from ..tags import check_tag
from .local_store import import_bento_file


def push(bento: str | Path, *, client: Client | None = None, force: bool = False) -> str:
    """Upload ``bento`` (a tag, or a path to an exported archive) and return its tag.

    A bento the server already has is a fast no-op unless ``force`` is set.
    """
    import bentoml
    from bentoml.exceptions import BentoMLException
    from bentoml.exceptions import NotFound as BentoNotFound

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
    cloud = bentoml.cloud.BentoCloudClient(  # type: ignore[call-arg]
        api_key=client.connection.token, endpoint=client.endpoint
    )
    try:
        bentoml.bentos.push(tag, force=force, _cloud_client=cloud)
    except BentoNotFound:
        raise NotFoundError(
            f"bento {tag} is not in the local bento store; build it first or pass its archive"
        ) from None
    except BentoMLException as exc:
        raise ServerUnavailableError(
            f"push of {tag} failed: {' '.join(str(exc).split())}"
        ) from None
    if not client.bento_uploaded(tag):
        raise ServerUnavailableError(f"push of {tag} did not complete on {client.endpoint}; retry")
    return tag
