"""The one image every component runs in, and how to point components at another one.

The default is the image ``kfp_components/Dockerfile`` builds, tagged with this package's
version. ``BENTOSHIP_KFP_IMAGE`` replaces it for every component: ``bentoship_kfp.components``
reads it when it is imported, :func:`bentoship_kfp.load_component` when it loads a component.
"""

import copy
import json
import os
import re
from typing import TypeVar

from kfp.components import load_component_from_text
from kfp.dsl.base_component import BaseComponent
from kfp.dsl.python_component import PythonComponent

from ._version import __version__

IMAGE_ENV = "BENTOSHIP_KFP_IMAGE"
"""The environment variable that sets the image of every component."""

IMAGE_REPOSITORY = "ghcr.io/bentoship/bentoship-kfp"
PYTHON_VERSION = "3.11"

DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}-python{PYTHON_VERSION}"
"""The image the components are compiled with (and the shipped YAML holds): the tag carries
this package's version, so an upgrade of bentoship-kfp means a new image."""

_Python = TypeVar("_Python", bound=PythonComponent)

_IMAGE_LINE = re.compile(r"^(?P<indent>\s+)image: (?P<image>\S.*)$", re.MULTILINE)


def configured_image() -> str:
    """The image the components should run in: ``$BENTOSHIP_KFP_IMAGE``, else the default."""
    return os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE


def image_of(component: BaseComponent) -> str:
    """The container image a (lightweight or YAML) component runs in."""
    return str(component.component_spec.implementation.container.image)


def python_component_with_image(component: _Python, image: str) -> _Python:
    """A copy of a lightweight component that runs in ``image``; its class is kept (caching)."""
    if image_of(component) == image:
        return component
    spec = copy.deepcopy(component.component_spec)
    spec.implementation.container.image = image
    rebased: _Python = type(component)(spec, component.python_func)
    return rebased


def yaml_with_image(text: str, image: str) -> str:
    """Compiled component YAML whose container runs in ``image``; nothing else changes.

    A component loaded from YAML runs what its text says (kfp reads the pipeline spec from the
    text, not from the parsed component), so the image is replaced in the text itself.
    """
    images = [match["image"] for match in _IMAGE_LINE.finditer(text)]
    if len(images) != 1:
        raise ValueError(f"expected one container image in the component YAML, found {images}")
    if images[0] == image:
        return text
    replaced = _IMAGE_LINE.sub(
        lambda m: f"{m['indent']}image: {json.dumps(image)}", text
    )  # a JSON string is a valid YAML scalar, whatever the image name holds
    if image_of(load_component_from_text(replaced)) != image:
        raise ValueError(f"could not set the image {image!r} in the component YAML")
    return replaced
