"""The build step: a Bento from a project directory, optionally exported as one archive file."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import BuildFailed, InvalidRequestError
from .local_store import import_model_file

CLOUD_VARIABLES = ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY")


@contextlib.contextmanager
def _project_modules(project: Path) -> Iterator[None]:
    """Import the project's own modules fresh, and forget them afterwards.

    bentoml imports the service module by name; a ``service`` module left over from another
    project's build in the same process would be picked up instead.
    """

    own = {path.stem for path in project.glob("*.py")}
    own |= {path.parent.name for path in project.glob("*/__init__.py")}

    def forget() -> None:
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            shadowed = name.split(".", 1)[0] in own
            if shadowed or (file and Path(file).resolve().is_relative_to(project)):
                del sys.modules[name]

    forget()
    try:
        yield
    finally:
        forget()


@contextlib.contextmanager
def _no_cloud_credentials() -> Iterator[None]:
    """Hide BentoCloud credentials while building.

    Otherwise bentoml resolves a model missing from the local store (``my_model:latest``) by
    pulling whatever was pushed last, and the bento silently packs the wrong model.
    """
    saved = {name: os.environ.pop(name) for name in CLOUD_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def build(
    project_dir: str | Path,
    *,
    version: str | None = None,
    labels: dict[str, str] | None = None,
    models: Sequence[str | Path] = (),
    export_path: str | Path | None = None,
) -> str:
    """Build the Bento in ``project_dir`` and return its tag.

    ``models`` are exported model files imported first (for builds on another machine than
    training); ``export_path`` writes the built Bento as one archive for a later push.
    """
    from ..extras import require

    require("bentoml", feature="the build step", extra="build")
    import bentoml
    from bentoml.exceptions import BentoMLException

    project = Path(project_dir).resolve()
    if not (project / "bentofile.yaml").is_file():
        raise InvalidRequestError(f"no bentofile.yaml in {project}; pass a Bento project directory")
    for model in models:
        import_model_file(model)
    try:
        with contextlib.chdir(project), _project_modules(project), _no_cloud_credentials():
            bento = bentoml.bentos.build_bentofile(
                build_ctx=str(project), version=version, labels=labels
            )
    except BentoMLException as exc:
        problem = " ".join(str(exc).split())[:400]
        raise BuildFailed(
            f"bentoml build of {project} failed: {problem}; fix the project and build again"
        ) from None
    tag = str(bento.tag)
    if export_path is not None:
        target = Path(export_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = bentoml.bentos.export_bento(tag, str(target.with_name(target.name + ".bento")))
        os.replace(written, target)
    return tag
