"""Kubeflow Pipelines components for bentoship."""
