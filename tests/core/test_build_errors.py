"""A failed build is a BuildFailed (exit code 1), not bad usage; no process is started."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bentoship import BuildFailed, InvalidRequestError, cli
from bentoship.steps import build


def test_a_broken_project_raises_build_failed_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bentofile.yaml").write_text('service: "missing_module:Svc"\n')
    with pytest.raises(BuildFailed) as caught:
        build(tmp_path)
    message = str(caught.value)
    assert not isinstance(caught.value, InvalidRequestError)
    assert "missing_module" in message and "fix the project" in message
    assert "\n" not in message


def test_a_folder_without_bentofile_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"no bentofile\.yaml"):
        build(tmp_path)


def test_the_cli_exits_1_for_a_failed_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(args: argparse.Namespace) -> int:
        raise BuildFailed("bentoml build of /p failed: boom; fix the project and build again")

    monkeypatch.setitem(cli.HANDLERS, "status", failing)
    assert cli.main(["status", "--endpoint", "http://127.0.0.1:9", "--token", "t" * 12]) == 1
    assert "bentoship: failed: bentoml build of /p failed: boom" in capsys.readouterr().err
