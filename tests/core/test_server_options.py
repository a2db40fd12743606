"""The server's options, declared once (``server.options``), reach all three places that take
them: the ``bentoship server`` flags, the server's settings at start-up, and the
``LocalControlPlane`` launcher's command line. No process starts."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from bentoship.cli import build_parser
from bentoship.server import LocalControlPlane, ServerSettings
from bentoship.server.main import connection_hint, settings_from
from bentoship.server.options import OPTIONS, Option, add_arguments, settings_values

DERIVED = {"data_dir", "token", "secrets_key_file", "runtime_dir"}
"""Options the start-up resolves (a made folder, a created token, paths kept apart)."""


def sample(option: Option, tmp_path: Path) -> tuple[Any, str]:
    """A value of ``option`` other than its default, and its text for the environment."""
    if option.parse is None:
        return False, "0"
    default = option.default
    if option.name == "gpus":
        return (0, 2), "0,2"
    if option.name == "host":
        return "127.0.0.2", "127.0.0.2"
    if option.name == "trace_sample":
        return 0.75, "0.75"
    if option.name == "notify":
        return "http://127.0.0.1:9/hook#failed", "http://127.0.0.1:9/hook#failed"
    if option.name == "otlp_endpoint":
        return "http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"
    if option.name == "otlp_headers":
        return (("authorization", "Bearer x"), ("k", "v")), "authorization=Bearer x,k=v"
    if option.name == "token":
        return "t" * 24, "t" * 24
    if option.name == "parent_pid":
        return 4242, "4242"
    if option.name in ("data_dir", "secrets_key_file", "runtime_dir", "gpu_inventory"):
        path = tmp_path / option.name
        return path, str(path)
    if isinstance(default, float):
        return default * 2 + 1.5, str(default * 2 + 1.5)
    assert isinstance(default, int), option.name
    return default + 7, str(default + 7)


def server_args(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The options that ``bentoship server ARGV`` runs with."""
    return settings_values(parser.parse_args(["server", *argv]))


def test_every_setting_is_an_option_and_every_option_a_setting() -> None:
    fields = {field.name for field in dataclasses.fields(ServerSettings)}
    assert {option.name for option in OPTIONS} == fields
    defaults = {f.name: f.default for f in dataclasses.fields(ServerSettings)}
    for option in OPTIONS:
        if option.name not in DERIVED:
            assert option.default == defaults[option.name], option.name


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_an_option_given_to_the_launcher_reaches_the_flags_and_the_settings(
    option: Option, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in OPTIONS:
        monkeypatch.delenv(other.env_var, raising=False)
    value, _ = sample(option, tmp_path)
    given = {"data_dir": tmp_path / "plane", option.name: value}
    plane = LocalControlPlane(**given)
    parsed = server_args(build_parser(), plane.command()[4:])
    assert parsed[option.name] == value
    launcher = {"host": "127.0.0.1", "parent_pid": os.getpid()}
    expected = {o.name: o.default for o in OPTIONS} | launcher | given
    assert parsed == expected, "the option given, and no other option changes"
    if option.name in DERIVED or option.name == "host":
        return
    settings = settings_from({**parsed, "data_dir": tmp_path / "data", "token": "x" * 20})
    assert getattr(settings, option.name) == value


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_an_options_environment_variable_is_its_default_and_a_flag_wins(
    option: Option, tmp_path: Path
) -> None:
    value, text = sample(option, tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser, {option.env_var: text})
    assert settings_values(parser.parse_args([]))[option.name] == value
    if option.parse is not None:
        flag = [option.cli_flag, option.show(option.default)] if option.default else []
        if flag:
            assert settings_values(parser.parse_args(flag))[option.name] == option.default


def test_the_resolved_settings_keep_secrets_apart_from_the_data_dir(tmp_path: Path) -> None:
    settings = settings_from(
        {
            "data_dir": tmp_path / "data",
            "secrets_key_file": tmp_path / "keys" / "secrets.key",
            "runtime_dir": tmp_path / "run",
            "token": "s" * 20,
        }
    )
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.secrets_key_file == (tmp_path / "keys" / "secrets.key").resolve()
    assert settings.runtime_dir == (tmp_path / "run").resolve()
    assert settings.token == "s" * 20
    with pytest.raises(SystemExit, match="inside the data dir"):
        settings_from({"data_dir": tmp_path / "data", "runtime_dir": tmp_path / "data" / "run"})


def test_a_data_dir_other_than_the_home_gets_the_line_that_points_the_cli_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BENTOSHIP_HOME", str(home))
    assert connection_hint(home) is None
    assert connection_hint(home / "sub" / "..") is None
    other = tmp_path / "my data"
    settings = settings_from({"data_dir": other})
    hint = connection_hint(settings.data_dir)
    assert hint is not None and "\n" not in hint
    assert hint.startswith(f"export BENTOSHIP_HOME='{settings.data_dir}'  # ")
    assert str(settings.data_dir / "connection.json") in hint and settings.token not in hint


def test_bad_values_get_one_line_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TypeError, match="no server option readiness; the options are: host"):
        LocalControlPlane(tmp_path, readiness=5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["server", "--rollback-window", "-3"])
    assert "expected a positive number of seconds, got -3" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    with pytest.raises(SystemExit, match=r"\$BENTOSHIP_METRICS_RETENTION: 'soon' is not a"):
        add_arguments(parser, {"BENTOSHIP_METRICS_RETENTION": "soon"})
