"""Train, evaluate and save the bentoship example classifier.

Every function here is pure apart from :func:`save_model`, which writes to the BentoML
model store (``$BENTOML_HOME/models``).  Importing the module has no side effects and
does not import ``bentoml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

MODEL_NAME = "example_classifier"
N_FEATURES = 4
TRAIN_SIZE = 600
HOLDOUT_SIZE = 200
DATA_SEED = 0
HOLDOUT_SEED = 1
"""Seed of the deterministic train/holdout split of the generated population."""
QUALITY_THRESHOLD = 0.8
"""Minimum holdout accuracy a model must reach to be shipped."""
SAMPLE_INPUT: list[list[float]] = [
    [-1.31, 3.27, 0.35, 0.57],
    [-1.6, -2.66, -3.18, 0.01],
]
"""A small, valid payload for ``POST /predict`` (``{"features": SAMPLE_INPUT}``)."""
SAMPLE_EXPECTED: list[int] = [0, 1]
"""What a good model (trained on :func:`generate_data`) predicts for ``SAMPLE_INPUT``."""
MONITOR = "classifier"
"""The monitor the service logs each answered row to (features ``f0``..``f3``, ``prediction``)."""
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


@lru_cache(maxsize=4)
def _split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate one population and split it into train and holdout parts."""
    X, y = make_classification(
        n_samples=TRAIN_SIZE + HOLDOUT_SIZE,
        n_features=N_FEATURES,
        n_informative=3,
        n_redundant=1,
        n_classes=2,
        n_clusters_per_class=1,
        class_sep=1.0,
        flip_y=0.02,
        random_state=seed,
    )
    order = np.random.RandomState(HOLDOUT_SEED).permutation(len(y))
    train, hold = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    return X[train], y[train], X[hold], y[hold]


def generate_data(n_samples: int = TRAIN_SIZE, seed: int = DATA_SEED) -> tuple[Any, Any]:
    """Return the deterministic training set ``(X, y)``: ``n_samples`` rows, 4 features."""
    if not 0 < n_samples <= TRAIN_SIZE:
        raise ValueError(f"n_samples must be in 1..{TRAIN_SIZE}, got {n_samples}")
    X, y, _, _ = _split(seed)
    return X[:n_samples].copy(), y[:n_samples].copy()


def holdout(n: int = HOLDOUT_SIZE, seed: int = DATA_SEED) -> tuple[Any, Any]:
    """Return ``n`` held-out rows ``(X, y)`` from the same distribution as the train set."""
    if not 0 < n <= HOLDOUT_SIZE:
        raise ValueError(f"n must be in 1..{HOLDOUT_SIZE}, got {n}")
    _, _, X, y = _split(seed)
    return X[:n].copy(), y[:n].copy()


def training_features(seed: int = DATA_SEED) -> dict[str, list[float]]:
    """The training set's features by column (``f0``..``f3``): a drift check's reference."""
    X, _ = generate_data(seed=seed)
    return {name: X[:, i].tolist() for i, name in enumerate(FEATURES)}


def traffic(n: int = HOLDOUT_SIZE, shift: float = 0.0) -> list[list[float]]:
    """``n`` held-out rows, each feature moved by ``shift`` of its standard deviation: with a
    shift of 1, the traffic has drifted from the training data."""
    X, _ = holdout(n)
    spread = generate_data()[0].std(axis=0)
    return (X + shift * spread).tolist()


def train_model(X: Any, y: Any, bad: bool = False) -> LogisticRegression:
    """Fit a logistic regression; ``bad=True`` fits on shuffled labels (a useless model)."""
    labels = np.asarray(y)
    if bad:
        labels = np.random.RandomState(0).permutation(labels)
    return LogisticRegression(max_iter=1000).fit(X, labels)


def evaluate(model: Any, X: Any, y: Any) -> float:
    """Return the accuracy of ``model`` on ``(X, y)``."""
    return float(np.mean(model.predict(X) == np.asarray(y)))


def save_model(
    model: LogisticRegression,
    *,
    name: str = MODEL_NAME,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Save ``model`` to the BentoML model store and return its tag (``name:version``).

    The holdout accuracy is stored in the model metadata under ``"accuracy"`` unless
    ``metadata`` already provides it.
    """
    import bentoml

    meta: dict[str, Any] = {"accuracy": evaluate(model, *holdout())}
    meta.update(metadata or {})
    saved = bentoml.sklearn.save_model(
        name,
        model,
        labels=dict(labels or {"owner": "bentoship-example"}),
        metadata=meta,
    )
    return str(saved.tag)


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the default data, report holdout accuracy, save and print the model tag."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bad", action="store_true", help="train a deliberately useless model")
    args = parser.parse_args(argv)
    model = train_model(*generate_data(), bad=args.bad)
    accuracy = evaluate(model, *holdout())
    print(f"holdout accuracy: {accuracy:.3f} (threshold {QUALITY_THRESHOLD})")
    print(save_model(model))


if __name__ == "__main__":
    main()
