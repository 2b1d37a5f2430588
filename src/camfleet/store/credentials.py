"""Camera credentials at rest: the password in a source URL is stored Fernet-encrypted.

The key comes from ``$CAMFLEET_SECRET_KEY`` or a key file (created ``0600`` on first
use, and only while no stored row is encrypted: a lost key is never silently
replaced). A ``${ENV}`` reference is stored untouched. The values of credential
query parameters (:data:`camfleet.redact.SECRET_QUERY_KEYS`: ``?user=...&password=...``)
are encrypted too. Stored form of a source::

    {"url": "rtsp://admin@cam1/stream?user=***&password=***",
     "url_secret": "<Fernet token of the password>",
     "url_query_secret": "<Fernet token of the JSON list of the hidden query values, in order>", ...}
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

from camfleet.redact import MASK, SECRET_QUERY_KEYS
from camfleet.store.errors import StoreError
from camfleet.store.records import CameraRow

log = logging.getLogger("camfleet.store")

KEY_ENV = "CAMFLEET_SECRET_KEY"
"""Environment variable holding the Fernet key (urlsafe base64 of 32 bytes); wins over the key file."""

SECRET_FIELD = "url_secret"
"""Key of a stored source dict that holds the encrypted URL password."""

QUERY_SECRET_FIELD = "url_query_secret"
"""Key of a stored source dict that holds the encrypted values of its URL's credential query parameters."""

SEALED_FIELDS = (SECRET_FIELD, QUERY_SECRET_FIELD)
"""Every key of a stored source dict that is encrypted with the key."""

FORGET_HINT = "camfleet storage forget-cameras"
"""The command that drops stored cameras whose credentials cannot be decrypted any more."""

# A credential query parameter inside a query string (no leading '?'), value up to the next '&' or '#';
# a later '?' counts as a separator too, should an unencoded '?' in the userinfo start the "query" early.
_QUERY_SECRET = re.compile(
    r"(^|[&?])(" + "|".join(sorted(SECRET_QUERY_KEYS, key=len, reverse=True)) + r")=([^&#]*)",
    re.IGNORECASE,
)


class UnreadableCameras(StoreError):
    """Some stored cameras cannot be decrypted (key lost or replaced).

    ``readable`` holds the other rows, decrypted; ``names`` the cameras that cannot be read.
    The message names the cameras and the key, never a credential.
    """

    def __init__(self, message: str, readable: list[CameraRow], names: list[str]) -> None:
        super().__init__(message)
        self.readable = readable
        self.names = names


class SecretBox:
    """Encrypts and decrypts short secrets with the store's Fernet key (loaded lazily, once)."""

    def __init__(self, key_path: Path | None, sealed: Callable[[], list[str]] | None = None) -> None:
        """``sealed`` names the stored cameras holding encrypted credentials (asked before making a key)."""
        self.key_path = key_path
        self._sealed = sealed
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
            self._refuse_new_key(path)
            _create_key_file(path)
        try:
            data = path.read_bytes().strip()
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            raise StoreError(f"cannot read secret key file {path}: {exc.strerror}") from None
        if mode & 0o077:  # anyone who can read it can read every stored camera password
            log.warning("store: secret key file %s can be read by other users (mode %04o): run chmod 600 %s",
                        path, mode, path)
        try:
            return Fernet(data)
        except (ValueError, TypeError):
            raise StoreError(f"secret key file {path} does not hold a valid key") from None


    def _refuse_new_key(self, path: Path) -> None:
        """StoreError when stored rows are encrypted with a key that is now missing (never replace it)."""
        if self._sealed is None:
            return
        names = self._sealed()
        if names:
            raise StoreError(
                f"secret key file {path} is missing but the stored camera(s) {', '.join(map(repr, names))} "
                f"hold passwords encrypted with it: restore the file (or set ${KEY_ENV}), or drop those "
                f"cameras with `{FORGET_HINT}`; no new key was made"
            )


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
    """A copy of a camera config whose source URL credentials are encrypted (``${ENV}`` refs kept).

    The userinfo password and the values of credential query parameters are both sealed.
    """
    out = copy.deepcopy(config)
    for src in _sources(out):
        url = src.get("url")
        for field in SEALED_FIELDS:
            src.pop(field, None)
        if not isinstance(url, str):
            continue
        url, hidden = _hide_query_secrets(url)
        if hidden:
            src[QUERY_SECRET_FIELD] = box.encrypt(json.dumps(hidden))
        src["url"] = url
        parts = _split_password(url)
        if parts is None or parts[3].startswith("${"):
            continue
        at, netloc, bare, password = parts
        src["url"] = url[:at] + bare + url[at + len(netloc) :]
        src[SECRET_FIELD] = box.encrypt(password)
    return out


