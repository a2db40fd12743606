"""Provider metadata that Airflow's providers manager reads through the entry point."""

from __future__ import annotations

from typing import Any

from . import __version__

INTEGRATION = "BentoCloud"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "bentoship-airflow",
        "name": "bentoship",
        "description": "Ship BentoML services to BentoCloud or a bentoship local control plane: "
        "build, push, deploy, wait until green, smoke-test and roll back.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://docs.bentoml.com/en/latest/scale-with-bentocloud/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["bentoship_airflow.hooks.bentocloud"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "bentoship_airflow.operators.bento",
                    "bentoship_airflow.operators.monitoring",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "bentoship_airflow.sensors.bento",
                    "bentoship_airflow.sensors.monitoring",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["bentoship_airflow.triggers.bento"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "bentocloud",
                "hook-class-name": "bentoship_airflow.hooks.bentocloud.BentoCloudHook",
                "hook-name": "BentoCloud",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                        "description": "Timeout of one API request; waits use their own timeout.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Endpoint URL", "password": "API token"},
                    "placeholders": {
                        "host": "https://my-org.cloud.bentoml.com or http://127.0.0.1:PORT",
                        "password": "BentoCloud API token, or the local control plane's token",
                    },
                },
            }
        ],
        "extra-links": [
            "bentoship_airflow.links.bento.BentoDeploymentLink",
            "bentoship_airflow.links.bento.BentoEndpointLink",
            "bentoship_airflow.links.drift.BentoDriftReportLink",
            "bentoship_airflow.links.quality.BentoQualityReportLink",
            "bentoship_airflow.links.shadow.BentoShadowReportLink",
        ],
    }
