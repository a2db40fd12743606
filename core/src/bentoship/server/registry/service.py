"""Bentos and models: repositories, versions, and the upload protocol that bentoml speaks.

bentoml pushes in four calls: create the version (``pending``), ``start_upload``
(``uploading``), ``PUT …/upload`` with the archive, and ``finish_upload``. An archive is checked
and unpacked before the version reads ``success``; a rejected archive writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from ...refs import entry_service
from ...tags import NAME_PATTERN, VERSION_PATTERN, shown
from ..errors import Invalid, NotFound
from ..settings import ServerSettings
from ..store import Artifact, Store, new_uid, now
from .archives import ArchiveError, install_archive

__all__ = ["KINDS", "LATEST", "Registry", "UploadStatus"]

KINDS = ("bento", "model")
LATEST = "latest"
"""The version that names a repository's newest uploaded one, as in bentoml's tags."""
UPLOAD_STEPS = ("start_upload", "presign_upload_url", "presign_download_url", "finish_upload")


class UploadStatus(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    SUCCESS = "success"
    FAILED = "failed"


MAX_DESCRIPTION_CHARACTERS = 64 * 1024


def _labels(value: Any) -> list[dict[str, str]]:
    """Labels as ``[{key, value}]``; anything else is refused in one line."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("key"), str) for item in value
    ):
        raise Invalid(f"labels must be a list of {{key, value}} objects, not {shown(value)}")
    return [{"key": item["key"], "value": str(item.get("value") or "")} for item in value]


