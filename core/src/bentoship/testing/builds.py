"""Bentos built once per project content, shared by every process that uses the same cache."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidRequestError

__all__ = ["BuildCache", "default_build_cache", "project_digest"]

CACHE_ENV = "BENTOSHIP_BUILD_CACHE"
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


def default_build_cache() -> BuildCache:
    """``$BENTOSHIP_BUILD_CACHE``, else ``bentoship-builds`` in bentoml's home."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return BuildCache(Path(folder))
    from bentoml._internal.configuration.containers import BentoMLContainer

    return BuildCache(Path(BentoMLContainer.bentoml_home.get()) / "bentoship-builds")


def _files_of(project: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(root, name)


def project_digest(project: Path) -> str:
    """A digest of the project's files (names and bytes, hidden folders left out) and of the
    bentoml version that builds it."""
    import bentoml

    digest = hashlib.sha256(f"bentoml {bentoml.__version__}\0".encode())
    for path in _files_of(project):
        digest.update(path.relative_to(project).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


class BuildCache:
    """Builds each project content once: the first process to need it builds and exports the
    bento into ``folder``; the others (xdist workers, later sessions, other bentoml homes)
    import that archive, so every one of them gets the same tag."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def build(self, project_dir: str | Path) -> str:
        """The tag of the bento built from ``project_dir`` as it is now."""
        import bentoml
        from bentoml.exceptions import NotFound

        from ..steps.build import build
        from ..steps.local_store import import_bento_file

        project = Path(project_dir).resolve()
        if not (project / "bentofile.yaml").is_file():
            raise InvalidRequestError(
                f"no bentofile.yaml in {project}; pass a Bento project directory or a bento tag"
            )
        key = f"{project.name}-{project_digest(project)}"
        archive = self.folder / f"{key}.bento"
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tag_file = self.folder / f"{key}.tag"
            if archive.is_file() and tag_file.is_file():
                tag = tag_file.read_text().strip()
                with contextlib.suppress(NotFound):
                    return str(bentoml.bentos.get(tag).tag)
                return import_bento_file(archive)
            tag = build(project)
            partial = self.folder / f"{key}.partial"
            bentoml.bentos.export_bento(tag, str(partial) + ".bento")
            Path(str(partial) + ".bento").replace(archive)
            tag_file.write_text(tag + "\n")
            return tag
