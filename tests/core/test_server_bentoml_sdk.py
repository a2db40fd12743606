"""Unmodified bentoml's own SDK against the local control plane: its compatibility test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest

from bentoship.server import LocalControlPlane

from ..conftest import shared_plane_like
from .cli_session import BentomlCli


@pytest.fixture(scope="module")
def shared_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A plane of this module's own, not the worker's: bentoml's first push of each bento must
    find none there."""
    with shared_plane_like(tmp_path_factory.mktemp("sdk-plane")) as plane:
        yield plane


def cloud_client(plane: LocalControlPlane) -> bentoml.cloud.BentoCloudClient:
    assert plane.connection is not None
    return bentoml.cloud.BentoCloudClient(
        api_key=plane.connection.token, endpoint=plane.connection.endpoint
    )


def cli_env(plane: LocalControlPlane) -> dict[str, str]:
    """The environment of the unmodified ``bentoml`` CLI, signed in with the server's token."""
    assert plane.connection is not None
    return {
        **os.environ,
        "BENTO_CLOUD_API_ENDPOINT": plane.connection.endpoint,
        "BENTO_CLOUD_API_KEY": plane.connection.token,
        "COLUMNS": "200",
    }


def bentoml_cli(plane: LocalControlPlane, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The unmodified ``bentoml`` CLI against the plane."""
    command = [sys.executable, "-m", "bentoml", *arguments]
    return subprocess.run(command, env=cli_env(plane), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cli(
    shared_plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BentomlCli]:
    """The unmodified ``bentoml`` CLI against the module's plane: one interpreter runs every
    command of the module (each interpreter costs seconds of CPU in imports alone)."""
    stderr = tmp_path_factory.mktemp("sdk-cli") / "stderr.log"
    with BentomlCli(shared_plane, stderr, columns=200) as session:
        yield session


def listed(cli: BentomlCli, *option_sets: list[str]) -> list[list[str]]:
    """``bentoml deployment list <options> -o json`` (the unmodified CLI), once per set of
    options: the names each time."""
    names = []
    for options in option_sets:
        done = cli("deployment", "list", *options, "-o", "json")
        assert done.returncode == 0, done.stderr[-2000:]
        names.append(sorted(item["name"] for item in json.loads(done.stdout)))
    return names


def signed_in_page(url: str, token: str) -> str:
    """``url`` opened without a session: the sign-in form, then, signed in, the page itself."""
    with httpx.Client() as browser:
        first = browser.get(url, follow_redirects=True)
        assert first.status_code == 200 and first.url.path == "/login", first.url
        form = re.search(r'name="csrf_token" value="([^"]+)"', first.text)
        wanted = re.search(r'name="next" value="([^"]+)"', first.text)
        assert form is not None and wanted is not None
        signed_in = browser.post(
            first.url.copy_with(query=None),
            data={"csrf_token": form.group(1), "next": wanted.group(1), "token": token},
            follow_redirects=True,
        )
    assert signed_in.status_code == 200 and str(signed_in.url) == url
    return signed_in.text


def check_monitoring(plane: LocalControlPlane, url: str, bento: str) -> None:
    """What the service logs with ``bentoml.monitor`` is collected per revision, as JSON and
    as Parquet."""
    import duckdb

    texts = [f"monitored {i}" for i in range(3)]
    for text in texts:
        answer = httpx.post(f"{url}/echo", json={"text": text, "monitor": True})
        assert answer.status_code == 200
    assert plane.connection is not None
    headers = {"X-YATAI-API-TOKEN": plane.connection.token}
    base = f"{plane.connection.endpoint}/api/v2/deployments/sdk-echo/monitoring"
    listed = httpx.get(base, headers=headers).json()["monitors"]
    assert listed == [{"name": "echo_calls", "records": 3}]
    records = httpx.get(f"{base}/echo_calls", headers=headers).json()["records"]
    assert [(r["text"], r["length"]) for r in records] == [(t, len(t)) for t in texts]
    assert {(r["revision"], r["bento"]) for r in records} == {("r1", bento)}
    assert all(r["request_id"] for r in records)
    parquet = httpx.get(f"{base}/echo_calls", headers=headers, params={"format": "parquet"})
    path = Path(tempfile.mkdtemp()) / "calls.parquet"
    path.write_bytes(parquet.content)
    with duckdb.connect() as db:
        rows = db.execute(f"SELECT text, length FROM '{path}' ORDER BY text").fetchall()
    assert rows == [(t, len(t)) for t in texts]
    unknown = httpx.get(f"{base}/nope", headers=headers)
    assert (
        unknown.status_code == 404
        and "GET /api/v2/deployments/sdk-echo/monitoring" in (unknown.json()["error"])
    )


def check_export(plane: LocalControlPlane, url: str, postgres: str, folder: Path) -> None:
    """The monitor's records exported twice in a row to PostgreSQL, DuckDB and Parquet: each
    record once; records logged later follow; ``since`` skips older history."""
    import duckdb
    import sqlalchemy as sa

    from bentoship import Client
    from bentoship.steps import export_monitoring

    assert plane.connection is not None
    targets = {
        "postgresql": postgres,
        "duckdb": str(folder / "warehouse.duckdb"),
        "parquet": str(folder / "parquet"),
    }

    def stored(kind: str) -> list[tuple[int, str]]:
        query = "SELECT seq, text FROM {} ORDER BY seq"
        if kind == "postgresql":
            engine = sa.create_engine(postgres)
            with engine.connect() as connection:
                found = connection.execute(sa.text(query.format("monitor_echo_calls")))
                rows = [(int(r[0]), str(r[1])) for r in found]
            engine.dispose()
            return rows
        with duckdb.connect(targets["duckdb"] if kind == "duckdb" else ":memory:") as db:
            table = (
                "monitor_echo_calls" if kind == "duckdb" else f"'{targets['parquet']}/*.parquet'"
            )
            return [(int(a), str(b)) for a, b in db.execute(query.format(table)).fetchall()]

    with Client(plane.connection.endpoint, plane.connection.token) as client:
        before = client.monitoring_records("sdk-echo", "echo_calls")
        first = {
            k: export_monitoring("sdk-echo", "echo_calls", t, client=client)
            for k, t in targets.items()
        }
        again = {
            k: export_monitoring("sdk-echo", "echo_calls", t, client=client)
            for k, t in targets.items()
        }
        assert {k: r.count for k, r in first.items()} == dict.fromkeys(targets, len(before))
        assert {k: r.count for k, r in again.items()} == dict.fromkeys(targets, 0)
        assert {r.watermark for r in again.values()} == {before[-1]["seq"]}
        cut = time.time()
        for text in ("later 1", "later 2"):
            httpx.post(f"{url}/echo", json={"text": text, "monitor": True}).raise_for_status()
        deadline = time.monotonic() + 30
        while len(client.monitoring_records("sdk-echo", "echo_calls")) < len(before) + 2:
            assert time.monotonic() < deadline, "the two later records were not ingested"
            time.sleep(0.3)
        later = {
            k: export_monitoring("sdk-echo", "echo_calls", t, client=client)
            for k, t in targets.items()
        }
        assert {k: r.count for k, r in later.items()} == dict.fromkeys(targets, 2)
        expected = [
            (r["seq"], r["text"]) for r in client.monitoring_records("sdk-echo", "echo_calls")
        ]
        fresh = folder / "since.duckdb"
        recent = export_monitoring(
            "sdk-echo", "echo_calls", fresh, since=f"{cut:.3f}", client=client
        )
    for kind in targets:
        assert stored(kind) == expected, kind
    assert recent.count == 2
    with duckdb.connect(str(fresh)) as db:
        texts = sorted(t for (t,) in db.execute("SELECT text FROM monitor_echo_calls").fetchall())
    assert texts == ["later 1", "later 2"]


def version_for(url: str, user: str) -> str:
    answer = httpx.post(f"{url}/echo", json={"text": "hi"}, headers={"X-User": user}).json()
    return str(answer["version"])


def test_push_deploy_update_canary_list_terminate_delete(
    shared_plane: LocalControlPlane,
    cli: BentomlCli,
    echo_v1: str,
    echo_v2: str,
    postgres: str,
    tmp_path: Path,
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    bentoml.bentos.push(echo_v2, _cloud_client=client)
    remote = client.bento.get(*echo_v1.split(":"))
    assert remote.upload_status == "success"

    dep = bentoml.deployment.create(
        bento=echo_v1,
        name="sdk-echo",
        labels=[{"key": "team", "value": "x"}],
        _cloud_client=client,
    )
    assert dep.wait_until_ready(timeout=60, check_interval=1) == 0
    # The dashboard URL bentoml prints opens the deployment's console page, after sign-in.
    assert shared_plane.connection is not None
    endpoint = shared_plane.connection.endpoint
    assert dep.admin_console == f"{endpoint}/deployments/sdk-echo"
    assert signed_in_page(dep.admin_console, shared_plane.connection.token).count("sdk-echo") >= 2
    # The unmodified CLI's label filter: it sends q=label:team=x
    assert listed(cli, ["--label", "team=x"], ["--label", "team=y"]) == [["sdk-echo"], []]
    url = dep.get_endpoint_urls()[0]
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == {"text": "hi", "version": "v1"}
    check_monitoring(shared_plane, url, echo_v1)
    check_export(shared_plane, url, postgres, tmp_path)

    updated = bentoml.deployment.update(name="sdk-echo", bento=echo_v2, _cloud_client=client)
    assert updated.get_bento() == echo_v2
    assert updated.wait_until_ready(timeout=60, check_interval=1) == 0
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json()["version"] == "v2"
    assert updated.get_endpoint_urls() == [url]

    # BentoCloud's canary config: the version's bento starts as a candidate, and once ready it
    # takes its weight of the callers, sticky by the header's value.
    canary_config = {
        "route_type": "header",
        "route_by": "X-User",
        "versions": {"old": {"bento": echo_v1, "weight": 50}},
    }
    canary = bentoml.deployment.update(
        name="sdk-echo",
        bento=echo_v2,
        config_dict={"name": "sdk-echo", "canary": canary_config},
        _cloud_client=client,
    )
    assert canary.wait_until_ready(timeout=60, check_interval=1) == 0
    routing = canary.get_config().canary
    assert routing is not None and (routing.route_type, routing.route_by) == ("header", "X-User")
    users = [f"user-{i}" for i in range(40)]
    first = [version_for(url, user) for user in users]
    assert set(first) == {"v1", "v2"} and first == [version_for(url, user) for user in users]
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json()["version"] == "v2"

    names = [d.name for d in bentoml.deployment.list(_cloud_client=client)]
    assert "sdk-echo" in names

    bentoml.deployment.terminate(name="sdk-echo", _cloud_client=client)
    assert bentoml.deployment.get(name="sdk-echo", _cloud_client=client).get_status().status == (
        "terminated"
    )
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{url}/echo", json={"text": "hi"}, timeout=5).raise_for_status()

    bentoml.deployment.delete(name="sdk-echo", _cloud_client=client)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.deployment.get(name="sdk-echo", _cloud_client=client)


def test_second_push_is_skipped_and_instance_types_listed(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    first = client.bento.get(*echo_v1.split(":"))
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    assert client.bento.get(*echo_v1.split(":")).updated_at == first.updated_at
    types = [t.name for t in client.deployment.list_instance_types()]
    assert "cpu.small" in types


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_pull_returns_the_pushed_bento(
    shared_plane: LocalControlPlane, echo_v1: str, tmp_path: Path
) -> None:
    """Pull into a store of this test's own: the session's store, shared by every test, keeps
    its bento whatever happens here."""
    from bentoml._internal.bento import BentoStore

    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    private = BentoStore(tmp_path / "bentos")
    bentoml.bentos.pull(echo_v1, _bento_store=private, _cloud_client=client)

    pushed = bentoml.bentos.get(echo_v1)
    pulled = private.get(echo_v1)
    assert str(pulled.tag) == echo_v1
    assert Path(pulled.path) != Path(pushed.path)
    assert Path(pulled.path_of("bento.yaml")).read_text() == (
        Path(pushed.path_of("bento.yaml")).read_text()
    )
    assert files_of(Path(pulled.path_of("src"))) == files_of(Path(pushed.path_of("src")))
    assert "version.txt" in files_of(Path(pulled.path_of("src")))


def test_api_token_cli_create_scoped_then_delete(
    shared_plane: LocalControlPlane, cli: BentomlCli
) -> None:
    """``bentoml api-token create`` makes a read-only token that reads but cannot write; after
    ``bentoml api-token delete`` it gets 401."""
    assert shared_plane.connection is not None
    endpoint = shared_plane.connection.endpoint
    made = cli(
        *("api-token", "create", "ci-reader", "-d", "reads only"),
        *("--scope", "read_cluster", "--scope", "read_organization", "--expires", "30d"),
        *("-o", "json"),
    )
    assert made.returncode == 0, made.stderr[-2000:]
    # The CLI shows the token in a panel, then the JSON document.
    created = json.loads(made.stdout[made.stdout.index("\n{") :])
    token, uid = created["token"], created["uid"]
    assert sorted(created["scopes"]) == ["read_cluster", "read_organization"]
    assert created["expired_at"] and created.get("is_expired", False) is False

    client = bentoml.cloud.BentoCloudClient(api_key=token, endpoint=endpoint)
    listing = client.api_token.list()
    assert [t.name for t in listing] == ["ci-reader"] and listing[0].token is None
    headers = {"X-YATAI-API-TOKEN": token}
    assert httpx.get(f"{endpoint}/api/v2/deployments", headers=headers).status_code == 200
    refused = httpx.post(f"{endpoint}/api/v2/deployments/any/rollback", headers=headers, json={})
    assert refused.status_code == 403 and "write_cluster" in refused.json()["error"]
    granted = httpx.post(
        f"{endpoint}/api/v1/api_tokens", headers=headers, json={"name": "x", "scopes": ["api"]}
    )
    assert granted.status_code == 403

    deleted = cli("api-token", "delete", uid)
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    after = httpx.get(f"{endpoint}/api/v2/deployments", headers=headers)
    assert after.status_code == 401 and "revoked" in after.json()["error"]
    assert cloud_client(shared_plane).api_token.get(uid) is None
    assert token not in json.dumps(
        httpx.get(
            f"{endpoint}/api/v1/api_tokens",
            headers={"X-YATAI-API-TOKEN": shared_plane.connection.token},
        ).json()
    )
