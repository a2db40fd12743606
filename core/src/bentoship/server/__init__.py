"""The local control plane: a BentoCloud-compatible server that runs deployments on this machine."""

from typing import Any

from .process import LocalControlPlane
from .settings import ServerSettings


def run_server(**kwargs: Any) -> None:
    """Run the server in this process until SIGTERM (see ``bentoship server --help``).

    The server's modules (starlette, uvicorn) load only here, not for ``LocalControlPlane``.
    """
    from ..extras import SERVER_MODULES, require

    for module in SERVER_MODULES:
        require(module, feature="bentoship server", extra="server")
    from .main import run_server as _run

    _run(**kwargs)


__all__ = ["LocalControlPlane", "ServerSettings", "run_server"]
