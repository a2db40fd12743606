"""Secrets without a process: sealing, content checks, versions, masking, delivery, placement."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from bentoship.models import DeploymentConfig, config_matches
from bentoship.server.deploy_config import normalize_config
from bentoship.server.errors import Conflict, Invalid
from bentoship.server.secrets.book import PinnedSecret, SecretBook, SecretUnavailable
from bentoship.server.secrets.content import SecretContent, SecretItem, parse_content
from bentoship.server.secrets.delivery import SECRETS_DIR_ENV, SecretDelivery
from bentoship.server.secrets.logpipe import masked_pipe
from bentoship.server.secrets.masking import Masker
from bentoship.server.secrets.placement import apart_from
from bentoship.server.secrets.records import SecretRecords
from bentoship.server.secrets.sealing import SealBroken, Sealer
from bentoship.server.store import Store
from bentoship.steps.deploy import secrets_changed

VALUE = "hunter2-very-secret"


def env_content(value: str = VALUE, key: str = "DB_PASSWORD") -> dict[str, Any]:
    return {"type": "env", "items": [{"key": key, "value": value}]}


@pytest.fixture
def book(tmp_path: Path) -> SecretBook:
    store = Store(tmp_path / "data" / "state.db")
    return SecretBook(SecretRecords(store.db), Sealer(tmp_path / "keys" / "secrets.key"))


def test_the_key_file_is_made_0600_on_first_use_and_seals_what_another_key_cannot_open(
    tmp_path: Path,
) -> None:
    sealer = Sealer(tmp_path / "keys" / "secrets.key")
    assert not sealer.key_file.exists()
    sealed = sealer.seal(VALUE.encode())
    assert VALUE.encode() not in sealed and sealer.open(sealed) == VALUE.encode()
    assert stat.S_IMODE(sealer.key_file.stat().st_mode) == 0o600
    assert Sealer(sealer.key_file).open(sealed) == VALUE.encode()
    other = Sealer(tmp_path / "other.key")
    with pytest.raises(SealBroken, match="did not seal"):
        other.open(sealed)
    assert other.digest(b"x") != sealer.digest(b"x") and sealer.digest(b"x") != sealer.digest(b"y")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"type": "vault", "items": []}, "content.type"),
        ({"type": "env", "items": []}, "content.items"),
        (env_content(key="9LIVES"), "content.items[0].key"),
        (env_content(value=""), "content.items[0].value"),
        ({"type": "env", "items": [{"key": "A", "value": VALUE, "sub_path": "x"}]}, "sub_path"),
        ({"type": "mountfile", "items": [{"key": "..", "value": VALUE}]}, "key"),
        (
            {"type": "mountfile", "path": "/etc/../root", "items": [{"key": "k", "value": VALUE}]},
            "path",
        ),
        (
            {"type": "mountfile", "path": "relative", "items": [{"key": "k", "value": VALUE}]},
            "path",
        ),
        (
            {"type": "mountfile", "items": [{"key": "k", "value": VALUE, "sub_path": "../k"}]},
            "sub_path",
        ),
        ({"type": "env", "items": [env_content()["items"][0]] * 2}, "given twice"),
    ],
)
def test_bad_content_is_refused_naming_the_field_never_the_value(
    content: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as caught:
        parse_content(content)
    assert field in caught.value.message and VALUE not in caught.value.message


def test_mount_paths_default_to_bentoml_home_and_keep_absolute_ones() -> None:
    item = [{"key": "cert.pem", "value": VALUE}]
    assert parse_content({"type": "mountfile", "items": item}).path == "$BENTOML_HOME"
    given = parse_content({"type": "mountfile", "path": "${BENTOML_HOME}/certs/", "items": item})
    assert given.path == "$BENTOML_HOME/certs"
    assert parse_content({"type": "mountfile", "path": "/etc//app", "items": item}).path == (
        "/etc/app"
    )


def test_secrets_are_listed_without_values_and_versioned_by_content(
    book: SecretBook, tmp_path: Path
) -> None:
    made = book.create({"name": "db", "description": "d", "content": env_content()})
    assert made.version == 1 and made.shape["items"] == [{"key": "DB_PASSWORD", "sub_path": None}]
    assert VALUE not in repr(book.find("d")) and [s.name for s in book.find("D")] == ["db"]
    with pytest.raises(Conflict, match="already exists"):
        book.create({"name": "db", "content": env_content()})
    assert book.update("db", {"content": env_content()}).version == 1
    pins = book.pin(["db"])
    rotated = book.update("db", {"content": env_content("rotated-value-2")})
    assert rotated.version == 2 and rotated.digest != pins["db"]
    assert book.versions(pins) == {"db": None}
    kept = book.update(
        "db", {"description": "x", "content": {"type": "env", "items": [{"key": "DB_PASSWORD"}]}}
    )
    assert kept.version == 2 and kept.description == "x"
    (old,) = book.open_pinned(pins)
    assert old.content.values() == [VALUE]
    (new,) = book.open_pinned(book.pin(["db"]))
    assert new.content.values() == ["rotated-value-2"]
    with pytest.raises(Invalid, match=r"secrets\[1\]: secret 'nope' does not exist"):
        book.pin(["db", "nope"])
    for path in (tmp_path / "data").iterdir():
        assert VALUE.encode() not in path.read_bytes()
    book.delete("db")
    with pytest.raises(SecretUnavailable, match="was deleted"):
        book.open_pinned(pins)


def test_masking_covers_whole_values_their_lines_and_json_escapes_not_short_pieces() -> None:
    masker = Masker([VALUE, "line-one\nline-two\n", "ab"])
    assert masker.mask(f"x={VALUE}; y={VALUE}".encode()) == b"x=***; y=***"
    assert masker.mask(b"got line-two only") == b"got *** only"
    assert masker.mask(b'{"v": "line-one\\nline-two\\n"}') == b'{"v": "***"}'
    assert masker.mask(b"ab stays") == b"ab stays"
    assert not Masker([]) and Masker([]).mask(b"same") == b"same"


def test_a_masked_pipe_masks_values_split_across_writes(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    fd = masked_pipe(log, Masker([VALUE]))
    os.write(fd, f"start {VALUE[:5]}".encode())
    os.write(fd, f"{VALUE[5:]} end\nlast {VALUE}".encode())
    os.close(fd)
    deadline = time.monotonic() + 5
    while not log.exists() or not log.read_bytes().endswith(b"***"):
        assert time.monotonic() < deadline, log.read_bytes() if log.exists() else "no file"
        time.sleep(0.01)
    assert log.read_bytes() == b"start *** end\nlast ***"


def pinned(name: str, content: SecretContent) -> PinnedSecret:
    return PinnedSecret(name, "d" * 64, content)


def test_delivery_gives_envs_and_0400_files_outside_the_data_dir_and_removes_them(
    tmp_path: Path,
) -> None:
    delivery = SecretDelivery(tmp_path / "data", tmp_path / "run")
    env = pinned("db", SecretContent("env", (SecretItem("DB_PASSWORD", VALUE),)))
    home = pinned(
        "tls", SecretContent("mountfile", (SecretItem("c", "cert", "sub/c.pem"),), "$BENTOML_HOME")
    )
    etc = pinned("etc", SecretContent("mountfile", (SecretItem("k", "key"),), "/etc/app"))
    build = pinned(
        "b", SecretContent("env", (SecretItem("BUILD_ONLY", "build-value"),), None, "build")
    )
    given = delivery.deliver([env, home, etc, build], "r1-abc")
    folder = Path(given.envs[SECRETS_DIR_ENV])
    assert given.envs["DB_PASSWORD"] == VALUE and "BUILD_ONLY" not in given.envs
    assert folder.is_relative_to(tmp_path / "run")
    assert (folder / "sub" / "c.pem").read_text() == "cert"
    assert (folder / "etc" / "app" / "k").read_text() == "key"
    assert stat.S_IMODE((folder / "etc" / "app" / "k").stat().st_mode) == 0o400
    assert given.masker.mask(b"build-value") == b"***"
    given.remove()
    assert not folder.exists()
    clash = pinned("again", SecretContent("mountfile", (SecretItem("k", "x"),), "/etc/app"))
    with pytest.raises(SecretUnavailable, match="already mounts"):
        delivery.deliver([etc, clash], "r2")
    delivery.close()
    assert list((tmp_path / "run").iterdir()) == []


def test_the_key_file_and_runtime_dir_must_lie_outside_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(SystemExit, match=r"secrets key file .* is inside the data dir"):
        apart_from(data, data / "secrets.key", tmp_path / "run")
    with pytest.raises(SystemExit, match="runtime dir"):
        apart_from(data, tmp_path / "k", data / "run")
    assert apart_from(data, tmp_path / "k", tmp_path / "run") == (tmp_path / "k", tmp_path / "run")


def test_configs_name_secrets_once_and_the_deploy_step_compares_them() -> None:
    config = normalize_config({"secrets": ["db", "tls", "db"]}, "Echo")
    assert config["secrets"] == ["db", "tls"]
    assert normalize_config({}, "Echo")["secrets"] is None
    body = DeploymentConfig.from_dict({"secrets": ["db"]}).to_api("Echo")
    assert body["secrets"] == ["db"] and "secrets" not in DeploymentConfig().to_api("Echo")
    assert config_matches(body, {"secrets": ["db"]}) and not config_matches(body, {})
    before = {"secret_versions": {"db": "a", "tls": "t"}}
    assert secrets_changed(before, {"secret_versions": {"db": "b", "tls": "t", "new": "n"}}) == [
        "db"
    ]
    assert secrets_changed(None, {"secret_versions": {"db": "b"}}) == []


def test_a_key_file_that_holds_no_key_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(SealBroken, match="does not hold a Fernet key"):
        Sealer(tmp_path / "bad.key").seal(b"x")
