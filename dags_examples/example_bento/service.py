"""The example classifier as a BentoML service."""

from __future__ import annotations

import bentoml
import numpy as np

MODEL_NAME = "example_classifier"
MONITOR = "classifier"
"""Each answered row's features (``f0``..``f3``) and prediction, for drift checks."""


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 30})
class ExampleClassifier:
    model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref.tag)

    @bentoml.api
    def predict(self, features: list[list[float]]) -> list[int]:
        """Class (0 or 1) of each row of 4 features; each row and its class are logged with
        ``bentoml.monitor``."""
        labels = [int(label) for label in self.model.predict(np.asarray(features, dtype=float))]
        for row, label in zip(features, labels, strict=True):
            with bentoml.monitor(MONITOR) as record:
                for i, value in enumerate(row):
                    record.log(float(value), name=f"f{i}", role="feature", data_type="numerical")
                record.log(label, name="prediction", role="prediction", data_type="categorical")
        return labels

    @bentoml.api
    def info(self) -> dict:
        """The model's tag and the holdout accuracy recorded when it was trained."""
        stored = bentoml.models.get(self.model_ref.tag)
        return {"model": str(stored.tag), "accuracy": stored.info.metadata.get("accuracy")}