def _manifest(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise Invalid(f"manifest must be an object, not {shown(value)}")


def _description(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) > MAX_DESCRIPTION_CHARACTERS:
        raise Invalid(f"description is longer than {MAX_DESCRIPTION_CHARACTERS} characters")
    return text


class Registry:
    """The store of pushed bentos and models."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store

    # repositories

    def repository(self, kind: str, name: str) -> sqlite3.Row:
        row = self.store.get_repository(kind, name)
        if row is None:
            raise NotFound(f"{kind} repository {shown(name)} not found (record not found)")
        return row

    def create_repository(self, kind: str, name: object, description: object) -> sqlite3.Row:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise Invalid(
                f"invalid {kind} repository name {shown(name)}; use lowercase letters, digits, "
                "'-', '_' and '.' (at most 63 characters)"
            )
        return self.store.create_repository(kind, name, _description(description))

    # versions

    def artifact(
        self, kind: str, repository: str, version: str, *, newest: bool = False
    ) -> Artifact:
        """The version named, or NotFound; with ``newest``, ``latest`` is the newest uploaded."""
        found = self.newest if newest else self.store.get_artifact
        item = found(kind, repository, version)
        if item is None:
            raise NotFound(
                f"{kind} {repository}:{version} not found (record not found); push it first"
            )
        return item

    def put_artifact(self, kind: str, repository: str, body: dict[str, Any]) -> Artifact:
        """Create a version, or update the record of an existing one (its upload is kept)."""
        self.repository(kind, repository)
        version = body.get("version")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise Invalid(f"invalid {kind} version {shown(version)}")
        if version == LATEST:
            raise Invalid(
                f"{kind} version 'latest' names the newest one; give the {kind} its own version"
            )
        manifest = _manifest(body.get("manifest"))
        if kind == "model" and manifest is None:
            raise Invalid("a model needs a manifest")
        labels = _labels(body.get("labels"))
        description = _description(body.get("description"))
        existing = self.store.get_artifact(kind, repository, version)
        item = Artifact(
            kind=kind,
            repository=repository,
            version=version,
            uid=existing.uid if existing else new_uid(),
            description=description,
            manifest=manifest,
            labels=labels,
            build_at=str(body.get("build_at") or now()),
            created_at=existing.created_at if existing else now(),
            updated_at=now() if existing else None,
            upload_status=existing.upload_status if existing else UploadStatus.PENDING,
            upload_finished_reason=existing.upload_finished_reason if existing else "",
        )
        self.store.upsert_artifact(item)
        return item

    def patch_artifact(
        self, kind: str, repository: str, version: str, body: dict[str, Any]
    ) -> Artifact:
        item = self.artifact(kind, repository, version)
        if body.get("description") is not None:
            item.description = _description(body["description"])
        if body.get("manifest") is not None:
            item.manifest = _manifest(body["manifest"])
        if body.get("labels") is not None:
            item.labels = _labels(body["labels"])
        item.updated_at = now()
        self.store.upsert_artifact(item)
        return item

    # the upload protocol

    def upload_step(
        self, kind: str, repository: str, version: str, step: str, body: dict[str, Any]
    ) -> Artifact:
        """``start_upload`` and ``finish_upload``; the presign calls are no-ops here."""
        item = self.artifact(kind, repository, version)
        if step not in UPLOAD_STEPS:
            raise NotFound(f"unknown upload step {shown(step)}")
        if step == "start_upload" and item.upload_status != UploadStatus.SUCCESS:
            item.upload_status = UploadStatus.UPLOADING
        elif step == "finish_upload":
            status = body.get("status")
            archived = self.archive_path(item).exists()
            if status == UploadStatus.SUCCESS and not archived:
                raise Invalid(f"{item.tag} has no uploaded archive; upload it before finishing")
            if status in (UploadStatus.SUCCESS, UploadStatus.FAILED):
                item.upload_status = str(status)
                item.upload_finished_reason = str(body.get("reason") or "")
        self.store.upsert_artifact(item)
        return item

    def archive_path(self, item: Artifact) -> Path:
        return (
            self.settings.data_dir
            / "archives"
            / item.kind
            / item.repository
            / f"{item.version}.tar"
        )

    async def receive_archive(
        self, kind: str, repository: str, version: str, chunks: AsyncIterator[bytes]
    ) -> Artifact:
        """Stage the uploaded archive, check and unpack it, then mark the version uploaded."""
        item = self.artifact(kind, repository, version)
        limit = self.settings.max_archive_bytes
        self.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        staging = self.settings.uploads_dir / f"{secrets.token_hex(8)}.tar"
        try:
            size = 0
            with staging.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise Invalid(
                            f"archive is larger than {limit} bytes; "
                            "raise the server's --max-archive-bytes to accept it"
                        )
                    handle.write(chunk)
            try:
                await asyncio.to_thread(
                    install_archive,
                    kind,
                    staging,
                    name=repository,
                    version=version,
                    store_dir=self.settings.store_dir(kind),
                    max_bytes=limit,
                )
            except ArchiveError as exc:
                raise Invalid(f"rejected {kind} archive for {item.tag}: {exc}") from None
            target = self.archive_path(item)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        item.upload_status = UploadStatus.SUCCESS
        item.upload_finished_reason = ""
        item.updated_at = now()
        self.store.upsert_artifact(item)
        return item

    def download_path(self, kind: str, repository: str, version: str) -> Path:
        item = self.artifact(kind, repository, version)
        path = self.archive_path(item)
        if item.upload_status != UploadStatus.SUCCESS or not path.exists():
            raise NotFound(f"{item.tag} has no uploaded archive (record not found)")
        return path

    # what deployments need

    def newest(self, kind: str, repository: str, version: str) -> Artifact | None:
        """The version named, or with ``latest`` the newest whose upload succeeded."""
        if version != LATEST:
            return self.store.get_artifact(kind, repository, version)
        uploaded = (
            item
            for item in self.store.list_artifacts(kind, repository)
            if item.upload_status == UploadStatus.SUCCESS
        )
        return next(uploaded, None)

    def resolve_bento(self, tag: str) -> tuple[str, str]:
        """(tag, entry service) of a pushed bento whose models were pushed too; ``name:latest``
        resolves to its newest uploaded version. The tag's form is checked before (a deployment
        body's, by ``check_body``)."""
        name, _, version = tag.partition(":")
        item = self.newest("bento", name, version)
        if item is not None:
            tag = f"{name}:{item.version}"
        if item is None or item.upload_status != UploadStatus.SUCCESS:
            raise NotFound(
                f"bento {tag} not found on this server (record not found); "
                "push it first with `bentoml push` or bentoship's push step"
            )
        manifest = item.manifest or {}
        for model in manifest.get("models") or []:
            model_tag = model if isinstance(model, str) else ""
            model_name, _, model_version = model_tag.partition(":")
            found = self.store.get_artifact("model", model_name, model_version)
            if model_tag and (found is None or found.upload_status != UploadStatus.SUCCESS):
                raise Invalid(
                    f"bento {tag} needs model {model_tag}, which was not pushed; push it first"
                )
        return tag, entry_service(manifest)
