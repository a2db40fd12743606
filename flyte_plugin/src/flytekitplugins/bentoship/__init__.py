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
   promote_deployment
   analyze_canary
   analyze_shadow
   request_approval
   rollback_deployment
   deploy_and_wait
   check_drift
   export_monitoring
   send_feedback
   check_quality
   workflow_with_rollback
   RollbackOnFailure
   IMAGE
   image_spec
   BentoDeploymentTask
   BentoDeploymentConnector
   BentoDeploymentMetadata

Importing this package (flytekit does so through the ``flytekit.plugins`` entry point) registers
the connector for the ``bentoship_deployment`` task type. It imports neither bentoml nor httpx.
Every task runs in :data:`IMAGE` (bentoship's ``ImageSpec``, or ``$BENTOSHIP_FLYTE_IMAGE``).
"""

from ._connection import API_KEY_SECRET
from ._version import __version__
from .connector import BentoDeploymentConnector, BentoDeploymentMetadata
from .image import IMAGE, image_spec
from .monitoring import (
    DriftOutputs,
    ExportOutputs,
    FeedbackOutputs,
    QualityOutputs,
    check_drift,
    check_quality,
    export_monitoring,
    send_feedback,
)
from .rollback import RollbackOnFailure, workflow_with_rollback
from .task import BentoDeploymentConfig, BentoDeploymentTask
from .tasks import (
    ApprovalOutputs,
    BuildOutputs,
    DeployAndWaitOutputs,
    analyze_canary,
    analyze_shadow,
    build_bento,
    deploy_and_wait,
    deploy_bento,
    promote_deployment,
    push_bento,
    request_approval,
    rollback_deployment,
    smoke_test_deployment,
    wait_for_deployment,
)

__all__ = [
    "API_KEY_SECRET",
    "IMAGE",
    "ApprovalOutputs",
    "BentoDeploymentConfig",
    "BentoDeploymentConnector",
    "BentoDeploymentMetadata",
    "BentoDeploymentTask",
    "BuildOutputs",
    "DeployAndWaitOutputs",
    "DriftOutputs",
    "ExportOutputs",
    "FeedbackOutputs",
    "QualityOutputs",
    "RollbackOnFailure",
    "__version__",
    "analyze_canary",
    "analyze_shadow",
    "build_bento",
    "check_drift",
    "check_quality",
    "deploy_and_wait",
    "deploy_bento",
    "export_monitoring",
    "image_spec",
    "promote_deployment",
    "push_bento",
    "request_approval",
    "rollback_deployment",
    "send_feedback",
    "smoke_test_deployment",
    "wait_for_deployment",
    "workflow_with_rollback",
]
