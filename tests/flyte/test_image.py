"""The plugin's tasks serialize with bentoship's image, not flytekit's default image."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from flytekit import task, workflow
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.python_function_task import PythonFunctionTask
from flytekit.image_spec import ImageSpec
from flytekit.tools.translator import get_serializable

import bentoship
import flytekitplugins.bentoship as plugin
from flytekitplugins.bentoship import (
    IMAGE,
    __version__,
    build_bento,
    deploy_and_wait,
    deploy_bento,
    image_spec,
    rollback_deployment,
)
from flytekitplugins.bentoship.image import IMAGE_ENV, REGISTRY_ENV, task_image

ALL_TASKS = tuple(
    entity for entity in vars(plugin).values() if isinstance(entity, PythonFunctionTask)
)
"""Every task the plugin exports, so that a task added later is checked too."""
FLYTEKIT_DEFAULT = ImageConfig.auto_default_image()


def serialized_image(entity: Any, image_config: ImageConfig = FLYTEKIT_DEFAULT) -> str:
    template = get_serializable(OrderedDict(), SerializationSettings(image_config), entity).template
    return str(template.container.image)


def test_default_image_is_bentoships_image_spec_named_without_building() -> None:
    assert isinstance(IMAGE, ImageSpec)
    assert IMAGE.packages == [
        f"flytekitplugins-bentoship[build,drift]=={__version__}",
        f"bentoship[build,drift]=={bentoship.__version__}",
    ]
    name = IMAGE.image_name()
    assert name.startswith(f"ghcr.io/bentoship/bentoship-flyte:{__version__}-")
    assert name == image_spec(environ={}).image_name()
    assert image_spec(packages=["scikit-learn"], environ={}).image_name() != name


def test_every_task_serializes_with_bentoships_image_not_flytekits_default() -> None:
    assert {build_bento, deploy_and_wait, rollback_deployment} <= set(ALL_TASKS)
    assert len(ALL_TASKS) >= 9
    default = FLYTEKIT_DEFAULT.default_image
    assert default is not None and "flytekit" in default.full
    for plugin_task in ALL_TASKS:
        assert plugin_task.container_image is IMAGE, plugin_task.name
        assert serialized_image(plugin_task) == IMAGE.image_name(), plugin_task.name


def test_the_environment_overrides_the_image() -> None:
    assert task_image(os.environ) == IMAGE  # read at import; the tests do not set the variables
    assert task_image({IMAGE_ENV: " registry.example.com/me/ship:1 "}) == (
        "registry.example.com/me/ship:1"
    )
    assert task_image({IMAGE_ENV: ""}) == IMAGE
    own = task_image({REGISTRY_ENV: "registry.example.com/me"})
    assert isinstance(own, ImageSpec)
    assert own.image_name().startswith(f"registry.example.com/me/bentoship-flyte:{__version__}-")


@workflow
def deploy_elsewhere(tag: str) -> str:
    return deploy_bento(name="elsewhere", bento=tag).with_overrides(
        container_image="registry.example.com/me/ship:2"
    )


def test_with_overrides_changes_one_calls_image() -> None:
    settings = SerializationSettings(FLYTEKIT_DEFAULT)
    spec = get_serializable(OrderedDict(), settings, deploy_elsewhere)
    [node] = spec.template.nodes
    assert node.task_node.overrides.container_image == "registry.example.com/me/ship:2"


@task(container_image=task_image({IMAGE_ENV: "{{.image.default}}"}))
def follows_pyflyte_image() -> str:
    return ""


def test_image_variable_can_follow_pyflyte_image() -> None:
    """``BENTOSHIP_FLYTE_IMAGE={{.image.default}}``: the tasks take ``pyflyte --image``."""
    mine = ImageConfig.auto(img_name="registry.example.com/me:3")
    assert serialized_image(follows_pyflyte_image, mine) == "registry.example.com/me:3"
