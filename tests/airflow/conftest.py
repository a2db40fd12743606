"""A private SQLite Airflow home for this test session, set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bentoship.server import LocalControlPlane

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="bentoship-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:9/execution/",
        "BENTOSHIP_HANDOFF_DIR": str(AIRFLOW_HOME / "handoff"),
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the SQLite metadata database once per session (about 5 s).

    What ``airflow db migrate`` runs, in this process: the tests that need the database import
    Airflow here anyway, and a subprocess would import it a second time (about 5 CPU-s)."""
    from airflow.utils import db

    db.upgradedb()
    return AIRFLOW_HOME


@pytest.fixture
def bentocloud_connection(
    shared_plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalControlPlane]:
    """Point the ``bentocloud_default`` connection at the shared local control plane."""
    import json

    assert shared_plane.connection is not None
    conn = {
        "conn_type": "bentocloud",
        "host": shared_plane.connection.endpoint,
        "password": shared_plane.connection.token,
    }
    monkeypatch.setenv("AIRFLOW_CONN_BENTOCLOUD_DEFAULT", json.dumps(conn))
    yield shared_plane
