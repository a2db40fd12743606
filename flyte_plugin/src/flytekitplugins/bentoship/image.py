"""The container image the plugin's tasks run in: bentoship, bentoml and this plugin.

Every task of the plugin carries :data:`IMAGE`, so ``pyflyte package`` and ``pyflyte register``
serialize it with bentoship's image instead of flytekit's default image (which has neither
bentoship nor bentoml). By default :data:`IMAGE` is an ``ImageSpec`` whose name and tag are
computed from the spec alone (no build, no registry call)::

    ghcr.io/bentoship/bentoship-flyte:<plugin version>-<hash of the spec>

Two environment variables, read when this module is imported, change it:

- ``BENTOSHIP_FLYTE_IMAGE``: an image name used as is (an image you built and pushed yourself),
  or a flytekit image template such as ``{{.image.default}}``, which follows ``pyflyte --image``.
- ``BENTOSHIP_FLYTE_REGISTRY``: the registry of the ``ImageSpec``, for ``pyflyte build`` /
  ``pyflyte register`` to build and push it there.

One call in a workflow takes another image with ``.with_overrides(container_image=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from flytekit.image_spec import ImageSpec

import bentoship

from ._version import __version__

IMAGE_ENV = "BENTOSHIP_FLYTE_IMAGE"
"""An image name (or flytekit image template) that replaces the ``ImageSpec`` as it is."""
REGISTRY_ENV = "BENTOSHIP_FLYTE_REGISTRY"
"""The registry of the ``ImageSpec`` (default :data:`DEFAULT_REGISTRY`)."""
DEFAULT_REGISTRY = "ghcr.io/bentoship"
IMAGE_NAME = "bentoship-flyte"
PYTHON_VERSION = "3.11"


def image_spec(
    registry: str | None = None,
    packages: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> ImageSpec:
    """The ``ImageSpec`` of the plugin's tasks, with ``packages`` added (for your own tasks).

    It installs this plugin with its ``build`` extra (so bentoship with bentoml) at the versions
    running here; the image builder adds flytekit. ``registry`` defaults to
    ``$BENTOSHIP_FLYTE_REGISTRY``, else :data:`DEFAULT_REGISTRY`. Its name is computed without
    building: ``image_spec().image_name()``.
    """
    env = os.environ if environ is None else environ
    return ImageSpec(
        name=IMAGE_NAME,
        registry=registry or env.get(REGISTRY_ENV, "").strip() or DEFAULT_REGISTRY,
        python_version=PYTHON_VERSION,
        packages=[
            f"flytekitplugins-bentoship[build,drift]=={__version__}",
            f"bentoship[build,drift]=={bentoship.__version__}",
            *packages,
        ],
        env={"BENTOML_DO_NOT_TRACK": "true"},
        tag_format=f"{__version__}-{{spec_hash}}",
    )


def task_image(environ: Mapping[str, str] | None = None) -> str | ImageSpec:
    """``$BENTOSHIP_FLYTE_IMAGE`` when set, else :func:`image_spec`."""
    env = os.environ if environ is None else environ
    return env.get(IMAGE_ENV, "").strip() or image_spec(environ=env)


IMAGE: str | ImageSpec = task_image()
"""The container image of every task of the plugin (read once, at import)."""
