"""Kubeflow Pipelines v2 components for bentoship.

``bentoship_kfp.components`` holds the lightweight components (``build_bento``, ``push_bento``,
``deploy_bento``, ``wait_for_deployment``, ``smoke_test_deployment``, ``promote_deployment``,
``analyze_canary``, ``analyze_shadow``, ``rollback_deployment``, ``check_drift``,
``export_monitoring``, ``send_feedback``, ``check_quality``, ``request_approval``);
:func:`load_component` loads the same components from their compiled YAML, shipped with this
package. Every component runs in one image: :data:`DEFAULT_IMAGE`, or the one the
``BENTOSHIP_KFP_IMAGE`` environment variable names. Importing this package imports kfp, never
bentoship or bentoml.
"""

from ._image import DEFAULT_IMAGE, IMAGE_ENV, configured_image
from ._version import __version__
from .shipped import COMPONENT_NAMES, load_component, load_components, yaml_path, yaml_text

__all__ = [
    "COMPONENT_NAMES",
    "DEFAULT_IMAGE",
    "IMAGE_ENV",
    "__version__",
    "configured_image",
    "load_component",
    "load_components",
    "yaml_path",
    "yaml_text",
]
