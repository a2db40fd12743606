"""Small pure helpers: tag checks, the error line in a log, the connection file and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bentoship import ConfigError, InvalidRequestError
from bentoship.connection import (
    Connection,
    mask_token,
    read_connection,
    resolve_connection,
    write_connection,
)
from bentoship.logtail import last_error_line
from bentoship.tags import check_tag

# tags


@pytest.mark.parametrize("tag", ["echo:v1", "example_classifier:abc123", "a.b-c:1.0_rc-2"])
def test_check_tag_returns_a_good_tag(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag", ["echo", "not a tag", "Echo:v1", "echo:", ":v1", "echo:v1:v2", "./svc.bento", None]
)
def test_check_tag_rejects_anything_else_saying_what_to_give(tag: object) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_tag(tag)
    message = str(caught.value)
    assert repr(tag) in message and "name:version" in message


# the error line in a revision's log


def test_last_error_line_finds_the_last_raised_exception() -> None:
    log = [
        "[bentoship] starting bentoml serve",
        "Traceback (most recent call last):",
        '  File "service.py", line 9, in __init__',
        "ValueError: first problem",
        "    raise RuntimeError('deliberate init failure: crash fixture')",
        "RuntimeError: deliberate init failure: crash fixture",
        "[bentoship] process exited with code 1",
    ]
    assert last_error_line(log) == "RuntimeError: deliberate init failure: crash fixture"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  bentoml.exceptions.BentoMLException: no model  ", None),
        ("bentoml.exceptions.NotFound: no model", ""),
        ("ModuleNotFoundError: No module named 'sklearn'", None),
        ("KeyboardInterrupt", ""),
        ("SystemExit: 3", "SystemExit: 3"),
        ("an error occurred while starting", ""),
    ],
)
def test_last_error_line_recognises_exception_lines_only(line: str, expected: str | None) -> None:
    assert last_error_line([line]) == (line.strip() if expected is None else expected)


def test_last_error_line_of_a_clean_log_is_empty() -> None:
    assert last_error_line([]) == ""
    assert last_error_line(["INFO started", "INFO ready"]) == ""


# the connection


@pytest.mark.parametrize(
    ("token", "shown"),
    [("abcdefghijklmnop", "abcd…"), ("123456789", "1234…"), ("12345678", "****"), ("", "****")],
)
def test_mask_token_shows_at_most_four_characters(token: str, shown: str) -> None:
    assert mask_token(token) == shown


def test_connection_repr_hides_the_token() -> None:
    connection = Connection("http://127.0.0.1:1", "very-secret-token-value")
    assert "very-secret-token-value" not in repr(connection)
    assert "very…" in repr(connection)


def test_connection_file_is_private_and_read_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_connection(home, Connection("http://127.0.0.1:4321", "tok-0123456789"))
    assert path == home / "connection.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_connection(home) == Connection("http://127.0.0.1:4321", "tok-0123456789")
    write_connection(home, Connection("http://127.0.0.1:5555", "tok-2"))
    assert read_connection(home).endpoint == "http://127.0.0.1:5555"
    assert [p.name for p in home.iterdir()] == ["connection.json"]


def test_read_connection_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        read_connection(tmp_path)
    message = str(missing.value)
    assert "bentoship server" in message and "\n" not in message
    # the three ways to connect: the data dir, the flags, the variables
    for way in ("BENTOSHIP_HOME", "--endpoint", "--token", "BENTO_CLOUD_API_ENDPOINT"):
        assert way in message
    assert "BENTO_CLOUD_API_KEY" in message
    for text in ("{not json", json.dumps({"endpoint": "http://x"}), json.dumps(["a", "b"])):
        (tmp_path / "connection.json").write_text(text)
        with pytest.raises(ConfigError, match="unreadable connection file"):
            read_connection(tmp_path)


def test_read_connection_defaults_to_bentoship_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_connection(tmp_path, Connection("http://127.0.0.1:7", "tok-0123456789"))
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    assert read_connection().endpoint == "http://127.0.0.1:7"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A connection file in BENTOSHIP_HOME, and no BENTO_CLOUD_API_* variables."""
    write_connection(tmp_path, Connection("http://file:1", "file-token-0123"))
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    monkeypatch.delenv("BENTO_CLOUD_API_ENDPOINT", raising=False)
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)
    return tmp_path


@pytest.mark.usefixtures("home")
def test_resolve_connection_explicit_values_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://env:2")
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "env-token-0123")
    assert resolve_connection("http://arg:3/", "arg-token") == Connection(
        "http://arg:3", "arg-token"
    )
    # one explicit value is completed from the environment
    assert resolve_connection("http://arg:3") == Connection("http://arg:3", "env-token-0123")
    assert resolve_connection(token="arg-token") == Connection("http://env:2", "arg-token")


@pytest.mark.usefixtures("home")
def test_resolve_connection_environment_before_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_connection() == Connection("http://file:1", "file-token-0123")
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://env:2/")
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "env-token-0123")
    assert resolve_connection() == Connection("http://env:2", "env-token-0123")


def test_resolve_connection_names_where_the_token_came_from(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_connection().source == f"the connection file {home / 'connection.json'}"
    flag = "the --token flag"
    assert resolve_connection("http://arg:3", "t-0123", token_source=flag).source == flag
    assert resolve_connection("http://arg:3", "t-0123").source == "the token argument"
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "env-token-0123")
    assert resolve_connection("http://arg:3", token_source=flag).source == "BENTO_CLOUD_API_KEY"
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://env:2")
    assert resolve_connection().source == "BENTO_CLOUD_API_KEY"
    assert resolve_connection(token="t-0123", token_source=flag).source == flag


@pytest.mark.usefixtures("home")
def test_resolve_connection_reads_the_given_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other-home")
    write_connection(other, Connection("http://other:4", "other-token-0123"))
    assert resolve_connection(home=other).endpoint == "http://other:4"


@pytest.mark.parametrize(
    ("variable", "missing"),
    [
        ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"),
        ("BENTO_CLOUD_API_KEY", "BENTO_CLOUD_API_ENDPOINT"),
    ],
)
@pytest.mark.usefixtures("home")
def test_half_a_connection_is_an_error_not_a_silent_fallback(
    monkeypatch: pytest.MonkeyPatch, variable: str, missing: str
) -> None:
    monkeypatch.setenv(variable, "http://env:2")
    with pytest.raises(ConfigError, match=missing):
        resolve_connection()
