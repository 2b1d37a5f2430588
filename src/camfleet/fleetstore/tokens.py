"""The fleet's API tokens in the central database (``fleet_tokens``): valid on every coordinator at once.

The same tokens and roles as a node's (:mod:`camfleet.store.tokens`): created
once in clear (``cft_...``), stored only as a SHA-256 hash, revoked by id; a
revocation is seen by every coordinator's next request, since each checks the
shared table rather than a copy.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from sqlalchemy import Column, Engine, Float, Integer, String, Table, insert, select, update

from camfleet.store.records import TokenRow
from camfleet.store.tokens import ROLES, TOKEN_PREFIX, _hash

from .schema import metadata

__all__ = ["create_token", "list_tokens", "revoke_token", "tokens_table", "verify_token"]

tokens_table = Table(
    "fleet_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
    Column("revoked", Float, nullable=True),
)
"""One row per token: its name, role (admin or viewer), hash, creation and revocation times (epoch s)."""


def _row(r: Any) -> TokenRow:
    return TokenRow(id=r.id, name=r.name, role=r.role, created=r.created, revoked=r.revoked)


def create_token(engine: Engine, name: str, role: str) -> str:
    """A new token for ``role`` named ``name``; the clear token is returned here once, stored hashed.

    Raises ValueError for an unknown role or an empty/overlong name.
    """
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ValueError("name: give 1 to 128 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(tokens_table).values(name=name, role=role, hash=_hash(token),
                                                 created=time.time()))
    return token


def verify_token(engine: Engine, token: str) -> TokenRow | None:
    """The token's row when ``token`` is known and not revoked, else None (constant-time compare)."""
    digest = _hash(token)
    with engine.connect() as conn:
        row = conn.execute(select(tokens_table).where(tokens_table.c.hash == digest)).first()
    if row is None or not hmac.compare_digest(row.hash, digest) or row.revoked is not None:
        return None
    return _row(row)


def list_tokens(engine: Engine) -> list[TokenRow]:
    """Every token (active and revoked), without the clear token or its hash."""
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(tokens_table).order_by(tokens_table.c.id))]


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Revoke token ``token_id`` (again is fine); False when there is no such token."""
    with engine.begin() as conn:
        t = tokens_table
        conn.execute(update(t).where(t.c.id == token_id, t.c.revoked.is_(None)).values(revoked=time.time()))
        return conn.execute(select(t.c.id).where(t.c.id == token_id)).first() is not None
