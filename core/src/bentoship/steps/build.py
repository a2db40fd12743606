"""The build step: a Bento from a project directory, optionally exported as one archive file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildFailed, InvalidRequestError
from .local_store import import_model_file

if TYPE_CHECKING:
    from bentoml import Bento

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

    With a fixed ``version`` the build is idempotent, so a retried or cleared task succeeds:
    when the local store already holds ``NAME:VERSION`` built from the same inputs, that bento
    is reused (its tag returned, ``export_path`` written again). The same inputs means that
    the new build has the same bento contents as the stored one: the same files under ``src/``
    (the project files bentoml includes and the bentofile as it resolved it), the same
    generated image files and README, the same Python requirements before locking, and the
    same labels and models (by resolved tag, so a newly imported ``my_model:latest`` counts
    as different). Only the creation time and the locked requirements may differ. Other
    inputs under an existing version raise ``InvalidRequestError`` and leave the stored bento
    alone. Without ``version`` bentoml generates a new one every time.
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
            if version is None:
                tag = str(bentoml.bentos.build_bentofile(build_ctx=str(project), labels=labels).tag)
            else:
                tag = _build_version(project, version, labels)
    except BentoMLException as exc:
        problem = " ".join(str(exc).split())[:400]
        raise BuildFailed(
            f"bentoml build of {project} failed: {problem}; fix the project and build again"
        ) from None
    if export_path is not None:
        target = Path(export_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = bentoml.bentos.export_bento(tag, str(target.with_name(target.name + ".bento")))
        os.replace(written, target)
    return tag


def _build_version(project: Path, version: str, labels: dict[str, str] | None) -> str:
    """Build ``NAME:version`` into a scratch store, then keep it or reuse an identical one.

    bentoml knows the bento's name only once it has loaded the service, so the build runs
    first, into a store of its own; nothing lands in the real store unless it is new.
    """
    import bentoml
    from bentoml._internal.bento import BentoStore
    from bentoml.exceptions import BentoMLException

    with tempfile.TemporaryDirectory(prefix="bentoship-build-") as scratch:
        staged = bentoml.bentos.build_bentofile(
            build_ctx=str(project),
            version=version,
            labels=labels,
            _bento_store=BentoStore(scratch),
        )
        existing = _stored(staged.tag)
        if existing is None:
            try:
                return str(staged.save().tag)
            except BentoMLException:
                # another build of this version may have saved it first: compare with that one
                existing = _stored(staged.tag)
                if existing is None:
                    raise
        difference = _difference(_contents(existing), _contents(staged))
        if difference:
            tag = str(existing.tag)
            raise InvalidRequestError(
                f"bento {tag} already exists with different contents ({difference}); build "
                f"with a new version, or delete it with `bentoml delete {tag}`"
            )
        return str(existing.tag)


def _stored(tag: object) -> Bento | None:
    """The bento ``tag`` in the local store, or None."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.bentos.get(str(tag))
    except NotFound:
        return None


# Files that bentoml derives at build time from something other than the build's inputs.
CREATION_RECORD = "bento.yaml"  # creation time; its labels and models are compared separately
LOCKED_REQUIREMENTS = ("env/python/requirements.lock.txt",)
LOCKED_WHEN_GENERATED = "env/python/requirements.txt"  # the lock of requirements.in


def _contents(bento: Bento) -> dict[str, str]:
    """What decides whether two builds of one version are the same: ``{item: digest}``.

    Every file of the bento, by content (a symlink by its target), except the creation record
    and the locked requirements; plus its labels and its models' resolved tags.
    """
    root = Path(bento.path)
    skipped = {CREATION_RECORD, *LOCKED_REQUIREMENTS}
    if (root / "env/python/requirements.in").is_file():
        skipped.add(LOCKED_WHEN_GENERATED)
    items: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *files]:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if relative in skipped or relative == "models" or relative.startswith("models/"):
                continue
            if path.is_symlink():
                items[relative] = "symlink to " + os.readlink(path)
            elif path.is_file():
                with path.open("rb") as file:
                    items[relative] = hashlib.file_digest(file, "sha256").hexdigest()
    info = bento.info
    items["labels"] = repr(sorted(info.labels.items()))
    items["models"] = repr(sorted(str(model.tag) for model in info.all_models))
    return items


def _difference(existing: dict[str, str], new: dict[str, str]) -> str:
    """Name what differs between two ``_contents``, briefly; "" when they are the same."""
    changed = sorted(
        item for item in existing.keys() | new.keys() if existing.get(item) != new.get(item)
    )
    if not changed:
        return ""
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return "differing: " + ", ".join(changed[:3]) + more
