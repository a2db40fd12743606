"""Giving a process its secrets: env secrets as variables, mountfile secrets as 0400 files.

Files go to a private folder per process, below this server's runtime folder (made in
``$BENTOSHIP_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR``, ``/dev/shm`` or the temp folder, never in the
data directory), and the folder is removed when the process stops. A secret's ``path`` is read
inside that folder, which the process finds in ``$BENTOSHIP_SECRETS_DIR``: ``$BENTOML_HOME``
stands for the folder itself, and an absolute path is taken below it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...tags import shown
from .book import PinnedSecret, SecretUnavailable
from .content import HOME_PREFIX, SecretContent
from .masking import Masker
from .sealing import inside

__all__ = ["SECRETS_DIR_ENV", "Delivered", "SecretDelivery", "default_runtime_base"]

SECRETS_DIR_ENV = "BENTOSHIP_SECRETS_DIR"
RUNTIME_DIR_ENV = "BENTOSHIP_RUNTIME_DIR"


def default_runtime_base() -> Path:
    """Where a server makes its runtime folder: memory-backed where the machine has one."""
    given = os.environ.get(RUNTIME_DIR_ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.access(xdg, os.W_OK):
        return Path(xdg)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def relative_folder(content: SecretContent) -> Path:
    """The folder of a mountfile secret's files, relative to the process's secrets folder."""
    path = (content.path or HOME_PREFIX).removeprefix(HOME_PREFIX)
    return Path(path.strip("/"))


@dataclass
class Delivered:
    """What one process gets: variables, its files' folder, and the masker of its output."""

    envs: dict[str, str] = field(default_factory=dict)
    masker: Masker = field(default_factory=lambda: Masker(()))
    folder: Path | None = None

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class SecretDelivery:
    """This server's runtime folder of secret files: made on first use, removed at close."""

    def __init__(self, data_dir: Path, base: Path | None = None) -> None:
        self.data_dir = data_dir
        self.base = base
        self._root: Path | None = None

    def root(self) -> Path:
        if self._root is None:
            base = self.base or default_runtime_base()
            base.mkdir(parents=True, exist_ok=True)
            if inside(base, self.data_dir):
                raise SecretUnavailable(
                    f"the runtime folder {base} is inside the data directory; give "
                    "--runtime-dir outside it"
                )
            self._root = Path(tempfile.mkdtemp(prefix="bentoship-", dir=base))
        return self._root

    def deliver(self, pinned: list[PinnedSecret], label: str) -> Delivered:
        """The variables and files of ``pinned``'s runtime secrets for one process."""
        given = [p for p in pinned if p.content.at_runtime]
        delivered = Delivered(masker=Masker(v for p in pinned for v in p.content.values()))
        for secret in given:
            if secret.content.type == "env":
                delivered.envs.update({i.key: i.value for i in secret.content.items})
        files = [p for p in given if p.content.type == "mountfile"]
        if files:
            delivered.folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.root()))
            try:
                for secret in files:
                    _write(delivered.folder, secret)
            except BaseException:
                delivered.remove()
                raise
            delivered.envs[SECRETS_DIR_ENV] = str(delivered.folder)
        return delivered

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _write(folder: Path, secret: PinnedSecret) -> None:
    target = folder / relative_folder(secret.content)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item in secret.content.items:
        path = target / item.file_name()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        except FileExistsError:
            raise SecretUnavailable(
                f"secret {shown(secret.name)}: another secret already mounts "
                f"{shown(str(path.relative_to(folder)))}; give them different paths"
            ) from None
        with contextlib.closing(os.fdopen(fd, "wb")) as handle:
            os.fchmod(fd, 0o400)
            handle.write(item.value.encode())