def open_config(config: dict[str, Any], box: SecretBox, camera: str) -> dict[str, Any]:
    """A stored camera config with its source URL credentials decrypted back in place."""
    out = copy.deepcopy(config)
    for i, src in enumerate(_sources(out)):
        token = src.pop(SECRET_FIELD, None)
        query_token = src.pop(QUERY_SECRET_FIELD, None)
        url = src.get("url")
        if not isinstance(url, str):
            continue
        where = f"camera {camera!r} source {i}"
        if query_token is not None:
            url = _restore_query_secrets(url, box.decrypt(str(query_token), where), where)
        if token is not None:
            password = box.decrypt(str(token), where)
            at = url.find("//") + 2
            netloc = urlsplit(url).netloc
            user, _, hostport = netloc.rpartition("@")
            url = url[:at] + f"{user}:{password}@{hostport}" + url[at + len(netloc) :]
        src["url"] = url
    return out


def open_rows(rows: Sequence[Any], box: SecretBox) -> list[CameraRow]:
    """Stored camera rows (``name``, ``config``, ``updated``) decrypted.

    Raises:
        UnreadableCameras: some rows cannot be decrypted; it carries the readable ones and names the rest.
    """
    readable: list[CameraRow] = []
    bad: list[str] = []
    reason = ""
    for r in rows:
        try:
            readable.append(CameraRow(r.name, open_config(r.config, box, r.name), r.updated))
        except StoreError as exc:
            bad.append(r.name)
            reason = reason or str(exc)
    if bad:
        raise UnreadableCameras(
            f"camera(s) {', '.join(map(repr, bad))} applied through the API cannot be read: {reason}; "
            f"restore the key, or drop them with `{FORGET_HINT}`",
            readable, bad,
        )
    return readable


def is_sealed(config: Any) -> bool:
    """Whether a stored camera config holds any encrypted credential."""
    return isinstance(config, dict) and any(
        field in src for src in _sources(config) for field in SEALED_FIELDS
    )


def _hide_query_secrets(url: str) -> tuple[str, list[str]]:
    """``url`` with each credential query value replaced by ``***``, and the hidden values in order.

    Empty values and ``${ENV}`` references are left as they are (nothing to hide).
    """
    q = url.find("?")
    if q < 0:
        return url, []
    end = url.find("#", q)
    end = len(url) if end < 0 else end
    hidden: list[str] = []

    def hide(m: re.Match[str]) -> str:
        value = m.group(3)
        if not value or value.startswith("${"):
            return m.group(0)
        hidden.append(value)
        return f"{m.group(1)}{m.group(2)}={MASK}"

    query = _QUERY_SECRET.sub(hide, url[q + 1 : end])
    return url[: q + 1] + query + url[end:], hidden


def _restore_query_secrets(url: str, sealed: str, where: str) -> str:
    """``url`` with its ``***`` credential query values replaced, in order, by the decrypted ones."""
    try:
        values = json.loads(sealed)
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise StoreError(f"the stored query credentials of {where} are damaged")
    q = url.find("?")
    end = url.find("#", q)
    end = len(url) if end < 0 else end
    pending = iter(values)

    def restore(m: re.Match[str]) -> str:
        if m.group(3) != MASK:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}={next(pending, MASK)}"

    return url[: q + 1] + _QUERY_SECRET.sub(restore, url[q + 1 : end]) + url[end:]


def _sources(config: dict[str, Any]) -> list[dict[str, Any]]:
    sources = config.get("sources")
    if not isinstance(sources, list):
        return []
    return [s for s in sources if isinstance(s, dict)]
