"""Airflow provider for bentoship."""
