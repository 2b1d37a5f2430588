"""Camera credentials at rest: the password in a source URL is stored Fernet-encrypted.

The key comes from ``$CAMFLEET_SECRET_KEY`` or a key file (created ``0600`` on first
use). A ``${ENV}`` password reference is stored untouched. Stored form of a source::

    {"url": "rtsp://admin@cam1/stream", "url_secret": "<Fernet token of the password>", ...}
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

from camfleet.store.errors import StoreError

KEY_ENV = "CAMFLEET_SECRET_KEY"
"""Environment variable holding the Fernet key (urlsafe base64 of 32 bytes); wins over the key file."""

SECRET_FIELD = "url_secret"
"""Key of a stored source dict that holds the encrypted URL password."""


class SecretBox:
    """Encrypts and decrypts short secrets with the store's Fernet key (loaded lazily, once)."""

    def __init__(self, key_path: Path | None) -> None:
        self.key_path = key_path
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    @property
    def key_source(self) -> str:
        """Where the key comes from, for error messages (never the key itself)."""
        if os.environ.get(KEY_ENV):
            return f"${KEY_ENV}"
        return f"key file {self.key_path}" if self.key_path else "no key configured"

    def encrypt(self, clear: str) -> str:
        """``clear`` encrypted (a Fernet token); creates the key file if there is no key yet."""
        return self._get(create=True).encrypt(clear.encode()).decode("ascii")

    def decrypt(self, token: str, where: str) -> str:
        """The clear text of ``token``; StoreError naming the key (and ``where``) if it cannot be read."""
        try:
            return self._get(create=False).decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise StoreError(
                f"cannot decrypt the stored password of {where} with {self.key_source}: "
                "wrong key (was the key file replaced or $CAMFLEET_SECRET_KEY changed?)"
            ) from None

    def _get(self, *, create: bool) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = self._load(create)
            return self._fernet

    def _load(self, create: bool) -> Fernet:
        env = os.environ.get(KEY_ENV)
        if env:
            try:
                return Fernet(env.encode())
            except (ValueError, TypeError):
                raise StoreError(f"${KEY_ENV} is not a valid key (urlsafe base64 of 32 bytes)") from None
        path = self.key_path
        if path is None:
            raise StoreError(
                f"no secret key for camera passwords: set ${KEY_ENV} or pass secret_key_path to Store.open"
            )
        if not path.exists():
            if not create:
                raise StoreError(
                    f"secret key file {path} is missing: the stored camera passwords cannot be decrypted "
                    f"(restore the file or set ${KEY_ENV})"
                )
            _create_key_file(path)
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise StoreError(f"cannot read secret key file {path}: {exc.strerror}") from None
        try:
            return Fernet(data)
        except (ValueError, TypeError):
            raise StoreError(f"secret key file {path} does not hold a valid key") from None


def _create_key_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    except OSError as exc:
        raise StoreError(f"cannot create secret key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _split_password(url: str) -> tuple[int, str, str, str] | None:
    """(netloc offset, netloc, netloc without password, raw password) or None if no password."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return None
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return None
    i = url.find("//")
    if i < 0 or url[i + 2 : i + 2 + len(netloc)] != netloc:
        return None
    return i + 2, netloc, f"{user}@{hostport}", password


def seal_config(config: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """A copy of a camera config whose source URL passwords are encrypted (``${ENV}`` refs kept)."""
    out = copy.deepcopy(config)
    for src in _sources(out):
        url = src.get("url")
        src.pop(SECRET_FIELD, None)
        if not isinstance(url, str):
            continue
        parts = _split_password(url)
        if parts is None or parts[3].startswith("${"):
            continue
        at, netloc, bare, password = parts
        src["url"] = url[:at] + bare + url[at + len(netloc) :]
        src[SECRET_FIELD] = box.encrypt(password)
    return out


def open_config(config: dict[str, Any], box: SecretBox, camera: str) -> dict[str, Any]:
    """A stored camera config with its source URL passwords decrypted back in place."""
    out = copy.deepcopy(config)
    for i, src in enumerate(_sources(out)):
        token = src.pop(SECRET_FIELD, None)
        url = src.get("url")
        if token is None or not isinstance(url, str):
            continue
        password = box.decrypt(str(token), f"camera {camera!r} source {i}")
        at = url.find("//") + 2
        netloc = urlsplit(url).netloc
        user, _, hostport = netloc.rpartition("@")
        src["url"] = url[:at] + f"{user}:{password}@{hostport}" + url[at + len(netloc) :]
    return out


def _sources(config: dict[str, Any]) -> list[dict[str, Any]]:
    sources = config.get("sources")
    if not isinstance(sources, list):
        return []
    return [s for s in sources if isinstance(s, dict)]
