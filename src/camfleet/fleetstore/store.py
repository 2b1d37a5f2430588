"""The fleet database's operations, used by the leading coordinator (blocking calls: run them in a thread).

Staged edits and an atomic apply (as the node API's cameras), the nodes'
records, flags, status and applied reports, the assignments and the
placement history. Every failure is a :class:`~camfleet.store.errors.StoreError`
whose message names the operation and never the database password.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from camfleet.store.engine import IMMEDIATE, create, parse_url, public_url
from camfleet.store.errors import StoreError
from camfleet.store.records import TokenRow

from . import tables as t
from .schema import metadata

__all__ = ["FleetCamera", "FleetStore"]


@dataclass(frozen=True)
class FleetCamera:
    """One fleet camera: ``settings`` as under ``cameras.<name>`` in a node YAML, its placement hints."""

    name: str
    settings: dict[str, Any]
    placement: dict[str, Any]


def _load_all_tables() -> None:
    """Import every module of this package, so each declares its tables on ``metadata`` before create_all."""
    package = importlib.import_module("camfleet.fleetstore")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"camfleet.fleetstore.{info.name}")


class FleetStore:
    """The central database at ``url`` (``sqlite:///PATH``, ``postgresql://...``); makes missing tables."""

    def __init__(self, url: str) -> None:
        self.shown = public_url(url)
        self.engine = create(parse_url(url))
        _load_all_tables()
        # Coordinators started together race to create the tables: the loser's CREATE fails
        # ("already exists", a lock) although the tables are there; checking again settles it.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                break
            except SQLAlchemyError as exc:
                if attempt == 2:
                    raise StoreError(
                        f"fleet database {self.shown}: cannot create its tables ({type(exc).__name__})"
                    ) from None
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query (constant time)."""
        with self._tx("pinging the database") as conn:
            conn.execute(text("SELECT 1"))

    # ------------------------------------------------------------ API tokens (fleetstore.tokens)
    def create_token(self, name: str, role: str) -> str:
        """A new API token (clear, returned once); ValueError for a bad role or name."""
        from .tokens import create_token  # noqa: PLC0415 - tokens.py declares its table on import

        with self._errors("creating a token"):
            return create_token(self.engine, name, role)

    def verify_token(self, token: str) -> TokenRow | None:
        """The token's row when valid and not revoked, else None."""
        from .tokens import verify_token  # noqa: PLC0415

        with self._errors("verifying a token"):
            return verify_token(self.engine, token)

    def list_tokens(self) -> list[TokenRow]:
        """Every token, without the clear token or its hash."""
        from .tokens import list_tokens  # noqa: PLC0415

        with self._errors("listing tokens"):
            return list_tokens(self.engine)

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token by id; False when there is none."""
        from .tokens import revoke_token  # noqa: PLC0415

        with self._errors("revoking a token"):
            return revoke_token(self.engine, token_id)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"fleet database {self.shown}: {what} failed ({type(exc).__name__})") from None

    @contextlib.contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        try:
            engine = self.engine.execution_options(**{IMMEDIATE: True}) if write else self.engine
            with engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(
                f"fleet database {self.shown}: {what} failed ({type(exc).__name__}: "
                f"{str(exc.orig if hasattr(exc, 'orig') else exc)[:200]})"
            ) from None

    # ------------------------------------------------------------ cameras: applied and staged
    @staticmethod
    def _rows(conn: Connection, table: Any, names: Collection[str] | None) -> list[Any]:
        """``table``'s rows by name (only ``names`` when given, read in chunks under the parameter limit)."""
        if names is None:
            return list(conn.execute(select(table).order_by(table.c.name)).mappings().all())
        wanted, rows = sorted(names), list[Any]()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows += conn.execute(select(table).where(table.c.name.in_(chunk))).mappings().all()
        return sorted(rows, key=lambda r: r["name"])

    def cameras(self, names: Collection[str] | None = None) -> dict[str, FleetCamera]:
        """The applied fleet cameras, by name (only those of ``names`` when given)."""
        with self._tx("reading the fleet cameras") as conn:
            rows = self._rows(conn, t.cameras, names)
        return {r["name"]: FleetCamera(r["name"], dict(r["settings"]), dict(r["placement"])) for r in rows}

    def staged(self, names: Collection[str] | None = None) -> dict[str, FleetCamera | None]:
        """The staged edits: a camera, or None for a staged removal (only those of ``names`` when given)."""
        with self._tx("reading the staged cameras") as conn:
            rows = self._rows(conn, t.staged, names)
        return {
            r["name"]: None
            if r["settings"] is None
            else FleetCamera(r["name"], dict(r["settings"]), dict(r["placement"] or {}))
            for r in rows
        }

    def stage(self, edits: Mapping[str, FleetCamera | None]) -> None:
        """Stage each edit (a camera to add or replace, None to remove), replacing earlier ones."""
        now = time.time()
        with self._tx("staging cameras", write=True) as conn:
            names = list(edits)
            for i in range(0, len(names), 500):
                conn.execute(delete(t.staged).where(t.staged.c.name.in_(names[i : i + 500])))
            rows = [
                {
                    "name": name,
                    "settings": cam.settings if cam else None,
                    "placement": cam.placement if cam else None,
                    "staged_at": now,
                }
                for name, cam in edits.items()
            ]
            if rows:
                conn.execute(insert(t.staged), rows)  # one statement for the batch (executemany)

    def staged_count(self) -> int:
        """How many edits are staged."""
        with self._tx("counting the staged cameras") as conn:
            return int(conn.execute(select(func.count()).select_from(t.staged)).scalar_one())

    def discard(self) -> int:
        """Drop every staged edit; the number dropped."""
        with self._tx("discarding the staged cameras", write=True) as conn:
            return int(conn.execute(delete(t.staged)).rowcount or 0)

    def apply(self, cameras: Mapping[str, FleetCamera]) -> int:
        """Make ``cameras`` the applied cameras and drop the staged edits, atomically; the new generation."""
        now = time.time()
        with self._tx("applying the fleet cameras", write=True) as conn:
            conn.execute(delete(t.cameras))
            rows = [
                {"name": c.name, "settings": c.settings, "placement": c.placement, "updated_at": now}
                for c in cameras.values()
            ]
            if rows:
                conn.execute(insert(t.cameras), rows)
            conn.execute(delete(t.staged))
            generation = self._get_meta(conn, "generation") + 1
            self._set_meta(conn, "generation", generation)
            return generation

    # ------------------------------------------------------------ counters
    @staticmethod
    def _get_meta(conn: Connection, key: str) -> int:
        value = conn.execute(select(t.meta.c.value).where(t.meta.c.key == key)).scalar_one_or_none()
        return int(value or 0)

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: int) -> None:
        if conn.execute(update(t.meta).where(t.meta.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(insert(t.meta).values(key=key, value=value))

    def counter(self, key: str) -> int:
        """A counter (``revision``, ``generation``); 0 when never set."""
        with self._tx(f"reading {key}") as conn:
            return self._get_meta(conn, key)

    def raise_counter(self, key: str, value: int) -> None:
        """Set counter ``key`` to ``value`` unless it is already higher."""
        with self._tx(f"writing {key}", write=True) as conn:
            if self._get_meta(conn, key) < value:
                self._set_meta(conn, key, value)

    # ------------------------------------------------------------ nodes
    def update_node(self, node_id: str, **values: Any) -> None:
        """Write some of a node's columns (record, state, status, status_at, applied, cordoned, draining)."""
        values["updated_at"] = time.time()
        with self._tx(f"writing node {node_id}", write=True) as conn:
            done = conn.execute(update(t.nodes).where(t.nodes.c.node_id == node_id).values(**values)).rowcount
            if not done:
                row = {"state": "registered", "cordoned": False, "draining": False} | values
                conn.execute(insert(t.nodes).values(node_id=node_id, **row))

    def update_nodes(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        """:meth:`update_node` for many nodes (node id → columns) in one transaction."""
        now = time.time()
        with self._tx(f"writing {len(updates)} node(s)", write=True) as conn:
            for node_id, given in updates.items():
                values = dict(given) | {"updated_at": now}
                stmt = update(t.nodes).where(t.nodes.c.node_id == node_id).values(**values)
                if not conn.execute(stmt).rowcount:
                    row = {"state": "registered", "cordoned": False, "draining": False} | values
                    conn.execute(insert(t.nodes).values(node_id=node_id, **row))

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Every node's row, by id."""
        with self._tx("reading the nodes") as conn:
            rows = conn.execute(select(t.nodes).order_by(t.nodes.c.node_id)).mappings().all()
        return {r["node_id"]: dict(r) for r in rows}

    def flags(self) -> dict[str, tuple[bool, bool]]:
        """(cordoned, draining) of every node that has either flag."""
        with self._tx("reading the node flags") as conn:
            rows = conn.execute(
                select(t.nodes.c.node_id, t.nodes.c.cordoned, t.nodes.c.draining).where(
                    t.nodes.c.cordoned | t.nodes.c.draining
                )
            ).all()
        return {r[0]: (bool(r[1]), bool(r[2])) for r in rows}

    # ------------------------------------------------------------ assignments and history
    def record_placements(
        self,
        assignments: Mapping[str, tuple[str, int]],
        moves: list[tuple[str, str | None, str | None, int, str]],
        term: int,
    ) -> None:
        """Set the assignments (camera → (node, token)); append ``moves`` (camera, from, to, token, why)."""
        now = time.time()
        with self._tx("writing the assignments", write=True) as conn:
            conn.execute(delete(t.assignments))
            rows = [
                {"camera": cam, "node": node, "token": token, "updated_at": now}
                for cam, (node, token) in assignments.items()
            ]
            if rows:
                conn.execute(insert(t.assignments), rows)
            history = [
                {
                    "at": now,
                    "camera": cam,
                    "source": source,
                    "target": target,
                    "token": token,
                    "term": term,
                    "reason": reason[:2000],
                }
                for cam, source, target, token, reason in moves
            ]
            if history:
                conn.execute(insert(t.placements), history)

    def assignments(self) -> dict[str, tuple[str, int]]:
        """Camera → (node, token), as last recorded by a leader."""
        with self._tx("reading the assignments") as conn:
            rows = conn.execute(select(t.assignments)).mappings().all()
        return {r["camera"]: (r["node"], int(r["token"])) for r in rows}

    def history(self, limit: int = 100, camera: str | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` placement changes, newest first."""
        query = select(t.placements).order_by(t.placements.c.id.desc()).limit(limit)
        if camera is not None:
            query = query.where(t.placements.c.camera == camera)
        with self._tx("reading the placement history") as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]
