"""API tokens: created once in clear, stored only as a SHA-256 hash, verified, listed and revoked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Literal

from sqlalchemy import insert, select, update

from camfleet.store import schema as t
from camfleet.store.base import StoreBase
from camfleet.store.errors import StoreError
from camfleet.store.records import TokenRow

ROLES = ("admin", "viewer")
"""API token roles."""

TOKEN_PREFIX = "cft_"
"""Every clear API token starts with this (so a leaked one is recognisable)."""


class TokenStore(StoreBase):
    """The ``tokens`` table."""

    def create_token(self, name: str, role: Literal["admin", "viewer"]) -> str:
        """A new API token for ``role``; the clear token is returned here once and stored only hashed."""
        if role not in ROLES:
            raise StoreError(f"unknown token role {role!r}: use one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._tx("creating a token", write=True) as conn:
            conn.execute(
                insert(t.tokens).values(name=name, role=role, hash=_hash(token), created=time.time())
            )
        return token

    def verify_token(self, token: str) -> TokenRow | None:
        """The token's row if ``token`` is known and not revoked, else None (constant-time compare)."""
        digest = _hash(token)
        with self._tx("verifying a token") as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.hash == digest)).first()
        if row is None or not hmac.compare_digest(row.hash, digest) or row.revoked is not None:
            return None
        return _token_row(row)

    def list_tokens(self) -> list[TokenRow]:
        """Every token (active and revoked), without the clear token or its hash."""
        with self._tx("listing tokens") as conn:
            return [_token_row(r) for r in conn.execute(select(t.tokens).order_by(t.tokens.c.id))]

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token; False if there is no token with that id (revoking twice is fine)."""
        with self._tx("revoking a token", write=True) as conn:
            conn.execute(
                update(t.tokens)
                .where(t.tokens.c.id == token_id, t.tokens.c.revoked.is_(None))
                .values(revoked=time.time())
            )
            return conn.execute(select(t.tokens.c.id).where(t.tokens.c.id == token_id)).first() is not None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_row(r: Any) -> TokenRow:
    return TokenRow(id=r.id, name=r.name, role=r.role, created=r.created, revoked=r.revoked)
