"""A step or command whose extra is not installed says in one line which extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bentoship import Client, ConfigError, MissingExtraError
from bentoship.cli import EXIT_USAGE, main
from bentoship.extras import SERVER_MODULES, require
from bentoship.steps import build, import_bento_file, push

ECHO = Path(__file__).parents[1] / "fixtures" / "bentos" / "echo"


def one_line_naming(exc: BaseException, extra: str) -> str:
    text = str(exc)
    assert "\n" not in text
    assert f"pip install 'bentoship[{extra}]'" in text
    return text


def test_require_returns_an_installed_module() -> None:
    assert require("json", feature="anything", extra="build") is sys.modules["json"]


def test_require_names_the_extra_of_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bentoml", None)
    monkeypatch.setitem(sys.modules, "bentoship_absent_package", None)
    for module in ("bentoml", "bentoship_absent_package.submodule"):
        with pytest.raises(MissingExtraError) as caught:
            require(module, feature="the build step", extra="build")
        assert isinstance(caught.value, ConfigError)
        assert caught.value.extra == "build"
        text = one_line_naming(caught.value, "build")
        assert text.startswith("the build step needs")


def test_a_broken_dependency_is_not_reported_as_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed module whose own import fails keeps its error: the extra is no fix."""
    (tmp_path / "bentoship_broken_module.py").write_text("import bentoship_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bentoship_broken_module", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        require("bentoship_broken_module", feature="the build step", extra="build")
    assert not isinstance(caught.value, MissingExtraError)
    assert caught.value.name == "bentoship_absent_dependency"


def test_build_and_push_steps_without_bentoml_name_the_build_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "bentoml", None)
    with pytest.raises(MissingExtraError) as caught:
        build(ECHO)
    assert "build step" in one_line_naming(caught.value, "build")

    archive = tmp_path / "echo.bento"
    archive.write_bytes(b"not checked before bentoml is needed")
    with pytest.raises(MissingExtraError) as caught:
        import_bento_file(archive)
    one_line_naming(caught.value, "build")

    with Client("http://127.0.0.1:9", "token") as client:
        # The server lacks the bento, so push reaches the upload, which needs bentoml.
        monkeypatch.setattr(client, "bento_uploaded", lambda tag: False)
        with pytest.raises(MissingExtraError) as caught:
            push("echo:v1", client=client)
    assert "push step" in one_line_naming(caught.value, "build")


@pytest.mark.parametrize("module", SERVER_MODULES)
def test_server_command_without_its_extra_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    module: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["server", "--data-dir", str(tmp_path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bentoship: error: bentoship server needs")
    one_line_naming(Exception(lines[0]), "server")
    assert not list(tmp_path.iterdir()), "nothing is written before the check"
