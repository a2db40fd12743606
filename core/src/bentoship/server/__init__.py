"""The local control plane: a BentoCloud-compatible server that runs deployments on this machine."""

from .main import run_server
from .settings import ServerSettings

__all__ = ["ServerSettings", "run_server"]
