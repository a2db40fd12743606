"""
.. currentmodule:: flytekitplugins.bentoship

flytekit plugin for bentoship: ship BentoML services from Flyte workflows.

.. autosummary::
   :template: custom.rst
   :toctree: generated/

   build_bento
   push_bento
   deploy_bento
   wait_for_deployment
   smoke_test_deployment
   rollback_deployment
   deploy_and_wait
   BentoDeploymentTask
   BentoDeploymentConnector
   BentoDeploymentMetadata

Importing this package (flytekit does so through the ``flytekit.plugins`` entry point) registers
the connector for the ``bentoship_deployment`` task type. It imports neither bentoml nor httpx.
"""

from ._connection import API_KEY_SECRET
from .connector import BentoDeploymentConnector, BentoDeploymentMetadata
from .task import BentoDeploymentConfig, BentoDeploymentTask
from .tasks import (
    BuildOutputs,
    DeployAndWaitOutputs,
    build_bento,
    deploy_and_wait,
    deploy_bento,
    push_bento,
    rollback_deployment,
    smoke_test_deployment,
    wait_for_deployment,
)

__version__ = "0.1.0"

__all__ = [
    "API_KEY_SECRET",
    "BentoDeploymentConfig",
    "BentoDeploymentConnector",
    "BentoDeploymentMetadata",
    "BentoDeploymentTask",
    "BuildOutputs",
    "DeployAndWaitOutputs",
    "build_bento",
    "deploy_and_wait",
    "deploy_bento",
    "push_bento",
    "rollback_deployment",
    "smoke_test_deployment",
    "wait_for_deployment",
]
