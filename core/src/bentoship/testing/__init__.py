"""Test a Bento as it will be deployed: on a local control plane started for the tests, or on
any plane (BentoCloud included).

pytest gets the fixtures of :mod:`bentoship.testing.plugin` (registered as the ``bentoship``
plugin); unittest and scripts use :func:`local_deployment` and :func:`control_plane`.
"""

from .builds import BuildCache, default_build_cache
from .deployments import Deployer, DeploymentHandle, local_deployment
from .expect import LatencyReport, expect_answers, expect_latency, set_update_golden
from .pipeline import run_pytest
from .planes import ServerHandle, control_plane

__all__ = [
    "BuildCache",
    "Deployer",
    "DeploymentHandle",
    "LatencyReport",
    "ServerHandle",
    "control_plane",
    "default_build_cache",
    "expect_answers",
    "expect_latency",
    "local_deployment",
    "run_pytest",
    "set_update_golden",
]
