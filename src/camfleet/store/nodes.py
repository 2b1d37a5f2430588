"""Nodes of the fleet: each node's address and latest reported status."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from camfleet.store import schema as t
from camfleet.store.base import StoreBase


class NodeStore(StoreBase):
    """The ``nodes`` table."""

    def upsert_node(self, name: str, address: str, status: dict[str, Any]) -> None:
        """Record a node's address and latest status (stamped now)."""
        ins = self._insert(t.nodes)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.nodes.c.name],
            set_={"address": ins.excluded.address, "status": ins.excluded.status,
                  "updated": ins.excluded.updated},
        )
        with self._tx("writing a node", write=True) as conn:
            conn.execute(stmt, {"name": name, "address": address, "status": status, "updated": time.time()})

    def nodes(self) -> list[dict[str, Any]]:
        """Every node: {name, address, status, updated (epoch seconds)}, by name."""
        with self._tx("reading nodes") as conn:
            rows = conn.execute(select(t.nodes).order_by(t.nodes.c.name)).mappings().all()
        return [dict(r) for r in rows]
