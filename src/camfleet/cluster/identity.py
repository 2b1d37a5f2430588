"""A stable identity for an agent or a coordinator, kept in its data directory.

The id is created once (random, 32 hex digits) into ``<data_dir>/<name>``,
owner-only: written to a temporary file, then hard-linked into place, so two
processes starting at once agree on one id and nobody ever reads a half-written
file; later starts read it back. The id is a valid NATS subject token and
KV key.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

__all__ = ["IdentityError", "load_or_create_id"]

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class IdentityError(RuntimeError):
    """The id file exists but cannot be read or holds something else than an id."""


def load_or_create_id(data_dir: Path, name: str = "node-id") -> str:
    """The id stored in ``data_dir/name``, created (mode 0600) when the file does not exist."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / name
    if path.exists():
        return _read(path)
    new_id = uuid.uuid4().hex
    tmp = data_dir / f".{name}.{os.getpid()}.{new_id[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(new_id + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: its id is the one
            return _read(path)
    finally:
        tmp.unlink(missing_ok=True)
    return new_id


def _read(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{path}: cannot read the id: {exc}") from None
    if not _ID_RE.match(text):
        raise IdentityError(f"{path}: {text[:40]!r} is not an id (32 hex digits); fix or delete the file")
    return text
