"""Kubeflow Pipelines v2 components for bentoship.

``bentoship_kfp.components`` holds the lightweight components (``build_bento``, ``push_bento``,
``deploy_bento``, ``wait_for_deployment``, ``smoke_test_deployment``, ``rollback_deployment``);
:func:`load_component` loads the same components from their compiled YAML, shipped with this
package. Importing this package imports kfp, never bentoship or bentoml.
"""

from .shipped import COMPONENT_NAMES, load_component, load_components, yaml_path, yaml_text

__version__ = "0.1.0"

__all__ = [
    "COMPONENT_NAMES",
    "__version__",
    "load_component",
    "load_components",
    "yaml_path",
    "yaml_text",
]
