"""Monitoring records are ingested exactly once: across rotation, two writers and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from bentoship.server.observe.monitoring import MonitoringStore, Origin, table_of
from bentoship.server.rollout.monitoring_env import config_options

PER_WRITER = 50_000
WRITER = textwrap.dedent(
    """
    import json, logging, logging.handlers, sys
    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=400_000, backupCount=1000)
    logger = logging.getLogger("data")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for n in range(count):
        record = {"x": n * 0.5, "label": "a" if n % 3 else "b",
                  "request_id": f"w{worker}-{n}", "timestamp": "2026-11-30T00:00:00"}
        logger.info(json.dumps(record))
    """
)
INGESTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bentoship.server.observe.analytics import open_analytics
    from bentoship.server.observe.monitoring import MonitoringStore, Origin
    database, folder, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    store = MonitoringStore(open_analytics(database).cursor())
    origin = Origin("web", "r1", "svc:v1")
    while not stop.exists():
        if not store.ingest(folder, origin):
            time.sleep(0.02)
    while store.ingest(folder, origin):
        pass
    """
)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.slow
def test_every_record_is_stored_once_across_rotation_writers_and_kill_9(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    folder = tmp_path / "revision"
    data = folder / "predictions" / "data"
    data.mkdir(parents=True)
    database, stop = tmp_path / "observe.duckdb", tmp_path / "stop"

    def ingester() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-c", INGESTER, str(database), str(folder), str(stop)]
        processes.append(subprocess.Popen(command))
        return processes[-1]

    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data / f"data.{w}.log"), str(w), str(PER_WRITER)]
        )
        for w in range(2)
    ]
    processes.extend(writers)
    for _ in range(2):  # two ingesters killed with SIGKILL in the middle of their work
        first = ingester()
        time.sleep(1.5)
        assert first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    assert len(list(data.glob("data.*.log.*"))) >= 10  # the files rotated during the run
    last = ingester()
    stop.touch()
    assert last.wait(timeout=120) == 0

    with duckdb.connect(str(database)) as db:
        table = table_of("predictions")
        count = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        ids = {row[0] for row in db.execute(f"SELECT request_id FROM {table}").fetchall()}
        origin = db.execute(f"SELECT DISTINCT deployment, revision, bento FROM {table}").fetchall()
    assert count == (2 * PER_WRITER,)
    assert ids == {f"w{w}-{n}" for w in range(2) for n in range(PER_WRITER)}
    assert origin == [("web", "r1", "svc:v1")]


def test_records_schema_retention_and_forgetting(tmp_path: Path) -> None:
    folder = tmp_path / "revision"
    (folder / "iris" / "data").mkdir(parents=True)
    (folder / "iris" / "schema").mkdir(parents=True)
    lines = [json.dumps({"x": i, "request_id": str(i), "timestamp": "t"}) for i in range(5)]
    (folder / "iris" / "data" / "data.0.log").write_text("\n".join(lines) + "\n{partial")
    schema = {"meta_data": {"bento_name": "svc"}, "columns": [{"name": "x", "type": "numerical"}]}
    (folder / "iris" / "schema" / "schema.0.log").write_text(json.dumps(schema) + "\n")
    with duckdb.connect() as db:
        store = MonitoringStore(db.cursor(), retention=60)
        origin = Origin("web", "r2", "svc:v2")
        assert store.ingest(folder, origin) == 5
        assert store.ingest(folder, origin) == 0  # the partial line waits for its end
        with (folder / "iris" / "data" / "data.0.log").open("a") as handle:
            handle.write(', "request_id": "5"}\n')
        assert store.ingest(folder, origin) == 0  # not JSON: skipped, not stored
        records = store.records("web", "iris")
        assert [r["x"] for r in records] == [0, 1, 2, 3, 4]
        assert records[0]["revision"] == "r2" and records[0]["bento"] == "svc:v2"
        assert store.records("web", "iris", revision="r1") == []
        assert store.records("web", "iris", limit=2)[-1]["x"] == 4
        assert json.loads(db.execute("SELECT schema FROM monitors").fetchone()[0]) == schema
        store.prune(now=time.time() + 61)
        assert store.count("web", "iris") == 0
        store.ingest(folder, Origin("web", "r3", "svc:v3"))
        store.forget("web")
        assert db.execute("SELECT count(*) FROM monitor_files").fetchone() == (0,)


def test_a_file_listed_under_two_names_is_stored_once(tmp_path: Path) -> None:
    """Rotation renames a file between the listing and the reads: the same file, two names."""
    data = tmp_path / "revision" / "iris" / "data"
    data.mkdir(parents=True)
    lines = [json.dumps({"x": i, "request_id": str(i)}) for i in range(3)]
    (data / "data.0.log").write_text("\n".join(lines) + "\n")
    os.link(data / "data.0.log", data / "data.0.log.1")
    with duckdb.connect() as db:
        store = MonitoringStore(db.cursor())
        assert store.ingest(tmp_path / "revision", Origin("web", "r1", "svc:v1")) == 3
        assert store.ingest(tmp_path / "revision", Origin("web", "r1", "svc:v1")) == 0
        assert store.count("web", "iris") == 3


def test_config_options_point_bentoml_at_the_revision_folder(tmp_path: Path) -> None:
    options = dict(item.split("=", 1) for item in config_options(tmp_path / "m").split())
    assert options["services.monitoring.options.log_path"] == str(tmp_path / "m")
    written = Path(options["services.monitoring.options.log_config_file"]).read_text()
    assert "RotatingFileHandler" in written and "{data_filename}" in written
