"""The local control plane: a BentoCloud-compatible server that runs deployments on this machine."""

from .process import LocalControlPlane
from .settings import ServerSettings


def run_server(**kwargs: object) -> None:
    """Run the server in this process until SIGTERM (see ``bentoship server --help``)."""
    from .main import run_server as _run

    _run(**kwargs)  # type: ignore[arg-type]


__all__ = ["LocalControlPlane", "ServerSettings", "run_server"]
