"""Retrain the example classifier and ship it with Flyte; roll back when it fails.

train -> build -> push -> deploy -> verify [wait until green -> smoke test on held-out data ->
quality gate]. ``verify`` is a sub-workflow whose ``on_failure`` handler is the plugin's
``rollback_deployment``: Flyte hands it the sub-workflow's inputs, so it receives the deploy
step's rollout record and returns the deployment to the revision that served before. A failure
before the deploy (training, build, push) rolls nothing back.

``retrain_and_ship_with_connector`` is the same pipeline whose deploy-and-wait runs in the
bentoship connector, holding no pod while the rollout runs.

Run it locally against a local control plane (``bentoship server``)::

    pyflyte run dags_examples/flyte_retrain_and_ship.py retrain_and_ship
    pyflyte run dags_examples/flyte_retrain_and_ship.py retrain_and_ship --bad

The second run trains a deliberately useless model: its quality gate fails and the deployment
goes back to the previous model. Set ``BENTO_CLOUD_API_ENDPOINT`` and ``BENTO_CLOUD_API_KEY`` (or
pass ``--endpoint`` and mount the Flyte secret ``bentoship/api_key``) to ship to BentoCloud.
"""

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import flytekit
from flytekit import task, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from flytekitplugins.bentoship import (
    BentoDeploymentTask,
    build_bento,
    deploy_bento,
    push_bento,
    rollback_deployment,
    smoke_test_deployment,
    wait_for_deployment,
)

PROJECT = Path(__file__).resolve().parent / "example_bento"
DEPLOYMENT = "example-classifier"
CONFIG = {"min_replicas": 1, "labels": {"pipeline": "flyte-retrain-and-ship"}}


def _training() -> ModuleType:
    """The example project's ``train`` module (numpy and scikit-learn only)."""
    spec = importlib.util.spec_from_file_location("example_bento_train", PROJECT / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Trained(NamedTuple):
    model: FlyteFile
    model_tag: str
    accuracy: float


class Holdout(NamedTuple):
    payload: dict
    labels: list[int]


class Shipped(NamedTuple):
    rollout: str
    url: str


@task(cache=False)
def train_classifier(bad: bool = False) -> Trained:
    """Train and save the model; hand it on as an exported model file."""
    import bentoml

    train = _training()
    X, y = train.generate_data()
    model = train.train_model(X, y, bad=bad)
    tag = train.save_model(model)
    path = (
        Path(flytekit.current_context().working_directory) / f"{tag.replace(':', '-')}.bentomodel"
    )
    bentoml.models.export_model(tag, str(path))
    accuracy = train.evaluate(model, *train.holdout())
    return Trained(model=FlyteFile(str(path)), model_tag=tag, accuracy=accuracy)


@task(cache=False)
def bento_project() -> FlyteDirectory:
    """The Bento project that ships with this workflow's code, for the build pod to download."""
    return FlyteDirectory(str(PROJECT))


@task(cache=False)
def holdout_set() -> Holdout:
    """Held-out rows (the smoke test's payload) and their true labels."""
    train = _training()
    X, y = train.holdout()
    return Holdout(payload={"features": X.tolist()}, labels=[int(label) for label in y])


@task(cache=False)
def quality_gate(answer: str, labels: list[int]) -> float:
    """Fail unless the deployed model's holdout accuracy reaches the threshold."""
    train = _training()
    predictions = json.loads(answer)
    accuracy = sum(int(p == t) for p, t in zip(predictions, labels, strict=True)) / len(labels)
    if accuracy < train.QUALITY_THRESHOLD:
        raise ValueError(
            f"holdout accuracy {accuracy:.2f} of the deployed model is below the quality gate "
            f"{train.QUALITY_THRESHOLD}; retrain it and check the training data"
        )
    return accuracy


@workflow
def package(bad: bool = False, endpoint: str | None = None) -> str:
    """Train, build and push; return the pushed Bento's tag."""
    trained = train_classifier(bad=bad)
    built = build_bento(
        project_dir=bento_project(),
        labels={"model": trained.model_tag},
        models=[trained.model],
    )
    return push_bento(bento=built.bento, endpoint=endpoint)


@workflow(on_failure=rollback_deployment)
def verify(rollout: str, endpoint: str | None = None) -> str:
    """Wait until the rollout serves, then gate it on held-out accuracy; roll back on failure."""
    url = wait_for_deployment(rollout=rollout, endpoint=endpoint)
    holdout = holdout_set()
    answer = smoke_test_deployment(rollout=rollout, api="predict", payload=holdout.payload)
    url >> answer
    quality_gate(answer=answer, labels=holdout.labels)
    return url


@workflow
def retrain_and_ship(
    bad: bool = False, deployment: str = DEPLOYMENT, endpoint: str | None = None
) -> Shipped:
    """Retrain, ship with plain tasks, and roll back when the new model fails its gate."""
    tag = package(bad=bad, endpoint=endpoint)
    rollout = deploy_bento(name=deployment, bento=tag, config=CONFIG, endpoint=endpoint)
    url = verify(rollout=rollout, endpoint=endpoint)
    return Shipped(rollout=rollout, url=url)


deploy_and_wait_async = BentoDeploymentTask(name="bentoship_example_deploy_and_wait")


@workflow
def retrain_and_ship_with_connector(
    bad: bool = False, deployment: str = DEPLOYMENT, endpoint: str | None = None
) -> Shipped:
    """The same pipeline; the connector deploys and waits (and rolls back a failed rollout)."""
    tag = package(bad=bad, endpoint=endpoint)
    deployed = deploy_and_wait_async(name=deployment, bento=tag, config=CONFIG, endpoint=endpoint)
    url = verify(rollout=deployed.rollout, endpoint=endpoint)
    return Shipped(rollout=deployed.rollout, url=url)


if __name__ == "__main__":
    print(retrain_and_ship())
