"""A revision's own BENTOML_HOME: its bento and exactly the models that bento was built with.

Revisions share one store of pushed bentos and models, but a service that loads
``my_model:latest`` must get the model its bento pinned, as in a BentoCloud image.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml


def pinned_models(bento_yaml: Path) -> list[str]:
    """Model tags a built bento references, from its ``bento.yaml``."""
    info: dict[str, Any] = yaml.safe_load(bento_yaml.read_text()) or {}
    tags: list[str] = []
    entries = list(info.get("models") or [])
    for service in info.get("services") or []:
        entries += service.get("models") or []
    for entry in entries:
        tag = entry.get("tag") if isinstance(entry, dict) else entry
        if isinstance(tag, str) and ":" in tag and tag not in tags:
            tags.append(tag)
    return tags


def _link(kind_dir: Path, store: Path, tag: str) -> None:
    name, version = tag.split(":", 1)
    target = kind_dir / name / version
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(store / name / version, target_is_directory=True)
    (kind_dir / name / "latest").write_text(version)


def prepare_revision_home(home: Path, bento: str, bento_store: Path, model_store: Path) -> Path:
    """Create ``home`` with links to ``bento`` and its pinned models; return it."""
    if home.exists():
        shutil.rmtree(home)
    name, version = bento.split(":", 1)
    _link(home / "bentos", bento_store, bento)
    for tag in pinned_models(bento_store / name / version / "bento.yaml"):
        _link(home / "models", model_store, tag)
    return home
