"""Checked unpacking of pushed bento and model archives."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

MANIFEST_FILES = {"bento": "bento.yaml", "model": "model.yaml"}


class ArchiveError(ValueError):
    """The uploaded archive is unsafe or is not what it claims to be."""


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise ArchiveError(f"archive member {name!r} has an absolute path; re-create the archive")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} escapes the archive with '..'")
    if member.issym() or member.islnk():
        raise ArchiveError(f"archive member {name!r} is a link; links are not accepted")
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"archive member {name!r} is not a regular file or directory")
    return PurePosixPath(*parts) if parts else None


def check_archive(archive: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """Return the archive's members after checking each one, or raise ArchiveError."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"upload is not a readable tar archive ({exc})") from None
    total = 0
    for member in members:
        _member_path(member)
        total += member.size
        if total > max_bytes:
            raise ArchiveError(
                f"archive unpacks to more than {max_bytes} bytes; "
                "raise the server's --max-archive-bytes to accept it"
            )
    return members


def read_manifest(kind: str, archive: Path, members: list[tarfile.TarInfo]) -> dict[str, Any]:
    """Read ``bento.yaml`` or ``model.yaml`` from the archive's root."""
    wanted = MANIFEST_FILES[kind]
    with tarfile.open(archive, mode="r:*") as tar:
        for member in members:
            path = _member_path(member)
            if path is not None and str(path) == wanted and member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                try:
                    data = yaml.safe_load(handle.read())
                except yaml.YAMLError as exc:
                    raise ArchiveError(
                        f"{wanted} in the archive is not valid YAML: {exc}"
                    ) from None
                if not isinstance(data, dict):
                    raise ArchiveError(f"{wanted} in the archive is not a mapping")
                return data
    raise ArchiveError(
        f"archive has no {wanted} at its root: it is not a {kind}; push a built {kind}"
    )


def install_archive(
    kind: str,
    archive: Path,
    *,
    name: str,
    version: str,
    store_dir: Path,
    max_bytes: int,
) -> Path:
    """Check ``archive`` and unpack it to ``store_dir/<name>/<version>``.

    Nothing is written when the archive is rejected.
    """
    members = check_archive(archive, max_bytes)
    manifest = read_manifest(kind, archive, members)
    if str(manifest.get("name")) != name or str(manifest.get("version")) != version:
        raise ArchiveError(
            f"archive holds {kind} {manifest.get('name')}:{manifest.get('version')}, "
            f"not {name}:{version}; push the {kind} under its own tag"
        )
    target = store_dir / name / version
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(staging, members=members, filter="data")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
