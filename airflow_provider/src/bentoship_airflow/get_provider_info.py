def get_provider_info() -> dict:
    return {
        "package-name": "bentoship-airflow",
        "name": "bentoship",
        "description": "bentoship",
        "versions": ["0.1.0"],
    }
