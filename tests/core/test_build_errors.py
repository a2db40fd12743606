"""A failed build is a BuildFailed (exit code 1), not bad usage; no process is started.

A fixed version builds idempotently: the same inputs again reuse the stored bento, other
inputs under that version are refused in one line and leave it intact. Those tests run
``bentoml build`` and are marked slow.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import bentoml
import pytest

from bentoship import BuildFailed, InvalidRequestError, cli
from bentoship.steps import build

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bentos"


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


# a fixed version: idempotent


@pytest.fixture
def echo_project(tmp_path: Path) -> Path:
    """A fresh copy of the echo project, to change between builds."""
    project = tmp_path / "echo"
    shutil.copytree(FIXTURES / "echo", project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "version.txt").write_text("idempotent\n")
    return project


def stored_file(tag: str, relative: str) -> str:
    return (Path(bentoml.bentos.get(tag).path) / relative).read_text()


@pytest.mark.slow
def test_building_the_same_version_twice_reuses_the_bento(
    echo_project: Path, tmp_path: Path
) -> None:
    tag = build(echo_project, version="same-1", labels={"team": "ml"})
    assert tag == "echo:same-1"
    created = bentoml.bentos.get(tag).info.creation_time

    archive = tmp_path / "out" / "echo.bento"
    again = build(echo_project, version="same-1", labels={"team": "ml"}, export_path=archive)
    assert again == tag
    # the stored bento is the first one, not replaced, and the archive is written anyway
    assert bentoml.bentos.get(tag).info.creation_time == created
    assert archive.is_file() and archive.stat().st_size > 0
    assert [str(b.tag) for b in bentoml.bentos.list("echo") if b.tag.version == "same-1"] == [tag]


@pytest.mark.slow
def test_other_inputs_under_an_existing_version_are_refused_in_one_line(
    echo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = build(echo_project, version="same-2", labels={"team": "ml"})

    (echo_project / "version.txt").write_text("changed\n")
    with pytest.raises(InvalidRequestError) as caught:
        build(echo_project, version="same-2", labels={"team": "ml"})
    message = str(caught.value)
    assert message.startswith(f"bento {tag} already exists with different contents")
    assert "src/version.txt" in message and f"`bentoml delete {tag}`" in message
    assert "new version" in message and "\n" not in message

    (echo_project / "version.txt").write_text("idempotent\n")
    with pytest.raises(InvalidRequestError, match=r"differing: labels"):
        build(echo_project, version="same-2", labels={"team": "other"})

    # the stored bento is left as it was
    stored = bentoml.bentos.get(tag)
    assert stored.info.labels["team"] == "ml"
    assert stored_file(tag, "src/version.txt") == "idempotent\n"
    # and the first inputs still reuse it
    assert build(echo_project, version="same-2", labels={"team": "ml"}) == tag

    # through the CLI: bad input, exit code 2, one line
    capsys.readouterr()
    argv = ["build", str(echo_project), "--version", "same-2", "--label", "team=other"]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    # (a logging handler that an earlier test left on pytest's closed capture may print its
    # own complaint first: the CLI's answer is its one line of its own)
    ours = [line for line in err.splitlines() if line.startswith("bentoship:")]
    assert len(ours) == 1 and ours[0].startswith(f"bentoship: error: bento {tag} already exists")


@pytest.mark.slow
def test_a_new_model_under_the_same_model_tag_is_other_inputs(echo_project: Path) -> None:
    with (echo_project / "bentofile.yaml").open("a") as bentofile:
        bentofile.write('models:\n  - "idempotent_model:latest"\n')

    def train(weights: str) -> str:
        with bentoml.models.create("idempotent_model") as model:
            (Path(model.path) / "weights.txt").write_text(weights)
        return str(model.tag)

    first = train("1")
    tag = build(echo_project, version="same-3")
    assert build(echo_project, version="same-3") == tag

    train("2")  # idempotent_model:latest now resolves to another model
    with pytest.raises(InvalidRequestError, match=r"\(differing: models\);"):
        build(echo_project, version="same-3")
    assert [str(m.tag) for m in bentoml.bentos.get(tag).info.all_models] == [first]
