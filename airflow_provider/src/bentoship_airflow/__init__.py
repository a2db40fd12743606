"""Apache Airflow provider for bentoship: build, push, deploy, wait, smoke-test, roll back."""

__version__ = "0.1.0"
