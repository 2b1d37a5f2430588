"""Sessions for Frigate's login: a camfleet API token in, a signed JWT (``frigate_token``) out.

Home Assistant's Frigate integration logs in with ``POST /api/login``
(``{"user", "password"}``), takes the ``frigate_token`` cookie's value from
``Set-Cookie``, reads its ``exp`` claim without verifying it, and sends it back
as ``Authorization: Bearer`` until it expires. camfleet takes the password as
an API token (any user name), and issues an HS256 JWT naming that token's id,
name and role. The JWT is verified on every request, and so is the token
behind it: a revoked token's sessions end at once.

The signing key is 32 random bytes in ``<data_dir>/frigate-compat.key``
(0600), kept across restarts so the integration's session survives them;
deleting the file and restarting ends every session.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from camfleet.store import Store

from .auth import Principal, Role

log = logging.getLogger("camfleet.api")

COOKIE = "frigate_token"
"""The cookie Frigate (and so the integration) carries its JWT in."""
SESSION_S = 86_400
"""How long a session lasts, seconds (Frigate's default ``auth.session_length``)."""
KEY_FILE = "frigate-compat.key"
LEEWAY_S = 120
"""Seconds a session is still accepted past ``exp``: Home Assistant renews by its own clock, which may lag."""
_KEY_BYTES = 32
_ALGORITHM = "HS256"
_MAX_JWT_CHARS = 2048


@dataclass(frozen=True)
class Session:
    """An issued session: the JWT and when it expires (epoch seconds)."""

    token: str
    expires: int


def looks_like_jwt(text: str) -> bool:
    """Whether ``text`` has a JWT's form (three dot-separated parts); camfleet tokens never do."""
    return text.count(".") == 2 and len(text) <= _MAX_JWT_CHARS


class Sessions:
    """Issues and checks the JWTs of one node (the key is read, or made, on first use)."""

    def __init__(self, data_dir: Path, store: Store, length_s: int = SESSION_S) -> None:
        self.path = Path(data_dir) / KEY_FILE
        self.store = store
        self.length_s = length_s
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load_key(self) -> bytes:
        with self._lock:
            if self._key is not None:
                return self._key
            try:
                key = self.path.read_bytes()
            except FileNotFoundError:
                key = b""
            if len(key) != _KEY_BYTES:
                key = secrets.token_bytes(_KEY_BYTES)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, key)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)  # whole or not at all: a torn key would end sessions later
                log.info("made the Frigate-compatibility session key %s", self.path)
            self._key = key
            return key

    def login(self, token: str, now: float | None = None) -> tuple[Session, Principal] | None:
        """A session for the API token ``token`` (None: unknown, revoked, or the store failed).

        Raises:
            OSError: the key file cannot be read or written.
        """
        if not token or len(token) > 512:
            return None
        try:
            row = self.store.verify_token(token)
        except Exception:  # never a 500 that could echo anything; logged without the token
            log.exception("token check failed (Frigate login)")
            return None
        if row is None or row.role not in ("admin", "viewer"):
            return None
        issued = int(time.time() if now is None else now)
        expires = issued + self.length_s
        claims = {"sub": row.name, "role": row.role, "tid": row.id, "iat": issued, "exp": expires}
        encoded = jwt.encode(claims, self._load_key(), algorithm=_ALGORITHM)
        role: Role = "admin" if row.role == "admin" else "viewer"
        return Session(encoded, expires), Principal(row.name, role)

    def principal(self, encoded: str, now: float | None = None) -> Principal | None:
        """The caller a session JWT stands for, if it is ours, unexpired, and its token still valid."""
        if not looks_like_jwt(encoded):
            return None
        try:
            key = self._load_key()
        except OSError:
            log.exception("the Frigate-compatibility session key is unavailable")
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                encoded, key, algorithms=[_ALGORITHM],
                options={"require": ["exp", "sub", "tid"], "verify_exp": now is None}, leeway=LEEWAY_S,
            )
        except jwt.PyJWTError:
            return None
        if now is not None and float(claims["exp"]) + LEEWAY_S <= now:
            return None
        tid, sub = claims.get("tid"), claims.get("sub")
        if not isinstance(tid, int) or not isinstance(sub, str):
            return None
        try:
            rows = self.store.list_tokens()
        except Exception:
            log.exception("token check failed (Frigate session)")
            return None
        row = next((r for r in rows if r.id == tid), None)
        if row is None or not row.active or row.name != sub or row.role not in ("admin", "viewer"):
            return None
        role: Role = "admin" if row.role == "admin" else "viewer"
        return Principal(row.name, role)
