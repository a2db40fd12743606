"""The secrets key: Fernet encryption of secret contents and keyed digests of their versions.

The key lives in a file of its own, apart from the data directory, so a copy of the state (a
backup, a support bundle) holds only ciphertext. The file is made on first use, mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import DomainError

__all__ = ["KEY_FILE_ENV", "SealBroken", "Sealer", "default_key_file", "inside"]

KEY_FILE_ENV = "BENTOSHIP_SECRETS_KEY_FILE"
DIGEST_CONTEXT = b"bentoship secret version"


class SealBroken(DomainError):
    """The key file is unusable, or is not the one that sealed a value (a server fault)."""

    status = 500


def default_key_file() -> Path:
    """``$BENTOSHIP_SECRETS_KEY_FILE``, else ``$XDG_CONFIG_HOME/bentoship/secrets.key``."""
    given = os.environ.get(KEY_FILE_ENV)
    if given:
        return Path(given)
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "bentoship" / "secrets.key"


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


class Sealer:
    """Seals and opens secret contents with the key in ``key_file`` (read or made on first use)."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None
        self._mac_key = b""

    def _load(self) -> Fernet:
        if self._fernet is None:
            key = self._read_or_create()
            try:
                self._fernet = Fernet(key)
            except ValueError:
                raise SealBroken(
                    f"the secrets key file {self.key_file} does not hold a Fernet key; restore "
                    "it, or point --secrets-key-file at the right one"
                ) from None
            self._mac_key = hmac.new(key, DIGEST_CONTEXT, hashlib.sha256).digest()
        return self._fernet

    def _read_or_create(self) -> bytes:
        try:
            return self.key_file.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_file.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key

    def seal(self, plain: bytes) -> bytes:
        return self._load().encrypt(plain)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._load().decrypt(sealed)
        except InvalidToken:
            raise SealBroken(
                f"the secrets key {self.key_file} did not seal this secret; start the server "
                "with the key file it was created with, or create the secret again"
            ) from None

    def digest(self, plain: bytes) -> str:
        """A keyed digest (HMAC-SHA256) naming one version of a secret's content."""
        self._load()
        return hmac.new(self._mac_key, plain, hashlib.sha256).hexdigest()
