"""Stored cameras after a lost key: which rows are encrypted, which cannot be read, dropping them.

Used by the key guard (no new key while encrypted rows exist) and by
``camfleet storage forget-cameras``. Reads rows raw (no decryption needed to
know a row is encrypted) and never returns or logs a credential.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError

from camfleet.redact import mask_text
from camfleet.store import schema as t
from camfleet.store.credentials import SecretBox, is_sealed, open_config
from camfleet.store.errors import StoreError

__all__ = ["forget_cameras", "sealed_cameras", "stored_cameras", "unreadable_cameras"]


def stored_cameras(engine: Engine) -> list[str]:
    """Names of every applied and staged camera (sorted, no duplicates), read without decrypting."""
    try:
        with engine.connect() as conn:
            names = {n for table in (t.cameras, t.staged_cameras)
                     for n in conn.execute(select(table.c.name)).scalars()}
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the stored cameras failed: {_first_line(exc)}") from None
    return sorted(names)


def sealed_cameras(engine: Engine) -> list[str]:
    """Names of the applied and staged cameras holding encrypted credentials (sorted, no duplicates)."""
    names: set[str] = set()
    try:
        with engine.connect() as conn:
            for table in (t.cameras, t.staged_cameras):
                for name, config in conn.execute(select(table.c.name, table.c.config)).all():
                    if is_sealed(config):
                        names.add(name)
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the stored cameras failed: {_first_line(exc)}") from None
    return sorted(names)


def unreadable_cameras(engine: Engine, box: SecretBox) -> list[str]:
    """Names of the applied and staged cameras whose credentials ``box`` cannot decrypt (sorted)."""
    bad: set[str] = set()
    try:
        with engine.connect() as conn:
            for table in (t.cameras, t.staged_cameras):
                for name, config in conn.execute(select(table.c.name, table.c.config)).all():
                    if config is None or not is_sealed(config):
                        continue
                    try:
                        open_config(config, box, name)
                    except StoreError:
                        bad.add(name)
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the stored cameras failed: {_first_line(exc)}") from None
    return sorted(bad)


def forget_cameras(engine: Engine, names: Collection[str]) -> int:
    """Delete the applied and staged rows of cameras ``names``; returns how many rows went.

    The cameras' deletion marks are kept: a camera the configuration file also
    defines comes back from the file unless it had been deleted through the API.
    """
    if not names:
        return 0
    gone = 0
    try:
        with engine.begin() as conn:
            for table in (t.cameras, t.staged_cameras):
                gone += conn.execute(delete(table).where(table.c.name.in_(sorted(names)))).rowcount or 0
    except SQLAlchemyError as exc:
        raise StoreError(f"dropping stored cameras failed: {_first_line(exc)}") from None
    return gone


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return mask_text(lines[0] if lines else type(orig).__name__)
