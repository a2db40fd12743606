"""The compiled YAML of every component, shipped as package data, and how to load it.

Load these when a pipeline should not depend on this package's Python code at compile time,
for example to pin the exact component definitions that were reviewed:

    build_bento = load_component("build_bento")

The shipped files hold the default image (:data:`bentoship_kfp.DEFAULT_IMAGE`). A component is
loaded with the image ``BENTOSHIP_KFP_IMAGE`` names, when it is set, or the one ``image=``
gives; only the image changes.

``python -m bentoship_kfp.compile`` rewrites the files from ``bentoship_kfp.components``.
"""

from importlib import resources
from pathlib import Path

from kfp.components import load_component_from_text
from kfp.dsl.base_component import BaseComponent

from ._caching import UNCACHED, UncachedYamlComponent
from ._image import configured_image, yaml_with_image

COMPONENT_NAMES = (
    "build_bento",
    "push_bento",
    "deploy_bento",
    "wait_for_deployment",
    "smoke_test_deployment",
    "promote_deployment",
    "analyze_canary",
    "analyze_shadow",
    "rollback_deployment",
    "check_drift",
    "export_monitoring",
    "send_feedback",
    "check_quality",
    "request_approval",
)
YAML_PACKAGE = "bentoship_kfp.component_yaml"


def yaml_text(name: str) -> str:
    """The shipped YAML of one component."""
    if name not in COMPONENT_NAMES:
        known = ", ".join(COMPONENT_NAMES)
        raise ValueError(f"no bentoship component {name!r}; use one of {known}")
    return resources.files(YAML_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def yaml_path(name: str) -> Path:
    """Where the shipped YAML of one component is (for ``kfp`` tools that want a file)."""
    yaml_text(name)  # validates the name and that the file is there
    return Path(str(resources.files(YAML_PACKAGE).joinpath(f"{name}.yaml")))


def load_component(name: str, image: str | None = None) -> BaseComponent:
    """Load one component from its shipped YAML; every component but build_bento stays uncached.

    It runs in ``image``; by default in the image ``BENTOSHIP_KFP_IMAGE`` names (read now),
    else in the shipped default image.
    """
    text = yaml_with_image(yaml_text(name), image or configured_image())
    component = load_component_from_text(text)
    if name in UNCACHED:
        return UncachedYamlComponent(component.component_spec, component.component_yaml)
    return component


def load_components(image: str | None = None) -> dict[str, BaseComponent]:
    """Every component loaded from its shipped YAML, by name, all running in one image."""
    return {name: load_component(name, image) for name in COMPONENT_NAMES}
