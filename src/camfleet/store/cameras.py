"""Camera configs: the applied set, the names deleted through the API, and staged edits.

Source passwords are sealed with the store's :class:`~camfleet.store.credentials.SecretBox`
before they are written and opened after they are read, so they are encrypted at rest.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, insert, select

from camfleet.store import recovery
from camfleet.store import schema as t
from camfleet.store.base import StoreBase
from camfleet.store.credentials import open_config, open_rows, seal_config
from camfleet.store.records import CameraRow


class CameraStore(StoreBase):
    """The ``cameras``, ``deleted_cameras`` and ``staged_cameras`` tables."""

    def applied_cameras(self) -> dict[str, dict[str, Any]]:
        """Applied camera configs by name, source passwords decrypted (internal use only: never log it)."""
        return {row.name: row.config for row in self.camera_rows()}

    def camera_rows(self) -> list[CameraRow]:
        """The applied cameras with their update times, passwords decrypted (internal use only)."""
        with self._tx("reading cameras") as conn:
            rows = conn.execute(select(t.cameras).order_by(t.cameras.c.name)).all()
        return open_rows(rows, self._box)  # UnreadableCameras names the rows a lost key hides

    def set_applied_cameras(self, cameras: dict[str, dict[str, Any]],
                            deleted: Collection[str] = ()) -> None:
        """Replace the applied camera set and the deleted names atomically (passwords encrypted first).

        ``deleted`` names cameras removed through the API, so a camera the
        configuration file also has stays removed after a restart.
        """
        now = time.time()
        rows = [{"name": n, "config": seal_config(c, self._box), "updated": now} for n, c in cameras.items()]
        gone = [{"name": n, "updated": now} for n in sorted(set(deleted) - set(cameras))]
        with self._tx("applying cameras", write=True) as conn:
            conn.execute(delete(t.cameras))
            conn.execute(delete(t.deleted_cameras))
            if rows:
                conn.execute(insert(t.cameras), rows)
            if gone:
                conn.execute(insert(t.deleted_cameras), gone)

    def deleted_cameras(self) -> set[str]:
        """Names of the cameras deleted through the API (see :meth:`set_applied_cameras`)."""
        with self._tx("reading deleted cameras") as conn:
            return {r.name for r in conn.execute(select(t.deleted_cameras.c.name)).all()}

    def unreadable_cameras(self) -> list[str]:
        """Applied or staged cameras whose credentials cannot be decrypted with the key (lost key)."""
        return recovery.unreadable_cameras(self.engine, self._box)

    def forget_cameras(self, names: Collection[str]) -> int:
        """Drop the applied and staged rows of cameras ``names`` (``camfleet storage forget-cameras``)."""
        return recovery.forget_cameras(self.engine, names)

    def stage_camera(self, name: str, config: dict[str, Any] | None) -> None:
        """Stage an edit of camera ``name``: a new config, or None for a deletion."""
        row = {"name": name, "config": None if config is None else seal_config(config, self._box),
               "updated": time.time()}
        ins = self._insert(t.staged_cameras)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.staged_cameras.c.name],
            set_={"config": ins.excluded.config, "updated": ins.excluded.updated},
        )
        with self._tx("staging a camera", write=True) as conn:
            conn.execute(stmt, row)

    def staged_cameras(self) -> dict[str, dict[str, Any] | None]:
        """Staged configs by name (passwords decrypted); None marks a staged deletion."""
        with self._tx("reading staged cameras") as conn:
            rows = conn.execute(select(t.staged_cameras).order_by(t.staged_cameras.c.name)).all()
        return {r.name: None if r.config is None else open_config(r.config, self._box, r.name) for r in rows}

    def discard_staged(self) -> None:
        """Drop every staged edit."""
        with self._tx("discarding staged cameras", write=True) as conn:
            conn.execute(delete(t.staged_cameras))
