"""A secret's content as BentoCloud shapes it, checked: ``{type, items, path?, stage?}``.

Error messages name secrets, keys and paths, never a value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ...tags import shown
from ..errors import Invalid

__all__ = [
    "HOME_PREFIX",
    "SecretContent",
    "SecretItem",
    "check_secret_name",
    "parse_content",
]

TYPES = ("env", "mountfile")
STAGES = ("build", "runtime", "all")
HOME_PREFIX = "$BENTOML_HOME"
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
ENV_KEY_PATTERN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
PART_PATTERN = re.compile(r"\A[A-Za-z0-9_.@+=-]{1,255}\Z")
MAX_ITEMS = 100
MAX_VALUE_BYTES = 64 * 1024
MAX_PATH_CHARACTERS = 1024


@dataclass(frozen=True)
class SecretItem:
    key: str
    value: str
    sub_path: str | None = None

    def file_name(self) -> str:
        """Where a mounted item goes below its secret's path: ``sub_path``, else the key."""
        return self.sub_path or self.key


@dataclass(frozen=True)
class SecretContent:
    """One version of a secret: its type, items with their values, and where files go."""

    type: str
    items: tuple[SecretItem, ...]
    path: str | None = None
    stage: str | None = None

    def to_bytes(self) -> bytes:
        """The canonical JSON of this version (what is sealed and digested)."""
        data = {
            "type": self.type,
            "path": self.path,
            "stage": self.stage,
            "items": [[i.key, i.sub_path, i.value] for i in self.items],
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> SecretContent:
        data = json.loads(raw)
        items = tuple(SecretItem(key, value, sub_path) for key, sub_path, value in data["items"])
        return cls(type=data["type"], items=items, path=data["path"], stage=data["stage"])

    def shape(self) -> dict[str, Any]:
        """BentoCloud's ``content`` without the values."""
        return {
            "type": self.type,
            "path": self.path,
            "stage": self.stage,
            "items": [{"key": i.key, "sub_path": i.sub_path} for i in self.items],
        }

    @property
    def at_runtime(self) -> bool:
        """A build-only secret is not given to running services."""
        return self.stage != "build"

    def values(self) -> list[str]:
        return [item.value for item in self.items]


def check_secret_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise Invalid(
            f"secret name {shown(name)} is invalid; use letters, digits, '-', '_' and '.' "
            "(at most 63 characters, starting and ending with a letter or digit)"
        )
    return name


def _relative(value: object, field: str) -> PurePosixPath:
    """A relative path whose every part is a plain file name (no '..', no empty parts)."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARACTERS:
        raise Invalid(f"{field}: expected a relative path of at most {MAX_PATH_CHARACTERS} chars")
    path = PurePosixPath(value)
    parts = [p for p in value.split("/") if p]
    if path.is_absolute() or any(p in (".", "..") or not PART_PATTERN.match(p) for p in parts):
        raise Invalid(
            f"{field}: {shown(value)} must be a relative path of plain names "
            "(letters, digits, '_', '.', '-'; no '..')"
        )
    return PurePosixPath(*parts)


def parse_mount_path(path: object, field: str = "content.path") -> str:
    """``$BENTOML_HOME`` or ``$BENTOML_HOME/<relative>``, or an absolute path of plain names."""
    if path is None or path == "":
        return HOME_PREFIX
    if not isinstance(path, str):
        raise Invalid(f"{field}: expected a path")
    text = path.replace("${BENTOML_HOME}", HOME_PREFIX)
    rest = text.removeprefix(HOME_PREFIX) if text.startswith(HOME_PREFIX) else None
    if rest is None and not text.startswith("/"):
        raise Invalid(
            f"{field}: {shown(path)} must be absolute or start with {HOME_PREFIX} "
            f"(e.g. {HOME_PREFIX}/certs or /etc/app)"
        )
    tail = (rest if rest is not None else text).strip("/")
    if tail:
        tail = str(_relative(tail, field))
    head = HOME_PREFIX if rest is not None else ""
    return f"{head}/{tail}" if tail else (head or "/")


def parse_content(raw: object, previous: SecretContent | None = None) -> SecretContent:
    """The checked content of a create (``previous`` None) or an update; an update's item that
    omits its value keeps the value it had."""
    if not isinstance(raw, dict):
        raise Invalid("content: expected an object {type, items, path?, stage?}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise Invalid(f"content.type: {shown(kind)} is not one of env, mountfile")
    stage = raw.get("stage") or None
    if stage is not None and stage not in STAGES:
        raise Invalid(f"content.stage: {shown(stage)} is not one of build, runtime, all")
    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not 1 <= len(items_raw) <= MAX_ITEMS:
        raise Invalid(f"content.items: expected a list of 1 to {MAX_ITEMS} {{key, value}} items")
    kept = {i.key: i.value for i in previous.items} if previous else {}
    items: list[SecretItem] = []
    for index, item in enumerate(items_raw):
        items.append(_item(item, f"content.items[{index}]", kind, kept))
    keys = [i.key for i in items]
    names = [i.file_name() for i in items]
    for seen in (keys, names):
        doubled = next((k for k in seen if seen.count(k) > 1), None)
        if doubled is not None:
            raise Invalid(f"content.items: {shown(doubled)} is given twice")
    path = parse_mount_path(raw.get("path")) if kind == "mountfile" else None
    return SecretContent(type=kind, items=tuple(items), path=path, stage=stage)


def _item(item: object, field: str, kind: str, kept: dict[str, str]) -> SecretItem:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise Invalid(f"{field}: expected an object with a string 'key'")
    key: str = item["key"]
    if kind == "env" and not ENV_KEY_PATTERN.match(key):
        raise Invalid(f"{field}.key: {shown(key)} is not an environment variable name")
    if kind == "mountfile" and (not PART_PATTERN.match(key) or key in (".", "..")):
        raise Invalid(f"{field}.key: {shown(key)} is not a file name")
    value = item.get("value")
    if value is None and key in kept:
        value = kept[key]
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field}.value: expected a non-empty string")
    if "\x00" in value or len(value.encode()) > MAX_VALUE_BYTES:
        raise Invalid(f"{field}.value: holds a NUL byte or is longer than {MAX_VALUE_BYTES} bytes")
    sub_path = item.get("sub_path") or None
    if sub_path is not None:
        if kind != "mountfile":
            raise Invalid(f"{field}.sub_path: only mountfile secrets have sub paths")
        sub_path = str(_relative(sub_path, f"{field}.sub_path"))
    return SecretItem(key=key, value=value, sub_path=sub_path)
